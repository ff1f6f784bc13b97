package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/api"
	"github.com/booking-engine/booking/api/idemstore"
	"github.com/booking-engine/booking/app"
	"github.com/booking-engine/booking/eventstore"
	"github.com/booking-engine/booking/projections"
	"github.com/booking-engine/booking/relay"
)

// serveFlags are the flags of `booking serve`, each with a BOOKING_<NAME> twin.
type serveFlags struct {
	httpAddr            string
	dataDir             string
	natsURL             string
	replicas            int
	fsync               string
	groupCommit         bool
	holdTTL             time.Duration
	maxSeatsPerUser     int
	queueBatch          int
	queueInterval       time.Duration
	queueActiveTTL      time.Duration
	dataPlatformURL     string
	alertWebhookURL     string
	deliveryMaxAttempts int
	deliveryBackoff     time.Duration
	deliveryBackoffMax  time.Duration
	userRateLimit       float64
	userAuth            string
	userJWTKey          string
	userJWTIssuer       string
	userJWTAudience     string
	adminToken          string
	tokenSecret         string
	timezone            string
	catalog             string
	noDemo              bool
	requestTimeout      time.Duration
	logLevel            string
	logFormat           string
	natsListen          string
	pprofAddr           string
	maxStreams          int
	gomaxprocs          int
	readModelLinger     time.Duration
}

func addServeFlags(fs *pflag.FlagSet, f *serveFlags) {
	fs.StringVar(&f.httpAddr, "http-addr", ":8080", "HTTP listen address")
	fs.StringVar(&f.dataDir, "data-dir", "./data", "data directory (embedded JetStream, read models, secrets)")
	fs.StringVar(&f.natsURL, "nats-url", "", "external NATS server or cluster (comma-separated URLs) instead of the embedded one")
	fs.IntVar(&f.replicas, "replicas", 1, "stream replicas on a NATS cluster")
	fs.StringVar(&f.fsync, "fsync", "always", "always: every acknowledged event is on disk; interval: fsync every 2 minutes")
	fs.BoolVar(&f.groupCommit, "group-commit", true, "write concurrent appends to a stream as atomic batches, one fsync each (needs nats-server 2.12+)")
	fs.DurationVar(&f.holdTTL, "hold-ttl", 5*time.Minute, "how long a seat is held for payment")
	fs.IntVar(&f.maxSeatsPerUser, "max-seats-per-user", 8, "seats of one date a user may hold or own at once (HELD and CONFIRMED count; 0: no limit)")
	fs.IntVar(&f.queueBatch, "queue-batch", 1000, "queue tokens admitted per interval (0: everyone at once)")
	fs.DurationVar(&f.queueInterval, "queue-interval", 10*time.Second, "queue admission interval")
	fs.DurationVar(&f.queueActiveTTL, "queue-active-ttl", 10*time.Minute, "how long an active queue token stays valid")
	fs.StringVar(&f.dataPlatformURL, "data-platform-url", "", "data platform base URL (facts go to URL/events)")
	fs.StringVar(&f.alertWebhookURL, "alert-webhook-url", "", "Slack-compatible webhook for dead-letter alerts")
	fs.IntVar(&f.deliveryMaxAttempts, "delivery-max-attempts", 8, "delivery attempts before a fact becomes a dead letter")
	fs.DurationVar(&f.deliveryBackoff, "delivery-backoff", time.Second, "first retry delay of a delivery")
	fs.DurationVar(&f.deliveryBackoffMax, "delivery-backoff-max", time.Minute, "longest retry delay of a delivery")
	fs.Float64Var(&f.userRateLimit, "user-rate-limit", 20, "token issues and holds per user and second, burst twice that (0: off)")
	fs.StringVar(&f.userAuth, "user-auth", "none", "user authentication: none or jwt")
	fs.StringVar(&f.userJWTKey, "user-jwt-key", "", "HMAC secret file or PEM public key for --user-auth jwt")
	fs.StringVar(&f.userJWTIssuer, "user-jwt-issuer", "", "required JWT issuer (iss)")
	fs.StringVar(&f.userJWTAudience, "user-jwt-audience", "", "required JWT audience (aud)")
	fs.StringVar(&f.adminToken, "admin-token", "", "bearer token of the admin endpoints (empty: admin endpoints disabled)")
	fs.StringVar(&f.tokenSecret, "token-secret", "", "queue token signing secret (generated and kept in the data dir when empty)")
	fs.StringVar(&f.timezone, "timezone", "UTC", "timezone of the daily ranking")
	fs.StringVar(&f.catalog, "catalog", "testdata/catalog.json", "demo catalog loaded on first start")
	fs.BoolVar(&f.noDemo, "no-demo", false, "do not load the demo catalog")
	fs.DurationVar(&f.requestTimeout, "request-timeout", 5*time.Second, "bound on one request's work; past it the answer is 503")
	fs.StringVar(&f.logLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&f.logFormat, "log-format", "auto", "json, text, or auto (text on a terminal)")
	fs.StringVar(&f.natsListen, "nats-listen", "", "let tools attach to the embedded NATS server at this loopback host:port")
	fs.IntVar(&f.maxStreams, "max-streams", 0, "open seat-map streams at most; more are answered 503 (0: the open-file limit less 2048)")
	fs.IntVar(&f.gomaxprocs, "gomaxprocs", 0, "Go processors to run (0: one more than the CPUs with the embedded NATS server, whose fsyncs block threads; the Go default with --nats-url or when GOMAXPROCS is set)")
	fs.DurationVar(&f.readModelLinger, "read-model-linger", projections.DefaultLinger, "how long a read model waits after a batch of the log for more to commit with it, while no read waits for it (0: commit each batch at once)")
	fs.StringVar(&f.pprofAddr, "pprof-addr", "", "serve Go's pprof profiles at this loopback host:port (for profiling under load)")
}

