package api_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/api"
	"github.com/booking-engine/booking/api/apitest"
	"github.com/booking-engine/booking/app"
	"github.com/booking-engine/booking/eventstore"
	"github.com/booking-engine/booking/projections"
)

type endpointCase struct {
	name   string
	opts   []func(*api.Deps, *api.Config)
	setup  func(e *env)
	req    apitest.Request
	status int
	code   string // problem code, "" for a success
	check  func(t *testing.T, e *env, r apitest.Response)
}

func get(path string, header ...string) apitest.Request {
	return apitest.Request{Method: http.MethodGet, Path: path, Header: hdr(header...)}
}

func post(path string, body any, header ...string) apitest.Request {
	return apitest.Request{Method: http.MethodPost, Path: path, Body: body, Header: hdr(header...)}
}

func del(path string, header ...string) apitest.Request {
	return apitest.Request{Method: http.MethodDelete, Path: path, Header: hdr(header...)}
}

func hdr(kv ...string) map[string]string {
	h := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		h[kv[i]] = kv[i+1]
	}
	return h
}

const (
	admin = "Authorization"
	qt    = "Queue-Token"
)

var (
	adminBearer = "Bearer " + adminToken
	concertBody = map[string]any{"concertId": "c9", "title": "Aurora Live", "dates": []any{
		map[string]any{"dateId": "d1", "startsAt": "2026-12-24T19:00:00Z", "seatCount": 50, "price": 120000,
			"seatPrices": []any{map[string]any{"from": 1, "to": 10, "price": 150000}}},
	}}
	holdBody = map[string]any{"userId": "u1", "concertId": "c1", "dateId": "d1", "seatNo": 1}
	payBody  = map[string]any{"reservationId": "r1", "userId": "u1"}
)

func failing(method string, err error) func(*env) {
	return func(e *env) { e.cmds.fail(method, err) }
}

func wantJSON(want string) func(t *testing.T, e *env, r apitest.Response) {
	return func(t *testing.T, _ *env, r apitest.Response) {
		t.Helper()
		if got := strings.TrimSpace(string(r.Body)); got != want {
			t.Fatalf("body\n got %s\nwant %s", got, want)
		}
	}
}

func wantCalls(want ...string) func(t *testing.T, e *env, r apitest.Response) {
	return func(t *testing.T, e *env, _ apitest.Response) {
		t.Helper()
		got := e.cmds.Calls()
		if strings.Join(got, "|") != strings.Join(want, "|") {
			t.Fatalf("calls %q, want %q", got, want)
		}
	}
}

