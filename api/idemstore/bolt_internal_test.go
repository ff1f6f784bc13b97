package idemstore

import (
	"bytes"
	"context"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/booking-engine/booking/internal/testclock"
)

func TestIdempotencyStoreReplacesAnExpiredAnswer(t *testing.T) {
	clock := testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	st, err := openBoltAnswers(filepath.Join(t.TempDir(), "i.db"), clock)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	if err := st.put("s", Answer{Status: 201, Body: []byte("first")}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(25 * time.Hour)
	if _, found, _ := st.get("s"); found {
		t.Fatal("an expired answer was found")
	}
	if err := st.put("s", Answer{Status: 200, Body: []byte("second")}); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Hour)
	if n, err := st.sweepExpired(); err != nil || n != 0 {
		t.Fatalf("swept %d (%v): the live answer's old index entry survived", n, err)
	}
	a, found, err := st.get("s")
	if err != nil || !found || string(a.Body) != "second" {
		t.Fatalf("got %q %v %v", a.Body, found, err)
	}
}

func TestIdempotencySweepWorksInBoundedTransactions(t *testing.T) {
	clock := testclock.New(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	st, err := openBoltAnswers(filepath.Join(t.TempDir(), "i.db"), clock)
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	st.sweepBatch = 100
	const n = 250 // three sweep transactions
	var wg sync.WaitGroup
	for w := range 50 { // concurrent puts share batched commits
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += 50 {
				if err := st.put(string(rune('a'+i%26))+time.Duration(i).String(), Answer{Status: 200}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	clock.Advance(24*time.Hour + time.Nanosecond)
	if got, err := st.sweepExpired(); err != nil || got != n {
		t.Fatalf("swept %d (%v), want %d", got, err, n)
	}
	if size, _ := st.count(context.Background()); size != 0 {
		t.Fatalf("%d answers left", size)
	}
}

// BenchmarkIdempotencyPut measures one answer committed at a time (the latency a lone keyed
// request adds) and, in parallel, how answers share commits.
func BenchmarkIdempotencyPut(b *testing.B) {
	for _, inFlight := range []int{1, 64} {
		b.Run(fmt.Sprint(inFlight, " in flight"), func(b *testing.B) {
			st, err := openBoltAnswers(filepath.Join(b.TempDir(), "i.db"), nil)
			if err != nil {
				b.Fatal(err)
			}
			defer st.close()
			body := bytes.Repeat([]byte("x"), 300)
			var n atomic.Int64
			b.SetParallelism((inFlight + 1) / 2)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := st.put(fmt.Sprint("POST /r\x00u\x00k", n.Add(1)), Answer{Status: 201, Body: body}); err != nil {
						b.Fatal(err)
					}
				}
			})
		})
	}
}
