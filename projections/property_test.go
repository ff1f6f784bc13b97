package projections

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// randomHistory plays steps random commands through the deciders: holds of one or several
// seats, payments (some without enough points), expiries, cancellations, refunds and charges
// over small dates, so that dates sell out, are refunded and sell out again.
func randomHistory(w *world, rng *rand.Rand, steps int) {
	type seat struct {
		c, d string
		n    int
	}
	var seats []seat
	for ci := range 2 {
		c := fmt.Sprintf("c%d", ci)
		var dates []aggregates.DateSpec
		for di := range 2 {
			dates = append(dates, date(fmt.Sprintf("d%d", di), 1+rng.IntN(4), int64(100*(1+rng.IntN(3)))))
		}
		w.must(w.createConcert(c, "Concert "+c, dates...))
		for _, d := range dates {
			for n := 1; n <= d.SeatCount; n++ {
				seats = append(seats, seat{c, d.DateID, n})
			}
		}
	}
	users := []string{"u0", "u1", "u2", "u3"}
	var held, paid []string
	owner := map[string]string{}
	for i := range steps {
		w.tick(time.Duration(1+rng.IntN(20)) * time.Second)
		u := users[rng.IntN(len(users))]
		switch op := rng.IntN(100); {
		case op < 12:
			// Every other charge is two charges in one commit, as a group commit writes them.
			amounts := []int64{int64(100 * (1 + rng.IntN(5)))}
			if i%2 == 0 {
				amounts = append(amounts, int64(100*(1+rng.IntN(5))))
			}
			w.must(w.chargeInOneCommit(u, fmt.Sprintf("charge-%d", i), amounts...))
		case op < 50:
			s := seats[rng.IntN(len(seats))]
			nos := []int{s.n}
			if rng.IntN(2) == 0 {
				// A multi-seat hold: more seats of the same date, in one reservation.
				for _, o := range seats {
					if o.c == s.c && o.d == s.d && o.n != s.n && rng.IntN(2) == 0 {
						nos = append(nos, o.n)
					}
				}
			}
			id := fmt.Sprintf("r%d", i)
			if err := w.holdSeats(id, u, s.c, s.d, 5*time.Minute, nos...); err == nil {
				held, owner[id] = append(held, id), u
			}
		case op < 75 && len(held) > 0:
			k := rng.IntN(len(held))
			id := held[k]
			pay := fmt.Sprintf("p%d", i)
			if err := w.pay(pay, id, owner[id]); err == nil {
				paid = append(paid, pay)
				held = append(held[:k], held[k+1:]...)
			}
		case op < 83 && len(held) > 0:
			k := rng.IntN(len(held))
			w.tick(6 * time.Minute)
			w.must(w.expire(held[k]))
			held = append(held[:k], held[k+1:]...)
		case op < 90 && len(held) > 0:
			k := rng.IntN(len(held))
			_ = w.cancel(held[k], owner[held[k]]) // may have expired meanwhile: not cancellable
			held = append(held[:k], held[k+1:]...)
		case op < 97 && len(paid) > 0:
			k := rng.IntN(len(paid))
			w.must(w.refund(paid[k]))
			paid = append(paid[:k], paid[k+1:]...)
		default:
			w.tick(time.Duration(rng.IntN(3)) * time.Hour)
		}
	}
}