func newServeCmd() *cobra.Command {
	var f serveFlags
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the booking service (embedded NATS JetStream by default)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			log := newLogger(f.logLevel, f.logFormat)
			// Here rather than in startServer, which tests and bench --in-process call inside
			// processes of their own.
			if err := setProcs(f.gomaxprocs, strings.TrimSpace(f.natsURL) == "", log); err != nil {
				return err
			}
			srv, err := startServer(ctx, f, log)
			if err != nil {
				return err
			}
			<-ctx.Done()
			return srv.shutdown()
		},
	}
	addServeFlags(cmd.Flags(), &f)
	return cmd
}

func newLogger(level, format string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "text" || (format == "auto" && term.IsTerminal(int(os.Stderr.Fd()))) {
		return slog.New(slog.NewTextHandler(os.Stderr, opts))
	}
	return slog.New(slog.NewJSONHandler(os.Stderr, opts))
}

// server is a running `booking serve`: everything it started, in the order to stop it.
type runningServer struct {
	url    string
	log    *slog.Logger
	http   *fiberServer
	cancel context.CancelFunc
	relay  *relay.Relay
	engine *projections.Engine
	idem   *idemstore.Store
	svc    *app.Service
	store  *eventstore.JetStreamStore
	// requestTimeout bounds the requests a stop waits for.
	requestTimeout time.Duration
	shutOnce       sync.Once
	shutErr        error
}

