package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/app"
	"github.com/booking-engine/booking/projections"
	"github.com/booking-engine/booking/relay"
)

// adminUser stands for the user in the idempotency scope of admin endpoints, which act for
// nobody in particular. A user may be called "admin" too, but the scope also holds the route,
// and no admin route is a user route.
const adminUser = "admin"

// ---- operations ----

func (s *server) healthz(c *fiber.Ctx) error {
	return writeJSON(c, fiber.StatusOK, fiber.Map{"status": "ok"})
}

func (s *server) readyz(c *fiber.Ctx) error {
	if s.deps.Ready != nil && !s.deps.Ready() {
		return &apiError{status: fiber.StatusServiceUnavailable, code: CodeServiceUnavailable, retryAfter: time.Second,
			detail: "the event store is not reachable or the read models have not caught up yet"}
	}
	return writeJSON(c, fiber.StatusOK, fiber.Map{"status": "ready"})
}

func (s *server) openapi(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, "application/yaml")
	return c.Status(fiber.StatusOK).Send(openAPISpec)
}

// ---- catalog ----

// createConcert: POST /api/v1/admin/concerts.
func (s *server) createConcert(c *fiber.Ctx) error {
	nc, err := decodeNewConcert(c.Request().Body())
	if err != nil {
		return err
	}
	return s.mutate(c, mutation{user: adminUser, admin: true}, func(ctx context.Context, meta app.Meta) (result, error) {
		created, err := s.deps.Commands.CreateConcert(ctx, meta, nc)
		if err != nil {
			return result{}, err
		}
		return result{fiber.StatusCreated, s.concertCreatedJSON(created)}, nil
	})
}

type createdDateJSON struct {
	DateID        string    `json:"dateId"`
	StartsAt      time.Time `json:"startsAt"`
	TotalSeats    int       `json:"totalSeats"`
	SalesOpenedAt time.Time `json:"salesOpenedAt"`
}

type concertCreatedResponse struct {
	ConcertID string            `json:"concertId"`
	Title     string            `json:"title"`
	Dates     []createdDateJSON `json:"dates"`
}

func (s *server) concertCreatedJSON(e aggregates.ConcertCreated) concertCreatedResponse {
	out := concertCreatedResponse{ConcertID: e.ConcertID, Title: e.Title, Dates: make([]createdDateJSON, 0, len(e.Dates))}
	for _, d := range e.Dates {
		out.Dates = append(out.Dates, createdDateJSON{DateID: d.DateID, StartsAt: s.at(d.StartsAt), TotalSeats: d.SeatCount, SalesOpenedAt: s.at(e.SalesOpenedAt)})
	}
	return out
}

func (s *server) listConcerts(c *fiber.Ctx) error {
	list, err := s.deps.Queries.Concerts(c.UserContext())
	if err != nil {
		return err
	}
	return writeJSON(c, fiber.StatusOK, fiber.Map{"concerts": nonNil(list)})
}

func (s *server) listDates(c *fiber.Ctx) error {
	concertID, err := pathID(c, "concertId")
	if err != nil {
		return err
	}
	list, err := s.deps.Queries.Dates(c.UserContext(), concertID)
	if err != nil {
		return notFoundAs(err, aggregates.ErrConcertNotFound)
	}
	return writeJSON(c, fiber.StatusOK, fiber.Map{"dates": localized(list, s.dateJSON)})
}

func (s *server) listSeats(c *fiber.Ctx) error {
	concertID, err := pathID(c, "concertId")
	if err != nil {
		return err
	}
	dateID, err := pathID(c, "dateId")
	if err != nil {
		return err
	}
	// The read side may keep seat maps ready-encoded: at tens of thousands of reads a second,
	// encoding 500 seats per request would be most of the work.
	if enc, ok := s.deps.Queries.(projections.SeatMapEncoder); ok {
		// Browsers accept gzip, and a seat map shrinks about tenfold: ready-compressed bytes
		// spare the kernel copies and the client's download that dominate a read otherwise.
		gzipped := c.Request().Header.HasAcceptEncoding("gzip")
		get := enc.SeatsJSON
		if gzipped {
			get = enc.SeatsJSONGzip
		}
		body, err := get(c.UserContext(), concertID, dateID)
		if err != nil {
			return err
		}
		c.Vary(fiber.HeaderAcceptEncoding)
		if gzipped {
			c.Set(fiber.HeaderContentEncoding, "gzip")
		}
		c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
		return c.Status(fiber.StatusOK).Send(body)
	}
	list, err := s.deps.Queries.Seats(c.UserContext(), concertID, dateID)
	if err != nil {
		return err
	}
	return writeJSON(c, fiber.StatusOK, fiber.Map{"seats": nonNil(list)})
}

// ---- waiting queue ----

