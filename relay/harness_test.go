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
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/app"
	"github.com/booking-engine/booking/eventstore"
	"github.com/booking-engine/booking/relay/mockplatform"
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
	if aggType == eventstore.TypePayment {
		// A payment has no subject of its own: its events travel in its reservation's date's
		// commits, which for the relay may be any date's.
		return appendCommit(t, h, eventstore.TypeDate, "c1.payments", typed{typ: eventType, payload: payload, ref: &eventstore.AggregateRef{Type: aggType, ID: aggID}})[0]
	}
	return appendCommit(t, h, aggType, aggID, typed{typ: eventType, payload: payload})[0]
}

// typed is one event to append: its type, its payload and, in a concert date's commit, the
// seat or reservation it belongs to.
type typed struct {
	typ     string
	payload any
	ref     *eventstore.AggregateRef
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
		batch[i] = eventstore.Event{Type: e.typ, Data: data, Ref: e.ref}
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

// appendDate appends events to a concert date (ID "concert.date") as one commit, the way the
// service stores a date's decisions: each event is owned by the seat or the reservation it is
// about, so a reservation's events travel in its date's commits, among seat events.
func appendDate(t testing.TB, h *testJetStream, date string, events ...aggregates.Event) []eventstore.Envelope {
	t.Helper()
	batch := make([]typed, len(events))
	for i, ev := range events {
		batch[i] = typed{typ: ev.EventType(), payload: ev}
		batch[i].ref = app.DateEventRef(date, ev)
	}
	return appendCommit(t, h, eventstore.TypeDate, date, batch...)
}

// holdEvents are the events of one hold of seats on a date by one reservation, as
// Date.DecideHold commits them: SeatHeld per seat, then ReservationHeld.
func holdEvents(date, res string, seats ...int) []aggregates.Event {
	concert, dateID, _ := strings.Cut(date, ".")
	var evs []aggregates.Event
	for _, n := range seats {
		evs = append(evs, aggregates.SeatHeld{ReservationID: res, UserID: "u1", SeatNo: n})
	}
	return append(evs, aggregates.ReservationHeld{
		ReservationID: res, UserID: "u1", ConcertID: concert, DateID: dateID,
		SeatNo: seats[0], SeatNos: seats, Price: 1000 * int64(len(seats)),
	})
}

// appendBookings appends n reservations, each on a date of its own, that are held and
// confirmed, with their completed payments, plus the saga's internal events and the seat
// events that are not facts. Every other reservation holds two seats and is one date commit
// holding the hold, the payment's lock and the confirmation (the shape of a group commit):
// two facts among seat events and an internal event. It returns the facts.
func appendBookings(t testing.TB, h *testJetStream, n int) []eventstore.Envelope {
	t.Helper()
	var facts []eventstore.Envelope
	for i := range n {
		res, pay := uuid.Must(uuid.NewV7()).String(), uuid.Must(uuid.NewV7()).String()
		date := "c1." + res
		started := map[string]any{"paymentId": pay, "reservationId": res, "amount": 1000}
		locked := aggregates.ReservationPaymentStarted{ReservationID: res, PaymentID: pay}
		confirmed := aggregates.ReservationConfirmed{ReservationID: res, PaymentID: pay}
		if i%2 == 0 {
			appendEvent(t, h, eventstore.TypePayment, pay, "PaymentStarted", started)
			evs := append(holdEvents(date, res, 1, 2), locked, confirmed, sold(res, pay, 1), sold(res, pay, 2))
			c := appendDate(t, h, date, evs...)
			facts = append(facts, c[2], c[4])
		} else {
			facts = append(facts, appendDate(t, h, date, holdEvents(date, res, 1)...)[1])
			appendEvent(t, h, eventstore.TypePayment, pay, "PaymentStarted", started)
			appendDate(t, h, date, locked)
			facts = append(facts, appendDate(t, h, date, confirmed, sold(res, pay, 1))[0])
		}
		facts = append(facts, appendEvent(t, h, eventstore.TypePayment, pay, "PaymentCompleted", map[string]any{}))
	}
	return facts
}

// sold is the sale of one seat of a reservation paid for, as Date.DecideConfirm commits it.
func sold(res, pay string, seat int) aggregates.Event {
	return aggregates.SeatSold{ReservationID: res, PaymentID: pay, SeatNo: seat}
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

func startMock(t testing.TB, opts mockplatform.Options) *mockplatform.Platform {
	t.Helper()
	m := mockplatform.New(opts)
	if err := m.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}
