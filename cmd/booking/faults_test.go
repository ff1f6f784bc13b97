package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/spf13/pflag"
)

// Fault tests: NATS unreachable at start, NATS lost while serving and back, and the event
// store refusing writes (its storage full). The service must say so (a clear log line, 503
// SERVICE_UNAVAILABLE) quickly, never hang and never pretend, and recover by itself.

// TestFaultNATSUnreachableAtStart starts `booking serve` against NATS URLs where nothing
// listens: it must give up after a bounded number of attempts, log each failure once, and
// exit non-zero.
func TestFaultNATSUnreachableAtStart(t *testing.T) {
	if runAsChild() {
		return
	}
	if testing.Short() {
		t.Skip("starts a server process that retries for about ten seconds")
	}
	t.Parallel() // it mostly waits between attempts
	closed1, closed2 := freeLoopbackPort(t), freeLoopbackPort(t)
	urls := fmt.Sprintf("nats://127.0.0.1:%d,nats://127.0.0.1:%d", closed1, closed2)
	began := time.Now()
	code, out := runBookingTool(t, 2*time.Minute, "serve", "--nats-url", urls, "--data-dir", t.TempDir(),
		"--http-addr", "127.0.0.1:0", "--log-format", "json", "--no-demo")
	took := time.Since(began)
	if code == 0 {
		t.Fatalf("booking serve with unreachable NATS exited 0:\n%s", out)
	}
	var attempts []int
	var final string
	for _, line := range strings.Split(out, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil {
			if strings.HasPrefix(line, "booking: ") {
				final = line
			}
			continue
		}
		if rec["msg"] == "eventstore: cannot reach NATS" {
			if rec["level"] != "WARN" || rec["err"] == nil || rec["urls"] != urls {
				t.Errorf("a failed attempt's log line lacks its level, error or URLs: %s", line)
			}
			n, _ := rec["attempt"].(float64)
			attempts = append(attempts, int(n))
		}
	}
	if len(attempts) < 2 || len(attempts) > 30 {
		t.Errorf("%d logged attempts, want a few and a bound: %v\n%s", len(attempts), attempts, out)
	}
	for i, a := range attempts {
		if a != i+1 {
			t.Errorf("attempt lines %v: one line per attempt, numbered from 1", attempts)
			break
		}
	}
	if !strings.Contains(final, "event store") || !strings.Contains(final, "unavailable") || !strings.Contains(final, strconv.Itoa(closed1)) {
		t.Errorf("the last line does not say what failed: %q", final)
	}
	t.Logf("unreachable NATS: %d attempts, exit %d after %s; last line: %s", len(attempts), code, took.Round(100*time.Millisecond), final)
}

