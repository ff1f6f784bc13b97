package eventstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// Options says where the event store lives: an embedded NATS server over DataDir, or the NATS
// servers at NATSURLs.
type Options struct {
	// DataDir holds the embedded server's JetStream files (in DataDir/nats).
	DataDir string
	// NATSURLs are the servers to connect to; empty runs an embedded server.
	NATSURLs []string
	// Replicas is the replication factor of the streams (1 when 0; always 1 embedded).
	Replicas int
	// SyncAlways makes the embedded server fsync every message before acknowledging it
	// (--fsync always); otherwise it fsyncs every 2 minutes and an OS crash can lose
	// acknowledged events.
	SyncAlways bool
	// ListenAddr, when not empty, makes the embedded server also accept clients on this
	// host:port (port 0: any free port), so tools can attach with --nats-url. Keep it on
	// loopback: the server has no authentication.
	ListenAddr string
	// ConnectAttempts bounds the attempts to reach NATSURLs at start (DefaultConnectAttempts
	// when 0); once connected, the client reconnects forever.
	ConnectAttempts int
	// ConnectWait is the pause between two attempts (DefaultConnectWait when 0).
	ConnectWait time.Duration
	// Logger receives the store's and the embedded server's log lines (slog.Default when nil).
	Logger *slog.Logger
	// NoGroupCommit publishes every append alone instead of grouping concurrent ones into
	// atomic batches (groupcommit.go). Group commit is always off for an embedded server
	// without SyncAlways.
	NoGroupCommit bool
}

// embeddedServerName is stable so that JetStream's metadata in DataDir names the same server
// across restarts.
const embeddedServerName = "booking-embedded"

// Open connects to the event store described by opts, creates or updates its streams, and
// returns it. Close releases it.
func Open(ctx context.Context, opts Options) (*JetStreamStore, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	open := openExternal
	if len(opts.NATSURLs) == 0 {
		open = openEmbedded
	}
	s, err := open(ctx, opts)
	if err != nil {
		return nil, err
	}
	// Without SyncAlways the embedded server does not fsync single publishes, but it still
	// fsyncs a batch's staging files: batching would only add cost.
	s.groupCommitOff.Store(opts.NoGroupCommit || len(opts.NATSURLs) == 0 && !opts.SyncAlways)
	return s, nil
}

func openEmbedded(ctx context.Context, opts Options) (*JetStreamStore, error) {
	if opts.DataDir == "" {
		return nil, errors.New("eventstore: embedded server needs a data dir")
	}
	sopts := &server.Options{
		ServerName: embeddedServerName,
		JetStream:  true,
		StoreDir:   filepath.Join(opts.DataDir, "nats"),
		SyncAlways: opts.SyncAlways,
		DontListen: opts.ListenAddr == "",
		NoSigs:     true,
	}
	if opts.ListenAddr != "" {
		host, portStr, err := net.SplitHostPort(opts.ListenAddr)
		if err != nil {
			return nil, fmt.Errorf("eventstore: listen address %q: %w", opts.ListenAddr, err)
		}
		port, err := strconv.Atoi(portStr)
		if err != nil {
			return nil, fmt.Errorf("eventstore: listen address %q: %w", opts.ListenAddr, err)
		}
		if port == 0 {
			port = server.RANDOM_PORT // nats-server reads 0 as its default port, 4222
		}
		sopts.Host, sopts.Port = host, port
	}
	unlock, err := lockDataDir(sopts.StoreDir)
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(sopts)
	if err != nil {
		unlock()
		return nil, fmt.Errorf("eventstore: embedded server: %w", err)
	}
	ns.SetLoggerV2(natsLogger{opts.Logger}, false, false, false)
	go ns.Start()

	// Starting replays the JetStream files, which takes a while on a big data dir.
	wait := time.Minute
	if d, ok := ctx.Deadline(); ok {
		wait = max(time.Until(d), time.Second)
	}
	if !ns.ReadyForConnections(wait) {
		ns.Shutdown()
		ns.WaitForShutdown()
		unlock()
		return nil, fmt.Errorf("eventstore: embedded server not ready after %s: %w", wait, ErrUnavailable)
	}
	closed := make(chan struct{})
	nc, err := nats.Connect("", nats.InProcessServer(ns), nats.Name("booking"),
		nats.MaxReconnects(-1), nats.DrainTimeout(5*time.Second),
		nats.ClosedHandler(func(*nats.Conn) { close(closed) }))
	if err != nil {
		ns.Shutdown()
		ns.WaitForShutdown()
		unlock()
		return nil, fmt.Errorf("eventstore: connect to embedded server: %w", err)
	}
	s, err := NewJetStreamStore(nc, opts.Logger)
	if err != nil {
		nc.Close()
		ns.Shutdown()
		ns.WaitForShutdown()
		unlock()
		return nil, err
	}
	s.closeFn = func() {
		drain(nc, closed)
		ns.Shutdown()
		ns.WaitForShutdown()
		unlock()
	}
	if opts.ListenAddr != "" {
		s.url = ns.ClientURL()
	}
	if err := s.EnsureStreams(ctx, 1); err != nil {
		_ = s.Close()
		return nil, err
	}
	if err := connectPublishers(s, func() (*nats.Conn, error) {
		return nats.Connect("", nats.InProcessServer(ns), nats.Name("booking-publisher"), nats.MaxReconnects(-1))
	}); err != nil {
		_ = s.Close()
		return nil, err
	}
	opts.Logger.Info("eventstore: embedded NATS ready", "dir", sopts.StoreDir, "fsync_always", opts.SyncAlways, "url", s.url)
	return s, nil
}

