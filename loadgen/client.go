package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/valyala/fasthttp"
)

// Client sends requests to one booking service over a bounded pool of keep-alive connections.
//
// It is built on fasthttp rather than net/http because the generator shares a two-core machine
// with the server it measures: fasthttp reuses request and response buffers and costs markedly
// less CPU per request, so more of the machine is left to the system under test.
type Client struct {
	hc         *fasthttp.HostClient
	host       string
	prefix     string
	adminToken string
	timeout    time.Duration
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

// NewClient returns a client for the service at target (scheme://host[:port][/prefix]) that
// keeps at most maxConns connections open and gives every request timeout to answer.
func NewClient(target string, maxConns int, timeout time.Duration, adminToken string) (*Client, error) {
	u, err := url.Parse(target)
	if err != nil {
		return nil, fmt.Errorf("target %q: %w", target, err)
	}
	if u.Scheme != "http" && u.Scheme != "https" || u.Host == "" {
		return nil, fmt.Errorf("target %q: want http://host:port or https://host:port", target)
	}
	if maxConns <= 0 {
		return nil, fmt.Errorf("max connections %d: must be positive", maxConns)
	}
	if timeout <= 0 {
		return nil, fmt.Errorf("request timeout %s: must be positive", timeout)
	}
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
		MaxConns:               maxConns,
		MaxConnWaitTimeout:     timeout,
		ReadTimeout:            timeout,
		WriteTimeout:           timeout,
		DisablePathNormalizing: true,
		// A state-changing POST must never be sent twice behind the scenario's back: a retried
		// hold could win a seat the scenario then counts as lost. fasthttp still resends a
		// request whose kept-alive connection was closed before any answer (io.EOF), which
		// the server cannot have acted on; that needs a second attempt.
		MaxIdemponentCallAttempts: 2,
		RetryIf:                   func(*fasthttp.Request) bool { return false },
	}
	return &Client{
		hc:         hc,
		host:       u.Host,
		prefix:     strings.TrimSuffix(u.Path, "/"),
		adminToken: adminToken,
		timeout:    timeout,
	}, nil
}

// Do sends one request and returns its status and problem code. When out is non-nil and the
// answer is 2xx, the body is decoded into it. An error means no HTTP answer arrived (refused,
// reset, timed out, cancelled) or a 2xx body could not be decoded.
func (c *Client) Do(ctx context.Context, method, path string, headers []Header, body []byte, out any) (Response, error) {
	if err := ctx.Err(); err != nil {
		return Response{}, err
	}
	req := fasthttp.AcquireRequest()
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)

	req.Header.SetMethod(method)
	req.SetRequestURI(c.prefix + path)
	req.Header.SetHost(c.host)
	for _, h := range headers {
		req.Header.Set(h.Name, h.Value)
	}
	if body != nil {
		req.Header.SetContentType("application/json")
		req.SetBodyRaw(body)
	}
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.hc.DoDeadline(req, resp, deadline); err != nil {
		return Response{}, fmt.Errorf("%s %s: %w", method, path, err)
	}
	r := Response{Status: resp.StatusCode()}
	if !r.OK() {
		var p struct {
			Code string `json:"code"`
		}
		// A non-JSON error body (a proxy's HTML page) still has a status worth counting.
		if json.Unmarshal(resp.Body(), &p) == nil {
			r.Code = p.Code
		}
		return r, nil
	}
	if out != nil {
		if err := json.Unmarshal(resp.Body(), out); err != nil {
			return r, fmt.Errorf("%s %s: decode %d answer: %w", method, path, r.Status, err)
		}
	}
	return r, nil
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
