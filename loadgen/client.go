package loadgen

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/valyala/fasthttp"
)

// Client sends requests to one booking service over a bounded pool of keep-alive connections.
//
// By default it is built on fasthttp rather than net/http because the generator shares a
// two-core machine with the server it measures: fasthttp reuses request and response buffers
// and costs markedly less CPU per request, so more of the machine is left to the system under
// test. ClientNetHTTP measures the service as most of its users' clients see it instead.
type Client struct {
	t          transport
	adminToken string
	timeout    time.Duration
	// keyPrefix and keys name the Idempotency-Key of each POST when ClientOptions asks for
	// keys ("" otherwise): unique per run, so no request replays another's answer.
	keyPrefix string
	keys      atomic.Uint64
}

// ClientKind names the HTTP client library a Client is built on.
type ClientKind string

const (
	// ClientFastHTTP is valyala/fasthttp (the default): least CPU per request.
	ClientFastHTTP ClientKind = "fasthttp"
	// ClientNetHTTP is Go's net/http with a Transport tuned to keep MaxConns connections.
	ClientNetHTTP ClientKind = "nethttp"
)

// ClientOptions configure NewClient.
type ClientOptions struct {
	// MaxConns bounds the open connections (required).
	MaxConns int
	// Timeout bounds every request (required).
	Timeout time.Duration
	// AdminToken authorises the admin calls.
	AdminToken string
	// Kind is the HTTP client library; "" is ClientFastHTTP.
	Kind ClientKind
	// IdempotencyKeys puts a unique Idempotency-Key on every POST, to measure what keys cost.
	IdempotencyKeys bool
}

// Response is the part of an answer the scenarios look at.
type Response struct {
	// Status is the HTTP status code.
	Status int
	// Code is the problem+json `code` of an error answer ("" on success or when absent).
	Code string
}

// OK reports whether the status is 2xx.
func (r Response) OK() bool { return r.Status >= 200 && r.Status < 300 }

// Header is one request header.
type Header struct{ Name, Value string }

// ErrUnexpectedStatus is returned by the setup helpers when the service answers a preparatory
// call (creating a concert, issuing tokens) with an error; the measurements never return it.
var ErrUnexpectedStatus = errors.New("unexpected status")

// transport sends one request and hands the answer's status and body to read, whose buffer
// is only valid during the call (fasthttp reuses it).
type transport interface {
	do(ctx context.Context, deadline time.Time, method, path string, headers []Header, body []byte, read func(status int, body []byte) error) error
}

// NewClient returns a client for the service at target (scheme://host[:port][/prefix]).
func NewClient(target string, o ClientOptions) (*Client, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", target, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("target %q: want http://host:port or https://host:port", target)
	}
	if o.MaxConns <= 0 {
		return nil, fmt.Errorf("max connections %d: must be positive", o.MaxConns)
	}
	if o.Timeout <= 0 {
		return nil, fmt.Errorf("request timeout %s: must be positive", o.Timeout)
	}
	prefix := strings.TrimSuffix(u.Path, "/")
	c := &Client{adminToken: o.AdminToken, timeout: o.Timeout}
	switch o.Kind {
	case "", ClientFastHTTP:
		c.t = newFastHTTPTransport(u, prefix, o)
	case ClientNetHTTP:
		c.t = newNetHTTPTransport(u, prefix, o)
	default:
		return nil, fmt.Errorf("client %q: want %s or %s", o.Kind, ClientFastHTTP, ClientNetHTTP)
	}
	if o.IdempotencyKeys {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("idempotency key prefix: %w", err)
		}
		c.keyPrefix = "bench-" + hex.EncodeToString(b[:]) + "-"
	}
	return c, nil
}

// Do sends one request and returns its status and problem code. When out is non-nil and the
// answer is 2xx, the body is decoded into it. An error means no HTTP answer arrived (refused,
// reset, timed out, cancelled) or a 2xx body could not be decoded.
func (c *Client) Do(ctx context.Context, method, path string, headers []Header, body []byte, out any) (Response, error) {
	if err := ctx.Err(); err != nil {
		return Response{}, err
	}
	if c.keyPrefix != "" && method == "POST" {
		key := c.keyPrefix + strconv.FormatUint(c.keys.Add(1), 10)
		headers = append(headers[:len(headers):len(headers)], Header{Name: "Idempotency-Key", Value: key})
	}
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	var r Response
	err := c.t.do(ctx, deadline, method, path, headers, body, func(status int, b []byte) error {
		r.Status = status
		if !r.OK() {
			var p struct {
				Code string `json:"code"`
			}
			// A non-JSON error body (a proxy's HTML page) still has a status worth counting.
			if jsonv2.Unmarshal(b, &p) == nil {
				r.Code = p.Code
			}
			return nil
		}
		if out != nil {
			// json/v2 reads in one pass where encoding/json validates first and then decodes:
			// the generator decodes every answer, on the machine of the service it measures.
			if err := jsonv2.Unmarshal(b, out); err != nil {
				return fmt.Errorf("decode %d answer: %w", status, err)
			}
		}
		return nil
	})
	if err != nil {
		return r, fmt.Errorf("%s %s: %w", method, path, err)
	}
	return r, nil
}

