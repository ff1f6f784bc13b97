package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/booking-engine/booking/api/apitest"
)

// Helpers shared by the crash, cluster and fault tests: `booking` as a child process (the test
// binary re-executed), `booking serve` in this process with its log captured, and an HTTP
// client that reports transport errors instead of failing the test (a killed server is
// expected to cut requests off).

// childArgsEnv turns a re-executed test binary into `booking <args>` (a JSON array of the
// arguments). Re-executing the test binary instead of building the command keeps the tests
// fast and runs the child with the race detector whenever the parent has it.
const childArgsEnv = "BOOKING_TEST_CHILD_ARGS"

// runAsChild runs main with the arguments the parent asked for (or a cluster node, see
// natsChildEnv) when this process is a child, and reports whether it was. A test that starts children calls it first and returns when it
// answers true: the child runs only that test (-test.run), so nothing else happens in it.
func runAsChild() bool {
	if spec, ok := os.LookupEnv(natsChildEnv); ok {
		runNATSChild(spec)
		return true
	}
	raw, ok := os.LookupEnv(childArgsEnv)
	if !ok {
		return false
	}
	var args []string
	if err := json.Unmarshal([]byte(raw), &args); err != nil {
		fmt.Fprintln(os.Stderr, "bad", childArgsEnv, err)
		os.Exit(2)
	}
	os.Args = append([]string{"booking"}, args...)
	main() // exits non-zero by itself on an error
	return true
}

// childCommand prepares `booking <args>` as a re-execution of this test binary running only
// the calling top-level test.
func childCommand(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	raw, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	top, _, _ := strings.Cut(t.Name(), "/")
	cmd := exec.Command(os.Args[0], "-test.run=^"+top+"$", "-test.count=1")
	cmd.Env = append(os.Environ(), childArgsEnv+"="+string(raw))
	return cmd
}

// bookingProc is a `booking` child process (serve, or the mock data platform) with its log
// kept in memory and on disk.
type bookingProc struct {
	t       *testing.T
	name    string // "booking serve", for messages
	cmd     *exec.Cmd
	url     string
	logPath string
	done    chan struct{} // closed once the process has exited and its log is read
	exitErr error

	mu    sync.Mutex
	lines []string
}

// startBookingProc starts `booking <args>` (args usually begin with "serve" and must include
// --log-format json and --http-addr 127.0.0.1:0) and waits until its HTTP listener is open.
// It does not wait for readiness.
func startBookingProc(t *testing.T, args ...string) *bookingProc {
	t.Helper()
	return startChildProc(t, func(line string) (string, bool) {
		var rec struct {
			Msg string `json:"msg"`
			URL string `json:"url"`
		}
		ok := json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "booking engine listening"
		return rec.URL, ok
	}, args...)
}

// platformListening matches the line of `booking dataplatform` (a text log) that says where
// it listens.
var platformListening = regexp.MustCompile(`msg="dataplatform: listening" url=(\S+)`)

// startDataPlatformProc starts the mock data platform, `booking dataplatform --addr addr`, and
// waits until it listens. A fixed addr lets a test stop it and start it again where `booking
// serve --data-platform-url` expects it.
func startDataPlatformProc(t *testing.T, addr string) *bookingProc {
	t.Helper()
	return startChildProc(t, func(line string) (string, bool) {
		m := platformListening.FindStringSubmatch(line)
		if m == nil {
			return "", false
		}
		return m[1], true
	}, "dataplatform", "--addr", addr)
}

// startChildProc starts `booking <args>` and waits until listening finds the line of its log
// (stderr) that tells its URL.
func startChildProc(t *testing.T, listening func(line string) (url string, ok bool), args ...string) *bookingProc {
	t.Helper()
	cmd := childCommand(t, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = io.Discard
	p := &bookingProc{t: t, name: "booking " + args[0], cmd: cmd, done: make(chan struct{}),
		logPath: filepath.Join(t.TempDir(), "booking.log")}
	logFile, err := os.Create(p.logPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		t.Fatal(err)
	}
	urls := make(chan string, 1)
	go func() {
		defer close(p.done)
		defer logFile.Close()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(logFile, line)
			p.mu.Lock()
			p.lines = append(p.lines, line)
			p.mu.Unlock()
			if url, ok := listening(line); ok {
				select {
				case urls <- url:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		p.exitErr = cmd.Wait()
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = cmd.Process.Kill()
			<-p.done
		}
	})
	select {
	case p.url = <-urls:
	case <-p.done:
		t.Fatalf("booking %s exited before listening: %v\n%s", strings.Join(args, " "), p.exitErr, p.tail(40))
	case <-time.After(90 * time.Second):
		t.Fatalf("booking %s did not listen within 90s\n%s", strings.Join(args, " "), p.tail(40))
	}
	return p
}

// waitReady waits for /readyz to answer 200.
func (p *bookingProc) waitReady(within time.Duration) {
	p.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-p.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := waitReady(ctx, p.url, within); err != nil {
		p.t.Fatalf("booking serve not ready: %v (exit: %v)\n%s", err, p.exitErr, p.tail(40))
	}
}

// kill ends the process with SIGKILL: no shutdown code runs, as in a power cut of the process.
func (p *bookingProc) kill() {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		p.t.Fatal(err)
	}
	<-p.done
}

