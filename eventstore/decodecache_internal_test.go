package eventstore

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
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

func TestAWritersRememberedCommitIsWhatDecodingItGives(t *testing.T) {
	at := time.Date(2026, 12, 7, 1, 2, 3, 456789000, time.FixedZone("KST", 9*3600))
	seat := AggregateRef{Type: TypeSeat, ID: "c1.d1.7"}
	tests := []struct {
		name       string
		events     []Event
		meta       Metadata
		remembered bool
	}{
		{"a commit of several events, each with its aggregate and metadata, is remembered", []Event{
			{Type: "SeatHeld", Data: json.RawMessage(`{"seatNo":7}`), Ref: &seat, Meta: &Metadata{OccurredAt: at, CausationID: "own"}},
			{Type: "ReservationHeld", Data: json.RawMessage(`{ "spaced" : [1, 2] }`)},
			{Type: "Empty"},
		}, Metadata{OccurredAt: at, CorrelationID: "a\"b<c>&d\te", CausationID: "ü/\u2028"}, true},
		{"a commit whose payload begins with white space is left to be decoded", []Event{{Type: "SeatHeld", Data: json.RawMessage(" {}")}},
			Metadata{}, false},
		{"a commit whose payload ends with white space is left to be decoded", []Event{{Type: "SeatHeld", Data: json.RawMessage("{}\n")}},
			Metadata{}, false},
		{"a commit with a string that is not UTF-8 is left to be decoded", []Event{{Type: "SeatHeld", Data: json.RawMessage(`1`)}},
			Metadata{CorrelationID: "bad\xff"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			raw, envs, err := encodeCommit(AggregateRef{Type: TypeDate, ID: "c1.d1"}, tt.events, tt.meta, time.Now)
			if err != nil {
				t.Fatal(err)
			}
			c := newCommitCache()
			c.remember("SEATS_3", 42, raw, envs)
			got, err := c.decode(raw, "SEATS_3", 42)
			if err != nil {
				t.Fatal(err)
			}
			want, err := decodeCommit(nil, raw, "SEATS_3", 42)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("read back\n%+v\nwant what decoding gives\n%+v", got, want)
			}
			if shared := &got[0] == &envs[0]; shared != tt.remembered {
				t.Errorf("read the writer's envelopes: %v, want %v", shared, tt.remembered)
			}
		})
	}
}