// TestFaultNATSLostWhileServing takes the NATS server away under a running service and brings
// it back on the same port and store: writes fail fast with 503 while it is gone (reads of the
// read models go on), and everything works again once it is back.
func TestFaultNATSLostWhileServing(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS server and the service")
	}
	const requestTimeout = 2 * time.Second
	ns := startStandaloneNATS(t, "lost")
	srv := startInProc(t, "--nats-url", ns.url(), "--data-dir", t.TempDir(), "--queue-batch", "0",
		"--user-rate-limit", "0", "--admin-token", "fault-admin", "--request-timeout", requestTimeout.String())
	c := newAPIClient(t, srv.url, "fault-admin", 30*time.Second)
	c.createConcert(t, "lost", 10, 100)
	tok, err := c.token("ada")
	if err != nil {
		t.Fatal(err)
	}
	c.mustCall(t, 200, "POST", "/api/v1/users/ada/points/charge", map[string]any{"amount": 1000})
	first := c.mustCall(t, 201, "POST", "/api/v1/reservations", map[string]any{"userId": "ada", "concertId": "lost", "dateId": "d1", "seatNo": 1}, "Queue-Token", tok)

	ns.shutdown()
	lost := time.Now()
	pollUntil(t, 5*time.Second, "/readyz answering 503 without NATS", func() error {
		if r, err := c.call("GET", "/readyz", nil); err != nil || r.status != 503 {
			return fmt.Errorf("%v %s", err, r)
		}
		return nil
	})
	t.Logf("/readyz said 503 %s after NATS went away", time.Since(lost).Round(time.Millisecond))

	writes := []struct {
		name   string
		method string
		path   string
		body   any
		hdr    []string
	}{
		{"a hold", "POST", "/api/v1/reservations", map[string]any{"userId": "ada", "concertId": "lost", "dateId": "d1", "seatNo": 2}, []string{"Queue-Token", tok}},
		{"a payment", "POST", "/api/v1/payments", map[string]any{"userId": "ada", "reservationId": first.str("reservationId")}, []string{"Queue-Token", tok}},
		{"a charge", "POST", "/api/v1/users/ada/points/charge", map[string]any{"amount": 5}, nil},
		{"a queue token", "POST", "/api/v1/queue/tokens", map[string]any{"userId": "bob"}, nil},
	}
	for _, w := range writes {
		t.Run(w.name+" fails fast with 503 while NATS is gone", func(t *testing.T) {
			began := time.Now()
			r, err := c.call(w.method, w.path, w.body, w.hdr...)
			took := time.Since(began)
			if err != nil {
				t.Fatal(err)
			}
			if r.status != 503 || r.str("code") != "SERVICE_UNAVAILABLE" || r.header.Get("Retry-After") == "" {
				t.Fatalf("%s without NATS: %s (Retry-After %q)", w.name, r, r.header.Get("Retry-After"))
			}
			if took > requestTimeout+time.Second {
				t.Fatalf("%s without NATS took %s, more than the request timeout %s", w.name, took, requestTimeout)
			}
			t.Logf("%s: 503 in %s", w.name, took.Round(time.Millisecond))
		})
	}
	if r, err := c.call("GET", "/api/v1/concerts/lost/dates/d1/seats", nil); err == nil {
		t.Logf("seat map without NATS: %d (reads are served from the read models)", r.status)
	}
	if !hasLog(srv.log, "WARN", "request failed", "unavailable") {
		t.Errorf("no warning names the failed requests' cause:\n%s", srv.log)
	}
	if !hasLog(srv.log, "WARN", "eventstore: NATS disconnected", "") {
		t.Errorf("the lost connection was not logged:\n%s", srv.log)
	}

	ns.start()
	back := time.Now()
	var second apiReply
	took := pollUntil(t, 30*time.Second, "a hold succeeding once NATS is back", func() error {
		r, err := c.call("POST", "/api/v1/reservations", map[string]any{"userId": "ada", "concertId": "lost", "dateId": "d1", "seatNo": 2}, "Queue-Token", tok)
		if err != nil {
			return err
		}
		if r.status != 201 {
			if r.status != 503 {
				t.Fatalf("hold after NATS came back: %s", r)
			}
			return fmt.Errorf("%s", r)
		}
		second = r
		return nil
	})
	t.Logf("NATS back: holds succeed again after %s", took.Round(time.Millisecond))
	// Read-your-writes needs the read models' consumers to have resumed too.
	r := c.mustCall(t, 200, "GET", "/api/v1/reservations/"+second.str("reservationId"), nil)
	if r.str("status") != "HELD" {
		t.Fatalf("the hold made after the outage: %s", r)
	}
	pay := c.mustCall(t, 201, "POST", "/api/v1/payments", map[string]any{"userId": "ada", "reservationId": first.str("reservationId")}, "Queue-Token", tok)
	if pay.str("status") != "COMPLETED" {
		t.Fatalf("payment after the outage: %s", pay)
	}
	pollUntil(t, 10*time.Second, "the seat map and /readyz after the outage", func() error {
		seats, err := c.seatStatuses("lost")
		if err != nil {
			return err
		}
		if seats[1] != "SOLD" || seats[2] != "HELD" {
			return fmt.Errorf("seats 1 and 2 are %s and %s", seats[1], seats[2])
		}
		if r, err := c.call("GET", "/readyz", nil); err != nil || r.status != 200 {
			return fmt.Errorf("/readyz: %v %s", err, r)
		}
		return nil
	})
	t.Logf("fully recovered %s after NATS came back", time.Since(back).Round(time.Millisecond))
}

// TestFaultEventStoreFull fills the JetStream storage of the NATS server under the service:
// a hold must then fail with 503 and a log line naming the cause (not a 201, not a hang, not
// a 500 that looks like a bug), change nothing, and succeed again once space is freed.
func TestFaultEventStoreFull(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS server and the service")
	}
	ns := startStandaloneNATS(t, "full")
	ns.shutdown()
	ns.opts.JetStreamMaxStore = 8 << 20
	ns.start()
	srv := startInProc(t, "--nats-url", ns.url(), "--data-dir", t.TempDir(), "--queue-batch", "0",
		"--user-rate-limit", "0", "--admin-token", "fault-admin", "--request-timeout", "2s")
	c := newAPIClient(t, srv.url, "fault-admin", 30*time.Second)
	c.createConcert(t, "full", 10, 100)
	tok, err := c.token("ada")
	if err != nil {
		t.Fatal(err)
	}

	// Fill the store from outside, as another tenant or a runaway stream would.
	nc, err := nats.Connect(ns.url())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "FILLER", Subjects: []string{"filler.>"}, Storage: jetstream.FileStorage}); err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 256<<10)
	var fillErr error
	for i := 0; i < 100 && fillErr == nil; i++ {
		_, fillErr = js.Publish(ctx, "filler.x", chunk)
	}
	var apiErr *jetstream.APIError
	if !errors.As(fillErr, &apiErr) {
		t.Fatalf("filling 8 MiB of JetStream storage: %v", fillErr)
	}
	t.Logf("store full: %v", fillErr)

	r, err := c.hold("ada", tok, "full", 1)
	if err != nil {
		t.Fatal(err)
	}
	if r.status != 503 || r.str("code") != "SERVICE_UNAVAILABLE" {
		t.Errorf("hold with the event store full: %s, want 503 SERVICE_UNAVAILABLE", r)
	}
	if !hasLog(srv.log, "", "request failed", "insufficient resources") {
		t.Errorf("no log line names the store's refusal:\n%s", srv.log)
	}
	if seats, err := c.seatStatuses("full"); err != nil || seats[1] != "AVAILABLE" {
		t.Errorf("seat 1 after the refused hold: %v %v", seats[1], err)
	}

	if err := js.DeleteStream(ctx, "FILLER"); err != nil {
		t.Fatal(err)
	}
	took := pollUntil(t, 30*time.Second, "a hold succeeding once space is freed", func() error {
		r, err := c.hold("ada", tok, "full", 1)
		if err != nil {
			return err
		}
		if r.status != 201 {
			return fmt.Errorf("%s", r)
		}
		return nil
	})
	t.Logf("space freed: holds succeed again after %s", took.Round(time.Millisecond))
}