// stop asks for a graceful shutdown (SIGTERM) and fails the test unless the process exits 0
// within the deadline.
func (p *bookingProc) stop(within time.Duration) {
	p.t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(within):
		p.t.Fatalf("%s did not stop within %s of SIGTERM\n%s", p.name, within, p.tail(40))
	}
	if p.exitErr != nil {
		p.t.Fatalf("%s exited with %v after SIGTERM\n%s", p.name, p.exitErr, p.tail(40))
	}
}

// logLines returns the log lines read so far.
func (p *bookingProc) logLines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.lines...)
}

// tail returns the last n log lines, for failure messages.
func (p *bookingProc) tail(n int) string {
	lines := p.logLines()
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// raceReports returns the log lines the race detector wrote, if any.
func (p *bookingProc) raceReports() []string {
	var out []string
	for _, l := range p.logLines() {
		if strings.Contains(l, "WARNING: DATA RACE") {
			out = append(out, l)
		}
	}
	return out
}

// runBookingTool runs `booking <args>` (e.g. verify) as a child process to its end and returns
// its exit code and combined output.
func runBookingTool(t *testing.T, within time.Duration, args ...string) (int, string) {
	t.Helper()
	cmd := childCommand(t, args...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var exit *exec.ExitError
		switch {
		case err == nil:
			return 0, out.String()
		case errors.As(err, &exit):
			return exit.ExitCode(), out.String()
		default:
			t.Fatalf("booking %s: %v", strings.Join(args, " "), err)
		}
	case <-time.After(within):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("booking %s did not finish within %s:\n%s", strings.Join(args, " "), within, out.String())
	}
	return -1, ""
}

// logBuffer collects a server's log lines in this process.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// records returns the JSON log records written so far.
func (l *logBuffer) records() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range bytes.Split(l.b.Bytes(), []byte("\n")) {
		var rec map[string]any
		if json.Unmarshal(line, &rec) == nil {
			out = append(out, rec)
		}
	}
	return out
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// inProcServer is a `booking serve` started in this process with startServer.
type inProcServer struct {
	url string
	log *logBuffer
}

// startInProc runs `booking serve` in this process with the given flags (on top of a loopback
// listener on a free port and --no-demo), waits until it is ready, and stops it when the test
// ends. Its log (JSON, debug level) is kept for the test to inspect.
func startInProc(t *testing.T, args ...string) *inProcServer {
	t.Helper()
	var f serveFlags
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	addServeFlags(fs, &f)
	if err := fs.Parse(append([]string{"--http-addr=127.0.0.1:0", "--no-demo"}, args...)); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	srv, err := startServer(ctx, f, log)
	if err != nil {
		t.Fatalf("booking serve %s: %v\n%s", strings.Join(args, " "), err, logs)
	}
	t.Cleanup(func() { _ = srv.shutdown() })
	if err := waitReady(ctx, srv.url, 90*time.Second); err != nil {
		t.Fatalf("%v\n%s", err, logs)
	}
	return &inProcServer{url: srv.url, log: logs}
}

// apiClient talks to one booking server over HTTP.
type apiClient struct {
	base  string
	admin string
	hc    *http.Client
}

// newAPIClient returns a client whose every answer is checked against api/openapi.yaml; a
// disagreement fails t.
func newAPIClient(t testing.TB, base, admin string, timeout time.Duration) *apiClient {
	return &apiClient{base: base, admin: admin, hc: &http.Client{
		Timeout:   timeout,
		Transport: apitest.SpecTransport(t, &http.Transport{MaxIdleConnsPerHost: 64}),
	}}
}

// newPlainAPIClient is newAPIClient without the check against openapi.yaml, for servers that
// are not the booking API (the HTTP shutdown tests' own handlers).
func newPlainAPIClient(base, admin string, timeout time.Duration) *apiClient {
	return &apiClient{base: base, admin: admin, hc: &http.Client{
		Timeout:   timeout,
		Transport: &http.Transport{MaxIdleConnsPerHost: 64},
	}}
}

// apiReply is one HTTP answer, its JSON body decoded when it has one.
type apiReply struct {
	status int
	body   map[string]any
	raw    []byte
	header http.Header
}

func (r apiReply) str(k string) string { s, _ := r.body[k].(string); return s }

func (r apiReply) int(k string) int64 { f, _ := r.body[k].(float64); return int64(f) }

func (r apiReply) String() string { return fmt.Sprintf("%d %s", r.status, bytes.TrimSpace(r.raw)) }

// call sends one request; headers are name, value pairs. A transport error (connection
// refused or cut, timeout) is returned as an error, never as a test failure.
func (c *apiClient) call(method, path string, body any, headers ...string) (apiReply, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return apiReply{}, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return apiReply{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return apiReply{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		return apiReply{}, err
	}
	r := apiReply{status: resp.StatusCode, raw: raw, header: resp.Header}
	_ = json.Unmarshal(raw, &r.body)
	return r, nil
}

// mustCall is call for requests that must get an answer with status want.
func (c *apiClient) mustCall(t *testing.T, want int, method, path string, body any, headers ...string) apiReply {
	t.Helper()
	r, err := c.call(method, path, body, headers...)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if r.status != want {
		t.Fatalf("%s %s: %s, want %d", method, path, r, want)
	}
	return r
}

// createConcert creates a concert with one date "d1" of seats seats at price points each.
func (c *apiClient) createConcert(t *testing.T, id string, seats int, price int64) {
	t.Helper()
	c.mustCall(t, 201, "POST", "/api/v1/admin/concerts", map[string]any{
		"concertId": id, "title": "Test " + id,
		"dates": []any{map[string]any{"dateId": "d1", "startsAt": "2026-12-24T19:00:00Z", "seatCount": seats, "price": price}},
	}, "Authorization", "Bearer "+c.admin)
}

// token returns an active queue token of user (with --queue-batch 0 every token is active).
func (c *apiClient) token(user string) (string, error) {
	r, err := c.call("POST", "/api/v1/queue/tokens", map[string]any{"userId": user})
	if err != nil {
		return "", err
	}
	if r.status != 201 && r.status != 200 {
		return "", fmt.Errorf("token for %s: %s", user, r)
	}
	return r.str("token"), nil
}

// hold asks for one seat of date d1 of concert.
func (c *apiClient) hold(user, token, concert string, seat int, headers ...string) (apiReply, error) {
	return c.call("POST", "/api/v1/reservations",
		map[string]any{"userId": user, "concertId": concert, "dateId": "d1", "seatNo": seat},
		append([]string{"Queue-Token", token}, headers...)...)
}

// holdSeats asks for several seats of date d1 of concert in one reservation (one seat: the
// single-seat form, as most clients send it).
func (c *apiClient) holdSeats(user, token, concert string, seats []int, headers ...string) (apiReply, error) {
	if len(seats) == 1 {
		return c.hold(user, token, concert, seats[0], headers...)
	}
	return c.call("POST", "/api/v1/reservations",
		map[string]any{"userId": user, "concertId": concert, "dateId": "d1", "seatNos": seats},
		append([]string{"Queue-Token", token}, headers...)...)
}

// seatStatuses returns the seat map of date d1 of concert: seat number → status.
func (c *apiClient) seatStatuses(concert string) (map[int]string, error) {
	r, err := c.call("GET", "/api/v1/concerts/"+concert+"/dates/d1/seats", nil)
	if err != nil {
		return nil, err
	}
	if r.status != 200 {
		return nil, fmt.Errorf("seat map of %s: %s", concert, r)
	}
	var body struct {
		Seats []struct {
			SeatNo int    `json:"seatNo"`
			Status string `json:"status"`
		} `json:"seats"`
	}
	if err := json.Unmarshal(r.raw, &body); err != nil {
		return nil, err
	}
	out := make(map[int]string, len(body.Seats))
	for _, s := range body.Seats {
		out[s.SeatNo] = s.Status
	}
	return out, nil
}

// pollUntil calls check until it returns nil or within has passed, and fails the test with
// check's last error then. It returns how long it took.
func pollUntil(t *testing.T, within time.Duration, what string, check func() error) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		err := check()
		if err == nil {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("%s: not within %s: %v", what, within, err)
		}
		time.Sleep(50 * time.Millisecond) // polling with a deadline: the state converges asynchronously
	}
}

