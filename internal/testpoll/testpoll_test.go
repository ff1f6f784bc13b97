package testpoll

import (
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// fakeT records a failure instead of ending the test, so that Eventually's own failure can be
// asserted on.
type fakeT struct {
	testing.TB
	failed atomic.Bool
}

func (f *fakeT) Helper() {}

func (f *fakeT) Fatalf(string, ...any) {
	f.failed.Store(true)
	// Fatalf must not return to its caller; Goexit ends the goroutine as testing's does.
	runtime.Goexit()
}

func TestEventually(t *testing.T) {
	tests := []struct {
		name     string
		holdsIn  time.Duration // -1: never
		within   time.Duration
		wantFail bool
	}{
		{name: "a condition that already holds passes at once", holdsIn: 0, within: time.Second},
		{name: "a condition that comes to hold before the deadline passes", holdsIn: 20 * time.Millisecond, within: 10 * time.Second},
		{name: "a condition that never holds fails at the deadline", holdsIn: -1, within: 30 * time.Millisecond, wantFail: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var holds atomic.Bool
			if tc.holdsIn == 0 {
				holds.Store(true)
			} else if tc.holdsIn > 0 {
				timer := time.AfterFunc(tc.holdsIn, func() { holds.Store(true) })
				defer timer.Stop()
			}
			ft := &fakeT{TB: t}
			done := make(chan struct{})
			go func() {
				defer close(done)
				Eventually(ft, tc.within, "the condition", holds.Load)
			}()
			<-done
			if got := ft.failed.Load(); got != tc.wantFail {
				t.Errorf("failed = %v, want %v", got, tc.wantFail)
			}
		})
	}
}
