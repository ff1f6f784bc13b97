// Package api is the HTTP face of the booking engine: a Fiber app with the routes of the
// external contract (docs: ../shared/api-contract.md, served as openapi.yaml), strict request
// decoding, authentication (queue tokens, user JWTs, the admin token), idempotency keys, a
// per-user rate limit and RFC 9457 problem answers. It is the only package that knows HTTP
// status codes; everything it does to the system goes through Commands, and every read
// through projections.Queries.
package api

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/booking-engine/booking/api/idemstore"
	"github.com/booking-engine/booking/api/web"
	"github.com/booking-engine/booking/app"
	"github.com/booking-engine/booking/projections"
)

// BodyLimit is the largest request body accepted; larger ones get 413 BODY_TOO_LARGE.
const BodyLimit = 64 << 10

// ProjectionAdmin lets operators see and rebuild the read models.
type ProjectionAdmin interface {
	// Status reports every projection's checkpoint, head and lag.
	Status(ctx context.Context) ([]projections.Status, error)
	// Rebuild starts rebuilding one projection in the background and returns once it has
	// started (the API answers 202); an unknown name is ErrNotFound or projections.ErrNotFound.
	Rebuild(ctx context.Context, name string) error
}

// DeadLetter is one fact the data-platform relay gave up on, as the API shows it.
type DeadLetter struct {
	ID        string    `json:"id"`
	EventID   string    `json:"eventId"`
	EventType string    `json:"eventType"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"lastError"`
	FailedAt  time.Time `json:"failedAt"`
}

// DeadLetters lists the facts the relay gave up on and sends them again.
type DeadLetters interface {
	// List returns the dead letters, oldest first.
	List(ctx context.Context) ([]DeadLetter, error)
	// Redrive queues one dead letter for delivery again and returns once it is queued (the
	// API answers 202); an unknown id is relay.ErrDeadLetterNotFound (ErrNotFound or
	// projections.ErrNotFound are taken to mean the same).
	Redrive(ctx context.Context, id string) error
}

// Deps are the collaborators of the API. Commands, Queries and Idempotency are required.
type Deps struct {
	Commands Commands
	Queries  projections.Queries
	// Ready reports whether the event store is reachable and the read models caught up at
	// start-up (GET /readyz). nil: always ready.
	Ready func() bool
	// Projections backs the admin projection endpoints. nil: an empty list, and every
	// rebuild is 404 NOT_FOUND.
	Projections ProjectionAdmin
	// DeadLetters backs the admin dead-letter endpoints. nil (no data platform configured):
	// an empty list, and every redrive is 404 DEAD_LETTER_NOT_FOUND.
	DeadLetters DeadLetters
	// Metrics serves GET /metrics (Prometheus text format). nil: 404 NOT_FOUND.
	Metrics http.Handler
	// SeatFeed pushes seat changes to the seat-map streams (GET .../seats/stream). nil: each
	// stream re-reads the seat map every 500 ms and sends what changed.
	SeatFeed *SeatFeed
	// Registerer receives the HTTP series (requests by route pattern, method and status, and
	// their latency). nil: no HTTP metrics.
	Registerer prometheus.Registerer
	// UserAuth authenticates users (--user-auth jwt). nil (--user-auth none): the userId of a
	// path or body is taken as given.
	UserAuth UserAuthenticator
	// Idempotency keeps the answers to requests that carried an Idempotency-Key.
	Idempotency *idemstore.Store
	// Logger receives one line per request and the causes of 5xx answers. nil: slog.Default().
	Logger *slog.Logger
	// Clock drives the rate limiter and the ranking's default date. nil: app.SystemClock.
	Clock app.Clock
}

// Config holds the HTTP behaviour flags.
type Config struct {
	// AdminToken is the bearer token of the admin endpoints; "" disables them (403 ADMIN_DISABLED).
	AdminToken string
	// UserRateLimit is the sustained rate of token issues and holds per user and second, with
	// a burst of twice as many; 0 turns the limit off.
	UserRateLimit float64
	// RequestTimeout bounds the work of one request; past it the answer is 503. 0: no bound.
	RequestTimeout time.Duration
	// Location is the --timezone: the ranking's default date is today there. nil: UTC.
	Location *time.Location
}

// server holds what the handlers share.
type server struct {
	deps    Deps
	cfg     Config
	log     *slog.Logger
	clock   app.Clock
	limiter *userLimiter
	idem    *idemstore.Store
	routes  []route
	httpm   *httpMetrics // nil: no HTTP metrics
	// seatFeed serves the seat-map streams: Deps.SeatFeed, or one that polls the read model.
	seatFeed *SeatFeed
}

// route is one registered method and path pattern (Fiber syntax, ":name" parameters).
type route struct {
	method, pattern string
}

