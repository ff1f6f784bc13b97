package main

import (
	"bufio"
	"errors"
	"fmt"
	"github.com/booking-engine/booking/api/apitest"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"
	bolt "go.etcd.io/bbolt"
)

// The shutdown tests stop `booking serve` with SIGTERM and hold it to a bound: a stopping
// service exits 0 within --request-timeout plus a few seconds, whoever is still connected.

const (
	// shutdownRequestTimeout is the --request-timeout of the shutdown tests: short, so that a
	// stop bounded by it is told from one that waits on a fixed or unbounded timeout.
	shutdownRequestTimeout = 2 * time.Second
	// shutdownSlack is what a stop may take beyond the request timeout: the consumers, the
	// read models' final sync, NATS, on a busy machine with the race detector.
	shutdownSlack = 5 * time.Second
)

// shutdownArgs are the serve flags of the shutdown tests on dir.
func shutdownArgs(dir string) []string {
	return []string{"serve", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--log-format", "json",
		"--queue-batch", "0", "--user-rate-limit", "0", "--no-demo", "--admin-token", crashAdmin,
		"--hold-ttl", "1h", "--request-timeout", shutdownRequestTimeout.String(), "--max-seats-per-user", "0"}
}

// TestShutdownAfterACrashRestartWithClientsConnected is the scenario: eight clients
// hold and pay, the process is killed, restarted, every acknowledged write is read back over
// keep-alive connections, and then SIGTERM must stop it in bounded time, although the clients'
// idle connections, a live seat-map stream and two silent clients are still connected.
func TestShutdownAfterACrashRestartWithClientsConnected(t *testing.T) {
	if runAsChild() {
		return
	}
	if testing.Short() {
		t.Skip("starts and kills server processes")
	}
	dir := t.TempDir()
	led := newCrashLedger()
	const concert = "shutdown"

	p := startBookingProc(t, shutdownArgs(dir)...)
	p.waitReady(90 * time.Second)
	c := newAPIClient(t, p.url, crashAdmin, 30*time.Second)
	c.createConcert(t, concert, crashSeats, crashPrice)
	led.addConcert(concert)
	stop := make(chan struct{})
	wg := led.startWorkers(t, c, concert, func(w int) *rand.Rand { return rand.New(rand.NewPCG(uint64(w), 0x5eed)) }, stop)
	pollUntil(t, 60*time.Second, "holds and payments under load", func() error {
		led.mu.Lock()
		defer led.mu.Unlock()
		if led.acks.holds < 4*crashWorkers || led.acks.pays < crashWorkers {
			return fmt.Errorf("%d holds and %d payments acknowledged so far", led.acks.holds, led.acks.pays)
		}
		return nil
	})
	p.kill()
	close(stop)
	wg.Wait()
	if t.Failed() {
		t.Fatalf("the load failed; server log:\n%s", p.tail(60))
	}

	p = startBookingProc(t, shutdownArgs(dir)...)
	p.waitReady(90 * time.Second)
	c = newAPIClient(t, p.url, crashAdmin, 30*time.Second)
	if err := led.retryInFlight(c); err != nil {
		t.Fatalf("after the restart: %v\n%s", err, p.tail(60))
	}
	pollUntil(t, 30*time.Second, "after the restart, the acknowledged state", func() error { return led.check(c) })

	// Each client reads its reservations back over a connection of its own, which it keeps
	// open (keep-alive) and idle.
	for w := range crashWorkers {
		own := newAPIClient(t, p.url, crashAdmin, 30*time.Second)
		own.mustCall(t, 200, "GET", fmt.Sprintf("/api/v1/users/fan-%d/reservations", w), nil)
	}
	openSeatStream(t, p.url, concert)
	silentClients(t, p.url)

	took := stopWithin(t, p, shutdownRequestTimeout+shutdownSlack)
	t.Logf("stopped %s after SIGTERM: %s", took.Round(time.Millisecond), led.summary())
	if races := p.raceReports(); len(races) > 0 {
		t.Fatalf("the server reported data races:\n%s", p.tail(200))
	}
	readModelsSynced(t, dir)
}

