package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/api"
	"github.com/booking-engine/booking/api/apitest"
	"github.com/booking-engine/booking/eventstore"
	"github.com/booking-engine/booking/projections"
)

const streamPath = "/api/v1/concerts/c1/dates/d1/seats/stream"

// liveSeats is a read model whose seat map of c1/d1 changes: set changes it, as a committed
// projection batch would, and publish then tells the feed, as the engine does after a commit.
type liveSeats struct {
	projections.Queries
	mu    sync.Mutex
	seats []projections.SeatView
}

func newLiveSeats(next projections.Queries, n int) *liveSeats {
	q := &liveSeats{Queries: next}
	for i := 1; i <= n; i++ {
		q.seats = append(q.seats, projections.SeatView{SeatNo: i, Price: int64(1000 + i), Status: aggregates.SeatStatusAvailable})
	}
	return q
}

func (q *liveSeats) Seats(ctx context.Context, concertID, dateID string) ([]projections.SeatView, error) {
	if concertID != "c1" || dateID != "d1" {
		return q.Queries.Seats(ctx, concertID, dateID)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]projections.SeatView(nil), q.seats...), nil
}

func (q *liveSeats) set(seatNo int, status aggregates.SeatStatus) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.seats[seatNo-1].Status = status
}

func (q *liveSeats) truth() map[int]string {
	q.mu.Lock()
	defer q.mu.Unlock()
	m := map[int]string{}
	for _, v := range q.seats {
		m[v.SeatNo] = string(v.Status)
	}
	return m
}

var seatEventTypes = map[aggregates.SeatStatus]string{
	aggregates.SeatStatusHeld:      aggregates.SeatHeld{}.EventType(),
	aggregates.SeatStatusSold:      aggregates.SeatSold{}.EventType(),
	aggregates.SeatStatusAvailable: aggregates.SeatReleased{}.EventType(),
}

// change commits a seat's new status and publishes it.
func (q *liveSeats) change(feed *api.SeatFeed, seatNo int, status aggregates.SeatStatus) {
	q.set(seatNo, status)
	if feed != nil {
		feed.Publish(eventstore.Envelope{Type: seatEventTypes[status], AggregateType: eventstore.TypeSeat, AggregateID: fmt.Sprintf("c1.d1.%d", seatNo)})
	}
}

// withLiveSeats wires a live seat map of n seats and, unless nil, a feed.
func withLiveSeats(q **liveSeats, n int, feed *api.SeatFeed) func(*api.Deps, *api.Config) {
	return func(d *api.Deps, _ *api.Config) {
		*q = newLiveSeats(d.Queries, n)
		d.Queries = *q
		d.SeatFeed = feed
	}
}

type streamEvent struct{ name, data string }

// seatStream is one client of the seat-map stream.
type seatStream struct {
	t        *testing.T
	events   chan streamEvent
	comments chan string
	cancel   context.CancelFunc
	header   http.Header
}

func openSeatStream(t *testing.T, baseURL string) *seatStream {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+streamPath, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The stream's status and Content-Type are checked against openapi.yaml.
	resp, err := (&http.Client{Transport: apitest.SpecTransport(t, nil)}).Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		cancel()
		resp.Body.Close()
		t.Fatalf("stream answered %d", resp.StatusCode)
	}
	s := &seatStream{t: t, events: make(chan streamEvent), comments: make(chan string, 64), cancel: cancel, header: resp.Header}
	t.Cleanup(cancel)
	go func() {
		defer close(s.events)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev streamEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.data != "" {
					select {
					case s.events <- ev:
					case <-ctx.Done():
						return
					}
				}
				ev = streamEvent{}
			case strings.HasPrefix(line, ":"):
				select {
				case s.comments <- line:
				default:
				}
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return s
}

