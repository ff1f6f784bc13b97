package projections

import (
	"bytes"
	"testing"
	"time"
)

func TestHeldKeysOrderByHeldUntilAndSplitBack(t *testing.T) {
	seat := seatKey(dateKey("c1", "d1"), 42)
	at := time.Date(2026, 12, 7, 10, 0, 0, 123456789, time.UTC)
	cases := []struct {
		name  string
		until time.Time
	}{
		{"a hold's heldUntil comes back to the nanosecond", at},
		{"a zero heldUntil comes back zero", time.Time{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			until, s, ok := splitHeldKey(heldKey(tc.until, seat))
			if !ok || !until.Equal(tc.until) || !bytes.Equal(s, seat) {
				t.Fatalf("split %v %q %v, want %v %q", until, s, ok, tc.until, seat)
			}
		})
	}
	t.Run("a later hold sorts after an earlier one whatever its seat", func(t *testing.T) {
		early := heldKey(at, seatKey(dateKey("c9", "d9"), 9999))
		late := heldKey(at.Add(time.Nanosecond), seatKey(dateKey("c1", "d1"), 1))
		if bytes.Compare(early, late) >= 0 {
			t.Fatal("keys do not sort by heldUntil")
		}
	})
	t.Run("a key too short to hold a seat is refused", func(t *testing.T) {
		if _, _, ok := splitHeldKey([]byte("short")); ok {
			t.Fatal("split a malformed key")
		}
	})
}
