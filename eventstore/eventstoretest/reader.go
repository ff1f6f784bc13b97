package eventstoretest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/booking-engine/booking/eventstore"
)

// catalogStream is where the reader cases write: one stream that concert aggregates share.
const catalogStream = "CATALOG"

// appendConcerts appends n events spread over a few concerts of the catalog stream and
// returns their sequences in order.
func appendConcerts(t *testing.T, s eventstore.Store, prefix string, n int) []uint64 {
	t.Helper()
	versions := make(map[string]uint64)
	seqs := make([]uint64, 0, n)
	for i := range n {
		ref := eventstore.AggregateRef{Type: eventstore.TypeConcert, ID: fmt.Sprintf("%s%d", prefix, i%4)}
		v := mustAppend(t, s, ref, versions[ref.ID], fmt.Sprintf("%s-%d", prefix, i), ev("A", fmt.Sprintf("%s%d", prefix, i)))
		versions[ref.ID] = v
		seqs = append(seqs, v)
	}
	return seqs
}

// appendConcurrently appends n events to the catalog stream from several goroutines, one
// concert each, and returns their sequences in order: quicker to fill a long stream.
func appendConcurrently(t *testing.T, s eventstore.Store, n int) []uint64 {
	t.Helper()
	const writers = 8
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		seqs []uint64
		errs []error
	)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ref := eventstore.AggregateRef{Type: eventstore.TypeConcert, ID: fmt.Sprint("bulk", w)}
			var v uint64
			for i := w; i < n; i += writers {
				var err error
				v, err = s.Append(ctxFor(t), ref, v, []eventstore.Event{ev("A", fmt.Sprint(i))}, fmt.Sprint("bulk-", i), meta)
				mu.Lock()
				if err != nil {
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				seqs = append(seqs, v)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errs[0])
	}
	slices.Sort(seqs)
	return seqs
}

// collector gathers what a replay hands over, checking order and batch sizes as it goes.
type collector struct {
	mu      sync.Mutex
	names   []string
	seqs    []uint64
	batches int
	bad     []string
	grew    chan struct{} // signalled after each batch
}

func newCollector() *collector { return &collector{grew: make(chan struct{}, 1)} }

func (c *collector) fn(t *testing.T) func([]eventstore.Envelope) error {
	return func(batch []eventstore.Envelope) error {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.batches++
		if len(batch) == 0 || len(batch) > 1000 {
			c.bad = append(c.bad, fmt.Sprintf("a batch of %d", len(batch)))
		}
		for _, e := range batch {
			if n := len(c.seqs); n > 0 && e.Sequence <= c.seqs[n-1] {
				c.bad = append(c.bad, fmt.Sprintf("sequence %d after %d", e.Sequence, c.seqs[n-1]))
			}
			if e.Stream != catalogStream {
				c.bad = append(c.bad, fmt.Sprintf("stream %q", e.Stream))
			}
			c.seqs = append(c.seqs, e.Sequence)
			c.names = append(c.names, nameOf(t, e))
		}
		select {
		case c.grew <- struct{}{}:
		default:
		}
		return nil
	}
}

func (c *collector) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.seqs)
}

// waitFor waits until the collector holds n events, or fails the test at the deadline.
func (c *collector) waitFor(t *testing.T, n int) {
	t.Helper()
	deadline := time.NewTimer(opTimeout)
	defer deadline.Stop()
	for c.count() < n {
		select {
		case <-c.grew:
		case <-deadline.C:
			t.Fatalf("replay delivered %d events, want %d", c.count(), n)
		}
	}
}

func (c *collector) check(t *testing.T, want []uint64) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, b := range c.bad {
		t.Error(b)
	}
	if len(c.seqs) != len(want) {
		t.Fatalf("replayed %d events, want %d", len(c.seqs), len(want))
	}
	for i := range want {
		if c.seqs[i] != want[i] {
			t.Fatalf("event %d has sequence %d, want %d", i, c.seqs[i], want[i])
		}
	}
}

