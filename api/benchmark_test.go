package api_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/api"
	"github.com/booking-engine/booking/app"
)

// benchHandler runs requests straight through the app's fasthttp handler: the cost of the
// HTTP layer (routing, decoding, checks, encoding, logging) on top of fake commands, without
// sockets or a client.
func benchHandler(b *testing.B, method, path string, body func(i int64) []byte, header func(i int64) map[string]string) {
	benchHandlerP(b, 1, method, path, body, header)
}

// benchHandlerP runs parallelism×GOMAXPROCS request loops at once.
func benchHandlerP(b *testing.B, parallelism int, method, path string, body func(i int64) []byte, header func(i int64) map[string]string) {
	e := newEnv(b, func(d *api.Deps, _ *api.Config) { d.Commands = leanCommands{d.Commands} })
	h := e.App.Handler()
	var n atomic.Int64
	b.ReportAllocs()
	b.SetParallelism(parallelism)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		var ctx fasthttp.RequestCtx
		for pb.Next() {
			i := n.Add(1)
			ctx.Request.Reset()
			ctx.Response.Reset()
			ctx.ResetUserValues() // as fasthttp does between requests of a connection
			ctx.Request.Header.SetMethod(method)
			ctx.Request.SetRequestURI(path)
			for k, v := range header(i) {
				ctx.Request.Header.Set(k, v)
			}
			ctx.Request.SetBody(body(i))
			h(&ctx)
			if s := ctx.Response.StatusCode(); s >= 300 {
				b.Fatalf("status %d: %s", s, ctx.Response.Body())
			}
		}
	})
}

// leanCommands answers holds without keeping anything, so that the benchmarks measure the
// HTTP layer rather than the fake's bookkeeping.
type leanCommands struct{ api.Commands }

func (leanCommands) CheckToken(_ context.Context, token string) (string, error) {
	return strings.TrimPrefix(token, "active:"), nil
}

func (leanCommands) Hold(_ context.Context, _ app.Meta, req app.HoldRequest) (app.Reservation, error) {
	return app.Reservation{ReservationID: "019a0000-0000-7000-8000-000000000000", UserID: req.UserID, ConcertID: req.ConcertID,
		DateID: req.DateID, SeatNo: req.SeatNo, Price: 1000, Status: aggregates.ReservationStatusHeld, HeldAt: t0, HeldUntil: t0.Add(5 * time.Minute)}, nil
}

func holdJSON(i int64) []byte {
	return fmt.Appendf(nil, `{"userId":"u%d","concertId":"c1","dateId":"d1","seatNo":%d}`, i, i%10000+1)
}

func holdHeader(i int64) map[string]string {
	return map[string]string{"Queue-Token": fmt.Sprint("active:u", i)}
}

func BenchmarkHoldWithoutIdempotencyKey(b *testing.B) {
	benchHandler(b, "POST", "/api/v1/reservations", holdJSON, holdHeader)
}

// A new key per request: every answer is committed to the bbolt file (fsync) before it is sent.
func BenchmarkHoldWithNewIdempotencyKey(b *testing.B) {
	benchHandler(b, "POST", "/api/v1/reservations", holdJSON, func(i int64) map[string]string {
		h := holdHeader(i)
		h["Idempotency-Key"] = fmt.Sprint("key-", i)
		return h
	})
}

// The same with 64 requests in flight (on 2 cores): concurrent answers share commits.
func BenchmarkHoldWithNewIdempotencyKey64InFlight(b *testing.B) {
	benchHandlerP(b, 32, "POST", "/api/v1/reservations", holdJSON, func(i int64) map[string]string {
		h := holdHeader(i)
		h["Idempotency-Key"] = fmt.Sprint("key-", i)
		return h
	})
}

func BenchmarkIdempotentReplay(b *testing.B) {
	benchHandler(b, "POST", "/api/v1/reservations",
		func(int64) []byte { return holdJSON(1) },
		func(int64) map[string]string {
			return map[string]string{"Queue-Token": "active:u1", "Idempotency-Key": "same"}
		})
}

func BenchmarkSeatMap(b *testing.B) {
	benchHandler(b, "GET", "/api/v1/concerts/c1/dates/d1/seats", func(int64) []byte { return nil }, func(int64) map[string]string { return nil })
}
