package aggregates

import (
	"errors"
	"reflect"
	"strconv"
	"testing"
	"time"
)

// timed is one commit of a date's history: events recorded at one time.
type timed struct {
	at  time.Time
	evs []Event
}

// foldTimed rebuilds a date as the repository does: each event applied, then Compact at the
// time it was recorded.
func foldTimed(history ...timed) Date {
	var d Date
	for _, c := range history {
		for _, e := range c.evs {
			d = d.Apply(e).Compact(c.at)
		}
	}
	return d
}

func TestDateCompaction(t *testing.T) {
	until := at(5 * time.Minute)
	holdR1 := HoldSeats{ReservationID: "r1", UserID: "alice", ConcertID: "c1", DateID: "d1", SeatNos: []int{1},
		Price: 100, HeldAt: t0, HeldUntil: until}
	held := func(rid, user string, n int) []Event {
		return []Event{SeatHeld{ReservationID: rid, UserID: user, HeldUntil: until, SeatNo: n},
			ReservationHeld{ReservationID: rid, UserID: user, ConcertID: "c1", DateID: "d1", SeatNo: n, SeatNos: []int{n}, Price: 100, HeldAt: t0, HeldUntil: until}}
	}
	expired := func(rid string, n int, when time.Time) []Event {
		return []Event{ReservationExpired{ReservationID: rid, ExpiredAt: when}, SeatReleased{ReservationID: rid, Reason: ReleaseExpired, SeatNo: n}}
	}
	failedPayment := func(rid, pid string, when time.Time) []Event {
		return []Event{PaymentStarted{PaymentID: pid, ReservationID: rid, UserID: "alice", Amount: 100, StartedAt: when, SeatNos: []int{1}},
			ReservationPaymentStarted{ReservationID: rid, PaymentID: pid},
			ReservationPaymentAborted{ReservationID: rid, PaymentID: pid, Reason: FailInsufficientPoints},
			PaymentFailed{PaymentID: pid, Reason: FailInsufficientPoints, FailedAt: when}}
	}
	expiredAt := until.Add(time.Second)
	// r1 ended at expiredAt; a later commit of the date, recorded after, moves its clock.
	endedLongAgo := []timed{{t0, held("r1", "alice", 1)}, {expiredAt, expired("r1", 1, expiredAt)},
		{expiredAt.Add(EndedRetention + time.Second), held("r2", "bob", 2)}}
	endedRecently := []timed{{t0, held("r1", "alice", 1)}, {expiredAt, expired("r1", 1, expiredAt)},
		{expiredAt.Add(EndedRetention - time.Second), held("r2", "bob", 2)}}

	tests := []struct {
		name    string
		history []timed
		when    func(Date) ([]Event, error)
		then    []Event
		err     error
		after   func(*testing.T, Date)
	}{
		{name: "a reservation that ended less than the retention ago is still answered from the date",
			history: endedRecently, when: func(d Date) ([]Event, error) { return d.DecideHold(holdR1) }},
		{name: "a repeated hold of a reservation forgotten since it ended asks the read models instead of holding again",
			history: endedLongAgo, when: func(d Date) ([]Event, error) { return d.DecideHold(holdR1) }, err: ErrCompacted},
		{name: "a hold with an ID known to be new holds on a date that has forgotten records",
			history: endedLongAgo,
			when: func(d Date) ([]Event, error) {
				cmd := holdR1
				cmd.ReservationID, cmd.NewID = "r3", true
				return d.DecideHold(cmd)
			},
			then: []Event{SeatHeld{ReservationID: "r3", UserID: "alice", HeldUntil: until, SeatNo: 1},
				ReservationHeld{ReservationID: "r3", UserID: "alice", ConcertID: "c1", DateID: "d1", SeatNo: 1, SeatNos: []int{1}, Price: 100, HeldAt: t0, HeldUntil: until}}},
		{name: "a cancel of a forgotten reservation asks the read models",
			history: endedLongAgo,
			when:    func(d Date) ([]Event, error) { return d.DecideCancel("r1", Cancel{UserID: "alice", Now: expiredAt}) }, err: ErrCompacted},
		{name: "a payment of a forgotten reservation asks the read models",
			history: endedLongAgo,
			when: func(d Date) ([]Event, error) {
				return d.DecideStartPayment("r1", StartPayment{PaymentID: "p9", UserID: "alice", Now: expiredAt})
			}, err: ErrCompacted},
		{name: "a cancel of a reservation the date never had is not found while nothing was forgotten",
			history: []timed{{t0, held("r2", "bob", 2)}},
			when:    func(d Date) ([]Event, error) { return d.DecideCancel("r1", Cancel{UserID: "alice", Now: t0}) }, err: ErrReservationNotFound},
		{name: "a refund of a failed payment forgotten since asks the read models",
			history: []timed{{t0, held("r1", "alice", 1)}, {at(time.Minute), failedPayment("r1", "p1", at(time.Minute))},
				{at(time.Minute).Add(EndedRetention + time.Second), held("r2", "bob", 2)}},
			when: func(d Date) ([]Event, error) { return d.DecideRefund("p1", RefundPayment{Now: at(5 * time.Minute)}) }, err: ErrCompacted,
			after: func(t *testing.T, d Date) {
				if r, ok := d.Reservation("r1"); !ok || r.Status() != ReservationStatusHeld {
					t.Errorf("reservation r1 = %v (known %v), want it kept HELD: only its failed payment ended", r.Status(), ok)
				}
			}},
		{name: "a live hold is never forgotten, however old",
			history: []timed{{t0, held("r1", "alice", 1)}, {at(time.Hour), held("r2", "bob", 2)}},
			when:    func(d Date) ([]Event, error) { return d.DecideHold(holdR1) },
			after: func(t *testing.T, d Date) {
				if _, ok := d.Reservation("r1"); !ok || d.Compacted() {
					t.Errorf("r1 known %v, compacted %v: want the held reservation kept and nothing forgotten", ok, d.Compacted())
				}
			}},
		{name: "a forgotten reservation's seat is free and its user owns nothing",
			history: endedLongAgo,
			when:    func(d Date) ([]Event, error) { return nil, nil },
			after: func(t *testing.T, d Date) {
				if _, ok := d.Reservation("r1"); ok {
					t.Error("r1 is still in the date after the retention")
				}
				if d.Seat(1).Status() != SeatStatusAvailable || d.SeatsOwnedBy("alice") != 0 {
					t.Errorf("seat 1 is %s and alice owns %d, want AVAILABLE and 0", d.Seat(1).Status(), d.SeatsOwnedBy("alice"))
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := foldTimed(tt.history...)
			got, err := tt.when(d)
			if tt.err != nil || err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("error = %v, want %v", err, tt.err)
				}
			}
			if len(got) != len(tt.then) {
				t.Fatalf("events = %#v, want %#v", got, tt.then)
			}
			for i := range got {
				if !reflect.DeepEqual(got[i], tt.then[i]) {
					t.Fatalf("event %d = %#v, want %#v", i, got[i], tt.then[i])
				}
			}
			if tt.after != nil {
				tt.after(t, d)
			}
		})
	}
}

// TestDateCompactionIsBounded checks that a date whose seats are held and given back over and
// over keeps a state bounded by what ended within the retention, not by its history.
func TestDateCompactionIsBounded(t *testing.T) {
	var d Date
	now := t0
	for i := range 10_000 {
		now = now.Add(100 * time.Millisecond) // 10 reservations a second: 1,800 per retention
		rid := "r" + strconv.Itoa(i)
		for _, e := range []Event{
			SeatHeld{ReservationID: rid, UserID: "u", HeldUntil: now, SeatNo: 1},
			ReservationHeld{ReservationID: rid, UserID: "u", SeatNo: 1, SeatNos: []int{1}, HeldAt: now, HeldUntil: now},
			ReservationCancelled{ReservationID: rid, Reason: ReleaseCancelled, CancelledAt: now},
			SeatReleased{ReservationID: rid, Reason: ReleaseCancelled, SeatNo: 1},
		} {
			d = d.Apply(e).Compact(now)
		}
	}
	if limit := int(EndedRetention/(100*time.Millisecond)) + 2; len(d.reservations) > limit || d.ended.len() > limit {
		t.Fatalf("after 10,000 reservations the date keeps %d (%d ended), want at most %d", len(d.reservations), d.ended.len(), limit)
	}
}
