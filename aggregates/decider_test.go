package aggregates

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

// t0 is the fixed time base of every test: nothing here reads the clock.
var t0 = time.Date(2026, 12, 24, 10, 0, 0, 0, time.UTC)

// at returns t0 plus d, to keep the cases short.
func at(d time.Duration) time.Time { return t0.Add(d) }

// spec is one given/when/then case of a decider of state S.
type spec[S any] struct {
	name  string
	given []Event
	when  func(S) ([]Event, error)
	then  []Event
	err   error
	// after, when set, checks the state folded from given and then.
	after func(*testing.T, S)
}

// fold rebuilds a state from its events, as the repository does.
func fold[S any](apply func(S, Event) S, events ...[]Event) S {
	var s S
	for _, es := range events {
		for _, e := range es {
			s = apply(s, e)
		}
	}
	return s
}

// run checks each case: the state is folded from given, the decider answers when, and the
// answer must be exactly then (no events for a no-op) or an error that Is err.
func run[S any](t *testing.T, apply func(S, Event) S, cases []spec[S]) {
	t.Helper()
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.when(fold(apply, tt.given))
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("error = %v, want %v", err, tt.err)
				}
				if !IsRefusal(err) {
					t.Fatalf("error %v is not a Refusal: the sagas would take it for an infrastructure failure and retry it for ever", err)
				}
				if len(got) != 0 {
					t.Fatalf("a refused command must cause no events, got %#v", got)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if len(got) != 0 || len(tt.then) != 0 {
				if !reflect.DeepEqual(got, tt.then) {
					t.Fatalf("events =\n%#v\nwant\n%#v", got, tt.then)
				}
			}
			if tt.after != nil {
				// Fold afresh: Apply of some states reuses the receiver's maps and slices.
				tt.after(t, fold(apply, tt.given, tt.then))
			}
		})
	}
}
