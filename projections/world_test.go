package projections

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// world writes valid histories: every command is decided by the aggregates' deciders on the
// state folded from the log, and appended with the version it read, as the app does.
type world struct {
	t     testing.TB
	store fullStore
	mu    sync.Mutex // the sell-out hook appends from the engine's goroutine
	now   time.Time
	// payDelay passes between a payment's debit and its confirmation.
	payDelay time.Duration
	order    []eventstore.Envelope // every appended envelope, in append order (for the golden file)
	// sold and sellOuts are the truth about sell-outs, kept as the seat events are appended:
	// the seats sold per date, and every moment a date became sold out.
	sold     map[string]map[int]bool
	sellOuts map[string][]time.Time
}

// fullStore is what the tests write to and the engine reads.
type fullStore interface {
	eventstore.Store
	Store
}

var epoch = time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC)

func newWorld(t testing.TB) *world {
	w := &world{t: t, now: epoch, sold: map[string]map[int]bool{}, sellOuts: map[string][]time.Time{}}
	w.store = eventstore.NewMemStore(eventstore.WithMemClock(w.clock))
	return w
}

func (w *world) tick(d time.Duration) { w.mu.Lock(); w.now = w.now.Add(d); w.mu.Unlock() }

func (w *world) clock() time.Time { w.mu.Lock(); defer w.mu.Unlock(); return w.now }

func (w *world) load(ref eventstore.AggregateRef) ([]aggregates.Event, uint64) {
	envs, err := w.store.Load(context.Background(), ref, 0)
	if err != nil {
		w.t.Fatalf("load %s: %v", ref, err)
	}
	var evs []aggregates.Event
	var v uint64
	for _, env := range envs {
		ev, err := aggregates.Decode(env.Type, env.Data)
		if err != nil {
			w.t.Fatalf("decode: %v", err)
		}
		evs = append(evs, ev)
		v = env.Sequence
	}
	return evs, v
}

// append appends the events decided for ref at version v, as one commit.
func (w *world) append(ref eventstore.AggregateRef, v uint64, evs []aggregates.Event) error {
	if len(evs) == 0 {
		return nil
	}
	batch := make([]eventstore.Event, len(evs))
	for i, ev := range evs {
		data, err := aggregates.Encode(ev)
		if err != nil {
			w.t.Fatalf("encode: %v", err)
		}
		batch[i] = eventstore.Event{Type: ev.EventType(), Data: data}
	}
	if _, err := w.store.Append(context.Background(), ref, v, batch, "", eventstore.Metadata{OccurredAt: w.clock()}); err != nil {
		return err
	}
	got, _ := w.store.Load(context.Background(), ref, v)
	w.mu.Lock()
	w.order = append(w.order, got...)
	w.mu.Unlock()
	if ref.Type == eventstore.TypeSeat {
		for _, ev := range evs {
			w.track(ref.ID, ev)
		}
	}
	return nil
}

func (w *world) track(id string, ev aggregates.Event) {
	dk, n, _ := parseSeatID(id)
	c, d := splitDateKey(dk)
	if w.sold[dk] == nil {
		w.sold[dk] = map[int]bool{}
	}
	switch ev.(type) {
	case aggregates.SeatSold:
		w.sold[dk][n] = true
		spec, _ := w.concert(c).Date(d)
		if len(w.sold[dk]) == spec.SeatCount {
			w.mu.Lock()
			w.sellOuts[dk] = append(w.sellOuts[dk], w.now)
			w.mu.Unlock()
		}
	case aggregates.SeatReleased:
		delete(w.sold[dk], n)
	}
}

func (w *world) must(err error) {
	w.t.Helper()
	if err != nil {
		w.t.Fatal(err)
	}
}

func ref(typ, id string) eventstore.AggregateRef { return eventstore.AggregateRef{Type: typ, ID: id} }

func seatID(c, d string, n int) string { return fmt.Sprintf("%s.%s.%d", c, d, n) }