// issueToken: POST /api/v1/queue/tokens → 201 for a new token, 200 for the user's valid one.
func (s *server) issueToken(c *fiber.Ctx) error {
	obj, err := decodeObject(c.Request().Body(), "", "userId")
	if err != nil {
		return err
	}
	userID, err := obj.requiredID("userId")
	if err != nil {
		return err
	}
	return s.mutate(c, mutation{user: userID, rateLimited: true}, func(ctx context.Context, meta app.Meta) (result, error) {
		tok, created, err := s.deps.Commands.IssueToken(ctx, meta, userID)
		if err != nil {
			return result{}, err
		}
		status := fiber.StatusOK
		if created {
			status = fiber.StatusCreated
		}
		return result{status, s.tokenJSON(tok)}, nil
	})
}

func (s *server) currentToken(c *fiber.Ctx) error {
	token := c.Get(HeaderQueueToken)
	if token == "" {
		return newError(fiber.StatusUnauthorized, CodeTokenInvalid, "the Queue-Token header is required")
	}
	tok, err := s.deps.Commands.TokenStatus(c.UserContext(), token)
	if err != nil {
		return err
	}
	return writeJSON(c, fiber.StatusOK, s.tokenJSON(tok))
}

// ---- points ----

// pathUser reads the path's userId and checks it against the authenticated user.
func (s *server) pathUser(c *fiber.Ctx) (string, error) {
	userID, err := pathID(c, "userId")
	if err != nil {
		return "", err
	}
	return userID, s.checkUser(c, userID)
}

func (s *server) points(c *fiber.Ctx) error {
	userID, err := s.pathUser(c)
	if err != nil {
		return err
	}
	w, err := s.deps.Queries.Wallet(c.UserContext(), userID)
	if isNotFound(err) { // an unknown user has balance 0
		w, err = projections.WalletView{UserID: userID}, nil
	}
	if err != nil {
		return err
	}
	return writeJSON(c, fiber.StatusOK, wireWallet(w))
}

// charge: POST /api/v1/users/{userId}/points/charge.
func (s *server) charge(c *fiber.Ctx) error {
	userID, err := pathID(c, "userId")
	if err != nil {
		return err
	}
	obj, err := decodeObject(c.Request().Body(), "", "amount")
	if err != nil {
		return err
	}
	amount, err := obj.requiredInt("amount", aggregates.MinCharge, aggregates.MaxCharge)
	if err != nil { // any wrong amount, missing or mistyped included, is INVALID_AMOUNT
		return newError(fiber.StatusBadRequest, CodeInvalidAmount, "amount must be an integer from %d to %d", aggregates.MinCharge, aggregates.MaxCharge)
	}
	return s.mutate(c, mutation{user: userID}, func(ctx context.Context, meta app.Meta) (result, error) {
		w, err := s.deps.Commands.Charge(ctx, meta, userID, amount)
		if err != nil {
			return result{}, err
		}
		return result{fiber.StatusOK, wireWallet(w)}, nil
	})
}

func (s *server) history(c *fiber.Ctx) error {
	userID, err := s.pathUser(c)
	if err != nil {
		return err
	}
	entries, err := s.deps.Queries.History(c.UserContext(), userID)
	if isNotFound(err) {
		entries, err = nil, nil
	}
	if err != nil {
		return err
	}
	return writeJSON(c, fiber.StatusOK, fiber.Map{"entries": localized(entries, s.ledgerJSON)})
}

// ---- reservations ----

// hold: POST /api/v1/reservations.
func (s *server) hold(c *fiber.Ctx) error {
	obj, err := decodeObject(c.Request().Body(), "", "userId", "concertId", "dateId", "seatNo", "seatNos")
	if err != nil {
		return err
	}
	var req app.HoldRequest
	if req.UserID, err = obj.requiredID("userId"); err != nil {
		return err
	}
	if req.ConcertID, err = obj.requiredID("concertId"); err != nil {
		return err
	}
	if req.DateID, err = obj.requiredID("dateId"); err != nil {
		return err
	}
	if req.SeatNo, req.SeatNos, err = seatsOfHold(obj); err != nil {
		return err
	}
	return s.mutate(c, mutation{user: req.UserID, rateLimited: true, token: true}, func(ctx context.Context, meta app.Meta) (result, error) {
		r, err := s.deps.Commands.Hold(ctx, meta, req)
		if err != nil {
			return result{}, err
		}
		return result{fiber.StatusCreated, s.reservationJSON(r)}, nil
	})
}

