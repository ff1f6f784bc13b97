package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/booking-engine/booking/eventstore"

	"github.com/booking-engine/booking/internal/testclock"
)

func openTestJetStream(t testing.TB) *eventstore.JetStreamStore {
	t.Helper()
	st, err := eventstore.Open(context.Background(), eventstore.Options{DataDir: t.TempDir(), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

var testBuckets atomic.Int64

// sharedInstances opens n stores on one new bucket, as n instances of the service do.
func sharedInstances(t testing.TB, js jetstream.JetStream, clock *testclock.Clock, n int) []*kvAnswers {
	t.Helper()
	bucket := fmt.Sprint("idem_internal_", testBuckets.Add(1))
	out := make([]*kvAnswers, n)
	for i := range out {
		b, err := openKVAnswers(context.Background(), js, bucket, 1, clock)
		if err != nil {
			t.Fatal(err)
		}
		b.pollEvery = 5 * time.Millisecond
		out[i] = b
	}
	return out
}

type claimResult struct {
	a     storedAnswer
	found bool
	rev   uint64
	err   error
}

func claimAsync(ctx context.Context, b *kvAnswers, scope string) <-chan claimResult {
	ch := make(chan claimResult, 1)
	go func() {
		var r claimResult
		r.a, r.found, r.rev, r.err = b.claim(ctx, scope)
		ch <- r
	}()
	return ch
}

// awaitWaiter returns once a request waits on a claim in b's bucket: its watch is a consumer
// of the bucket's stream.
func awaitWaiter(t *testing.T, js jetstream.JetStream, b *kvAnswers) {
	t.Helper()
	stream, err := js.Stream(context.Background(), "KV_"+b.kv.Bucket())
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		info, err := stream.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Consumers > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("nobody started waiting on the claim")
		}
	}
}

func receive(t *testing.T, ch <-chan claimResult) claimResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the waiting claim did not end")
		return claimResult{}
	}
}

func mustClaim(t *testing.T, b *kvAnswers, scope string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, found, rev, err := b.claim(ctx, scope)
	if err != nil || found || rev == 0 {
		t.Fatalf("claim: found %v (%q), rev %d, err %v", found, a.Body, rev, err)
	}
	return rev
}

func mustFind(t *testing.T, b *kvAnswers, scope, body string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	a, found, _, err := b.claim(ctx, scope)
	if err != nil || !found || string(a.Body) != body {
		t.Fatalf("found %v %q (%v), want %q", found, a.Body, err, body)
	}
}

