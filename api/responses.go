package api

import (
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/app"
	"github.com/booking-engine/booking/projections"
)

// Answers show times in the --timezone (UTC unless one is configured), as the contract's
// conventions say. The read models keep UTC; these helpers convert copies, never the values
// a read model may still hold.

func (s *server) at(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.In(s.cfg.Location)
}

func (s *server) atPtr(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	v := s.at(*t)
	return &v
}

// The wire types: the JSON shapes of api/openapi.yaml's schemas for what a command returns and
// a query reads back (Token, Reservation, Payment, Wallet). app's results carry no JSON and
// the read models' views are the read side's types; these are the contract. Each converts from its
// app result and its projections view (Go converts between structs whose fields match, tags
// aside), so a field added to either side fails to compile here until the contract says how to
// show it. Field order is the order of the keys in the answer.

// wireToken is the contract's Token.
type wireToken struct {
	Token     string     `json:"token"`
	UserID    string     `json:"userId"`
	Position  uint64     `json:"position"`
	Status    string     `json:"status"`
	Ahead     uint64     `json:"ahead"`
	ActiveAt  *time.Time `json:"activeAt"`
	ExpiresAt *time.Time `json:"expiresAt"`
}

// wireReservation is the contract's Reservation.
type wireReservation struct {
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

// wirePayment is the contract's Payment.
type wirePayment struct {
	PaymentID     string                   `json:"paymentId"`
	ReservationID string                   `json:"reservationId"`
	UserID        string                   `json:"userId"`
	Amount        int64                    `json:"amount"`
	Status        aggregates.PaymentStatus `json:"status"`
	CompletedAt   *time.Time               `json:"completedAt,omitempty"`
	RefundedAt    *time.Time               `json:"refundedAt,omitempty"`
	FailureReason string                   `json:"failureReason,omitempty"`
}

// wireWallet is the contract's Wallet.
type wireWallet struct {
	UserID  string `json:"userId"`
	Balance int64  `json:"balance"`
}

func (s *server) tokenJSON(t app.Token) wireToken {
	w := wireToken(t)
	w.ActiveAt, w.ExpiresAt = s.atPtr(w.ActiveAt), s.atPtr(w.ExpiresAt)
	return w
}

func (s *server) reservationJSON(r app.Reservation) wireReservation {
	return s.localReservation(wireReservation(r))
}

func (s *server) reservationViewJSON(r projections.ReservationView) wireReservation {
	return s.localReservation(wireReservation(r))
}

func (s *server) localReservation(r wireReservation) wireReservation {
	r.HeldAt, r.HeldUntil = s.at(r.HeldAt), s.at(r.HeldUntil)
	if len(r.SeatNos) == 0 {
		r.SeatNos = []int{r.SeatNo} // the contract: seatNos is always present
	}
	return r
}

func (s *server) paymentJSON(p app.Payment) wirePayment {
	return s.localPayment(wirePayment(p))
}

func (s *server) paymentViewJSON(p projections.PaymentView) wirePayment {
	return s.localPayment(wirePayment(p))
}

func (s *server) localPayment(p wirePayment) wirePayment {
	p.CompletedAt, p.RefundedAt = s.atPtr(p.CompletedAt), s.atPtr(p.RefundedAt)
	return p
}

// localized returns a converted copy of list (never nil, so that it encodes as []).
func localized[T, W any](list []T, conv func(T) W) []W {
	out := make([]W, len(list))
	for i, v := range list {
		out[i] = conv(v)
	}
	return out
}

func (s *server) dateJSON(d projections.DateView) projections.DateView {
	d.StartsAt = s.at(d.StartsAt)
	return d
}

func (s *server) ledgerJSON(e projections.LedgerEntry) projections.LedgerEntry {
	e.At = s.at(e.At)
	return e
}

func (s *server) rankingJSON(e projections.RankingEntry) projections.RankingEntry {
	e.SoldOutAt = s.at(e.SoldOutAt)
	return e
}

func (s *server) deadLetterJSON(d DeadLetter) DeadLetter {
	d.FailedAt = s.at(d.FailedAt)
	return d
}
