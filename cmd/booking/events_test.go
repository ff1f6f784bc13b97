package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/app"
	"github.com/booking-engine/booking/eventstore"
)

func TestFormatLine(t *testing.T) {
	env := eventstore.Envelope{
		EventID: "e1", Type: "SeatHeld", AggregateType: "seat", AggregateID: "c1.d1.7",
		OccurredAt:    time.Date(2026, 12, 1, 12, 0, 0, 123456789, time.FixedZone("KST", 9*3600)),
		CorrelationID: "req-1", CausationID: "r1/hold", Data: json.RawMessage("{\n  \"reservationId\": \"r1\"\n}"),
		Stream: "SEATS_3", Sequence: 17,
	}
	want := `2026-12-01T03:00:00.123Z  SEATS_3:17  SeatHeld  seat/c1.d1.7  corr=req-1  cause=r1/hold  {"reservationId":"r1"}`
	if got := formatLine(env); got != want {
		t.Errorf("formatLine =\n%s\nwant\n%s", got, want)
	}
	env.CorrelationID, env.CausationID = "", ""
	if got := formatLine(env); !strings.Contains(got, "corr=-  cause=-") {
		t.Errorf("without IDs: %s", got)
	}

	var b bytes.Buffer
	if err := writeEvent(&b, env, true); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back["stream"] != "SEATS_3" || back["sequence"] != 17.0 || back["type"] != "SeatHeld" || back["eventId"] != "e1" || strings.Count(b.String(), "\n") != 1 {
		t.Errorf("JSON line: %s", b.String())
	}
}

func TestEventFilter(t *testing.T) {
	env := eventstore.Envelope{Type: "SeatHeld", AggregateType: "seat", AggregateID: "c1.d1.7", CorrelationID: "req-1", Stream: "SEATS_3"}
	tests := []struct {
		name   string
		filter eventFilter
		match  bool
	}{
		{name: "no filter matches every event", match: true},
		{name: "a listed type matches", filter: eventFilter{types: []string{"SeatSold", "SeatHeld"}}, match: true},
		{name: "an unlisted type does not match", filter: eventFilter{types: []string{"SeatSold"}}},
		{name: "a bare aggregate ID matches any type with that ID", filter: eventFilter{aggregate: "c1.d1.7"}, match: true},
		{name: "type/ID matches that aggregate", filter: eventFilter{aggregate: "seat/c1.d1.7"}, match: true},
		{name: "type/ID of another type does not match", filter: eventFilter{aggregate: "wallet/c1.d1.7"}},
		{name: "another ID does not match", filter: eventFilter{aggregate: "c1.d1.8"}},
		{name: "the correlation ID matches", filter: eventFilter{correlation: "req-1"}, match: true},
		{name: "another correlation ID does not match", filter: eventFilter{correlation: "req-2"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.filter.match(env); got != tt.match {
				t.Errorf("match = %v, want %v", got, tt.match)
			}
		})
	}
}

func TestStreamSelection(t *testing.T) {
	seatStream, _, _ := eventstore.Place(eventstore.AggregateRef{Type: eventstore.TypeDate, ID: "c1.d1"}) // a seat's events are its date's
	// A wallet's events are its group's.
	walletStream, _, _ := eventstore.Place(eventstore.WalletGroupOf("c1.d1.7"))
	tests := []struct {
		name   string
		filter eventFilter
		want   func(names []string) bool
	}{
		{name: "no filter follows every stream", want: func(n []string) bool { return len(n) == len(eventstore.Layout()) }},
		{name: "a stream name selects that stream", filter: eventFilter{streams: []string{"SEATS_3"}}, want: func(n []string) bool { return slices.Equal(n, []string{"SEATS_3"}) }},
		{name: "a context selects its partitions, in any case", filter: eventFilter{streams: []string{"wallets"}}, want: func(n []string) bool {
			return len(n) == eventstore.Partitions && !slices.ContainsFunc(n, func(s string) bool { return !strings.HasPrefix(s, "WALLETS_") })
		}},
		{name: "an unpartitioned stream is selected by its name", filter: eventFilter{streams: []string{"catalog"}}, want: func(n []string) bool { return slices.Equal(n, []string{"CATALOG"}) }},
		{name: "type/ID selects the one stream of that aggregate", filter: eventFilter{aggregate: "seat/c1.d1.7"}, want: func(n []string) bool { return slices.Equal(n, []string{seatStream}) }},
		{name: "a bare ID selects the streams any aggregate of that ID lives in", filter: eventFilter{aggregate: "c1.d1.7"}, want: func(n []string) bool {
			return slices.Contains(n, seatStream) && slices.Contains(n, walletStream) && slices.Contains(n, "CATALOG") && len(n) < len(eventstore.Layout())
		}},
		{name: "a reservation may live in any seat stream", filter: eventFilter{aggregate: "reservation/r1"}, want: func(n []string) bool {
			return slices.Equal(n, eventstore.StreamsOf(eventstore.TypeDate))
		}},
		{name: "a stream the aggregate does not live in selects nothing", filter: eventFilter{aggregate: "seat/c1.d1.7", streams: []string{"WALLETS"}}, want: func(n []string) bool { return len(n) == 0 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.filter.selectStreams(); !tt.want(got) {
				t.Errorf("streams = %v", got)
			}
		})
	}
}

