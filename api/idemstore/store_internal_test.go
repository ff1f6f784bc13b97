package idemstore

import (
	"context"
	"errors"
	"sync"
	"testing"
)

func TestKeyLocks(t *testing.T) {
	t.Run("a waiter gives up when its context ends and leaves nothing behind", func(t *testing.T) {
		var l keyLocks
		unlock, err := l.lock(context.Background(), "k")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := l.lock(ctx, "k"); !errors.Is(err, context.Canceled) {
			t.Fatalf("err %v", err)
		}
		unlock()
		if len(l.m) != 0 {
			t.Fatalf("%d locks left", len(l.m))
		}
	})
	t.Run("holders of one key never overlap", func(t *testing.T) {
		var l keyLocks
		var inside, maxInside int
		var mu sync.Mutex
		var wg sync.WaitGroup
		for range 50 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				unlock, err := l.lock(context.Background(), "k")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				inside++
				maxInside = max(maxInside, inside)
				mu.Unlock()
				mu.Lock()
				inside--
				mu.Unlock()
				unlock()
			}()
		}
		wg.Wait()
		if maxInside != 1 || len(l.m) != 0 {
			t.Fatalf("max %d inside, %d locks left", maxInside, len(l.m))
		}
	})
}
