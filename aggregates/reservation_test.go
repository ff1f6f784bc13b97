package aggregates

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestReservation(t *testing.T) {
	until := at(5 * time.Minute)
	before, after := at(4*time.Minute), at(6*time.Minute)
	opened := ReservationHeld{
		ReservationID: "r1", UserID: "alice", ConcertID: "c1", DateID: "d1", SeatNo: 7,
		Price: 120000, HeldAt: t0, HeldUntil: until,
	}
	locked := func(p string) ReservationPaymentStarted {
		return ReservationPaymentStarted{ReservationID: "r1", PaymentID: p}
	}
	aborted := func(p string) ReservationPaymentAborted {
		return ReservationPaymentAborted{ReservationID: "r1", PaymentID: p, Reason: FailInsufficientPoints}
	}
	confirmed := func(p string) ReservationConfirmed {
		return ReservationConfirmed{ReservationID: "r1", PaymentID: p, ConfirmedAt: before}
	}
	expired := ReservationExpired{ReservationID: "r1", ExpiredAt: until}
	cancelled := ReservationCancelled{ReservationID: "r1", Reason: ReleaseCancelled, CancelledAt: before}
	refunded := func(p string, now time.Time) ReservationCancelled {
		return ReservationCancelled{ReservationID: "r1", Reason: ReleaseRefunded, PaymentID: p, CancelledAt: now}
	}

	open := func(cmd ReservationHeld) func(Reservation) ([]Event, error) {
		return func(r Reservation) ([]Event, error) { return r.DecideOpen(cmd) }
	}
	start := func(p, user string, now time.Time) func(Reservation) ([]Event, error) {
		return func(r Reservation) ([]Event, error) {
			return r.DecideStartPayment(StartPayment{PaymentID: p, UserID: user, Now: now})
		}
	}
	abort := func(p string) func(Reservation) ([]Event, error) {
		return func(r Reservation) ([]Event, error) {
			return r.DecideAbortPayment(AbortPayment{PaymentID: p, Reason: FailInsufficientPoints})
		}
	}
	confirm := func(p string, now time.Time) func(Reservation) ([]Event, error) {
		return func(r Reservation) ([]Event, error) { return r.DecideConfirm(Confirm{PaymentID: p, Now: now}) }
	}
	expire := func(now time.Time) func(Reservation) ([]Event, error) {
		return func(r Reservation) ([]Event, error) { return r.DecideExpire(Expire{Now: now}) }
	}
	cancel := func(user string, now time.Time) func(Reservation) ([]Event, error) {
		return func(r Reservation) ([]Event, error) { return r.DecideCancel(Cancel{UserID: user, Now: now}) }
	}
	cancelForRefund := func(p string, now time.Time) func(Reservation) ([]Event, error) {
		return func(r Reservation) ([]Event, error) {
			return r.DecideCancelForRefund(CancelForRefund{PaymentID: p, Now: now})
		}
	}
	is := func(status ReservationStatus, paying, paidBy string) func(*testing.T, Reservation) {
		return func(t *testing.T, r Reservation) {
			t.Helper()
			if r.Status() != status || r.PayingWith() != paying || r.PaymentID() != paidBy {
				t.Fatalf("reservation is %s, paying with %q, paid by %q; want %s, %q, %q",
					r.Status(), r.PayingWith(), r.PaymentID(), status, paying, paidBy)
			}
		}
	}
	other := opened
	other.UserID = "mallory"

	run(t, Reservation.Apply, []spec[Reservation]{
		{name: "a reservation opens after its seat was held", when: open(opened), then: []Event{opened}, after: func(t *testing.T, r Reservation) {
			is(ReservationStatusHeld, "", "")(t, r)
			if !r.Exists() || !reflect.DeepEqual(r.Held(), opened) {
				t.Fatalf("held = %#v, want %#v", r.Held(), opened)
			}
		}},
		{name: "a reservation that was never opened does not exist", when: expire(after), after: func(t *testing.T, r Reservation) {
			if r.Exists() {
				t.Fatal("an empty reservation exists")
			}
		}},
		{name: "a repeated open of the same reservation is a no-op", given: []Event{opened}, when: open(opened), after: is(ReservationStatusHeld, "", "")},
		{name: "an open for another user of an existing reservation is refused", given: []Event{opened}, when: open(other), err: ErrReservationExists},

		{name: "a held reservation can be paid before heldUntil", given: []Event{opened}, when: start("p1", "alice", before), then: []Event{locked("p1")}, after: is(ReservationStatusHeld, "p1", "")},
		{name: "a payment needs an ID", given: []Event{opened}, when: start("", "alice", before), err: ErrInvalid},
		{name: "an unknown reservation cannot be paid", when: start("p1", "alice", before), err: ErrReservationNotFound},
		{name: "only the owner can pay a reservation", given: []Event{opened}, when: start("p1", "mallory", before), err: ErrForbidden},
		{name: "a reservation cannot be paid at heldUntil", given: []Event{opened}, when: start("p1", "alice", until), err: ErrReservationNotPayable},
		{name: "a reservation cannot be paid after heldUntil", given: []Event{opened}, when: start("p1", "alice", after), err: ErrReservationNotPayable},
		{name: "of two payments only the first gets the lock", given: []Event{opened}, when: func(r Reservation) ([]Event, error) {
			first, err := r.DecideStartPayment(StartPayment{PaymentID: "p1", UserID: "alice", Now: before})
			if err != nil {
				return nil, err
			}
			for _, e := range first {
				r = r.Apply(e)
			}
			return r.DecideStartPayment(StartPayment{PaymentID: "p2", UserID: "alice", Now: before})
		}, err: ErrReservationNotPayable},
		{name: "a lock held by another payment makes the reservation not payable", given: []Event{opened, locked("p1")}, when: start("p2", "alice", before), err: ErrReservationNotPayable},
		{name: "a repeated start by the payment holding the lock is a no-op", given: []Event{opened, locked("p1")}, when: start("p1", "alice", before), after: is(ReservationStatusHeld, "p1", "")},
		{name: "a repeated start by the payment that confirmed it is a no-op", given: []Event{opened, locked("p1"), confirmed("p1")}, when: start("p1", "alice", after), after: is(ReservationStatusConfirmed, "", "p1")},
		{name: "a confirmed reservation cannot be paid again", given: []Event{opened, locked("p1"), confirmed("p1")}, when: start("p2", "alice", before), err: ErrReservationNotPayable},
		{name: "an expired reservation cannot be paid", given: []Event{opened, expired}, when: start("p1", "alice", before), err: ErrReservationNotPayable},
		{name: "a cancelled reservation cannot be paid", given: []Event{opened, cancelled}, when: start("p1", "alice", before), err: ErrReservationNotPayable},
		{name: "a reservation is payable again after the lock was aborted", given: []Event{opened, locked("p1"), aborted("p1")}, when: start("p2", "alice", before), then: []Event{locked("p2")}},

		{name: "the payment holding the lock can abort it", given: []Event{opened, locked("p1")}, when: abort("p1"), then: []Event{aborted("p1")}, after: is(ReservationStatusHeld, "", "")},
		{name: "an abort by another payment changes nothing", given: []Event{opened, locked("p1")}, when: abort("p2"), after: is(ReservationStatusHeld, "p1", "")},
		{name: "a repeated abort is a no-op", given: []Event{opened, locked("p1"), aborted("p1")}, when: abort("p1")},
		{name: "an abort without a payment ID does not touch an unlocked reservation", given: []Event{opened}, when: abort("")},
		{name: "an abort after confirmation changes nothing", given: []Event{opened, locked("p1"), confirmed("p1")}, when: abort("p1"), after: is(ReservationStatusConfirmed, "", "p1")},

		{name: "the locking payment confirms before heldUntil", given: []Event{opened, locked("p1")}, when: confirm("p1", before), then: []Event{confirmed("p1")}, after: is(ReservationStatusConfirmed, "", "p1")},
		{name: "confirmation at heldUntil fails", given: []Event{opened, locked("p1")}, when: confirm("p1", until), err: ErrReservationNotPayable},
		{name: "confirmation after heldUntil fails", given: []Event{opened, locked("p1")}, when: confirm("p1", after), err: ErrReservationNotPayable},
		{name: "confirmation without the lock fails", given: []Event{opened}, when: confirm("p1", before), err: ErrReservationNotPayable},
		{name: "confirmation without a payment ID fails on an unlocked reservation", given: []Event{opened}, when: confirm("", before), err: ErrReservationNotPayable},
		{name: "confirmation by a payment that does not hold the lock fails", given: []Event{opened, locked("p1")}, when: confirm("p2", before), err: ErrReservationNotPayable},
		{name: "a repeated confirmation by the same payment is a no-op", given: []Event{opened, locked("p1"), confirmed("p1")}, when: confirm("p1", after)},
		{name: "confirmation after expiry fails", given: []Event{opened, locked("p1"), expired}, when: confirm("p1", before), err: ErrReservationNotPayable},
		{name: "confirmation after cancellation fails", given: []Event{opened, locked("p1"), cancelled}, when: confirm("p1", before), err: ErrReservationNotPayable},
		{name: "confirmation of an unknown reservation fails", when: confirm("p1", before), err: ErrReservationNotPayable},

		{name: "expiry before heldUntil does nothing", given: []Event{opened}, when: expire(before), after: is(ReservationStatusHeld, "", "")},
		{name: "a hold expires at heldUntil", given: []Event{opened}, when: expire(until), then: []Event{ReservationExpired{ReservationID: "r1", ExpiredAt: until}}, after: is(ReservationStatusExpired, "", "")},
		{name: "a hold expires after heldUntil", given: []Event{opened}, when: expire(after), then: []Event{ReservationExpired{ReservationID: "r1", ExpiredAt: after}}},
		{name: "expiry wins over a pending payment", given: []Event{opened, locked("p1")}, when: expire(after), then: []Event{ReservationExpired{ReservationID: "r1", ExpiredAt: after}}, after: is(ReservationStatusExpired, "", "")},
		{name: "expiry of a confirmed reservation does nothing", given: []Event{opened, locked("p1"), confirmed("p1")}, when: expire(after), after: is(ReservationStatusConfirmed, "", "p1")},
		{name: "expiry of a cancelled reservation does nothing", given: []Event{opened, cancelled}, when: expire(after), after: is(ReservationStatusCancelled, "", "")},
		{name: "a repeated expiry does nothing", given: []Event{opened, expired}, when: expire(after)},
		{name: "expiry of an unknown reservation does nothing", when: expire(after)},

		{name: "the owner can cancel a held reservation", given: []Event{opened}, when: cancel("alice", before), then: []Event{cancelled}, after: is(ReservationStatusCancelled, "", "")},
		{name: "a cancellation repeated by the request that made it changes nothing",
			given: []Event{opened, ReservationCancelled{ReservationID: "r1", Reason: ReleaseCancelled, CancelledAt: before, RequestID: "req-1"}},
			when: func(r Reservation) ([]Event, error) {
				return r.DecideCancel(Cancel{UserID: "alice", Now: before, RequestID: "req-1"})
			}, after: is(ReservationStatusCancelled, "", "")},
		{name: "another request cannot cancel a cancelled reservation again",
			given: []Event{opened, ReservationCancelled{ReservationID: "r1", Reason: ReleaseCancelled, CancelledAt: before, RequestID: "req-1"}},
			when: func(r Reservation) ([]Event, error) {
				return r.DecideCancel(Cancel{UserID: "alice", Now: before, RequestID: "req-2"})
			}, err: ErrReservationNotCancellable},
		{name: "the owner can cancel during a pending payment, which then cannot confirm", given: []Event{opened, locked("p1")}, when: cancel("alice", before), then: []Event{cancelled}, after: is(ReservationStatusCancelled, "", "")},
		{name: "only the owner can cancel", given: []Event{opened}, when: cancel("mallory", before), err: ErrForbidden},
		{name: "an unknown reservation cannot be cancelled", when: cancel("alice", before), err: ErrReservationNotFound},
		{name: "a confirmed reservation cannot be cancelled", given: []Event{opened, locked("p1"), confirmed("p1")}, when: cancel("alice", before), err: ErrReservationNotCancellable},
		{name: "an expired reservation cannot be cancelled", given: []Event{opened, expired}, when: cancel("alice", after), err: ErrReservationNotCancellable},
		{name: "a cancelled reservation cannot be cancelled again", given: []Event{opened, cancelled}, when: cancel("alice", before), err: ErrReservationNotCancellable},
		{name: "a lapsed hold cannot be cancelled before the sweeper expires it", given: []Event{opened}, when: cancel("alice", until), err: ErrReservationNotCancellable},

		{name: "the confirming payment can cancel for a refund", given: []Event{opened, locked("p1"), confirmed("p1")}, when: cancelForRefund("p1", after), then: []Event{refunded("p1", after)}, after: is(ReservationStatusCancelled, "", "p1")},
		{name: "cancel-for-refund by another payment is refused", given: []Event{opened, locked("p1"), confirmed("p1")}, when: cancelForRefund("p2", after), err: ErrPaymentNotRefundable},
		{name: "a repeated cancel-for-refund is a no-op", given: []Event{opened, locked("p1"), confirmed("p1"), refunded("p1", after)}, when: cancelForRefund("p1", after.Add(time.Minute))},
		{name: "cancel-for-refund of a held reservation is refused", given: []Event{opened, locked("p1")}, when: cancelForRefund("p1", before), err: ErrPaymentNotRefundable},
		{name: "cancel-for-refund without a payment ID is refused", given: []Event{opened, expired}, when: cancelForRefund("", after), err: ErrPaymentNotRefundable},
		{name: "cancel-for-refund of an unknown reservation is refused", when: cancelForRefund("p1", after), err: ErrPaymentNotRefundable},
	})
}

