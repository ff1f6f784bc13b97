package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spf13/cobra"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/app"
	"github.com/booking-engine/booking/audit"
	"github.com/booking-engine/booking/eventstore"
)

// stepClock moves one millisecond at every reading, so that the events of one saga have
// increasing times, as they would with a real clock.
type stepClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

// day is what bookingDay did: the IDs a test needs to find or corrupt.
type day struct {
	paid     app.HoldRequest // seat 1 of u1, held and paid under correlation "req-1"
	paidRes  string
	paidPay  string
	refunded string // a payment refunded
}

// bookingDay runs the real service over log: a sale (correlation req-1), a refunded sale, a
// cancelled hold, a payment that fails for lack of points, a hold left open.
func bookingDay(t *testing.T, log app.EventLog) day {
	t.Helper()
	ctx := context.Background()
	svc := app.New(log, app.Config{HoldTTL: 5 * time.Minute, QueueActiveTTL: 10 * time.Minute, TokenSecret: []byte("s")},
		app.Options{Clock: &stepClock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := svc.CreateConcert(ctx, app.Meta{CorrelationID: "setup"}, app.NewConcert{ConcertID: "c1", Title: "Aurora",
		Dates: []app.NewDate{{DateID: "d1", StartsAt: time.Date(2027, 1, 1, 20, 0, 0, 0, time.UTC), SeatCount: 10, Price: 100}}})
	must(err)
	for user, amount := range map[string]int64{"u1": 500, "u2": 50} {
		_, err := svc.Charge(ctx, app.Meta{CorrelationID: "charge-" + user}, user, amount)
		must(err)
	}
	var d day
	req1 := app.Meta{CorrelationID: "req-1"}
	d.paid = app.HoldRequest{UserID: "u1", ConcertID: "c1", DateID: "d1", SeatNo: 1}
	r, err := svc.Hold(ctx, req1, d.paid)
	must(err)
	p, err := svc.Pay(ctx, req1, r.ReservationID, "u1")
	must(err)
	d.paidRes, d.paidPay = r.ReservationID, p.PaymentID

	other := app.Meta{CorrelationID: "req-2"}
	r, err = svc.Hold(ctx, other, app.HoldRequest{UserID: "u1", ConcertID: "c1", DateID: "d1", SeatNo: 2})
	must(err)
	p, err = svc.Pay(ctx, other, r.ReservationID, "u1")
	must(err)
	_, err = svc.Refund(ctx, app.Meta{CorrelationID: "admin-1"}, p.PaymentID)
	must(err)
	d.refunded = p.PaymentID

	r, err = svc.Hold(ctx, other, app.HoldRequest{UserID: "u2", ConcertID: "c1", DateID: "d1", SeatNo: 3})
	must(err)
	_, err = svc.Cancel(ctx, other, r.ReservationID, "u2")
	must(err)
	r, err = svc.Hold(ctx, other, app.HoldRequest{UserID: "u2", ConcertID: "c1", DateID: "d1", SeatNo: 4})
	must(err)
	if _, err := svc.Pay(ctx, other, r.ReservationID, "u2"); !errors.Is(err, aggregates.ErrInsufficientPoints) {
		t.Fatalf("paying 100 points with 50: %v", err)
	}
	_, err = svc.Hold(ctx, other, app.HoldRequest{UserID: "u2", ConcertID: "c1", DateID: "d1", SeatNo: 5})
	must(err)
	return d
}

// appendRaw appends events to an aggregate at its current version, each in a commit of its
// own, as a faulty writer would.
func appendRaw(t *testing.T, s eventstore.Store, ref eventstore.AggregateRef, evs ...eventstore.Event) {
	t.Helper()
	for _, ev := range evs {
		appendCommit(t, s, ref, ev)
	}
}

// appendCommit appends events to an aggregate at its current version, in one commit.
func appendCommit(t *testing.T, s eventstore.Store, ref eventstore.AggregateRef, evs ...eventstore.Event) {
	t.Helper()
	ctx := context.Background()
	envs, err := s.Load(ctx, ref, 0)
	if err != nil {
		t.Fatal(err)
	}
	var version uint64
	if len(envs) > 0 {
		version = envs[len(envs)-1].Sequence
	}
	if _, err = s.Append(ctx, ref, version, evs, fmt.Sprintf("corrupt/%s/%d", ref, version), eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
}

func encoded(t *testing.T, e aggregates.Event) eventstore.Event {
	t.Helper()
	b, err := aggregates.Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	return eventstore.Event{Type: e.EventType(), Data: b}
}

// dateC1D1 is the date bookingDay books: its commits hold its seats' and reservations' events.
var dateC1D1 = eventstore.AggregateRef{Type: eventstore.TypeDate, ID: "c1.d1"}

// onDate encodes an event of a commit of date c1.d1, with the seat or reservation it is about,
// as the app's dateEventOwner names them.
func onDate(t *testing.T, e aggregates.Event) eventstore.Event {
	t.Helper()
	ev := encoded(t, e)
	ev.Ref = app.DateEventRef(dateC1D1.ID, e)
	return ev
}

// inWallet encodes an event of a commit of user's wallet group, on the user's wallet, as the
// service writes it; appendRaw(t, s, eventstore.WalletGroupOf(user), inWallet(...)) commits it.
func inWallet(t *testing.T, e aggregates.Event) eventstore.Event {
	t.Helper()
	ev := encoded(t, e)
	ev.Ref = app.WalletEventRef("", e)
	return ev
}

func TestVerifyLogsWrittenByTheService(t *testing.T) {
	tests := []struct {
		name string
		// corrupt damages the log and returns what the report must name.
		corrupt func(t *testing.T, s eventstore.Store, d day) []string
	}{
		{name: "a day of bookings passes"},
		{
			name: "a paid payment debited again fails, naming the payment",
			corrupt: func(t *testing.T, s eventstore.Store, d day) []string {
				appendRaw(t, s, eventstore.WalletGroupOf("u1"), inWallet(t, aggregates.PointsDebited{Amount: 100, PaymentID: d.paidPay, UserID: "u1"}))
				return []string{audit.CheckPaymentDoubleDebit, "payment/" + d.paidPay}
			},
		},
		{
			name: "a sold seat held again fails, naming the seat",
			corrupt: func(t *testing.T, s eventstore.Store, d day) []string {
				appendCommit(t, s, dateC1D1, onDate(t, aggregates.SeatHeld{ReservationID: "r-intruder", UserID: "u9", SeatNo: 1}),
					onDate(t, aggregates.ReservationHeld{ReservationID: "r-intruder", UserID: "u9", ConcertID: "c1", DateID: "d1", SeatNo: 1, SeatNos: []int{1}, Price: 100}))
				return []string{audit.CheckSeatDoubleHold, audit.CheckSeatTwoReservations, "seat/c1.d1.1", "reservation/" + d.paidRes}
			},
		},
		{
			name: "a hold of two seats whose second seat another reservation holds fails, naming both",
			corrupt: func(t *testing.T, s eventstore.Store, d day) []string {
				// Seat 5 is held by u2's open reservation; the faulty commit holds only seat 6.
				appendCommit(t, s, dateC1D1, onDate(t, aggregates.SeatHeld{ReservationID: "r-greedy", UserID: "u9", SeatNo: 6}),
					onDate(t, aggregates.ReservationHeld{ReservationID: "r-greedy", UserID: "u9", ConcertID: "c1", DateID: "d1", SeatNo: 5, SeatNos: []int{5, 6}, Price: 200}))
				return []string{audit.CheckSeatTwoReservations, "seat/c1.d1.5", "reservation/r-greedy"}
			},
		},
		{
			name: "a seat released apart from its reservation's cancellation fails, naming the reservation",
			corrupt: func(t *testing.T, s eventstore.Store, d day) []string {
				appendCommit(t, s, dateC1D1, onDate(t, aggregates.SeatHeld{ReservationID: "r-pair", UserID: "u9", SeatNo: 7}), onDate(t, aggregates.SeatHeld{ReservationID: "r-pair", UserID: "u9", SeatNo: 8}),
					onDate(t, aggregates.ReservationHeld{ReservationID: "r-pair", UserID: "u9", ConcertID: "c1", DateID: "d1", SeatNo: 7, SeatNos: []int{7, 8}, Price: 200}))
				appendCommit(t, s, dateC1D1, onDate(t, aggregates.ReservationCancelled{ReservationID: "r-pair", Reason: aggregates.ReleaseCancelled}),
					onDate(t, aggregates.SeatReleased{ReservationID: "r-pair", Reason: aggregates.ReleaseCancelled, SeatNo: 7}))
				appendCommit(t, s, dateC1D1, onDate(t, aggregates.SeatReleased{ReservationID: "r-pair", Reason: aggregates.ReleaseCancelled, SeatNo: 8}))
				return []string{audit.CheckReservationSeatsApart, "reservation/r-pair", "seat/c1.d1.8"}
			},
		},
		{
			name: "an event of an unknown type fails, naming its aggregate",
			corrupt: func(t *testing.T, s eventstore.Store, d day) []string {
				appendRaw(t, s, eventstore.WalletGroupOf("u2"), eventstore.Event{Type: "PointsStolen", Data: []byte(`{"amount":50,"userId":"u2"}`),
					Ref: &eventstore.AggregateRef{Type: eventstore.TypeWallet, ID: "u2"}})
				return []string{audit.CheckUndecodable, "wallet/u2"}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := eventstore.NewMemStore()
			d := bookingDay(t, store)
			var names []string
			if tt.corrupt != nil {
				names = tt.corrupt(t, store, d)
			}
			rep, err := auditLog(context.Background(), store, audit.Options{Now: time.Date(2026, 12, 1, 12, 1, 0, 0, time.UTC)})
			if err != nil {
				t.Fatal(err)
			}
			var out, errOut bytes.Buffer
			err = writeVerifyReport(&out, &errOut, rep, false)
			var exit exitCode
			switch {
			case tt.corrupt == nil && err != nil:
				t.Fatalf("verify of a correct log: %v\n%s", err, out.String())
			case tt.corrupt != nil && (!asExit(err, &exit) || exit != 1):
				t.Fatalf("verify of a corrupted log returned %v, want exit status 1\n%s", err, out.String())
			}
			for _, name := range append(names, rep.Summary()) {
				if !strings.Contains(out.String(), name) {
					t.Errorf("the report does not name %q:\n%s", name, out.String())
				}
			}
			if tt.corrupt == nil && (rep.Aggregates[eventstore.TypeSeat] != 5 || rep.Warnings == nil || len(rep.Warnings) != 0) {
				t.Errorf("report of the clean day:\n%s", out.String())
			}

			out.Reset()
			errOut.Reset()
			_ = writeVerifyReport(&out, &errOut, rep, true)
			var back audit.Report
			if err := json.Unmarshal(out.Bytes(), &back); err != nil {
				t.Fatalf("--json output: %v\n%s", err, out.String())
			}
			if back.OK() != (tt.corrupt == nil) || back.Events != rep.Events || strings.TrimSpace(errOut.String()) != rep.Summary() {
				t.Errorf("--json: %s\nstderr: %s", out.String(), errOut.String())
			}
		})
	}
}

// runCmd runs a subcommand as `booking` would, and returns its output and error.
func runCmd(ctx context.Context, t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootForTest()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(io.Discard)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	return out.String(), err
}

func TestVerifyCommandOnADataDir(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	store, err := eventstore.Open(ctx, eventstore.Options{DataDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	d := bookingDay(t, store)
	store.Close()

	out, err := runCmd(ctx, t, "verify", "--data-dir", dir)
	if err != nil || !strings.Contains(out, "verify OK") {
		t.Fatalf("verify of a clean data dir: %v\n%s", err, out)
	}

	store, err = eventstore.Open(ctx, eventstore.Options{DataDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	appendRaw(t, store, eventstore.WalletGroupOf("u1"), inWallet(t, aggregates.PointsRefunded{Amount: 100, PaymentID: d.refunded, Reason: aggregates.RefundRefund, UserID: "u1"}))
	store.Close()

	out, err = runCmd(ctx, t, "verify", "--data-dir", dir, "--json")
	var exit exitCode
	if !asExit(err, &exit) || exit != 1 {
		t.Fatalf("verify of a corrupted data dir returned %v\n%s", err, out)
	}
	var rep audit.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Violations) != 1 || rep.Violations[0].Check != audit.CheckWalletDoubleRefund || rep.Violations[0].Aggregate != "wallet/u1" {
		t.Errorf("violations: %+v", rep.Violations)
	}
}

func TestVerifyRefusesADataDirItCannotUse(t *testing.T) {
	ctx := context.Background()
	if _, err := runCmd(ctx, t, "verify", "--data-dir", filepath.Join(t.TempDir(), "typo")); err == nil || !strings.Contains(err.Error(), "no event log") {
		t.Errorf("verify of a missing data dir: %v", err)
	}

	// A running server holds the data dir's event store; verify must not start a second NATS
	// server over the same files.
	dir := t.TempDir()
	running, err := eventstore.Open(ctx, eventstore.Options{DataDir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer running.Close()
	if _, err := runCmd(ctx, t, "verify", "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("verify of a data dir in use: %v", err)
	}
	if _, err := runCmd(ctx, t, "events", "show", "u1", "--data-dir", dir); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("events show on a data dir in use: %v", err)
	}
}

// newRootForTest is the part of main's command tree that these tests run.
func newRootForTest() *cobra.Command {
	root := &cobra.Command{Use: "booking", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newVerifyCmd(), newEventsCmd(), newBenchCmd())
	return root
}

// faultyLog fails the appends whose dedup ID ends with an armed step, once each, as if the
// process died right before that step.
type faultyLog struct {
	*eventstore.MemStore
	mu    sync.Mutex
	armed []string
}

func (f *faultyLog) arm(steps ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.armed = append(f.armed, steps...)
}

func (f *faultyLog) Append(ctx context.Context, agg eventstore.AggregateRef, expected uint64, events []eventstore.Event, dedupID string, meta eventstore.Metadata) (uint64, error) {
	f.mu.Lock()
	for i, step := range f.armed {
		if strings.HasSuffix(dedupID, step) {
			f.armed = slices.Delete(f.armed, i, i+1)
			f.mu.Unlock()
			return 0, fmt.Errorf("injected crash before %s: %w", step, eventstore.ErrUnavailable)
		}
	}
	f.mu.Unlock()
	return f.MemStore.Append(ctx, agg, expected, events, dedupID, meta)
}

// settableClock moves a millisecond at every reading, and as far as a test says.
type settableClock struct{ stepClock }

func (c *settableClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// paymentsOf returns the payments started for a reservation.
func paymentsOf(t *testing.T, r eventstore.Reader, reservationID string) []string {
	t.Helper()
	var ids []string
	for _, stream := range eventstore.StreamsOf(eventstore.TypePayment) {
		err := r.Replay(context.Background(), stream, 0, false, func(batch []eventstore.Envelope) error {
			for _, env := range batch {
				if ev, err := aggregates.Decode(env.Type, env.Data); err == nil {
					if p, ok := ev.(aggregates.PaymentStarted); ok && p.ReservationID == reservationID {
						ids = append(ids, p.PaymentID)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// A crash leaves a saga half done: verify must call that a violation at rest, a mere warning
// with --allow-in-flight (a live server passes through the same states), and nothing at all
// once recovery or the sweeper has finished the saga. A command on a concert date is one
// commit, so a crash before a hold, a cancellation or an expiry leaves nothing half done.
func TestVerifyAfterACrashAndItsRecovery(t *testing.T) {
	type fixture struct {
		ctx   context.Context
		svc   *app.Service
		log   *faultyLog
		clock *settableClock
	}
	hold := func(t *testing.T, f fixture, user string, seat int) string {
		t.Helper()
		r, err := f.svc.Hold(f.ctx, app.Meta{}, app.HoldRequest{UserID: user, ConcertID: "c1", DateID: "d1", SeatNo: seat})
		if err != nil {
			t.Fatal(err)
		}
		return r.ReservationID
	}
	payCrash := func(step string) func(t *testing.T, f fixture) func() {
		return func(t *testing.T, f fixture) func() {
			rid := hold(t, f, "u1", 1)
			f.log.arm(step)
			if _, err := f.svc.Pay(f.ctx, app.Meta{}, rid, "u1"); !errors.Is(err, eventstore.ErrUnavailable) {
				t.Fatalf("pay with a crash before %s: %v", step, err)
			}
			pid := paymentsOf(t, f.log, rid)[0]
			return func() {
				if err := f.svc.RecoverPayment(f.ctx, pid); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	refundCrash := func(step string) func(t *testing.T, f fixture) func() {
		return func(t *testing.T, f fixture) func() {
			p, err := f.svc.Pay(f.ctx, app.Meta{}, hold(t, f, "u1", 1), "u1")
			if err != nil {
				t.Fatal(err)
			}
			f.log.arm(step)
			if _, err := f.svc.Refund(f.ctx, app.Meta{}, p.PaymentID); !errors.Is(err, eventstore.ErrUnavailable) {
				t.Fatalf("refund with a crash before %s: %v", step, err)
			}
			return func() {
				if err := f.svc.RecoverPayment(f.ctx, p.PaymentID); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	sweep := func(f fixture) func() {
		return func() {
			f.clock.advance(10 * time.Minute)
			f.svc.ExpireDue(f.ctx)
		}
	}
	tests := []struct {
		name  string
		crash func(t *testing.T, f fixture) (recover func())
		// atRest is the check verify fails at rest; "" when the crash leaves only warnings.
		atRest string
		// clean: the crash leaves no trace verify could report, in flight or not.
		clean bool
	}{
		{
			name: "a payment that crashed before starting leaves nothing",
			crash: func(t *testing.T, f fixture) func() {
				rid := hold(t, f, "u1", 1)
				f.log.arm("/start")
				if _, err := f.svc.Pay(f.ctx, app.Meta{}, rid, "u1"); !errors.Is(err, eventstore.ErrUnavailable) {
					t.Fatalf("pay with a crash before /start: %v", err)
				}
				if ids := paymentsOf(t, f.log, rid); len(ids) != 0 {
					t.Fatalf("payments %v of a start that did not land", ids)
				}
				return func() {}
			},
			clean: true,
		},
		{name: "a payment that crashed before debiting", crash: payCrash("/debit"), atRest: audit.CheckPaymentInFlight},
		{name: "a payment that crashed after debiting, before completing", crash: payCrash("/complete"), atRest: audit.CheckPaymentInFlight},
		{name: "a refund that crashed before its gate leaves the payment completed", crash: refundCrash("/refund"), clean: true},
		{name: "a refund that crashed before returning the points", crash: refundCrash("/refund-points"), atRest: audit.CheckPaymentInFlight},
		{name: "a refund that crashed before finishing", crash: refundCrash("/refunded"), atRest: audit.CheckPaymentInFlight},
		{
			name: "an expiry that crashed leaves a lapsed hold, a warning",
			crash: func(t *testing.T, f fixture) func() {
				hold(t, f, "u1", 1)
				f.clock.advance(6 * time.Minute)
				f.log.arm("/expire")
				f.svc.ExpireDue(f.ctx)
				return sweep(f)
			},
		},
		{
			name: "a cancellation that crashed leaves the hold whole",
			crash: func(t *testing.T, f fixture) func() {
				rid := hold(t, f, "u1", 1)
				f.log.arm("/cancel")
				if _, err := f.svc.Cancel(f.ctx, app.Meta{}, rid, "u1"); !errors.Is(err, eventstore.ErrUnavailable) {
					t.Fatalf("cancel with a crash: %v", err)
				}
				return sweep(f)
			},
			clean: true,
		},
		{
			name: "a hold of several seats that crashed leaves nothing",
			crash: func(t *testing.T, f fixture) func() {
				f.log.arm("/hold")
				if _, err := f.svc.Hold(f.ctx, app.Meta{}, app.HoldRequest{UserID: "u1", ConcertID: "c1", DateID: "d1", SeatNos: []int{1, 2, 3}}); !errors.Is(err, eventstore.ErrUnavailable) {
					t.Fatalf("a hold with a crash: %v", err)
				}
				return sweep(f)
			},
			clean: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := &settableClock{stepClock{t: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}}
			f := fixture{ctx: context.Background(), log: &faultyLog{MemStore: eventstore.NewMemStore()}, clock: clock}
			f.svc = app.New(f.log, app.Config{HoldTTL: 5 * time.Minute, QueueBatch: 0, QueueActiveTTL: 10 * time.Minute, TokenSecret: []byte("s")},
				app.Options{Clock: clock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			if _, err := f.svc.CreateConcert(f.ctx, app.Meta{}, app.NewConcert{ConcertID: "c1", Title: "Aurora",
				Dates: []app.NewDate{{DateID: "d1", StartsAt: time.Date(2027, 1, 1, 20, 0, 0, 0, time.UTC), SeatCount: 10, Price: 100}}}); err != nil {
				t.Fatal(err)
			}
			if _, err := f.svc.Charge(f.ctx, app.Meta{}, "u1", 500); err != nil {
				t.Fatal(err)
			}
			if _, _, err := f.svc.IssueToken(f.ctx, app.Meta{}, "u1"); err != nil {
				t.Fatal(err)
			}
			recover := tt.crash(t, f)

			verify := func(allowInFlight bool) audit.Report {
				t.Helper()
				rep, err := auditLog(f.ctx, f.log, audit.Options{AllowInFlight: allowInFlight, Now: clock.Now()})
				if err != nil {
					t.Fatal(err)
				}
				return rep
			}
			var b bytes.Buffer
			rep := verify(false)
			_ = rep.WriteText(&b)
			switch {
			case tt.clean && (!rep.OK() || len(rep.Warnings) > 0):
				t.Errorf("at rest, want no findings:\n%s", b.String())
			case tt.atRest != "" && !slices.ContainsFunc(rep.Violations, func(v audit.Finding) bool { return v.Check == tt.atRest }):
				t.Errorf("at rest, no %s violation:\n%s", tt.atRest, b.String())
			case !tt.clean && tt.atRest == "" && (!rep.OK() || len(rep.Warnings) == 0):
				t.Errorf("at rest, want warnings only:\n%s", b.String())
			}
			if rep := verify(true); !rep.OK() || (len(rep.Warnings) == 0) != tt.clean {
				b.Reset()
				_ = rep.WriteText(&b)
				t.Errorf("with in-flight states allowed, want warnings only (none for a clean crash):\n%s", b.String())
			}
			recover()
			if rep := verify(false); !rep.OK() || len(rep.Warnings) > 0 {
				b.Reset()
				_ = rep.WriteText(&b)
				t.Errorf("after recovery:\n%s", b.String())
			}
		})
	}
}
