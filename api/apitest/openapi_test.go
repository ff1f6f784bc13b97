package apitest_test

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/booking-engine/booking/api/apitest"
)

func gzipped(t *testing.T, s string) string {
	t.Helper()
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	if _, err := zw.Write([]byte(s)); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

const problem404 = `{"type":"urn:booking:problem:not-found","title":"Not found","status":404,"detail":"no such route","code":"NOT_FOUND"}`

func TestSpecCheck(t *testing.T) {
	seats := `{"seats":[{"seatNo":1,"price":100,"status":"AVAILABLE"}]}`
	tests := []struct {
		name   string
		method string
		path   string
		status int
		header []string
		body   string
		drift  string // "" when the answer agrees with the document
	}{
		{name: "a declared answer agrees", method: "GET", path: "/healthz", status: 200, header: []string{"Content-Type", "application/json"}, body: `{"status":"ok"}`},
		{name: "an undeclared status is a drift", method: "GET", path: "/healthz", status: 418, header: []string{"Content-Type", "application/json"}, body: `{}`, drift: "GET /healthz answered 418 (application/json): status not declared"},
		{name: "a value outside the schema is a drift", method: "GET", path: "/healthz", status: 200, header: []string{"Content-Type", "application/json"}, body: `{"status":"fine"}`, drift: "doesn't match schema"},
		{name: "a missing required field is a drift", method: "GET", path: "/api/v1/users/u1/points", status: 200, header: []string{"Content-Type", "application/json"}, body: `{"userId":"u1"}`, drift: "balance"},
		{name: "a field the document does not name is a drift", method: "GET", path: "/api/v1/users/u1/points", status: 200, header: []string{"Content-Type", "application/json"}, body: `{"userId":"u1","balance":5,"currency":"EUR"}`, drift: "currency"},
		{name: "a Content-Type the document does not list is a drift", method: "GET", path: "/api/v1/users/u1/points", status: 200, header: []string{"Content-Type", "text/plain"}, body: `{"userId":"u1","balance":5}`, drift: `Content-Type "text/plain" not declared`},
		{name: "a problem must be problem+json", method: "GET", path: "/api/v1/users/u1/points", status: 503, header: []string{"Content-Type", "application/json"}, body: `{"type":"t","title":"t","status":503,"detail":"d","code":"SERVICE_UNAVAILABLE"}`, drift: "not declared"},
		{name: "a gzipped seat map is checked unzipped", method: "GET", path: "/api/v1/concerts/c1/dates/d1/seats", status: 200, header: []string{"Content-Type", "application/json", "Content-Encoding", "gzip"}, body: gzipped(t, seats)},
		{name: "a gzipped seat map with a wrong status is a drift", method: "GET", path: "/api/v1/concerts/c1/dates/d1/seats", status: 200, header: []string{"Content-Type", "application/json", "Content-Encoding", "gzip"}, body: gzipped(t, strings.Replace(seats, "AVAILABLE", "FREE", 1)), drift: "FREE"},
		{name: "a stream is checked by its Content-Type only", method: "GET", path: "/api/v1/concerts/c1/dates/d1/seats/stream", status: 200, header: []string{"Content-Type", "text/event-stream"}, body: "retry: 2000\n\n"},
		{name: "a seat map stream sent as JSON is a drift", method: "GET", path: "/api/v1/concerts/c1/dates/d1/seats/stream", status: 200, header: []string{"Content-Type", "application/json"}, body: seats, drift: "not declared"},
		{name: "HEAD of a GET route is checked against the GET's statuses", method: "HEAD", path: "/healthz", status: 200, header: []string{"Content-Type", "application/json"}},
		{name: "HEAD with a status the GET does not declare is a drift", method: "HEAD", path: "/healthz", status: 418, drift: "status not declared"},
		{name: "an unknown path answered 404 with a problem agrees", method: "GET", path: "/nowhere", status: 404, header: []string{"Content-Type", "application/problem+json"}, body: problem404},
		{name: "an unknown path answered 200 is a drift", method: "GET", path: "/nowhere", status: 200, header: []string{"Content-Type", "application/json"}, body: `{}`, drift: "an unknown path, answered 200 instead of 404"},
		{name: "a method the path lacks answered 405 with Allow agrees", method: "PUT", path: "/healthz", status: 405, header: []string{"Content-Type", "application/problem+json", "Allow", "GET, HEAD"}, body: strings.ReplaceAll(problem404, "404", "405")},
		{name: "a 405 without Allow is a drift", method: "PUT", path: "/healthz", status: 405, header: []string{"Content-Type", "application/problem+json"}, body: strings.ReplaceAll(problem404, "404", "405"), drift: "Allow"},
		{name: "the page's assets are not operations", method: "GET", path: "/assets/app.js", status: 200, header: []string{"Content-Type", "text/javascript"}, body: "x"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(tt.method, "http://127.0.0.1:43210"+tt.path, nil)
			h := http.Header{}
			for i := 0; i+1 < len(tt.header); i += 2 {
				h.Set(tt.header[i], tt.header[i+1])
			}
			err := apitest.CheckAnswer(req, tt.status, h, []byte(tt.body))
			switch {
			case tt.drift == "" && err != nil:
				t.Fatalf("a drift reported: %v", err)
			case tt.drift != "" && err == nil:
				t.Fatalf("no drift reported, want one about %q", tt.drift)
			case tt.drift != "" && !strings.Contains(err.Error(), tt.drift):
				t.Fatalf("drift %q does not mention %q", err, tt.drift)
			case err != nil:
				t.Logf("reported: %v", err)
			}
		})
	}
}

// recorder is a testing.TB that keeps what Errorf reports instead of failing.
type recorder struct {
	testing.TB
	mu     sync.Mutex
	errors []string
}

func (r *recorder) Errorf(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func TestSpecTransportReportsDriftAndHandsTheAnswerOn(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/api/v1/concerts/c1/dates/d1/seats" {
			w.Header().Set("Content-Encoding", "gzip")
			_, _ = io.WriteString(w, gzipped(t, `{"seats":[]}`))
			return
		}
		_, _ = io.WriteString(w, `{"status":"fine"}`)
	}))
	t.Cleanup(srv.Close)
	rec := &recorder{TB: t}
	client := &http.Client{Transport: apitest.SpecTransport(rec, nil)}

	resp, err := client.Get(srv.URL + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if string(body) != `{"status":"fine"}` {
		t.Fatalf("body handed on as %q", body)
	}
	if len(rec.errors) != 1 || !strings.Contains(rec.errors[0], "GET /healthz answered 200") || !strings.Contains(rec.errors[0], "fine") {
		t.Fatalf("reported %q, want one drift naming the request, the status and the value", rec.errors)
	}

	// A client that asks for gzip itself gets the gzipped bytes; they are checked unzipped.
	req, _ := http.NewRequest("GET", srv.URL+"/api/v1/concerts/c1/dates/d1/seats", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err = client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if len(rec.errors) != 1 {
		t.Fatalf("a gzipped answer that agrees was reported: %q", rec.errors[1:])
	}
}
