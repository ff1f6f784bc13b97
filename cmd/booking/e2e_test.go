package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/booking-engine/booking/api/apitest"
)

// e2e is a real `booking serve` in this process (embedded JetStream in a temp dir), reached
// over loopback HTTP like any client would. Every answer is checked against api/openapi.yaml.
type e2e struct {
	t     *testing.T
	url   string
	admin string
	c     *http.Client
}

func startE2E(t *testing.T, args ...string) *e2e {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	url, admin, stop, err := startEmbedded(ctx, t.TempDir(), append([]string{"--admin-token=secret-admin", "--fsync=interval"}, args...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return &e2e{t: t, url: url, admin: admin, c: &http.Client{Timeout: 30 * time.Second, Transport: apitest.SpecTransport(t, &http.Transport{MaxIdleConnsPerHost: 200})}}
}

type answer struct {
	status int
	body   map[string]any
	raw    []byte
}

func (a answer) str(k string) string { s, _ := a.body[k].(string); return s }

func (e *e2e) do(method, path string, body any, headers ...string) answer {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, e.url+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := e.c.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	a := answer{status: resp.StatusCode, raw: raw}
	_ = json.Unmarshal(raw, &a.body)
	return a
}

func (e *e2e) must(want int, a answer) answer {
	e.t.Helper()
	if a.status != want {
		e.t.Fatalf("status %d, want %d: %s", a.status, want, a.raw)
	}
	return a
}

func (e *e2e) concert(id string, seats int, price int64) {
	e.t.Helper()
	e.must(201, e.do("POST", "/api/v1/admin/concerts", map[string]any{
		"concertId": id, "title": "Test " + id,
		"dates": []any{map[string]any{"dateId": "d1", "startsAt": "2026-12-24T19:00:00Z", "seatCount": seats, "price": price}},
	}, "Authorization", "Bearer "+e.admin))
}

func (e *e2e) token(user string) string {
	e.t.Helper()
	a := e.do("POST", "/api/v1/queue/tokens", map[string]any{"userId": user})
	if a.status != 201 && a.status != 200 {
		e.t.Fatalf("token for %s: %d %s", user, a.status, a.raw)
	}
	return a.str("token")
}

func TestThousandConcurrentHoldsOnOneSeatThroughHTTP(t *testing.T) {
	e := startE2E(t, "--queue-batch=0", "--user-rate-limit=0")
	e.concert("race", 10, 100)
	const n = 1000
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = e.token(fmt.Sprintf("fan-%d", i))
	}
	statuses := make([]int, n)
	codes := make([]string, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a := e.do("POST", "/api/v1/reservations", map[string]any{"userId": fmt.Sprintf("fan-%d", i), "concertId": "race", "dateId": "d1", "seatNo": 7}, "Queue-Token", tokens[i])
			statuses[i], codes[i] = a.status, a.str("code")
		}()
	}
	wg.Wait()
	won := 0
	for i := range n {
		switch {
		case statuses[i] == 201:
			won++
		case statuses[i] == 409 && codes[i] == "SEAT_UNAVAILABLE":
		default:
			t.Fatalf("hold %d: %d %s", i, statuses[i], codes[i])
		}
	}
	if won != 1 {
		t.Fatalf("%d holds won, want 1", won)
	}
}

func TestBookingWalkthroughThroughHTTP(t *testing.T) {
	e := startE2E(t, "--queue-batch=0")
	e.concert("c1", 2, 1000)
	if head := e.do("HEAD", "/api/v1/concerts/c1/dates", nil); head.status != 200 || len(head.raw) != 0 {
		t.Fatalf("HEAD of a GET route: %d %q", head.status, head.raw)
	}
	tok := e.token("alice")
	e.must(200, e.do("POST", "/api/v1/users/alice/points/charge", map[string]any{"amount": 5000}))
	res := e.must(201, e.do("POST", "/api/v1/reservations", map[string]any{"userId": "alice", "concertId": "c1", "dateId": "d1", "seatNo": 1}, "Queue-Token", tok))
	resID := res.str("reservationId")
	if got := e.must(200, e.do("GET", "/api/v1/reservations/"+resID, nil)); got.str("status") != "HELD" {
		t.Fatalf("reservation right after hold: %s", got.raw)
	}
	pay := e.must(201, e.do("POST", "/api/v1/payments", map[string]any{"reservationId": resID, "userId": "alice"}, "Queue-Token", tok, "Idempotency-Key", "pay-1"))
	// A retry of the payment is answered from the stored result although the token is revoked.
	again := e.must(201, e.do("POST", "/api/v1/payments", map[string]any{"reservationId": resID, "userId": "alice"}, "Queue-Token", tok, "Idempotency-Key", "pay-1"))
	if !bytes.Equal(pay.raw, again.raw) {
		t.Fatalf("replayed payment differs:\n%s\n%s", pay.raw, again.raw)
	}
	if got := e.must(200, e.do("GET", "/api/v1/reservations/"+resID, nil)); got.str("status") != "CONFIRMED" {
		t.Fatalf("reservation after payment: %s", got.raw)
	}
	if got := e.must(200, e.do("GET", "/api/v1/users/alice/points", nil)); got.body["balance"].(float64) != 4000 {
		t.Fatalf("balance after payment: %s", got.raw)
	}
	if got := e.do("POST", "/api/v1/reservations", map[string]any{"userId": "alice", "concertId": "c1", "dateId": "d1", "seatNo": 2}, "Queue-Token", tok); got.status != 401 || got.str("code") != "TOKEN_EXPIRED" {
		t.Fatalf("hold with a revoked token: %d %s", got.status, got.raw)
	}
	// Sell the last seat: the date sells out and enters today's ranking.
	bob := e.token("bob")
	e.must(200, e.do("POST", "/api/v1/users/bob/points/charge", map[string]any{"amount": 5000}))
	r2 := e.must(201, e.do("POST", "/api/v1/reservations", map[string]any{"userId": "bob", "concertId": "c1", "dateId": "d1", "seatNo": 2}, "Queue-Token", bob))
	e.must(201, e.do("POST", "/api/v1/payments", map[string]any{"reservationId": r2.str("reservationId"), "userId": "bob"}, "Queue-Token", bob))
	deadline := time.Now().Add(10 * time.Second)
	for {
		rank := e.must(200, e.do("GET", "/api/v1/rankings/daily", nil))
		if entries, _ := rank.body["entries"].([]any); len(entries) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("sold-out date not ranked: %s", rank.raw)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline: the ranking is projected asynchronously
	}
	dates := e.must(200, e.do("GET", "/api/v1/concerts/c1/dates", nil))
	if d := dates.body["dates"].([]any)[0].(map[string]any); d["soldOut"] != true || d["availableSeats"].(float64) != 0 {
		t.Fatalf("dates after sell-out: %s", dates.raw)
	}
	// Refund: points back, reservation cancelled, seat available.
	e.must(200, e.do("POST", "/api/v1/payments/"+pay.str("paymentId")+"/refund", nil, "Authorization", "Bearer "+e.admin))
	if got := e.must(200, e.do("GET", "/api/v1/users/alice/points", nil)); got.body["balance"].(float64) != 5000 {
		t.Fatalf("balance after refund: %s", got.raw)
	}
	if got := e.must(200, e.do("GET", "/api/v1/reservations/"+resID, nil)); got.str("status") != "CANCELLED" {
		t.Fatalf("reservation after refund: %s", got.raw)
	}
}
