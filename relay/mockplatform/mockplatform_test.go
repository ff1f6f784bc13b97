package mockplatform

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/booking-engine/booking/internal/testpoll"
)

func postFact(t *testing.T, h http.Handler, key string, body string) int {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/events", bytes.NewBufferString(body))
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code
}

func factBody(id string) string {
	return `{"eventId":"` + id + `","type":"ReservationHeld","occurredAt":"2026-12-24T19:00:00Z","data":{"reservationId":"r1"}}`
}

func TestMockPlatform(t *testing.T) {
	type post struct {
		key, body string
		want      int
	}
	tests := []struct {
		name  string
		opts  Options
		posts []post
		stats Stats
	}{
		{
			name:  "a new event is accepted",
			posts: []post{{"e1", factBody("e1"), 201}},
			stats: Stats{Received: 1, Unique: 1},
		},
		{
			name:  "a repeated Idempotency-Key is a duplicate, answered 2xx and not stored twice",
			posts: []post{{"e1", factBody("e1"), 201}, {"e1", factBody("e1"), 200}, {"e2", factBody("e2"), 201}},
			stats: Stats{Received: 3, Unique: 2, Duplicates: 1},
		},
		{
			name:  "fail-first fails the first requests whatever they carry",
			opts:  Options{FailFirst: 2},
			posts: []post{{"e1", factBody("e1"), 500}, {"e2", factBody("e2"), 500}, {"e1", factBody("e1"), 201}},
			stats: Stats{Received: 3, Unique: 1, Failed: 2},
		},
		{
			name:  "a fail rate of 1 fails everything",
			opts:  Options{FailRate: 1},
			posts: []post{{"e1", factBody("e1"), 500}, {"e1", factBody("e1"), 500}},
			stats: Stats{Received: 2, Failed: 2},
		},
		{
			name:  "failures follow the random draw",
			opts:  Options{FailRate: 0.5, Rand: sequence(0.9, 0.1, 0.6)},
			posts: []post{{"e1", factBody("e1"), 201}, {"e2", factBody("e2"), 500}, {"e2", factBody("e2"), 201}},
			stats: Stats{Received: 3, Unique: 2, Failed: 1},
		},
		{
			name:  "a request without Idempotency-Key is refused",
			posts: []post{{"", factBody("e1"), 400}},
			stats: Stats{Received: 1, Failed: 1},
		},
		{
			name:  "an Idempotency-Key other than the eventId is refused",
			posts: []post{{"e2", factBody("e1"), 400}},
			stats: Stats{Received: 1, Failed: 1},
		},
		{
			name:  "a body that is not a fact is refused",
			posts: []post{{"e1", `{"eventId":`, 400}, {"e1", `{"type":"X"}`, 400}},
			stats: Stats{Received: 2, Failed: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := New(tt.opts)
			for i, p := range tt.posts {
				if got := postFact(t, m.Handler(), p.key, p.body); got != p.want {
					t.Errorf("post %d (%s): status %d, want %d", i, p.key, got, p.want)
				}
			}
			if got := m.Stats(); got != tt.stats {
				t.Errorf("stats = %+v, want %+v", got, tt.stats)
			}
		})
	}
}

func sequence(vs ...float64) func() float64 {
	i := 0
	return func() float64 { v := vs[i%len(vs)]; i++; return v }
}

func TestMockPlatformListsUniqueEventsAndStatsOverHTTP(t *testing.T) {
	m := New(Options{})
	if err := m.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	for _, id := range []string{"e1", "e1", "e2"} {
		req, _ := http.NewRequest(http.MethodPost, m.URL()+"/events", bytes.NewBufferString(factBody(id)))
		req.Header.Set("Idempotency-Key", id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	get := func(path string) map[string]json.RawMessage {
		resp, err := http.Get(m.URL() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		var out map[string]json.RawMessage
		if err := json.Unmarshal(b, &out); err != nil {
			t.Fatalf("GET %s: %s: %v", path, b, err)
		}
		return out
	}
	events := get("/events")
	var list []Event
	if err := json.Unmarshal(events["events"], &list); err != nil {
		t.Fatal(err)
	}
	if string(events["count"]) != "2" || len(list) != 2 || list[0].EventID != "e1" || list[1].EventID != "e2" || list[0].Deliveries != 2 {
		t.Errorf("GET /events = count %s, %+v; want e1 (2 deliveries) and e2", events["count"], list)
	}
	stats := get("/stats")
	want := map[string]string{"received": "3", "unique": "2", "duplicates": "1", "failed": "0"}
	if len(stats) != len(want) {
		t.Errorf("GET /stats has fields %v, want exactly %v", stats, want)
	}
	for k, v := range want {
		if string(stats[k]) != v {
			t.Errorf("GET /stats %s = %s, want %s", k, stats[k], v)
		}
	}
}

func TestClosingTheMockAnswersRequestsWaitingOutTheirLatencyWith503(t *testing.T) {
	m := New(Options{Latency: time.Hour})
	if err := m.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	status := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, m.URL()+"/events", bytes.NewBufferString(factBody("e1")))
		req.Header.Set("Idempotency-Key", "e1")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			status <- 0
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	testpoll.Eventually(t, 10*time.Second, "the request waiting at the platform", func() bool { return m.InFlight() == 1 })
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if got := <-status; got != http.StatusServiceUnavailable {
		t.Errorf("status of a request cut short by Close = %d, want 503", got)
	}
	if s := m.Stats(); s.Unique != 0 {
		t.Errorf("stats %+v: a request cut short was recorded", s)
	}
}

func TestClosingTheMockDoesNotWaitForAConnectionThatSentNoRequest(t *testing.T) {
	m := New(Options{})
	if err := m.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	// A client's spare keep-alive connection: dialled, never used.
	conn, err := net.Dial("tcp", strings.TrimPrefix(m.URL(), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	// The server notes the connection when it accepts it; wait for that, or Close could run
	// before there is anything to hang up on.
	testpoll.Eventually(t, 5*time.Second, "the mock accepting the connection", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.fresh) == 1
	})
	began := time.Now()
	if err := m.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	// net/http's own shutdown gives such a connection 5 s; the mock hangs up on it at once.
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("close took %s with an unused connection open", took)
	}
}
