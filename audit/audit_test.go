package audit_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/app"
	"github.com/booking-engine/booking/audit"
	"github.com/booking-engine/booking/eventstore"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

const (
	ttl = 5 * time.Minute
	// dateKey is the date the tests book: concert c1, date d1, seats 1..10 at 100 points.
	dateKey = "c1.d1"
	// dateStream is where the app appends a date's commits (SEATS_<partition>).
	dateStream = "SEATS"
)

// world plays the sagas with the real deciders and records the events they cause, the way the
// application appends them: one commit per command, on the aggregate the command decides on.
// A concert date decides on its seats and reservations together, so the events of a hold, a
// confirmation or an expiry are one commit of the date's stream, each event with its own
// envelope aggregate (seat/… or reservation/…); wallets and payments have one subject each.
type world struct {
	t       testing.TB
	now     time.Time
	log     []audit.Record
	seq     map[string]uint64
	n       map[string]int             // prefix → the last ID given
	dates   map[string]aggregates.Date // "concert.date" → its seats and reservations
	resDate map[string]string          // reservation → its date
	pays    map[string]aggregates.Payment
	wallets map[string]aggregates.Wallet
}

func newWorld(t testing.TB) *world {
	w := &world{t: t, now: t0, seq: map[string]uint64{}, n: map[string]int{}, dates: map[string]aggregates.Date{},
		resDate: map[string]string{}, pays: map[string]aggregates.Payment{}, wallets: map[string]aggregates.Wallet{}}
	c, err := aggregates.Concert{}.DecideCreate(aggregates.CreateConcert{ConcertID: "c1", Title: "Aurora",
		Dates: []aggregates.DateSpec{{DateID: "d1", StartsAt: t0.Add(720 * time.Hour), SeatCount: 10, Price: 100}}, Now: t0})
	if err != nil {
		t.Fatal(err)
	}
	w.emit(eventstore.TypeConcert, "c1", c...)
	return w
}

// oneCommit turns consecutive records of one stream into one commit: the sequence of the
// first, each at its own index.
func oneCommit(recs []audit.Record) {
	for i := range recs {
		recs[i].Sequence, recs[i].Index = recs[0].Sequence, i
	}
}

// streamOf is the stream of an aggregate type: a date's for seats, reservations and payments.
func streamOf(typ string) string {
	if typ == eventstore.TypeSeat || typ == eventstore.TypeReservation || typ == eventstore.TypePayment {
		return dateStream
	}
	return strings.ToUpper(typ) + "S"
}

// record appends one commit of events, each on the aggregate owner names, and applies them.
func (w *world) record(stream string, owner func(aggregates.Event) (typ, id string), evs ...aggregates.Event) {
	if len(evs) == 0 {
		return
	}
	w.seq[stream]++
	for i, ev := range evs {
		typ, id := owner(ev)
		w.log = append(w.log, audit.Record{AggregateType: typ, AggregateID: id, Stream: stream, Sequence: w.seq[stream], Index: i,
			OccurredAt: w.now, Type: ev.EventType(), Event: ev})
		w.apply(typ, id, ev)
	}
}

func (w *world) apply(typ, id string, ev aggregates.Event) {
	switch typ {
	case eventstore.TypeSeat:
		if c, d, _, ok := aggregates.ParseSeatID(id); ok {
			key := c + "." + d
			w.dates[key] = w.dates[key].Apply(ev)
		}
	case eventstore.TypeReservation:
		if h, ok := ev.(aggregates.ReservationHeld); ok {
			w.resDate[id] = h.ConcertID + "." + h.DateID
		}
		if key, ok := w.resDate[id]; ok {
			w.dates[key] = w.dates[key].Apply(ev)
		}
	case eventstore.TypePayment:
		w.pays[id] = w.pays[id].Apply(ev)
		if key, ok := w.resDate[w.pays[id].Started().ReservationID]; ok {
			w.dates[key] = w.dates[key].Apply(ev)
		}
	case eventstore.TypeWallet:
		w.wallets[id] = w.wallets[id].Apply(ev)
	}
}

// commitOn appends one commit of a date, the way the app does (app.dateEventOwner): a seat
// event is about seat <date>.<seatNo>, a reservation event about its reservation. Called
// directly, it writes what a broken decider would.
func (w *world) commitOn(key string, evs ...aggregates.Event) {
	w.record(dateStream, func(ev aggregates.Event) (string, string) {
		ref := app.DateEventRef(key, ev)
		return ref.Type, ref.ID
	}, evs...)
}

// emit records events on an aggregate without asking its decider, each in a commit of its
// own: the way to corrupt a log.
func (w *world) emit(typ, id string, evs ...aggregates.Event) {
	for _, ev := range evs {
		w.record(streamOf(typ), func(aggregates.Event) (string, string) { return typ, id }, ev)
	}
}

// decide returns a function that commits what a decider answers, or returns its error:
// w.decide(typ, id)(state.DecideX(cmd)).
func (w *world) decide(typ, id string) func([]aggregates.Event, error) error {
	return func(evs []aggregates.Event, err error) error {
		if err != nil {
			return err
		}
		w.record(streamOf(typ), func(aggregates.Event) (string, string) { return typ, id }, evs...)
		return nil
	}
}

// onDate is decide for a date's deciders: w.onDate(key)(w.date(key).DecideX(…)).
func (w *world) onDate(key string) func([]aggregates.Event, error) error {
	return func(evs []aggregates.Event, err error) error {
		if err != nil {
			return err
		}
		w.commitOn(key, evs...)
		return nil
	}
}

func (w *world) date(key string) aggregates.Date { return w.dates[key] }

// res returns a reservation as its date has it.
func (w *world) res(rid string) aggregates.Reservation {
	r, _ := w.dates[w.resDate[rid]].Reservation(rid)
	return r
}

func (w *world) must(err error) {
	w.t.Helper()
	if err != nil {
		w.t.Fatal(err)
	}
}