// loadAs folds the events of one aggregate into its state with apply, and returns its version.
func loadAs[S any](w *world, typ, id string, apply func(S, aggregates.Event) S) (S, uint64) {
	evs, v := w.load(ref(typ, id))
	var s S
	for _, e := range evs {
		s = apply(s, e)
	}
	return s, v
}

func (w *world) seat(c, d string, n int) (aggregates.Seat, uint64) {
	return loadAs(w, eventstore.TypeSeat, seatID(c, d, n), aggregates.Seat.Apply)
}

func (w *world) reservation(id string) (aggregates.Reservation, uint64) {
	return loadAs(w, eventstore.TypeReservation, id, aggregates.Reservation.Apply)
}

func (w *world) payment(id string) (aggregates.Payment, uint64) {
	return loadAs(w, eventstore.TypePayment, id, aggregates.Payment.Apply)
}

func (w *world) wallet(user string) (aggregates.Wallet, uint64) {
	return loadAs(w, eventstore.TypeWallet, user, aggregates.Wallet.Apply)
}

func (w *world) concert(id string) aggregates.Concert {
	c, _ := loadAs(w, eventstore.TypeConcert, id, aggregates.Concert.Apply)
	return c
}

func (w *world) createConcert(id, title string, dates ...aggregates.DateSpec) error {
	evs, err := w.concert(id).DecideCreate(aggregates.CreateConcert{ConcertID: id, Title: title, Dates: dates, Now: w.clock()})
	if err != nil {
		return err
	}
	return w.append(ref(eventstore.TypeConcert, id), 0, evs)
}

func date(id string, seats int, price int64, ranges ...aggregates.PriceRange) aggregates.DateSpec {
	return aggregates.DateSpec{DateID: id, StartsAt: epoch.AddDate(0, 1, 0), SeatCount: seats, Price: price, SeatPrices: ranges}
}

func (w *world) hold(resID, user, c, d string, n int, ttl time.Duration) error {
	concert := w.concert(c)
	if !concert.Exists() {
		return aggregates.ErrConcertNotFound
	}
	spec, ok := concert.Date(d)
	if !ok {
		return aggregates.ErrDateNotFound
	}
	price, ok := spec.PriceOf(n)
	if !ok {
		return aggregates.ErrSeatNotFound
	}
	now := w.clock()
	s, v := w.seat(c, d, n)
	evs, err := s.DecideHold(aggregates.HoldSeat{ReservationID: resID, UserID: user, HeldUntil: now.Add(ttl)})
	if err != nil {
		return err
	}
	if err := w.append(ref(eventstore.TypeSeat, seatID(c, d, n)), v, evs); err != nil {
		return err
	}
	r, rv := w.reservation(resID)
	evs, err = r.DecideOpen(aggregates.ReservationHeld{ReservationID: resID, UserID: user, ConcertID: c, DateID: d, SeatNo: n,
		Price: price, HeldAt: now, HeldUntil: now.Add(ttl)})
	if err != nil {
		return err
	}
	return w.append(ref(eventstore.TypeReservation, resID), rv, evs)
}

func (w *world) charge(user string, amount int64, reference string) error {
	return w.chargeInOneCommit(user, reference, amount)
}

// chargeInOneCommit decides one charge per amount, each on the state the previous one left,
// and appends them all as one commit: the shape of a group commit.
func (w *world) chargeInOneCommit(user, reference string, amounts ...int64) error {
	wl, v := w.wallet(user)
	var all []aggregates.Event
	for i, amount := range amounts {
		r := reference
		if len(amounts) > 1 {
			r = fmt.Sprintf("%s-%d", reference, i)
		}
		evs, err := wl.DecideCharge(aggregates.Charge{Amount: amount, Reference: r})
		if err != nil {
			return err
		}
		for _, ev := range evs {
			wl = wl.Apply(ev)
		}
		all = append(all, evs...)
	}
	return w.append(ref(eventstore.TypeWallet, user), v, all)
}