// next returns the next event, failing the test when none comes within 10 seconds.
func (s *seatStream) next() streamEvent {
	s.t.Helper()
	select {
	case ev, ok := <-s.events:
		if !ok {
			s.t.Fatal("the stream ended")
		}
		return ev
	case <-time.After(10 * time.Second):
		s.t.Fatal("no event within 10 s")
	}
	return streamEvent{}
}

// apply updates a client's map with one event.
func apply(m map[int]string, ev streamEvent) error {
	switch ev.name {
	case "snapshot":
		var body struct{ Seats []projections.SeatView }
		if err := json.Unmarshal([]byte(ev.data), &body); err != nil {
			return fmt.Errorf("snapshot %q: %w", ev.data, err)
		}
		clear(m)
		for _, v := range body.Seats {
			m[v.SeatNo] = string(v.Status)
		}
	case "seats":
		var body struct{ Seats []projections.SeatView }
		if err := json.Unmarshal([]byte(ev.data), &body); err != nil {
			return fmt.Errorf("seats %q: %w", ev.data, err)
		}
		for _, v := range body.Seats {
			m[v.SeatNo] = string(v.Status)
		}
	default:
		return fmt.Errorf("unknown event %q", ev.name)
	}
	return nil
}

func TestSeatStreamAnswersBeforeStreaming(t *testing.T) {
	e := newEnv(t)
	tests := []struct {
		name   string
		method string
		path   string
		status int
		code   string
	}{
		{name: "an unknown concert is 404 before the stream starts", method: http.MethodGet, path: "/api/v1/concerts/c9/dates/d1/seats/stream", status: 404, code: "CONCERT_NOT_FOUND"},
		{name: "an unknown date is 404 before the stream starts", method: http.MethodGet, path: "/api/v1/concerts/c1/dates/d9/seats/stream", status: 404, code: "DATE_NOT_FOUND"},
		{name: "a malformed date ID is 400", method: http.MethodGet, path: "/api/v1/concerts/c1/dates/d%201/seats/stream", status: 400, code: "VALIDATION_FAILED"},
		{name: "a POST to the stream is 405", method: http.MethodPost, path: streamPath, status: 405, code: "METHOD_NOT_ALLOWED"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := e.Do(apitest.Request{Method: tt.method, Path: tt.path})
			r.Expect(t, tt.status, tt.code)
		})
	}
}

func TestSeatStreamStartsWithTheSeatMapThenSendsFramesOfChanges(t *testing.T) {
	var q *liveSeats
	feed := api.NewSeatFeed(api.SeatFeedConfig{})
	e := newEnv(t, withLiveSeats(&q, 5, feed))
	base := apitest.Serve(t, e.App)
	s := openSeatStream(t, base)
	if ct, cc := s.header.Get("Content-Type"), s.header.Get("Cache-Control"); ct != "text/event-stream" || cc != "no-store" {
		t.Fatalf("Content-Type %q, Cache-Control %q", ct, cc)
	}
	first := s.next()
	seats := e.Get("/api/v1/concerts/c1/dates/d1/seats")
	if first.name != "snapshot" || first.data != string(seats.Body) {
		t.Fatalf("first event %s %s, want a snapshot equal to GET .../seats: %s", first.name, first.data, seats.Body)
	}
	q.change(feed, 2, aggregates.SeatStatusHeld)
	q.change(feed, 2, aggregates.SeatStatusSold)
	q.change(feed, 4, aggregates.SeatStatusHeld)
	client := map[int]string{}
	if err := apply(client, first); err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprint(q.truth())
	for fmt.Sprint(client) != want {
		ev := s.next()
		if ev.name != "seats" {
			t.Fatalf("got %s %s, want a frame of seats", ev.name, ev.data)
		}
		if err := apply(client, ev); err != nil {
			t.Fatal(err)
		}
	}
	if client[2] != "SOLD" || client[4] != "HELD" {
		t.Fatalf("client map %v", client)
	}
}

