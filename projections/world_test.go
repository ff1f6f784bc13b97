package projections

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/app"
	"github.com/booking-engine/booking/eventstore"
)

// world writes valid histories: every command is decided by the aggregates' deciders on the
// state folded from the log, and appended with the version it read, as the app does. Seats and
// reservations are decided on their concert date (aggregates.Date) and appended in the date's
// commits, each event naming its seat or reservation (eventstore.Event.Ref).
type world struct {
	t     testing.TB
	store fullStore
	mu    sync.Mutex // the sell-out hook appends from the engine's goroutine
	now   time.Time
	// payDelay passes between a payment's debit and its confirmation.
	payDelay time.Duration
	order    []loggedEvent // every appended event, in append order (for the golden file)
	// dateOf is the date (its aggregate ID, "concert.date") of every reservation held, as the app remembers
	// it: a command naming a reservation only is decided on its date.
	dateOf map[string]string
	// payDate is the date of every payment started, as the app remembers it.
	payDate map[string]string
	// sold and sellOuts are the truth about sell-outs, kept as the seat events are appended:
	// the seats sold per date, and every moment a date became sold out (by dateKey).
	sold     map[string]map[int]bool
	sellOuts map[string][]time.Time
}

// loggedEvent is one appended event and the aggregate whose commit stored it: a seat's or a
// reservation's event is stored in its date's commit.
type loggedEvent struct {
	eventstore.Envelope
	Commit eventstore.AggregateRef
}

// fullStore is what the tests write to and the engine reads.
type fullStore interface {
	eventstore.Store
	Store
}

var epoch = time.Date(2026, 3, 14, 9, 0, 0, 0, time.UTC)

func newWorld(t testing.TB) *world {
	w := &world{t: t, now: epoch, dateOf: map[string]string{}, payDate: map[string]string{}, sold: map[string]map[int]bool{}, sellOuts: map[string][]time.Time{}}
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
		batch[i] = eventstore.Event{Type: ev.EventType(), Data: data, Ref: app.EventRef(ref, ev)}
	}
	if _, err := w.store.Append(context.Background(), ref, v, batch, "", eventstore.Metadata{OccurredAt: w.clock()}); err != nil {
		return err
	}
	got, _ := w.store.Load(context.Background(), ref, v)
	w.mu.Lock()
	for _, env := range got {
		w.order = append(w.order, loggedEvent{Envelope: env, Commit: ref})
	}
	w.mu.Unlock()
	if ref.Type == eventstore.TypeDate {
		for _, ev := range evs {
			if n, ok := aggregates.EventSeatNo(ev); ok {
				w.track(ref.ID, n, ev)
			}
		}
	}
	return nil
}

