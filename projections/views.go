// Package projections builds the read models of the booking engine into bbolt files under the
// data dir, from the event streams, and answers every query of the API from them. Every read
// model can be thrown away and rebuilt by replaying the streams.
package projections

import (
	"context"
	"errors"
	"time"

	"github.com/booking-engine/booking/aggregates"
)

// ErrNotFound reports a read-model lookup that found nothing; queries wrap a more precise
// aggregates error (ErrConcertNotFound, ErrReservationNotFound, ...) where the API needs one.
var ErrNotFound = errors.New("not found")

// ConcertSummary is one line of the concert list.
type ConcertSummary struct {
	ConcertID string `json:"concertId"`
	Title     string `json:"title"`
	DateCount int    `json:"dateCount"`
}

// DateView is one date of a concert with its availability.
type DateView struct {
	DateID         string    `json:"dateId"`
	StartsAt       time.Time `json:"startsAt"`
	TotalSeats     int       `json:"totalSeats"`
	AvailableSeats int       `json:"availableSeats"`
	SoldOut        bool      `json:"soldOut"`
}

// SeatView is one seat of a seat map.
type SeatView struct {
	SeatNo int                   `json:"seatNo"`
	Price  int64                 `json:"price"`
	Status aggregates.SeatStatus `json:"status"`
}

// ReservationView is a reservation as the reservations read model holds it. The API converts
// it to the contract's shape, which a command's app.Reservation shares.
type ReservationView struct {
	ReservationID string                       `json:"reservationId"`
	UserID        string                       `json:"userId"`
	ConcertID     string                       `json:"concertId"`
	DateID        string                       `json:"dateId"`
	SeatNo        int                          `json:"seatNo"`
	SeatNos       []int                        `json:"seatNos"`
	Price         int64                        `json:"price"`
	Status        aggregates.ReservationStatus `json:"status"`
	HeldAt        time.Time                    `json:"heldAt"`
	HeldUntil     time.Time                    `json:"heldUntil"`
	PaymentID     string                       `json:"paymentId,omitempty"`
}

// PaymentView is a payment as the payments read model holds it. The API converts it to the
// contract's shape, which a command's app.Payment shares.
type PaymentView struct {
	PaymentID     string                   `json:"paymentId"`
	ReservationID string                   `json:"reservationId"`
	UserID        string                   `json:"userId"`
	Amount        int64                    `json:"amount"`
	Status        aggregates.PaymentStatus `json:"status"`
	CompletedAt   *time.Time               `json:"completedAt,omitempty"`
	RefundedAt    *time.Time               `json:"refundedAt,omitempty"`
	FailureReason string                   `json:"failureReason,omitempty"`
}

// WalletView is a user's balance.
type WalletView struct {
	UserID  string `json:"userId"`
	Balance int64  `json:"balance"`
}

// LedgerEntry is one line of a wallet's history. Type is CHARGE, PAYMENT or REFUND.
type LedgerEntry struct {
	Type         string    `json:"type"`
	Amount       int64     `json:"amount"`
	BalanceAfter int64     `json:"balanceAfter"`
	At           time.Time `json:"at"`
	Reference    string    `json:"reference"`
}

// RankingEntry is one sold-out date of the daily ranking.
type RankingEntry struct {
	Rank             int       `json:"rank"`
	ConcertID        string    `json:"concertId"`
	DateID           string    `json:"dateId"`
	Title            string    `json:"title"`
	SoldOutAt        time.Time `json:"soldOutAt"`
	SecondsToSellOut int64     `json:"secondsToSellOut"`
}

// Status is the progress of one projection.
type Status struct {
	Name       string `json:"name"`
	Checkpoint uint64 `json:"checkpoint"`
	Head       uint64 `json:"head"`
	Lag        uint64 `json:"lag"`
}

// Queries answers every read of the API. Every query but the ranking waits until the read
// model has applied every event this process had appended to the streams it reads when it
// began (read-your-writes for the client that caused them); with nothing pending it does not
// wait at all.
type Queries interface {
	Concerts(ctx context.Context) ([]ConcertSummary, error)
	// Concert returns the creation event of a concert (aggregates.ErrConcertNotFound if none).
	// Its slices may be shared with other callers: do not modify them.
	Concert(ctx context.Context, concertID string) (aggregates.ConcertCreated, error)
	Dates(ctx context.Context, concertID string) ([]DateView, error)
	// Seats returns a date's seat map, seat 1 first (ErrConcertNotFound / ErrDateNotFound).
	Seats(ctx context.Context, concertID, dateID string) ([]SeatView, error)
	Reservation(ctx context.Context, reservationID string) (ReservationView, error)
	// UserReservations returns a user's reservations, newest first.
	UserReservations(ctx context.Context, userID string) ([]ReservationView, error)
	Payment(ctx context.Context, paymentID string) (PaymentView, error)
	Wallet(ctx context.Context, userID string) (WalletView, error)
	// History returns a wallet's ledger, oldest first.
	History(ctx context.Context, userID string) ([]LedgerEntry, error)
	// DailyRanking returns the dates whose first sell-out fell on day (midnight to midnight in
	// day's location), fastest sell-out first.
	DailyRanking(ctx context.Context, day time.Time) ([]RankingEntry, error)
}

// SeatMapEncoder is implemented by query sides that keep seat maps ready-encoded. A seat-map
// read is the hottest read of a sale, and encoding 500 seats costs far more than finding them:
// the API can answer GET .../seats with these bytes as they are.
type SeatMapEncoder interface {
	// SeatsJSON returns {"seats":[{"seatNo":1,"price":100,"status":"AVAILABLE"},...]}, the
	// body of GET /api/v1/concerts/{concertId}/dates/{dateId}/seats, or the errors of Seats.
	// The bytes are shared: do not modify them.
	SeatsJSON(ctx context.Context, concertID, dateID string) ([]byte, error)
	// SeatsJSONGzip returns the same body gzipped (RFC 1952), equally shared.
	SeatsJSONGzip(ctx context.Context, concertID, dateID string) ([]byte, error)
}

var _ SeatMapEncoder = (*Engine)(nil)
