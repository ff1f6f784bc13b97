package api_test

import (
	"net/http"
	"testing"

	"github.com/booking-engine/booking/api/apitest"
)

// fuzzRoutes are the endpoints that decode a body; the fuzzer picks one by index.
var fuzzRoutes = []struct {
	path   string
	header map[string]string
}{
	{"/api/v1/queue/tokens", nil},
	{"/api/v1/users/u1/points/charge", nil},
	{"/api/v1/reservations", map[string]string{"Queue-Token": "active:u1"}},
	{"/api/v1/payments", map[string]string{"Queue-Token": "active:u1"}},
	{"/api/v1/admin/concerts", map[string]string{"Authorization": "Bearer " + adminToken}},
	{"/api/v1/payments/p1/refund", map[string]string{"Authorization": "Bearer " + adminToken}},
	{"/api/v1/admin/dead-letters/dl-1/redrive", map[string]string{"Authorization": "Bearer " + adminToken}},
	{"/api/v1/admin/projections/seats/rebuild", map[string]string{"Authorization": "Bearer " + adminToken}},
}

// FuzzDecodeRequests sends arbitrary bodies (and Idempotency-Keys) to every endpoint that
// decodes one. Whatever arrives, the answer is never a 5xx, a refusal is a problem document
// with a code, and a 400 never follows a command: bad input changes nothing.
// Seeds: testdata/fuzz/FuzzDecodeRequests and the f.Add calls below.
func FuzzDecodeRequests(f *testing.F) {
	f.Add(byte(0), []byte(`{"userId":"u1"}`), "")
	f.Add(byte(1), []byte(`{"amount":100}`), "k1")
	f.Add(byte(2), []byte(`{"userId":"u1","concertId":"c1","dateId":"d1","seatNo":1}`), "k2")
	f.Add(byte(3), []byte(`{"reservationId":"r1","userId":"u1"}`), "")
	f.Add(byte(4), []byte(`{"title":"T","dates":[{"startsAt":"2026-12-24T19:00:00Z","seatCount":5,"price":1,"seatPrices":[{"from":1,"to":2,"price":3}]}]}`), "")
	f.Add(byte(5), []byte(``), "k3")
	f.Add(byte(6), []byte(`{}`), "")
	f.Add(byte(7), []byte(`{"x":[`), "")

	e := newEnv(f)
	f.Fuzz(func(t *testing.T, route byte, body []byte, key string) {
		r := fuzzRoutes[int(route)%len(fuzzRoutes)]
		header := map[string]string{}
		for k, v := range r.header {
			header[k] = v
		}
		if printableHeader(key) {
			header["Idempotency-Key"] = key
		}
		before := len(e.cmds.Calls())
		resp, err := e.TryDo(apitest.Request{Method: http.MethodPost, Path: r.path, Header: header, Body: body})
		if err != nil {
			t.Fatalf("request failed: %v", err)
		}
		if resp.Status >= 500 {
			t.Fatalf("%s answered %d to %q: %s", r.path, resp.Status, body, resp.Body)
		}
		if resp.Status >= 400 {
			resp.Problem(t) // fails unless a complete problem document
		}
		if resp.Status == 400 && len(e.cmds.Calls()) != before {
			t.Fatalf("a 400 ran a command: %q", body)
		}
	})
}

// printableHeader reports whether s can travel as a header value at all; the API's own
// stricter check is what the fuzzer exercises.
func printableHeader(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] == 0x7f {
			return false
		}
	}
	return true
}
