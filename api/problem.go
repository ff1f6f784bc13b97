package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/app"
	"github.com/booking-engine/booking/eventstore"
	"github.com/booking-engine/booking/projections"
	"github.com/booking-engine/booking/relay"
)

// ProblemContentType is the media type of every error answer (RFC 9457).
const ProblemContentType = "application/problem+json"

// Problem is an RFC 9457 problem document. Code is the stable, machine-readable part of the
// contract; Title and Detail are for humans and may change.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
	Code   string `json:"code"`
	// UnavailableSeats names, for SEAT_UNAVAILABLE of a hold, the seats that were taken.
	UnavailableSeats []int `json:"unavailableSeats,omitempty"`
}

// Problem codes. The ones named in the external contract must never change; the others cover
// cases the contract leaves open and are documented in openapi.yaml.
const (
	CodeInvalidRequest            = "INVALID_REQUEST"
	CodeValidationFailed          = "VALIDATION_FAILED"
	CodeInvalidAmount             = "INVALID_AMOUNT"
	CodeInvalidDate               = "INVALID_DATE"
	CodeInvalidIdempotencyKey     = "INVALID_IDEMPOTENCY_KEY"
	CodeBodyTooLarge              = "BODY_TOO_LARGE"
	CodeRebuildRunning            = "REBUILD_RUNNING"
	CodeNotFound                  = "NOT_FOUND"
	CodeMethodNotAllowed          = "METHOD_NOT_ALLOWED"
	CodeUnauthenticated           = "UNAUTHENTICATED"
	CodeUnauthorized              = "UNAUTHORIZED"
	CodeAdminDisabled             = "ADMIN_DISABLED"
	CodeForbidden                 = "FORBIDDEN"
	CodeTokenInvalid              = "TOKEN_INVALID"
	CodeTokenExpired              = "TOKEN_EXPIRED"
	CodeTokenNotActive            = "TOKEN_NOT_ACTIVE"
	CodeTokenStillValid           = "TOKEN_STILL_VALID"
	CodeConcertExists             = "CONCERT_EXISTS"
	CodeConcertNotFound           = "CONCERT_NOT_FOUND"
	CodeDateNotFound              = "DATE_NOT_FOUND"
	CodeSeatNotFound              = "SEAT_NOT_FOUND"
	CodeSeatUnavailable           = "SEAT_UNAVAILABLE"
	CodeSeatLimitReached          = "SEAT_LIMIT_REACHED"
	CodeReservationExists         = "RESERVATION_EXISTS"
	CodeReservationNotFound       = "RESERVATION_NOT_FOUND"
	CodeReservationNotPayable     = "RESERVATION_NOT_PAYABLE"
	CodeReservationNotCancellable = "RESERVATION_NOT_CANCELLABLE"
	CodePaymentNotFound           = "PAYMENT_NOT_FOUND"
	CodePaymentNotRefundable      = "PAYMENT_NOT_REFUNDABLE"
	CodeDeadLetterNotFound        = "DEAD_LETTER_NOT_FOUND"
	CodeInsufficientPoints        = "INSUFFICIENT_POINTS"
	CodeIdempotencyKeyReused      = "IDEMPOTENCY_KEY_REUSED"
	CodeRateLimited               = "RATE_LIMITED"
	CodeRequestTimeout            = "REQUEST_TIMEOUT"
	CodeHeadersTooLarge           = "HEADERS_TOO_LARGE"
	CodeServiceUnavailable        = "SERVICE_UNAVAILABLE"
	CodeInternal                  = "INTERNAL"
)

// ErrNotFound is what a DeadLetters or Projections implementation may return for an unknown
// dead letter or projection (projections.ErrNotFound is accepted too): 404, with the code of
// the endpoint (DEAD_LETTER_NOT_FOUND, or NOT_FOUND for a projection).
var ErrNotFound = errors.New("api: not found")

