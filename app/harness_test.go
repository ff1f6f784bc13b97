package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"

	"github.com/booking-engine/booking/internal/testclock"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

// faultyLog fails the appends whose dedup ID ends with one of the armed step suffixes, once
// each, as if the process died right before that step.
// after runs a function once an append of a step has landed, as if the world moved on right
// after that step (a clock advancing, another writer).
type faultyLog struct {
	EventLog
	t     testing.TB // told when an event's Value is not what decoding it gives
	mu    sync.Mutex
	armed map[string]bool
	after map[string]func()
}

// then arms fn to run right after the next append of step has landed.
func (f *faultyLog) then(step string, fn func()) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.after == nil {
		f.after = map[string]func(){}
	}
	f.after[step] = fn
}

func (f *faultyLog) arm(steps ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed = map[string]bool{}
	for _, s := range steps {
		f.armed[s] = true
	}
}

func (f *faultyLog) Append(ctx context.Context, agg eventstore.AggregateRef, expected uint64, events []eventstore.Event, dedupID string, meta eventstore.Metadata) (uint64, error) {
	f.mu.Lock()
	for step := range f.armed {
		if strings.HasSuffix(dedupID, step) {
			delete(f.armed, step)
			f.mu.Unlock()
			return 0, fmt.Errorf("injected crash before %s: %w", step, eventstore.ErrUnavailable)
		}
	}
	f.mu.Unlock()
	// The readers of this process take an event's Value for its decoding: it must be that.
	for _, ev := range events {
		if ev.Value == nil {
			continue
		}
		if got, err := aggregates.Decode(ev.Type, ev.Data); err != nil || !reflect.DeepEqual(got, ev.Value) {
			f.t.Errorf("appended a %s whose Value\n%#v\nis not what decoding it gives\n%#v (%v)", ev.Type, ev.Value, got, err)
		}
	}
	ver, err := f.EventLog.Append(ctx, agg, expected, events, dedupID, meta)
	if err == nil {
		f.mu.Lock()
		var fn func()
		for step, g := range f.after {
			if strings.HasSuffix(dedupID, step) {
				fn = g
				delete(f.after, step)
			}
		}
		f.mu.Unlock()
		if fn != nil {
			fn()
		}
	}
	return ver, err
}

// logReads is a ReadSide computed straight from the log, so app tests need no projections.
type logReads struct{ log EventLog }

func (r logReads) HeldSeats(ctx context.Context) ([]HeldSeat, error) {
	seats := map[string]aggregates.Seat{}
	err := r.each(ctx, eventstore.TypeSeat, func(id string, ev aggregates.Event) { seats[id] = seats[id].Apply(ev) })
	var out []HeldSeat
	for id, s := range seats {
		if s.Status() == aggregates.SeatStatusHeld {
			c, d, n, _ := aggregates.ParseSeatID(id)
			out = append(out, HeldSeat{ConcertID: c, DateID: d, SeatNo: n, ReservationID: s.Reservation(), HeldUntil: s.HeldUntil()})
		}
	}
	return out, err
}

func (r logReads) PendingPayments(ctx context.Context) ([]string, error) {
	pays := map[string]aggregates.Payment{}
	err := r.each(ctx, eventstore.TypePayment, func(id string, ev aggregates.Event) { pays[id] = pays[id].Apply(ev) })
	var out []string
	for id, p := range pays {
		if p.Status() == aggregates.PaymentStatusStarted || p.Status() == aggregates.PaymentStatusRefunding {
			out = append(out, id)
		}
	}
	return out, err
}

func (r logReads) ReservationDate(ctx context.Context, reservationID string) (string, string, error) {
	var c, d string
	err := r.each(ctx, eventstore.TypeReservation, func(id string, ev aggregates.Event) {
		if h, ok := ev.(aggregates.ReservationHeld); ok && id == reservationID {
			c, d = h.ConcertID, h.DateID
		}
	})
	if err == nil && c == "" {
		err = aggregates.ErrReservationNotFound
	}
	return c, d, err
}

func (r logReads) PaymentReservation(ctx context.Context, paymentID string) (string, error) {
	var resID string
	err := r.each(ctx, eventstore.TypePayment, func(id string, ev aggregates.Event) {
		if s, ok := ev.(aggregates.PaymentStarted); ok && id == paymentID {
			resID = s.ReservationID
		}
	})
	if err == nil && resID == "" {
		err = aggregates.ErrPaymentNotFound
	}
	return resID, err
}

// AppliedPaymentReservation reads the log, which has always applied everything.
func (r logReads) AppliedPaymentReservation(ctx context.Context, paymentID string) (string, error) {
	return r.PaymentReservation(ctx, paymentID)
}

// Reservation folds a reservation from the log, as the reservations read model has it.
func (r logReads) Reservation(ctx context.Context, reservationID string) (Reservation, error) {
	var res aggregates.Reservation
	err := r.each(ctx, eventstore.TypeReservation, func(id string, ev aggregates.Event) {
		if id == reservationID {
			res = res.Apply(ev)
		}
	})
	if err == nil && !res.Exists() {
		err = aggregates.ErrReservationNotFound
	}
	return reservationResult(res), err
}

// Payment folds a payment from the log, as the payments read model shows it.
func (r logReads) Payment(ctx context.Context, paymentID string) (Payment, error) {
	var p aggregates.Payment
	err := r.each(ctx, eventstore.TypePayment, func(id string, ev aggregates.Event) {
		if id == paymentID {
			p = p.Apply(ev)
		}
	})
	if err == nil && (!p.Exists() || p.Status() == aggregates.PaymentStatusStarted) {
		err = aggregates.ErrPaymentNotFound
	}
	return paymentResult(p), err
}