func (w *world) track(id string, n int, ev aggregates.Event) {
	c, d, _ := strings.Cut(id, ".")
	dk := dateKey(c, d)
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

func seatIDOf(dateAgg string, n int) string { return fmt.Sprintf("%s.%d", dateAgg, n) }

// loadAs folds the events of one aggregate into its state with apply, and returns its version.
func loadAs[S any](w *world, typ, id string, apply func(S, aggregates.Event) S) (S, uint64) {
	evs, v := w.load(ref(typ, id))
	var s S
	for _, e := range evs {
		s = apply(s, e)
	}
	return s, v
}

// date folds the commits of a date (dateAgg is its aggregate ID, "concert.date") into the
// state its commands decide on.
func (w *world) date(dateAgg string) (aggregates.Date, uint64) {
	return loadAs(w, eventstore.TypeDate, dateAgg, aggregates.Date.Apply)
}

// decideDate decides one command on a date and appends what it decided as one commit.
func (w *world) decideDate(dateAgg string, decide func(aggregates.Date) ([]aggregates.Event, error)) error {
	d, v := w.date(dateAgg)
	evs, err := decide(d)
	if err != nil {
		return err
	}
	return w.append(ref(eventstore.TypeDate, dateAgg), v, evs)
}

// reservation returns a reservation held through the world and the key of its date.
func (w *world) reservation(id string) (aggregates.Reservation, string) {
	dateAgg, ok := w.dateOf[id]
	if !ok {
		return aggregates.Reservation{}, ""
	}
	d, _ := w.date(dateAgg)
	r, _ := d.Reservation(id)
	return r, dateAgg
}

// payment returns a payment started through the world, from its date, and the date's key.
func (w *world) payment(id string) (aggregates.Payment, string) {
	dateAgg := w.payDate[id]
	d, _ := w.date(dateAgg)
	p, _ := d.Payment(id)
	return p, dateAgg
}

// decideWallet decides one command of a user's wallet on the user's wallet group and appends
// what it decided as one commit of the group.
func (w *world) decideWallet(user string, decide func(aggregates.Wallet) ([]aggregates.Event, error)) error {
	group := eventstore.WalletGroupOf(user)
	ws, v := loadAs(w, group.Type, group.ID, aggregates.Wallets.Apply)
	evs, err := ws.Decide(user, decide)
	if err != nil {
		return err
	}
	return w.append(group, v, evs)
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

// hold holds one seat for a new reservation.
func (w *world) hold(resID, user, c, d string, n int, ttl time.Duration) error {
	return w.holdSeats(resID, user, c, d, ttl, n)
}

// holdSeats holds several seats of a date for one new reservation, in one commit of the date:
// a SeatHeld per seat and the ReservationHeld, or nothing.
func (w *world) holdSeats(resID, user, c, d string, ttl time.Duration, nos ...int) error {
	concert := w.concert(c)
	if !concert.Exists() {
		return aggregates.ErrConcertNotFound
	}
	spec, ok := concert.Date(d)
	if !ok {
		return aggregates.ErrDateNotFound
	}
	nos, err := aggregates.SeatNosOf(nos)
	if err != nil {
		return err
	}
	var price int64
	for _, n := range nos {
		p, ok := spec.PriceOf(n)
		if !ok {
			return aggregates.ErrSeatNotFound
		}
		price += p
	}
	now := w.clock()
	dateAgg := c + "." + d
	err = w.decideDate(dateAgg, func(date aggregates.Date) ([]aggregates.Event, error) {
		return date.DecideHold(aggregates.HoldSeats{ReservationID: resID, UserID: user, ConcertID: c, DateID: d,
			SeatNos: nos, Price: price, HeldAt: now, HeldUntil: now.Add(ttl)})
	})
	if err != nil {
		return err
	}
	w.dateOf[resID] = dateAgg
	return nil
}

func (w *world) charge(user string, amount int64, reference string) error {
	return w.chargeInOneCommit(user, reference, amount)
}

// chargeInOneCommit decides one charge per amount, each on the state the previous one left,
// and appends them all as one commit: the shape of a group commit.
func (w *world) chargeInOneCommit(user, reference string, amounts ...int64) error {
	return w.decideWallet(user, func(wl aggregates.Wallet) ([]aggregates.Event, error) {
		var all []aggregates.Event
		for i, amount := range amounts {
			r := reference
			if len(amounts) > 1 {
				r = fmt.Sprintf("%s-%d", reference, i)
			}
			evs, err := wl.DecideCharge(aggregates.Charge{Amount: amount, Reference: r})
			if err != nil {
				return nil, err
			}
			for _, ev := range evs {
				wl = wl.Apply(ev)
			}
			all = append(all, evs...)
		}
		return all, nil
	})
}

// pay runs the payment saga as the app does: PaymentStarted with the reservation's lock (one
// commit of its date), the debit, the confirmation with the sale of every seat and
// PaymentCompleted (one commit of the date). A refused start leaves nothing; a refusal after
// it ends the payment FAILED with its lock released (one commit), reversing a debit.
func (w *world) pay(payID, resID, user string) error {
	r, dateAgg := w.reservation(resID)
	if !r.Exists() {
		return aggregates.ErrReservationNotFound
	}
	if err := w.startPayment(payID, resID, user); err != nil {
		return err
	}
	fail := func(reason string) {
		w.must(w.decideDate(dateAgg, func(d aggregates.Date) ([]aggregates.Event, error) {
			return d.DecideFailPayment(payID, reason, w.clock())
		}))
	}
	err := w.decideWallet(user, func(wl aggregates.Wallet) ([]aggregates.Event, error) {
		return wl.DecideDebit(aggregates.Debit{PaymentID: payID, Amount: r.Held().Price})
	})
	if errors.Is(err, aggregates.ErrInsufficientPoints) {
		fail(aggregates.FailInsufficientPoints)
		return err
	}
	w.must(err)
	w.tick(w.payDelay)
	if err := w.decideDate(dateAgg, func(d aggregates.Date) ([]aggregates.Event, error) {
		return d.DecideCompletePayment(payID, w.clock())
	}); err != nil {
		w.must(w.decideWallet(user, func(wl aggregates.Wallet) ([]aggregates.Event, error) {
			return wl.DecideRefund(aggregates.RefundDebit{PaymentID: payID, Reason: aggregates.RefundReversal})
		}))
		fail(aggregates.FailNotPayable)
		return err
	}
	return nil
}

// startPayment is a payment's first round: its start with the reservation's lock.
func (w *world) startPayment(payID, resID, user string) error {
	dateAgg := w.dateOf[resID]
	if err := w.decideDate(dateAgg, func(d aggregates.Date) ([]aggregates.Event, error) {
		return d.DecideStartPayment(resID, aggregates.StartPayment{PaymentID: payID, UserID: user, Now: w.clock()})
	}); err != nil {
		return err
	}
	w.payDate[payID] = dateAgg
	return nil
}

// startPaymentOnly leaves a payment as a crash right after its first round would.
func (w *world) startPaymentOnly(payID, resID, user string) {
	w.must(w.startPayment(payID, resID, user))
}

// startRefundOnly leaves a refund as a crash right after its gate would.
func (w *world) startRefundOnly(payID string) {
	w.must(w.refundGate(payID))
}

// refundGate is a refund's first round: its gate with the reservation's cancellation and the
// release of its seats.
func (w *world) refundGate(payID string) error {
	return w.decideDate(w.payDate[payID], func(d aggregates.Date) ([]aggregates.Event, error) {
		return d.DecideRefund(payID, aggregates.RefundPayment{Now: w.clock()})
	})
}

// expire expires a lapsed hold and frees its seats, in one commit of its date.
func (w *world) expire(resID string) error {
	dateAgg, ok := w.dateOf[resID]
	if !ok {
		return aggregates.ErrReservationNotFound
	}
	return w.decideDate(dateAgg, func(d aggregates.Date) ([]aggregates.Event, error) {
		return d.DecideExpire(resID, aggregates.Expire{Now: w.clock()})
	})
}

// cancel cancels a hold at its owner's request and frees its seats, in one commit of its date.
func (w *world) cancel(resID, user string) error {
	dateAgg, ok := w.dateOf[resID]
	if !ok {
		return aggregates.ErrReservationNotFound
	}
	return w.decideDate(dateAgg, func(d aggregates.Date) ([]aggregates.Event, error) {
		return d.DecideCancel(resID, aggregates.Cancel{UserID: user, Now: w.clock()})
	})
}

// refund runs the refund saga as the app does: the gate with the reservation's cancellation
// and the release of its seats (one commit of its date), the points back, PaymentRefunded.
func (w *world) refund(payID string) error {
	if err := w.refundGate(payID); err != nil {
		return err
	}
	p, dateAgg := w.payment(payID)
	st := p.Started()
	w.must(w.decideWallet(st.UserID, func(wl aggregates.Wallet) ([]aggregates.Event, error) {
		return wl.DecideRefund(aggregates.RefundDebit{PaymentID: payID, Reason: aggregates.RefundRefund})
	}))
	return w.decideDate(dateAgg, func(d aggregates.Date) ([]aggregates.Event, error) {
		return d.DecideFinishRefund(payID, w.clock())
	})
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

// logLine is one event of a recorded log: its envelope, its position in its commit (0 starts
// a commit) and, when its commit was appended to another aggregate than its own (a seat's or
// a reservation's event in its date's commit), that aggregate as "type/id".
type logLine struct {
	eventstore.Envelope
	Index  int    `json:"index,omitempty"`
	Commit string `json:"commit,omitempty"`
}

// writeLog writes the events in append order, one JSON object a line.
func writeLog(path string, events []loggedEvent) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	enc := json.NewEncoder(bw)
	for _, ev := range events {
		line := logLine{Envelope: ev.Envelope, Index: ev.Envelope.Index}
		if own := ref(ev.AggregateType, ev.AggregateID); own != ev.Commit {
			line.Commit = ev.Commit.String()
		}
		if err := enc.Encode(line); err != nil {
			return err
		}
	}
	if err := bw.Flush(); err != nil {
		return err
	}
	return f.Close()
}

// loadLog appends a recorded log to a fresh store commit by commit, in the recorded order,
// which reproduces its stream sequences.
func loadLog(t testing.TB, path string) *eventstore.MemStore {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	store := eventstore.NewMemStore()
	versions := map[eventstore.AggregateRef]uint64{}
	var commit eventstore.AggregateRef
	var events []eventstore.Event
	flush := func() {
		if len(events) == 0 {
			return
		}
		v, err := store.Append(context.Background(), commit, versions[commit], events, "", eventstore.Metadata{})
		if err != nil {
			t.Fatal(err)
		}
		versions[commit], events = v, nil
	}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line logLine
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatal(err)
		}
		env := line.Envelope
		own := ref(env.AggregateType, env.AggregateID)
		if line.Index == 0 {
			flush()
			commit = own
			if line.Commit != "" {
				typ, id, ok := strings.Cut(line.Commit, "/")
				if !ok {
					t.Fatalf("commit %q is not type/id", line.Commit)
				}
				commit = ref(typ, id)
			}
		}
		ev := eventstore.Event{Type: env.Type, Data: env.Data,
			Meta: &eventstore.Metadata{OccurredAt: env.OccurredAt, CorrelationID: env.CorrelationID, CausationID: env.CausationID}}
		if own != commit {
			ev.Ref = &own
		}
		events = append(events, ev)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	flush()
	return store
}