// apiError is an error the API raises itself, already knowing its status and code.
type apiError struct {
	status int
	code   string
	detail string
	// retryAfter, when positive, is sent as Retry-After (rounded up to whole seconds).
	retryAfter time.Duration
}

func (e *apiError) Error() string { return e.code + ": " + e.detail }

func newError(status int, code, format string, a ...any) *apiError {
	return &apiError{status: status, code: code, detail: fmt.Sprintf(format, a...)}
}

func invalidRequest(format string, a ...any) error {
	return newError(fiber.StatusBadRequest, CodeInvalidRequest, format, a...)
}

func validationFailed(format string, a ...any) error {
	return newError(fiber.StatusBadRequest, CodeValidationFailed, format, a...)
}

func forbidden(format string, a ...any) error {
	return newError(fiber.StatusForbidden, CodeForbidden, format, a...)
}

// refusalProblems maps the domain's refusals (aggregates.IsRefusal) to problems. The detail is
// fixed text: the wrapped message may name streams or subjects, which are internals.
// aggregates.ErrInvalid is not here: its own message is the detail (see validationDetail).
var refusalProblems = []struct {
	err    error
	status int
	code   string
	detail string
}{
	{aggregates.ErrInvalidAmount, 400, CodeInvalidAmount, "amount must be an integer from 1 to 10000000"},
	{aggregates.ErrConcertExists, 409, CodeConcertExists, "a concert with this concertId already exists"},
	{aggregates.ErrConcertNotFound, 404, CodeConcertNotFound, "no such concert"},
	{aggregates.ErrDateNotFound, 404, CodeDateNotFound, "no such date of this concert"},
	{aggregates.ErrSeatNotFound, 404, CodeSeatNotFound, "no such seat on this date"},
	{aggregates.ErrSeatUnavailable, 409, CodeSeatUnavailable, "the seat is not available"},
	{aggregates.ErrSeatLimitReached, 409, CodeSeatLimitReached, "the user would hold or own more seats of this date than allowed (--max-seats-per-user)"},
	// A seat no longer held by the reservation at hand: for the client the seat is gone.
	{aggregates.ErrSeatNotHeld, 409, CodeSeatUnavailable, "the seat is no longer held by this reservation"},
	{aggregates.ErrReservationExists, 409, CodeReservationExists, "the reservation already exists"},
	{aggregates.ErrReservationNotFound, 404, CodeReservationNotFound, "no such reservation"},
	{aggregates.ErrReservationNotPayable, 409, CodeReservationNotPayable, "the reservation cannot be paid (expired, cancelled or already confirmed)"},
	{aggregates.ErrReservationNotCancellable, 409, CodeReservationNotCancellable, "only a HELD reservation can be cancelled"},
	{aggregates.ErrForbidden, 403, CodeForbidden, "the resource belongs to another user"},
	{aggregates.ErrPaymentNotFound, 404, CodePaymentNotFound, "no such payment"},
	{aggregates.ErrPaymentNotRefundable, 409, CodePaymentNotRefundable, "only a COMPLETED payment can be refunded"},
	{aggregates.ErrInsufficientPoints, 409, CodeInsufficientPoints, "the balance is lower than the price"},
	{aggregates.ErrTokenStillValid, 409, CodeTokenStillValid, "the user already holds a valid queue token"},
}