// hasLog tells whether logs has a record at level ("" for any) with message msg whose fields
// mention text ("" for any).
func hasLog(logs *logBuffer, level, msg, text string) bool {
	for _, rec := range logs.records() {
		if rec["msg"] != msg || (level != "" && rec["level"] != level) {
			continue
		}
		raw, _ := json.Marshal(rec)
		if strings.Contains(string(raw), text) {
			return true
		}
	}
	return false
}

// TestFaultStorageUnusableAtStart breaks one part of the data dir at a time: the start must
// fail with an error naming that part (not a half-working server), release everything it had
// opened, and start on the same data dir once the part is repaired.
func TestFaultStorageUnusableAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the service")
	}
	tests := []struct {
		name  string
		part  string // path in the data dir made a file or a directory where the other is expected
		asDir bool
		want  string
	}{
		{name: "the embedded JetStream directory is a file", part: "nats", want: "event store"},
		{name: "the read-model directory is a file", part: "projections", want: "read models"},
		{name: "the token secret is a directory", part: "token-secret", asDir: true, want: "token secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, tt.part)
			if tt.asDir {
				if err := os.Mkdir(path, 0o755); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(path, []byte("not a directory"), 0o644); err != nil {
				t.Fatal(err)
			}
			var f serveFlags
			fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
			addServeFlags(fs, &f)
			if err := fs.Parse([]string{"--data-dir", dir, "--http-addr", "127.0.0.1:0", "--no-demo"}); err != nil {
				t.Fatal(err)
			}
			logs := &logBuffer{}
			srv, err := startServer(context.Background(), f, slog.New(slog.NewJSONHandler(logs, nil)))
			if err == nil {
				go func() { _ = srv.shutdown() }() // see TestFaultShutdownRightAfterStart
				t.Fatalf("started with %s", tt.name)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("the start failed with %q, which does not name the %s", err, tt.want)
			}
			if err := os.RemoveAll(path); err != nil {
				t.Fatal(err)
			}
			again := startInProc(t, "--data-dir", dir)
			if r, err := newAPIClient(t, again.url, "", 10*time.Second).call("GET", "/readyz", nil); err != nil || r.status != 200 {
				t.Fatalf("after the repair: %v %s", err, r)
			}
		})
	}
}

// TestFaultJetStreamNotReadyAtStart starts the service against a NATS server that answers but
// has no JetStream yet (a server still starting, or restarted with JetStream on): the start
// must keep trying within its bound and succeed once JetStream is there.
func TestFaultJetStreamNotReadyAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a NATS server and the service")
	}
	ns := &natsNode{t: t, opts: natsserver.Options{ServerName: "late", Host: "127.0.0.1", Port: freeLoopbackPort(t), NoSigs: true, NoLog: true}}
	ns.start()
	t.Cleanup(ns.shutdown)
	started, logs := startInProcAsync(t, "--nats-url", ns.url(), "--data-dir", t.TempDir())
	logged(t, logs, 30*time.Second, "eventstore: cannot reach NATS")

	ns.shutdown()
	ns.opts.JetStream, ns.opts.StoreDir = true, filepath.Join(t.TempDir(), "jetstream")
	ns.start()
	select {
	case res := <-started:
		if res.err != nil {
			t.Fatalf("the start gave up although JetStream came up after its first attempt: %v\n%s", res.err, logs)
		}
		if err := waitReady(context.Background(), res.url, 30*time.Second); err != nil {
			t.Fatal(err)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("the start neither succeeded nor gave up within 60s\n%s", logs)
	}
}

// TestFaultShutdownRightAfterStart stops the service the moment it has started, as a SIGTERM
// that arrives during start-up does (serve then shuts down as soon as startServer returns):
// the shutdown must return, so that the process exits, not hang.
func TestFaultShutdownRightAfterStart(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the service")
	}
	for i := range 5 {
		var f serveFlags
		fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
		addServeFlags(fs, &f)
		if err := fs.Parse([]string{"--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--no-demo"}); err != nil {
			t.Fatal(err)
		}
		srv, err := startServer(context.Background(), f, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- srv.shutdown() }()
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			t.Fatalf("start %d: the shutdown right after the start did not return within 30s", i)
		}
	}
}
