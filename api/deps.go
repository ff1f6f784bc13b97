package api

import (
	"context"
	"errors"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/app"
)

// Commands is what the API asks of the application layer. Every method returns domain errors
// (aggregates.Err*, app.ErrToken*, eventstore.ErrUnavailable) wrapped with %w; the API maps
// them to problem codes and nothing else does.
type Commands interface {
	CreateConcert(ctx context.Context, meta app.Meta, c app.NewConcert) (aggregates.ConcertCreated, error)
	// IssueToken returns the user's still valid token (created == false) or a new one.
	IssueToken(ctx context.Context, meta app.Meta, userID string) (tok app.Token, created bool, err error)
	// TokenStatus returns a token's current state, EXPIRED included; forged → ErrTokenInvalid.
	TokenStatus(ctx context.Context, token string) (app.Token, error)
	// CheckToken admits an ACTIVE token and returns its user; otherwise ErrTokenInvalid,
	// ErrTokenExpired or ErrTokenNotActive.
	CheckToken(ctx context.Context, token string) (userID string, err error)
	Charge(ctx context.Context, meta app.Meta, userID string, amount int64) (app.Wallet, error)
	Hold(ctx context.Context, meta app.Meta, req app.HoldRequest) (app.Reservation, error)
	// Cancel cancels a HELD reservation of userID (ErrForbidden for somebody else's).
	Cancel(ctx context.Context, meta app.Meta, reservationID, userID string) (app.Reservation, error)
	// Pay runs the payment saga; on success the payer's queue token is revoked.
	Pay(ctx context.Context, meta app.Meta, reservationID, userID string) (app.Payment, error)
	Refund(ctx context.Context, meta app.Meta, paymentID string) (app.Payment, error)
}

// UserAuthenticator verifies the user behind a request (--user-auth jwt). With --user-auth
// none there is none, and the userId of a path or body is taken as given.
type UserAuthenticator interface {
	// Authenticate checks an Authorization header value ("Bearer <JWT>") and returns the
	// user it names (the token's sub), or an error wrapping ErrUnauthenticated.
	Authenticate(authorization string) (userID string, err error)
}

// ErrUnauthenticated reports a missing or invalid user credential (401 UNAUTHENTICATED).
var ErrUnauthenticated = errors.New("unauthenticated")