// fastHTTPTransport is a fasthttp.HostClient.
type fastHTTPTransport struct {
	hc     *fasthttp.HostClient
	host   string
	prefix string
}

func newFastHTTPTransport(u *url.URL, prefix string, o ClientOptions) *fastHTTPTransport {
	addr := u.Host
	if u.Port() == "" {
		if u.Scheme == "https" {
			addr += ":443"
		} else {
			addr += ":80"
		}
	}
	hc := &fasthttp.HostClient{
		Addr:                   addr,
		IsTLS:                  u.Scheme == "https",
		Name:                   "booking-bench",
		MaxConns:               o.MaxConns,
		MaxConnWaitTimeout:     o.Timeout,
		ReadTimeout:            o.Timeout,
		WriteTimeout:           o.Timeout,
		DisablePathNormalizing: true,
		// A state-changing POST must never be sent twice behind the scenario's back: a retried
		// hold could win a seat the scenario then counts as lost. fasthttp still resends a
		// request whose kept-alive connection was closed before any answer (io.EOF), which
		// the server cannot have acted on; that needs a second attempt.
		MaxIdemponentCallAttempts: 2,
		RetryIf:                   func(*fasthttp.Request) bool { return false },
	}
	return &fastHTTPTransport{hc: hc, host: u.Host, prefix: prefix}
}

func (t *fastHTTPTransport) do(_ context.Context, deadline time.Time, method, path string, headers []Header, body []byte, read func(int, []byte) error) error {
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)

	req.Header.SetMethod(method)
	req.SetRequestURI(t.prefix + path)
	req.Header.SetHost(t.host)
	for _, h := range headers {
		req.Header.Set(h.Name, h.Value)
	}
	if body != nil {
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(body)
	}
	if err := t.hc.DoDeadline(req, resp, deadline); err != nil {
		return err
	}
	return read(resp.StatusCode(), resp.Body())
}

// netHTTPTransport is Go's net/http client, tuned as a careful user would tune it for many
// concurrent requests to one host: every connection kept idle for reuse (the default keeps
// two per host, so most requests would open a new one), no compression negotiated.
type netHTTPTransport struct {
	hc   *http.Client
	base string
}

func newNetHTTPTransport(u *url.URL, prefix string, o ClientOptions) *netHTTPTransport {
	tr := &http.Transport{
		Proxy:                 nil,
		DialContext:           (&net.Dialer{Timeout: o.Timeout, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          o.MaxConns,
		MaxIdleConnsPerHost:   o.MaxConns,
		MaxConnsPerHost:       o.MaxConns,
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: o.Timeout,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
	}
	return &netHTTPTransport{
		hc:   &http.Client{Transport: tr, Timeout: o.Timeout},
		base: u.Scheme + "://" + u.Host + prefix,
	}
}

func (t *netHTTPTransport) do(ctx context.Context, deadline time.Time, method, path string, headers []Header, body []byte, read func(int, []byte) error) error {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, t.base+path, rd)
	if err != nil {
		return err
	}
	for _, h := range headers {
		req.Header.Set(h.Name, h.Value)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := t.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	// Read to the end, or the connection cannot be reused.
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return read(resp.StatusCode, b)
}

// adminHeaders authorises an admin call.
func (c *Client) adminHeaders() []Header {
	return []Header{{Name: "Authorization", Value: "Bearer " + c.adminToken}}
}

// tokenHeaders carries a queue token.
func tokenHeaders(token string) []Header {
	return []Header{{Name: "Queue-Token", Value: token}}
}

// statusError describes a failed preparatory call.
func statusError(what string, r Response) error {
	if r.Code != "" {
		return fmt.Errorf("%s: %w %d %s", what, ErrUnexpectedStatus, r.Status, r.Code)
	}
	return fmt.Errorf("%s: %w %d", what, ErrUnexpectedStatus, r.Status)
}
