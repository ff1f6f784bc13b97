package testclock

import (
	"sync"
	"testing"
	"time"
)

func TestClockMovesOnlyWhenTold(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		name string
		move func(c *Clock)
		want time.Time
	}{
		{"a new clock stands where it was put", func(*Clock) {}, t0},
		{"advancing moves it forward by that much", func(c *Clock) { c.Advance(90 * time.Second) }, t0.Add(90 * time.Second)},
		{"setting puts it anywhere, even back", func(c *Clock) { c.Set(t0.Add(-time.Hour)) }, t0.Add(-time.Hour)},
		{"a ticking clock moves on by the tick at every reading", func(c *Clock) { c.Tick(time.Second); c.Now(); c.Now() }, t0.Add(2 * time.Second)},
		{"a clock whose tick is reset to 0 stands still again", func(c *Clock) { c.Tick(time.Second); c.Now(); c.Tick(0); c.Now() }, t0.Add(time.Second)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := New(t0)
			tt.move(c)
			if got := c.Now(); !got.Equal(tt.want) {
				t.Fatalf("Now() = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestConcurrentAdvancesAllCount(t *testing.T) {
	c := New(time.Time{})
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() { c.Advance(time.Second); _ = c.Now() })
	}
	wg.Wait()
	if got := c.Now(); !got.Equal(time.Time{}.Add(100 * time.Second)) {
		t.Fatalf("after 100 concurrent advances of 1 s the clock reads %v", got)
	}
}