func TestEndpoints(t *testing.T) {
	tests := []endpointCase{
		// operations
		{name: "healthz says ok", req: get("/healthz"), status: 200, check: wantJSON(`{"status":"ok"}`)},
		{name: "readyz says ready when the store is reachable", req: get("/readyz"), status: 200, check: wantJSON(`{"status":"ready"}`)},
		{name: "readyz is 503 while not ready", opts: []func(*api.Deps, *api.Config){func(d *api.Deps, _ *api.Config) { d.Ready = func() bool { return false } }},
			req: get("/readyz"), status: 503, code: "SERVICE_UNAVAILABLE"},
		{name: "metrics without a handler is 404", req: get("/metrics"), status: 404, code: "NOT_FOUND"},
		{name: "metrics are served by the given handler", opts: []func(*api.Deps, *api.Config){func(d *api.Deps, _ *api.Config) {
			d.Metrics = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain; version=0.0.4")
				_, _ = w.Write([]byte("booking_up 1\n"))
			})
		}}, req: get("/metrics"), status: 200, check: wantJSON("booking_up 1")},
		{name: "the OpenAPI document is served as YAML", req: get("/openapi.yaml"), status: 200, check: func(t *testing.T, _ *env, r apitest.Response) {
			if ct := r.Header.Get("Content-Type"); ct != "application/yaml" || !strings.HasPrefix(string(r.Body), "openapi: 3.1") {
				t.Fatalf("content type %q, body starts %q", ct, r.Body[:min(20, len(r.Body))])
			}
		}},

		// catalog
		{name: "an admin creates a concert", req: post("/api/v1/admin/concerts", concertBody, admin, adminBearer), status: 201,
			check: wantJSON(`{"concertId":"c9","title":"Aurora Live","dates":[{"dateId":"d1","startsAt":"2026-12-24T19:00:00Z","totalSeats":50,"salesOpenedAt":"2026-03-15T10:00:00Z"}]}`)},
		{name: "a concert without IDs gets generated ones", req: post("/api/v1/admin/concerts", `{"title":"T","dates":[{"startsAt":"2026-12-24T19:00:00+09:00","seatCount":1,"price":0}]}`, admin, adminBearer), status: 201,
			check: wantJSON(`{"concertId":"c1","title":"T","dates":[{"dateId":"d2","startsAt":"2026-12-24T10:00:00Z","totalSeats":1,"salesOpenedAt":"2026-03-15T10:00:00Z"}]}`)},
		{name: "an existing concertId is 409 CONCERT_EXISTS", setup: func(e *env) {
			e.Do(post("/api/v1/admin/concerts", concertBody, admin, adminBearer))
		}, req: post("/api/v1/admin/concerts", concertBody, admin, adminBearer), status: 409, code: "CONCERT_EXISTS"},
		{name: "creating a concert without the admin token is 401 UNAUTHORIZED", req: post("/api/v1/admin/concerts", concertBody), status: 401, code: "UNAUTHORIZED", check: wantCalls()},
		{name: "creating a concert with a wrong admin token is 401 UNAUTHORIZED", req: post("/api/v1/admin/concerts", concertBody, admin, "Bearer nope"), status: 401, code: "UNAUTHORIZED", check: wantCalls()},
		{name: "admin endpoints are 403 ADMIN_DISABLED without a configured token", opts: []func(*api.Deps, *api.Config){func(_ *api.Deps, c *api.Config) { c.AdminToken = "" }},
			req: post("/api/v1/admin/concerts", concertBody, admin, "Bearer "), status: 403, code: "ADMIN_DISABLED", check: wantCalls()},
		{name: "the concert list is wrapped", req: get("/api/v1/concerts"), status: 200, check: wantJSON(`{"concerts":[{"concertId":"c1","title":"Aurora Live","dateCount":1}]}`)},
		{name: "a concert's dates are listed", req: get("/api/v1/concerts/c1/dates"), status: 200,
			check: wantJSON(`{"dates":[{"dateId":"d1","startsAt":"2026-03-25T10:00:00Z","totalSeats":3,"availableSeats":2,"soldOut":false}]}`)},
		{name: "dates of an unknown concert are 404 CONCERT_NOT_FOUND", req: get("/api/v1/concerts/zz/dates"), status: 404, code: "CONCERT_NOT_FOUND"},
		{name: "a seat map lists every seat", req: get("/api/v1/concerts/c1/dates/d1/seats"), status: 200,
			check: wantJSON(`{"seats":[{"seatNo":1,"price":1000,"status":"AVAILABLE"},{"seatNo":2,"price":1000,"status":"HELD"},{"seatNo":3,"price":1500,"status":"SOLD"}]}`)},
		{name: "seats of an unknown concert are 404 CONCERT_NOT_FOUND", req: get("/api/v1/concerts/zz/dates/d1/seats"), status: 404, code: "CONCERT_NOT_FOUND"},
		{name: "seats of an unknown date are 404 DATE_NOT_FOUND", req: get("/api/v1/concerts/c1/dates/zz/seats"), status: 404, code: "DATE_NOT_FOUND"},

		// waiting queue
		{name: "a new queue token is 201", req: post("/api/v1/queue/tokens", map[string]any{"userId": "u1"}), status: 201,
			check: wantJSON(`{"token":"active:u1","userId":"u1","position":1,"status":"ACTIVE","ahead":0,"activeAt":"2026-03-15T10:00:00Z","expiresAt":"2026-03-15T10:10:00Z"}`)},
		{name: "a user with a valid token gets it back with 200", setup: func(e *env) {
			e.Do(post("/api/v1/queue/tokens", map[string]any{"userId": "u1"}))
		}, req: post("/api/v1/queue/tokens", map[string]any{"userId": "u1"}), status: 200},
		{name: "the current token's status is shown", req: get("/api/v1/queue/tokens/current", qt, "waiting:u1"), status: 200,
			check: wantJSON(`{"token":"waiting:u1","userId":"u1","position":7,"status":"WAITING","ahead":0,"activeAt":null,"expiresAt":null}`)},
		{name: "the current token without a header is 401 TOKEN_INVALID", req: get("/api/v1/queue/tokens/current"), status: 401, code: "TOKEN_INVALID"},
		{name: "a forged current token is 401 TOKEN_INVALID", req: get("/api/v1/queue/tokens/current", qt, "forged"), status: 401, code: "TOKEN_INVALID"},

		// points
		{name: "a balance is shown", req: get("/api/v1/users/u1/points"), status: 200, check: wantJSON(`{"userId":"u1","balance":4000}`)},
		{name: "an unknown user has balance 0", req: get("/api/v1/users/nobody/points"), status: 200, check: wantJSON(`{"userId":"nobody","balance":0}`)},
		{name: "a charge answers the new balance", req: post("/api/v1/users/u2/points/charge", map[string]any{"amount": 10_000_000}), status: 200,
			check: wantJSON(`{"userId":"u2","balance":10000000}`)},
		{name: "a charge of 0 is 400 INVALID_AMOUNT", req: post("/api/v1/users/u2/points/charge", `{"amount":0}`), status: 400, code: "INVALID_AMOUNT", check: wantCalls()},
		{name: "a charge over 10,000,000 is 400 INVALID_AMOUNT", req: post("/api/v1/users/u2/points/charge", `{"amount":10000001}`), status: 400, code: "INVALID_AMOUNT", check: wantCalls()},
		{name: "a fractional charge is 400 INVALID_AMOUNT", req: post("/api/v1/users/u2/points/charge", `{"amount":1.5}`), status: 400, code: "INVALID_AMOUNT", check: wantCalls()},
		{name: "a charge given as a string is 400 INVALID_AMOUNT", req: post("/api/v1/users/u2/points/charge", `{"amount":"100"}`), status: 400, code: "INVALID_AMOUNT", check: wantCalls()},
		{name: "a charge without amount is 400 INVALID_AMOUNT", req: post("/api/v1/users/u2/points/charge", `{}`), status: 400, code: "INVALID_AMOUNT", check: wantCalls()},
		{name: "a charge the wallet refuses is 400 INVALID_AMOUNT", setup: failing("Charge", aggregates.ErrInvalidAmount),
			req: post("/api/v1/users/u2/points/charge", `{"amount":5}`), status: 400, code: "INVALID_AMOUNT"},
		{name: "the history is oldest first", req: get("/api/v1/users/u1/points/history"), status: 200,
			check: wantJSON(`{"entries":[{"type":"CHARGE","amount":5000,"balanceAfter":5000,"at":"2026-03-15T10:00:00Z","reference":"charge-1"},{"type":"PAYMENT","amount":1000,"balanceAfter":4000,"at":"2026-03-15T10:01:00Z","reference":"p1"}]}`)},
		{name: "an unknown user's history is empty, not null", req: get("/api/v1/users/nobody/points/history"), status: 200, check: wantJSON(`{"entries":[]}`)},

		// reservations
		{name: "a hold with an active token is 201", req: post("/api/v1/reservations", holdBody, qt, "active:u1"), status: 201,
			check: wantJSON(`{"reservationId":"r1","userId":"u1","concertId":"c1","dateId":"d1","seatNo":1,"seatNos":[1],"price":1000,"status":"HELD","heldAt":"2026-03-15T10:00:00Z","heldUntil":"2026-03-15T10:05:00Z"}`)},
		{name: "a hold without a token is 401 TOKEN_INVALID", req: post("/api/v1/reservations", holdBody), status: 401, code: "TOKEN_INVALID", check: wantCalls()},
		{name: "a hold with a forged token is 401 TOKEN_INVALID", req: post("/api/v1/reservations", holdBody, qt, "x"), status: 401, code: "TOKEN_INVALID", check: wantCalls()},
		{name: "a hold with an expired token is 401 TOKEN_EXPIRED", req: post("/api/v1/reservations", holdBody, qt, "expired:u1"), status: 401, code: "TOKEN_EXPIRED", check: wantCalls()},
		{name: "a hold with a waiting token is 403 TOKEN_NOT_ACTIVE", req: post("/api/v1/reservations", holdBody, qt, "waiting:u1"), status: 403, code: "TOKEN_NOT_ACTIVE", check: wantCalls()},
		{name: "a hold with another user's token is 403 FORBIDDEN", req: post("/api/v1/reservations", holdBody, qt, "active:u2"), status: 403, code: "FORBIDDEN", check: wantCalls()},
		{name: "a hold on a taken seat is 409 SEAT_UNAVAILABLE", setup: failing("Hold", fmt.Errorf("hold: %w", aggregates.ErrSeatUnavailable)),
			req: post("/api/v1/reservations", holdBody, qt, "active:u1"), status: 409, code: "SEAT_UNAVAILABLE"},
		{name: "a hold of several seats hands them all to one command", req: post("/api/v1/reservations", map[string]any{"userId": "u1", "concertId": "c1", "dateId": "d1", "seatNos": []int{4, 2, 3}}, qt, "active:u1"),
			status: 201, check: wantCalls("Hold u1 [4 2 3]")},
		{name: "a hold with both seatNo and seatNos is 400 INVALID_REQUEST", req: post("/api/v1/reservations", map[string]any{"userId": "u1", "concertId": "c1", "dateId": "d1", "seatNo": 1, "seatNos": []int{2}}, qt, "active:u1"),
			status: 400, code: "INVALID_REQUEST", check: wantCalls()},
		{name: "a hold with neither seatNo nor seatNos is 400 INVALID_REQUEST", req: post("/api/v1/reservations", map[string]any{"userId": "u1", "concertId": "c1", "dateId": "d1"}, qt, "active:u1"),
			status: 400, code: "INVALID_REQUEST", check: wantCalls()},
		{name: "a hold of no seats is 400 INVALID_REQUEST", req: post("/api/v1/reservations", map[string]any{"userId": "u1", "concertId": "c1", "dateId": "d1", "seatNos": []int{}}, qt, "active:u1"),
			status: 400, code: "INVALID_REQUEST", check: wantCalls()},
		{name: "a hold of nine seats is 400 INVALID_REQUEST", req: post("/api/v1/reservations", map[string]any{"userId": "u1", "concertId": "c1", "dateId": "d1", "seatNos": []int{1, 2, 3, 4, 5, 6, 7, 8, 9}}, qt, "active:u1"),
			status: 400, code: "INVALID_REQUEST", check: wantCalls()},
		{name: "a hold naming a seat twice is 400 INVALID_REQUEST", req: post("/api/v1/reservations", map[string]any{"userId": "u1", "concertId": "c1", "dateId": "d1", "seatNos": []int{3, 3}}, qt, "active:u1"),
			status: 400, code: "INVALID_REQUEST", check: wantCalls()},
		{name: "a hold with seat zero in its list is 400 INVALID_REQUEST", req: post("/api/v1/reservations", map[string]any{"userId": "u1", "concertId": "c1", "dateId": "d1", "seatNos": []int{0, 1}}, qt, "active:u1"),
			status: 400, code: "INVALID_REQUEST", check: wantCalls()},
		{name: "a hold with seatNos not a list is 400 INVALID_REQUEST", req: post("/api/v1/reservations", map[string]any{"userId": "u1", "concertId": "c1", "dateId": "d1", "seatNos": "1,2"}, qt, "active:u1"),
			status: 400, code: "INVALID_REQUEST", check: wantCalls()},
		{name: "a hold of several seats with some taken is 409 SEAT_UNAVAILABLE naming them", setup: failing("Hold", fmt.Errorf("hold: %w", &aggregates.UnavailableSeatsError{SeatNos: []int{2, 3}})),
			req: post("/api/v1/reservations", map[string]any{"userId": "u1", "concertId": "c1", "dateId": "d1", "seatNos": []int{1, 2, 3}}, qt, "active:u1"), status: 409, code: "SEAT_UNAVAILABLE",
			check: func(t *testing.T, _ *env, r apitest.Response) {
				if !strings.Contains(string(r.Body), `"unavailableSeats":[2,3]`) {
					t.Fatalf("body %s does not name the seats [2,3]", r.Body)
				}
			}},
		{name: "a hold past the user's seat limit is 409 SEAT_LIMIT_REACHED", setup: failing("Hold", fmt.Errorf("hold: %w", aggregates.ErrSeatLimitReached)),
			req: post("/api/v1/reservations", holdBody, qt, "active:u1"), status: 409, code: "SEAT_LIMIT_REACHED"},
		{name: "a hold on an unknown concert is 404 CONCERT_NOT_FOUND", setup: failing("Hold", aggregates.ErrConcertNotFound),
			req: post("/api/v1/reservations", holdBody, qt, "active:u1"), status: 404, code: "CONCERT_NOT_FOUND"},
		{name: "a hold on an unknown date is 404 DATE_NOT_FOUND", setup: failing("Hold", aggregates.ErrDateNotFound),
			req: post("/api/v1/reservations", holdBody, qt, "active:u1"), status: 404, code: "DATE_NOT_FOUND"},
		{name: "a hold on an unknown seat is 404 SEAT_NOT_FOUND", setup: failing("Hold", aggregates.ErrSeatNotFound),
			req: post("/api/v1/reservations", holdBody, qt, "active:u1"), status: 404, code: "SEAT_NOT_FOUND"},
		{name: "a reservation is shown with its payment", req: get("/api/v1/reservations/r1"), status: 200,
			check: wantJSON(`{"reservationId":"r1","userId":"u1","concertId":"c1","dateId":"d1","seatNo":1,"seatNos":[1],"price":1000,"status":"CONFIRMED","heldAt":"2026-03-15T10:00:00Z","heldUntil":"2026-03-15T10:05:00Z","paymentId":"p1"}`)},
		{name: "an unknown reservation is 404 RESERVATION_NOT_FOUND", req: get("/api/v1/reservations/zz"), status: 404, code: "RESERVATION_NOT_FOUND"},
		{name: "the owner cancels a hold", setup: func(e *env) { e.Do(post("/api/v1/reservations", holdBody, qt, "active:u1")) },
			req: del("/api/v1/reservations/r1", qt, "active:u1"), status: 200, check: func(t *testing.T, _ *env, r apitest.Response) {
				if m := r.Map(t); m["status"] != "CANCELLED" {
					t.Fatalf("status %v", m["status"])
				}
			}},
		{name: "cancelling another user's hold is 403 FORBIDDEN", setup: func(e *env) { e.Do(post("/api/v1/reservations", holdBody, qt, "active:u1")) },
			req: del("/api/v1/reservations/r1", qt, "active:u2"), status: 403, code: "FORBIDDEN"},
		{name: "cancelling without a token is 401 TOKEN_INVALID", req: del("/api/v1/reservations/r1"), status: 401, code: "TOKEN_INVALID", check: wantCalls()},
		{name: "cancelling with a waiting token is 403 TOKEN_NOT_ACTIVE", req: del("/api/v1/reservations/r1", qt, "waiting:u1"), status: 403, code: "TOKEN_NOT_ACTIVE", check: wantCalls()},
		{name: "cancelling an unknown reservation is 404 RESERVATION_NOT_FOUND", req: del("/api/v1/reservations/zz", qt, "active:u1"), status: 404, code: "RESERVATION_NOT_FOUND"},
		{name: "cancelling a confirmed reservation is 409 RESERVATION_NOT_CANCELLABLE", setup: failing("Cancel", aggregates.ErrReservationNotCancellable),
			req: del("/api/v1/reservations/r1", qt, "active:u1"), status: 409, code: "RESERVATION_NOT_CANCELLABLE"},
		{name: "a user's reservations are wrapped", req: get("/api/v1/users/u1/reservations"), status: 200, check: func(t *testing.T, _ *env, r apitest.Response) {
			var v struct{ Reservations []map[string]any }
			r.JSON(t, &v)
			if len(v.Reservations) != 1 || v.Reservations[0]["reservationId"] != "r1" {
				t.Fatalf("got %s", r.Body)
			}
		}},
		{name: "a user without reservations gets an empty list", req: get("/api/v1/users/u9/reservations"), status: 200, check: wantJSON(`{"reservations":[]}`)},

		// payments
		{name: "a payment is 201", req: post("/api/v1/payments", payBody, qt, "active:u1"), status: 201,
			check: wantJSON(`{"paymentId":"p1","reservationId":"r1","userId":"u1","amount":1000,"status":"COMPLETED","completedAt":"2026-03-15T10:00:00Z"}`)},
		{name: "a payment without points is 409 INSUFFICIENT_POINTS", setup: failing("Pay", aggregates.ErrInsufficientPoints),
			req: post("/api/v1/payments", payBody, qt, "active:u1"), status: 409, code: "INSUFFICIENT_POINTS"},
		{name: "paying an expired hold is 409 RESERVATION_NOT_PAYABLE", setup: failing("Pay", aggregates.ErrReservationNotPayable),
			req: post("/api/v1/payments", payBody, qt, "active:u1"), status: 409, code: "RESERVATION_NOT_PAYABLE"},
		{name: "paying an unknown reservation is 404 RESERVATION_NOT_FOUND", setup: failing("Pay", aggregates.ErrReservationNotFound),
			req: post("/api/v1/payments", payBody, qt, "active:u1"), status: 404, code: "RESERVATION_NOT_FOUND"},
		{name: "paying somebody else's reservation is 403 FORBIDDEN", setup: failing("Pay", aggregates.ErrForbidden),
			req: post("/api/v1/payments", payBody, qt, "active:u1"), status: 403, code: "FORBIDDEN"},
		{name: "paying with another user's token is 403 FORBIDDEN", req: post("/api/v1/payments", payBody, qt, "active:u2"), status: 403, code: "FORBIDDEN", check: wantCalls()},
		{name: "paying with a revoked token is 401 TOKEN_EXPIRED", setup: func(e *env) { e.Do(post("/api/v1/payments", payBody, qt, "active:u1")) },
			req: post("/api/v1/payments", map[string]any{"reservationId": "r2", "userId": "u1"}, qt, "active:u1"), status: 401, code: "TOKEN_EXPIRED"},
		{name: "a payment is shown", req: get("/api/v1/payments/p1"), status: 200,
			check: wantJSON(`{"paymentId":"p1","reservationId":"r1","userId":"u1","amount":1000,"status":"COMPLETED","completedAt":"2026-03-15T10:01:00Z"}`)},
		{name: "an unknown payment is 404 PAYMENT_NOT_FOUND", req: get("/api/v1/payments/zz"), status: 404, code: "PAYMENT_NOT_FOUND"},
		{name: "an admin refunds a payment", req: post("/api/v1/payments/p1/refund", nil, admin, adminBearer), status: 200, check: func(t *testing.T, e *env, r apitest.Response) {
			if m := r.Map(t); m["status"] != "REFUNDED" {
				t.Fatalf("got %s", r.Body)
			}
			wantCalls("Refund p1")(t, e, r)
		}},
		{name: "a refund without the admin token is 401 UNAUTHORIZED", req: post("/api/v1/payments/p1/refund", nil), status: 401, code: "UNAUTHORIZED", check: wantCalls()},
		{name: "refunding a refunded payment is 409 PAYMENT_NOT_REFUNDABLE", setup: failing("Refund", aggregates.ErrPaymentNotRefundable),
			req: post("/api/v1/payments/p1/refund", nil, admin, adminBearer), status: 409, code: "PAYMENT_NOT_REFUNDABLE"},
		{name: "refunding an unknown payment is 404 PAYMENT_NOT_FOUND", setup: failing("Refund", projections404()),
			req: post("/api/v1/payments/zz/refund", nil, admin, adminBearer), status: 404, code: "PAYMENT_NOT_FOUND"},

		// ranking
		{name: "the ranking defaults to today in the configured timezone",
			opts:  []func(*api.Deps, *api.Config){func(_ *api.Deps, c *api.Config) { c.Location = mustZone("Asia/Seoul") }},
			setup: func(e *env) { e.clock.Set(time.Date(2026, 3, 15, 16, 30, 0, 0, time.UTC)) }, // 01:30 on the 16th in Seoul
			req:   get("/api/v1/rankings/daily"), status: 200, check: func(t *testing.T, e *env, r apitest.Response) {
				if !strings.HasPrefix(string(r.Body), `{"date":"2026-03-16","entries":[{"rank":1,`) {
					t.Fatalf("got %s", r.Body)
				}
				if day := e.qs.lastDay(); !day.Equal(time.Date(2026, 3, 16, 0, 0, 0, 0, mustZone("Asia/Seoul"))) {
					t.Fatalf("asked for %v", day)
				}
			}},
		{name: "answers show times in the configured timezone",
			opts: []func(*api.Deps, *api.Config){func(_ *api.Deps, c *api.Config) { c.Location = mustZone("Asia/Seoul") }},
			req:  get("/api/v1/reservations/r1"), status: 200, check: func(t *testing.T, _ *env, r apitest.Response) {
				if m := r.Map(t); m["heldAt"] != "2026-03-15T19:00:00+09:00" || m["heldUntil"] != "2026-03-15T19:05:00+09:00" {
					t.Fatalf("got %s", r.Body)
				}
			}},
		{name: "a created concert shows its times in the configured timezone",
			opts: []func(*api.Deps, *api.Config){func(_ *api.Deps, c *api.Config) { c.Location = mustZone("Asia/Seoul") }},
			req:  post("/api/v1/admin/concerts", concertBody, admin, adminBearer), status: 201,
			check: wantJSON(`{"concertId":"c9","title":"Aurora Live","dates":[{"dateId":"d1","startsAt":"2026-12-25T04:00:00+09:00","totalSeats":50,"salesOpenedAt":"2026-03-15T19:00:00+09:00"}]}`)},
		{name: "the ranking of a given date", req: get("/api/v1/rankings/daily?date=2026-02-28"), status: 200, check: func(t *testing.T, _ *env, r apitest.Response) {
			if m := r.Map(t); m["date"] != "2026-02-28" {
				t.Fatalf("got %s", r.Body)
			}
		}},
		{name: "a malformed ranking date is 400 INVALID_DATE", req: get("/api/v1/rankings/daily?date=2026-2-28"), status: 400, code: "INVALID_DATE"},
		{name: "an impossible ranking date is 400 INVALID_DATE", req: get("/api/v1/rankings/daily?date=2026-02-30"), status: 400, code: "INVALID_DATE"},
		{name: "a ranking date with a time is 400 INVALID_DATE", req: get("/api/v1/rankings/daily?date=2026-02-28T00:00:00Z"), status: 400, code: "INVALID_DATE"},

		// admin: data platform, projections
		{name: "dead letters are listed", req: get("/api/v1/admin/dead-letters", admin, adminBearer), status: 200,
			check: wantJSON(`{"deadLetters":[{"id":"dl-1","eventId":"e1","eventType":"ReservationHeld","attempts":8,"lastError":"503 Service Unavailable","failedAt":"2026-03-15T10:00:00Z"}]}`)},
		{name: "dead letters need the admin token", req: get("/api/v1/admin/dead-letters"), status: 401, code: "UNAUTHORIZED"},
		{name: "a dead letter is redriven with 202", req: post("/api/v1/admin/dead-letters/dl-1/redrive", nil, admin, adminBearer), status: 202,
			check: func(t *testing.T, e *env, r apitest.Response) {
				if len(e.dls.redriven) != 1 {
					t.Fatalf("redriven %v", e.dls.redriven)
				}
			}},
		{name: "redriving an unknown dead letter is 404 DEAD_LETTER_NOT_FOUND", req: post("/api/v1/admin/dead-letters/dl-9/redrive", nil, admin, adminBearer), status: 404, code: "DEAD_LETTER_NOT_FOUND"},
		{name: "without a relay every redrive is 404 DEAD_LETTER_NOT_FOUND", opts: []func(*api.Deps, *api.Config){func(d *api.Deps, _ *api.Config) { d.DeadLetters = nil }},
			req: post("/api/v1/admin/dead-letters/dl-1/redrive", nil, admin, adminBearer), status: 404, code: "DEAD_LETTER_NOT_FOUND"},
		{name: "without a relay the dead-letter list is empty", opts: []func(*api.Deps, *api.Config){func(d *api.Deps, _ *api.Config) { d.DeadLetters = nil }},
			req: get("/api/v1/admin/dead-letters", admin, adminBearer), status: 200, check: wantJSON(`{"deadLetters":[]}`)},
		{name: "projections are listed", req: get("/api/v1/admin/projections", admin, adminBearer), status: 200,
			check: wantJSON(`{"projections":[{"name":"seats","checkpoint":10,"head":12,"lag":2},{"name":"wallets","checkpoint":5,"head":5,"lag":0}]}`)},
		{name: "a projection rebuild is 202", req: post("/api/v1/admin/projections/seats/rebuild", nil, admin, adminBearer), status: 202,
			check: func(t *testing.T, e *env, r apitest.Response) {
				if len(e.projs.rebuilds) != 1 || e.projs.rebuilds[0] != "seats" {
					t.Fatalf("rebuilds %v", e.projs.rebuilds)
				}
			}},
		{name: "rebuilding an unknown projection is 404 NOT_FOUND", req: post("/api/v1/admin/projections/nope/rebuild", nil, admin, adminBearer), status: 404, code: "NOT_FOUND"},
		{name: "projections need the admin token", req: post("/api/v1/admin/projections/seats/rebuild", nil, admin, "Bearer wrong"), status: 401, code: "UNAUTHORIZED"},

		// dependencies and internals
		{name: "an unreachable event store is 503 SERVICE_UNAVAILABLE", setup: failing("Hold", fmt.Errorf("append: %w: nats: timeout", eventstore.ErrUnavailable)),
			req: post("/api/v1/reservations", holdBody, qt, "active:u1"), status: 503, code: "SERVICE_UNAVAILABLE", check: func(t *testing.T, _ *env, r apitest.Response) {
				if r.Header.Get("Retry-After") == "" {
					t.Fatal("no Retry-After")
				}
			}},
		{name: "a query past the deadline is 503 SERVICE_UNAVAILABLE", setup: func(e *env) { e.qs.err = context.DeadlineExceeded },
			req: get("/api/v1/concerts"), status: 503, code: "SERVICE_UNAVAILABLE"},
		{name: "an unknown error is 500 INTERNAL without its text", setup: failing("Charge", errors.New("bbolt: secret/path/wallet.db corrupt")),
			req: post("/api/v1/users/u1/points/charge", `{"amount":5}`), status: 500, code: "INTERNAL", check: func(t *testing.T, _ *env, r apitest.Response) {
				if strings.Contains(string(r.Body), "secret") || strings.Contains(string(r.Body), "bbolt") {
					t.Fatalf("internals leaked: %s", r.Body)
				}
			}},
		{name: "a domain validation error is 400 VALIDATION_FAILED with its message", setup: failing("CreateConcert", fmt.Errorf("create concert: %w: dates[0].seatCount must be 1-10000", aggregates.ErrInvalid)),
			req: post("/api/v1/admin/concerts", concertBody, admin, adminBearer), status: 400, code: "VALIDATION_FAILED", check: func(t *testing.T, _ *env, r apitest.Response) {
				if p := r.Problem(t); p.Detail != "dates[0].seatCount must be 1-10000" {
					t.Fatalf("detail %q", p.Detail)
				}
			}},

		// routing
		{name: "an unknown route is 404 NOT_FOUND", req: get("/api/v1/nothing"), status: 404, code: "NOT_FOUND"},
		{name: "a known route with a wrong method is 405 METHOD_NOT_ALLOWED", req: del("/api/v1/concerts"), status: 405, code: "METHOD_NOT_ALLOWED",
			check: func(t *testing.T, _ *env, r apitest.Response) {
				if allow := r.Header.Get("Allow"); !strings.Contains(allow, "GET") {
					t.Fatalf("Allow %q", allow)
				}
			}},
		{name: "PUT on the reservations collection is 405 METHOD_NOT_ALLOWED", req: apitest.Request{Method: http.MethodPut, Path: "/api/v1/reservations", Body: holdBody},
			status: 405, code: "METHOD_NOT_ALLOWED", check: wantCalls()},
		{name: "an unknown method on a known route is 405 METHOD_NOT_ALLOWED", req: apitest.Request{Method: "BREW", Path: "/api/v1/concerts"},
			status: 405, code: "METHOD_NOT_ALLOWED", check: func(t *testing.T, _ *env, r apitest.Response) {
				if r.Header.Get("Allow") != "GET, HEAD" || r.Header.Get("X-Request-ID") == "" {
					t.Fatalf("headers %v", r.Header)
				}
			}},
		{name: "an unknown method on an unknown route is 404 NOT_FOUND", req: apitest.Request{Method: "BREW", Path: "/coffee"}, status: 404, code: "NOT_FOUND"},
		{name: "a body of exactly 64 KiB is read", req: post("/api/v1/queue/tokens", `{"userId":"u1"}`+strings.Repeat(" ", 64<<10-15)),
			status: 201},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.opts...)
			if tt.setup != nil {
				tt.setup(e)
				e.cmds.mu.Lock()
				e.cmds.calls = nil // the setup's own calls are not under test
				e.cmds.mu.Unlock()
			}
			r := e.Do(tt.req)
			r.Expect(t, tt.status, tt.code)
			if tt.code == "" && tt.status < 300 && r.Header.Get("Content-Type") == api.ProblemContentType {
				t.Fatalf("success answered as a problem: %s", r.Body)
			}
			if r.Header.Get("X-Request-ID") == "" {
				t.Fatal("no X-Request-ID in the answer")
			}
			if tt.check != nil {
				tt.check(t, e, r)
			}
		})
	}
}