// errorProblems maps the other errors the layers below return on purpose (the queue token's,
// the user authentication's, the admin collaborators') to problems, most specific first.
var errorProblems = []struct {
	err    error
	status int
	code   string
	detail string
	// retryAfter is sent with a 503, which every 503 answer carries.
	retryAfter time.Duration
}{
	{app.ErrTokenInvalid, 401, CodeTokenInvalid, "the queue token is missing, malformed or forged", 0},
	{app.ErrTokenExpired, 401, CodeTokenExpired, "the queue token expired or was revoked", 0},
	{app.ErrTokenNotActive, 403, CodeTokenNotActive, "the queue token is still waiting", 0},
	{app.ErrKeyReused, 422, CodeIdempotencyKeyReused, "this Idempotency-Key was used for another request", 0},
	{ErrUnauthenticated, 401, CodeUnauthenticated, "a valid Authorization: Bearer <JWT> is required", 0},
	{projections.ErrRebuildRunning, 409, CodeRebuildRunning, "a rebuild of this projection is already running", 0},
	{relay.ErrDeadLetterNotFound, 404, CodeDeadLetterNotFound, "no such dead letter", 0},
	// A dead letter of an earlier run, with no data platform configured now to send it to.
	{relay.ErrDisabled, 503, CodeServiceUnavailable, "no data platform is configured (--data-platform-url); the dead letter stays on the list", time.Second},
	{relay.ErrClosed, 503, CodeServiceUnavailable, "the data-platform relay is shutting down; retry later", time.Second},
	{ErrNotFound, 404, CodeNotFound, "not found", 0},
	{projections.ErrNotFound, 404, CodeNotFound, "not found", 0},
}

// problemFor turns any error into the problem to answer with. internal reports an error that
// is not the client's doing and that the caller must log; its text never reaches the client.
func problemFor(err error) (p Problem, retryAfter time.Duration, internal bool) {
	var ae *apiError
	var fe *fiber.Error
	switch {
	case errors.As(err, &ae):
		return makeProblem(ae.status, ae.code, ae.detail), ae.retryAfter, false
	case aggregates.IsRefusal(err):
		return refusalProblem(err)
	case errors.Is(err, eventstore.ErrUnavailable):
		return makeProblem(503, CodeServiceUnavailable, "the event store cannot be reached; retry later"), time.Second, true
	case errors.Is(err, context.DeadlineExceeded):
		return makeProblem(503, CodeServiceUnavailable, "the request did not complete within the request timeout; retry later"), time.Second, true
	case errors.Is(err, context.Canceled):
		return makeProblem(503, CodeServiceUnavailable, "the request was cancelled"), time.Second, false
	case errors.Is(err, eventstore.ErrConcurrency):
		// Optimistic-concurrency retries ran out: nothing was written, so a retry is safe.
		return makeProblem(503, CodeServiceUnavailable, "too many concurrent changes to the same resource; retry"), time.Second, true
	case errors.As(err, &fe):
		return fiberProblem(fe), 0, fe.Code >= 500
	}
	for _, d := range errorProblems {
		if errors.Is(err, d.err) {
			return makeProblem(d.status, d.code, d.detail), d.retryAfter, false
		}
	}
	return makeProblem(500, CodeInternal, "internal error"), 0, true
}

// refusalProblem answers a domain refusal: always the client's doing, never retried by
// waiting. A refusal missing from refusalProblems is a bug of this package (a test lists them
// all), so it is reported as internal rather than guessed at.
func refusalProblem(err error) (p Problem, retryAfter time.Duration, internal bool) {
	if errors.Is(err, aggregates.ErrInvalid) {
		// Validation messages of the aggregates are written for clients.
		return makeProblem(400, CodeValidationFailed, validationDetail(err)), 0, false
	}
	for _, d := range refusalProblems {
		if errors.Is(err, d.err) {
			p := makeProblem(d.status, d.code, d.detail)
			var u *aggregates.UnavailableSeatsError
			if errors.As(err, &u) {
				p.UnavailableSeats = u.SeatNos
				if len(u.SeatNos) > 1 {
					p.Detail = "some of the seats are not available; nothing was held"
				}
			}
			return p, 0, false
		}
	}
	return makeProblem(500, CodeInternal, "internal error"), 0, true
}

// validationDetail keeps the client-facing part of an aggregates.ErrInvalid message: the
// text after "invalid input: " (what was wrong), without the layers' context prefixes.
func validationDetail(err error) string {
	msg := err.Error()
	marker := aggregates.ErrInvalid.Error() + ": "
	if i := strings.LastIndex(msg, marker); i >= 0 {
		return msg[i+len(marker):]
	}
	return "the request is not valid"
}