// seatsOfHold reads the seats of a hold: exactly one of seatNo and seatNos (1 to
// aggregates.MaxSeatsPerHold distinct seat numbers), else 400 INVALID_REQUEST. Seats beyond a
// date's count are the command's SEAT_NOT_FOUND, not a malformed request.
func seatsOfHold(obj jsonObject) (int, []int, error) {
	_, many, err := obj.array("seatNos", math.MaxInt32)
	if err != nil {
		return 0, nil, err
	}
	if many == (obj.raw("seatNo") != nil) {
		return 0, nil, invalidRequest("give exactly one of seatNo and seatNos")
	}
	if !many {
		seatNo, err := obj.requiredInt("seatNo", 1, math.MaxInt32)
		return clampInt(seatNo), nil, err
	}
	elems, _, _ := obj.array("seatNos", math.MaxInt32)
	if len(elems) < 1 || len(elems) > aggregates.MaxSeatsPerHold {
		return 0, nil, invalidRequest("seatNos must list 1 to %d seats, not %d", aggregates.MaxSeatsPerHold, len(elems))
	}
	nos := make([]int, len(elems))
	seen := make(map[int]bool, len(elems))
	for i, e := range elems {
		if !isJSONInt(e) {
			return 0, nil, invalidRequest("seatNos[%d] must be an integer", i)
		}
		n, err := strconv.ParseInt(string(e), 10, 64)
		if err != nil || n < 1 || n > math.MaxInt32 {
			return 0, nil, invalidRequest("seatNos[%d] must be an integer from 1 to %d", i, math.MaxInt32)
		}
		if seen[int(n)] {
			return 0, nil, invalidRequest("seatNos lists seat %d twice", n)
		}
		seen[int(n)] = true
		nos[i] = int(n)
	}
	return 0, nos, nil
}

func (s *server) reservation(c *fiber.Ctx) error {
	id, err := pathID(c, "reservationId")
	if err != nil {
		return err
	}
	r, err := s.deps.Queries.Reservation(c.UserContext(), id)
	if err != nil {
		return notFoundAs(err, aggregates.ErrReservationNotFound)
	}
	if err := s.checkUser(c, r.UserID); err != nil {
		return err
	}
	return writeJSON(c, fiber.StatusOK, s.reservationViewJSON(r))
}

// cancel: DELETE /api/v1/reservations/{id}. The queue token names the user; Commands.Cancel
// refuses somebody else's reservation with aggregates.ErrForbidden.
func (s *server) cancel(c *fiber.Ctx) error {
	id, err := pathID(c, "reservationId")
	if err != nil {
		return err
	}
	tokenUser, err := s.checkToken(c)
	if err != nil {
		return err
	}
	if err := s.checkUser(c, tokenUser); err != nil {
		return err
	}
	r, err := s.deps.Commands.Cancel(c.UserContext(), app.Meta{CorrelationID: requestIDOf(c)}, id, tokenUser)
	if err != nil {
		return notFoundAs(err, aggregates.ErrReservationNotFound)
	}
	return writeJSON(c, fiber.StatusOK, s.reservationJSON(r))
}

func (s *server) userReservations(c *fiber.Ctx) error {
	userID, err := s.pathUser(c)
	if err != nil {
		return err
	}
	list, err := s.deps.Queries.UserReservations(c.UserContext(), userID)
	if isNotFound(err) {
		list, err = nil, nil
	}
	if err != nil {
		return err
	}
	return writeJSON(c, fiber.StatusOK, fiber.Map{"reservations": localized(list, s.reservationViewJSON)})
}

// ---- payments ----

// pay: POST /api/v1/payments.
func (s *server) pay(c *fiber.Ctx) error {
	obj, err := decodeObject(c.Request().Body(), "", "reservationId", "userId")
	if err != nil {
		return err
	}
	reservationID, err := obj.requiredID("reservationId")
	if err != nil {
		return err
	}
	userID, err := obj.requiredID("userId")
	if err != nil {
		return err
	}
	return s.mutate(c, mutation{user: userID, token: true}, func(ctx context.Context, meta app.Meta) (result, error) {
		p, err := s.deps.Commands.Pay(ctx, meta, reservationID, userID)
		if err != nil {
			return result{}, notFoundAs(err, aggregates.ErrReservationNotFound)
		}
		return result{fiber.StatusCreated, s.paymentJSON(p)}, nil
	})
}

func (s *server) payment(c *fiber.Ctx) error {
	id, err := pathID(c, "paymentId")
	if err != nil {
		return err
	}
	p, err := s.deps.Queries.Payment(c.UserContext(), id)
	if err != nil {
		return notFoundAs(err, aggregates.ErrPaymentNotFound)
	}
	if err := s.checkUser(c, p.UserID); err != nil {
		return err
	}
	return writeJSON(c, fiber.StatusOK, s.paymentViewJSON(p))
}

