package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/api/apitest"
	"github.com/booking-engine/booking/eventstore"
	"github.com/booking-engine/booking/projections"
)

// observed is a `booking serve` in this process, like startE2E's, whose event store and log
// (JSON, debug level) the test can read.
type observed struct {
	*e2e
	srv  *runningServer
	logs *obsLog
}

// obsLog is a log destination safe for the server's concurrent writers.
type obsLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *obsLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *obsLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startObserved starts a server on dataDir (so that a test can restart it on the same one)
// and waits until it is ready; it is stopped at the end of the test if not before.
func startObserved(t *testing.T, dataDir string, args ...string) *observed {
	t.Helper()
	var f serveFlags
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	addServeFlags(fs, &f)
	base := []string{"--data-dir=" + dataDir, "--http-addr=127.0.0.1:0", "--no-demo", "--admin-token=secret-admin", "--fsync=interval"}
	if err := fs.Parse(append(base, args...)); err != nil {
		t.Fatal(err)
	}
	logs := &obsLog{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv, err := startServer(ctx, f, log)
	if err != nil {
		t.Fatalf("start: %v\n%s", err, logs)
	}
	t.Cleanup(func() { _ = srv.shutdown() })
	if err := waitReady(ctx, srv.url, 60*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, logs)
	}
	return &observed{
		e2e: &e2e{t: t, url: srv.url, admin: f.adminToken, c: &http.Client{Timeout: 30 * time.Second, Transport: apitest.SpecTransport(t, nil)}},
		srv: srv, logs: logs,
	}
}

// sample is one line of the Prometheus text format.
type sample struct {
	name   string
	labels map[string]string
	value  float64
}

// scrape reads GET /metrics.
func (o *observed) scrape() []sample {
	o.t.Helper()
	a := o.must(200, o.do("GET", "/metrics", nil))
	var out []sample
	sc := bufio.NewScanner(bytes.NewReader(a.raw))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		s, err := parseSample(line)
		if err != nil {
			o.t.Fatalf("/metrics line %q: %v", line, err)
		}
		out = append(out, s)
	}
	return out
}

// parseSample parses `name{k="v",...} value`; the label values we emit contain no quotes,
// commas or braces.
func parseSample(line string) (sample, error) {
	series, val, ok := strings.Cut(line, " ")
	if !ok {
		return sample{}, fmt.Errorf("no value")
	}
	v, err := strconv.ParseFloat(strings.Fields(val)[0], 64)
	if err != nil {
		return sample{}, err
	}
	s := sample{name: series, labels: map[string]string{}, value: v}
	if name, rest, ok := strings.Cut(series, "{"); ok {
		s.name = name
		for _, kv := range strings.Split(strings.TrimSuffix(rest, "}"), ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return sample{}, fmt.Errorf("label %q", kv)
			}
			s.labels[k] = strings.Trim(v, `"`)
		}
	}
	return s, nil
}

// find returns the value of the series with exactly these labels.
func find(samples []sample, name string, labels map[string]string) (float64, bool) {
	for _, s := range samples {
		if s.name == name && maps.Equal(s.labels, labels) {
			return s.value, true
		}
	}
	return 0, false
}

