package main

import (
	"errors"
	"log/slog"
	"net"
	"time"

	"github.com/gofiber/fiber/v2"
)

// fiberServer serves a Fiber app on a listener in the background.
type fiberServer struct {
	app  *fiber.App
	ln   net.Listener
	done chan error
}

func serveFiber(app *fiber.App, ln net.Listener, log *slog.Logger) *fiberServer {
	s := &fiberServer{app: app, ln: ln, done: make(chan error, 1)}
	go func() {
		err := app.Listener(ln)
		if err != nil && !errors.Is(err, net.ErrClosed) {
			log.Error("http server stopped", "err", err)
		}
		s.done <- err
	}()
	return s
}

// shutdown stops accepting connections and waits for in-flight requests, up to timeout.
func (s *fiberServer) shutdown(timeout time.Duration) error {
	err := s.app.ShutdownWithTimeout(timeout)
	// fasthttp's shutdown does nothing if Serve has not registered the listener yet (a stop
	// right after start); closing the listener ends Serve either way.
	_ = s.ln.Close()
	<-s.done
	return err
}