// TestShutdownOfAnIdleService stops a service nobody is connected to: it has nothing to wait
// for, so it exits within a few seconds.
func TestShutdownOfAnIdleService(t *testing.T) {
	if runAsChild() {
		return
	}
	if testing.Short() {
		t.Skip("starts a server process")
	}
	dir := t.TempDir()
	p := startBookingProc(t, shutdownArgs(dir)...)
	p.waitReady(90 * time.Second)
	took := stopWithin(t, p, 4*time.Second) // 1 s of it is the race detector's exit delay
	t.Logf("stopped %s after SIGTERM", took.Round(time.Millisecond))
	readModelsSynced(t, dir)
}

// stopWithin sends SIGTERM and fails the test unless the process exits 0 within the bound. A
// process that is still running then is sent SIGQUIT, so that the failure shows its
// goroutines. It returns how long the stop took.
func stopWithin(t *testing.T, p *bookingProc, bound time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(bound):
		_ = p.cmd.Process.Signal(syscall.SIGQUIT)
		<-p.done
		t.Fatalf("booking serve still ran %s after SIGTERM; its log and its goroutines in this module and the HTTP server (SIGQUIT):\n%s",
			bound, ownGoroutines(p.logLines()))
	}
	took := time.Since(start)
	if p.exitErr != nil {
		t.Fatalf("booking serve exited with %v after SIGTERM\n%s", p.exitErr, p.tail(60))
	}
	return took
}

// ownGoroutines keeps, of a log that ends in a goroutine dump, the log lines and the
// goroutines running this module's or the HTTP server's code: the hundreds of NATS server
// goroutines would hide them.
func ownGoroutines(lines []string) string {
	var out, block []string
	flush := func() {
		b := strings.Join(block, "\n")
		if strings.Contains(b, "booking-engine/booking") || strings.Contains(b, "fasthttp") {
			out = append(out, b)
		}
		block = nil
	}
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "{"):
			out = append(out, l)
		case strings.TrimSpace(l) == "":
			flush()
		default:
			block = append(block, l)
		}
	}
	flush()
	return strings.Join(out, "\n")
}

// openSeatStream opens the live seat map of date d1 of concert and reads its first event, so
// that the stream is established when the test goes on. The stream stays open until the
// server ends it.
func openSeatStream(t *testing.T, baseURL, concert string) {
	t.Helper()
	hc := &http.Client{Transport: apitest.SpecTransport(t, http.DefaultTransport)}
	resp, err := hc.Get(baseURL + "/api/v1/concerts/" + concert + "/dates/d1/seats/stream")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != 200 {
		t.Fatalf("seat stream: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	for sc.Scan() {
		if sc.Text() == "event: snapshot" {
			return
		}
	}
	t.Fatalf("seat stream ended before its snapshot: %v", sc.Err())
}

// silentClients connects two clients that never finish a request: one says nothing, the other
// stops in the middle of its request's headers. They stay connected until the server hangs up.
func silentClients(t *testing.T, baseURL string) {
	t.Helper()
	// The first is what Go's http.Transport leaves when a connection it dialled for a request
	// is not needed after all (another one became free first): it keeps it, unused, in its pool.
	dialAndSay(t, baseURL, "")
	dialAndSay(t, baseURL, "GET /healthz HTTP/1.1\r\nHost: booking\r\n")
}

// readModelsSynced fails the test unless every read model file of dir was closed cleanly: a
// clean close syncs the file and removes the mark that it was written without fsync.
func readModelsSynced(t *testing.T, dir string) {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "projections", "*.db"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no read model files in %s: %v", dir, err)
	}
	for _, path := range files {
		db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			t.Fatalf("read model %s: %v", path, err)
		}
		err = db.View(func(tx *bolt.Tx) error {
			meta := tx.Bucket([]byte("meta"))
			if meta == nil {
				return errors.New("no meta bucket")
			}
			if boot := meta.Get([]byte("unsynced-boot")); boot != nil {
				return fmt.Errorf("still marked as written without fsync (boot %s)", boot)
			}
			return nil
		})
		db.Close()
		if err != nil {
			t.Fatalf("read model %s after the stop: %v", filepath.Base(path), err)
		}
	}
}

