package eventstore

import (
	"encoding/json"
	"testing"
)

func TestTheCommitCacheSharesADecodeAndNeverAnswersForOtherBytes(t *testing.T) {
	commit := func(typ string) []byte {
		t.Helper()
		b, err := EncodeCommit(AggregateRef{Type: TypeDate, ID: "c1.d1"}, []Event{{Type: typ, Data: json.RawMessage(`{"seatNo":1}`)}}, Metadata{})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	held, released := commit("SeatHeld"), commit("SeatReleased")
	tests := []struct {
		name     string
		first    []byte
		then     []byte
		thenAt   uint64
		wantType string
		shared   bool
	}{
		{"a second reader of a commit gets the first reader's envelopes", held, held, 7, "SeatHeld", true},
		{"other bytes at the same sequence are decoded, not answered from the cache", held, released, 7, "SeatReleased", false},
		{"the same bytes at another sequence are decoded for that sequence", held, held, 8, "SeatHeld", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newCommitCache()
			a, err := c.decode(tt.first, "SEATS_0", 7)
			if err != nil {
				t.Fatal(err)
			}
			b, err := c.decode(tt.then, "SEATS_0", tt.thenAt)
			if err != nil {
				t.Fatal(err)
			}
			if b[0].Type != tt.wantType || b[0].Sequence != tt.thenAt {
				t.Errorf("got a %s at #%d, want a %s at #%d", b[0].Type, b[0].Sequence, tt.wantType, tt.thenAt)
			}
			if shared := &a[0] == &b[0]; shared != tt.shared {
				t.Errorf("envelopes shared: %v, want %v", shared, tt.shared)
			}
		})
	}
	if _, err := newCommitCache().decode([]byte("not json"), "SEATS_0", 1); err == nil {
		t.Error("a commit that is not JSON was decoded")
	}
}
