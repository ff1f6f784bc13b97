package aggregates

import (
	"slices"
	"time"
)

// expiring is what a state may forget once a retention has passed, in the order it was added:
// a date's ended reservations and payments, a wallet group's settled references, a queue
// group's users. A state adds an item in Apply, which does not know the time, and its Compact
// (the repository's hook, called after every event with the event's recorded time) stamps the
// items added since with that time and takes off the head those stamped a retention before it.
// So a live process and a replay of the log forget the same items at the same event.
type expiring[T any] struct{ items []stamped[T] }

type stamped[T any] struct {
	at time.Time // zero until the Compact after the item was added
	v  T
}

// add returns the list with v at its end.
func (e expiring[T]) add(v T) expiring[T] {
	e.items = append(e.items, stamped[T]{v: v})
	return e
}

// expire stamps the items added since the last call with at, and takes off the head the items
// stamped more than keep before at: it returns the list without them, and them, oldest first,
// for the caller to forget, sharing the list's array: read them, never append to them (no callback: Compact runs after every event of a hold, and a
// closure over the state would be allocated each time).
func (e expiring[T]) expire(at time.Time, keep time.Duration) (expiring[T], []stamped[T]) {
	for i := len(e.items) - 1; i >= 0 && e.items[i].at.IsZero(); i-- {
		e.items[i].at = at
	}
	horizon := at.Add(-keep)
	n := 0
	for n < len(e.items) && e.items[n].at.Before(horizon) {
		n++
	}
	gone := e.items[:n]
	e.items = e.items[n:]
	return e, gone
}

// clone returns a copy that no later add or expire of either changes.
func (e expiring[T]) clone() expiring[T] { return expiring[T]{items: slices.Clone(e.items)} }

// len returns how many items wait to expire.
func (e expiring[T]) len() int { return len(e.items) }
