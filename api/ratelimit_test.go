package api_test

import (
	"fmt"
	"testing"
	"time"
)

func TestPerUserRateLimit(t *testing.T) {
	hold := func(e *env, user string) (status int, code, retryAfter string) {
		body := map[string]any{"userId": user, "concertId": "c1", "dateId": "d1", "seatNo": 1}
		r := e.Do(post("/api/v1/reservations", body, qt, activeToken(user)))
		if r.Status >= 400 {
			code = r.Problem(t).Code
		}
		return r.Status, code, r.Header.Get("Retry-After")
	}

	t.Run("a user gets a burst of twice the rate, then 429 RATE_LIMITED with Retry-After", func(t *testing.T) {
		e := newEnv(t, withRateLimit(1))
		for i := range 2 {
			if s, _, _ := hold(e, "u1"); s != 201 {
				t.Fatalf("hold %d: %d", i, s)
			}
		}
		s, code, after := hold(e, "u1")
		if s != 429 || code != "RATE_LIMITED" || after != "1" {
			t.Fatalf("third hold: %d %s Retry-After %q", s, code, after)
		}
		if n := e.cmds.count("Hold"); n != 2 {
			t.Fatalf("Hold ran %d times", n)
		}
	})
	t.Run("the limit refills with time", func(t *testing.T) {
		e := newEnv(t, withRateLimit(1))
		hold(e, "u1")
		hold(e, "u1")
		e.clock.Advance(time.Second)
		if s, _, _ := hold(e, "u1"); s != 201 {
			t.Fatalf("after a second: %d", s)
		}
		if s, _, _ := hold(e, "u1"); s != 429 {
			t.Fatalf("the refill gave more than one token: %d", s)
		}
	})
	t.Run("users are limited separately", func(t *testing.T) {
		e := newEnv(t, withRateLimit(1))
		hold(e, "u1")
		hold(e, "u1")
		if s, _, _ := hold(e, "u2"); s != 201 {
			t.Fatalf("u2 was limited by u1: %d", s)
		}
	})
	t.Run("token issues and holds share the user's budget", func(t *testing.T) {
		e := newEnv(t, withRateLimit(1))
		e.Do(post("/api/v1/queue/tokens", `{"userId":"u1"}`)).Expect(t, 201, "")
		e.Do(post("/api/v1/queue/tokens", `{"userId":"u1"}`)).Expect(t, 200, "")
		if s, code, _ := hold(e, "u1"); s != 429 || code != "RATE_LIMITED" {
			t.Fatalf("hold after two issues: %d %s", s, code)
		}
		e.Do(post("/api/v1/queue/tokens", `{"userId":"u1"}`)).Expect(t, 429, "RATE_LIMITED")
	})
	t.Run("Retry-After rounds the wait up to whole seconds", func(t *testing.T) {
		e := newEnv(t, withRateLimit(0.25)) // burst 1 (at least one), one token per 4 s
		hold(e, "u1")
		e.clock.Advance(1500 * time.Millisecond)
		if s, _, after := hold(e, "u1"); s != 429 || after != "3" {
			t.Fatalf("got %d Retry-After %q, want 429 and 3", s, after)
		}
	})
	t.Run("charges are not limited", func(t *testing.T) {
		e := newEnv(t, withRateLimit(1))
		for i := range 5 {
			e.Do(post("/api/v1/users/u1/points/charge", fmt.Sprintf(`{"amount":%d}`, i+1))).Expect(t, 200, "")
		}
	})
	t.Run("a rate of 0 turns the limit off", func(t *testing.T) {
		e := newEnv(t, withRateLimit(0))
		for i := range 50 {
			if s, _, _ := hold(e, "u1"); s != 201 {
				t.Fatalf("hold %d: %d", i, s)
			}
		}
	})
}
