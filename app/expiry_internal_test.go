package app

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"
)

func TestSweeperHandsBackDueHoldsInHeldUntilOrder(t *testing.T) {
	base := time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)
	cases := []struct {
		name  string
		holds int
	}{
		{"an empty sweeper has nothing due", 0},
		{"one hold comes back alone", 1},
		{"a thousand holds in random order come back earliest first", 1000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, uint64(tc.holds)))
			w := newSweeper()
			var want []time.Time
			for i := range tc.holds {
				until := base.Add(time.Duration(r.IntN(600_000)) * time.Millisecond)
				w.track(HeldSeat{ReservationID: "r" + strconv.Itoa(i), HeldUntil: until})
				want = append(want, until)
			}
			slices.SortFunc(want, time.Time.Compare)
			// Half now, the rest later: due must stop at now and carry on from there.
			mid := base.Add(300 * time.Second)
			got := w.due(mid)
			for _, h := range got {
				if h.HeldUntil.After(mid) {
					t.Fatalf("due(%v) handed back a hold due at %v", mid, h.HeldUntil)
				}
			}
			if next, ok := w.next(); ok && !next.After(mid) {
				t.Fatalf("after due(%v) the next hold is due at %v", mid, next)
			}
			got = append(got, w.due(base.Add(time.Hour))...)
			if len(got) != len(want) {
				t.Fatalf("due handed back %d holds, want %d", len(got), len(want))
			}
			for i, h := range got {
				if !h.HeldUntil.Equal(want[i]) {
					t.Fatalf("hold %d due at %v, want %v", i, h.HeldUntil, want[i])
				}
			}
			if _, ok := w.next(); ok {
				t.Fatal("a sweeper that handed back every hold still has a next one")
			}
		})
	}
}
