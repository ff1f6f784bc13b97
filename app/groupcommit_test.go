package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// The repository tests below decide on the wallet group of user u1: a group is the aggregate
// whose commands come in bursts (Service.wallets).
var u1 = eventstore.WalletGroupOf("u1").ID

func newWalletRepo(s eventstore.Store) *Repository[aggregates.Wallets] {
	r := NewRepository(s, eventstore.TypeWalletGroup, aggregates.Wallets.Apply, 100, nil, nil)
	r.owner = WalletEventRef
	return r
}

// walletCmd is a command of one user's wallet on the user's group.
type walletCmd = func(aggregates.Wallets) ([]aggregates.Event, error)

func chargeOf(user string, amount int64, ref string) walletCmd {
	return func(ws aggregates.Wallets) ([]aggregates.Event, error) {
		return ws.Decide(user, func(w aggregates.Wallet) ([]aggregates.Event, error) {
			return w.DecideCharge(aggregates.Charge{Amount: amount, Reference: ref})
		})
	}
}

func charge(amount int64, ref string) walletCmd { return chargeOf("u1", amount, ref) }

func debit(amount int64, payment string) walletCmd {
	return func(ws aggregates.Wallets) ([]aggregates.Event, error) {
		return ws.Decide("u1", func(w aggregates.Wallet) ([]aggregates.Event, error) {
			return w.DecideDebit(aggregates.Debit{Amount: amount, PaymentID: payment})
		})
	}
}

// balanceOf reads a user's balance through a repository of wallet groups.
func balanceOf(t *testing.T, repo *Repository[aggregates.Wallets], user string) int64 {
	t.Helper()
	ws, _, err := repo.Load(context.Background(), eventstore.WalletGroupOf(user).ID)
	if err != nil {
		t.Fatal(err)
	}
	return ws.Wallet(user).Balance()
}

type walletResult struct {
	ver uint64
	evs []aggregates.Event
	err error
}

// queueBehindFirst starts the first command, waits until its append is held at the gate,
// then starts the others one by one, each once the one before has queued behind it. The results come in the order given.
func queueBehindFirst(t *testing.T, g *gatedStore, repo *Repository[aggregates.Wallets], id string, cmds ...walletCmd) []chan walletResult {
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
		repo := newWalletRepo(g)
		cmds := []walletCmd{charge(5, "c0")}
		for i := 1; i <= 50; i++ {
			cmds = append(cmds, charge(10, fmt.Sprintf("c%d", i)))
		}
		results := queueBehindFirst(t, g, repo, u1, cmds...)
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
		envs, _ := g.Load(context.Background(), eventstore.WalletGroupOf("u1"), 0)
		ws := aggregates.Wallets{}
		for i, env := range envs {
			ev, _ := aggregates.Decode(env.Type, env.Data)
			ws = ws.Apply(ev)
			if want := fmt.Sprintf("cmd-%d", i); env.CorrelationID != want {
				t.Errorf("event %d carries correlation %q, want %q", i, env.CorrelationID, want)
			}
		}
		if b := ws.Wallet("u1").Balance(); b != 505 {
			t.Errorf("balance %d, want 505", b)
		}
	})

	t.Run("a command queued alone behind a commit leads the next one, and the lane is free after it", func(t *testing.T) {
		g := newGatedStore()
		repo := newWalletRepo(g)
		results := queueBehindFirst(t, g, repo, u1, charge(1, "c0"), charge(2, "c1"))
		close(g.gate)
		for i, ch := range results {
			if r := <-ch; r.err != nil {
				t.Fatalf("charge %d: %v", i, r.err)
			}
		}
		done := make(chan error, 1)
		go func() {
			_, err := repo.Do(context.Background(), u1, step{dedupID: "d-later"}, charge(4, "c2"))
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
		if n := repo.queued(u1); n != 0 {
			t.Errorf("%d commands still queued", n)
		}
	})

	t.Run("a command decided behind others sees their events: a debit queued behind a charge passes", func(t *testing.T) {
		g := newGatedStore()
		repo := newWalletRepo(g)
		results := queueBehindFirst(t, g, repo, u1, charge(1, "c0"), charge(100, "c1"), debit(100, "p1"), debit(100, "p2"))
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
		repo := newWalletRepo(g)
		results := queueBehindFirst(t, g, repo, u1, charge(1, "c0"), charge(2, "c1"), charge(3, "c2"))
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
		if b := balanceOf(t, repo, "u1"); b != 1 {
			t.Fatalf("balance %d; want 1 (only the first commit landed)", b)
		}
	})

	t.Run("a conflict with another instance discards the commit's decisions and decides them again", func(t *testing.T) {
		g := newGatedStore()
		close(g.gate)
		mine := newWalletRepo(g)
		other := newWalletRepo(g.MemStore)
		if _, err := mine.Do(context.Background(), u1, step{dedupID: "a"}, charge(100, "a")); err != nil {
			t.Fatal(err)
		}
		// The other instance spends the points; this one's cache still shows 100.
		if _, err := other.Do(context.Background(), u1, step{dedupID: "b"}, debit(100, "p-other")); err != nil {
			t.Fatal(err)
		}
		_, err := mine.Do(context.Background(), u1, step{dedupID: "c"}, debit(100, "p-mine"))
		if !errors.Is(err, aggregates.ErrInsufficientPoints) {
			t.Fatalf("debit decided on a stale cache: %v, want ErrInsufficientPoints after catching up", err)
		}
	})
}