func TestSeatStreamWithoutAFeedFollowsTheReadModelByPolling(t *testing.T) {
	var q *liveSeats
	e := newEnv(t, withLiveSeats(&q, 3, nil))
	s := openSeatStream(t, apitest.Serve(t, e.App))
	if ev := s.next(); ev.name != "snapshot" {
		t.Fatalf("first event %s", ev.name)
	}
	q.change(nil, 3, aggregates.SeatStatusSold)
	if ev := s.next(); ev.name != "seats" || ev.data != `{"seats":[{"seatNo":3,"price":1003,"status":"SOLD"}]}` {
		t.Fatalf("got %s %s", ev.name, ev.data)
	}
}

func TestSeatStreamSendsHeartbeats(t *testing.T) {
	var q *liveSeats
	feed := api.NewSeatFeed(api.SeatFeedConfig{Heartbeat: 20 * time.Millisecond})
	e := newEnv(t, withLiveSeats(&q, 3, feed))
	s := openSeatStream(t, apitest.Serve(t, e.App))
	s.next()
	select {
	case c := <-s.comments:
		if c != ": ping" {
			t.Fatalf("comment %q, want \": ping\"", c)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no heartbeat")
	}
}

// waitSubscribers polls the feed until it has n subscribers.
func waitSubscribers(t *testing.T, feed *api.SeatFeed, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for api.SeatFeedSubscribers(feed) != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d subscribers, want %d", api.SeatFeedSubscribers(feed), n)
		}
		time.Sleep(5 * time.Millisecond) // polling with a deadline
	}
}

func TestSeatStreamEndsWhenTheClientLeaves(t *testing.T) {
	var q *liveSeats
	feed := api.NewSeatFeed(api.SeatFeedConfig{Heartbeat: 20 * time.Millisecond}) // the next heartbeat finds the client gone
	e := newEnv(t, withLiveSeats(&q, 3, feed))
	base := apitest.Serve(t, e.App)
	a, b := openSeatStream(t, base), openSeatStream(t, base)
	a.next()
	b.next()
	waitSubscribers(t, feed, 2)
	a.cancel()
	waitSubscribers(t, feed, 1)
	q.change(feed, 1, aggregates.SeatStatusHeld)
	if ev := b.next(); ev.name != "seats" {
		t.Fatalf("the remaining client got %s %s", ev.name, ev.data)
	}
}

func TestSeatStreamEndsWhenTheServerShutsDown(t *testing.T) {
	var q *liveSeats
	feed := api.NewSeatFeed(api.SeatFeedConfig{}) // heartbeat 15 s: only the shutdown can end the stream in time
	e := newEnv(t, withLiveSeats(&q, 3, feed))
	s := openSeatStream(t, apitest.Serve(t, e.App))
	s.next()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := e.App.ShutdownWithContext(ctx); err != nil {
		t.Fatalf("shutdown with an open stream: %v after %s", err, time.Since(start))
	}
	select {
	case _, ok := <-s.events:
		if ok {
			t.Fatal("an event after shutdown")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end at shutdown")
	}
	waitSubscribers(t, feed, 0)
}

// TestSeatStreamClientsConvergeUnderConcurrentChanges races publishers (one per group of
// seats, as the engine publishes one stream per goroutine) against clients with a backlog of
// one frame, too small to keep up: every client must end with the read model's map.
func TestSeatStreamClientsConvergeUnderConcurrentChanges(t *testing.T) {
	const seats, clients, publishers, changes = 40, 6, 4, 300
	var q *liveSeats
	feed := api.NewSeatFeed(api.SeatFeedConfig{Backlog: 1, MinFrameInterval: time.Millisecond})
	e := newEnv(t, withLiveSeats(&q, seats, feed))
	base := apitest.Serve(t, e.App)
	streams := make([]*seatStream, clients)
	maps := make([]map[int]string, clients)
	for i := range streams {
		streams[i] = openSeatStream(t, base)
		maps[i] = map[int]string{}
		if err := apply(maps[i], streams[i].next()); err != nil {
			t.Fatal(err)
		}
	}
	statuses := []aggregates.SeatStatus{aggregates.SeatStatusAvailable, aggregates.SeatStatusHeld, aggregates.SeatStatusSold}
	var wg sync.WaitGroup
	for p := range publishers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(p), 7))
			for range changes {
				seat := p + 1 + publishers*rng.IntN(seats/publishers) // seats ≡ p+1 mod publishers
				q.change(feed, seat, statuses[rng.IntN(len(statuses))])
			}
		}()
	}
	wg.Wait()
	want := fmt.Sprint(q.truth())
	var cg sync.WaitGroup
	for i, s := range streams {
		cg.Add(1)
		go func() {
			defer cg.Done()
			deadline := time.After(20 * time.Second)
			for fmt.Sprint(maps[i]) != want {
				select {
				case ev, ok := <-s.events:
					if !ok {
						t.Errorf("client %d: the stream ended", i)
						return
					}
					if err := apply(maps[i], ev); err != nil {
						t.Errorf("client %d: %v", i, err)
						return
					}
				case <-deadline:
					t.Errorf("client %d has %v, want %s", i, maps[i], want)
					return
				}
			}
		}()
	}
	cg.Wait()
}