// pay runs the payment saga as the app does.
func (w *world) pay(payID, resID, user string) error {
	r, rv := w.reservation(resID)
	if !r.Exists() {
		return aggregates.ErrReservationNotFound
	}
	held := r.Held()
	p, pv := w.payment(payID)
	evs, err := p.DecideStart(aggregates.PaymentStarted{PaymentID: payID, ReservationID: resID, UserID: user, Amount: held.Price, StartedAt: w.clock()})
	w.must(err)
	w.must(w.append(ref(eventstore.TypePayment, payID), pv, evs))
	fail := func(reason string) error {
		r, rv := w.reservation(resID)
		evs, err := r.DecideAbortPayment(aggregates.AbortPayment{PaymentID: payID, Reason: reason})
		w.must(err)
		w.must(w.append(ref(eventstore.TypeReservation, resID), rv, evs))
		p, pv := w.payment(payID)
		evs, err = p.DecideFail(reason, w.clock())
		w.must(err)
		w.must(w.append(ref(eventstore.TypePayment, payID), pv, evs))
		return nil
	}
	evs, err = r.DecideStartPayment(aggregates.StartPayment{PaymentID: payID, UserID: user, Now: w.clock()})
	if err != nil {
		_ = fail(aggregates.FailNotPayable)
		return err
	}
	w.must(w.append(ref(eventstore.TypeReservation, resID), rv, evs))
	wl, wv := w.wallet(user)
	evs, err = wl.DecideDebit(aggregates.Debit{PaymentID: payID, Amount: held.Price})
	if errors.Is(err, aggregates.ErrInsufficientPoints) {
		_ = fail(aggregates.FailInsufficientPoints)
		return err
	}
	w.must(err)
	w.must(w.append(ref(eventstore.TypeWallet, user), wv, evs))
	w.tick(w.payDelay)
	r, rv = w.reservation(resID)
	evs, err = r.DecideConfirm(aggregates.Confirm{PaymentID: payID, Now: w.clock()})
	if err != nil {
		wl, wv := w.wallet(user)
		evs, err2 := wl.DecideRefund(aggregates.RefundDebit{PaymentID: payID, Reason: aggregates.RefundReversal})
		w.must(err2)
		w.must(w.append(ref(eventstore.TypeWallet, user), wv, evs))
		_ = fail(aggregates.FailNotPayable)
		return err
	}
	w.must(w.append(ref(eventstore.TypeReservation, resID), rv, evs))
	s, sv := w.seat(held.ConcertID, held.DateID, held.SeatNo)
	evs, err = s.DecideSell(aggregates.SellSeat{ReservationID: resID, PaymentID: payID})
	w.must(err)
	w.must(w.append(ref(eventstore.TypeSeat, seatID(held.ConcertID, held.DateID, held.SeatNo)), sv, evs))
	p, pv = w.payment(payID)
	evs, err = p.DecideComplete(w.clock())
	w.must(err)
	return w.append(ref(eventstore.TypePayment, payID), pv, evs)
}

// startPaymentOnly leaves a payment as a crash right after its first step would.
func (w *world) startPaymentOnly(payID, resID, user string) {
	r, _ := w.reservation(resID)
	p, pv := w.payment(payID)
	evs, err := p.DecideStart(aggregates.PaymentStarted{PaymentID: payID, ReservationID: resID, UserID: user, Amount: r.Held().Price, StartedAt: w.clock()})
	w.must(err)
	w.must(w.append(ref(eventstore.TypePayment, payID), pv, evs))
}

// startRefundOnly leaves a refund as a crash right after its gate would.
func (w *world) startRefundOnly(payID string) {
	p, pv := w.payment(payID)
	evs, err := p.DecideRefund(w.clock())
	w.must(err)
	w.must(w.append(ref(eventstore.TypePayment, payID), pv, evs))
}

func (w *world) releaseSeat(resID, reason string) {
	r, _ := w.reservation(resID)
	h := r.Held()
	s, sv := w.seat(h.ConcertID, h.DateID, h.SeatNo)
	evs, err := s.DecideRelease(aggregates.ReleaseSeat{ReservationID: resID, Reason: reason})
	w.must(err)
	w.must(w.append(ref(eventstore.TypeSeat, seatID(h.ConcertID, h.DateID, h.SeatNo)), sv, evs))
}

