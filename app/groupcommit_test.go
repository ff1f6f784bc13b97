package app

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// gatedStore holds every append until the test opens the gate, so that commands can be made
// to queue behind a commit in flight; it counts the appends that reach the store.
type gatedStore struct {
	*eventstore.MemStore
	gate    chan struct{}
	entered chan struct{} // one send per append that reached the gate
	appends atomic.Int64
	fail    atomic.Pointer[error] // when set, the next append fails with it
}

func newGatedStore() *gatedStore {
	return &gatedStore{MemStore: eventstore.NewMemStore(), gate: make(chan struct{}), entered: make(chan struct{}, 1024)}
}

func (g *gatedStore) Append(ctx context.Context, agg eventstore.AggregateRef, expected uint64, events []eventstore.Event, dedupID string, meta eventstore.Metadata) (uint64, error) {
	g.entered <- struct{}{}
	<-g.gate
	g.appends.Add(1)
	if err := g.fail.Swap(nil); err != nil {
		return 0, *err
	}
	return g.MemStore.Append(ctx, agg, expected, events, dedupID, meta)
}

// queued reports how many commands of an aggregate wait behind the commit under way.
func (r *Repository[S]) queued(id string) int {
	sh := r.lanes.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return len(sh.queue[id])
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func charge(amount int64, ref string) func(aggregates.Wallet) ([]aggregates.Event, error) {
	return func(w aggregates.Wallet) ([]aggregates.Event, error) {
		return w.DecideCharge(aggregates.Charge{Amount: amount, Reference: ref})
	}
}

func debit(amount int64, payment string) func(aggregates.Wallet) ([]aggregates.Event, error) {
	return func(w aggregates.Wallet) ([]aggregates.Event, error) {
		return w.DecideDebit(aggregates.Debit{Amount: amount, PaymentID: payment})
	}
}

type walletResult struct {
	ver uint64
	evs []aggregates.Event
	err error
}

// queueBehindFirst starts the first command, waits until its append is held at the gate,
// then starts the others one by one, each once the one before has queued behind it. The results come in the order given.
func queueBehindFirst(t *testing.T, g *gatedStore, repo *Repository[aggregates.Wallet], id string, cmds ...func(aggregates.Wallet) ([]aggregates.Event, error)) []chan walletResult {
	t.Helper()
	out := make([]chan walletResult, len(cmds))
	start := func(i int) {
		out[i] = make(chan walletResult, 1)
		go func() {
			meta := eventstore.Metadata{CorrelationID: fmt.Sprintf("cmd-%d", i)}
			_, ver, evs, err := repo.Update(context.Background(), id, step{dedupID: fmt.Sprintf("d-%d", i), meta: meta}, cmds[i])
			out[i] <- walletResult{ver, evs, err}
		}()
	}
	start(0)
	<-g.entered
	for i := 1; i < len(cmds); i++ {
		start(i)
		waitFor(t, fmt.Sprintf("command %d to queue", i), func() bool { return repo.queued(id) == i })
	}
	return out
}

func TestConcurrentUpdatesOfOneAggregateShareCommits(t *testing.T) {
	t.Run("commands queued behind a commit in flight go as the next single commit, each with its own metadata", func(t *testing.T) {
		g := newGatedStore()
		repo := NewRepository(g, eventstore.TypeWallet, aggregates.Wallet.Apply, 100, nil, nil)
		cmds := []func(aggregates.Wallet) ([]aggregates.Event, error){charge(5, "c0")}
		for i := 1; i <= 50; i++ {
			cmds = append(cmds, charge(10, fmt.Sprintf("c%d", i)))
		}
		results := queueBehindFirst(t, g, repo, "u1", cmds...)
		close(g.gate)
		versions := map[uint64]int{}
		for i, ch := range results {
			r := <-ch
			if r.err != nil || len(r.evs) != 1 {
				t.Fatalf("command %d: %d events, %v", i, len(r.evs), r.err)
			}
			versions[r.ver]++
		}
		if n := g.appends.Load(); n != 2 {
			t.Errorf("%d appends for 51 charges queued behind one, want 2", n)
		}
		if len(versions) != 2 || versions[1] != 1 {
			t.Errorf("commands per version %v, want 1 at version 1 and 50 at the next", versions)
		}
		envs, _ := g.Load(context.Background(), eventstore.AggregateRef{Type: eventstore.TypeWallet, ID: "u1"}, 0)
		w := aggregates.Wallet{}
		for i, env := range envs {
			ev, _ := aggregates.Decode(env.Type, env.Data)
			w = w.Apply(ev)
			if want := fmt.Sprintf("cmd-%d", i); env.CorrelationID != want {
				t.Errorf("event %d carries correlation %q, want %q", i, env.CorrelationID, want)
			}
		}
		if w.Balance() != 505 {
			t.Errorf("balance %d, want 505", w.Balance())
		}
	})

	t.Run("a command queued alone behind a commit leads the next one, and the lane is free after it", func(t *testing.T) {
		g := newGatedStore()
		repo := NewRepository(g, eventstore.TypeWallet, aggregates.Wallet.Apply, 100, nil, nil)
		results := queueBehindFirst(t, g, repo, "u1", charge(1, "c0"), charge(2, "c1"))
		close(g.gate)
		for i, ch := range results {
			if r := <-ch; r.err != nil {
				t.Fatalf("charge %d: %v", i, r.err)
			}
		}
		done := make(chan error, 1)
		go func() {
			_, err := repo.Do(context.Background(), "u1", step{dedupID: "d-later"}, charge(4, "c2"))
			done <- err
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("a later charge: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a later charge of the aggregate waited behind a lane that never closed")
		}
		if n := repo.queued("u1"); n != 0 {
			t.Errorf("%d commands still queued", n)
		}
	})

	t.Run("a command decided behind others sees their events: a debit queued behind a charge passes", func(t *testing.T) {
		g := newGatedStore()
		repo := NewRepository(g, eventstore.TypeWallet, aggregates.Wallet.Apply, 100, nil, nil)
		results := queueBehindFirst(t, g, repo, "u1", charge(1, "c0"), charge(100, "c1"), debit(100, "p1"), debit(100, "p2"))
		close(g.gate)
		want := []error{nil, nil, nil, aggregates.ErrInsufficientPoints}
		for i, ch := range results {
			if r := <-ch; !errors.Is(r.err, want[i]) {
				t.Errorf("command %d: %v, want %v", i, r.err, want[i])
			}
		}
	})

	t.Run("a failed commit answers every command in it with the error and the next command reads the log", func(t *testing.T) {
		g := newGatedStore()
		repo := NewRepository(g, eventstore.TypeWallet, aggregates.Wallet.Apply, 100, nil, nil)
		results := queueBehindFirst(t, g, repo, "u1", charge(1, "c0"), charge(2, "c1"), charge(3, "c2"))
		down := fmt.Errorf("store down: %w", eventstore.ErrUnavailable)
		// The first commit lands; the second, holding the two queued charges, fails.
		g.gate <- struct{}{}
		if r := <-results[0]; r.err != nil {
			t.Fatalf("first charge: %v", r.err)
		}
		g.fail.Store(&down)
		close(g.gate)
		for i, ch := range results[1:] {
			if r := <-ch; !errors.Is(r.err, eventstore.ErrUnavailable) {
				t.Errorf("charge %d of the failed commit: %v, want ErrUnavailable", i+1, r.err)
			}
		}
		w, _, err := repo.Load(context.Background(), "u1")
		if err != nil || w.Balance() != 1 {
			t.Fatalf("balance %d, %v; want 1 (only the first commit landed)", w.Balance(), err)
		}
	})

	t.Run("a conflict with another instance discards the commit's decisions and decides them again", func(t *testing.T) {
		g := newGatedStore()
		close(g.gate)
		mine := NewRepository(g, eventstore.TypeWallet, aggregates.Wallet.Apply, 100, nil, nil)
		other := NewRepository(eventstore.Store(g.MemStore), eventstore.TypeWallet, aggregates.Wallet.Apply, 100, nil, nil)
		if _, err := mine.Do(context.Background(), "u1", step{dedupID: "a"}, charge(100, "a")); err != nil {
			t.Fatal(err)
		}
		// The other instance spends the points; this one's cache still shows 100.
		if _, err := other.Do(context.Background(), "u1", step{dedupID: "b"}, debit(100, "p-other")); err != nil {
			t.Fatal(err)
		}
		_, err := mine.Do(context.Background(), "u1", step{dedupID: "c"}, debit(100, "p-mine"))
		if !errors.Is(err, aggregates.ErrInsufficientPoints) {
			t.Fatalf("debit decided on a stale cache: %v, want ErrInsufficientPoints after catching up", err)
		}
	})
}

func TestManyGoroutinesUpdatingOneAggregateLoseNothing(t *testing.T) {
	for _, sk := range stores {
		t.Run(sk.name, func(t *testing.T) {
			repo := NewRepository(sk.open(t), eventstore.TypeWallet, aggregates.Wallet.Apply, 100, nil, nil)
			var wg sync.WaitGroup
			for i := range 400 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := repo.Do(context.Background(), "u1", step{dedupID: fmt.Sprint(i)}, charge(1, fmt.Sprint(i))); err != nil {
						t.Errorf("charge %d: %v", i, err)
					}
				}()
			}
			wg.Wait()
			w, _, err := repo.Load(context.Background(), "u1")
			if err != nil || w.Balance() != 400 {
				t.Fatalf("balance %d, %v; want 400", w.Balance(), err)
			}
		})
	}
}