// TestSeatStreamDisconnectsAClientThatStopsReading keeps sending a client that never reads
// large frames: once its socket buffers are full, its stream must end within a heartbeat,
// while a reading client stays.
func TestSeatStreamDisconnectsAClientThatStopsReading(t *testing.T) {
	const seats = 2000
	var q *liveSeats
	feed := api.NewSeatFeed(api.SeatFeedConfig{Heartbeat: 100 * time.Millisecond, MinFrameInterval: time.Millisecond})
	e := newEnv(t, withLiveSeats(&q, seats, feed))
	base := apitest.Serve(t, e.App)
	reader := openSeatStream(t, base)
	go func() {
		for range reader.events { // keeps reading until the test ends
		}
	}()
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: x\r\n\r\n", streamPath); err != nil {
		t.Fatal(err)
	}
	waitSubscribers(t, feed, 2)
	statuses := []aggregates.SeatStatus{aggregates.SeatStatusHeld, aggregates.SeatStatusAvailable}
	deadline := time.Now().Add(20 * time.Second)
	for round := 0; api.SeatFeedSubscribers(feed) != 1; round++ {
		if time.Now().After(deadline) {
			t.Fatalf("%d streams open after %d rounds of frames to a client that does not read", api.SeatFeedSubscribers(feed), round)
		}
		for seat := 1; seat <= seats; seat++ { // every seat changes: frames of about 90 KB
			q.change(feed, seat, statuses[round%2])
		}
		time.Sleep(2 * time.Millisecond) // lets a frame go out between rounds; the loop polls with a deadline
	}
}

func TestSeatStreamBeyondTheLimitIs503WithRetryAfter(t *testing.T) {
	var q *liveSeats
	feed := api.NewSeatFeed(api.SeatFeedConfig{MaxStreams: 1})
	e := newEnv(t, withLiveSeats(&q, 3, feed))
	base := apitest.Serve(t, e.App)
	openSeatStream(t, base).next()
	resp, err := http.Get(base + streamPath)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var p struct{ Code string }
	if err := json.NewDecoder(resp.Body).Decode(&p); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusServiceUnavailable || p.Code != "SERVICE_UNAVAILABLE" || resp.Header.Get("Retry-After") == "" ||
		resp.Header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("second stream: %d %s, Retry-After %q, Content-Type %q; want 503 SERVICE_UNAVAILABLE problem with Retry-After",
			resp.StatusCode, p.Code, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"))
	}
	if n := api.SeatFeedSubscribers(feed); n != 1 {
		t.Fatalf("%d streams open, want 1: a refused stream is not counted", n)
	}
}