func TestPayableByAnswersTheChecksBeforeAPayment(t *testing.T) {
	held := ReservationHeld{ReservationID: "r1", UserID: "alice", ConcertID: "c1", DateID: "d1", SeatNo: 7, SeatNos: []int{7}, Price: 100, HeldAt: t0, HeldUntil: at(5 * time.Minute)}
	tests := []struct {
		name  string
		given []Event
		user  string
		want  error
	}{
		{"the owner may pay a held reservation", []Event{held}, "alice", nil},
		{"a reservation never opened is not found", nil, "alice", ErrReservationNotFound},
		{"another user may not pay it", []Event{held}, "bob", ErrForbidden},
		{"a confirmed reservation is not payable", []Event{held, ReservationPaymentStarted{ReservationID: "r1", PaymentID: "p1"}, ReservationConfirmed{ReservationID: "r1", PaymentID: "p1", ConfirmedAt: at(time.Minute)}}, "alice", ErrReservationNotPayable},
		{"an expired reservation is not payable", []Event{held, ReservationExpired{ReservationID: "r1", ExpiredAt: at(5 * time.Minute)}}, "alice", ErrReservationNotPayable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := fold(Reservation.Apply, tt.given).PayableBy(tt.user)
			if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
				t.Fatalf("PayableBy(%s) = %v, want %v", tt.user, err, tt.want)
			}
		})
	}
}
