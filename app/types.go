// Package app is the application layer: it turns API commands into aggregate decisions and
// appends, runs the sagas that span aggregates (hold, pay, refund, expiry), keeps the waiting
// queue and recovers interrupted work at start-up. It holds no rules of its own (those are in
// aggregates) and no wire formats (those are in api).
package app

import (
	"errors"
	"time"

	"github.com/booking-engine/booking/aggregates"
)

// Errors of the queue token check. The API maps them to 401/403.
var (
	ErrTokenInvalid   = errors.New("queue token invalid")
	ErrTokenExpired   = errors.New("queue token expired or revoked")
	ErrTokenNotActive = errors.New("queue token not active yet")
)

// ErrKeyReused reports a request key already used by another request: a payment repeated
// with its key but for another reservation. The API answers 422 IDEMPOTENCY_KEY_REUSED.
var ErrKeyReused = errors.New("request key already used for another request")

// Clock tells the time. Tests inject a fake one; nothing in app calls time.Now directly.
type Clock interface{ Now() time.Time }

// SystemClock is the real clock, in UTC.
type SystemClock struct{}

// Now returns the current time in UTC.
func (SystemClock) Now() time.Time { return time.Now().UTC() }

// Config holds the behaviour flags of the service.
type Config struct {
	HoldTTL        time.Duration // --hold-ttl
	QueueBatch     int           // --queue-batch (0: admit everyone at once)
	QueueInterval  time.Duration // --queue-interval
	QueueActiveTTL time.Duration // --queue-active-ttl
	TokenSecret    []byte        // --token-secret
	// MaxSeatsPerUser bounds the seats one user holds or bought on one date
	// (--max-seats-per-user; 0: no bound).
	MaxSeatsPerUser int
}

// Meta carries the correlation of a request into the events it causes.
type Meta struct {
	CorrelationID string
	// RequestKey, when set, names this request's effect stably across retries (the API
	// derives it from the Idempotency-Key and its scope). The IDs a command creates are then
	// derived from it, so a retry after a crash that lost the first answer resumes the same
	// reservation or payment instead of starting another.
	RequestKey string
	// ReplayOnly asks a command only to report what this same request (RequestKey) already
	// did, and to fail with ErrTokenExpired if it did nothing: the API sets it when a keyed
	// request's queue token is used up, which this very request may have done (a payment
	// revokes the payer's token) before its answer was lost.
	ReplayOnly bool
}

// NewConcert is the input of CreateConcert. Empty IDs are generated.
type NewConcert struct {
	ConcertID string
	Title     string
	Dates     []NewDate
}

// NewDate is one date of a NewConcert.
type NewDate struct {
	DateID     string
	StartsAt   time.Time
	SeatCount  int
	Price      int64
	SeatPrices []SeatPrice
}

// SeatPrice is a price for a range of seats.
type SeatPrice struct {
	From, To int
	Price    int64
}

// Token is a queue token as IssueToken and TokenStatus report it. Status is an
// aggregates.TokenStatus (WAITING, ACTIVE, EXPIRED); an unknown time is nil.
type Token struct {
	Token     string
	UserID    string
	Position  uint64
	Status    string
	Ahead     uint64
	ActiveAt  *time.Time
	ExpiresAt *time.Time
}

// Reservation is a reservation as a command left it: the result of Hold and Cancel, read from
// the aggregate the command decided on, so it is current even before the read models apply it.
type Reservation struct {
	ReservationID string
	UserID        string
	ConcertID     string
	DateID        string
	SeatNo        int
	SeatNos       []int
	Price         int64
	Status        aggregates.ReservationStatus
	HeldAt        time.Time
	HeldUntil     time.Time
	PaymentID     string
}

// Payment is a payment as a command left it: the result of Pay and Refund. A refund still
// under way shows as COMPLETED, as the payments read model shows it.
type Payment struct {
	PaymentID     string
	ReservationID string
	UserID        string
	Amount        int64
	Status        aggregates.PaymentStatus
	CompletedAt   *time.Time
	RefundedAt    *time.Time
	FailureReason string
}

// Wallet is a user's balance after Charge.
type Wallet struct {
	UserID  string
	Balance int64
}

// HoldRequest is the input of Hold.
type HoldRequest struct {
	UserID    string
	ConcertID string
	DateID    string
	// SeatNos are the seats to hold together (1 to aggregates.MaxSeatsPerHold); SeatNo is
	// the one seat of a single-seat hold when SeatNos is empty.
	SeatNo  int
	SeatNos []int
}
