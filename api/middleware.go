package api

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"runtime/debug"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/google/uuid"
	"github.com/valyala/fasthttp"
)

// Keys of the per-request values kept in fiber.Ctx locals.
const (
	localRequestID = "booking.requestID"
	localRoute     = "booking.route"
	localSubject   = "booking.subject"
)

// HeaderRequestID carries the request's correlation ID in both directions.
const HeaderRequestID = "X-Request-ID"

// maxRequestIDLen bounds a client's X-Request-ID; longer or odd ones are replaced.
const maxRequestIDLen = 128

// middleware runs around every request: it settles the request ID, bounds the request's
// work by the request timeout, turns a panic into a 500, answers errors (so that the log
// line carries the final status) and logs the request.
func (s *server) middleware(c *fiber.Ctx) (err error) {
	start := time.Now()
	s.assignRequestID(c)
	if s.cfg.RequestTimeout > 0 {
		ctx, cancel := context.WithTimeout(c.UserContext(), s.cfg.RequestTimeout)
		defer cancel()
		c.SetUserContext(ctx)
	}
	defer func() {
		if r := recover(); r != nil {
			s.log.Error("panic in handler", "request_id", requestIDOf(c), "route", routeOf(c),
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			s.writeProblem(c, fmt.Errorf("panic: %v", r))
			err = nil
		}
		s.logRequest(c, start)
	}()
	if err := c.Next(); err != nil {
		s.writeProblem(c, err)
	}
	return nil
}

// assignRequestID takes the client's X-Request-ID when it is 1–128 visible ASCII characters
// and otherwise makes a UUIDv7, and echoes it in the response.
func (s *server) assignRequestID(c *fiber.Ctx) {
	id := c.Get(HeaderRequestID)
	if !validRequestID(id) {
		id = newRequestID()
	}
	c.Locals(localRequestID, id)
	c.Set(HeaderRequestID, id)
}

func validRequestID(id string) bool {
	if id == "" || len(id) > maxRequestIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

func newRequestID() string {
	if id, err := uuid.NewV7(); err == nil {
		return id.String()
	}
	return uuid.NewString()
}

func requestIDOf(c *fiber.Ctx) string {
	id, _ := c.Locals(localRequestID).(string)
	return id
}

// routeOf is the matched route pattern, or "-" for a request that matched none.
func routeOf(c *fiber.Ctx) string {
	if r, ok := c.Locals(localRoute).(string); ok {
		return r
	}
	return "-"
}

// logRequest writes one line per request: debug for successes (they are the bulk under
// load), info for client errors, warn for server errors.
func (s *server) logRequest(c *fiber.Ctx, start time.Time) {
	status := c.Response().StatusCode()
	level := slog.LevelDebug
	switch {
	case status >= 500:
		level = slog.LevelWarn
	case status >= 400:
		level = slog.LevelInfo
	}
	ctx := context.Background()
	if !s.log.Enabled(ctx, level) {
		return
	}
	var dur time.Duration
	if !start.IsZero() {
		dur = time.Since(start)
	}
	s.log.Log(ctx, level, "http request",
		"method", c.Method(), "route", routeOf(c), "status", status,
		"duration", dur, "request_id", requestIDOf(c))
}

// admin admits requests that carry the configured admin token.
func (s *server) admin(c *fiber.Ctx) error {
	if s.cfg.AdminToken == "" {
		return newError(fiber.StatusForbidden, CodeAdminDisabled, "no admin token is configured; admin endpoints are disabled")
	}
	token, ok := bearer(c.Get(fiber.HeaderAuthorization))
	// Comparing digests keeps the comparison constant-time in the token's length as well.
	got, want := sha256.Sum256([]byte(token)), sha256.Sum256([]byte(s.cfg.AdminToken))
	if !ok || subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
		return newError(fiber.StatusUnauthorized, CodeUnauthorized, "a valid Authorization: Bearer <admin token> is required")
	}
	return c.Next()
}

// user authenticates the user of a user-scoped endpoint when --user-auth is jwt. The subject
// is compared with the request's userId later, once the handler knows it.
func (s *server) user(c *fiber.Ctx) error {
	if s.deps.UserAuth == nil {
		return c.Next()
	}
	header := c.Get(fiber.HeaderAuthorization)
	if header == "" {
		return newError(fiber.StatusUnauthorized, CodeUnauthenticated, "Authorization: Bearer <JWT> is required")
	}
	sub, err := s.deps.UserAuth.Authenticate(header)
	if err != nil || sub == "" {
		s.log.Debug("user authentication failed", "request_id", requestIDOf(c), "error", err)
		return newError(fiber.StatusUnauthorized, CodeUnauthenticated, "the bearer token is not valid")
	}
	c.Locals(localSubject, sub)
	return c.Next()
}

// checkUser answers 403 when an authenticated user acts for another user. With
// --user-auth none there is nobody to compare with.
func (s *server) checkUser(c *fiber.Ctx, userID string) error {
	sub, ok := c.Locals(localSubject).(string)
	if ok && sub != userID {
		return forbidden("the authenticated user may not act for user %q", userID)
	}
	return nil
}

// bearer extracts the credentials of an "Authorization: Bearer <x>" header value.
func bearer(header string) (string, bool) {
	scheme, cred, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	cred = strings.TrimSpace(cred)
	return cred, cred != ""
}

// guardUnknownMethods answers requests whose method Fiber does not know (it would send a
// plain-text 400 before any handler runs) with problem+json: 405 when the path has routes,
// 404 otherwise.
func (s *server) guardUnknownMethods(fa *fiber.App) {
	known := map[string]bool{}
	for _, m := range fa.Config().RequestMethods {
		known[m] = true
	}
	srv := fa.Server()
	next := srv.Handler
	srv.Handler = func(rc *fasthttp.RequestCtx) {
		if known[string(rc.Method())] {
			next(rc)
			return
		}
		var allow []string
		for _, r := range s.routes {
			if matchPattern(r.pattern, string(rc.Path())) {
				allow = append(allow, r.method)
				if r.method == fiber.MethodGet { // Fiber answers HEAD on every GET route
					allow = append(allow, fiber.MethodHead)
				}
			}
		}
		err := fiber.ErrNotFound
		if len(allow) > 0 {
			err = fiber.ErrMethodNotAllowed
			rc.Response.Header.Set(fiber.HeaderAllow, strings.Join(allow, ", "))
		}
		c := fa.AcquireCtx(rc)
		defer fa.ReleaseCtx(c)
		_ = s.errorHandler(c, err) // errorHandler always answers and returns nil
	}
}

// matchPattern reports whether path matches a route pattern whose ":name" segments match any
// one non-empty segment. A trailing slash is ignored, as in Fiber's non-strict routing.
func matchPattern(pattern, path string) bool {
	if len(path) > 1 {
		path = strings.TrimRight(path, "/")
	}
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return false
	}
	for i := range ps {
		if strings.HasPrefix(ps[i], ":") {
			if xs[i] == "" {
				return false
			}
			continue
		}
		if ps[i] != xs[i] {
			return false
		}
	}
	return true
}