func (w *world) id(prefix string) string {
	w.n[prefix]++
	return fmt.Sprintf("%s%d", prefix, w.n[prefix])
}

func seat(n int) string { return aggregates.SeatID("c1", "d1", n) }

func (w *world) charge(user string, amount int64) {
	w.must(w.decide(eventstore.TypeWallet, user)(w.wallets[user].DecideCharge(aggregates.Charge{Amount: amount, Reference: w.id("ch")})))
}

// hold holds seats of c1.d1 (ascending) for a new reservation of user: one commit.
func (w *world) hold(user string, nos ...int) string {
	w.t.Helper()
	return w.holdOn("c1", "d1", user, nos...)
}

func (w *world) holdOn(concert, dateID, user string, nos ...int) string {
	w.t.Helper()
	rid := w.id("r")
	key := concert + "." + dateID
	w.must(w.onDate(key)(w.date(key).DecideHold(aggregates.HoldSeats{ReservationID: rid, UserID: user, ConcertID: concert, DateID: dateID,
		SeatNos: nos, Price: 100 * int64(len(nos)), HeldAt: w.now, HeldUntil: w.now.Add(ttl)})))
	return rid
}

// pay runs the payment saga as the app does; beforeConfirm lets a case move the clock
// mid-saga.
func (w *world) pay(rid string, beforeConfirm func()) (string, error) {
	w.t.Helper()
	key := w.resDate[rid]
	h := w.res(rid).Held()
	pid := w.id("p")
	if err := w.onDate(key)(w.date(key).DecideStartPayment(rid, aggregates.StartPayment{PaymentID: pid, UserID: h.UserID, Now: w.now})); err != nil {
		return pid, err
	}
	fail := func(reason string, cause error) (string, error) {
		w.must(w.decide(eventstore.TypeWallet, h.UserID)(w.wallets[h.UserID].DecideRefund(aggregates.RefundDebit{PaymentID: pid, Reason: aggregates.RefundReversal})))
		w.must(w.onDate(key)(w.date(key).DecideFailPayment(pid, reason, w.now)))
		return pid, cause
	}
	if err := w.decide(eventstore.TypeWallet, h.UserID)(w.wallets[h.UserID].DecideDebit(aggregates.Debit{PaymentID: pid, Amount: h.Price})); err != nil {
		return fail(aggregates.FailInsufficientPoints, err)
	}
	if beforeConfirm != nil {
		beforeConfirm()
	}
	if err := w.onDate(key)(w.date(key).DecideCompletePayment(pid, w.now)); err != nil {
		return fail(aggregates.FailNotPayable, err)
	}
	return pid, nil
}

func (w *world) mustPay(rid string) string {
	w.t.Helper()
	pid, err := w.pay(rid, nil)
	w.must(err)
	return pid
}

// expire runs the expiry once the hold lapsed: the expiry and the release of its seats.
func (w *world) expire(rid string) {
	w.now = w.res(rid).Held().HeldUntil
	key := w.resDate[rid]
	w.must(w.onDate(key)(w.date(key).DecideExpire(rid, aggregates.Expire{Now: w.now})))
}

func (w *world) cancel(rid string) {
	key := w.resDate[rid]
	w.must(w.onDate(key)(w.date(key).DecideCancel(rid, aggregates.Cancel{UserID: w.res(rid).Held().UserID, Now: w.now})))
}

// refund runs the refund saga.
func (w *world) refund(pid string) {
	p := w.pays[pid].Started()
	key := w.resDate[p.ReservationID]
	w.must(w.onDate(key)(w.date(key).DecideRefund(pid, aggregates.RefundPayment{Now: w.now})))
	w.must(w.decide(eventstore.TypeWallet, p.UserID)(w.wallets[p.UserID].DecideRefund(aggregates.RefundDebit{PaymentID: pid, Reason: aggregates.RefundRefund})))
	w.must(w.onDate(key)(w.date(key).DecideFinishRefund(pid, w.now)))
}

// busyDay plays every saga, with every way a payment can end.
func busyDay(w *world) {
	w.charge("u1", 1000)
	w.charge("u2", 150)
	w.charge("u3", 50)
	w.mustPay(w.hold("u1", 1))           // a sale
	w.refund(w.mustPay(w.hold("u1", 2))) // a sale refunded
	w.mustPay(w.hold("u2", 2))           // the refunded seat sold again
	w.expire(w.hold("u1", 3))            // a lapsed hold
	w.cancel(w.hold("u1", 4))            // a cancelled hold
	w.mustPay(w.hold("u1", 4))           // the cancelled seat sold
	poor := w.hold("u3", 5)
	if _, err := w.pay(poor, nil); err == nil { // too few points
		w.t.Fatal("a payment without enough points succeeded")
	}
	w.cancel(poor)
	r := w.hold("u1", 6) // the hold lapses during the payment: the debit is reversed
	if _, err := w.pay(r, func() { w.now = w.now.Add(ttl) }); err == nil {
		w.t.Fatal("a payment of a lapsed hold succeeded")
	}
	w.expire(r)
	paid := w.hold("u1", 7)
	w.mustPay(paid)
	if _, err := w.pay(paid, nil); err == nil { // paying twice fails at the lock
		w.t.Fatal("a reservation was paid twice")
	}
	w.hold("u2", 8) // still held
}

func audited(log []audit.Record, opts audit.Options) audit.Report {
	a := audit.New(opts)
	for _, r := range log {
		a.Add(r)
	}
	return a.Report()
}