func runReader(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	reader := func(t *testing.T) (eventstore.Store, eventstore.Reader) {
		s := newStore(t)
		r, ok := s.(eventstore.Reader)
		if !ok {
			t.Skip("the store is no Reader")
		}
		return s, r
	}

	t.Run("the streams are those of the layout and the head of an empty stream is 0", func(t *testing.T) {
		_, r := reader(t)
		layout := eventstore.Layout()
		got := r.Streams()
		if len(got) != len(layout) {
			t.Fatalf("%d streams, layout has %d", len(got), len(layout))
		}
		for i, spec := range layout {
			if got[i] != spec.Name {
				t.Errorf("stream %d is %s, want %s", i, got[i], spec.Name)
			}
		}
		if h, err := r.Head(ctxFor(t), catalogStream); err != nil || h != 0 {
			t.Errorf("head of the empty catalog: %d, %v", h, err)
		}
	})

	t.Run("the head is the sequence of the newest event", func(t *testing.T) {
		s, r := reader(t)
		seqs := appendConcerts(t, s, "h", 5)
		if h, err := r.Head(ctxFor(t), catalogStream); err != nil || h != seqs[4] {
			t.Errorf("head: %d, %v; want %d", h, err, seqs[4])
		}
	})

	t.Run("a replay of an empty stream returns at once", func(t *testing.T) {
		_, r := reader(t)
		c := newCollector()
		if err := r.Replay(ctxFor(t), catalogStream, 0, false, c.fn(t)); err != nil {
			t.Fatal(err)
		}
		c.check(t, nil)
	})

	t.Run("a replay delivers every event in order and stops at the head", func(t *testing.T) {
		s, r := reader(t)
		seqs := appendConcerts(t, s, "a", 7)
		c := newCollector()
		if err := r.Replay(ctxFor(t), catalogStream, 0, false, c.fn(t)); err != nil {
			t.Fatal(err)
		}
		c.check(t, seqs)
		if want := []string{"a0", "a1", "a2", "a3", "a4", "a5", "a6"}; !equal(c.names, want) {
			t.Errorf("replayed %v", c.names)
		}
	})

	t.Run("a replay resumes after a checkpoint", func(t *testing.T) {
		s, r := reader(t)
		seqs := appendConcerts(t, s, "a", 7)
		for _, after := range []uint64{seqs[2], seqs[6]} {
			c := newCollector()
			if err := r.Replay(ctxFor(t), catalogStream, after, false, c.fn(t)); err != nil {
				t.Fatal(err)
			}
			var want []uint64
			for _, seq := range seqs {
				if seq > after {
					want = append(want, seq)
				}
			}
			c.check(t, want)
		}
	})

	t.Run("a long stream replays in batches of at most 1000, in order", func(t *testing.T) {
		s, r := reader(t)
		seqs := appendConcurrently(t, s, 2500)
		c := newCollector()
		if err := r.Replay(ctxFor(t), catalogStream, 0, false, c.fn(t)); err != nil {
			t.Fatal(err)
		}
		c.check(t, seqs)
		if c.batches < 3 {
			t.Errorf("2500 events came in %d batches", c.batches)
		}
	})

	t.Run("a replay without follow ends even when events are appended while it runs", func(t *testing.T) {
		s, r := reader(t)
		seqs := appendConcerts(t, s, "a", 3)
		c := newCollector()
		inner := c.fn(t)
		appended := false
		err := r.Replay(ctxFor(t), catalogStream, 0, false, func(b []eventstore.Envelope) error {
			if !appended {
				appended = true
				appendConcerts(t, s, "late", 3)
			}
			return inner(b)
		})
		if err != nil {
			t.Fatal(err)
		}
		if n := c.count(); n < len(seqs) {
			t.Errorf("replayed %d events, the head at start was the %dth", n, len(seqs))
		}
	})

	t.Run("a following replay delivers events appended after it started, promptly and in order", func(t *testing.T) {
		s, r := reader(t)
		seqs := appendConcerts(t, s, "a", 3)
		c := newCollector()
		ctx, cancel := context.WithCancel(ctxFor(t))
		done := make(chan error, 1)
		go func() { done <- r.Replay(ctx, catalogStream, seqs[0], true, c.fn(t)) }()
		c.waitFor(t, 2)
		// One event to a quiet stream must arrive alone, not wait for a batch to fill.
		seqs = append(seqs, appendConcerts(t, s, "b", 1)...)
		c.waitFor(t, 3)
		seqs = append(seqs, appendConcerts(t, s, "c", 20)...)
		c.waitFor(t, 23)
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("a following replay ended with %v when its context was cancelled", err)
		}
		c.check(t, seqs[1:])
	})

	t.Run("a following replay of an empty stream waits for its first event", func(t *testing.T) {
		s, r := reader(t)
		c := newCollector()
		ctx, cancel := context.WithCancel(ctxFor(t))
		done := make(chan error, 1)
		go func() { done <- r.Replay(ctx, catalogStream, 0, true, c.fn(t)) }()
		seqs := appendConcerts(t, s, "a", 1)
		c.waitFor(t, 1)
		cancel()
		<-done
		c.check(t, seqs)
	})

	t.Run("an error from the callback stops the replay and is returned", func(t *testing.T) {
		s, r := reader(t)
		appendConcerts(t, s, "a", 3)
		stop := errors.New("stop")
		calls := 0
		err := r.Replay(ctxFor(t), catalogStream, 0, true, func([]eventstore.Envelope) error {
			calls++
			return stop
		})
		if !errors.Is(err, stop) || calls != 1 {
			t.Errorf("replay returned %v after %d calls", err, calls)
		}
	})

	t.Run("a replay of an unknown stream fails", func(t *testing.T) {
		_, r := reader(t)
		err := r.Replay(ctxFor(t), "NOPE", 0, false, func([]eventstore.Envelope) error { return nil })
		if err == nil {
			t.Error("no error")
		}
	})
}
