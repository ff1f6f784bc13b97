package projections

import (
	"log/slog"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// TestBatchesAProjectionDoesNotWantCostNoTransaction: the payments projection reads every
// date commit and wants none of its holds. Given such batches, when they are applied, then
// its checkpoint moves in memory only, the file's follows within lazyCheckpointGap, with the
// next batch it wants, and at a clean close; reopened, it reads on from there and applies
// the payments it had not yet seen.
func TestBatchesAProjectionDoesNotWantCostNoTransaction(t *testing.T) {
	sp := specOf(t, Payments)
	stream := sp.streams[0]
	if emitsFor(sp, stream) {
		t.Fatalf("payments feeds the subscribers of %s; the test needs a projection that does not", stream)
	}
	path := filepath.Join(t.TempDir(), "payments.db")
	open := func() *generation {
		g, err := openGeneration(sp, path, false, slog.New(slog.DiscardHandler), nil)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	at := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	hold := func(seq uint64) []eventstore.Envelope {
		return []eventstore.Envelope{{Stream: stream, Sequence: seq, Type: (aggregates.ReservationHeld{}).EventType(), OccurredAt: at, Data: []byte(`{}`)}}
	}
	payment := func(seq uint64, id string) []eventstore.Envelope {
		data, err := aggregates.Encode(aggregates.PaymentStarted{PaymentID: id, ReservationID: "r-" + id, UserID: "u1", Amount: 100, StartedAt: at})
		if err != nil {
			t.Fatal(err)
		}
		return []eventstore.Envelope{{Stream: stream, Sequence: seq, Type: (aggregates.PaymentStarted{}).EventType(), AggregateType: eventstore.TypePayment, AggregateID: id, OccurredAt: at, Data: data}}
	}
	apply := func(g *generation, batch []eventstore.Envelope) uint64 {
		t.Helper()
		before, err := g.apply(stream, batch)
		if err != nil {
			t.Fatal(err)
		}
		return before
	}

	g := open()
	for seq := uint64(1); seq <= 10; seq++ {
		if before := apply(g, hold(seq)); before != seq-1 {
			t.Fatalf("batch %d: checkpoint before it %d, want %d", seq, before, seq-1)
		}
	}
	if got := g.checkpoint(stream); got != 10 {
		t.Fatalf("checkpoint in memory after ten holds: %d, want 10", got)
	}
	if got := fileCheckpoint(t, g.db, stream); got != 0 {
		t.Fatalf("checkpoint in the file after ten holds: %d, want 0 (no transaction)", got)
	}

	apply(g, payment(11, "p1"))
	if got := fileCheckpoint(t, g.db, stream); got != 11 {
		t.Fatalf("checkpoint in the file after a payment: %d, want 11", got)
	}

	last := uint64(11 + lazyCheckpointGap + 1)
	for seq := uint64(12); seq <= last; seq++ {
		apply(g, hold(seq))
	}
	if got := fileCheckpoint(t, g.db, stream); got <= 11 || got > last {
		t.Fatalf("checkpoint in the file after %d holds more: %d, want it past 11 (the gap is %d)", last-11, got, lazyCheckpointGap)
	}
	apply(g, hold(last+1))
	if err := g.close(); err != nil {
		t.Fatal(err)
	}

	g = open()
	if got := g.checkpoint(stream); got != last+1 {
		t.Fatalf("checkpoint after a clean close and reopen: %d, want %d", got, last+1)
	}
	apply(g, payment(last+2, "p2"))
	for _, id := range []string{"p1", "p2"} {
		if !hasKey(t, g.db, bPayments, id) {
			t.Errorf("payment %s is not in the read model", id)
		}
	}
	if err := g.close(); err != nil {
		t.Fatal(err)
	}
}

// TestAProjectionThatFeedsTheSubscribersCommitsEveryBatch: the seats projection hands date
// commits to the subscribers, which must not see a batch twice after a crash; it never skips
// the transaction, even for a batch it does not want.
func TestAProjectionThatFeedsTheSubscribersCommitsEveryBatch(t *testing.T) {
	sp := specOf(t, Seats)
	stream := eventstore.StreamsOf(eventstore.TypeSeat)[0]
	if !emitsFor(sp, stream) {
		t.Fatalf("seats does not feed the subscribers of %s", stream)
	}
	g, err := openGeneration(sp, filepath.Join(t.TempDir(), "seats.db"), false, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	unwanted := []eventstore.Envelope{{Stream: stream, Sequence: 1, Type: (aggregates.ReservationPaymentStarted{}).EventType(), Data: []byte(`{}`)}}
	if _, err := g.apply(stream, unwanted); err != nil {
		t.Fatal(err)
	}
	if got := fileCheckpoint(t, g.db, stream); got != 1 {
		t.Fatalf("checkpoint in the file: %d, want 1", got)
	}
}

func specOf(t *testing.T, name string) spec {
	t.Helper()
	i := slices.IndexFunc(specs(), func(sp spec) bool { return sp.name == name })
	if i < 0 {
		t.Fatalf("no projection %s", name)
	}
	return specs()[i]
}

func fileCheckpoint(t *testing.T, db *bolt.DB, stream string) (cp uint64) {
	t.Helper()
	if err := db.View(func(tx *bolt.Tx) error {
		cp = getU64(tx.Bucket(bucketMeta).Get(cpKey(stream)))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return cp
}

func hasKey(t *testing.T, db *bolt.DB, bucket, key string) (found bool) {
	t.Helper()
	if err := db.View(func(tx *bolt.Tx) error {
		found = tx.Bucket([]byte(bucket)).Get([]byte(key)) != nil
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return found
}