func TestCorrectLogsPass(t *testing.T) {
	tests := []struct {
		name string
		play func(w *world)
	}{
		{name: "an empty catalog passes", play: func(*world) {}},
		{name: "a hold then a payment passes", play: func(w *world) { w.charge("u1", 100); w.mustPay(w.hold("u1", 1)) }},
		{name: "a refunded sale passes", play: func(w *world) { w.charge("u1", 100); w.refund(w.mustPay(w.hold("u1", 1))) }},
		{name: "a day of holds, sales, refunds, expiries and failures passes", play: busyDay},
		{name: "a hold of three seats, paid, passes", play: func(w *world) { w.charge("u1", 300); w.mustPay(w.hold("u1", 2, 5, 9)) }},
		{name: "a hold of three seats that lapsed passes", play: func(w *world) { w.expire(w.hold("u1", 2, 5, 9)) }},
		{name: "a hold of three seats cancelled passes", play: func(w *world) { w.cancel(w.hold("u1", 2, 5, 9)) }},
		{name: "a sale of three seats refunded, then its seats held by others, passes", play: func(w *world) {
			w.charge("u1", 300)
			w.refund(w.mustPay(w.hold("u1", 2, 5, 9)))
			w.hold("u2", 5)
			w.hold("u3", 1, 2, 9)
		}},
		{name: "two holds of the date stored as one commit pass", play: func(w *world) {
			w.hold("u1", 1, 2)
			w.hold("u2", 3, 4)
			oneCommit(w.log[len(w.log)-6:])
		}},
		{name: "two charges stored as one commit pass", play: func(w *world) {
			w.charge("u1", 10)
			w.charge("u1", 20)
			oneCommit(w.log[len(w.log)-2:])
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			tt.play(w)
			rep := audited(w.log, audit.Options{Now: w.now})
			if !rep.OK() || len(rep.Warnings) > 0 {
				t.Fatalf("findings in a correct log:\n%s", text(t, rep))
			}
			if rep.Events != len(w.log) {
				t.Errorf("events = %d, want %d", rep.Events, len(w.log))
			}
		})
	}
}

func TestBusyDayLedger(t *testing.T) {
	w := newWorld(t)
	busyDay(w)
	rep := audited(w.log, audit.Options{})
	want := audit.Ledger{Charged: 1200, Debited: 600, Refunded: 200, Balance: 800}
	if rep.Ledger != want {
		t.Errorf("ledger = %+v, want %+v", rep.Ledger, want)
	}
	if rep.Aggregates[eventstore.TypeSeat] != 8 || rep.Aggregates[eventstore.TypeWallet] != 3 || rep.Aggregates[eventstore.TypeConcert] != 1 {
		t.Errorf("aggregates = %v", rep.Aggregates)
	}
}

// The streams are independent: the verdict must not depend on how they interleave.
func TestStreamInterleavingDoesNotMatter(t *testing.T) {
	w := newWorld(t)
	busyDay(w)
	// Corrupt it too, so that the findings are compared as well.
	w.emit(eventstore.TypeWallet, "u1", aggregates.PointsDebited{Amount: 100, PaymentID: "p-ghost"})
	w.emit(eventstore.TypeReservation, "r-lost", aggregates.ReservationHeld{ReservationID: "r-lost", UserID: "u9", ConcertID: "c1", DateID: "d1", SeatNo: 9, Price: 100})
	byStream := map[string][]audit.Record{}
	var order []string
	for _, r := range w.log {
		if _, ok := byStream[r.Stream]; !ok {
			order = append(order, r.Stream)
		}
		byStream[r.Stream] = append(byStream[r.Stream], r)
	}
	want := audited(w.log, audit.Options{})
	if want.OK() {
		t.Fatal("the corrupted log passed")
	}
	for _, perm := range [][]string{order, reversed(order)} {
		var log []audit.Record
		for _, s := range perm {
			log = append(log, byStream[s]...)
		}
		got := audited(log, audit.Options{})
		if !equalJSON(t, got, want) {
			t.Errorf("streams read in order %v:\n%s\nwant\n%s", perm, text(t, got), text(t, want))
		}
	}
}

func reversed(s []string) []string {
	r := slices.Clone(s)
	slices.Reverse(r)
	return r
}

// held opens reservation rid on seats nos for u1 in one commit, without a decider.
func held(w *world, rid string, nos ...int) {
	var evs []aggregates.Event
	for _, n := range nos {
		evs = append(evs, aggregates.SeatHeld{ReservationID: rid, UserID: "u1", HeldUntil: w.now.Add(ttl), SeatNo: n})
	}
	w.commitOn(dateKey, append(evs, aggregates.ReservationHeld{ReservationID: rid, UserID: "u1", ConcertID: "c1", DateID: "d1",
		SeatNo: nos[0], SeatNos: nos, Price: 100 * int64(len(nos)), HeldAt: w.now, HeldUntil: w.now.Add(ttl)})...)
}

// paidWithout runs a payment of rid by u1 by hand, commit by commit as the app does, leaving
// out the events named in skip.
func paidWithout(w *world, rid, pid string, skip ...string) {
	r := w.res(rid)
	amount := r.Held().Price
	keep := func(evs ...aggregates.Event) []aggregates.Event {
		return slices.DeleteFunc(evs, func(ev aggregates.Event) bool { return slices.Contains(skip, ev.EventType()) })
	}
	w.commitOn(dateKey, keep(aggregates.PaymentStarted{PaymentID: pid, ReservationID: rid, UserID: "u1", Amount: amount},
		aggregates.ReservationPaymentStarted{ReservationID: rid, PaymentID: pid})...)
	w.record("WALLETS", func(aggregates.Event) (string, string) { return eventstore.TypeWallet, "u1" },
		keep(aggregates.PointsDebited{Amount: amount, PaymentID: pid})...)
	confirm := []aggregates.Event{aggregates.ReservationConfirmed{ReservationID: rid, PaymentID: pid}}
	for _, n := range r.SeatNos() {
		confirm = append(confirm, aggregates.SeatSold{ReservationID: rid, PaymentID: pid, SeatNo: n})
	}
	w.commitOn(dateKey, keep(append(confirm, aggregates.PaymentCompleted{PaymentID: pid})...)...)
}