func TestEventFilterValidation(t *testing.T) {
	tests := []struct {
		name   string
		filter eventFilter
		ok     bool
	}{
		{name: "known types and streams are accepted", filter: eventFilter{types: []string{"SeatHeld"}, streams: []string{"SEATS", "QUEUE", "wallets_7"}}, ok: true},
		{name: "a misspelt type is refused", filter: eventFilter{types: []string{"SeatHold"}}},
		{name: "an unknown stream is refused", filter: eventFilter{streams: []string{"ORDERS"}}},
		{name: "a partition beyond the layout is refused", filter: eventFilter{streams: []string{"SEATS_8"}}},
		{name: "the payment streams of schema 3 are refused: payments are in the seat streams", filter: eventFilter{streams: []string{"PAYMENTS_0"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.filter.validate(); (err == nil) != tt.ok {
				t.Errorf("validate = %v", err)
			}
		})
	}
}

// lines returns the event types of the lines of a text listing, in order.
func lineTypes(out string) []string {
	var types []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if f := strings.Fields(l); len(f) >= 3 {
			types = append(types, f[2])
		}
	}
	return types
}

// paidBooking is the history of a hold then a payment, in saga order (no queue token was
// issued, so none is revoked). The payment is started and the reservation locked side by side,
// so those two come in either order.
var paidBooking = []string{"SeatHeld", "ReservationHeld", "PaymentStarted", "ReservationPaymentStarted", "PointsDebited", "ReservationConfirmed", "SeatSold", "PaymentCompleted"}

// isPaidBooking tells whether types are paidBooking, up to the order of the side-by-side steps.
func isPaidBooking(types []string) bool {
	swapped := slices.Clone(paidBooking)
	swapped[2], swapped[3] = swapped[3], swapped[2]
	return slices.Equal(types, paidBooking) || slices.Equal(types, swapped)
}

func TestShowCorrelationFollowsOneBooking(t *testing.T) {
	ctx := context.Background()
	store := eventstore.NewMemStore()
	d := bookingDay(t, store)

	var out bytes.Buffer
	if err := showCorrelation(ctx, store, &out, "req-1", false); err != nil {
		t.Fatal(err)
	}
	got := lineTypes(out.String())
	if !isPaidBooking(got) {
		t.Errorf("events of req-1: %v, want %v\n%s", got, paidBooking, out.String())
	}
	for _, want := range []string{"seat/c1.d1.1", "reservation/" + d.paidRes, "payment/" + d.paidPay, "wallet/u1", "cause=" + d.paidPay + "/debit"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("no %s in\n%s", want, out.String())
		}
	}
	if strings.Count(out.String(), "corr=req-1") != len(paidBooking) {
		t.Errorf("events of another correlation listed:\n%s", out.String())
	}

	out.Reset()
	if err := showCorrelation(ctx, store, &out, "req-1", true); err != nil {
		t.Fatal(err)
	}
	for i, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var env envelopeJSON
		if err := json.Unmarshal([]byte(l), &env); err != nil || env.CorrelationID != "req-1" || i >= len(got) || env.Type != got[i] || env.Stream == "" || env.Sequence == 0 {
			t.Errorf("JSON line %d: %s (%v)", i, l, err)
		}
	}

	if err := showCorrelation(ctx, store, io.Discard, "req-nobody", false); !errors.Is(err, errNoEvents) {
		t.Errorf("unknown correlation: %v", err)
	}
}