// TestHTTPShutdown stops the HTTP server with different clients connected: only a request
// in flight may hold the stop, and only until the deadline.
func TestHTTPShutdown(t *testing.T) {
	const deadline = 1500 * time.Millisecond
	cases := []struct {
		name string
		// connect connects a client and returns what it must see once the server has stopped.
		connect func(t *testing.T, url string, handler *blockingHandler) (after func(t *testing.T))
		// minTook and maxTook bound how long the stop may take.
		minTook, maxTook time.Duration
		forced           bool // connections are hung up on at the deadline
	}{
		{
			name: "an idle keep-alive connection does not hold the stop",
			connect: func(t *testing.T, url string, _ *blockingHandler) func(*testing.T) {
				c := newPlainAPIClient(url, "", 5*time.Second)
				c.mustCall(t, 200, "GET", "/fast", nil)
				return func(*testing.T) {}
			},
			maxTook: shutdownReadGrace + 500*time.Millisecond,
		},
		{
			name: "a client that connected and sent nothing does not hold the stop",
			connect: func(t *testing.T, url string, _ *blockingHandler) func(*testing.T) {
				return hangsUp(t, dialAndSay(t, url, ""))
			},
			maxTook: shutdownReadGrace + 500*time.Millisecond,
		},
		{
			name: "a client that stopped in the middle of its request's headers does not hold the stop",
			connect: func(t *testing.T, url string, _ *blockingHandler) func(*testing.T) {
				return hangsUp(t, dialAndSay(t, url, "GET /fast HTTP/1.1\r\nHost: booking\r\n"))
			},
			maxTook: shutdownReadGrace + 500*time.Millisecond,
		},
		{
			name: "a request in flight is answered before the server stops",
			connect: func(t *testing.T, url string, h *blockingHandler) func(*testing.T) {
				answer := h.callInBackground(url)
				h.waitEntered(t)
				time.AfterFunc(shutdownReadGrace+200*time.Millisecond, h.release) // past the read grace: the request must still be answered
				return func(t *testing.T) {
					if err := <-answer; err != nil {
						t.Fatalf("the request in flight was not answered: %v", err)
					}
				}
			},
			minTook: shutdownReadGrace,
			maxTook: deadline,
		},
		{
			name: "a handler that overruns the deadline is cut off at it",
			connect: func(t *testing.T, url string, h *blockingHandler) func(*testing.T) {
				answer := h.callInBackground(url)
				h.waitEntered(t)
				t.Cleanup(h.release)
				return func(t *testing.T) {
					if err := <-answer; err == nil {
						t.Fatal("the overrunning request was answered; want its connection closed")
					}
				}
			},
			minTook: deadline,
			maxTook: deadline + time.Second,
			forced:  true,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := newBlockingHandler()
			app := fiber.New(fiber.Config{DisableStartupMessage: true,
				ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute})
			app.Get("/fast", func(c *fiber.Ctx) error { return c.SendString("ok") })
			app.Get("/slow", h.handle)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			logs := &logBuffer{}
			srv := serveFiber(app, ln, slog.New(slog.NewJSONHandler(logs, nil)))
			url := "http://" + ln.Addr().String()
			after := tc.connect(t, url, h)
			pollUntil(t, 5*time.Second, "the client's connection is tracked", func() error {
				if n := srv.conns.count(); n < 1 {
					return fmt.Errorf("%d connections", n)
				}
				return nil
			})

			start := time.Now()
			if err := srv.shutdown(start.Add(deadline)); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			took := time.Since(start)
			if took < tc.minTook || took > tc.maxTook {
				t.Fatalf("the stop took %s, want %s to %s", took, tc.minTook, tc.maxTook)
			}
			after(t)
			forced := strings.Contains(logs.String(), "shutdown: hung up on HTTP connections still open at the deadline")
			if forced != tc.forced {
				t.Fatalf("connections closed at the deadline: %v, want %v; log:\n%s", forced, tc.forced, logs)
			}
		})
	}
}

// blockingHandler answers GET /slow once it is released.
type blockingHandler struct {
	entered     chan struct{}
	released    chan struct{}
	releaseOnce sync.Once
}

func newBlockingHandler() *blockingHandler {
	return &blockingHandler{entered: make(chan struct{}, 1), released: make(chan struct{})}
}

func (h *blockingHandler) handle(c *fiber.Ctx) error {
	h.entered <- struct{}{}
	<-h.released
	return c.SendString("done")
}

func (h *blockingHandler) release() { h.releaseOnce.Do(func() { close(h.released) }) }

