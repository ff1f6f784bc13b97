// Package mockplatform is a stand-in for the external data platform that the relay delivers
// facts to: it backs `booking dataplatform` and the relay's tests, and lives apart from the
// relay so that the production package does not carry it. It imports nothing of the engine
// (the relay's tests import it): like the real platform, it knows a fact only by its wire
// shape (relay/README.md).
package mockplatform

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"sync"
	"time"
)

// Options configure a Platform.
type Options struct {
	// FailRate is the share of POST /events answered 500 at random (0 to 1).
	FailRate float64
	// Latency delays every answer to POST /events.
	Latency time.Duration
	// FailFirst answers the first N POST /events requests (of any event) 500.
	FailFirst int
	// Rand draws the failures, uniform in [0, 1); tests make it deterministic. Default:
	// math/rand/v2.
	Rand func() float64
	// Logger logs every accepted event at debug level; nil: nothing is logged.
	Logger *slog.Logger
}

// Event is one unique event the mock accepted, as it was posted, with when it arrived and
// how many POSTs carried its Idempotency-Key (retries and redeliveries included).
type Event struct {
	EventID    string          `json:"eventId"`
	Type       string          `json:"type"`
	OccurredAt time.Time       `json:"occurredAt"`
	Data       json.RawMessage `json:"data"`
	ReceivedAt time.Time       `json:"receivedAt"`
	Deliveries int             `json:"deliveries"`
}

// Stats counts the POST /events requests: every one is received; a request is failed when
// it was answered with anything but 2xx (injected failures and malformed requests); the rest
// are unique (first time for their key) or duplicates.
type Stats struct {
	Received   int `json:"received"`
	Unique     int `json:"unique"`
	Duplicates int `json:"duplicates"`
	Failed     int `json:"failed"`
}

// Platform is a stand-in data platform: POST /events dedups by Idempotency-Key and can
// fail or be slow on purpose; GET /events lists the unique events in arrival order; GET
// /stats counts. It backs `booking dataplatform` and is used in-process by tests.
type Platform struct {
	opts    Options
	handler http.Handler

	mu        sync.Mutex
	failRate  float64
	failFirst int
	events    []*Event
	byKey     map[string]*Event
	stats     Stats
	inFlight  int

	srv     *http.Server
	ln      net.Listener
	closing chan struct{}
	once    sync.Once
	// fresh holds the connections that have not sent a request yet, which Close hangs up on.
	fresh map[net.Conn]struct{}
}

// New returns a mock platform that is not listening yet; Handler serves it
// without a listener.
func New(opts Options) *Platform {
	if opts.Rand == nil {
		opts.Rand = rand.Float64
	}
	m := &Platform{
		opts:      opts,
		failRate:  opts.FailRate,
		failFirst: opts.FailFirst,
		byKey:     map[string]*Event{},
		closing:   make(chan struct{}),
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /events", m.postEvent)
	mux.HandleFunc("GET /events", m.getEvents)
	mux.HandleFunc("GET /stats", m.getStats)
	m.handler = mux
	return m
}

// Handler returns the platform's HTTP handler.
func (m *Platform) Handler() http.Handler { return m.handler }

// Start listens on addr ("127.0.0.1:0" picks a free port) and serves in the background.
func (m *Platform) Start(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("dataplatform: listen %s: %w", addr, err)
	}
	m.mu.Lock()
	m.ln = ln
	m.fresh = map[net.Conn]struct{}{}
	m.srv = &http.Server{Handler: m.handler, ReadHeaderTimeout: 10 * time.Second, ConnState: m.track}
	srv := m.srv
	m.mu.Unlock()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) && m.opts.Logger != nil {
			m.opts.Logger.Error("dataplatform: serve", "err", err)
		}
	}()
	return nil
}

// track keeps the set of connections that have not sent a request yet.
func (m *Platform) track(c net.Conn, st http.ConnState) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if st == http.StateNew {
		m.fresh[c] = struct{}{}
	} else {
		delete(m.fresh, c)
	}
}

// URL is the base URL to give the relay (http://host:port), empty before Start.
func (m *Platform) URL() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.ln == nil {
		return ""
	}
	return "http://" + m.ln.Addr().String()
}

