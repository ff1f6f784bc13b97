package api

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/booking-engine/booking/internal/promreg"
)

// UnmatchedRoute is the route label of requests that matched no route (unknown paths, wrong
// or unknown methods, requests rejected before routing), so that clients probing random paths
// cannot grow the number of series.
const UnmatchedRoute = "unmatched"

// Names of the HTTP series.
const (
	MetricHTTPRequests = "booking_http_requests_total"
	MetricHTTPDuration = "booking_http_request_duration_seconds"
)

// httpBuckets span a read served from memory (sub-millisecond) to a request that ran into
// the request timeout (5 s by default).
var httpBuckets = []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// httpMetrics counts and times requests by route pattern, method and status. Labels are
// bounded: the route is a registered pattern or UnmatchedRoute, the method one of the known
// methods or OTHER, and the status an HTTP status code.
type httpMetrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
}

// newHTTPMetrics registers the HTTP series with reg; nil reg: nil metrics (nothing counted).
// A registry that already has them (a second app on one registry) shares them.
func newHTTPMetrics(reg prometheus.Registerer) (*httpMetrics, error) {
	if reg == nil {
		return nil, nil
	}
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricHTTPRequests,
		Help: "HTTP requests answered, by route pattern, method and status code.",
	}, []string{"route", "method", "status"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    MetricHTTPDuration,
		Help:    "Time from a request's arrival at the router to its answer, by route pattern and method.",
		Buckets: httpBuckets,
	}, []string{"route", "method"})
	var err error
	if requests, err = promreg.Shared(reg, requests); err != nil {
		return nil, fmt.Errorf("api: register HTTP metrics: %w", err)
	}
	if duration, err = promreg.Shared(reg, duration); err != nil {
		return nil, fmt.Errorf("api: register HTTP metrics: %w", err)
	}
	return &httpMetrics{requests: requests, duration: duration}, nil
}

// useHTTPMetrics installs the HTTP metrics middleware when Deps.Registerer is set. It must be
// the first middleware: it reads the status after s.middleware has written the answer.
func (s *server) useHTTPMetrics(fa *fiber.App) {
	m, err := newHTTPMetrics(s.deps.Registerer)
	if err != nil {
		// Two different collectors under one name is a wiring mistake found at start-up.
		panic(err.Error())
	}
	if m == nil {
		return
	}
	s.httpm = m
	fa.Use(m.handler)
}

// handler times the rest of the chain and counts its answer.
func (m *httpMetrics) handler(c *fiber.Ctx) error {
	start := time.Now()
	err := c.Next()
	status := c.Response().StatusCode()
	if err != nil {
		// s.middleware answers every error itself; this only guards against a chain without it,
		// where Fiber's error handler would answer after us.
		status = fiber.StatusInternalServerError
		var fe *fiber.Error
		if errors.As(err, &fe) {
			status = fe.Code
		}
	}
	route, method := routeLabel(c), methodLabel(c.Method())
	m.requests.WithLabelValues(route, method, strconv.Itoa(status)).Inc()
	m.duration.WithLabelValues(route, method).Observe(time.Since(start).Seconds())
	return err
}

// observeUnrouted counts a request answered by the error handler without passing the
// middleware (a body over the limit, an unknown method). Its duration is unknown, so the
// histogram does not see it. Safe on a nil receiver (no metrics).
func (m *httpMetrics) observeUnrouted(c *fiber.Ctx) {
	if m == nil {
		return
	}
	m.requests.WithLabelValues(UnmatchedRoute, methodLabel(c.Method()), strconv.Itoa(c.Response().StatusCode())).Inc()
}

// routeLabel is the pattern of the matched route (set by server.add), or UnmatchedRoute.
func routeLabel(c *fiber.Ctx) string {
	if r, ok := c.Locals(localRoute).(string); ok {
		return r
	}
	return UnmatchedRoute
}

// methodLabel keeps the method label to the standard methods: requests with an invented
// method would otherwise each make a series.
func methodLabel(m string) string {
	switch m {
	case fiber.MethodGet, fiber.MethodHead, fiber.MethodPost, fiber.MethodPut, fiber.MethodPatch,
		fiber.MethodDelete, fiber.MethodOptions, fiber.MethodConnect, fiber.MethodTrace:
		return m
	}
	return "OTHER"
}
