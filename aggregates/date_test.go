package aggregates

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

func TestDate(t *testing.T) {
	until := at(5 * time.Minute)
	before, after := at(4*time.Minute), at(6*time.Minute)
	holdOf := func(rid, user string, nos ...int) HoldSeats {
		return HoldSeats{ReservationID: rid, UserID: user, ConcertID: "c1", DateID: "d1", SeatNos: nos,
			Price: int64(len(nos)) * 100, HeldAt: t0, HeldUntil: until, MaxSeatsPerUser: 8}
	}
	// held is what a successful hold of holdOf decides.
	held := func(rid, user string, nos ...int) []Event {
		var evs []Event
		for _, n := range nos {
			evs = append(evs, SeatHeld{ReservationID: rid, UserID: user, HeldUntil: until, SeatNo: n})
		}
		return append(evs, ReservationHeld{ReservationID: rid, UserID: user, ConcertID: "c1", DateID: "d1",
			SeatNo: nos[0], SeatNos: nos, Price: int64(len(nos)) * 100, HeldAt: t0, HeldUntil: until})
	}
	paid := func(rid, pid string, nos ...int) []Event {
		evs := []Event{ReservationPaymentStarted{ReservationID: rid, PaymentID: pid}, ReservationConfirmed{ReservationID: rid, PaymentID: pid, ConfirmedAt: before}}
		for _, n := range nos {
			evs = append(evs, SeatSold{ReservationID: rid, PaymentID: pid, SeatNo: n})
		}
		return evs
	}
	released := func(rid, reason string, nos ...int) []Event {
		var evs []Event
		for _, n := range nos {
			evs = append(evs, SeatReleased{ReservationID: rid, Reason: reason, SeatNo: n})
		}
		return evs
	}
	cat := func(parts ...[]Event) []Event {
		var out []Event
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	hold := func(cmd HoldSeats) func(Date) ([]Event, error) {
		return func(d Date) ([]Event, error) { return d.DecideHold(cmd) }
	}
	seatsAre := func(want map[int]SeatStatus) func(*testing.T, Date) {
		return func(t *testing.T, d Date) {
			t.Helper()
			for n, st := range want {
				if got := d.Seat(n).Status(); got != st {
					t.Errorf("seat %d is %s, want %s", n, got, st)
				}
			}
		}
	}
	owns := func(user string, n int) func(*testing.T, Date) {
		return func(t *testing.T, d Date) {
			t.Helper()
			if got := d.SeatsOwnedBy(user); got != n {
				t.Errorf("%s owns %d seats of the date, want %d", user, got, n)
			}
		}
	}
	both := func(fs ...func(*testing.T, Date)) func(*testing.T, Date) {
		return func(t *testing.T, d Date) {
			for _, f := range fs {
				f(t, d)
			}
		}
	}

	run(t, Date.Apply, []spec[Date]{
		{name: "a hold of three free seats holds each of them for one new reservation", when: hold(holdOf("r1", "alice", 3, 4, 5)),
			then:  held("r1", "alice", 3, 4, 5),
			after: both(seatsAre(map[int]SeatStatus{3: SeatStatusHeld, 4: SeatStatusHeld, 5: SeatStatusHeld, 6: SeatStatusAvailable}), owns("alice", 3))},
		{name: "a hold of one seat is a reservation of one seat", when: hold(holdOf("r1", "alice", 7)), then: held("r1", "alice", 7)},
		{name: "a hold with one seat taken holds none of them", given: held("r1", "alice", 4),
			when: hold(holdOf("r2", "bob", 3, 4, 5)), err: ErrSeatUnavailable},
		{name: "a sold seat cannot be held", given: cat(held("r1", "alice", 4), paid("r1", "p1", 4)),
			when: hold(holdOf("r2", "bob", 4)), err: ErrSeatUnavailable},
		{name: "a seat freed by an expiry can be held again", given: cat(held("r1", "alice", 4), []Event{ReservationExpired{ReservationID: "r1", ExpiredAt: until}}, released("r1", ReleaseExpired, 4)),
			when: hold(holdOf("r2", "bob", 4)), then: held("r2", "bob", 4)},
		{name: "repeating the hold of a reservation by its user changes nothing", given: held("r1", "alice", 3, 4),
			when: hold(holdOf("r1", "alice", 3, 4))},
		{name: "a reservation ID already used by another user is refused", given: held("r1", "alice", 3),
			when: hold(holdOf("r1", "bob", 5)), err: ErrReservationExists},
		{name: "no seats is invalid", when: hold(holdOf("r1", "alice")), err: ErrInvalid},
		{name: "nine seats are invalid", when: hold(holdOf("r1", "alice", 1, 2, 3, 4, 5, 6, 7, 8, 9)), err: ErrInvalid},
		{name: "a seat given twice is invalid", when: hold(holdOf("r1", "alice", 3, 3)), err: ErrInvalid},
		{name: "seat zero is invalid", when: hold(holdOf("r1", "alice", 0, 1)), err: ErrInvalid},
		{name: "seats out of order are invalid", when: hold(holdOf("r1", "alice", 5, 3)), err: ErrInvalid},
		{name: "a hold that would pass the user's limit is refused", given: held("r1", "alice", 1, 2, 3, 4, 5, 6),
			when: hold(holdOf("r2", "alice", 7, 8, 9)), err: ErrSeatLimitReached},
		{name: "a hold that reaches the user's limit exactly is accepted", given: held("r1", "alice", 1, 2, 3, 4, 5, 6),
			when: hold(holdOf("r2", "alice", 7, 8)), then: held("r2", "alice", 7, 8), after: owns("alice", 8)},
		{name: "confirmed seats count toward the limit", given: cat(held("r1", "alice", 1, 2, 3, 4, 5, 6, 7, 8), paid("r1", "p1", 1, 2, 3, 4, 5, 6, 7, 8)),
			when: hold(holdOf("r2", "alice", 9)), err: ErrSeatLimitReached},
		{name: "expired and cancelled reservations do not count toward the limit",
			given: cat(held("r1", "alice", 1, 2, 3, 4), []Event{ReservationExpired{ReservationID: "r1", ExpiredAt: until}}, released("r1", ReleaseExpired, 1, 2, 3, 4),
				held("r2", "alice", 5, 6, 7, 8), []Event{ReservationCancelled{ReservationID: "r2", Reason: ReleaseCancelled, CancelledAt: before}}, released("r2", ReleaseCancelled, 5, 6, 7, 8)),
			when: hold(holdOf("r3", "alice", 9, 10, 11, 12, 13, 14, 15, 16)), then: held("r3", "alice", 9, 10, 11, 12, 13, 14, 15, 16), after: owns("alice", 8)},
		{name: "another user's seats do not count toward a user's limit", given: held("r1", "bob", 1, 2, 3, 4, 5, 6, 7, 8),
			when: hold(holdOf("r2", "alice", 9, 10, 11, 12, 13, 14, 15, 16)), then: held("r2", "alice", 9, 10, 11, 12, 13, 14, 15, 16)},
		{name: "a confirmation sells every seat of the reservation in the same decision",
			given: cat(held("r1", "alice", 3, 4), []Event{ReservationPaymentStarted{ReservationID: "r1", PaymentID: "p1"}}),
			when:  func(d Date) ([]Event, error) { return d.DecideConfirm("r1", Confirm{PaymentID: "p1", Now: before}) },
			then:  cat(paid("r1", "p1", 3, 4)[1:]), after: both(seatsAre(map[int]SeatStatus{3: SeatStatusSold, 4: SeatStatusSold}), owns("alice", 2))},
		{name: "an expiry frees every seat of the hold",
			given: held("r1", "alice", 3, 4),
			when:  func(d Date) ([]Event, error) { return d.DecideExpire("r1", Expire{Now: after}) },
			then:  cat([]Event{ReservationExpired{ReservationID: "r1", ExpiredAt: after}}, released("r1", ReleaseExpired, 3, 4)),
			after: both(seatsAre(map[int]SeatStatus{3: SeatStatusAvailable, 4: SeatStatusAvailable}), owns("alice", 0))},
		{name: "an expiry before heldUntil changes nothing", given: held("r1", "alice", 3, 4),
			when: func(d Date) ([]Event, error) { return d.DecideExpire("r1", Expire{Now: before}) }},
		{name: "a cancellation by the owner frees every seat of the hold",
			given: held("r1", "alice", 3, 4),
			when:  func(d Date) ([]Event, error) { return d.DecideCancel("r1", Cancel{UserID: "alice", Now: before}) },
			then:  cat([]Event{ReservationCancelled{ReservationID: "r1", Reason: ReleaseCancelled, CancelledAt: before}}, released("r1", ReleaseCancelled, 3, 4))},
		{name: "another user cannot cancel a hold", given: held("r1", "alice", 3),
			when: func(d Date) ([]Event, error) { return d.DecideCancel("r1", Cancel{UserID: "bob", Now: before}) }, err: ErrForbidden},
		{name: "cancelling a reservation the date does not have is not found",
			when: func(d Date) ([]Event, error) { return d.DecideCancel("r9", Cancel{UserID: "bob", Now: before}) }, err: ErrReservationNotFound},
		{name: "a refund frees every seat the payment bought",
			given: cat(held("r1", "alice", 3, 4), paid("r1", "p1", 3, 4)),
			when: func(d Date) ([]Event, error) {
				return d.DecideCancelForRefund("r1", CancelForRefund{PaymentID: "p1", Now: after})
			},
			then:  cat([]Event{ReservationCancelled{ReservationID: "r1", Reason: ReleaseRefunded, PaymentID: "p1", CancelledAt: after}}, released("r1", ReleaseRefunded, 3, 4)),
			after: both(seatsAre(map[int]SeatStatus{3: SeatStatusAvailable, 4: SeatStatusAvailable}), owns("alice", 0))},
		{name: "paying a reservation the date does not have is not found",
			when: func(d Date) ([]Event, error) {
				return d.DecideStartPayment("r9", StartPayment{PaymentID: "p1", UserID: "alice", Now: before})
			}, err: ErrReservationNotFound},
	})

	// A payment of r1 (alice's seats 3 and 4, 200 points) on the date.
	pay := func(pid, user string, now time.Time) func(Date) ([]Event, error) {
		return func(d Date) ([]Event, error) {
			return d.DecideStartPayment("r1", StartPayment{PaymentID: pid, UserID: user, Now: now})
		}
	}
	startedP1 := []Event{PaymentStarted{PaymentID: "p1", ReservationID: "r1", UserID: "alice", Amount: 200, StartedAt: t0, SeatNos: []int{3, 4}},
		ReservationPaymentStarted{ReservationID: "r1", PaymentID: "p1"}}
	completedP1 := cat(paid("r1", "p1", 3, 4)[1:], []Event{PaymentCompleted{PaymentID: "p1", CompletedAt: before, SeatNos: []int{3, 4}}})
	refundingP1 := cat([]Event{PaymentRefundStarted{PaymentID: "p1", StartedAt: after, RequestID: "req-1"},
		ReservationCancelled{ReservationID: "r1", Reason: ReleaseRefunded, PaymentID: "p1", CancelledAt: after}}, released("r1", ReleaseRefunded, 3, 4))
	paymentIs := func(pid string, want PaymentStatus) func(*testing.T, Date) {
		return func(t *testing.T, d Date) {
			t.Helper()
			if p, _ := d.Payment(pid); p.Status() != want {
				t.Errorf("payment %s is %q, want %s", pid, p.Status(), want)
			}
		}
	}
	lockedBy := func(pid string) func(*testing.T, Date) {
		return func(t *testing.T, d Date) {
			t.Helper()
			if r, _ := d.Reservation("r1"); r.PayingWith() != pid {
				t.Errorf("r1 is locked by %q, want %q", r.PayingWith(), pid)
			}
		}
	}
	refund := func(requestID string) func(Date) ([]Event, error) {
		return func(d Date) ([]Event, error) {
			return d.DecideRefund("p1", RefundPayment{Now: after, RequestID: requestID})
		}
	}
	run(t, Date.Apply, []spec[Date]{
		{name: "a payment of a held reservation starts and locks it in the same decision", given: held("r1", "alice", 3, 4),
			when: pay("p1", "alice", t0), then: startedP1, after: both(paymentIs("p1", PaymentStatusStarted), lockedBy("p1"))},
		{name: "a payment of a reservation another payment locked is refused and leaves no payment", given: cat(held("r1", "alice", 3, 4), startedP1),
			when: pay("p2", "alice", t0), err: ErrReservationNotPayable},
		{name: "a payment of another user's reservation is forbidden", given: held("r1", "alice", 3, 4),
			when: pay("p1", "bob", t0), err: ErrForbidden},
		{name: "a payment of a lapsed hold is refused", given: held("r1", "alice", 3, 4),
			when: pay("p1", "alice", after), err: ErrReservationNotPayable},
		{name: "a payment of a sold reservation is refused", given: cat(held("r1", "alice", 3, 4), startedP1, completedP1),
			when: pay("p2", "alice", before), err: ErrReservationNotPayable},
		{name: "repeating the start of a payment changes nothing", given: cat(held("r1", "alice", 3, 4), startedP1),
			when: pay("p1", "alice", before), after: lockedBy("p1")},
		{name: "a payment ID the date has for another reservation is refused", given: cat(held("r1", "alice", 3, 4), startedP1, held("r2", "alice", 5)),
			when: func(d Date) ([]Event, error) {
				return d.DecideStartPayment("r2", StartPayment{PaymentID: "p1", UserID: "alice", Now: t0})
			}, err: ErrInvalid},
		{name: "a debited payment completes with the confirmation and the sale of every seat in the same decision",
			given: cat(held("r1", "alice", 3, 4), startedP1),
			when:  func(d Date) ([]Event, error) { return d.DecideCompletePayment("p1", before) },
			then:  completedP1, after: both(paymentIs("p1", PaymentStatusCompleted), seatsAre(map[int]SeatStatus{3: SeatStatusSold, 4: SeatStatusSold}))},
		{name: "a payment whose hold lapsed does not complete and sells nothing", given: cat(held("r1", "alice", 3, 4), startedP1),
			when: func(d Date) ([]Event, error) { return d.DecideCompletePayment("p1", after) }, err: ErrReservationNotPayable},
		{name: "repeating a completion changes nothing", given: cat(held("r1", "alice", 3, 4), startedP1, completedP1),
			when: func(d Date) ([]Event, error) { return d.DecideCompletePayment("p1", before) }},
		{name: "completing a payment the date does not have is not found",
			when: func(d Date) ([]Event, error) { return d.DecideCompletePayment("p9", before) }, err: ErrPaymentNotFound},
		{name: "a failed payment releases its lock in the same decision", given: cat(held("r1", "alice", 3, 4), startedP1),
			when: func(d Date) ([]Event, error) { return d.DecideFailPayment("p1", FailInsufficientPoints, before) },
			then: []Event{ReservationPaymentAborted{ReservationID: "r1", PaymentID: "p1", Reason: FailInsufficientPoints},
				PaymentFailed{PaymentID: "p1", Reason: FailInsufficientPoints, FailedAt: before}},
			after: both(paymentIs("p1", PaymentStatusFailed), lockedBy(""))},
		{name: "failing a completed payment changes nothing", given: cat(held("r1", "alice", 3, 4), startedP1, completedP1),
			when: func(d Date) ([]Event, error) { return d.DecideFailPayment("p1", FailNotPayable, after) }},
		{name: "a refund passes its gate and cancels the reservation with the release of its seats in one decision",
			given: cat(held("r1", "alice", 3, 4), startedP1, completedP1), when: refund("req-1"), then: refundingP1,
			after: both(paymentIs("p1", PaymentStatusRefunding), seatsAre(map[int]SeatStatus{3: SeatStatusAvailable, 4: SeatStatusAvailable}), owns("alice", 0))},
		{name: "a second refund of a payment is refused", given: cat(held("r1", "alice", 3, 4), startedP1, completedP1, refundingP1),
			when: refund("req-2"), err: ErrPaymentNotRefundable},
		{name: "the request that started a refund repeats it as a no-op", given: cat(held("r1", "alice", 3, 4), startedP1, completedP1, refundingP1),
			when: refund("req-1")},
		{name: "a started payment cannot be refunded", given: cat(held("r1", "alice", 3, 4), startedP1),
			when: refund(""), err: ErrPaymentNotRefundable},
		{name: "refunding a payment the date does not have is not found", when: refund(""), err: ErrPaymentNotFound},
		{name: "a refunding payment finishes its refund", given: cat(held("r1", "alice", 3, 4), startedP1, completedP1, refundingP1),
			when: func(d Date) ([]Event, error) { return d.DecideFinishRefund("p1", after) },
			then: []Event{PaymentRefunded{PaymentID: "p1", RefundedAt: after, SeatNos: []int{3, 4}}}, after: paymentIs("p1", PaymentStatusRefunded)},
	})

	t.Run("a refusal of a multi-seat hold names every seat that was not available", func(t *testing.T) {
		d := fold(Date.Apply, held("r1", "alice", 4), held("r2", "bob", 6))
		_, err := d.DecideHold(holdOf("r3", "carol", 3, 4, 5, 6))
		var u *UnavailableSeatsError
		if !errors.As(err, &u) || !reflect.DeepEqual(u.SeatNos, []int{4, 6}) {
			t.Fatalf("error = %v, want the seats [4 6] named", err)
		}
	})
}

func TestSeatNosOfSortsAndRefusesMalformedLists(t *testing.T) {
	tests := []struct {
		name string
		in   []int
		want []int
	}{
		{"seats given out of order come back ascending", []int{5, 3, 4}, []int{3, 4, 5}},
		{"one seat is a list of one", []int{7}, []int{7}},
		{"eight seats are the most a hold takes", []int{8, 7, 6, 5, 4, 3, 2, 1}, []int{1, 2, 3, 4, 5, 6, 7, 8}},
		{"an empty list is refused", []int{}, nil},
		{"nine seats are refused", []int{1, 2, 3, 4, 5, 6, 7, 8, 9}, nil},
		{"a duplicate is refused", []int{2, 3, 2}, nil},
		{"a negative seat is refused", []int{-1}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := SeatNosOf(tt.in)
			if tt.want == nil {
				if !errors.Is(err, ErrInvalid) {
					t.Fatalf("SeatNosOf(%v) = %v, %v; want ErrInvalid", tt.in, got, err)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("SeatNosOf(%v) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestADateCloneIsNotChangedByWhatIsAppliedToTheOriginal(t *testing.T) {
	held := func(rid string, n int) []Event {
		return []Event{SeatHeld{ReservationID: rid, UserID: "alice", HeldUntil: at(time.Minute), SeatNo: n},
			ReservationHeld{ReservationID: rid, UserID: "alice", ConcertID: "c1", DateID: "d1", SeatNo: n, SeatNos: []int{n}, Price: 100, HeldAt: t0, HeldUntil: at(time.Minute)}}
	}
	d := fold(Date.Apply, held("r1", 1))
	c := d.Clone()
	for _, e := range append(held("r2", 2), PaymentStarted{PaymentID: "p1", ReservationID: "r1", UserID: "alice", Amount: 100, StartedAt: t0}) {
		d = d.Apply(e)
	}
	if _, ok := c.Payment("p1"); ok {
		t.Fatal("the clone knows a payment started on the original after the copy")
	}
	if _, ok := c.Reservation("r2"); ok || c.Seat(2).Status() != SeatStatusAvailable || c.SeatsOwnedBy("alice") != 1 {
		t.Fatalf("the clone changed with the original: r2 known, seat 2 %s, alice owns %d", c.Seat(2).Status(), c.SeatsOwnedBy("alice"))
	}
	if _, ok := c.Reservation("r1"); !ok || c.Seat(1).Status() != SeatStatusHeld {
		t.Fatal("the clone lost what it was cloned with")
	}
	var zero Date
	if z := zero.Clone(); z.Seat(1).Status() != SeatStatusAvailable {
		t.Fatal("a clone of a date without events has a seat taken")
	}
}
