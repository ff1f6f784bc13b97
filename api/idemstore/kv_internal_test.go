package idemstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
func sharedInstances(t testing.TB, js jetstream.JetStream, clock *testclock.Clock, n int) []*Store {
	t.Helper()
	bucket := fmt.Sprint("idem_internal_", testBuckets.Add(1))
	out := make([]*Store, n)
	for i := range out {
		b, err := openKVAnswers(context.Background(), js, bucket, 1, clock)
		if err != nil {
			t.Fatal(err)
		}
		out[i] = newStore(b, clock)
		t.Cleanup(func() { _ = out[i].Close() })
	}
	return out
}

// keepAnswer runs a request of scope on st that answers body, as mutate does.
func keepAnswer(t *testing.T, st *Store, scope, body string) {
	t.Helper()
	c, a, found, err := st.Begin(context.Background(), scope)
	if err != nil || found {
		t.Fatalf("begin: found %v (%q), err %v", found, a.Body, err)
	}
	c.Keep(Answer{Status: 200, Body: []byte(body)})
	c.Done()
}

// lookup returns what a request of scope on st finds.
func lookup(t *testing.T, st *Store, scope string) (string, bool) {
	t.Helper()
	c, a, found, err := st.Begin(context.Background(), scope)
	if err != nil {
		t.Fatal(err)
	}
	c.Done()
	return string(a.Body), found
}

func flush(t *testing.T, st *Store) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := st.Flush(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestSharedIdempotencyStore(t *testing.T) {
	js := openTestJetStream(t).JetStream()
	ctx := context.Background()
	const scope = "POST /api/v1/users/:userId/points/charge\x00u1\x00k 1"
	newClock := func() *testclock.Clock { return testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) }

	t.Run("a kept answer is replayed by its instance at once and by the other once written", func(t *testing.T) {
		in := sharedInstances(t, js, newClock(), 2)
		keepAnswer(t, in[0], scope, "first")
		if body, found := lookup(t, in[0], scope); !found || body != "first" {
			t.Fatalf("the instance that kept it found %v %q", found, body)
		}
		flush(t, in[0])
		if body, found := lookup(t, in[1], scope); !found || body != "first" {
			t.Fatalf("the other instance found %v %q", found, body)
		}
	})
	t.Run("a group of answers written together is every one there for the other instances", func(t *testing.T) {
		clock := newClock()
		in := sharedInstances(t, js, clock, 2)
		// Every answer of a group but the last is published without an acknowledgement.
		const n = 50
		group := make([]scopedAnswer, n)
		for i := range group {
			group[i] = scopedAnswer{scope: fmt.Sprint(scope, i), a: Answer{Status: 200, Body: []byte(fmt.Sprint("answer ", i)), StoredAt: clock.Now()}}
		}
		if err := in[0].answers.putAll(ctx, group); err != nil {
			t.Fatal(err)
		}
		for i := range n {
			if body, found := lookup(t, in[1], fmt.Sprint(scope, i)); !found || body != fmt.Sprint("answer ", i) {
				t.Fatalf("answer %d: the other instance found %v %q", i, found, body)
			}
		}
	})
	t.Run("an answer is replayed for 24 hours and not a nanosecond longer", func(t *testing.T) {
		clock := newClock()
		in := sharedInstances(t, js, clock, 2)
		keepAnswer(t, in[0], scope, "old")
		flush(t, in[0])
		clock.Advance(TTL)
		if body, found := lookup(t, in[1], scope); !found || body != "old" {
			t.Fatalf("at 24 h: found %v %q", found, body)
		}
		clock.Advance(time.Nanosecond)
		if _, found := lookup(t, in[1], scope); found {
			t.Fatal("an answer older than 24 h was replayed")
		}
	})
	t.Run("a sweep deletes expired answers and the claims of earlier versions and nothing live", func(t *testing.T) {
		clock := newClock()
		st := sharedInstances(t, js, clock, 1)[0]
		b := st.answers.(*kvAnswers)
		keepAnswer(t, st, "expired", "expired")
		// What an earlier version wrote before it ran a request.
		claim, _ := json.Marshal(map[string]any{"pending": true, "owner": "0123", "startedAt": clock.Now()})
		if _, err := b.kv.Put(ctx, kvKey("claimed"), claim); err != nil {
			t.Fatal(err)
		}
		clock.Advance(time.Hour)
		keepAnswer(t, st, "live", "live")
		clock.Advance(TTL - time.Hour + time.Nanosecond)
		if _, found := lookup(t, st, "claimed"); found {
			t.Fatal("an earlier version's claim was taken for an answer")
		}
		if n, err := st.Len(); err != nil || n != 2 {
			t.Fatalf("count %d (%v) before the sweep, want 2", n, err)
		}
		if n, err := st.Sweep(); err != nil || n != 2 {
			t.Fatalf("swept %d (%v), want 2", n, err)
		}
		if n, err := st.Len(); err != nil || n != 1 {
			t.Fatalf("count %d (%v) after the sweep, want 1", n, err)
		}
		if _, err := b.kv.Get(ctx, kvKey("live")); err != nil {
			t.Fatalf("live: %v", err)
		}
	})
	t.Run("answers kept before Close are written by it", func(t *testing.T) {
		in := sharedInstances(t, js, newClock(), 2)
		for i := range 100 {
			keepAnswer(t, in[0], fmt.Sprint(scope, i), fmt.Sprint(i))
		}
		if err := in[0].Close(); err != nil {
			t.Fatal(err)
		}
		for i := range 100 {
			if body, found := lookup(t, in[1], fmt.Sprint(scope, i)); !found || body != fmt.Sprint(i) {
				t.Fatalf("answer %d: found %v %q", i, found, body)
			}
		}
	})
}

