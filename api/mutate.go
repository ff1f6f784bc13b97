package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"

	"github.com/gofiber/fiber/v2"

	"github.com/booking-engine/booking/api/idemstore"
	"github.com/booking-engine/booking/app"
)

// HeaderIdempotencyKey is the header of a client's idempotency key.
const HeaderIdempotencyKey = "Idempotency-Key"

// HeaderIdempotentReplay marks an answer that was replayed from the idempotency store.
const HeaderIdempotentReplay = "Idempotent-Replayed"

// HeaderQueueToken carries the waiting-queue token.
const HeaderQueueToken = "Queue-Token"

// maxIdempotencyKeyLen bounds an Idempotency-Key (contract: 1–128 printable ASCII).
const maxIdempotencyKeyLen = 128

// mutation describes a state-changing POST whose body was decoded and validated.
type mutation struct {
	// user is the request's userId ("admin" for admin endpoints): compared with the
	// authenticated user, the key of the rate limit, and part of the idempotency scope.
	user string
	// admin marks an admin endpoint (authenticated by its middleware, never rate limited).
	admin bool
	// rateLimited applies the per-user limit (token issue and holds).
	rateLimited bool
	// token requires an ACTIVE queue token that belongs to user.
	token bool
}

// result is what a command produced: a status and a JSON-able body.
type result struct {
	status int
	body   any
}

// mutate runs a state-changing POST through the checks of the contract, in this order:
//
//  1. the Idempotency-Key is well formed (else 400);
//  2. the authenticated user (--user-auth jwt) is the request's user (else 403);
//  3. the per-user rate limit (else 429) — before the idempotency lock, so a flood never
//     queues up on it;
//  4. idempotency: the key is locked in this process (a repeat here waits for the first) and
//     looked up; a stored answer is replayed (same request) or refused (422, another
//     request) — before the queue-token check, so a client whose payment revoked its token
//     still gets the original 201 on retry. Nothing is written before the command: a repeat
//     running on another instance is settled by the IDs the command derives from the key
//     (app.Meta.RequestKey). An unreadable store is 503, never a run without protection;
//  5. the queue token is ACTIVE (401/403) and belongs to the request's user (403);
//  6. the command runs; its answer is kept for the key when it is below 500, so that a
//     5xx stays retryable, while checks 1–5 keep nothing: they changed nothing. The answer
//     is written lazily, after the response, with the answers of other requests.
func (s *server) mutate(c *fiber.Ctx, m mutation, run func(ctx context.Context, meta app.Meta) (result, error)) error {
	key := c.Get(HeaderIdempotencyKey)
	if key != "" && !validIdempotencyKey(key) {
		return newError(fiber.StatusBadRequest, CodeInvalidIdempotencyKey, "Idempotency-Key must be 1-%d printable ASCII characters", maxIdempotencyKeyLen)
	}
	if !m.admin {
		if err := s.checkUser(c, m.user); err != nil {
			return err
		}
	}
	if m.rateLimited && s.limiter != nil {
		if ok, wait := s.limiter.allow(m.user, s.clock.Now()); !ok {
			return &apiError{status: fiber.StatusTooManyRequests, code: CodeRateLimited,
				detail: "too many requests for this user; retry later", retryAfter: wait}
		}
	}
	ctx := c.UserContext()
	var claim *idemstore.Claim // the key's claim while the command runs
	var fp []byte
	meta := app.Meta{CorrelationID: requestIDOf(c)}
	if key != "" {
		scope := c.Method() + " " + routeOf(c) + "\x00" + m.user + "\x00" + key
		// The same scope always names the same effect: the application derives the IDs it
		// creates from it, so a retry whose first answer was lost resumes that effect.
		sum := sha256.Sum256([]byte(scope))
		meta.RequestKey = hex.EncodeToString(sum[:])
		fp = fingerprint(c.Path(), c.Request().Body())
		cl, prev, found, err := s.idem.Begin(ctx, scope)
		if err != nil {
			return err
		}
		defer cl.Done()
		if found {
			if !sameRequest(prev.Fingerprint, fp, c.Path(), c.Request().Body()) {
				return newError(fiber.StatusUnprocessableEntity, CodeIdempotencyKeyReused,
					"this Idempotency-Key was already used with a different request")
			}
			c.Set(HeaderIdempotentReplay, "true")
			c.Set(fiber.HeaderContentType, prev.ContentType)
			return c.Status(prev.Status).Send(prev.Body)
		}
		claim = cl
	}
	if m.token {
		tokenUser, err := s.checkToken(c)
		switch {
		case errors.Is(err, app.ErrTokenExpired) && meta.RequestKey != "":
			// This very request may have used the token up (a payment revokes it) before its
			// answer was lost: the command reports what it did, or fails as the token would.
			meta.ReplayOnly = true
		case err != nil:
			return err
		case tokenUser != m.user:
			return forbidden("the queue token belongs to another user")
		}
	}
	res, err := run(ctx, meta)
	if err != nil {
		s.writeProblem(c, err)
	} else if err := writeJSON(c, res.status, res.body); err != nil {
		s.writeProblem(c, err)
	}
	status := c.Response().StatusCode()
	if claim != nil && status < fiber.StatusInternalServerError {
		answer := idemstore.Answer{
			Fingerprint: fp,
			Status:      status,
			ContentType: string(c.Response().Header.ContentType()),
			Body:        bytes.Clone(c.Response().Body()),
		}
		// Written after the response, with others: a repeat on another instance meanwhile
		// runs under the same RequestKey and finds the effect in the log.
		claim.Keep(answer)
	}
	return nil
}

// checkToken admits a request with an ACTIVE queue token and returns the token's user.
func (s *server) checkToken(c *fiber.Ctx) (string, error) {
	token := c.Get(HeaderQueueToken)
	if token == "" {
		return "", newError(fiber.StatusUnauthorized, CodeTokenInvalid, "the Queue-Token header is required")
	}
	return s.deps.Commands.CheckToken(c.UserContext(), token)
}

func validIdempotencyKey(key string) bool {
	if len(key) == 0 || len(key) > maxIdempotencyKeyLen {
		return false
	}
	for i := 0; i < len(key); i++ {
		if key[i] < 0x20 || key[i] > 0x7e {
			return false
		}
	}
	return true
}

// writeJSON answers with a JSON body.
func writeJSON(c *fiber.Ctx, status int, v any) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	c.Status(status)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Send(body)
}