func TestShowAggregate(t *testing.T) {
	ctx := context.Background()
	store := eventstore.NewMemStore()
	d := bookingDay(t, store)
	tests := []struct {
		name    string
		id      string
		headers []string // the aggregates listed
		types   []string // the event types, in order, of all of them
	}{
		{name: "a seat ID shows the seat's history", id: "c1.d1.1", headers: []string{"seat/c1.d1.1"}, types: []string{"SeatHeld", "SeatSold"}},
		{name: "a refunded seat shows its release", id: "c1.d1.2", headers: []string{"seat/c1.d1.2"}, types: []string{"SeatHeld", "SeatSold", "SeatReleased"}},
		{name: "a reservation ID shows the reservation", id: d.paidRes, headers: []string{"reservation/" + d.paidRes},
			types: []string{"ReservationHeld", "ReservationPaymentStarted", "ReservationConfirmed"}},
		{name: "a payment ID shows the payment", id: d.refunded, headers: []string{"payment/" + d.refunded},
			types: []string{"PaymentStarted", "PaymentCompleted", "PaymentRefundStarted", "PaymentRefunded"}},
		{name: "a user ID shows the wallet", id: "u2", headers: []string{"wallet/u2"}, types: []string{"PointsCharged"}},
		{name: "type/ID shows only that type", id: "wallet/u1", headers: []string{"wallet/u1"},
			types: []string{"PointsCharged", "PointsDebited", "PointsDebited", "PointsRefunded"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := showAggregate(ctx, store, &out, tt.id, false); err != nil {
				t.Fatal(err)
			}
			var headers, types []string
			for _, l := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				f := strings.Fields(l)
				switch {
				case len(f) == 0:
				case strings.HasPrefix(l, "  "):
					if !strings.HasPrefix(f[0], "v") {
						t.Errorf("event line without a version: %q", l)
					}
					types = append(types, f[2])
				default:
					headers = append(headers, f[0])
				}
			}
			if !slices.Equal(headers, tt.headers) || !slices.Equal(types, tt.types) {
				t.Errorf("aggregates %v with %v, want %v with %v\n%s", headers, types, tt.headers, tt.types, out.String())
			}
		})
	}
	if err := showAggregate(ctx, store, io.Discard, "nobody", false); !errors.Is(err, errNoEvents) {
		t.Errorf("unknown ID: %v", err)
	}
}

// syncBuffer is a buffer that a tail writes while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor polls until cond holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// startedReader tells when every stream's replay has started, so events appended after that
// are past the head the tail started from.
type startedReader struct {
	eventstore.Reader
	want    int32
	started atomic.Int32
	all     chan struct{}
}

func (r *startedReader) Replay(ctx context.Context, stream string, after uint64, follow bool, fn func([]eventstore.Envelope) error) error {
	if r.started.Add(1) == r.want {
		close(r.all)
	}
	return r.Reader.Replay(ctx, stream, after, follow, fn)
}

func TestTailPrintsNewEventsThatMatch(t *testing.T) {
	store := eventstore.NewMemStore()
	bookingDay(t, store) // history the tail must not print
	opts := tailOptions{filter: eventFilter{types: []string{"PointsCharged"}}}
	r := &startedReader{Reader: store, want: int32(len(opts.filter.selectStreams())), all: make(chan struct{})}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- tailEvents(ctx, r, &out, opts) }()
	select {
	case <-r.all:
	case err := <-done:
		t.Fatalf("tail ended early: %v", err)
	}
	appendRaw(t, store, eventstore.WalletGroupOf("u7"), inWallet(t, aggregates.PointsCharged{Amount: 70, Reference: "t7", UserID: "u7"}))
	appendCommit(t, store, dateC1D1, onDate(t, aggregates.SeatHeld{ReservationID: "r9", UserID: "u9", SeatNo: 9}))
	appendRaw(t, store, eventstore.WalletGroupOf("u8"), inWallet(t, aggregates.PointsCharged{Amount: 80, Reference: "t8", UserID: "u8"}))
	waitFor(t, "two lines", func() bool { return strings.Count(out.String(), "\n") >= 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("tail ended with %v", err)
	}
	got := out.String()
	if strings.Count(got, "\n") != 2 || !strings.Contains(got, "wallet/u7") || !strings.Contains(got, "wallet/u8") || !strings.Contains(got, `"amount":80`) {
		t.Errorf("tail printed:\n%s", got)
	}
}