func projections404() error { return fmt.Errorf("payment zz: %w", projections.ErrNotFound) }

func mustZone(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

func TestUserAuthentication(t *testing.T) {
	tests := []struct {
		name   string
		req    apitest.Request
		status int
		code   string
	}{
		{"a token issue without a JWT is 401 UNAUTHENTICATED", post("/api/v1/queue/tokens", `{"userId":"u1"}`), 401, "UNAUTHENTICATED"},
		{"a token issue with an invalid JWT is 401 UNAUTHENTICATED", post("/api/v1/queue/tokens", `{"userId":"u1"}`, "Authorization", "Bearer forged"), 401, "UNAUTHENTICATED"},
		{"a token issue for oneself is 201", post("/api/v1/queue/tokens", `{"userId":"u1"}`, "Authorization", "Bearer jwt-u1"), 201, ""},
		{"a token issue for somebody else is 403 FORBIDDEN", post("/api/v1/queue/tokens", `{"userId":"u2"}`, "Authorization", "Bearer jwt-u1"), 403, "FORBIDDEN"},
		{"a balance without a JWT is 401 UNAUTHENTICATED", get("/api/v1/users/u1/points"), 401, "UNAUTHENTICATED"},
		{"one's own balance is 200", get("/api/v1/users/u1/points", "Authorization", "Bearer jwt-u1"), 200, ""},
		{"another user's balance is 403 FORBIDDEN", get("/api/v1/users/u1/points", "Authorization", "Bearer jwt-u2"), 403, "FORBIDDEN"},
		{"another user's history is 403 FORBIDDEN", get("/api/v1/users/u1/points/history", "Authorization", "Bearer jwt-u2"), 403, "FORBIDDEN"},
		{"a charge for another user is 403 FORBIDDEN", post("/api/v1/users/u1/points/charge", `{"amount":5}`, "Authorization", "Bearer jwt-u2"), 403, "FORBIDDEN"},
		{"a charge for oneself is 200", post("/api/v1/users/u1/points/charge", `{"amount":5}`, "Authorization", "Bearer jwt-u1"), 200, ""},
		{"another user's reservation list is 403 FORBIDDEN", get("/api/v1/users/u1/reservations", "Authorization", "Bearer jwt-u2"), 403, "FORBIDDEN"},
		{"another user's reservation is 403 FORBIDDEN", get("/api/v1/reservations/r1", "Authorization", "Bearer jwt-u2"), 403, "FORBIDDEN"},
		{"one's own reservation is 200", get("/api/v1/reservations/r1", "Authorization", "Bearer jwt-u1"), 200, ""},
		{"another user's payment is 403 FORBIDDEN", get("/api/v1/payments/p1", "Authorization", "Bearer jwt-u2"), 403, "FORBIDDEN"},
		{"a hold for another user is 403 FORBIDDEN", post("/api/v1/reservations", holdBody, "Authorization", "Bearer jwt-u2", qt, "active:u1"), 403, "FORBIDDEN"},
		{"a hold without a JWT is 401 UNAUTHENTICATED even with a queue token", post("/api/v1/reservations", holdBody, qt, "active:u1"), 401, "UNAUTHENTICATED"},
		{"a payment for another user is 403 FORBIDDEN", post("/api/v1/payments", payBody, "Authorization", "Bearer jwt-u2", qt, "active:u1"), 403, "FORBIDDEN"},
		{"a cancel with somebody else's queue token is 403 FORBIDDEN", del("/api/v1/reservations/r1", "Authorization", "Bearer jwt-u2", qt, "active:u1"), 403, "FORBIDDEN"},
		{"the catalog stays public", get("/api/v1/concerts"), 200, ""},
		{"the ranking stays public", get("/api/v1/rankings/daily"), 200, ""},
		{"health stays public", get("/healthz"), 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, withJWT)
			r := e.Do(tt.req)
			r.Expect(t, tt.status, tt.code)
			if tt.status >= 400 && len(e.cmds.Calls()) != 0 {
				t.Fatalf("a refused request ran %v", e.cmds.Calls())
			}
			if tt.code == "UNAUTHENTICATED" && r.Header.Get("WWW-Authenticate") == "" {
				t.Fatal("no WWW-Authenticate challenge")
			}
		})
	}
}

