package eventstore_test

import (
	"testing"
	"time"

	"github.com/booking-engine/booking/eventstore"

	"github.com/booking-engine/booking/internal/testclock"
)

func TestMemStoreDedupWindow(t *testing.T) {
	tests := []struct {
		name    string
		advance time.Duration
		writes  bool
	}{
		{"a repeat inside the duplicate window writes nothing", eventstore.DuplicateWindow - time.Second, false},
		{"a repeat after the duplicate window is a new append, as in JetStream", eventstore.DuplicateWindow, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := testclock.New(time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC))
			s := eventstore.NewMemStore(eventstore.WithMemClock(clock.Now))
			ctx := testCtx(t)
			// Two appends, so that the repeat passes the expected check and only dedup can stop it.
			if _, err := s.Append(ctx, concert, 0, []eventstore.Event{event("a")}, "a", meta); err != nil {
				t.Fatal(err)
			}
			clock.Advance(tt.advance)
			v2, err := s.Append(ctx, concert, 1, []eventstore.Event{event("b")}, "b", meta)
			if err != nil {
				t.Fatal(err)
			}
			got, err := s.Append(ctx, concert, v2, []eventstore.Event{event("a")}, "a", meta)
			if err != nil {
				t.Fatal(err)
			}
			if wrote := got != 1; wrote != tt.writes {
				t.Errorf("the repeat returned version %d (wrote: %v, want %v)", got, wrote, tt.writes)
			}
		})
	}
}

func TestMemStoreStampsEventsWithoutATimeByItsClock(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	s := eventstore.NewMemStore(eventstore.WithMemClock(func() time.Time { return at }))
	if _, err := s.Append(testCtx(t), concert, 0, []eventstore.Event{event("a")}, "a", eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	envs, err := s.Load(testCtx(t), concert, 0)
	if err != nil || len(envs) != 1 || !envs[0].OccurredAt.Equal(at) {
		t.Fatalf("loaded %+v, %v", envs, err)
	}
}
