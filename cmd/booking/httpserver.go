package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/valyala/fasthttp"
)

// shutdownReadGrace is how long, once a stop has begun, a connection may still take to send
// the request it is reading. fasthttp marks a connection active the moment it is accepted,
// before it has read a byte, and its shutdown closes only idle connections: a client that
// connected and sent nothing (Go's http.Transport keeps such spare connections in its pool)
// would otherwise hold the stop until the server's 30 s ReadTimeout.
const shutdownReadGrace = 500 * time.Millisecond

// readDeadlineRenewal is how often a stop sets the connections' read deadline again.
const readDeadlineRenewal = 50 * time.Millisecond

// fiberServer serves a Fiber app on a listener in the background.
type fiberServer struct {
	app   *fiber.App
	ln    net.Listener
	log   *slog.Logger
	done  chan error
	conns connTracker
}

func serveFiber(app *fiber.App, ln net.Listener, log *slog.Logger) *fiberServer {
	s := &fiberServer{app: app, ln: ln, log: log, done: make(chan error, 1)}
	app.Server().ConnState = s.conns.track
	go func() {
		err := app.Listener(ln)
		if err != nil && !errors.Is(err, net.ErrClosed) {
			log.Error("http server stopped", "err", err)
		}
		s.done <- err
	}()
	return s
}

// shutdown stops accepting connections, lets the requests in flight finish and closes the
// rest at deadline. Idle keep-alive connections are closed at once; a connection that is not
// inside a handler has shutdownReadGrace to deliver its request. Connections still open at
// the deadline (a handler that overran the request timeout, a client slow to read its
// answer) are hung up on: the stop is bounded, whoever is connected.
func (s *fiberServer) shutdown(deadline time.Time) error {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- s.app.ShutdownWithContext(ctx) }()
	// A handler does not read from its connection (request bodies are read before it runs),
	// so the read deadline ends only connections that are waiting for a client. It is set
	// again until the drain ends: fasthttp sets a connection's read deadline itself before each
	// request it reads, and one whose goroutine got there after us would otherwise wait for the
	// hang-up at the deadline (seen under load: a half-sent request held the stop 1.5 s).
	graceEnd := time.Now().Add(shutdownReadGrace)
	stopRenewing := make(chan struct{})
	go func() {
		tick := time.NewTicker(readDeadlineRenewal)
		defer tick.Stop()
		for {
			s.conns.setReadDeadlines(graceEnd)
			select {
			case <-stopRenewing:
				return
			case <-tick.C:
			}
		}
	}()
	err := <-drained
	close(stopRenewing)
	if errors.Is(err, context.DeadlineExceeded) {
		n := s.conns.hangUpAll()
		s.log.Warn("shutdown: hung up on HTTP connections still open at the deadline", "connections", n)
		err = nil
	}
	// fasthttp's shutdown does nothing if Serve has not registered the listener yet (a stop
	// right after start); closing the listener ends Serve either way.
	_ = s.ln.Close()
	<-s.done
	return err
}

// openConnections is what the HTTP stage of a stop is waiting for, for its log.
func (s *fiberServer) openConnections() []any {
	return []any{"open_http_connections", s.conns.count()}
}

// connTracker knows every open connection of the server (through fasthttp's ConnState hook),
// so that a stop can end those fasthttp's own shutdown would wait for.
type connTracker struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

// track is fasthttp's ConnState hook. It is called as every request starts and ends (active,
// idle) too; only a connection's start and end change the set, so those take no lock.
func (t *connTracker) track(c net.Conn, state fasthttp.ConnState) {
	switch state {
	case fasthttp.StateNew:
		t.mu.Lock()
		if t.conns == nil {
			t.conns = map[net.Conn]struct{}{}
		}
		t.conns[c] = struct{}{}
		t.mu.Unlock()
	case fasthttp.StateClosed, fasthttp.StateHijacked:
		t.mu.Lock()
		delete(t.conns, c)
		t.mu.Unlock()
	}
}

func (t *connTracker) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.conns)
}

func (t *connTracker) setReadDeadlines(at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		_ = c.SetReadDeadline(at)
	}
}

// hangUpAll ends every open connection and returns how many there were. It shuts the
// sockets down rather than closing them: a handler may still be running on one, and fasthttp
// panics when it cannot set the deadline of a closed connection after the handler returns.
func (t *connTracker) hangUpAll() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		_ = c.SetDeadline(time.Now()) // fails a read or write in progress
		if tc, ok := c.(interface {
			CloseRead() error
			CloseWrite() error
		}); ok {
			_ = tc.CloseRead()
			_ = tc.CloseWrite() // the client sees the connection end
		}
	}
	return len(t.conns)
}