func TestCorruptedLogsAreCaught(t *testing.T) {
	tests := []struct {
		name      string
		corrupt   func(w *world)
		check     string
		aggregate string
	}{
		{
			name: "a seat held for a second reservation while the first holds it is a double hold",
			corrupt: func(w *world) {
				w.hold("u1", 1)
				held(w, "r-second", 1)
			},
			check: audit.CheckSeatDoubleHold, aggregate: "seat/c1.d1.1",
		},
		{
			name: "a sold seat held again is a double hold",
			corrupt: func(w *world) {
				w.charge("u1", 100)
				w.mustPay(w.hold("u1", 1))
				held(w, "r-late", 1)
			},
			check: audit.CheckSeatDoubleHold, aggregate: "seat/c1.d1.1",
		},
		{
			name: "a hold appended twice for the same reservation is a double hold",
			corrupt: func(w *world) {
				r := w.hold("u1", 1)
				w.emit(eventstore.TypeSeat, seat(1), aggregates.SeatHeld{ReservationID: r, UserID: "u1", HeldUntil: w.now.Add(ttl)})
			},
			check: audit.CheckSeatDoubleHold, aggregate: "seat/c1.d1.1",
		},
		{
			name: "a seat sold to a reservation that does not hold it is caught",
			corrupt: func(w *world) {
				w.charge("u1", 100)
				w.hold("u1", 1)
				r2 := w.hold("u1", 2)
				paidWithout(w, r2, "p-wrong-seat", "SeatSold")
				w.emit(eventstore.TypeSeat, seat(1), aggregates.SeatSold{ReservationID: r2, PaymentID: "p-wrong-seat"})
			},
			check: audit.CheckSeatSoldWithoutHold, aggregate: "seat/c1.d1.1",
		},
		{
			name: "a seat sold twice is caught",
			corrupt: func(w *world) {
				w.charge("u1", 100)
				r := w.hold("u1", 1)
				pid := w.mustPay(r)
				w.emit(eventstore.TypeSeat, seat(1), aggregates.SeatSold{ReservationID: r, PaymentID: pid})
			},
			check: audit.CheckSeatDoubleSale, aggregate: "seat/c1.d1.1",
		},
		{
			name: "a sold seat released by an expiry is caught",
			corrupt: func(w *world) {
				w.charge("u1", 100)
				r := w.hold("u1", 1)
				w.mustPay(r)
				w.emit(eventstore.TypeSeat, seat(1), aggregates.SeatReleased{ReservationID: r, Reason: aggregates.ReleaseExpired})
			},
			check: audit.CheckSeatBadRelease, aggregate: "seat/c1.d1.1",
		},
		{
			name: "a seat released by a reservation that does not hold it is caught",
			corrupt: func(w *world) {
				w.hold("u1", 1)
				w.emit(eventstore.TypeSeat, seat(1), aggregates.SeatReleased{ReservationID: "r-other", Reason: aggregates.ReleaseCancelled})
			},
			check: audit.CheckSeatBadRelease, aggregate: "seat/c1.d1.1",
		},
		{
			name: "a payment debited twice is caught",
			corrupt: func(w *world) {
				w.charge("u1", 1000)
				pid := w.mustPay(w.hold("u1", 1))
				w.emit(eventstore.TypeWallet, "u1", aggregates.PointsDebited{Amount: 100, PaymentID: pid})
			},
			check: audit.CheckPaymentDoubleDebit, aggregate: "payment/p1",
		},
		{
			name: "a payment debited from two wallets is caught",
			corrupt: func(w *world) {
				w.charge("u1", 1000)
				w.charge("u2", 1000)
				pid := w.mustPay(w.hold("u1", 1))
				w.emit(eventstore.TypeWallet, "u2", aggregates.PointsDebited{Amount: 100, PaymentID: pid})
			},
			check: audit.CheckPaymentDoubleDebit, aggregate: "payment/p1",
		},
		{
			name: "a wallet whose balance goes negative is caught",
			corrupt: func(w *world) {
				w.charge("u1", 50)
				paidWithout(w, w.hold("u1", 1), "p-overdrawn")
			},
			check: audit.CheckWalletNegative, aggregate: "wallet/u1",
		},
		{
			name: "a confirmed reservation without a payment is caught",
			corrupt: func(w *world) {
				r := w.hold("u1", 1)
				w.emit(eventstore.TypeReservation, r, aggregates.ReservationPaymentStarted{PaymentID: "p-none"}, aggregates.ReservationConfirmed{PaymentID: "p-none"})
				w.emit(eventstore.TypeSeat, seat(1), aggregates.SeatSold{ReservationID: r, PaymentID: "p-none"})
			},
			check: audit.CheckReservationUnpaid, aggregate: "reservation/r1",
		},
		{
			name: "a confirmed reservation whose payment failed is caught",
			corrupt: func(w *world) {
				w.charge("u1", 100)
				r := w.hold("u1", 1)
				paidWithout(w, r, "p-failed", "PaymentCompleted")
				w.emit(eventstore.TypePayment, "p-failed", aggregates.PaymentFailed{Reason: "X"})
			},
			check: audit.CheckReservationUnpaid, aggregate: "reservation/r1",
		},
		{
			name: "a reservation paid by two completed payments is caught",
			corrupt: func(w *world) {
				w.charge("u1", 1000)
				r := w.hold("u1", 1)
				w.mustPay(r)
				w.emit(eventstore.TypePayment, "p-extra", aggregates.PaymentStarted{PaymentID: "p-extra", ReservationID: r, UserID: "u1", Amount: 100}, aggregates.PaymentCompleted{})
				w.emit(eventstore.TypeWallet, "u1", aggregates.PointsDebited{Amount: 100, PaymentID: "p-extra"})
			},
			check: audit.CheckReservationPayments, aggregate: "reservation/r1",
		},
		{
			name: "a confirmed reservation whose seat is still only held is caught",
			corrupt: func(w *world) {
				w.charge("u1", 100)
				r := w.hold("u1", 1)
				paidWithout(w, r, "p-unsold", "SeatSold")
			},
			check: audit.CheckReservationNotSold, aggregate: "reservation/r1",
		},
		{
			name: "a debit neither paid for nor reversed is caught",
			corrupt: func(w *world) {
				w.charge("u1", 100)
				r := w.hold("u1", 1)
				paidWithout(w, r, "p-lost", "ReservationConfirmed", "SeatSold", "PaymentCompleted")
				w.emit(eventstore.TypeReservation, r, aggregates.ReservationPaymentAborted{PaymentID: "p-lost"})
				w.emit(eventstore.TypePayment, "p-lost", aggregates.PaymentFailed{Reason: aggregates.FailNotPayable})
			},
			check: audit.CheckDebitUnpaid, aggregate: "wallet/u1",
		},
		{
			name: "a debit for a payment that was never started is caught",
			corrupt: func(w *world) {
				w.charge("u1", 100)
				w.emit(eventstore.TypeWallet, "u1", aggregates.PointsDebited{Amount: 100, PaymentID: "p-ghost"})
			},
			check: audit.CheckDebitUnpaid, aggregate: "wallet/u1",
		},
		{
			name: "a debit of another amount than the payment is caught",
			corrupt: func(w *world) {
				w.charge("u1", 1000)
				r := w.hold("u1", 1)
				w.emit(eventstore.TypePayment, "p-odd", aggregates.PaymentStarted{PaymentID: "p-odd", ReservationID: r, UserID: "u1", Amount: 100})
				w.emit(eventstore.TypeReservation, r, aggregates.ReservationPaymentStarted{PaymentID: "p-odd"})
				w.emit(eventstore.TypeWallet, "u1", aggregates.PointsDebited{Amount: 70, PaymentID: "p-odd"})
				w.emit(eventstore.TypeReservation, r, aggregates.ReservationConfirmed{PaymentID: "p-odd"})
				w.emit(eventstore.TypeSeat, seat(1), aggregates.SeatSold{ReservationID: r, PaymentID: "p-odd"})
				w.emit(eventstore.TypePayment, "p-odd", aggregates.PaymentCompleted{})
			},
			check: audit.CheckPaymentAmount, aggregate: "payment/p-odd",
		},
		{
			name: "a completed payment without a debit is caught",
			corrupt: func(w *world) {
				paidWithout(w, w.hold("u1", 1), "p-free", "PointsDebited")
			},
			check: audit.CheckPaymentWithoutDebit, aggregate: "payment/p-free",
		},
		{
			name: "a refund of a debit twice is caught",
			corrupt: func(w *world) {
				w.charge("u1", 100)
				pid := w.mustPay(w.hold("u1", 1))
				w.refund(pid)
				w.emit(eventstore.TypeWallet, "u1", aggregates.PointsRefunded{Amount: 100, PaymentID: pid, Reason: aggregates.RefundRefund})
			},
			check: audit.CheckWalletDoubleRefund, aggregate: "wallet/u1",
		},
		{
			name: "a refund of a payment that never debited is caught",
			corrupt: func(w *world) {
				w.emit(eventstore.TypeWallet, "u1", aggregates.PointsRefunded{Amount: 100, PaymentID: "p-never", Reason: aggregates.RefundRefund})
			},
			check: audit.CheckWalletRefundWithoutDebit, aggregate: "wallet/u1",
		},
		{
			name: "a refunded payment whose points never came back is caught",
			corrupt: func(w *world) {
				w.charge("u1", 100)
				r := w.hold("u1", 1)
				paidWithout(w, r, "p-kept")
				w.emit(eventstore.TypePayment, "p-kept", aggregates.PaymentRefundStarted{})
				w.emit(eventstore.TypeReservation, r, aggregates.ReservationCancelled{Reason: aggregates.ReleaseRefunded, PaymentID: "p-kept"})
				w.emit(eventstore.TypeSeat, seat(1), aggregates.SeatReleased{ReservationID: r, Reason: aggregates.ReleaseRefunded})
				w.emit(eventstore.TypePayment, "p-kept", aggregates.PaymentRefunded{})
			},
			check: audit.CheckPaymentRefund, aggregate: "payment/p-kept",
		},
		{
			name: "a charge of zero points is caught",
			corrupt: func(w *world) {
				w.emit(eventstore.TypeWallet, "u1", aggregates.PointsCharged{Amount: 0, Reference: "zero"})
			},
			check: audit.CheckWalletAmount, aggregate: "wallet/u1",
		},
		{
			name: "an expired hold that never released its seat is caught",
			corrupt: func(w *world) {
				r := w.hold("u1", 1)
				w.now = w.now.Add(ttl)
				w.emit(eventstore.TypeReservation, r, aggregates.ReservationExpired{ExpiredAt: w.now})
			},
			check: audit.CheckSeatNotReleased, aggregate: "seat/c1.d1.1",
		},
		{
			name: "a cancelled hold whose seat is still held, even before heldUntil, is caught",
			corrupt: func(w *world) {
				r := w.hold("u1", 1)
				w.emit(eventstore.TypeReservation, r, aggregates.ReservationCancelled{ReservationID: r, Reason: aggregates.ReleaseCancelled})
			},
			check: audit.CheckSeatNotReleased, aggregate: "seat/c1.d1.1",
		},
		{
			name: "a refund that kept the seat sold is caught",
			corrupt: func(w *world) {
				w.charge("u1", 100)
				r := w.hold("u1", 1)
				pid := w.mustPay(r)
				w.emit(eventstore.TypePayment, pid, aggregates.PaymentRefundStarted{})
				w.emit(eventstore.TypeReservation, r, aggregates.ReservationCancelled{Reason: aggregates.ReleaseRefunded, PaymentID: pid})
				w.emit(eventstore.TypeWallet, "u1", aggregates.PointsRefunded{Amount: 100, PaymentID: pid, Reason: aggregates.RefundRefund})
				w.emit(eventstore.TypePayment, pid, aggregates.PaymentRefunded{})
			},
			check: audit.CheckSeatNotReleased, aggregate: "seat/c1.d1.1",
		},
		{
			name: "a seat sold to a reservation that expired is caught",
			corrupt: func(w *world) {
				r := w.hold("u1", 1)
				w.emit(eventstore.TypeReservation, r, aggregates.ReservationExpired{})
				w.emit(eventstore.TypeSeat, seat(1), aggregates.SeatSold{ReservationID: r, PaymentID: "p-late"})
			},
			check: audit.CheckSeatSoldUnconfirmed, aggregate: "seat/c1.d1.1",
		},
		{
			name: "a completed payment whose reservation expired is caught",
			corrupt: func(w *world) {
				w.charge("u1", 100)
				r := w.hold("u1", 1)
				paidWithout(w, r, "p-expired", "ReservationConfirmed", "SeatSold")
			},
			check: audit.CheckPaymentReservation, aggregate: "payment/p-expired",
		},
		{
			name: "a payment left STARTED after recovery is a violation",
			corrupt: func(w *world) {
				w.charge("u1", 100)
				paidWithout(w, w.hold("u1", 1), "p-stuck", "ReservationConfirmed", "SeatSold", "PaymentCompleted")
			},
			check: audit.CheckPaymentInFlight, aggregate: "payment/p-stuck",
		},
		{
			name: "a reservation left locked by a failed payment is caught",
			corrupt: func(w *world) {
				r := w.hold("u1", 1)
				w.emit(eventstore.TypePayment, "p-gone", aggregates.PaymentStarted{PaymentID: "p-gone", ReservationID: r, UserID: "u1", Amount: 100})
				w.emit(eventstore.TypeReservation, r, aggregates.ReservationPaymentStarted{PaymentID: "p-gone"})
				w.emit(eventstore.TypePayment, "p-gone", aggregates.PaymentFailed{Reason: aggregates.FailInsufficientPoints})
			},
			check: audit.CheckReservationLock, aggregate: "reservation/r1",
		},
		{
			name: "a reservation confirmed twice is a bad transition",
			corrupt: func(w *world) {
				w.charge("u1", 100)
				r := w.hold("u1", 1)
				pid := w.mustPay(r)
				w.emit(eventstore.TypeReservation, r, aggregates.ReservationConfirmed{PaymentID: pid})
			},
			check: audit.CheckReservationTransition, aggregate: "reservation/r1",
		},
		{
			name: "a payment completed after it failed is a bad transition",
			corrupt: func(w *world) {
				w.charge("u1", 10)
				pid, _ := w.pay(w.hold("u1", 1), nil)
				w.emit(eventstore.TypePayment, pid, aggregates.PaymentCompleted{})
			},
			check: audit.CheckPaymentTransition, aggregate: "payment/p1",
		},
		{
			name: "a reservation opened for a seat that was never held for it is caught",
			corrupt: func(w *world) {
				w.emit(eventstore.TypeReservation, "r-seatless", aggregates.ReservationHeld{ReservationID: "r-seatless", UserID: "u1", ConcertID: "c1", DateID: "d1", SeatNo: 3, Price: 100})
			},
			check: audit.CheckReservationSeat, aggregate: "reservation/r-seatless",
		},
		{
			name: "a held reservation whose seat was released is caught",
			corrupt: func(w *world) {
				r := w.hold("u1", 1)
				w.emit(eventstore.TypeSeat, seat(1), aggregates.SeatReleased{ReservationID: r, Reason: aggregates.ReleaseExpired})
			},
			check: audit.CheckReservationSeat, aggregate: "reservation/r1",
		},
		{
			name: "a seat of a date that does not exist is caught",
			corrupt: func(w *world) {
				w.emit(eventstore.TypeSeat, "c1.d9.1", aggregates.SeatHeld{ReservationID: "r-x", UserID: "u1"})
			},
			check: audit.CheckSeatCatalog, aggregate: "seat/c1.d9.1",
		},
		{
			name: "a seat number beyond the date's seats is caught",
			corrupt: func(w *world) {
				w.emit(eventstore.TypeSeat, "c1.d1.11", aggregates.SeatHeld{ReservationID: "r-x", UserID: "u1"})
			},
			check: audit.CheckSeatCatalog, aggregate: "seat/c1.d1.11",
		},
		{
			name: "a seat event stored on a wallet is caught",
			corrupt: func(w *world) {
				w.emit(eventstore.TypeWallet, "u1", aggregates.SeatHeld{ReservationID: "r-x", UserID: "u1"})
			},
			check: audit.CheckForeignEvent, aggregate: "wallet/u1",
		},
		{
			name: "an event that cannot be decoded is caught",
			corrupt: func(w *world) {
				w.seq["WALLETS"]++
				w.log = append(w.log, audit.Record{AggregateType: eventstore.TypeWallet, AggregateID: "u1", Stream: "WALLETS", Sequence: w.seq["WALLETS"],
					Type: "PointsStolen", DecodeError: "unknown event type"})
			},
			check: audit.CheckUndecodable, aggregate: "wallet/u1",
		},
		{
			name: "a stream fed out of order is caught",
			corrupt: func(w *world) {
				w.charge("u1", 10)
				w.charge("u1", 20)
				n := len(w.log)
				w.log[n-1], w.log[n-2] = w.log[n-2], w.log[n-1]
			},
			check: audit.CheckOutOfOrder, aggregate: "wallet/u1",
		},
		{
			name: "the events of one commit fed out of their order are caught",
			corrupt: func(w *world) {
				w.charge("u1", 10)
				w.charge("u1", 20)
				n := len(w.log)
				oneCommit(w.log[n-2:])
				w.log[n-2].Index, w.log[n-1].Index = 1, 0
			},
			check: audit.CheckOutOfOrder, aggregate: "wallet/u1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			tt.corrupt(w)
			rep := audited(w.log, audit.Options{Now: w.now})
			if rep.OK() {
				t.Fatalf("the corrupted log passed:\n%s", text(t, rep))
			}
			if !has(rep.Violations, tt.check, tt.aggregate) {
				t.Fatalf("no %s violation naming %s:\n%s", tt.check, tt.aggregate, text(t, rep))
			}
			var out bytes.Buffer
			if err := rep.WriteText(&out); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out.String(), tt.aggregate) || !strings.Contains(out.String(), tt.check) {
				t.Errorf("the text report does not name %s and %s:\n%s", tt.check, tt.aggregate, out.String())
			}
		})
	}
}