func TestRequestIDs(t *testing.T) {
	e := newEnv(t)
	t.Run("a client's request ID is echoed and reaches the command as correlation ID", func(t *testing.T) {
		r := e.Do(post("/api/v1/users/u1/points/charge", `{"amount":5}`, "X-Request-ID", "client-req-42"))
		r.Expect(t, 200, "")
		if got := r.Header.Get("X-Request-ID"); got != "client-req-42" {
			t.Fatalf("echoed %q", got)
		}
		e.cmds.mu.Lock()
		meta := e.cmds.metas[len(e.cmds.metas)-1]
		e.cmds.mu.Unlock()
		if meta.CorrelationID != "client-req-42" {
			t.Fatalf("correlation %q", meta.CorrelationID)
		}
	})
	t.Run("a missing request ID is generated as a UUIDv7", func(t *testing.T) {
		id := e.Get("/healthz").Header.Get("X-Request-ID")
		if len(id) != 36 || id[14] != '7' {
			t.Fatalf("id %q is not a UUIDv7", id)
		}
	})
	t.Run("an overlong request ID is replaced", func(t *testing.T) {
		r := e.Do(get("/healthz", "X-Request-ID", strings.Repeat("x", 129)))
		if id := r.Header.Get("X-Request-ID"); len(id) != 36 {
			t.Fatalf("id %q", id)
		}
	})
	t.Run("a request ID with spaces is replaced", func(t *testing.T) {
		r := e.Do(get("/healthz", "X-Request-ID", "a b"))
		if id := r.Header.Get("X-Request-ID"); id == "a b" {
			t.Fatalf("id %q kept", id)
		}
	})
}