// TestIncrementalEqualsRebuilt follows random valid histories live, in random batch sizes,
// and compares the read models with those rebuilt offline and online from the same log.
func TestIncrementalEqualsRebuilt(t *testing.T) {
	// Multi-seat reservations that were paid for, over every history: the histories must
	// cover them, or the comparison says nothing about them.
	multiSeatPaid := 0
	for seed := range uint64(10) {
		t.Run(fmt.Sprintf("incremental read models equal rebuilt ones for history %d", seed), func(t *testing.T) {
			switch seed % 3 {
			case 1:
				// Flush rebuild overlays every few writes, as a big log does.
				defer func(n int) { overlayFlushAt = n }(overlayFlushAt)
				overlayFlushAt = 3
			case 2:
				// Flush them every few hundred bytes, as hot keys written again and again do.
				defer func(n int) { overlayArenaFlushAt = n }(overlayArenaFlushAt)
				overlayArenaFlushAt = 300
			}
			rng := rand.New(rand.NewPCG(seed, 42))
			w := newWorld(t)
			live := openEngine(t, t.TempDir(), splitStore{w.store, seed}, w.soldOut)
			start(t, live)
			randomHistory(w, rng, 150)
			settle(t, live)
			incremental := takeSnapshot(t, live, w.store)
			incremental.checkSeatsJSON(t)
			incremental.checkReservationSeats(t)
			want := incremental.json(t)
			for _, r := range incremental.Reservations {
				if v, ok := r.(ReservationView); ok && len(v.SeatNos) > 1 && v.PaymentID != "" {
					multiSeatPaid++
				}
			}

			dir := t.TempDir()
			if _, err := RebuildOffline(context.Background(), dir, splitStore{w.store, seed + 1}, nil, nil, nil); err != nil {
				t.Fatal(err)
			}
			offline := openEngine(t, dir, w.store, nil)
			start(t, offline)
			if got := takeSnapshot(t, offline, w.store).json(t); !bytes.Equal(got, want) {
				t.Fatalf("offline rebuild differs:\n%s", diffLines(want, got))
			}

			for _, name := range live.Names() {
				if err := live.Rebuild(context.Background(), name); err != nil {
					t.Fatal(err)
				}
			}
			settle(t, live)
			if got := takeSnapshot(t, live, w.store).json(t); !bytes.Equal(got, want) {
				t.Fatalf("online rebuild differs:\n%s", diffLines(want, got))
			}
			checkSellOutsTrue(t, w)
		})
	}
	t.Logf("%d multi-seat reservations paid for", multiSeatPaid)
	if multiSeatPaid == 0 {
		t.Fatal("no history paid for a multi-seat reservation")
	}
}

// checkSellOutsTrue checks that every recorded sell-out happened: the date was sold out at
// exactly that moment of the history.
func checkSellOutsTrue(t *testing.T, w *world) {
	t.Helper()
	err := w.store.Replay(context.Background(), "CATALOG", 0, false, func(batch []eventstore.Envelope) error {
		for _, env := range batch {
			if env.Type != "DateSoldOut" {
				continue
			}
			ev, err := aggregates.Decode(env.Type, env.Data)
			if err != nil {
				return err
			}
			so := ev.(aggregates.DateSoldOut)
			truth := w.sellOuts[dateKey(so.ConcertID, so.DateID)]
			found := false
			for _, at := range truth {
				found = found || at.Equal(so.SoldOutAt)
			}
			if !found {
				t.Errorf("sell-out of %s/%s at %s recorded, but the date sold out at %v", so.ConcertID, so.DateID, so.SoldOutAt, truth)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestOnJetStream follows a random history written to an embedded JetStream server, and
// compares the live read models with offline and online rebuilds from the same streams.
func TestOnJetStream(t *testing.T) {
	store, err := eventstore.Open(context.Background(), eventstore.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	w := newWorld(t)
	w.store = store
	live := openEngine(t, t.TempDir(), store, w.soldOut)
	start(t, live)
	randomHistory(w, rand.New(rand.NewPCG(3, 42)), 80)
	settle(t, live)
	want := takeSnapshot(t, live, store).json(t)

	dir := t.TempDir()
	if _, err := RebuildOffline(context.Background(), dir, store, nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	offline := openEngine(t, dir, store, nil)
	start(t, offline)
	if got := takeSnapshot(t, offline, store).json(t); !bytes.Equal(got, want) {
		t.Fatalf("offline rebuild differs:\n%s", diffLines(want, got))
	}
	if err := live.Rebuild(context.Background(), Seats); err != nil {
		t.Fatal(err)
	}
	if got := takeSnapshot(t, live, store).json(t); !bytes.Equal(got, want) {
		t.Fatalf("online rebuild differs:\n%s", diffLines(want, got))
	}
	checkSellOutsTrue(t, w)
}