func (w *world) expire(resID string) error {
	r, rv := w.reservation(resID)
	evs, err := r.DecideExpire(aggregates.Expire{Now: w.clock()})
	if err != nil || len(evs) == 0 {
		return err
	}
	w.must(w.append(ref(eventstore.TypeReservation, resID), rv, evs))
	w.releaseSeat(resID, aggregates.ReleaseExpired)
	return nil
}

func (w *world) cancel(resID, user string) error {
	r, rv := w.reservation(resID)
	evs, err := r.DecideCancel(aggregates.Cancel{UserID: user, Now: w.clock()})
	if err != nil {
		return err
	}
	w.must(w.append(ref(eventstore.TypeReservation, resID), rv, evs))
	w.releaseSeat(resID, aggregates.ReleaseCancelled)
	return nil
}

func (w *world) refund(payID string) error {
	p, pv := w.payment(payID)
	evs, err := p.DecideRefund(w.clock())
	if err != nil {
		return err
	}
	w.must(w.append(ref(eventstore.TypePayment, payID), pv, evs))
	st := p.Started()
	r, rv := w.reservation(st.ReservationID)
	evs, err = r.DecideCancelForRefund(aggregates.CancelForRefund{PaymentID: payID, Now: w.clock()})
	w.must(err)
	w.must(w.append(ref(eventstore.TypeReservation, st.ReservationID), rv, evs))
	wl, wv := w.wallet(st.UserID)
	evs, err = wl.DecideRefund(aggregates.RefundDebit{PaymentID: payID, Reason: aggregates.RefundRefund})
	w.must(err)
	w.must(w.append(ref(eventstore.TypeWallet, st.UserID), wv, evs))
	w.releaseSeat(st.ReservationID, aggregates.ReleaseRefunded)
	p, pv = w.payment(payID)
	evs, err = p.DecideFinishRefund(w.clock())
	w.must(err)
	return w.append(ref(eventstore.TypePayment, payID), pv, evs)
}

// soldOut is the app's sell-out hook: it records the first sell-out of a date, once.
func (w *world) soldOut(ctx context.Context, c, d string, at time.Time) error {
	r := ref(eventstore.TypeSellOut, c+"."+d)
	evs, v := w.load(r)
	var s aggregates.SellOut
	for _, e := range evs {
		s = s.Apply(e)
	}
	concert := w.concert(c)
	out, err := s.DecideRecord(aggregates.RecordSellOut{ConcertID: c, DateID: d, SoldOutAt: at, SalesOpenedAt: concert.Created().SalesOpenedAt})
	if err != nil {
		return err
	}
	err = w.append(r, v, out)
	if errors.Is(err, eventstore.ErrConcurrency) {
		return nil
	}
	return err
}

// writeLog writes the envelopes in append order, one JSON object a line.
func writeLog(path string, envs []eventstore.Envelope) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	enc := json.NewEncoder(bw)
	for _, env := range envs {
		if err := enc.Encode(env); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// loadLog appends a recorded log to a fresh store in the recorded order, which reproduces its
// stream sequences.
func loadLog(t testing.TB, path string) *eventstore.MemStore {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	store := eventstore.NewMemStore()
	versions := map[eventstore.AggregateRef]uint64{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var env eventstore.Envelope
		if err := json.Unmarshal(sc.Bytes(), &env); err != nil {
			t.Fatal(err)
		}
		r := eventstore.AggregateRef{Type: env.AggregateType, ID: env.AggregateID}
		v, err := store.Append(context.Background(), r, versions[r], []eventstore.Event{{Type: env.Type, Data: env.Data}}, "",
			eventstore.Metadata{OccurredAt: env.OccurredAt, CorrelationID: env.CorrelationID, CausationID: env.CausationID})
		if err != nil {
			t.Fatal(err)
		}
		versions[r] = v
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return store
}
