// Package testclock is the settable clock tests inject wherever the engine reads the time, so
// that expiry, TTLs and windows are driven by the test rather than by the wall clock. It lives
// apart from every package's own test helpers because those cannot import one another: the
// event store's tests cannot import the API's, nor the API's internal tests their own apitest.
package testclock

import (
	"sync"
	"time"
)

// Clock is a settable clock, safe for concurrent use. The zero value stands at the zero time.
type Clock struct {
	mu   sync.Mutex
	now  time.Time
	tick time.Duration
}

// New returns a clock standing at t.
func New(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the clock's time, then moves it forward by the tick (see Tick).
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now
	c.now = c.now.Add(c.tick)
	return now
}

// Tick makes every later Now read d after the one before, like a real clock that never
// stands still: for tests of what is ordered by time. 0 stops the clock again.
func (c *Clock) Tick(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tick = d
}

// Advance moves the clock forward by d.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// Set puts the clock at t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}