// New builds the Fiber app of the contract. It panics when a required dependency is missing,
// which is a wiring mistake found at start-up, not something a request can cause.
func New(deps Deps, cfg Config) *fiber.App {
	if deps.Commands == nil || deps.Queries == nil || deps.Idempotency == nil {
		panic("api.New: Deps.Commands, Deps.Queries and Deps.Idempotency are required")
	}
	s := &server{deps: deps, cfg: cfg, log: deps.Logger, clock: deps.Clock, idem: deps.Idempotency}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.clock == nil {
		s.clock = app.SystemClock{}
	}
	if s.cfg.Location == nil {
		s.cfg.Location = time.UTC
	}
	s.seatFeed = deps.SeatFeed
	if s.seatFeed == nil {
		s.seatFeed = newPollingSeatFeed()
	}
	if cfg.UserRateLimit > 0 {
		s.limiter = newUserLimiter(cfg.UserRateLimit, maxLimitedUsers)
	}

	fa := fiber.New(fiber.Config{
		BodyLimit:    BodyLimit,
		ErrorHandler: s.errorHandler,
		// Handlers keep strings from requests (IDs go into events and maps); without
		// Immutable they would alias fasthttp's reused buffers.
		Immutable:             true,
		CaseSensitive:         true,
		DisableStartupMessage: true,
		ReadTimeout:           30 * time.Second,
		WriteTimeout:          30 * time.Second,
		IdleTimeout:           2 * time.Minute,
	})
	// A seat-map stream takes its connection over from fasthttp and closes it itself.
	fa.Server().KeepHijackedConns = true
	s.useHTTPMetrics(fa)
	fa.Use(s.middleware)
	s.register(fa)
	s.guardUnknownMethods(fa)
	return fa
}

// register adds every route of the contract. openapi_test.go checks this table against
// openapi.yaml in both directions.
func (s *server) register(fa *fiber.App) {
	const v1 = "/api/v1"
	s.add(fa, fiber.MethodGet, "/healthz", s.healthz)
	s.add(fa, fiber.MethodGet, "/readyz", s.readyz)
	s.add(fa, fiber.MethodGet, "/metrics", s.metrics())
	s.add(fa, fiber.MethodGet, "/openapi.yaml", s.openapi)
	for _, r := range web.Routes() { // the browser page and its assets
		s.add(fa, fiber.MethodGet, r.Path, r.Handler)
	}

	s.add(fa, fiber.MethodPost, v1+"/admin/concerts", s.admin, s.createConcert)
	s.add(fa, fiber.MethodGet, v1+"/concerts", s.listConcerts)
	s.add(fa, fiber.MethodGet, v1+"/concerts/:concertId/dates", s.listDates)
	s.add(fa, fiber.MethodGet, v1+"/concerts/:concertId/dates/:dateId/seats", s.listSeats)
	s.add(fa, fiber.MethodGet, v1+"/concerts/:concertId/dates/:dateId/seats/stream", s.seatStream)

	s.add(fa, fiber.MethodPost, v1+"/queue/tokens", s.user, s.issueToken)
	s.add(fa, fiber.MethodGet, v1+"/queue/tokens/current", s.currentToken)

	s.add(fa, fiber.MethodGet, v1+"/users/:userId/points", s.user, s.points)
	s.add(fa, fiber.MethodPost, v1+"/users/:userId/points/charge", s.user, s.charge)
	s.add(fa, fiber.MethodGet, v1+"/users/:userId/points/history", s.user, s.history)
	s.add(fa, fiber.MethodGet, v1+"/users/:userId/reservations", s.user, s.userReservations)

	s.add(fa, fiber.MethodPost, v1+"/reservations", s.user, s.hold)
	s.add(fa, fiber.MethodGet, v1+"/reservations/:reservationId", s.user, s.reservation)
	s.add(fa, fiber.MethodDelete, v1+"/reservations/:reservationId", s.user, s.cancel)

	s.add(fa, fiber.MethodPost, v1+"/payments", s.user, s.pay)
	s.add(fa, fiber.MethodGet, v1+"/payments/:paymentId", s.user, s.payment)
	s.add(fa, fiber.MethodPost, v1+"/payments/:paymentId/refund", s.admin, s.refund)

	s.add(fa, fiber.MethodGet, v1+"/rankings/daily", s.ranking)

	s.add(fa, fiber.MethodGet, v1+"/admin/dead-letters", s.admin, s.listDeadLetters)
	s.add(fa, fiber.MethodPost, v1+"/admin/dead-letters/:id/redrive", s.admin, s.redrive)
	s.add(fa, fiber.MethodGet, v1+"/admin/projections", s.admin, s.listProjections)
	s.add(fa, fiber.MethodPost, v1+"/admin/projections/:name/rebuild", s.admin, s.rebuild)
}

// add registers one route and remembers its pattern for logs, idempotency scopes and the
// unknown-method guard.
func (s *server) add(fa *fiber.App, method, pattern string, handlers ...fiber.Handler) {
	s.routes = append(s.routes, route{method: method, pattern: pattern})
	mark := func(c *fiber.Ctx) error {
		c.Locals(localRoute, pattern)
		return c.Next()
	}
	fa.Add(method, pattern, append([]fiber.Handler{mark}, handlers...)...)
	if method == fiber.MethodGet {
		// HEAD is GET without the body (fasthttp drops it); the spec promises it on every GET.
		fa.Add(fiber.MethodHead, pattern, append([]fiber.Handler{mark}, handlers...)...)
	}
}

func (s *server) metrics() fiber.Handler {
	if s.deps.Metrics == nil {
		return func(*fiber.Ctx) error { return fiber.ErrNotFound }
	}
	return adaptor.HTTPHandler(s.deps.Metrics)
}

// errorHandler answers every error that reaches Fiber. Handler errors arrive here through
// middleware (which logs the request); errors fasthttp raises before routing (a body over the
// limit, an unreadable request) arrive directly and are logged here.
func (s *server) errorHandler(c *fiber.Ctx, err error) error {
	direct := c.Locals(localRequestID) == nil
	if direct {
		s.assignRequestID(c)
	}
	s.writeProblem(c, err)
	if direct {
		s.logRequest(c, time.Time{})
		s.httpm.observeUnrouted(c)
	}
	return nil
}
