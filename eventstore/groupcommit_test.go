package eventstore_test

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/booking-engine/booking/eventstore"
)

// burst appends one event to each of n fresh concerts (all in the CATALOG stream) at once,
// plus, when stale is set, one append to stale at version 0 although it has events. It checks
// every answer: each fresh append gets its own version, which Load confirms, and a repeat
// with the same dedup ID gets the same version; the stale append gets ErrConcurrency.
func burst(t *testing.T, s *eventstore.JetStreamStore, round, n int, stale *eventstore.AggregateRef) {
	t.Helper()
	ctx := testCtx(t)
	versions := make([]uint64, n)
	errs := make([]error, n)
	var staleErr error
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Go(func() {
			<-start
			agg := eventstore.AggregateRef{Type: eventstore.TypeConcert, ID: fmt.Sprintf("r%d-%d", round, i)}
			versions[i], errs[i] = s.Append(ctx, agg, 0, []eventstore.Event{event(agg.ID)}, "d-"+agg.ID, meta)
		})
	}
	if stale != nil {
		wg.Go(func() {
			<-start
			_, staleErr = s.Append(ctx, *stale, 0, []eventstore.Event{event("stale")}, fmt.Sprint("stale-", round), meta)
		})
	}
	close(start)
	wg.Wait()
	if stale != nil && !errors.Is(staleErr, eventstore.ErrConcurrency) {
		t.Fatalf("stale append: %v, want ErrConcurrency", staleErr)
	}
	seen := make(map[uint64]int, n)
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("append %d: %v", i, errs[i])
		}
		if j, dup := seen[versions[i]]; dup {
			t.Fatalf("appends %d and %d both got version %d", j, i, versions[i])
		}
		seen[versions[i]] = i
		agg := eventstore.AggregateRef{Type: eventstore.TypeConcert, ID: fmt.Sprintf("r%d-%d", round, i)}
		envs, err := s.Load(ctx, agg, 0)
		if err != nil || len(envs) != 1 || envs[0].Sequence != versions[i] || envs[0].AggregateID != agg.ID {
			t.Fatalf("load %s: %d events (%v), want one at %d", agg.ID, len(envs), err, versions[i])
		}
		again, err := s.Append(ctx, agg, 0, []eventstore.Event{event(agg.ID)}, "d-"+agg.ID, meta)
		if err != nil || again != versions[i] {
			t.Fatalf("repeat of append %d: version %d (%v), want %d", i, again, err, versions[i])
		}
	}
}

// untilBatched runs bursts until the store reports what want looks for, checking every burst:
// whether appends queue up enough to batch depends on scheduling, so the test polls (with a
// deadline) rather than assume one burst does it.
func untilBatched(t *testing.T, s *eventstore.JetStreamStore, stale *eventstore.AggregateRef, want func(eventstore.GroupCommitStats) bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for round := 0; ; round++ {
		burst(t, s, round, 300, stale)
		st := s.GroupCommitStats()
		if want(st) {
			t.Logf("after %d bursts: %+v", round+1, st)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no batch after %d bursts: %+v", round+1, st)
		}
	}
}

func TestConcurrentAppendsToOneStreamAreCommittedInBatchesWithTheirOwnAnswers(t *testing.T) {
	s := openEmbedded(t, true)
	untilBatched(t, s, nil, func(st eventstore.GroupCommitStats) bool { return st.Batches > 0 })
	if st := s.GroupCommitStats(); st.Appends < st.Batches*2 || st.Failures != 0 {
		t.Fatalf("stats %+v: want batches of several appends and no failures", st)
	}
}

func TestAConflictInABatchFailsOnlyItsOwnAppend(t *testing.T) {
	s := openEmbedded(t, true)
	ctx := testCtx(t)
	hot := eventstore.AggregateRef{Type: eventstore.TypeConcert, ID: "hot"}
	if _, err := s.Append(ctx, hot, 0, []eventstore.Event{event("first")}, "hot-1", meta); err != nil {
		t.Fatal(err)
	}
	// A refused batch is retried append by append, so the burst's checks hold whether or not
	// the stale append shared a batch; the test goes on until one did.
	untilBatched(t, s, &hot, func(st eventstore.GroupCommitStats) bool { return st.Failures > 0 })
	envs, err := s.Load(ctx, hot, 0)
	if err != nil || len(envs) != 1 {
		t.Fatalf("hot aggregate: %d events (%v), want only its first", len(envs), err)
	}
}

func TestGroupCommitOffPublishesEveryAppendAlone(t *testing.T) {
	s := openEmbeddedWith(t, eventstore.Options{SyncAlways: true, NoGroupCommit: true})
	burst(t, s, 0, 300, nil)
	if st := s.GroupCommitStats(); st != (eventstore.GroupCommitStats{}) {
		t.Fatalf("stats %+v with group commit off, want none", st)
	}
}
