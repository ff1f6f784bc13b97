package app

import (
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
)

// shape names each record of a waiting list: "t5" for the token at position 5, "d5" for a
// stand-in of a dropped one.
func shape(recs []*tokenRec) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		kind := "t"
		if r.id == "" {
			kind = "d"
		}
		out[i] = kind + strconv.FormatUint(r.position, 10)
	}
	return out
}

// TestWithDroppedPutsEachStandInWhereItsPositionBelongs: given waiting tokens in position
// order and the positions of dropped ones, when they are merged, then the list is in position
// order, the waiting tokens are the very records given, and a stand-in goes before a token of
// its own position, as inserting each by a binary search did.
func TestWithDroppedPutsEachStandInWhereItsPositionBelongs(t *testing.T) {
	for _, tt := range []struct {
		name    string
		waiting []uint64
		dropped []uint64
		want    []string
	}{
		{"nothing dropped leaves the waiting tokens as they are", []uint64{3, 5}, nil, []string{"t3", "t5"}},
		{"stand-ins go before, between and after the waiting tokens", []uint64{4, 8}, []uint64{1, 6, 9}, []string{"d1", "t4", "d6", "t8", "d9"}},
		{"stand-ins alone make the whole list", nil, []uint64{2, 7}, []string{"d2", "d7"}},
		{"a stand-in goes before a waiting token of its own position", []uint64{5}, []uint64{5}, []string{"d5", "t5"}},
		{"dropped positions out of order are sorted first", []uint64{4}, []uint64{9, 1, 6}, []string{"d1", "t4", "d6", "d9"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var waiting []*tokenRec
			for _, p := range tt.waiting {
				waiting = append(waiting, &tokenRec{id: "t" + strconv.FormatUint(p, 10), position: p})
			}
			got := withDropped(slices.Clone(waiting), tt.dropped)
			if !slices.Equal(shape(got), tt.want) {
				t.Fatalf("got %v, want %v", shape(got), tt.want)
			}
			tokens := slices.DeleteFunc(slices.Clone(got), func(r *tokenRec) bool { return r.id == "" })
			if !slices.Equal(tokens, waiting) {
				t.Fatal("the waiting tokens are not the records given")
			}
		})
	}
}

// BenchmarkQueueRestore restores a snapshot of 100,000 waiting tokens among 300,000 dropped
// ones, as a restart of a long sale's log does (docs/BENCHMARKS.md, session 14).
func BenchmarkQueueRestore(b *testing.B) {
	start := time.Date(2026, 12, 7, 20, 0, 0, 0, time.UTC)
	s := queueSnapshot{Version: queueSnapshotVersion, Seq: 400_000, EventID: "e"}
	for p := uint64(1); p <= 400_000; p++ {
		if p%4 != 0 {
			s.Dropped = append(s.Dropped, p)
			continue
		}
		n := strconv.FormatUint(p, 10)
		s.Tokens = append(s.Tokens, snapshotToken{ID: "t" + n, User: "u" + n, Position: p, IssuedAt: start.UnixNano()})
	}
	b.ReportAllocs()
	for b.Loop() {
		q := newQueueIndex(aggregates.QueuePolicy{}, time.Minute)
		q.restore(s)
		if len(q.waiting) != 400_000 {
			b.Fatalf("%d waiting, want 400000", len(q.waiting))
		}
	}
}
