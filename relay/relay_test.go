package relay

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
	"github.com/booking-engine/booking/internal/testclock"
	"github.com/booking-engine/booking/internal/testpoll"
	"github.com/booking-engine/booking/relay/mockplatform"
)

func startRelay(t *testing.T, h *testJetStream, opts Options) *Relay {
	t.Helper()
	r, err := New(h.js, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

// seededRand is a deterministic, goroutine-safe source for the mock's failures.
func seededRand(seed uint64) func() float64 {
	var mu sync.Mutex
	r := rand.New(rand.NewPCG(seed, seed))
	return func() float64 {
		mu.Lock()
		defer mu.Unlock()
		return r.Float64()
	}
}

func counterValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		m := mf.GetMetric()[0]
		switch mf.GetType() {
		case dto.MetricType_COUNTER:
			return m.GetCounter().GetValue()
		case dto.MetricType_HISTOGRAM:
			return float64(m.GetHistogram().GetSampleCount())
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func TestEveryFactIsDeliveredOnceInEffectWhenHalfTheRequestsFail(t *testing.T) {
	h := newJetStream(t)
	facts := appendBookings(t, h, 15)
	platform := startMock(t, mockplatform.Options{FailRate: 0.5, Rand: seededRand(1)})
	reg := prometheus.NewRegistry()
	// 40 attempts at a 50% failure rate leave a fact undelivered with probability 2^-40.
	startRelay(t, h, Options{URL: platform.URL(), MaxAttempts: 40, Backoff: time.Millisecond, BackoffMax: 20 * time.Millisecond, Concurrency: 4, Registerer: reg})

	// The platform records a fact before the relay reads its answer, so wait for both sides.
	testpoll.Eventually(t, 30*time.Second, "every fact at the platform and counted as delivered", func() bool {
		return platform.Stats().Unique == len(facts) && counterValue(t, reg, "booking_relay_delivered_total") >= float64(len(facts))
	})

	got := map[string]mockplatform.Event{}
	for _, e := range platform.Events() {
		got[e.EventID] = e
	}
	if len(got) != len(facts) {
		t.Fatalf("platform has %d unique events, want the %d facts and nothing else", len(got), len(facts))
	}
	for _, f := range facts {
		e, ok := got[f.EventID]
		if !ok {
			t.Fatalf("fact %s %s never arrived", f.Type, f.EventID)
		}
		var data map[string]any
		if err := json.Unmarshal(e.Data, &data); err != nil {
			t.Fatal(err)
		}
		idKey := map[string]string{eventstore.TypeReservation: "reservationId", eventstore.TypePayment: "paymentId"}[f.AggregateType]
		if e.Type != f.Type || !e.OccurredAt.Equal(f.OccurredAt) || data[idKey] != f.AggregateID || data["version"] != float64(f.Sequence) {
			t.Errorf("fact %s arrived as %+v, data %v; want type %s, occurredAt %s, %s %s, version %d",
				f.EventID, e, data, f.Type, f.OccurredAt, idKey, f.AggregateID, f.Sequence)
		}
	}
	if s := platform.Stats(); s.Failed == 0 {
		t.Errorf("stats %+v: no request failed, so no retry was exercised", s)
	}
	if n := counterValue(t, reg, "booking_relay_retried_total"); n == 0 {
		t.Error("booking_relay_retried_total is 0 although requests failed")
	}
	if n := counterValue(t, reg, "booking_relay_delivered_total"); n < float64(len(facts)) {
		t.Errorf("booking_relay_delivered_total = %v, want at least %d", n, len(facts))
	}
	if n := counterValue(t, reg, "booking_relay_delivery_lag_seconds"); n < float64(len(facts)) {
		t.Errorf("booking_relay_delivery_lag_seconds has %v samples, want at least %d", n, len(facts))
	}
}

func TestFactsBecomeDeadLettersWhilePlatformIsDownAndARedriveDeliversThem(t *testing.T) {
	h := newJetStream(t)
	addr := freeAddr(t) // nobody listens: connection refused
	alerts := newAlertSink(t)
	clock := testclock.New(relayT0)
	reg := prometheus.NewRegistry()
	r := startRelay(t, h, Options{
		URL: "http://" + addr, AlertURL: alerts.srv.URL, MaxAttempts: 3,
		Backoff: time.Millisecond, BackoffMax: 5 * time.Millisecond,
		AlertInterval: time.Hour, Clock: clock.Now, Registerer: reg,
	})
	ctx := context.Background()
	var facts []eventstore.Envelope
	for range 4 {
		res := uuid.NewString()
		date := "c1." + res
		facts = append(facts, appendDate(t, h, date, holdEvents(date, res, 1)...)[1])
	}

	var dls []DeadLetter
	testpoll.Eventually(t, 30*time.Second, "every fact dead-lettered", func() bool {
		var err error
		dls, err = r.DeadLetters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return len(dls) == len(facts)
	})
	byEvent := map[string]DeadLetter{}
	for _, dl := range dls {
		byEvent[dl.EventID] = dl
	}
	for _, f := range facts {
		dl, ok := byEvent[f.EventID]
		if !ok || dl.ID == "" || dl.EventType != "ReservationHeld" || dl.Attempts != 3 || dl.LastError == "" || !dl.FailedAt.Equal(clock.Now()) {
			t.Errorf("dead letter of %s = %+v; want type ReservationHeld, 3 attempts, an error, failed at %s", f.EventID, dl, clock.Now())
		}
	}

	// One alert at once; the other dead letters wait for the interval and go out as one summary.
	testpoll.Eventually(t, 10*time.Second, "the first alert", func() bool { return len(alerts.Texts()) == 1 })
	r.alerts.flush()
	testpoll.Eventually(t, 10*time.Second, "the summary alert", func() bool { return len(alerts.Texts()) == 2 })
	if got := alerts.Texts()[1]; !strings.Contains(got, "3 facts") {
		t.Errorf("summary alert %q does not count the 3 later dead letters", got)
	}

	if err := r.Redrive(ctx, "no-such-dead-letter"); !errors.Is(err, ErrDeadLetterNotFound) {
		t.Errorf("redrive of an unknown id: %v, want ErrDeadLetterNotFound", err)
	}

	platform := mockplatform.New(mockplatform.Options{})
	if err := platform.Start(addr); err != nil {
		t.Fatalf("bring the platform back on %s: %v", addr, err)
	}
	t.Cleanup(func() { _ = platform.Close() })
	for _, dl := range dls {
		if err := r.Redrive(ctx, dl.ID); err != nil {
			t.Fatalf("redrive %s: %v", dl.ID, err)
		}
	}
	testpoll.Eventually(t, 30*time.Second, "redriven facts at the platform and off the list", func() bool {
		left, err := r.DeadLetters(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return platform.Stats().Unique == len(facts) && len(left) == 0
	})
	if n := counterValue(t, reg, "booking_relay_dead_lettered_total"); n != float64(len(facts)) {
		t.Errorf("booking_relay_dead_lettered_total = %v, want %d", n, len(facts))
	}
}

func TestARedriveThatFailsAgainKeepsTheDeadLetterWithItsNewAttempts(t *testing.T) {
	h := newJetStream(t)
	platform := startMock(t, mockplatform.Options{FailRate: 1})
	alerts := newAlertSink(t)
	r := startRelay(t, h, Options{URL: platform.URL(), AlertURL: alerts.srv.URL, MaxAttempts: 2, Backoff: time.Millisecond, BackoffMax: 2 * time.Millisecond})
	ctx := context.Background()
	f := appendEvent(t, h, eventstore.TypePayment, "p1", "PaymentRefunded", map[string]any{})

	var dls []DeadLetter
	testpoll.Eventually(t, 30*time.Second, "the fact dead-lettered", func() bool {
		dls, _ = r.DeadLetters(ctx)
		return len(dls) == 1
	})
	if err := r.Redrive(ctx, dls[0].ID); err != nil {
		t.Fatal(err)
	}
	testpoll.Eventually(t, 30*time.Second, "the failed redrive recorded", func() bool {
		dls, _ = r.DeadLetters(ctx)
		return len(dls) == 1 && dls[0].Attempts == 4
	})
	if dls[0].EventID != f.EventID || !strings.Contains(dls[0].LastError, "500") {
		t.Errorf("dead letter after a failed redrive = %+v, want event %s with the 500 as last error", dls[0], f.EventID)
	}
	testpoll.Eventually(t, 10*time.Second, "an alert for each failure", func() bool { return len(alerts.Texts()) >= 1 })
}

func TestARefusedFactIsDeadLetteredAtOnce(t *testing.T) {
	h := newJetStream(t)
	var posts sync.WaitGroup
	posts.Add(1)
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		once.Do(posts.Done)
		http.Error(w, "schema rejected", http.StatusUnprocessableEntity)
	}))
	t.Cleanup(srv.Close)
	r := startRelay(t, h, Options{URL: srv.URL, MaxAttempts: 8, Backoff: time.Millisecond, BackoffMax: time.Millisecond})
	appendDate(t, h, "c1.d1",
		aggregates.ReservationCancelled{ReservationID: "r1", Reason: aggregates.ReleaseCancelled},
		aggregates.SeatReleased{ReservationID: "r1", Reason: aggregates.ReleaseCancelled, SeatNo: 1})

	var dls []DeadLetter
	testpoll.Eventually(t, 30*time.Second, "the refused fact dead-lettered", func() bool {
		dls, _ = r.DeadLetters(context.Background())
		return len(dls) == 1
	})
	if dls[0].Attempts != 1 || !strings.Contains(dls[0].LastError, "422") || !strings.Contains(dls[0].LastError, "schema rejected") {
		t.Errorf("dead letter = %+v, want 1 attempt and the 422 with its message", dls[0])
	}
}

func TestARelayRestartInTheMiddleOfDeliveriesLosesNothing(t *testing.T) {
	h := newJetStream(t)
	facts := appendBookings(t, h, 20)
	mock := mockplatform.New(mockplatform.Options{})
	// The platform takes the first 10 facts, then stalls every request until released, so the
	// first relay is certainly stopped with deliveries in flight and facts not yet fetched.
	release := make(chan struct{})
	var released sync.Once
	t.Cleanup(func() { released.Do(func() { close(release) }) })
	var posts atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && posts.Add(1) > 10 {
			select {
			case <-release:
			case <-r.Context().Done():
				http.Error(w, "gone", http.StatusServiceUnavailable)
				return
			}
		}
		mock.Handler().ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	// An AckWait far beyond the test's deadline: every fact the first relay held must be
	// handed back at Close, none may be left to time out.
	opts := Options{URL: srv.URL, Concurrency: 4, Backoff: time.Millisecond, BackoffMax: 5 * time.Millisecond, AckWait: 10 * time.Minute}

	first, err := New(h.js, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	testpoll.Eventually(t, 30*time.Second, "the first relay stuck with deliveries in flight", func() bool {
		return mock.Stats().Unique == 10 && len(first.slots) == opts.Concurrency
	})
	first.Close()
	if n := mock.Stats().Unique; n != 10 {
		t.Fatalf("platform has %d facts after the first relay stopped, want 10", n)
	}

	released.Do(func() { close(release) })
	startRelay(t, h, opts)
	testpoll.Eventually(t, 30*time.Second, "every fact delivered by the second relay", func() bool { return mock.Stats().Unique == len(facts) })
}

func TestTheRelayResumesWhereItLeftOffAfterAServerRestart(t *testing.T) {
	h := newJetStream(t)
	platform := startMock(t, mockplatform.Options{})
	opts := Options{URL: platform.URL(), Backoff: time.Millisecond, BackoffMax: 5 * time.Millisecond}
	before := appendBookings(t, h, 5)

	first, err := New(h.js, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := first.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	// Settled, not merely received: a fact whose 2xx the relay had not seen yet when it
	// stopped is delivered again, which is at-least-once working, not what this test is about.
	testpoll.Eventually(t, 30*time.Second, "the first facts delivered and acknowledged", func() bool {
		return platform.Stats().Unique == len(before) && allSettled(t, h)
	})
	first.Close()

	h.stop()
	h.start()
	after := appendBookings(t, h, 5)
	startRelay(t, h, opts)
	testpoll.Eventually(t, 30*time.Second, "the later facts delivered", func() bool { return platform.Stats().Unique == len(before)+len(after) })
	if s := platform.Stats(); s.Duplicates != 0 || s.Received != len(before)+len(after) {
		t.Errorf("stats %+v: the second relay delivered acknowledged facts again", s)
	}
}

// allSettled reports whether the relay's consumers have nothing pending or unacknowledged.
func allSettled(t *testing.T, h *testJetStream) bool {
	t.Helper()
	for _, s := range streams() {
		c, err := h.js.Consumer(context.Background(), s, ConsumerName)
		if err != nil {
			t.Fatal(err)
		}
		ci, err := c.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if ci.NumAckPending != 0 || ci.NumPending != 0 {
			return false
		}
	}
	return true
}

func TestWithoutAURLTheDeadLetterListIsEmptyAndNothingIsDelivered(t *testing.T) {
	h := newJetStream(t)
	r, err := New(h.js, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	dls, err := r.DeadLetters(ctx)
	if err != nil || dls == nil || len(dls) != 0 {
		t.Errorf("DeadLetters = %v, %v; want an empty list", dls, err)
	}
	if err := r.Start(ctx); !errors.Is(err, ErrDisabled) {
		t.Errorf("Start = %v, want ErrDisabled", err)
	}
	if err := r.Redrive(ctx, "x"); !errors.Is(err, ErrDeadLetterNotFound) {
		t.Errorf("Redrive of an unknown dead letter = %v, want ErrDeadLetterNotFound", err)
	}
	// A dead letter from a run that had a data platform: it exists, but there is nowhere to
	// send it now.
	if err := r.dead.put(ctx, deadLetterRecord{DeadLetter: DeadLetter{ID: "e1", EventID: "e1"}}); err != nil {
		t.Fatal(err)
	}
	if err := r.Redrive(ctx, "e1"); !errors.Is(err, ErrDisabled) {
		t.Errorf("Redrive of a dead letter without a data platform = %v, want ErrDisabled", err)
	}
}

func TestTheRelayRegistersItsMetrics(t *testing.T) {
	h := newJetStream(t)
	reg := prometheus.NewRegistry()
	for range 2 { // a second relay on one registry shares the series instead of failing
		r, err := New(h.js, Options{Registerer: reg})
		if err != nil {
			t.Fatal(err)
		}
		r.Close()
	}
	for _, name := range []string{"booking_relay_delivered_total", "booking_relay_retried_total", "booking_relay_dead_lettered_total", "booking_relay_delivery_lag_seconds"} {
		counterValue(t, reg, name)
	}
}

func TestFactsStillArriveAfterIdleFetchLoopsRenewTheirIterators(t *testing.T) {
	h := newJetStream(t)
	platform := startMock(t, mockplatform.Options{})
	r, err := New(h.js, Options{URL: platform.URL()})
	if err != nil {
		t.Fatal(err)
	}
	r.renewAfter = 2 * wakeEvery
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	testpoll.Eventually(t, 30*time.Second, "every idle fetch loop renewed twice", func() bool { return r.renewals.Load() >= int64(2*len(streams())) })
	facts := appendBookings(t, h, 5)
	testpoll.Eventually(t, 30*time.Second, "the facts delivered", func() bool { return platform.Stats().Unique == len(facts) })
}

// A multi-seat reservation's facts each name all of its seats, although only ReservationHeld
// lists them: the confirmation and the refund's cancellation take them from the seat events
// of their own commits. Seat events travel in the same commits and become no facts; a second
// reservation sharing the hold's commit keeps its own seat.
func TestAMultiSeatBookingsFactsEachCarryAllItsSeatsAndSeatEventsBecomeNoFacts(t *testing.T) {
	h := newJetStream(t)
	platform := startMock(t, mockplatform.Options{})
	const date, res, other, pay = "c1.d1", "r1", "r2", "p1"
	seats := []int{3, 4, 7}

	hold := appendDate(t, h, date, append(holdEvents(date, res, seats...), holdEvents(date, other, 9)...)...)
	appendEvent(t, h, eventstore.TypePayment, pay, "PaymentStarted", map[string]any{"paymentId": pay, "reservationId": res, "amount": 3000})
	appendDate(t, h, date, aggregates.ReservationPaymentStarted{ReservationID: res, PaymentID: pay})
	confirm := appendDate(t, h, date, aggregates.ReservationConfirmed{ReservationID: res, PaymentID: pay}, sold(res, pay, 4), sold(res, pay, 3), sold(res, pay, 7))
	completed := appendEvent(t, h, eventstore.TypePayment, pay, "PaymentCompleted", map[string]any{})
	appendEvent(t, h, eventstore.TypePayment, pay, "PaymentRefundStarted", map[string]any{})
	var released []aggregates.Event
	for _, n := range seats {
		released = append(released, aggregates.SeatReleased{ReservationID: res, Reason: aggregates.ReleaseRefunded, SeatNo: n})
	}
	cancel := appendDate(t, h, date, append([]aggregates.Event{aggregates.ReservationCancelled{ReservationID: res, Reason: aggregates.ReleaseRefunded, PaymentID: pay}}, released...)...)
	refunded := appendEvent(t, h, eventstore.TypePayment, pay, "PaymentRefunded", map[string]any{})

	// hold: SeatHeld 3, 4, 7, ReservationHeld r1, SeatHeld 9, ReservationHeld r2.
	want := map[string][]int{hold[3].EventID: seats, hold[5].EventID: {9}, confirm[0].EventID: seats, cancel[0].EventID: seats, completed.EventID: nil, refunded.EventID: nil}
	startRelay(t, h, Options{URL: platform.URL(), Backoff: time.Millisecond, BackoffMax: 5 * time.Millisecond})
	// Settled too: every commit acknowledged, those without facts included.
	testpoll.Eventually(t, 30*time.Second, "the facts at the platform and every commit settled", func() bool {
		return platform.Stats().Unique == len(want) && allSettled(t, h)
	})

	for _, e := range platform.Events() {
		seatsWanted, ok := want[e.EventID]
		if !ok {
			t.Errorf("%s %s reached the platform but is not one of the facts", e.Type, e.EventID)
			continue
		}
		var data struct {
			ReservationID string `json:"reservationId"`
			PaymentID     string `json:"paymentId"`
			SeatNos       []int  `json:"seatNos"`
		}
		if err := json.Unmarshal(e.Data, &data); err != nil {
			t.Fatal(err)
		}
		switch {
		case seatsWanted == nil && (data.PaymentID != pay || data.SeatNos != nil):
			t.Errorf("%s = %s, want payment %s and no seats", e.Type, e.Data, pay)
		case seatsWanted != nil && !slices.Equal(data.SeatNos, seatsWanted):
			t.Errorf("%s of %s carries seats %v, want %v", e.Type, data.ReservationID, data.SeatNos, seatsWanted)
		}
	}
	if s := platform.Stats(); s.Received != len(want) {
		t.Errorf("stats %+v: want exactly the %d facts, each once", s, len(want))
	}
}

// TestStartWhileJetStreamIsDownIsUnavailableAndMayBeTriedAgain: given a relay whose
// JetStream does not answer, when it starts, then the failure is eventstore.ErrUnavailable
// (what a start tries again, as on a cluster with a node down) and a second start is another
// attempt, not "already started".
func TestStartWhileJetStreamIsDownIsUnavailableAndMayBeTriedAgain(t *testing.T) {
	h := newJetStream(t)
	r, err := New(h.js, Options{URL: "http://127.0.0.1:1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	h.stop()
	for attempt := 1; attempt <= 2; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := r.Start(ctx)
		cancel()
		if !errors.Is(err, eventstore.ErrUnavailable) {
			t.Fatalf("attempt %d: Start = %v, want eventstore.ErrUnavailable", attempt, err)
		}
	}
}