// freeLoopbackPort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freeLoopbackPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startAttempt is the outcome of a `booking serve` start run in the background.
type startAttempt struct {
	url string
	err error
}

// startInProcAsync starts `booking serve` in this process in the background (for starts that
// wait on something the test provides later) and returns its log at once and the outcome of
// the start on the channel. A server that starts is stopped when the test ends.
func startInProcAsync(t *testing.T, args ...string) (<-chan startAttempt, *logBuffer) {
	t.Helper()
	var f serveFlags
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	addServeFlags(fs, &f)
	if err := fs.Parse(append([]string{"--http-addr=127.0.0.1:0", "--no-demo"}, args...)); err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	out := make(chan startAttempt, 1)
	var mu sync.Mutex
	var stop func() error
	t.Cleanup(func() {
		cancel()
		mu.Lock()
		defer mu.Unlock()
		if stop != nil {
			_ = stop()
		}
	})
	go func() {
		srv, err := startServer(ctx, f, log)
		if err != nil {
			out <- startAttempt{err: err}
			return
		}
		mu.Lock()
		stop = srv.shutdown
		mu.Unlock()
		out <- startAttempt{url: srv.url}
	}()
	return out, logs
}

// logged waits until logs has a record with message msg, and fails the test if none comes.
func logged(t *testing.T, logs *logBuffer, within time.Duration, msg string) {
	t.Helper()
	pollUntil(t, within, "a log line "+strconv.Quote(msg), func() error {
		for _, rec := range logs.records() {
			if rec["msg"] == msg {
				return nil
			}
		}
		return errors.New("not yet")
	})
}