// startServer wires the service and starts serving; it returns once the listener is open.
// Readiness (/readyz) follows once the read models have caught up and recovery has run.
func startServer(ctx context.Context, f serveFlags, log *slog.Logger) (*runningServer, error) {
	if f.fsync != "always" && f.fsync != "interval" {
		return nil, fmt.Errorf("--fsync must be always or interval, not %q", f.fsync)
	}
	if f.maxSeatsPerUser < 0 {
		return nil, fmt.Errorf("--max-seats-per-user must be 0 (no limit) or more, not %d", f.maxSeatsPerUser)
	}
	if f.readModelLinger < 0 {
		return nil, fmt.Errorf("--read-model-linger must be 0 (commit at once) or more, not %s", f.readModelLinger)
	}
	loc, err := time.LoadLocation(f.timezone)
	if err != nil {
		return nil, fmt.Errorf("--timezone: %w", err)
	}
	if err := os.MkdirAll(f.dataDir, 0o755); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	secret, err := tokenSecret(f.dataDir, f.tokenSecret)
	if err != nil {
		return nil, err
	}
	var userAuth api.UserAuthenticator
	switch f.userAuth {
	case "none":
		log.Warn("users are not authenticated (--user-auth none): the userId of a request is taken as given")
	case "jwt":
		if userAuth, err = api.NewJWTAuthenticator(api.JWTOptions{KeyFile: f.userJWTKey, Issuer: f.userJWTIssuer, Audience: f.userJWTAudience}); err != nil {
			return nil, fmt.Errorf("--user-auth jwt: %w", err)
		}
	default:
		return nil, fmt.Errorf("--user-auth must be none or jwt, not %q", f.userAuth)
	}

	var urls []string
	for _, u := range strings.Split(f.natsURL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	if f.pprofAddr != "" {
		startPprof(f.pprofAddr, log)
	}
	store, err := eventstore.Open(ctx, eventstore.Options{
		DataDir: f.dataDir, NATSURLs: urls, Replicas: f.replicas, SyncAlways: f.fsync == "always",
		NoGroupCommit: !f.groupCommit, ListenAddr: f.natsListen, Logger: log,
	})
	if err != nil {
		return nil, fmt.Errorf("event store: %w", err)
	}
	s := &runningServer{log: log, store: store, requestTimeout: f.requestTimeout}
	fail := func(err error) (*runningServer, error) {
		s.shutdown()
		return nil, err
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), newResidentCollector())
	metrics := newMetrics(reg)
	metrics.watchGroupCommit(store)

	svc := app.New(store, app.Config{
		HoldTTL: f.holdTTL, QueueBatch: f.queueBatch, QueueInterval: f.queueInterval,
		QueueActiveTTL: f.queueActiveTTL, TokenSecret: secret, MaxSeatsPerUser: f.maxSeatsPerUser,
	}, app.Options{Logger: log, Observer: metrics, SingleWriter: len(urls) == 0 && f.natsListen == "",
		QueueSnapshots: fileSnapshots{path: filepath.Join(f.dataDir, "queue-snapshot")}})
	s.svc = svc

	engine, err := projections.Open(projections.Dir(f.dataDir), store, projections.Options{Location: loc, SoldOut: svc.RecordSellOut, Logger: log, Linger: f.readModelLinger})
	if err != nil {
		return fail(fmt.Errorf("read models: %w", err))
	}
	s.engine = engine
	engine.Subscribe(svc.OnEvent)
	seatFeed := api.NewSeatFeed(api.SeatFeedConfig{MaxStreams: maxStreams(f.maxStreams, log)}) // live seat maps (GET .../seats/stream)
	engine.Subscribe(seatFeed.Publish)
	metrics.watchSeatFeed(seatFeed)
	if err := metrics.watch(ctx, store, engine, svc); err != nil {
		return fail(fmt.Errorf("metrics: %w", err))
	}

	// Keys live in a bucket next to the events, so they hold across instances side by side.
	var idem *idemstore.Store
	err = eventstore.RetryUnavailable(ctx, log.With("what", "the idempotency bucket"), msgStartRetry, eventstore.DefaultConnectAttempts, eventstore.DefaultConnectWait, func(ctx context.Context) (err error) {
		idem, err = idemstore.OpenShared(ctx, store.JetStream(), idemstore.SharedOptions{Replicas: f.replicas})
		return err
	})
	if err != nil {
		return fail(fmt.Errorf("idempotency store: %w", err))
	}
	s.idem = idem

	rl, err := relay.New(store.JetStream(), relay.Options{
		URL: f.dataPlatformURL, AlertURL: f.alertWebhookURL, MaxAttempts: f.deliveryMaxAttempts,
		Backoff: f.deliveryBackoff, BackoffMax: f.deliveryBackoffMax, Registerer: reg, Logger: log,
		Replicas: clusterReplicas(urls, f.replicas),
	})
	if err != nil {
		return fail(fmt.Errorf("relay: %w", err))
	}
	s.relay = rl

	bg, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	if err := engine.Start(bg); err != nil {
		return fail(fmt.Errorf("read models: %w", err))
	}
	if f.dataPlatformURL != "" {
		// Started with bg, not the attempt's context: its deliveries run until the server stops.
		startRelay := func(context.Context) error { return rl.Start(bg) }
		if err := eventstore.RetryUnavailable(ctx, log.With("what", "the relay's consumers"), msgStartRetry, eventstore.DefaultConnectAttempts, eventstore.DefaultConnectWait, startRelay); err != nil {
			return fail(fmt.Errorf("relay: %w", err))
		}
	}

	var ready readiness
	metrics.watchReady(func() bool { return ready.ok() && store.Conn().IsConnected() })
	fiberApp := api.New(api.Deps{
		Commands: svc, Queries: engine,
		Ready:       func() bool { return ready.ok() && store.Conn().IsConnected() },
		Projections: projectionAdmin{engine}, DeadLetters: api.RelayDeadLetters(rl), Metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), Registerer: reg,
		UserAuth: userAuth, Idempotency: idem, Logger: log, SeatFeed: seatFeed,
	}, api.Config{AdminToken: f.adminToken, UserRateLimit: f.userRateLimit, RequestTimeout: f.requestTimeout, Location: loc})

	ln, err := net.Listen("tcp", f.httpAddr)
	if err != nil {
		return fail(fmt.Errorf("listen on %s: %w", f.httpAddr, err))
	}
	s.http = serveFiber(fiberApp, ln, log)
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "booking_http_open_connections",
		Help: "HTTP connections open now, idle keep-alive ones included; each holds one of process_open_fds.",
	}, func() float64 { return float64(s.http.conns.count()) }))
	s.url = "http://" + displayAddr(ln.Addr())
	log.Info("booking engine listening", "url", s.url, "data_dir", f.dataDir, "nats", natsDesc(urls), "fsync", f.fsync)

	// Catch up, recover and load the demo catalog in the background so /healthz answers at
	// once and /readyz tells when the rest is done.
	go func() {
		if err := engine.WaitReady(bg); err != nil {
			return
		}
		if err := svc.Start(bg, readSide{engine}); err != nil {
			log.Error("service start failed", "err", err)
			return
		}
		if !f.noDemo {
			if err := loadDemoCatalog(bg, svc, store, f.catalog, log); err != nil {
				log.Warn("demo catalog not loaded", "err", err)
			}
		}
		ready.set()
		log.Info("ready")
	}()
	return s, nil
}