func TestRequestTimeoutAnswers503(t *testing.T) {
	e := newEnv(t, func(d *api.Deps, c *api.Config) {
		c.RequestTimeout = 20 * time.Millisecond
		d.Commands = blockingCommands{d.Commands}
	})
	r := e.Do(post("/api/v1/users/u1/points/charge", `{"amount":5}`))
	r.Expect(t, 503, "SERVICE_UNAVAILABLE")
}

// blockingCommands makes Charge wait for its context, as a hung event store would.
type blockingCommands struct{ api.Commands }

func (blockingCommands) Charge(ctx context.Context, _ app.Meta, _ string, _ int64) (app.Wallet, error) {
	<-ctx.Done()
	return app.Wallet{}, fmt.Errorf("charge: %w", ctx.Err())
}

// Fiber's in-process Test cannot see a 413 (fasthttp ends the connection with an error after
// answering), so the body limit is checked over a real socket with sendRaw.
func TestBodyOver64KiBIs413(t *testing.T) {
	e := newEnv(t)
	base := apitest.Serve(t, e.App)
	addr := strings.TrimPrefix(base, "http://")
	body := `{"userId":"` + strings.Repeat("a", 64<<10) + `"}`
	for _, tt := range []struct {
		name    string
		framing string // the length header
		body    string // as sent
	}{
		{"with a Content-Length", fmt.Sprintf("Content-Length: %d", len(body)), body},
		{"chunked", "Transfer-Encoding: chunked", fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(body), body)},
	} {
		t.Run("a body over 64 KiB is 413 BODY_TOO_LARGE "+tt.name, func(t *testing.T) {
			head := "POST /api/v1/queue/tokens HTTP/1.1\r\nHost: " + addr + "\r\nContent-Type: application/json\r\n" + tt.framing + "\r\n\r\n"
			r := sendRaw(t, addr, head+tt.body)
			r.Expect(t, 413, "BODY_TOO_LARGE")
			if calls := e.cmds.Calls(); len(calls) != 0 {
				t.Fatalf("calls %v", calls)
			}
		})
	}
}

// sendRaw writes a raw HTTP/1.1 request on its own connection to addr and reads the answer.
// A server refusing a request from its headers answers and closes while the client may still
// be sending the body, so a failed write (a reset connection) is ignored: the answer the server
// sent before is what counts. net/http's client would report the write error instead.
func sendRaw(t *testing.T, addr, raw string) apitest.Response {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	written := make(chan struct{})
	go func() {
		defer close(written)
		_, _ = io.WriteString(conn, raw) // fails once the server has closed
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	_ = conn.Close() // ends a write still blocked on a full buffer
	<-written
	return apitest.Response{Status: resp.StatusCode, Header: resp.Header, Body: data}
}
