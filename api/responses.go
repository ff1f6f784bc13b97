package api

import (
	"time"

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

func (s *server) tokenJSON(t app.Token) app.Token {
	t.ActiveAt, t.ExpiresAt = s.atPtr(t.ActiveAt), s.atPtr(t.ExpiresAt)
	return t
}

func (s *server) reservationJSON(r projections.ReservationView) projections.ReservationView {
	r.HeldAt, r.HeldUntil = s.at(r.HeldAt), s.at(r.HeldUntil)
	if len(r.SeatNos) == 0 {
		r.SeatNos = []int{r.SeatNo} // the contract: seatNos is always present
	}
	return r
}

func (s *server) paymentJSON(p projections.PaymentView) projections.PaymentView {
	p.CompletedAt, p.RefundedAt = s.atPtr(p.CompletedAt), s.atPtr(p.RefundedAt)
	return p
}

// localized returns a converted copy of list (never nil, so that it encodes as []).
func localized[T any](list []T, conv func(T) T) []T {
	out := make([]T, len(list))
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