// Close stops serving. Requests still waiting out their latency are answered 503 so that the
// sender retries them; nothing they carried was recorded.
func (m *Platform) Close() error {
	m.once.Do(func() { close(m.closing) })
	m.mu.Lock()
	srv := m.srv
	m.mu.Unlock()
	if srv == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	// net/http's Shutdown waits up to 5 s for a connection that was dialled but has sent no
	// request (a client's spare keep-alive connection, as the relay's Transport keeps): it
	// holds nothing, so hang up on it rather than let it hold the stop. The stop has begun, so
	// the listener takes no new connection; one that starts its request meanwhile is retried
	// by its sender.
	m.mu.Lock()
	for c := range m.fresh {
		_ = c.Close()
	}
	m.mu.Unlock()
	if err := <-shut; err != nil {
		return errors.Join(err, srv.Close())
	}
	return nil
}

// SetFailRate changes the share of requests failed at random, e.g. 1 to take the platform
// "down" and 0 to bring it back.
func (m *Platform) SetFailRate(rate float64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failRate = rate
}

// Events returns copies of the unique events, in arrival order.
func (m *Platform) Events() []Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]Event, len(m.events))
	for i, e := range m.events {
		out[i] = *e
	}
	return out
}

// Stats returns the request counts.
func (m *Platform) Stats() Stats {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stats
}

// InFlight returns the number of POST /events requests being answered right now (waiting out
// their latency included).
func (m *Platform) InFlight() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.inFlight
}

const maxBody = 1 << 20

// fact is the body of POST /events as the relay's README specifies it.
type fact struct {
	EventID    string          `json:"eventId"`
	Type       string          `json:"type"`
	OccurredAt time.Time       `json:"occurredAt"`
	Data       json.RawMessage `json:"data"`
}

func (m *Platform) postEvent(w http.ResponseWriter, r *http.Request) {
	m.mu.Lock()
	m.stats.Received++
	m.inFlight++
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		m.inFlight--
		m.mu.Unlock()
	}()

	if m.opts.Latency > 0 {
		t := time.NewTimer(m.opts.Latency)
		select {
		case <-t.C:
		case <-m.closing:
			t.Stop()
			m.fail(w, http.StatusServiceUnavailable, "shutting down")
			return
		case <-r.Context().Done():
			t.Stop()
			m.fail(w, http.StatusServiceUnavailable, "client gone")
			return
		}
	}

	key := r.Header.Get("Idempotency-Key")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		m.fail(w, http.StatusBadRequest, "unreadable body")
		return
	}
	var f fact
	if err := json.Unmarshal(body, &f); err != nil {
		m.fail(w, http.StatusBadRequest, "body is not a fact: "+err.Error())
		return
	}
	switch {
	case key == "":
		m.fail(w, http.StatusBadRequest, "Idempotency-Key header missing")
		return
	case f.EventID == "" || f.Type == "":
		m.fail(w, http.StatusBadRequest, "eventId and type are required")
		return
	case key != f.EventID:
		m.fail(w, http.StatusBadRequest, "Idempotency-Key must equal eventId")
		return
	}

	m.mu.Lock()
	inject := m.failFirst > 0 || m.opts.Rand() < m.failRate
	if m.failFirst > 0 {
		m.failFirst--
	}
	if inject {
		m.stats.Failed++
		m.mu.Unlock()
		writeJSON(w, http.StatusInternalServerError, map[string]string{"error": "injected failure"})
		return
	}
	if e, ok := m.byKey[key]; ok {
		e.Deliveries++
		m.stats.Duplicates++
		m.mu.Unlock()
		writeJSON(w, http.StatusOK, map[string]string{"status": "duplicate"})
		return
	}
	e := &Event{EventID: f.EventID, Type: f.Type, OccurredAt: f.OccurredAt, Data: f.Data, ReceivedAt: time.Now().UTC(), Deliveries: 1}
	m.byKey[key] = e
	m.events = append(m.events, e)
	m.stats.Unique++
	m.mu.Unlock()
	if m.opts.Logger != nil {
		m.opts.Logger.Debug("dataplatform: event", "eventId", f.EventID, "type", f.Type)
	}
	writeJSON(w, http.StatusCreated, map[string]string{"status": "accepted"})
}

// fail answers a request that was not accepted and counts it as failed.
func (m *Platform) fail(w http.ResponseWriter, status int, msg string) {
	m.mu.Lock()
	m.stats.Failed++
	m.mu.Unlock()
	writeJSON(w, status, map[string]string{"error": msg})
}

func (m *Platform) getEvents(w http.ResponseWriter, _ *http.Request) {
	events := m.Events()
	writeJSON(w, http.StatusOK, struct {
		Count  int     `json:"count"`
		Events []Event `json:"events"`
	}{len(events), events})
}

func (m *Platform) getStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, m.Stats())
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