// TestSharedIdempotencyBucketCostsNoFsync: on a single server the bucket persists
// asynchronously, so a stored answer costs no fsync of its own whatever --fsync says; a
// bucket an earlier version made (which JetStream cannot switch) still opens.
func TestSharedIdempotencyBucketCostsNoFsync(t *testing.T) {
	js := openTestJetStream(t).JetStream()
	ctx := context.Background()
	tests := []struct {
		name    string
		earlier bool // the bucket exists, made by CreateKeyValue
		want    jetstream.PersistModeType
	}{
		{name: "a new bucket persists asynchronously", want: jetstream.AsyncPersistMode},
		{name: "a bucket of an earlier version keeps its mode and opens", earlier: true, want: jetstream.DefaultPersistMode},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bucket := fmt.Sprint("idem_mode_", i)
			if tt.earlier {
				if _, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: bucket, TTL: time.Hour, Storage: jetstream.FileStorage}); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := openKVAnswers(ctx, js, bucket, 1, nil); err != nil {
				t.Fatal(err)
			}
			st, err := js.Stream(ctx, "KV_"+bucket)
			if err != nil {
				t.Fatal(err)
			}
			cfg := st.CachedInfo().Config
			if cfg.PersistMode != tt.want || cfg.MaxAge != bucketTTL {
				t.Fatalf("persist mode %v, max age %s; want %v and %s", cfg.PersistMode, cfg.MaxAge, tt.want, bucketTTL)
			}
		})
	}
}

func TestSharedIdempotencyStoreUnreachableIsUnavailable(t *testing.T) {
	es := openTestJetStream(t)
	st := sharedInstances(t, es.JetStream(), testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)), 1)[0]
	if err := es.Close(); err != nil {
		t.Fatal(err)
	}
	_, _, _, err := st.Begin(context.Background(), "s")
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("err %v, want ErrUnavailable", err)
	}
}

// BenchmarkSharedIdempotencyKeep measures what a new key costs a request with the shared
// bucket (a lookup, then its answer handed to the writer) on an embedded server, one at a
// time and 64 in flight, and then what writing those answers takes (Flush).
func BenchmarkSharedIdempotencyKeep(b *testing.B) {
	for _, sync := range []bool{false, true} {
		for _, inFlight := range []int{1, 64} {
			b.Run(fmt.Sprintf("fsync %v, %d in flight", sync, inFlight), func(b *testing.B) {
				es, err := eventstore.Open(context.Background(), eventstore.Options{DataDir: b.TempDir(), SyncAlways: sync, Logger: slog.New(slog.DiscardHandler)})
				if err != nil {
					b.Fatal(err)
				}
				defer es.Close()
				kv, err := openKVAnswers(context.Background(), es.JetStream(), "idem_bench", 1, nil)
				if err != nil {
					b.Fatal(err)
				}
				st := newStore(kv, nil)
				defer st.Close()
				body := bytes.Repeat([]byte("x"), 300)
				var n atomic.Int64
				b.SetParallelism((inFlight + 1) / 2)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					ctx := context.Background()
					for pb.Next() {
						c, _, _, err := st.Begin(ctx, fmt.Sprint("POST /r\x00u\x00k", n.Add(1)))
						if err != nil {
							b.Fatal(err)
						}
						c.Keep(Answer{Status: 201, Body: body})
						c.Done()
					}
				})
				if err := st.Flush(context.Background()); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}

// A start tries the bucket again while JetStream is not ready, but a stream of the bucket's
// name that the server will not turn into the bucket is a refusal: the start fails at once
// with the reason instead of retrying it for a minute.
func TestABucketTheServerRefusesToSetUpIsNotUnavailable(t *testing.T) {
	es := openTestJetStream(t)
	bucket := fmt.Sprintf("idem_refused_%d", testBuckets.Add(1))
	cfg := kvStreamConfig(bucket, 1)
	cfg.Storage = jetstream.MemoryStorage // the bucket's is file storage, which an update cannot change to
	if _, err := es.JetStream().CreateStream(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
	_, err := openKVAnswers(context.Background(), es.JetStream(), bucket, 1, nil)
	if err == nil || errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("err %v, want a refusal that is not ErrUnavailable", err)
	}
}