// each calls fn with every event of aggregates of type typ, in log order.
func (r logReads) each(ctx context.Context, typ string, fn func(id string, ev aggregates.Event)) error {
	for _, stream := range eventstore.StreamsOf(typ) {
		err := r.log.Replay(ctx, stream, 0, false, func(batch []eventstore.Envelope) error {
			for _, env := range batch {
				if env.AggregateType != typ {
					continue
				}
				ev, err := aggregates.Decode(env.Type, env.Data)
				if err != nil {
					return err
				}
				fn(env.AggregateID, ev)
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}

type harness struct {
	t     *testing.T
	ctx   context.Context
	log   EventLog
	fault *faultyLog
	clock *testclock.Clock
	svc   *Service
}

type storeKind struct {
	name string
	open func(t *testing.T) EventLog
	sole bool // the service is told it is the only writer
}

var stores = []storeKind{
	{name: "memory", open: func(t *testing.T) EventLog { return eventstore.NewMemStore() }},
	{name: "jetstream", open: func(t *testing.T) EventLog {
		s, err := eventstore.Open(context.Background(), eventstore.Options{DataDir: t.TempDir(), Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}},
}

// withSoleWriter adds, for every store, a variant where the service is the log's only writer.
func withSoleWriter(kinds []storeKind) []storeKind {
	out := append([]storeKind{}, kinds...)
	for _, k := range kinds {
		out = append(out, storeKind{name: k.name + " sole writer", open: k.open, sole: true})
	}
	return out
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newHarness(t *testing.T, log EventLog, cfg Config, sole ...bool) *harness {
	t.Helper()
	if cfg.HoldTTL == 0 {
		cfg.HoldTTL = 5 * time.Minute
	}
	if cfg.QueueActiveTTL == 0 {
		cfg.QueueActiveTTL = 10 * time.Minute
	}
	if cfg.TokenSecret == nil {
		cfg.TokenSecret = []byte("test-secret")
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f := &faultyLog{EventLog: log, t: t}
	clock := testclock.New(t0)
	h := &harness{t: t, ctx: ctx, log: log, fault: f, clock: clock}
	h.svc = New(f, cfg, Options{Clock: clock, Logger: quietLogger(), SingleWriter: len(sole) > 0 && sole[0]})
	// What Start would set: a payment this process did not start is found through the log.
	var reads ReadSide = logReads{log}
	h.svc.reads.Store(&reads)
	return h
}

// concert creates concert c1 with one date d1 of n seats at price each.
func (h *harness) concert(n int, price int64) {
	h.t.Helper()
	_, err := h.svc.CreateConcert(h.ctx, Meta{}, NewConcert{ConcertID: "c1", Title: "Aurora Live", Dates: []NewDate{{DateID: "d1", StartsAt: t0.Add(720 * time.Hour), SeatCount: n, Price: price}}})
	if err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) hold(user string, seat int) string {
	h.t.Helper()
	r, err := h.svc.Hold(h.ctx, Meta{}, HoldRequest{UserID: user, ConcertID: "c1", DateID: "d1", SeatNo: seat})
	if err != nil {
		h.t.Fatalf("hold seat %d for %s: %v", seat, user, err)
	}
	return r.ReservationID
}

func (h *harness) charge(user string, amount int64) {
	h.t.Helper()
	if _, err := h.svc.Charge(h.ctx, Meta{}, user, amount); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) wallet(user string) aggregates.Wallet {
	h.t.Helper()
	w, err := h.svc.wallets.Wallet(h.ctx, user)
	if err != nil {
		h.t.Fatal(err)
	}
	return w
}

func (h *harness) reservation(id string) aggregates.Reservation {
	h.t.Helper()
	c, d, err := logReads{h.log}.ReservationDate(h.ctx, id)
	if errors.Is(err, aggregates.ErrReservationNotFound) {
		return aggregates.Reservation{}
	}
	if err != nil {
		h.t.Fatal(err)
	}
	r, _, err := h.svc.reservationOf(h.ctx, dateRef{concertID: c, dateID: d}, id)
	if err != nil {
		h.t.Fatal(err)
	}
	return r
}

func (h *harness) seat(n int) aggregates.Seat {
	h.t.Helper()
	var s aggregates.Seat
	if err := h.svc.dates.Read(h.ctx, "c1.d1", func(d aggregates.Date) { s = d.Seat(n) }); err != nil {
		h.t.Fatal(err)
	}
	return s
}

// payment folds a payment from the log (its events are in its date's commits).
func (h *harness) payment(id string) aggregates.Payment {
	h.t.Helper()
	var p aggregates.Payment
	err := logReads{h.log}.each(h.ctx, eventstore.TypePayment, func(pid string, ev aggregates.Event) {
		if pid == id {
			p = p.Apply(ev)
		}
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return p
}

// countEvents counts the events of one type in an aggregate's history.
func (h *harness) countEvents(ref eventstore.AggregateRef, typ string) int {
	h.t.Helper()
	stored := ref
	if ref.Type == eventstore.TypeSeat || ref.Type == eventstore.TypeReservation || ref.Type == eventstore.TypePayment {
		stored = eventstore.AggregateRef{Type: eventstore.TypeDate, ID: "c1.d1"} // the harness's date
	}
	if ref.Type == eventstore.TypeWallet {
		stored = eventstore.WalletGroupOf(ref.ID)
	}
	envs, err := h.log.Load(h.ctx, stored, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	n := 0
	for _, e := range envs {
		if e.Type == typ && e.AggregateType == ref.Type && e.AggregateID == ref.ID {
			n++
		}
	}
	return n
}

func isErr(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
