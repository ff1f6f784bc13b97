package relay

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/booking-engine/booking/eventstore"
)

// TestMain keeps the relay's logs out of the test output; failures speak through t.
func TestMain(m *testing.M) {
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil)))
	os.Exit(m.Run())
}

// testJetStream is the event store on an embedded JetStream server in a temp dir, opened the
// way the service opens it (eventstore.Open creates the streams); the relay gets its
// JetStream context, and facts are appended through the store, as the request path does.
type testJetStream struct {
	t     testing.TB
	dir   string
	store *eventstore.JetStreamStore
	js    jetstream.JetStream
}

func newJetStream(t testing.TB) *testJetStream {
	t.Helper()
	h := &testJetStream{t: t, dir: t.TempDir()}
	h.start()
	t.Cleanup(h.stop)
	return h
}

// start opens (or reopens, on the same dir) the store and its embedded server.
func (h *testJetStream) start() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := eventstore.Open(ctx, eventstore.Options{DataDir: h.dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		h.t.Fatalf("open event store: %v", err)
	}
	h.store, h.js = store, store.JetStream()
}

// stop closes the store and shuts its server down.
func (h *testJetStream) stop() {
	if h.store != nil {
		_ = h.store.Close()
		h.store = nil
	}
}

// appendEvent appends one event to an aggregate through the event store, at the aggregate's
// current version, and returns it as stored.
func appendEvent(t testing.TB, h *testJetStream, aggType, aggID, eventType string, payload any) eventstore.Envelope {
	t.Helper()
	return appendCommit(t, h, aggType, aggID, typed{eventType, payload})[0]
}

// typed is one event to append: its type and payload.
type typed struct {
	typ     string
	payload any
}

// appendCommit appends events to an aggregate as one commit, at the aggregate's current
// version, and returns them as stored.
func appendCommit(t testing.TB, h *testJetStream, aggType, aggID string, events ...typed) []eventstore.Envelope {
	t.Helper()
	batch := make([]eventstore.Event, len(events))
	for i, e := range events {
		data, err := json.Marshal(e.payload)
		if err != nil {
			t.Fatal(err)
		}
		batch[i] = eventstore.Event{Type: e.typ, Data: data}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	agg := eventstore.AggregateRef{Type: aggType, ID: aggID}
	history, err := h.store.Load(ctx, agg, 0)
	if err != nil {
		t.Fatalf("load %s: %v", agg, err)
	}
	var version uint64
	if len(history) > 0 {
		version = history[len(history)-1].Sequence
	}
	v, err := h.store.Append(ctx, agg, version, batch, uuid.NewString(), eventstore.Metadata{OccurredAt: time.Now()})
	if err != nil {
		t.Fatalf("append %d events to %s: %v", len(batch), agg, err)
	}
	stored, err := h.store.Load(ctx, agg, v-1)
	if err != nil || len(stored) != len(batch) {
		t.Fatalf("read back the commit of %s: %v (%d events)", agg, err, len(stored))
	}
	return stored
}

// appendBookings appends n reservations that are held and confirmed, with their completed
// payments, plus the saga's internal events that are not facts. Every other reservation is
// one commit holding two facts and an internal event between them, the shape of a group
// commit. It returns the facts.
func appendBookings(t testing.TB, h *testJetStream, n int) []eventstore.Envelope {
	t.Helper()
	var facts []eventstore.Envelope
	for i := range n {
		res, pay := uuid.Must(uuid.NewV7()).String(), uuid.Must(uuid.NewV7()).String()
		held := typed{"ReservationHeld", map[string]any{"reservationId": res, "userId": "u1", "concertId": "c1", "dateId": "d1", "seatNo": i + 1, "price": 1000}}
		locked := typed{"ReservationPaymentStarted", map[string]any{"paymentId": pay}}
		confirmed := typed{"ReservationConfirmed", map[string]any{"paymentId": pay}}
		if i%2 == 0 {
			appendEvent(t, h, eventstore.TypePayment, pay, "PaymentStarted", map[string]any{"paymentId": pay, "reservationId": res, "amount": 1000})
			c := appendCommit(t, h, eventstore.TypeReservation, res, held, locked, confirmed)
			facts = append(facts, c[0], c[2])
		} else {
			facts = append(facts, appendCommit(t, h, eventstore.TypeReservation, res, held)...)
			appendEvent(t, h, eventstore.TypePayment, pay, "PaymentStarted", map[string]any{"paymentId": pay, "reservationId": res, "amount": 1000})
			appendCommit(t, h, eventstore.TypeReservation, res, locked)
			facts = append(facts, appendCommit(t, h, eventstore.TypeReservation, res, confirmed)...)
		}
		facts = append(facts, appendEvent(t, h, eventstore.TypePayment, pay, "PaymentCompleted", map[string]any{}))
	}
	return facts
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(5 * time.Millisecond) // polling interval, not a wait for an outcome
	}
}

// relayT0 is where the relay tests' clocks start.
var relayT0 = time.Date(2026, 12, 24, 19, 0, 0, 0, time.UTC)

// alertSink is an alert webhook that keeps the texts it receives.
type alertSink struct {
	srv   *httptest.Server
	mu    sync.Mutex
	texts []string
}

func newAlertSink(t testing.TB) *alertSink {
	a := &alertSink{}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Text string `json:"text"`
		}
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.Text == "" {
			http.Error(w, "bad alert", http.StatusBadRequest)
			return
		}
		a.mu.Lock()
		a.texts = append(a.texts, body.Text)
		a.mu.Unlock()
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *alertSink) Texts() []string {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]string(nil), a.texts...)
}

// freeAddr returns a local address nobody listens on (for now): a platform that is down.
func freeAddr(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func startMock(t testing.TB, opts MockOptions) *MockPlatform {
	t.Helper()
	m := NewMockPlatform(opts)
	if err := m.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}