// A reservation and its seats are one decision of the date and one commit: given a log
// where they came apart, the audit names the reservation or the seat.
func TestSeatsOfAReservationMoveTogether(t *testing.T) {
	tests := []struct {
		name      string
		given     func(w *world)
		when      func(w *world)
		check     string
		aggregate string
	}{
		{
			name:  "a reservation that lists a seat another HELD reservation lists is caught",
			given: func(w *world) { w.hold("u1", 1, 2) },
			when: func(w *world) { // seat 2 never held for it: only the reservations tell
				w.commitOn(dateKey, aggregates.SeatHeld{ReservationID: "r-greedy", UserID: "u2", SeatNo: 3},
					aggregates.ReservationHeld{ReservationID: "r-greedy", UserID: "u2", ConcertID: "c1", DateID: "d1", SeatNo: 2, SeatNos: []int{2, 3}, Price: 200})
			},
			check: audit.CheckSeatTwoReservations, aggregate: "seat/c1.d1.2",
		},
		{
			name: "a reservation that lists a seat another CONFIRMED reservation lists is caught",
			given: func(w *world) {
				w.charge("u1", 100)
				w.mustPay(w.hold("u1", 4))
			},
			when: func(w *world) {
				w.commitOn(dateKey, aggregates.ReservationHeld{ReservationID: "r-late", UserID: "u2", ConcertID: "c1", DateID: "d1", SeatNo: 4, SeatNos: []int{4}, Price: 100})
			},
			check: audit.CheckSeatTwoReservations, aggregate: "seat/c1.d1.4",
		},
		{
			name:  "a seat held for a reservation that was never opened is a violation",
			given: func(*world) {},
			when: func(w *world) {
				w.commitOn(dateKey, aggregates.SeatHeld{ReservationID: "r-unopened", UserID: "u1", HeldUntil: w.now.Add(ttl), SeatNo: 1})
			},
			check: audit.CheckSeatOrphanHold, aggregate: "seat/c1.d1.1",
		},
		{
			name:  "a seat held in a commit apart from its reservation's opening is a violation",
			given: func(*world) {},
			when: func(w *world) { // the two steps of the old hold saga
				w.commitOn(dateKey, aggregates.SeatHeld{ReservationID: "r-2step", UserID: "u1", HeldUntil: w.now.Add(ttl), SeatNo: 1})
				w.commitOn(dateKey, aggregates.ReservationHeld{ReservationID: "r-2step", UserID: "u1", ConcertID: "c1", DateID: "d1", SeatNo: 1, SeatNos: []int{1}, Price: 100})
			},
			check: audit.CheckSeatOrphanHold, aggregate: "seat/c1.d1.1",
		},
		{
			name:  "a seat held by a reservation that does not list it is caught",
			given: func(*world) {},
			when: func(w *world) {
				w.commitOn(dateKey, aggregates.SeatHeld{ReservationID: "r-extra", UserID: "u1", SeatNo: 1}, aggregates.SeatHeld{ReservationID: "r-extra", UserID: "u1", SeatNo: 2},
					aggregates.ReservationHeld{ReservationID: "r-extra", UserID: "u1", ConcertID: "c1", DateID: "d1", SeatNo: 1, SeatNos: []int{1}, Price: 100})
			},
			check: audit.CheckReservationSeat, aggregate: "reservation/r-extra",
		},
		{
			name:  "a reservation that lists a seat its commit did not hold is caught",
			given: func(*world) {},
			when:  func(w *world) { held(w, "r-short", 1, 2); w.log = slices.Delete(w.log, len(w.log)-2, len(w.log)-1) },
			check: audit.CheckReservationSeat, aggregate: "reservation/r-short",
		},
		{
			name:  "a confirmation that sold one of two seats is caught, even once refunded",
			given: func(w *world) { w.charge("u1", 200) },
			when: func(w *world) {
				r := w.hold("u1", 1, 2)
				paidWithout(w, r, "p-half", "SeatSold")
				n := len(w.log) // the confirmation sold seat 1 only
				w.log = slices.Insert(w.log, n-1, audit.Record{AggregateType: eventstore.TypeSeat, AggregateID: seat(1), Stream: dateStream, Sequence: w.log[n-2].Sequence, Index: 1,
					Type: "SeatSold", Event: aggregates.SeatSold{ReservationID: r, PaymentID: "p-half", SeatNo: 1}})
				w.refund("p-half")
			},
			check: audit.CheckReservationSeatsApart, aggregate: "reservation/r1",
		},
		{
			name:  "a seat sold in a commit apart from its confirmation is caught",
			given: func(w *world) { w.charge("u1", 200) },
			when: func(w *world) {
				paidWithout(w, w.hold("u1", 1, 2), "p-late", "SeatSold", "PaymentCompleted")
				w.commitOn(dateKey, aggregates.SeatSold{ReservationID: "r1", PaymentID: "p-late", SeatNo: 1}, aggregates.SeatSold{ReservationID: "r1", PaymentID: "p-late", SeatNo: 2})
				w.emit(eventstore.TypePayment, "p-late", aggregates.PaymentCompleted{})
			},
			check: audit.CheckReservationSeatsApart, aggregate: "reservation/r1",
		},
		{
			name:  "a seat released in a commit apart from its reservation's expiry is caught",
			given: func(w *world) { w.hold("u1", 1, 2) },
			when: func(w *world) {
				w.now = w.now.Add(ttl)
				w.commitOn(dateKey, aggregates.ReservationExpired{ReservationID: "r1", ExpiredAt: w.now},
					aggregates.SeatReleased{ReservationID: "r1", Reason: aggregates.ReleaseExpired, SeatNo: 1})
				w.commitOn(dateKey, aggregates.SeatReleased{ReservationID: "r1", Reason: aggregates.ReleaseExpired, SeatNo: 2})
			},
			check: audit.CheckReservationSeatsApart, aggregate: "reservation/r1",
		},
		{
			name:  "a reservation whose seats end in different states is caught",
			given: func(w *world) { w.hold("u1", 1, 2) },
			when: func(w *world) { // no event of r1 out of place: another writer freed its seat 2
				w.commitOn(dateKey, aggregates.SeatReleased{ReservationID: "r-other", Reason: aggregates.ReleaseCancelled, SeatNo: 2})
			},
			check: audit.CheckReservationSeatsApart, aggregate: "reservation/r1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			tt.given(w)
			if rep := audited(w.log, audit.Options{Now: w.now}); !rep.OK() {
				t.Fatalf("given a correct log, found:\n%s", text(t, rep))
			}
			tt.when(w)
			rep := audited(w.log, audit.Options{Now: w.now, AllowInFlight: true})
			if !has(rep.Violations, tt.check, tt.aggregate) {
				t.Fatalf("no %s violation naming %s:\n%s", tt.check, tt.aggregate, text(t, rep))
			}
		})
	}
}