// waitMetric polls /metrics until the series has the value: the event counters follow the
// read models, which apply events shortly after the request that appended them answered.
func (o *observed) waitMetric(name string, labels map[string]string, want float64) {
	o.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, ok := find(o.scrape(), name, labels)
		if ok && got == want {
			return
		}
		if time.Now().After(deadline) {
			o.t.Fatalf("%s%v = %v (present %v), want %v", name, labels, got, ok, want)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
}

// send is do that also returns the answer's headers.
func (o *observed) send(method, path string, body any, headers ...string) (answer, http.Header) {
	o.t.Helper()
	b, _ := json.Marshal(body)
	req, err := http.NewRequest(method, o.url+path, bytes.NewReader(b))
	if err != nil {
		o.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := o.c.Do(req)
	if err != nil {
		o.t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	a := answer{status: resp.StatusCode, raw: buf.Bytes()}
	_ = json.Unmarshal(a.raw, &a.body)
	return a, resp.Header
}

func (o *observed) charge(user string, amount int) {
	o.t.Helper()
	o.must(200, o.do("POST", "/api/v1/users/"+user+"/points/charge", map[string]any{"amount": amount}))
}

func (o *observed) hold(user, tok, concert string, seat int, headers ...string) answer {
	o.t.Helper()
	return o.do("POST", "/api/v1/reservations", map[string]any{"userId": user, "concertId": concert, "dateId": "d1", "seatNo": seat},
		append([]string{"Queue-Token", tok}, headers...)...)
}

func (o *observed) pay(user, tok, resID string, headers ...string) answer {
	o.t.Helper()
	return o.do("POST", "/api/v1/payments", map[string]any{"reservationId": resID, "userId": user},
		append([]string{"Queue-Token", tok}, headers...)...)
}

func TestMetricsAfterABooking(t *testing.T) {
	o := startObserved(t, t.TempDir(), "--queue-batch=0")
	o.concert("m1", 3, 1000)
	alice, bob := o.token("alice"), o.token("bob")
	o.charge("alice", 5000)
	res := o.must(201, o.hold("alice", alice, "m1", 1))
	o.waitMetric("booking_holds_active", nil, 1)
	o.must(201, o.pay("alice", alice, res.str("reservationId")))
	// Bob has no points: his payment fails and his seat stays held.
	bobRes := o.must(201, o.hold("bob", bob, "m1", 2))
	if a := o.pay("bob", bob, bobRes.str("reservationId")); a.status != 409 || a.str("code") != "INSUFFICIENT_POINTS" {
		t.Fatalf("payment without points: %d %s", a.status, a.raw)
	}
	o.waitMetric("booking_payments_completed_total", nil, 1)
	o.waitMetric("booking_payments_failed_total", map[string]string{"reason": "INSUFFICIENT_POINTS"}, 1)
	o.waitMetric("booking_holds_active", nil, 1)

	got := o.scrape()
	type want struct {
		name    string
		labels  map[string]string
		value   float64
		atLeast bool
	}
	route := func(r, method, status string) map[string]string {
		return map[string]string{"route": r, "method": method, "status": status}
	}
	for _, w := range []want{
		{name: "booking_http_requests_total", labels: route("/api/v1/reservations", "POST", "201"), value: 2},
		{name: "booking_http_requests_total", labels: route("/api/v1/payments", "POST", "201"), value: 1},
		{name: "booking_http_requests_total", labels: route("/api/v1/payments", "POST", "409"), value: 1},
		{name: "booking_http_requests_total", labels: route("/api/v1/users/:userId/points/charge", "POST", "200"), value: 1},
		{name: "booking_http_request_duration_seconds_count", labels: map[string]string{"route": "/api/v1/reservations", "method": "POST"}, value: 2},
		// The scrape itself comes on one.
		{name: "booking_http_open_connections", value: 1, atLeast: true},
		{name: "booking_holds_total", value: 2},
		{name: "booking_holds_active", value: 1},
		{name: "booking_holds_expired_total", value: 0},
		{name: "booking_holds_cancelled_total", value: 0},
		{name: "booking_payments_completed_total", value: 1},
		{name: "booking_payments_failed_total", labels: map[string]string{"reason": "INSUFFICIENT_POINTS"}, value: 1},
		{name: "booking_payments_failed_total", labels: map[string]string{"reason": "RESERVATION_NOT_PAYABLE"}, value: 0},
		{name: "booking_payments_reversed_total", value: 0},
		{name: "booking_payments_refunded_total", value: 0},
		{name: "booking_queue_waiting", value: 0},
		{name: "booking_queue_admitted", value: 2},
		{name: "booking_queue_issued", value: 2},
		{name: "booking_ready", value: 1},
		// Two holds, two payments' starts (each with its lock), alice's completion (with the
		// confirmation and the sale), bob's failure (with the unlock): a payment has no
		// appends of its own, its events travel in its date's commits.
		{name: "booking_eventstore_append_duration_seconds_count", labels: map[string]string{"aggregate": "date"}, value: 6},
		{name: "booking_projection_lag_events", labels: map[string]string{"projection": "payments"}, value: 0, atLeast: true},
		{name: "booking_projection_checkpoint", labels: map[string]string{"projection": "payments"}, value: 4, atLeast: true},
		{name: "booking_relay_delivered_total", value: 0},
		{name: "booking_relay_dead_lettered_total", value: 0},
		// The resident memory split (Linux, where this test runs): the process holds some of
		// its own, and maps the read models' files.
		{name: "booking_process_resident_anon_bytes", value: 1 << 20, atLeast: true},
		{name: "booking_process_resident_file_bytes", value: 1, atLeast: true},
	} {
		v, ok := find(got, w.name, w.labels)
		switch {
		case !ok:
			t.Errorf("no series %s%v", w.name, w.labels)
		case w.atLeast && v < w.value, !w.atLeast && v != w.value:
			t.Errorf("%s%v = %v, want %v", w.name, w.labels, v, w.value)
		}
	}
	for _, s := range got {
		if r, ok := s.labels["route"]; ok && s.name == "booking_http_requests_total" && strings.Contains(r, res.str("reservationId")) {
			t.Errorf("a raw path became a route label: %q", r)
		}
	}
}

func TestEventCountersDoNotRecountHistoryAfterARestart(t *testing.T) {
	dir := t.TempDir()
	o := startObserved(t, dir, "--queue-batch=0")
	o.concert("m1", 3, 1000)
	alice, bob := o.token("alice"), o.token("bob")
	o.must(201, o.hold("bob", bob, "m1", 2)) // still held after the restart
	o.charge("alice", 5000)
	o.must(201, o.pay("alice", alice, o.must(201, o.hold("alice", alice, "m1", 1)).str("reservationId")))
	o.waitMetric("booking_payments_completed_total", nil, 1)
	o.waitMetric("booking_holds_total", nil, 2)
	if err := o.srv.shutdown(); err != nil {
		t.Fatal(err)
	}
	// Without read models the new process replays the whole log into them at start-up.
	if err := os.RemoveAll(projections.Dir(dir)); err != nil {
		t.Fatal(err)
	}

	again := startObserved(t, dir, "--queue-batch=0")
	got := again.scrape() // ready: the read models have applied the whole log
	for _, w := range []struct {
		name  string
		value float64
	}{
		{"booking_payments_completed_total", 0},
		{"booking_holds_total", 0},
		{"booking_holds_active", 1},
		{"booking_projection_lag_events", 0},
	} {
		labels := map[string]string(nil)
		if strings.HasPrefix(w.name, "booking_projection_") {
			labels = map[string]string{"projection": "reservations"}
		}
		if v, ok := find(got, w.name, labels); !ok || v != w.value {
			t.Errorf("after the restart %s = %v (present %v), want %v", w.name, v, ok, w.value)
		}
	}
	// New events count again.
	carol := again.token("carol")
	again.must(201, again.hold("carol", carol, "m1", 3))
	again.waitMetric("booking_holds_total", nil, 1)
}

func TestCorrelationIDTravelsFromTheRequestIntoEveryEventItCauses(t *testing.T) {
	o := startObserved(t, t.TempDir(), "--queue-batch=0")
	o.concert("m1", 3, 1000)
	tok := o.token("alice")
	o.charge("alice", 5000)

	hold, h := o.send("POST", "/api/v1/reservations", map[string]any{"userId": "alice", "concertId": "m1", "dateId": "d1", "seatNo": 1},
		"Queue-Token", tok, "X-Request-ID", "corr-hold-7")
	if hold.status != 201 || h.Get("X-Request-ID") != "corr-hold-7" {
		t.Fatalf("hold: %d %s, X-Request-ID %q", hold.status, hold.raw, h.Get("X-Request-ID"))
	}
	resID := hold.str("reservationId")
	pay, h := o.send("POST", "/api/v1/payments", map[string]any{"reservationId": resID, "userId": "alice"},
		"Queue-Token", tok, "X-Request-ID", "corr-pay-7")
	if pay.status != 201 || h.Get("X-Request-ID") != "corr-pay-7" {
		t.Fatalf("pay: %d %s, X-Request-ID %q", pay.status, pay.raw, h.Get("X-Request-ID"))
	}
	payID := pay.str("paymentId")
	// Without an X-Request-ID the server makes one, echoes it, and uses it all the same.
	charge, h := o.send("POST", "/api/v1/users/bob/points/charge", map[string]any{"amount": 10})
	generated := h.Get("X-Request-ID")
	if charge.status != 200 || generated == "" {
		t.Fatalf("charge: %d %s, X-Request-ID %q", charge.status, charge.raw, generated)
	}

	tests := []struct {
		name        string
		correlation string
		want        map[string]string // event type → causation ID
	}{
		{"every step of a payment carries the payment request's ID", "corr-pay-7", map[string]string{
			"PaymentStarted":            payID + "/start",
			"ReservationPaymentStarted": payID + "/start",
			"PointsDebited":             payID + "/debit",
			"ReservationConfirmed":      payID + "/complete",
			"SeatSold":                  payID + "/complete",
			"QueueTokenRevoked":         payID + "/revoke",
			"PaymentCompleted":          payID + "/complete",
		}},
		{"both events of a hold carry the hold request's ID", "corr-hold-7", map[string]string{
			"SeatHeld":        resID + "/hold",
			"ReservationHeld": resID + "/hold",
		}},
		{"a generated request ID reaches the events too", generated, map[string]string{
			"PointsCharged": "",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			if err := showCorrelation(context.Background(), o.srv.store, &out, tt.correlation, true); err != nil {
				t.Fatal(err)
			}
			var types []string
			for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
				var env envelopeJSON
				if err := json.Unmarshal([]byte(line), &env); err != nil {
					t.Fatalf("%s: %v", line, err)
				}
				types = append(types, env.Type)
				want, ok := tt.want[env.Type]
				switch {
				case !ok:
					t.Errorf("unexpected %s with correlation %s", env.Type, tt.correlation)
				case want != "" && env.CausationID != want:
					t.Errorf("%s caused by %q, want %q", env.Type, env.CausationID, want)
				case env.CausationID == "":
					t.Errorf("%s has no causation ID", env.Type)
				}
			}
			if len(types) != len(tt.want) {
				slices.Sort(types)
				t.Errorf("events %v, want one of each of %v", types, tt.want)
			}
		})
	}

	// The request's log line carries the same ID.
	var found bool
	for _, line := range strings.Split(o.logs.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != "http request" {
			continue
		}
		if rec["request_id"] == "corr-pay-7" {
			found = true
			if rec["route"] != "/api/v1/payments" || rec["status"] != float64(201) {
				t.Errorf("log line of the payment: %s", line)
			}
		}
	}
	if !found {
		t.Errorf("no request log line with request_id corr-pay-7 in\n%s", o.logs)
	}
}

func TestEventCounters(t *testing.T) {
	enc := func(ev aggregates.Event) []byte {
		b, err := aggregates.Encode(ev)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	env := func(stream string, seq uint64, ev aggregates.Event) eventstore.Envelope {
		return eventstore.Envelope{Type: ev.EventType(), Data: enc(ev), Stream: stream, Sequence: seq}
	}
	tests := []struct {
		name   string
		event  eventstore.Envelope
		metric string
		labels map[string]string
		want   float64
	}{
		{"a hold after the start counts", env("SEATS_1", 11, aggregates.ReservationHeld{ReservationID: "r"}), "booking_holds_total", nil, 1},
		{"an event at the start head is history", env("SEATS_1", 10, aggregates.ReservationHeld{ReservationID: "r"}), "booking_holds_total", nil, 0},
		{"an event of a stream that was empty at start counts", env("SEATS_2", 1, aggregates.ReservationHeld{ReservationID: "r"}), "booking_holds_total", nil, 1},
		{"an expiry counts as an expired hold", env("SEATS_1", 12, aggregates.ReservationExpired{}), "booking_holds_expired_total", nil, 1},
		{"an owner's cancellation counts as a cancelled hold", env("SEATS_1", 12, aggregates.ReservationCancelled{Reason: aggregates.ReleaseCancelled}), "booking_holds_cancelled_total", nil, 1},
		{"a refund's cancellation is not a cancelled hold", env("SEATS_1", 12, aggregates.ReservationCancelled{Reason: aggregates.ReleaseRefunded}), "booking_holds_cancelled_total", nil, 0},
		{"a completed payment counts", env("SEATS_0", 1, aggregates.PaymentCompleted{}), "booking_payments_completed_total", nil, 1},
		{"a failed payment counts by its reason", env("SEATS_0", 1, aggregates.PaymentFailed{Reason: aggregates.FailNotPayable}), "booking_payments_failed_total", map[string]string{"reason": aggregates.FailNotPayable}, 1},
		{"an unknown failure reason counts as OTHER", env("SEATS_0", 1, aggregates.PaymentFailed{Reason: "GREMLINS"}), "booking_payments_failed_total", map[string]string{"reason": "OTHER"}, 1},
		{"a reversed debit counts as a reversal", env("WALLETS_3", 1, aggregates.PointsRefunded{Amount: 5, PaymentID: "p", Reason: aggregates.RefundReversal}), "booking_payments_reversed_total", nil, 1},
		{"a refund's points are not a reversal", env("WALLETS_3", 1, aggregates.PointsRefunded{Amount: 5, PaymentID: "p", Reason: aggregates.RefundRefund}), "booking_payments_reversed_total", nil, 0},
		{"a refunded payment counts", env("SEATS_0", 1, aggregates.PaymentRefunded{}), "booking_payments_refunded_total", nil, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			m := newMetrics(reg)
			m.startHeads = map[string]uint64{"SEATS_1": 10}
			m.onEvent(tt.event)
			got, ok := gathered(t, reg, tt.metric, tt.labels)
			if !ok || got != tt.want {
				t.Errorf("%s%v = %v (present %v), want %v", tt.metric, tt.labels, got, ok, tt.want)
			}
			// No other event counter moved.
			for _, name := range eventCounters {
				if name == tt.metric {
					continue
				}
				if v, _ := gathered(t, reg, name, nil); v != 0 {
					t.Errorf("%s = %v, want 0", name, v)
				}
			}
		})
	}
}

var eventCounters = []string{"booking_holds_total", "booking_holds_expired_total", "booking_holds_cancelled_total",
	"booking_payments_completed_total", "booking_payments_reversed_total", "booking_payments_refunded_total"}

// gathered returns a counter's value from reg.
func gathered(t *testing.T, reg prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if maps.Equal(got, labels) {
				return m.GetCounter().GetValue(), true
			}
		}
	}
	return 0, false
}