// DefaultConnectAttempts and DefaultConnectWait bound a start's attempts to reach a NATS
// cluster and create the streams: 10, one second apart. Whatever else a start sets up in
// JetStream (the idempotency bucket, the relay's consumers) is bound the same way, through
// RetryUnavailable, so an operator has one bound to know (docs/OPERATIONS.md, "Clusters").
const (
	DefaultConnectAttempts = 10
	DefaultConnectWait     = time.Second
)

func openExternal(ctx context.Context, opts Options) (*JetStreamStore, error) {
	attempts := opts.ConnectAttempts
	if attempts <= 0 {
		attempts = DefaultConnectAttempts
	}
	pause := opts.ConnectWait
	if pause <= 0 {
		pause = DefaultConnectWait
	}
	urls := strings.Join(opts.NATSURLs, ",")
	log := opts.Logger
	closed := make(chan struct{})
	var closeOnce sync.Once
	connOpts := []nats.Option{
		nats.Name("booking"),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(500 * time.Millisecond),
		nats.DrainTimeout(5 * time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			log.Warn("eventstore: NATS disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(c *nats.Conn) {
			log.Info("eventstore: NATS reconnected", "url", c.ConnectedUrlRedacted())
		}),
		nats.ClosedHandler(func(*nats.Conn) { closeOnce.Do(func() { close(closed) }) }),
	}

	var nc *nats.Conn
	var s *JetStreamStore
	err := RetryUnavailable(ctx, log.With("urls", urls), "eventstore: cannot reach NATS", attempts, pause, func(ctx context.Context) error {
		if nc == nil {
			c, err := nats.Connect(urls, connOpts...)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrUnavailable, err)
			}
			nc = c
		}
		if s == nil {
			st, err := NewJetStreamStore(nc, log)
			if err != nil {
				return err
			}
			s = st
		}
		// A cluster may still be electing its meta leader: that is worth another attempt.
		return s.EnsureStreams(ctx, max(opts.Replicas, 1))
	})
	if err != nil {
		if nc != nil {
			nc.Close()
		}
		if errors.Is(err, ErrUnavailable) {
			return nil, fmt.Errorf("eventstore: connect to %s: %w", urls, err)
		}
		return nil, err
	}
	if err := connectPublishers(s, func() (*nats.Conn, error) {
		return nats.Connect(urls, append(connOpts[:len(connOpts):len(connOpts)], nats.Name("booking-publisher"), nats.ClosedHandler(nil))...)
	}); err != nil {
		nc.Close()
		return nil, err
	}
	s.closeFn = func() { drain(nc, closed) }
	log.Info("eventstore: connected to NATS", "url", nc.ConnectedUrlRedacted(), "replicas", max(opts.Replicas, 1))
	return s, nil
}

// drain lets in-flight requests and subscriptions finish, then waits for the connection to
// close (Drain only starts it).
// connectPublishers opens the extra connections appends are spread over.
func connectPublishers(s *JetStreamStore, connect func() (*nats.Conn, error)) error {
	conns := make([]*nats.Conn, 0, Publishers)
	for range Publishers {
		nc, err := connect()
		if err != nil {
			for _, c := range conns {
				c.Close()
			}
			return fmt.Errorf("eventstore: publisher connection: %w: %w", ErrUnavailable, err)
		}
		conns = append(conns, nc)
	}
	return s.addPublishers(conns)
}

func drain(nc *nats.Conn, closed <-chan struct{}) {
	if err := nc.Drain(); err != nil {
		nc.Close()
	}
	<-closed
}

// URL returns the client URL of the embedded server when it listens (Options.ListenAddr),
// or "".
func (s *JetStreamStore) URL() string { return s.url }

// natsLogger sends the embedded server's log lines to slog. Notices go to debug: the server
// is chatty at start and its state is logged by Open in one line.
type natsLogger struct{ l *slog.Logger }

func (n natsLogger) Noticef(format string, v ...any) {
	n.l.Debug(fmt.Sprintf(format, v...), "component", "nats-server")
}
func (n natsLogger) Warnf(format string, v ...any) {
	n.l.Warn(fmt.Sprintf(format, v...), "component", "nats-server")
}
func (n natsLogger) Fatalf(format string, v ...any) {
	n.l.Error(fmt.Sprintf(format, v...), "component", "nats-server")
}
func (n natsLogger) Errorf(format string, v ...any) {
	n.l.Error(fmt.Sprintf(format, v...), "component", "nats-server")
}
func (n natsLogger) Debugf(format string, v ...any) {
	n.l.Debug(fmt.Sprintf(format, v...), "component", "nats-server")
}
func (n natsLogger) Tracef(format string, v ...any) {
	n.l.Debug(fmt.Sprintf(format, v...), "component", "nats-server")
}

// RetryUnavailable runs setup until it succeeds, fails for a reason other than
// ErrUnavailable, or has failed attempts times, pause apart, logging msg at each failure it
// will try again. On a cluster with a node down, creating a replicated stream can time out
// until the others have missed the node's heartbeats or it is back (docs/OPERATIONS.md,
// "Clusters"); the streams may be placed and what a start creates next not, so everything a
// start creates takes the same patience. A start cancelled between attempts ends with both
// the cancellation and the last failure.
func RetryUnavailable(ctx context.Context, log *slog.Logger, msg string, attempts int, pause time.Duration, setup func(context.Context) error) error {
	for attempt := 1; ; attempt++ {
		err := setup(ctx)
		if err == nil || !errors.Is(err, ErrUnavailable) || attempt >= attempts {
			return err
		}
		log.Warn(msg, "attempt", attempt, "of", attempts, "err", err)
		t := time.NewTimer(pause)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (after %d attempts: %w)", ctx.Err(), attempt, err)
		case <-t.C:
		}
	}
}
