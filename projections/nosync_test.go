package projections

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// TestReadModelsLeftUnsyncedByAnotherBootAreRebuilt: live read models skip fsync, which is
// safe across a crash of the process but not of the machine; a file whose unsynced mark names
// another boot is thrown away and rebuilt from the log, and a cleanly closed one is kept.
func TestReadModelsLeftUnsyncedByAnotherBootAreRebuilt(t *testing.T) {
	if !liveNoSync() {
		t.Skip("boot ID unknown here: live read models are fsynced")
	}
	ctx := context.Background()
	store := eventstore.NewMemStore()
	created := aggregates.ConcertCreated{ConcertID: "c1", Title: "T", SalesOpenedAt: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Dates: []aggregates.DateSpec{{DateID: "d1", StartsAt: time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), SeatCount: 3, Price: 10}}}
	data, _ := aggregates.Encode(created)
	if _, err := store.Append(ctx, eventstore.AggregateRef{Type: eventstore.TypeConcert, ID: "c1"}, 0, []eventstore.Event{{Type: created.EventType(), Data: data}}, "c1", eventstore.Metadata{}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	run := func() (checkpointAtOpen uint64) {
		e, err := Open(dir, store, Options{})
		if err != nil {
			t.Fatal(err)
		}
		st, _ := e.Status(ctx)
		for _, s := range st {
			if s.Name == Catalog {
				checkpointAtOpen = s.Checkpoint
			}
		}
		if err := e.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := e.WaitReady(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Concert(ctx, "c1"); err != nil {
			t.Fatalf("concert after start: %v", err)
		}
		if err := e.Close(); err != nil {
			t.Fatal(err)
		}
		return checkpointAtOpen
	}
	run()
	if cp := run(); cp == 0 {
		t.Fatal("a cleanly closed read model was not kept")
	}
	db, err := bolt.Open(filepath.Join(dir, Catalog+".db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyUnsynced, []byte("another-boot")) }); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if cp := run(); cp != 0 {
		t.Fatalf("a read model left unsynced by another boot was kept (checkpoint %d at open)", cp)
	}
}
