package idemstore

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/booking-engine/booking/internal/testclock"
)

// lookupBucket opens a bucket holding "kept" (a value) and "deleted" (put, then deleted).
func lookupBucket(t *testing.T) *kvAnswers {
	t.Helper()
	js := openTestJetStream(t).JetStream()
	b, err := openKVAnswers(context.Background(), js, fmt.Sprint("idem_lookup_", testBuckets.Add(1)), 1, testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := b.kv.Put(ctx, "kept", []byte("value")); err != nil {
		t.Fatal(err)
	}
	if _, err := b.kv.Put(ctx, "deleted", []byte("gone")); err != nil {
		t.Fatal(err)
	}
	if err := b.kv.Delete(ctx, "deleted"); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestKVLookups(t *testing.T) {
	want := map[string]string{"kept": "value"} // every other key is absent
	keys := []string{"kept", "deleted", "never-used", "kept", "another"}
	check := func(t *testing.T, key string, v []byte, found bool, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", key, err)
		}
		if w, ok := want[key]; found != ok || string(v) != w {
			t.Fatalf("%s: found %v %q, want %v %q", key, found, v, ok, w)
		}
	}

	t.Run("lookups queued while a get is in flight are answered by one get, each its own", func(t *testing.T) {
		l := lookupBucket(t).lookups
		var queued []*kvLookup
		for _, k := range keys {
			queued = append(queued, &kvLookup{key: k, done: make(chan struct{})})
		}
		l.queue, l.inFlight = queued, true
		l.run()
		for _, q := range queued {
			<-q.done
			check(t, q.key, q.value, q.found, q.err)
		}
		if l.inFlight || len(l.queue) != 0 {
			t.Fatalf("after the group: in flight %v, %d queued", l.inFlight, len(l.queue))
		}
	})
	t.Run("hundreds of concurrent lookups each get their own key's value", func(t *testing.T) {
		l := lookupBucket(t).lookups
		var wg sync.WaitGroup
		for i := range 400 {
			wg.Go(func() {
				key := keys[i%len(keys)]
				v, found, err := l.get(context.Background(), key)
				check(t, key, v, found, err)
			})
		}
		wg.Wait()
	})
	t.Run("a server without multi-subject gets is asked key by key", func(t *testing.T) {
		l := lookupBucket(t).lookups
		l.single = true
		for _, k := range keys {
			v, found, err := l.get(context.Background(), k)
			check(t, k, v, found, err)
		}
	})
	t.Run("a lookup whose request gave up returns its context's error", func(t *testing.T) {
		l := lookupBucket(t).lookups
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		l.inFlight = true // another get is in flight: this lookup waits in the queue
		if _, _, err := l.get(ctx, "kept"); !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v, want context.Canceled", err)
		}
	})
}