// callInBackground sends GET /slow and reports on the channel whether it was answered 200.
func (h *blockingHandler) callInBackground(url string) <-chan error {
	out := make(chan error, 1)
	go func() {
		r, err := newPlainAPIClient(url, "", 30*time.Second).call("GET", "/slow", nil)
		if err == nil && r.status != 200 {
			err = fmt.Errorf("answered %s", r)
		}
		out <- err
	}()
	return out
}

func (h *blockingHandler) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-h.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the request did not reach the handler within 5s")
	}
}

// dialAndSay connects to the server at url and sends greeting (possibly nothing).
func dialAndSay(t *testing.T, url, greeting string) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write([]byte(greeting)); err != nil {
		t.Fatal(err)
	}
	return conn
}

// hangsUp returns a check that the server has closed conn (reading it ends, at once).
func hangsUp(t *testing.T, conn net.Conn) func(*testing.T) {
	t.Helper()
	return func(t *testing.T) {
		_ = conn.SetReadDeadline(time.Now().Add(time.Second))
		_, err := io.Copy(io.Discard, conn)
		if err != nil {
			t.Fatalf("the server did not hang up on the silent client: %v", err)
		}
	}
}

// TestShutdownStage runs stages of a stop that finish, fail, are slow and never finish.
func TestShutdownStage(t *testing.T) {
	const every = 50 * time.Millisecond
	failed := errors.New("disk full")
	cases := []struct {
		name     string
		deadline time.Duration
		step     func(logs *logBuffer, release <-chan struct{}) error
		wantErr  string // "" for none
		wantLogs []string
	}{
		{
			name:     "a stage that finishes in time is not logged",
			deadline: time.Second,
			step:     func(*logBuffer, <-chan struct{}) error { return nil },
		},
		{
			name:     "a stage that fails returns its error with the stage's name",
			deadline: time.Second,
			step:     func(*logBuffer, <-chan struct{}) error { return failed },
			wantErr:  "stop read models: disk full",
		},
		{
			name:     "a slow stage logs what it waits for until it finishes",
			deadline: 5 * time.Second,
			step: func(logs *logBuffer, _ <-chan struct{}) error {
				for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
					if strings.Contains(logs.String(), "still waiting") {
						return nil // finishes once it has been seen waiting
					}
					time.Sleep(every / 5) // polling with a deadline
				}
				return errors.New("not logged as slow within 5s")
			},
			wantLogs: []string{"shutdown: still waiting"},
		},
		{
			name:     "a stage that does not finish is given up at its deadline",
			deadline: 4 * every,
			step: func(_ *logBuffer, release <-chan struct{}) error {
				<-release
				return nil
			},
			wantErr:  "stop read models: still waiting for the files to be synced after",
			wantLogs: []string{"shutdown: still waiting", "shutdown: gave up waiting"},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			logs := &logBuffer{}
			release := make(chan struct{})
			t.Cleanup(func() { close(release) })
			st := shutdownStage{name: "read models", waitingFor: "the files to be synced",
				deadline: time.Now().Add(tc.deadline), state: func() []any { return []any{"files", 3} }}
			err := st.run(slog.New(slog.NewJSONHandler(logs, nil)), every, func() error { return tc.step(logs, release) })
			if got := fmt.Sprint(err); (tc.wantErr == "" && err != nil) || (tc.wantErr != "" && !strings.HasPrefix(got, tc.wantErr)) {
				t.Fatalf("error %v, want %q", err, tc.wantErr)
			}
			if tc.wantErr == "stop read models: disk full" && !errors.Is(err, failed) {
				t.Fatalf("%v does not wrap the step's error", err)
			}
			var msgs []string
			for _, rec := range logs.records() {
				msgs = append(msgs, fmt.Sprint(rec["msg"]))
				if rec["stage"] != "read models" || rec["waiting_for"] != "the files to be synced" || rec["files"] != 3.0 {
					t.Fatalf("log record without the stage, what it waits for and its state: %v", rec)
				}
			}
			for _, want := range tc.wantLogs {
				if !slices.Contains(msgs, want) {
					t.Fatalf("log %q, want a %q", msgs, want)
				}
			}
			if len(tc.wantLogs) == 0 && len(msgs) > 0 {
				t.Fatalf("log %q, want none", msgs)
			}
		})
	}
}
