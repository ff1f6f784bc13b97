package projections

import (
	"context"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// TestAReadModelLingersForMoreOfTheLogUnlessAReadWaits: given a live read model with a linger
// far longer than the test, when one stream's batch arrives it is not committed alone; when
// every stream it reads has a batch waiting, they are committed at once; and when a read
// starts waiting for the model (read-your-writes), a lone batch is committed at once.
func TestAReadModelLingersForMoreOfTheLogUnlessAReadWaits(t *testing.T) {
	sp := specOf(t, Payments)
	sp.streams = sp.streams[:3]
	g, err := openGeneration(sp, filepath.Join(t.TempDir(), "payments.db"), false, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	g.live.Store(true)
	p := &proj{spec: sp, hurry: make(chan struct{}, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	subs := make(chan submission)
	go groupCommit(ctx, p, g, subs, time.Hour)

	seqs := map[string]uint64{}
	submit := func(stream string) chan submitted {
		seqs[stream]++
		done := make(chan submitted, 1)
		subs <- submission{stream, []eventstore.Envelope{{Stream: stream, Sequence: seqs[stream], Type: (aggregates.ReservationHeld{}).EventType(), Data: []byte(`{}`)}}, done}
		return done
	}
	answered := func(what string, done chan submitted) {
		t.Helper()
		select {
		case res := <-done:
			if res.err != nil {
				t.Fatalf("%s: %v", what, res.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: not committed within 10 s (the linger is an hour)", what)
		}
	}

	first := submit(sp.streams[0])
	select {
	case <-first:
		t.Fatal("a lone batch was committed without lingering")
	case <-time.After(50 * time.Millisecond):
	}
	second, third := submit(sp.streams[1]), submit(sp.streams[2])
	answered("the first of three streams' batches", first)
	answered("the second", second)
	answered("the third", third)

	lone := submit(sp.streams[0])
	p.waiting.Add(1)
	p.hurry <- struct{}{}
	answered("a lone batch while a read waits", lone)
	p.waiting.Add(-1)
	if got := g.checkpoint(sp.streams[0]); got != 2 {
		t.Fatalf("checkpoint of %s: %d, want 2", sp.streams[0], got)
	}
}