// fiberProblem maps the errors Fiber and fasthttp raise before a handler runs.
func fiberProblem(fe *fiber.Error) Problem {
	switch fe.Code {
	case fiber.StatusNotFound:
		return makeProblem(404, CodeNotFound, "no such route")
	case fiber.StatusMethodNotAllowed:
		return makeProblem(405, CodeMethodNotAllowed, "the route does not accept this method (see the Allow header)")
	case fiber.StatusRequestEntityTooLarge:
		return makeProblem(413, CodeBodyTooLarge, "the request body is larger than 64 KiB")
	case fiber.StatusRequestTimeout:
		return makeProblem(408, CodeRequestTimeout, "the request was not received in time")
	case fiber.StatusRequestHeaderFieldsTooLarge:
		return makeProblem(431, CodeHeadersTooLarge, "the request headers are too large")
	}
	if fe.Code >= 400 && fe.Code < 500 {
		return makeProblem(fe.Code, CodeInvalidRequest, "the request could not be read")
	}
	return makeProblem(500, CodeInternal, "internal error")
}

func makeProblem(status int, code, detail string) Problem {
	return Problem{
		Type:   "urn:booking:problem:" + strings.ToLower(strings.ReplaceAll(code, "_", "-")),
		Title:  titleOf(code),
		Status: status,
		Detail: detail,
		Code:   code,
	}
}

// titleOf derives a stable human title from a code: SEAT_UNAVAILABLE → "Seat unavailable".
func titleOf(code string) string {
	s := strings.ToLower(strings.ReplaceAll(code, "_", " "))
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}

// writeProblem answers with err as problem+json and logs what the client must not see.
func (s *server) writeProblem(c *fiber.Ctx, err error) {
	p, retryAfter, internal := problemFor(err)
	if internal {
		level := slog.LevelError
		if p.Status == fiber.StatusServiceUnavailable {
			level = slog.LevelWarn
		}
		s.log.Log(c.UserContext(), level, "request failed",
			"request_id", requestIDOf(c), "method", c.Method(), "route", routeOf(c), "error", err.Error())
	}
	if p.Status == fiber.StatusInternalServerError {
		p.Detail = "internal error; request id " + requestIDOf(c)
	}
	switch p.Code {
	case CodeUnauthenticated:
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="booking"`)
	case CodeUnauthorized:
		c.Set(fiber.HeaderWWWAuthenticate, `Bearer realm="booking-admin"`)
	}
	if retryAfter > 0 {
		c.Set(fiber.HeaderRetryAfter, strconv.FormatInt(retryAfterSeconds(retryAfter), 10))
	}
	body, mErr := json.Marshal(p)
	if mErr != nil { // cannot happen: Problem holds strings and an int
		body = []byte(`{"type":"urn:booking:problem:internal","title":"Internal","status":500,"detail":"internal error","code":"INTERNAL"}`)
		p.Status = fiber.StatusInternalServerError
	}
	c.Status(p.Status)
	c.Set(fiber.HeaderContentType, ProblemContentType)
	_ = c.Send(body) // Send only stores the body; it cannot fail
}

// retryAfterSeconds rounds up to whole seconds, at least 1 (RFC 9110 delay-seconds).
func retryAfterSeconds(d time.Duration) int64 {
	secs := int64((d + time.Second - 1) / time.Second)
	if secs < 1 {
		secs = 1
	}
	return secs
}

// notFoundAs makes a bare "not found" from a read model precise for the endpoint at hand, so
// that the client always gets the contract's specific code.
func notFoundAs(err, specific error) error {
	if isNotFound(err) && !errors.Is(err, specific) {
		return fmt.Errorf("%w: %w", specific, err)
	}
	return err
}