// refund: POST /api/v1/payments/{id}/refund (admin).
func (s *server) refund(c *fiber.Ctx) error {
	id, err := pathID(c, "paymentId")
	if err != nil {
		return err
	}
	if err := decodeEmpty(c.Request().Body()); err != nil {
		return err
	}
	return s.mutate(c, mutation{user: adminUser, admin: true}, func(ctx context.Context, meta app.Meta) (result, error) {
		p, err := s.deps.Commands.Refund(ctx, meta, id)
		if err != nil {
			return result{}, notFoundAs(err, aggregates.ErrPaymentNotFound)
		}
		return result{fiber.StatusOK, s.paymentJSON(p)}, nil
	})
}

// ---- ranking ----

type rankingResponse struct {
	Date    string                     `json:"date"`
	Entries []projections.RankingEntry `json:"entries"`
}

func (s *server) ranking(c *fiber.Ctx) error {
	loc := s.cfg.Location
	var day time.Time
	if q := c.Query("date"); q != "" {
		d, err := time.ParseInLocation(time.DateOnly, q, loc)
		if err != nil || d.Format(time.DateOnly) != q {
			return newError(fiber.StatusBadRequest, CodeInvalidDate, "date must be a calendar date YYYY-MM-DD")
		}
		day = d
	} else {
		now := s.clock.Now().In(loc)
		day = time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, loc)
	}
	entries, err := s.deps.Queries.DailyRanking(c.UserContext(), day)
	if err != nil {
		return err
	}
	return writeJSON(c, fiber.StatusOK, rankingResponse{Date: day.Format(time.DateOnly), Entries: localized(entries, s.rankingJSON)})
}

// ---- admin: data platform and projections ----

func (s *server) listDeadLetters(c *fiber.Ctx) error {
	var list []DeadLetter
	if s.deps.DeadLetters != nil {
		var err error
		if list, err = s.deps.DeadLetters.List(c.UserContext()); err != nil {
			return err
		}
	}
	return writeJSON(c, fiber.StatusOK, fiber.Map{"deadLetters": localized(list, s.deadLetterJSON)})
}

func (s *server) redrive(c *fiber.Ctx) error {
	id, err := pathName(c, "id")
	if err != nil {
		return err
	}
	if err := decodeEmpty(c.Request().Body()); err != nil {
		return err
	}
	return s.mutate(c, mutation{user: adminUser, admin: true}, func(ctx context.Context, _ app.Meta) (result, error) {
		if s.deps.DeadLetters == nil {
			return result{}, fmt.Errorf("dead letter %s: %w", id, relay.ErrDeadLetterNotFound)
		}
		if err := s.deps.DeadLetters.Redrive(ctx, id); err != nil {
			return result{}, notFoundAs(err, relay.ErrDeadLetterNotFound)
		}
		return result{fiber.StatusAccepted, fiber.Map{"id": id, "status": "REDRIVING"}}, nil
	})
}

func (s *server) listProjections(c *fiber.Ctx) error {
	var list []projections.Status
	if s.deps.Projections != nil {
		var err error
		if list, err = s.deps.Projections.Status(c.UserContext()); err != nil {
			return err
		}
	}
	return writeJSON(c, fiber.StatusOK, fiber.Map{"projections": nonNil(list)})
}

func (s *server) rebuild(c *fiber.Ctx) error {
	name, err := pathName(c, "name")
	if err != nil {
		return err
	}
	if err := decodeEmpty(c.Request().Body()); err != nil {
		return err
	}
	return s.mutate(c, mutation{user: adminUser, admin: true}, func(ctx context.Context, _ app.Meta) (result, error) {
		if s.deps.Projections == nil {
			return result{}, newError(fiber.StatusNotFound, CodeNotFound, "no such projection")
		}
		if err := s.deps.Projections.Rebuild(ctx, name); err != nil {
			return result{}, err
		}
		return result{fiber.StatusAccepted, fiber.Map{"name": name, "status": "REBUILDING"}}, nil
	})
}

// ---- helpers ----

// pathID reads an ID path parameter (1–64 of [A-Za-z0-9_-]).
func pathID(c *fiber.Ctx, name string) (string, error) {
	v := c.Params(name)
	if !validID(v) {
		return "", validationFailed("%s must be 1-64 characters of [A-Za-z0-9_-]", name)
	}
	return v, nil
}

// pathName reads an operator-facing name (1–128 of [A-Za-z0-9_.:-]).
func pathName(c *fiber.Ctx, name string) (string, error) {
	v := c.Params(name)
	if !validName(v) {
		return "", validationFailed("%s must be 1-128 characters of [A-Za-z0-9_.:-]", name)
	}
	return v, nil
}

func isNotFound(err error) bool {
	return err != nil && (errors.Is(err, projections.ErrNotFound) || errors.Is(err, ErrNotFound))
}

// nonNil makes an empty list encode as [] rather than null.
func nonNil[T any](list []T) []T {
	if list == nil {
		return []T{}
	}
	return list
}
