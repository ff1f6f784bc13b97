package loadgen

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Clock is the time source of the scheduler and of every latency measurement, so that tests
// can run a schedule in virtual time.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// SleepUntil returns once t has passed, or with ctx's error when ctx ends first.
	SleepUntil(ctx context.Context, t time.Time) error
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// SleepUntil blocks until t or until ctx ends.
func (RealClock) SleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Schedule is an open-model arrival plan: Count requests at Rate per second, the first at once.
type Schedule struct {
	// Rate is the number of launches per second (> 0).
	Rate float64
	// Count is the number of launches (>= 0).
	Count int
	// MaxInflight caps the calls running at once (> 0). A launch that finds the cap reached
	// waits for a free slot; its latency, measured from its scheduled time, includes the wait.
	MaxInflight int
}

// CountFor returns how many launches a run of d at rate per second makes.
func CountFor(rate float64, d time.Duration) int {
	return int(rate*d.Seconds() + 0.5)
}

// ScheduleStats says how faithfully a schedule was kept.
type ScheduleStats struct {
	// Launched is the number of calls started (Count unless ctx ended early).
	Launched int
	// CapHits counts launches that found MaxInflight calls running and had to wait.
	CapHits int64
	// MaxLag is the longest delay between a call's scheduled time and its launch: large values
	// mean the generator (or the cap) could not keep the rate, and the figures include it.
	MaxLag time.Duration
}

// ErrBadSchedule is returned for a schedule that cannot be run.
var ErrBadSchedule = errors.New("bad schedule")

// testHookCapWait lets a test see that a launch is about to wait for the in-flight cap.
var testHookCapWait = func() {}

// RunOpen launches fn once per planned arrival at start + i/Rate seconds, without waiting for
// earlier calls to finish (bounded by MaxInflight): each call runs on an idle worker goroutine,
// or on a new one when none is idle. It passes each call its index and scheduled time and
// returns when every launched call has returned.
// When ctx ends, no further calls are launched and ctx's error is returned after the running
// ones finish. The calls get a context that ctx's end does not cancel: an interrupted run
// lets its requests answer (each within its own timeout), so that they are counted as what
// the service answered, not as errors of the generator's making.
func RunOpen(ctx context.Context, clk Clock, s Schedule, fn func(ctx context.Context, i int, scheduled time.Time)) (ScheduleStats, error) {
	var st ScheduleStats
	if s.Rate <= 0 || s.Count < 0 || s.MaxInflight <= 0 {
		return st, fmt.Errorf("%w: rate %g, count %d, max in flight %d", ErrBadSchedule, s.Rate, s.Count, s.MaxInflight)
	}
	slots := make(chan struct{}, s.MaxInflight)
	callCtx := context.WithoutCancel(ctx)
	// Workers outlive their calls: a goroutine per call started with a small stack and grew
	// it again for every request (the HTTP client's frames), a tenth of the generator's CPU
	// at 10,000 requests/s, taken from the service it measures on a shared machine.
	calls := make(chan call)
	workers := 0
	var wg sync.WaitGroup
	defer func() {
		close(calls)
		wg.Wait()
	}()
	worker := func(c call) {
		defer wg.Done()
		for {
			fn(callCtx, c.i, c.at)
			<-slots
			var ok bool
			if c, ok = <-calls; !ok {
				return
			}
		}
	}
	start := clk.Now()
	perLaunch := float64(time.Second) / s.Rate
	for i := 0; i < s.Count; i++ {
		// Multiplying rather than adding a period keeps rounding from drifting the rate.
		at := start.Add(time.Duration(float64(i) * perLaunch))
		if clk.Now().Before(at) {
			if err := clk.SleepUntil(ctx, at); err != nil {
				return st, err
			}
		}
		if err := ctx.Err(); err != nil {
			return st, err
		}
		select {
		case slots <- struct{}{}:
		default:
			st.CapHits++
			testHookCapWait()
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				return st, ctx.Err()
			}
		}
		if lag := clk.Now().Sub(at); lag > st.MaxLag {
			st.MaxLag = lag
		}
		st.Launched++
		c := call{i, at}
		select {
		case calls <- c:
		default:
			if workers < s.MaxInflight {
				workers++
				wg.Add(1)
				go worker(c)
				break
			}
			// Every worker exists and the slot just taken says one of them has finished its
			// call: it is on its way back.
			calls <- c
		}
	}
	return st, nil
}

// call is one launch handed to a worker.
type call struct {
	i  int
	at time.Time
}
