package api

import (
	"fmt"
	"testing"
	"time"
)

func TestUserLimiterForgetsTheLeastRecentlySeenUser(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	l := newUserLimiter(1, 3)
	for i := range 3 {
		l.allow(fmt.Sprint("u", i), now)
	}
	l.allow("u0", now) // u0 is recent again; u1 is now the oldest
	l.allow("u0", now) // u0's burst of 2 is spent
	l.allow("u3", now) // evicts u1
	if got := l.size(); got != 3 {
		t.Fatalf("tracks %d users, want 3", got)
	}
	if ok, _ := l.allow("u0", now); ok {
		t.Fatal("u0 was forgotten although it was seen recently")
	}
	if _, tracked := l.users["u1"]; tracked {
		t.Fatal("u1, the least recently seen, is still tracked")
	}
}