func TestManyGoroutinesUpdatingOneAggregateLoseNothing(t *testing.T) {
	for _, sk := range stores {
		t.Run(sk.name, func(t *testing.T) {
			repo := newWalletRepo(sk.open(t))
			var wg sync.WaitGroup
			for i := range 400 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := repo.Do(context.Background(), u1, step{dedupID: fmt.Sprint(i)}, charge(1, fmt.Sprint(i))); err != nil {
						t.Errorf("charge %d: %v", i, err)
					}
				}()
			}
			wg.Wait()
			if b := balanceOf(t, repo, "u1"); b != 400 {
				t.Fatalf("balance %d; want 400", b)
			}
		})
	}
}

// usersOfGroup returns n users whose wallets share one group.
func usersOfGroup(n int) []string { return usersSharing(n, eventstore.WalletGroupOf) }

// usersSharing returns n users, u0 first, that groupOf puts in one group.
func usersSharing(n int, groupOf func(user string) eventstore.AggregateRef) []string {
	group := groupOf("u0")
	users := []string{"u0"}
	for i := 1; len(users) < n; i++ {
		if u := fmt.Sprintf("u%d", i); groupOf(u) == group {
			users = append(users, u)
		}
	}
	return users
}

func TestConcurrentChargesOfDifferentUsersOfOneGroupShareCommits(t *testing.T) {
	g := newGatedStore()
	h := newHarness(t, g, Config{}, true)
	users := usersOfGroup(20)
	group := eventstore.WalletGroupOf(users[0])
	type charge struct {
		user   string
		amount int64
		want   int64 // the balance answered, or 0 with err
		err    error
	}
	// The first charge's commit is held at the gate; every other command queues behind it
	// and must go in the next commit, each answered with its own wallet.
	cmds := []charge{{user: users[0], amount: 7, want: 7}}
	for i, u := range users[1:] {
		cmds = append(cmds, charge{user: u, amount: int64(100 + i), want: int64(100 + i)})
	}
	cmds = append(cmds,
		charge{user: users[1], amount: 1000, want: 1100},                    // the same user again: sees its first charge
		charge{user: users[2], amount: 0, err: aggregates.ErrInvalidAmount}, // refused alone, in the shared commit
		charge{user: users[0], amount: 3, want: 10},                         // the first user's charge, after its own commit
	)
	answers := make([]chan walletAnswer, len(cmds))
	for i, c := range cmds {
		answers[i] = make(chan walletAnswer, 1)
		go func() {
			w, err := h.svc.Charge(h.ctx, Meta{}, c.user, c.amount)
			answers[i] <- walletAnswer{w, err}
		}()
		if i == 0 {
			<-g.entered
			continue
		}
		waitFor(t, fmt.Sprintf("charge %d to queue", i), func() bool { return h.svc.wallets.repo.queued(group.ID) == i })
	}
	close(g.gate)
	for i, c := range cmds {
		a := <-answers[i]
		if c.err != nil {
			if !errors.Is(a.err, c.err) {
				t.Errorf("charge %d of %s: %v, want %v", i, c.user, a.err, c.err)
			}
			continue
		}
		if a.err != nil || a.w.UserID != c.user || a.w.Balance != c.want {
			t.Errorf("charge %d of %s answered %+v, %v; want balance %d", i, c.user, a.w, a.err, c.want)
		}
	}
	if n := g.appends.Load(); n != 2 {
		t.Errorf("%d appends for %d charges of %d users of one group, want 2", n, len(cmds), len(users))
	}
	balances := map[string]int64{}
	for _, c := range cmds {
		if c.err == nil {
			balances[c.user] += c.amount
		}
	}
	for _, u := range users {
		if b := h.wallet(u).Balance(); b != balances[u] {
			t.Errorf("balance of %s = %d, want %d", u, b, balances[u])
		}
	}
	// Readers of the log see wallet events, each on its own user's wallet.
	envs, err := g.Load(h.ctx, group, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, env := range envs {
		ev, err := aggregates.Decode(env.Type, env.Data)
		user, _ := aggregates.EventWalletUserID(ev)
		if err != nil || env.AggregateType != eventstore.TypeWallet || env.AggregateID != user || !slices.Contains(users, user) {
			t.Errorf("%s at %d is on %s/%s, names user %q (%v)", env.Type, env.Sequence, env.AggregateType, env.AggregateID, user, err)
		}
	}
}

type walletAnswer struct {
	w   Wallet
	err error
}

// pausableStore holds the appends made while it is paused until it is resumed, and counts the
// appends of concert dates.
type pausableStore struct {
	*eventstore.MemStore
	pause       atomic.Pointer[chan struct{}]
	dateAppends atomic.Int64
}

func (p *pausableStore) Append(ctx context.Context, agg eventstore.AggregateRef, expected uint64, events []eventstore.Event, dedupID string, meta eventstore.Metadata) (uint64, error) {
	if ch := p.pause.Load(); ch != nil {
		<-*ch
	}
	if agg.Type == eventstore.TypeDate {
		p.dateAppends.Add(1)
	}
	return p.MemStore.Append(ctx, agg, expected, events, dedupID, meta)
}

// TestHoldsFallingDueTogetherExpireInSharedCommits: the sweeper expires the holds that fall
// due together side by side, so that a date's expiries share its commits. One after another,
// each waited for a commit of its own, and under a sale's load abandoned seats stayed held long
// past their heldUntil.
func TestHoldsFallingDueTogetherExpireInSharedCommits(t *testing.T) {
	const holds = 40
	store := &pausableStore{MemStore: eventstore.NewMemStore()}
	h := newHarness(t, store, Config{}, true)
	h.concert(holds, 100)
	res := make([]string, holds)
	for i := range res {
		res[i] = h.hold(fmt.Sprintf("u%d", i), i+1)
	}
	h.clock.Advance(5 * time.Minute)
	before := store.dateAppends.Load()

	gate := make(chan struct{})
	store.pause.Store(&gate)
	done := make(chan int)
	go func() { done <- h.svc.ExpireDue(h.ctx) }()
	// The first expiry's commit waits at the gate; the others must queue behind it.
	waitFor(t, "the other expiries to queue behind the first commit", func() bool { return h.svc.dates.queued("c1.d1") == holds-1 })
	store.pause.Store(nil)
	close(gate)
	if n := <-done; n != holds {
		t.Fatalf("ExpireDue looked at %d holds, want %d", n, holds)
	}
	if n := store.dateAppends.Load() - before; n != 2 {
		t.Errorf("%d holds expired in %d date commits, want 2 (the first alone, the rest together)", holds, n)
	}
	for _, id := range res {
		if st := h.reservation(id).Status(); st != aggregates.ReservationStatusExpired {
			t.Fatalf("reservation %s is %s, want EXPIRED", id, st)
		}
	}
}