// clusterReplicas is --replicas on a NATS cluster and 1 on the embedded server, which is a
// single node whatever the flag says.
func clusterReplicas(urls []string, replicas int) int {
	if len(urls) == 0 {
		return 1
	}
	return replicas
}

func natsDesc(urls []string) string {
	if len(urls) == 0 {
		return "embedded"
	}
	return strings.Join(urls, ",")
}

func displayAddr(a net.Addr) string {
	host, port, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "localhost"
	}
	return net.JoinHostPort(host, port)
}

// shutdown stops accepting, finishes in-flight requests, stops the consumers and closes NATS,
// each stage bounded (see shutdownDeadlines): it returns within --request-timeout plus a few
// seconds, and says in the log what it is waiting for when a stage is slow.
// queueSettleWait bounds how long a stop waits for the queue index to apply the stream's
// last events before its snapshot: a follower that is live lags by milliseconds.
const queueSettleWait = time.Second

func (s *runningServer) shutdown() error {
	s.shutOnce.Do(func() {
		start := time.Now()
		httpDone, allDone := shutdownDeadlines(start, s.requestTimeout)
		s.log.Info("stopping", "within", allDone.Sub(start))
		var errs []error
		stage := func(name, waitingFor string, deadline time.Time, state func() []any, step func() error) {
			st := shutdownStage{name: name, waitingFor: waitingFor, deadline: deadline, state: state}
			errs = append(errs, st.run(s.log, shutdownLogEvery, step))
		}
		if s.http != nil {
			// The server closes what is still open at httpDone itself; the floor is for the
			// closing.
			stage("http", "requests in flight and open HTTP connections", httpDone.Add(shutdownStageFloor),
				s.http.openConnections, func() error { return s.http.shutdown(httpDone) })
		}
		if s.svc != nil {
			// Requests are done: once the queue's follower has applied what they wrote, its
			// index is as complete as it gets. Saving it spares the next start the replay of the
			// whole QUEUE stream. The follower stops with the background loops, so this comes
			// first.
			stage("queue snapshot", "the queue index to catch up and its snapshot to be written", allDone, nil, func() error {
				settleBy := time.Now().Add(queueSettleWait)
				if allDone.Before(settleBy) {
					settleBy = allDone
				}
				ctx, cancel := context.WithDeadline(context.Background(), settleBy)
				defer cancel()
				if err := s.svc.SettleQueue(ctx); err != nil {
					s.log.Warn("queue index behind its stream; the snapshot covers what it has", "err", err)
				}
				if err := s.svc.SaveQueueSnapshot(); err != nil {
					s.log.Warn("queue snapshot not saved", "err", err)
				}
				return nil
			})
		}
		if s.cancel != nil {
			s.cancel()
		}
		if s.relay != nil {
			stage("relay", "deliveries to the data platform in progress", allDone, nil, func() error { s.relay.Close(); return nil })
		}
		if s.engine != nil {
			stage("read models", "the projections to stop and their files to be synced", allDone, nil, s.engine.Close)
		}
		if s.idem != nil {
			stage("idempotency store", "the idempotency store to close", allDone, nil, s.idem.Close)
		}
		if s.store != nil {
			stage("event store", "NATS to close", allDone, nil, s.store.Close)
		}
		s.shutErr = errors.Join(errs...)
		s.log.Info("stopped", "took", time.Since(start).Round(time.Millisecond))
	})
	return s.shutErr
}