func TestTailFromStartPrintsTheHistory(t *testing.T) {
	store := eventstore.NewMemStore()
	d := bookingDay(t, store)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var out syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- tailEvents(ctx, store, &out, tailOptions{fromStart: true, filter: eventFilter{aggregate: "reservation/" + d.paidRes}})
	}()
	waitFor(t, "the reservation's three events", func() bool { return strings.Count(out.String(), "\n") >= 3 })
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := lineTypes(out.String()); !slices.Equal(got, []string{"ReservationHeld", "ReservationPaymentStarted", "ReservationConfirmed"}) {
		t.Errorf("tail --from-start --aggregate printed %v\n%s", got, out.String())
	}
}

// The commands against a real server: `events show` on a stopped data dir, `events tail` on a
// running one through --nats-url.
func TestEventsCommandsOnJetStream(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := eventstore.Open(ctx, eventstore.Options{DataDir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	d := bookingDay(t, store)
	store.Close()

	out, err := runCmd(ctx, t, "events", "show", "--correlation", "req-1", "--data-dir", dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := lineTypes(out); !isPaidBooking(got) {
		t.Errorf("show --correlation: %v\n%s", got, out)
	}
	out, err = runCmd(ctx, t, "events", "show", "payment/"+d.paidPay, "--data-dir", dir)
	if err != nil || !strings.Contains(out, "payment/"+d.paidPay+" (stream SEATS_") || !strings.Contains(out, "PaymentCompleted") {
		t.Errorf("show payment: %v\n%s", err, out)
	}
	if _, err := runCmd(ctx, t, "events", "show", "--data-dir", dir); err == nil {
		t.Error("show without an ID or a correlation was accepted")
	}

	store, err = eventstore.Open(ctx, eventstore.Options{DataDir: dir, ListenAddr: "127.0.0.1:0", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	tailCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var buf syncBuffer
	done := make(chan error, 1)
	go func() {
		root := newRootForTest()
		root.SetOut(&buf)
		root.SetErr(io.Discard)
		root.SetArgs([]string{"events", "tail", "--from-start", "--type", "SeatSold", "--stream", "seats", "--json", "--nats-url", store.URL()})
		done <- root.ExecuteContext(tailCtx)
	}()
	waitFor(t, "the two sales", func() bool { return strings.Count(buf.String(), "\n") >= 2 })
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("tail ended with %v", err)
	}
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var env envelopeJSON
		if err := json.Unmarshal([]byte(l), &env); err != nil || env.Type != "SeatSold" || !strings.HasPrefix(env.Stream, "SEATS_") {
			t.Errorf("tail line %q: %v", l, err)
		}
	}
}

func TestShowAggregateOfAQueueUserReadsItsGroupsCommits(t *testing.T) {
	ctx := context.Background()
	store := eventstore.NewMemStore()
	svc := app.New(store, app.Config{QueueActiveTTL: 10 * time.Minute, TokenSecret: []byte("s")}, app.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	for _, user := range []string{"u7", "u8"} {
		if _, _, err := svc.IssueToken(ctx, app.Meta{CorrelationID: "token-" + user}, user); err != nil {
			t.Fatal(err)
		}
	}
	var out bytes.Buffer
	if err := showAggregate(ctx, store, &out, "queueuser/u7", false); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.Contains(got, "queueuser/u7") || strings.Count(got, "QueueTokenIssued") != 1 || strings.Contains(got, "u8") {
		t.Errorf("queueuser/u7 shows\n%s", got)
	}
}