func TestInFlightAndPendingStates(t *testing.T) {
	stuck := func(w *world) { // paid and confirmed: the crash came before /complete
		w.charge("u1", 200)
		paidWithout(w, w.hold("u1", 1, 2), "p-run", "PaymentCompleted")
	}
	refunding := func(w *world) { // the reservation cancelled and its seats released: before /refund-points
		w.charge("u1", 200)
		r := w.hold("u1", 1, 2)
		pid := w.mustPay(r)
		w.must(w.onDate(dateKey)(w.date(dateKey).DecideRefund(pid, aggregates.RefundPayment{Now: w.now})))
	}
	lapsed := func(w *world) { // the sweeper has not expired it yet
		w.hold("u1", 1, 2)
		w.now = w.now.Add(ttl)
	}
	tests := []struct {
		name          string
		play          func(w *world)
		allowInFlight bool
		ok            bool
		warning       string
	}{
		{name: "a payment still running is a violation in a log at rest", play: stuck},
		{name: "a payment still running is a warning when in-flight states are allowed", play: stuck, allowInFlight: true, ok: true, warning: audit.CheckPaymentInFlight},
		{name: "a refund still running is a violation in a log at rest", play: refunding},
		{name: "a refund still running is a warning when in-flight states are allowed", play: refunding, allowInFlight: true, ok: true, warning: audit.CheckPaymentInFlight},
		{name: "a hold past its heldUntil is a warning", play: lapsed, ok: true, warning: audit.CheckReservationLapsed},
		{name: "a hold past its heldUntil is a warning when in-flight states are allowed", play: lapsed, allowInFlight: true, ok: true, warning: audit.CheckReservationLapsed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := newWorld(t)
			tt.play(w)
			rep := audited(w.log, audit.Options{AllowInFlight: tt.allowInFlight, Now: w.now})
			if rep.OK() != tt.ok {
				t.Fatalf("OK = %v, want %v:\n%s", rep.OK(), tt.ok, text(t, rep))
			}
			if tt.warning != "" && !slices.ContainsFunc(rep.Warnings, func(f audit.Finding) bool { return f.Check == tt.warning }) {
				t.Fatalf("no %s warning:\n%s", tt.warning, text(t, rep))
			}
		})
	}
}