func TestSharedIdempotencyStore(t *testing.T) {
	js := openTestJetStream(t).JetStream()
	ctx := context.Background()
	const scope = "POST /api/v1/users/:userId/points/charge\x00u1\x00k 1"
	newClock := func() *testclock.Clock { return testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) }

	t.Run("a scope is claimed once and the other instance replays the answer kept under the claim", func(t *testing.T) {
		in := sharedInstances(t, js, newClock(), 2)
		rev := mustClaim(t, in[0], scope)
		if err := in[0].keep(ctx, scope, rev, storedAnswer{Status: 200, Body: []byte("first")}); err != nil {
			t.Fatal(err)
		}
		mustFind(t, in[1], scope, "first")
		mustFind(t, in[0], scope, "first")
	})
	t.Run("an instance waits for the other's running claim and replays its answer", func(t *testing.T) {
		in := sharedInstances(t, js, newClock(), 2)
		rev := mustClaim(t, in[0], scope)
		waiter := claimAsync(ctx, in[1], scope)
		awaitWaiter(t, js, in[1])
		if err := in[0].keep(ctx, scope, rev, storedAnswer{Status: 201, Body: []byte("made")}); err != nil {
			t.Fatal(err)
		}
		if r := receive(t, waiter); r.err != nil || !r.found || string(r.a.Body) != "made" {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("a released claim lets the waiting instance run the request", func(t *testing.T) {
		in := sharedInstances(t, js, newClock(), 2)
		rev := mustClaim(t, in[0], scope)
		waiter := claimAsync(ctx, in[1], scope)
		awaitWaiter(t, js, in[1])
		if err := in[0].release(ctx, scope, rev); err != nil {
			t.Fatal(err)
		}
		if r := receive(t, waiter); r.err != nil || r.found || r.rev == 0 {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("a claim as old as the bound is taken over at once and its late answer is refused", func(t *testing.T) {
		clock := newClock()
		in := sharedInstances(t, js, clock, 2)
		first := mustClaim(t, in[0], scope)
		clock.Advance(claimAbandonAfter)
		second := mustClaim(t, in[1], scope)
		err := in[0].keep(ctx, scope, first, storedAnswer{Status: 200, Body: []byte("late")})
		if err == nil || errors.Is(err, eventstore.ErrUnavailable) {
			t.Fatalf("the late answer of a taken-over claim: %v", err)
		}
		if err := in[1].keep(ctx, scope, second, storedAnswer{Status: 200, Body: []byte("second")}); err != nil {
			t.Fatal(err)
		}
		mustFind(t, in[0], scope, "second")
	})
	t.Run("a waiting instance takes over a claim that grows as old as the bound", func(t *testing.T) {
		clock := newClock()
		in := sharedInstances(t, js, clock, 2)
		mustClaim(t, in[0], scope)
		waiter := claimAsync(ctx, in[1], scope)
		awaitWaiter(t, js, in[1])
		clock.Advance(claimAbandonAfter)
		if r := receive(t, waiter); r.err != nil || r.found || r.rev == 0 {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("a leftover claim of the same instance is taken over without waiting", func(t *testing.T) {
		in := sharedInstances(t, js, newClock(), 1)
		first := mustClaim(t, in[0], scope) // its release failed, say
		if second := mustClaim(t, in[0], scope); second == first {
			t.Fatalf("claim %d reused", second)
		}
	})
	t.Run("an answer is replayed for 24 hours and not a nanosecond longer", func(t *testing.T) {
		clock := newClock()
		in := sharedInstances(t, js, clock, 2)
		rev := mustClaim(t, in[0], scope)
		if err := in[0].keep(ctx, scope, rev, storedAnswer{Status: 200, Body: []byte("old")}); err != nil {
			t.Fatal(err)
		}
		clock.Advance(IdempotencyTTL)
		mustFind(t, in[1], scope, "old")
		clock.Advance(time.Nanosecond)
		mustClaim(t, in[1], scope)
	})
	t.Run("a waiter gives up when its context ends", func(t *testing.T) {
		in := sharedInstances(t, js, newClock(), 2)
		mustClaim(t, in[0], scope)
		wctx, cancel := context.WithCancel(ctx)
		waiter := claimAsync(wctx, in[1], scope)
		awaitWaiter(t, js, in[1])
		cancel()
		if r := receive(t, waiter); !errors.Is(r.err, context.Canceled) {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("a sweep deletes expired answers and abandoned claims and nothing live", func(t *testing.T) {
		clock := newClock()
		b := sharedInstances(t, js, clock, 1)[0]
		keep := func(scope string) {
			if err := b.keep(ctx, scope, mustClaim(t, b, scope), storedAnswer{Status: 200, Body: []byte(scope)}); err != nil {
				t.Fatal(err)
			}
		}
		keep("expired")
		mustClaim(t, b, "abandoned")
		clock.Advance(time.Hour)
		keep("live")
		clock.Advance(IdempotencyTTL - time.Hour + time.Nanosecond)
		mustClaim(t, b, "running")
		if n, err := b.count(ctx); err != nil || n != 2 {
			t.Fatalf("count %d (%v) before the sweep, want 2", n, err)
		}
		if n, err := b.sweep(ctx); err != nil || n != 2 {
			t.Fatalf("swept %d (%v), want 2", n, err)
		}
		if n, err := b.count(ctx); err != nil || n != 1 {
			t.Fatalf("count %d (%v) after the sweep, want 1", n, err)
		}
		for _, s := range []string{"live", "running"} {
			if _, err := b.kv.Get(ctx, kvKey(s)); err != nil {
				t.Fatalf("%s: %v", s, err)
			}
		}
	})
}

func TestSharedIdempotencyInstanceName(t *testing.T) {
	js := openTestJetStream(t).JetStream()
	ctx := context.Background()
	dir := t.TempDir()
	open := func(file string) *kvAnswers {
		t.Helper()
		st, err := OpenSharedIdempotencyStore(ctx, js, SharedIdempotencyOptions{InstanceFile: file})
		if err != nil {
			t.Fatal(err)
		}
		b := st.answers.(*kvAnswers)
		b.pollEvery = 5 * time.Millisecond
		return b
	}
	file := filepath.Join(dir, "idempotency-instance")

	crashed := open(file)
	first := mustClaim(t, crashed, "s") // and the process dies before settling it
	restarted := open(file)
	if restarted.owner != crashed.owner {
		t.Fatalf("the name changed across the restart: %s, then %s", crashed.owner, restarted.owner)
	}
	other := open(filepath.Join(dir, "other-instance"))
	if other.owner == crashed.owner {
		t.Fatal("two instance files gave one name")
	}
	waiter := claimAsync(ctx, other, "s")
	awaitWaiter(t, js, other)
	second := mustClaim(t, restarted, "s")
	if second == first {
		t.Fatalf("claim %d reused", second)
	}
	select {
	case r := <-waiter:
		t.Fatalf("another instance did not wait for the restarted one's claim: %+v", r)
	default:
	}
	if err := restarted.keep(ctx, "s", second, storedAnswer{Status: 201, Body: []byte("after the restart")}); err != nil {
		t.Fatal(err)
	}
	if r := receive(t, waiter); r.err != nil || !r.found || string(r.a.Body) != "after the restart" {
		t.Fatalf("%+v", r)
	}

	if err := os.Mkdir(filepath.Join(dir, "a-directory"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenSharedIdempotencyStore(ctx, js, SharedIdempotencyOptions{InstanceFile: filepath.Join(dir, "a-directory")}); err == nil {
		t.Fatal("opened with a directory as the instance file")
	}
}

func TestSharedIdempotencyClaimsOfManyInstancesAtOnce(t *testing.T) {
	js := openTestJetStream(t).JetStream()
	in := sharedInstances(t, js, testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), 8)
	locks := make([]keyLocks, len(in))
	var ran atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			b, l := in[i%len(in)], &locks[i%len(in)]
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			// The in-process lock keeps the requests of one instance apart, as in mutate.
			unlock, err := l.lock(ctx, "s")
			if err != nil {
				t.Error(err)
				return
			}
			defer unlock()
			a, found, rev, err := b.claim(ctx, "s")
			switch {
			case err != nil:
				t.Error(err)
			case found:
				if string(a.Body) != "once" {
					t.Errorf("replayed %q", a.Body)
				}
			default:
				ran.Add(1)
				if err := b.keep(ctx, "s", rev, storedAnswer{Status: 201, Body: []byte("once")}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	if n := ran.Load(); n != 1 {
		t.Fatalf("the request ran %d times", n)
	}
}

func TestSharedIdempotencyStoreUnreachableIsUnavailable(t *testing.T) {
	st := openTestJetStream(t)
	b := sharedInstances(t, st.JetStream(), testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), 1)[0]
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	_, _, _, err := b.claim(context.Background(), "s")
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("err %v, want ErrUnavailable", err)
	}
}

// BenchmarkSharedIdempotencyClaimAndKeep measures what a new key costs a request in the
// shared bucket (a claim, then its answer) on an embedded server, one at a time (the latency
// a lone keyed request adds) and 64 in flight.
func BenchmarkSharedIdempotencyClaimAndKeep(b *testing.B) {
	for _, sync := range []bool{false, true} {
		for _, inFlight := range []int{1, 64} {
			b.Run(fmt.Sprintf("fsync %v, %d in flight", sync, inFlight), func(b *testing.B) {
				es, err := eventstore.Open(context.Background(), eventstore.Options{DataDir: b.TempDir(), SyncAlways: sync, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				defer es.Close()
				st, err := openKVAnswers(context.Background(), es.JetStream(), "idem_bench", 1, nil)
				if err != nil {
					b.Fatal(err)
				}
				body := bytes.Repeat([]byte("x"), 300)
				var n atomic.Int64
				b.SetParallelism((inFlight + 1) / 2)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					ctx := context.Background()
					for pb.Next() {
						scope := fmt.Sprint("POST /r\x00u\x00k", n.Add(1))
						_, _, rev, err := st.claim(ctx, scope)
						if err != nil {
							b.Fatal(err)
						}
						if err := st.keep(ctx, scope, rev, storedAnswer{Status: 201, Body: body}); err != nil {
							b.Fatal(err)
						}
					}
				})
			})
		}
	}
}
