// Package apitest drives the booking API in tests: it builds the Fiber app from api.Deps with
// test defaults, sends requests in process (or over a loopback socket for load) and reads
// answers and problems. The api package's own tests use it with fakes; end-to-end tests use
// it with the real application service.
package apitest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/booking-engine/booking/api"
	"github.com/booking-engine/booking/api/idemstore"
	"github.com/booking-engine/booking/app"
)

// Client sends requests to one API app.
type Client struct {
	T   testing.TB
	App *fiber.App
	// Timeout bounds one in-process request (default 10s): a hung handler fails the test
	// instead of hanging it.
	Timeout time.Duration
}

// New builds the app from deps and cfg and returns a client for it. Missing test
// dependencies are filled in: an idempotency store in t.TempDir() (closed at cleanup), a
// logger that discards, and, when deps.Clock is nil, the system clock.
func New(t testing.TB, deps api.Deps, cfg api.Config) *Client {
	t.Helper()
	if deps.Idempotency == nil {
		deps.Idempotency = OpenIdempotency(t, filepath.Join(t.TempDir(), "idempotency.db"), deps.Clock)
	}
	if deps.Logger == nil {
		deps.Logger = slog.New(slog.DiscardHandler)
	}
	return &Client{T: t, App: api.New(deps, cfg), Timeout: 10 * time.Second}
}

// OpenIdempotency opens an idempotency store at path and closes it at the end of the test.
func OpenIdempotency(t testing.TB, path string, clock app.Clock) *idemstore.Store {
	t.Helper()
	st, err := idemstore.Open(path, clock)
	if err != nil {
		t.Fatalf("open idempotency store: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// Request is one HTTP request. Body is sent as is when it is a string or []byte and encoded
// as JSON otherwise; nil sends no body.
type Request struct {
	Method string
	Path   string
	Header map[string]string
	Body   any
}

// Response is an answer, read in full.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
}

// Problem is an RFC 9457 problem document.
type Problem = api.Problem

// Do sends one request in process and fails the test if it cannot be sent.
func (c *Client) Do(r Request) Response {
	c.T.Helper()
	resp, err := c.TryDo(r)
	if err != nil {
		c.T.Fatalf("%s %s: %v", r.Method, r.Path, err)
	}
	return resp
}

// TryDo sends one request in process; safe for concurrent use from many goroutines. An
// answer that disagrees with api/openapi.yaml fails the test (see Spec.Check).
func (c *Client) TryDo(r Request) (Response, error) {
	req, err := NewHTTPRequest(r, "")
	if err != nil {
		return Response{}, err
	}
	timeout := int(c.Timeout / time.Millisecond)
	if c.Timeout <= 0 {
		timeout = -1
	}
	resp, err := c.App.Test(req, timeout)
	if err != nil {
		return Response{}, err
	}
	answer, err := readResponse(resp)
	if err != nil {
		return Response{}, err
	}
	if err := CheckAnswer(req, answer.Status, answer.Header, answer.Body); err != nil {
		c.T.Errorf("%v", err)
	}
	return answer, nil
}

// Get is Do for a GET without headers.
func (c *Client) Get(path string) Response {
	c.T.Helper()
	return c.Do(Request{Method: http.MethodGet, Path: path})
}

// Post is Do for a POST with a JSON body and optional header pairs ("Queue-Token", "t", ...).
func (c *Client) Post(path string, body any, headerPairs ...string) Response {
	c.T.Helper()
	return c.Do(Request{Method: http.MethodPost, Path: path, Body: body, Header: pairs(c.T, headerPairs)})
}

func pairs(t testing.TB, kv []string) map[string]string {
	t.Helper()
	if len(kv)%2 != 0 {
		t.Fatalf("header pairs must come in twos, got %q", kv)
	}
	h := map[string]string{}
	for i := 0; i < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
	}
	return h
}

// NewHTTPRequest builds a *http.Request for r against baseURL ("" for in-process requests).
func NewHTTPRequest(r Request, baseURL string) (*http.Request, error) {
	var body io.Reader = http.NoBody
	switch b := r.Body.(type) {
	case nil:
	case string:
		body = strings.NewReader(b)
	case []byte:
		body = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return nil, fmt.Errorf("encode body: %w", err)
		}
		body = bytes.NewReader(data)
	}
	base := baseURL
	if base == "" {
		base = "http://booking.test"
	}
	req, err := http.NewRequest(r.Method, base+r.Path, body)
	if err != nil {
		return nil, err
	}
	if r.Body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range r.Header {
		req.Header.Set(k, v)
	}
	return req, nil
}

func readResponse(resp *http.Response) (Response, error) {
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return Response{}, fmt.Errorf("read body: %w", err)
	}
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: data}, nil
}

// JSON decodes the body into v and fails the test if it cannot.
func (r Response) JSON(t testing.TB, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("decode %d answer %q: %v", r.Status, r.Body, err)
	}
}

// Map decodes the body as a JSON object.
func (r Response) Map(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	r.JSON(t, &m)
	return m
}

// Problem decodes a problem answer, failing the test unless the answer is
// application/problem+json with all five fields and a status equal to the HTTP status.
func (r Response) Problem(t testing.TB) Problem {
	t.Helper()
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, api.ProblemContentType) {
		t.Fatalf("answer %d has Content-Type %q, want %s; body %q", r.Status, ct, api.ProblemContentType, r.Body)
	}
	var raw map[string]json.RawMessage
	r.JSON(t, &raw)
	for _, f := range []string{"type", "title", "status", "detail", "code"} {
		if _, ok := raw[f]; !ok {
			t.Fatalf("problem %q has no %q", r.Body, f)
		}
	}
	var p Problem
	r.JSON(t, &p)
	if p.Status != r.Status || p.Code == "" || p.Type == "" {
		t.Fatalf("problem %q does not match HTTP status %d or lacks a code", r.Body, r.Status)
	}
	return p
}

// Expect fails the test unless the answer has the status and, for errors, the problem code.
func (r Response) Expect(t testing.TB, status int, code string) {
	t.Helper()
	if r.Status != status {
		t.Fatalf("status %d, want %d; body %s", r.Status, status, r.Body)
	}
	if code != "" {
		if p := r.Problem(t); p.Code != code {
			t.Fatalf("code %s, want %s; body %s", p.Code, code, r.Body)
		}
	}
}

// Serve runs the app on a loopback socket until the test ends and returns its base URL
// ("http://127.0.0.1:port"), for load through real connections.
func Serve(t testing.TB, fa *fiber.App) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	done := make(chan error, 1)
	go func() { done <- fa.Listener(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = fa.ShutdownWithContext(ctx)
		if err := <-done; err != nil && !errors.Is(err, net.ErrClosed) {
			t.Errorf("serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}