func TestReportRendering(t *testing.T) {
	w := newWorld(t)
	w.hold("u1", 1)
	held(w, "r-second", 1)
	rep := audited(w.log, audit.Options{})
	var out bytes.Buffer
	if err := rep.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if got := lines[len(lines)-1]; got != rep.Summary() || !strings.HasPrefix(got, "verify FAILED: 5 events in 2 streams, 4 aggregates, 3 violations") {
		t.Errorf("last line = %q", got)
	}
	if !strings.Contains(out.String(), "seat/c1.d1.1 at SEATS:2: held for reservation r-second while HELD by reservation r1 (since SEATS:1) [reservation/r1 reservation/r-second]") {
		t.Errorf("report:\n%s", out.String())
	}
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back audit.Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !equalJSON(t, back, rep) || !has(back.Violations, audit.CheckSeatDoubleHold, "seat/c1.d1.1") {
		t.Errorf("JSON round trip: %s", b)
	}
}

func has(fs []audit.Finding, check, aggregate string) bool {
	return slices.ContainsFunc(fs, func(f audit.Finding) bool { return f.Check == check && f.Aggregate == aggregate })
}

func text(t testing.TB, rep audit.Report) string {
	t.Helper()
	var b bytes.Buffer
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func equalJSON(t *testing.T, a, b any) bool {
	t.Helper()
	x, err := json.Marshal(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := json.Marshal(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}

// BenchmarkAudit measures the audit per event over a log of paid bookings.
func BenchmarkAudit(b *testing.B) {
	w := newWorld(b)
	w.emit(eventstore.TypeConcert, "big", aggregates.ConcertCreated{ConcertID: "big", Dates: []aggregates.DateSpec{{DateID: "d1", SeatCount: 20_000, Price: 100}}})
	for i := range 20_000 {
		user := fmt.Sprintf("u%d", i%1000)
		w.charge(user, 100)
		w.mustPay(w.holdOn("big", "d1", user, i+1))
	}
	if rep := audited(w.log, audit.Options{}); !rep.OK() {
		b.Fatalf("the benchmark log fails:\n%s", text(b, rep))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		audited(w.log, audit.Options{})
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(w.log)), "ns/event")
}