// readiness turns true once, when the service has caught up and recovered.
type readiness struct{ b atomic.Bool }

func (r *readiness) set()     { r.b.Store(true) }
func (r *readiness) ok() bool { return r.b.Load() }

// tokenSecret returns the queue-token secret: the flag's, or one generated on first start and
// kept in the data dir, so tokens stay valid across restarts.
func tokenSecret(dataDir, flag string) ([]byte, error) {
	if flag != "" {
		return []byte(flag), nil
	}
	path := filepath.Join(dataDir, "token-secret")
	if b, err := os.ReadFile(path); err == nil && len(b) >= 32 {
		return b, nil
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	secret := []byte(hex.EncodeToString(raw))
	if err := os.WriteFile(path, secret, 0o600); err != nil {
		return nil, fmt.Errorf("keep token secret: %w", err)
	}
	return secret, nil
}

// demoCatalog is the file format of --catalog: the admin API's request bodies.
type demoCatalog struct {
	Concerts []struct {
		ConcertID string `json:"concertId"`
		Title     string `json:"title"`
		Dates     []struct {
			DateID     string    `json:"dateId"`
			StartsAt   time.Time `json:"startsAt"`
			SeatCount  int       `json:"seatCount"`
			Price      int64     `json:"price"`
			SeatPrices []struct {
				From  int   `json:"from"`
				To    int   `json:"to"`
				Price int64 `json:"price"`
			} `json:"seatPrices"`
		} `json:"dates"`
	} `json:"concerts"`
}

// loadDemoCatalog creates the catalog's concerts on first start (an empty catalog stream).
func loadDemoCatalog(ctx context.Context, svc *app.Service, store eventstore.Reader, path string, log *slog.Logger) error {
	head, err := store.Head(ctx, eventstore.StreamsOf(eventstore.TypeConcert)[0])
	if err != nil || head > 0 {
		return err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var c demoCatalog
	if err := json.Unmarshal(b, &c); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	for _, cc := range c.Concerts {
		nc := app.NewConcert{ConcertID: cc.ConcertID, Title: cc.Title}
		for _, d := range cc.Dates {
			nd := app.NewDate{DateID: d.DateID, StartsAt: d.StartsAt, SeatCount: d.SeatCount, Price: d.Price}
			for _, p := range d.SeatPrices {
				nd.SeatPrices = append(nd.SeatPrices, app.SeatPrice{From: p.From, To: p.To, Price: p.Price})
			}
			nc.Dates = append(nc.Dates, nd)
		}
		if _, err := svc.CreateConcert(ctx, app.Meta{CorrelationID: "demo-catalog"}, nc); err != nil && !errors.Is(err, aggregates.ErrConcertExists) {
			return fmt.Errorf("concert %s: %w", cc.ConcertID, err)
		}
	}
	log.Info("demo catalog loaded", "path", path, "concerts", len(c.Concerts))
	return nil
}

// readSide adapts the read models to what the application needs at start-up.
type readSide struct{ e *projections.Engine }

func (r readSide) HeldSeats(ctx context.Context) ([]app.HeldSeat, error) {
	held, err := r.e.HeldSeats(ctx)
	out := make([]app.HeldSeat, len(held))
	for i, h := range held {
		out[i] = app.HeldSeat{ConcertID: h.ConcertID, DateID: h.DateID, SeatNo: h.SeatNo, ReservationID: h.ReservationID, HeldUntil: h.HeldUntil}
	}
	return out, err
}

func (r readSide) ReservationDate(ctx context.Context, reservationID string) (string, string, error) {
	return r.e.ReservationDate(ctx, reservationID)
}

func (r readSide) PaymentReservation(ctx context.Context, paymentID string) (string, error) {
	return r.e.PaymentReservation(ctx, paymentID)
}

func (r readSide) AppliedPaymentReservation(ctx context.Context, paymentID string) (string, error) {
	return r.e.AppliedPaymentReservation(ctx, paymentID)
}

func (r readSide) Reservation(ctx context.Context, reservationID string) (app.Reservation, error) {
	v, err := r.e.Reservation(ctx, reservationID)
	return app.Reservation(v), err
}

func (r readSide) Payment(ctx context.Context, paymentID string) (app.Payment, error) {
	v, err := r.e.Payment(ctx, paymentID)
	return app.Payment(v), err
}

func (r readSide) PendingPayments(ctx context.Context) ([]string, error) {
	ps, err := r.e.PendingPayments(ctx)
	out := make([]string, len(ps))
	for i, p := range ps {
		out[i] = p.PaymentID
	}
	return out, err
}

// projectionAdmin adapts the read models to the admin API: a rebuild is started in the
// background (the API answers 202) rather than awaited.
type projectionAdmin struct{ e *projections.Engine }

func (p projectionAdmin) Status(ctx context.Context) ([]projections.Status, error) {
	return p.e.Status(ctx)
}

func (p projectionAdmin) Rebuild(_ context.Context, name string) error { return p.e.RebuildAsync(name) }

// maxStreams is --max-streams, or its default from the open-file limit, which it raises to
// the hard limit first and logs.
func maxStreams(flag int, log *slog.Logger) int {
	soft, hard, err := raiseOpenFileLimit()
	if err != nil {
		log.Warn("open-file limit", "err", err)
	}
	n := flag
	if n <= 0 {
		n = defaultMaxStreams(soft)
	}
	log.Info("open-file limit", "soft", soft, "hard", hard, "max_streams", n)
	return n
}

// msgStartRetry is logged for each attempt of a start's JetStream setup after the streams
// that failed and will be tried again (eventstore.RetryUnavailable, the streams' own bound).
const msgStartRetry = "cannot set up NATS yet"
