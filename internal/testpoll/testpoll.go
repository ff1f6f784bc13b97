// Package testpoll waits in tests for what a background goroutine does, by polling with a
// deadline rather than sleeping for a guessed time. It is shared by packages whose tests cannot
// import one another's test code (the relay's and its mock platform's).
package testpoll

import (
	"testing"
	"time"
)

// interval is how often a condition is checked: a polling interval, not a wait for an outcome.
const interval = 5 * time.Millisecond

// Eventually polls cond until it holds, and fails the test if it does not within the given
// time; what names the awaited outcome in the failure.
func Eventually(t testing.TB, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", within, what)
		}
		time.Sleep(interval)
	}
}
