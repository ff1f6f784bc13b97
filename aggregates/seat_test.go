package aggregates

import (
	"testing"
	"time"
)

func TestSeat(t *testing.T) {
	until := at(5 * time.Minute)
	held := func(r string) SeatHeld { return SeatHeld{ReservationID: r, UserID: "u-" + r, HeldUntil: until} }
	released := func(r, reason string) SeatReleased { return SeatReleased{ReservationID: r, Reason: reason} }
	sold := func(r string) SeatSold { return SeatSold{ReservationID: r, PaymentID: "p-" + r} }
	hold := func(r string) func(Seat) ([]Event, error) {
		return func(s Seat) ([]Event, error) {
			return s.DecideHold(HoldSeat{ReservationID: r, UserID: "u-" + r, HeldUntil: until})
		}
	}
	release := func(r, reason string) func(Seat) ([]Event, error) {
		return func(s Seat) ([]Event, error) { return s.DecideRelease(ReleaseSeat{ReservationID: r, Reason: reason}) }
	}
	sell := func(r string) func(Seat) ([]Event, error) {
		return func(s Seat) ([]Event, error) { return s.DecideSell(SellSeat{ReservationID: r, PaymentID: "p-" + r}) }
	}
	status := func(want SeatStatus, reservation string) func(*testing.T, Seat) {
		return func(t *testing.T, s Seat) {
			t.Helper()
			if s.Status() != want || s.Reservation() != reservation {
				t.Fatalf("seat is %s for %q, want %s for %q", s.Status(), s.Reservation(), want, reservation)
			}
		}
	}

	run(t, Seat.Apply, []spec[Seat]{
		{name: "a seat without events is available", when: release("r1", ReleaseExpired), after: status(SeatStatusAvailable, "")},
		{name: "an available seat can be held", when: hold("r1"), then: []Event{held("r1")}, after: func(t *testing.T, s Seat) {
			status(SeatStatusHeld, "r1")(t, s)
			if !s.HeldUntil().Equal(until) {
				t.Fatalf("heldUntil = %v, want %v", s.HeldUntil(), until)
			}
		}},
		{name: "a hold without a reservation is invalid", when: hold(""), err: ErrInvalid},
		{name: "a held seat cannot be held again", given: []Event{held("r1")}, when: hold("r2"), err: ErrSeatUnavailable},
		{name: "a repeated hold of the same reservation is a no-op", given: []Event{held("r1")}, when: hold("r1"), after: status(SeatStatusHeld, "r1")},
		{name: "a seat is available again after its hold expired", given: []Event{held("r1"), released("r1", ReleaseExpired)}, when: hold("r2"), then: []Event{held("r2")}},
		{name: "a seat is available again after its hold was cancelled", given: []Event{held("r1"), released("r1", ReleaseCancelled)}, when: hold("r2"), then: []Event{held("r2")}},
		{name: "a sold seat cannot be held", given: []Event{held("r1"), sold("r1")}, when: hold("r2"), err: ErrSeatUnavailable},
		{name: "a sold seat cannot be held again by its own reservation", given: []Event{held("r1"), sold("r1")}, when: hold("r1"), err: ErrSeatUnavailable},
		{name: "a sold seat is available again after a refund", given: []Event{held("r1"), sold("r1"), released("r1", ReleaseRefunded)}, when: hold("r2"), then: []Event{held("r2")}},

		{name: "the holding reservation can release its seat", given: []Event{held("r1")}, when: release("r1", ReleaseExpired), then: []Event{released("r1", ReleaseExpired)}, after: status(SeatStatusAvailable, "")},
		{name: "release by a stale reservation changes nothing", given: []Event{held("r1"), released("r1", ReleaseExpired), held("r2")}, when: release("r1", ReleaseExpired), after: status(SeatStatusHeld, "r2")},
		{name: "release of an available seat changes nothing", given: []Event{held("r1"), released("r1", ReleaseCancelled)}, when: release("r1", ReleaseCancelled), after: status(SeatStatusAvailable, "")},
		{name: "a refund releases a sold seat", given: []Event{held("r1"), sold("r1")}, when: release("r1", ReleaseRefunded), then: []Event{released("r1", ReleaseRefunded)}, after: status(SeatStatusAvailable, "")},
		{name: "an expiry that lost to the payment does not free the sold seat", given: []Event{held("r1"), sold("r1")}, when: release("r1", ReleaseExpired), after: status(SeatStatusSold, "r1")},
		{name: "a cancellation does not free a sold seat", given: []Event{held("r1"), sold("r1")}, when: release("r1", ReleaseCancelled), after: status(SeatStatusSold, "r1")},
		{name: "a refund by another reservation does not free a sold seat", given: []Event{held("r1"), sold("r1")}, when: release("r2", ReleaseRefunded), after: status(SeatStatusSold, "r1")},

		{name: "the holding reservation can buy its seat", given: []Event{held("r1")}, when: sell("r1"), then: []Event{sold("r1")}, after: status(SeatStatusSold, "r1")},
		{name: "only the holding reservation can buy a seat", given: []Event{held("r1")}, when: sell("r2"), err: ErrSeatNotHeld},
		{name: "an available seat cannot be bought", when: sell("r1"), err: ErrSeatNotHeld},
		{name: "a seat released from its hold cannot be bought by that reservation", given: []Event{held("r1"), released("r1", ReleaseExpired)}, when: sell("r1"), err: ErrSeatNotHeld},
		{name: "an empty reservation cannot buy a free seat", when: sell(""), err: ErrSeatNotHeld},
		{name: "a repeated sale to the same reservation is a no-op", given: []Event{held("r1"), sold("r1")}, when: sell("r1"), after: status(SeatStatusSold, "r1")},
		{name: "a seat sold to one reservation cannot be bought by another", given: []Event{held("r1"), sold("r1")}, when: sell("r2"), err: ErrSeatNotHeld},
	})
}

func TestSeatIDs(t *testing.T) {
	tests := []struct {
		name string
		id   string
		ok   bool
	}{
		{"a seat ID splits back into concert, date and seat", "c-1.d_2.17", true},
		{"an ID without a seat number is not a seat ID", "c1.d1", false},
		{"an ID with a non-numeric seat is not a seat ID", "c1.d1.x", false},
		{"seat 0 is not a seat", "c1.d1.0", false},
		{"an empty concert part is not a seat ID", ".d1.3", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, d, n, ok := ParseSeatID(tt.id)
			if ok != tt.ok {
				t.Fatalf("ParseSeatID(%q) ok = %v", tt.id, ok)
			}
			if ok && SeatID(c, d, n) != tt.id {
				t.Fatalf("SeatID(%q, %q, %d) = %q, want %q", c, d, n, SeatID(c, d, n), tt.id)
			}
		})
	}
}
