package eventstore

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

func TestAHandBuiltCommitReadsBackAsEncodingJSONWouldHaveWrittenIt(t *testing.T) {
	at := time.Date(2026, 12, 7, 1, 2, 3, 456789000, time.FixedZone("KST", 9*3600))
	seat := AggregateRef{Type: TypeSeat, ID: "c1.d1.7"}
	tests := []struct {
		name   string
		events []Event
		meta   Metadata
	}{
		{"one event with every metadata field", []Event{{Type: "SeatHeld", Data: json.RawMessage(`{"a":1}`)}},
			Metadata{OccurredAt: at, CorrelationID: "req-1", CausationID: "r1/hold"}},
		{"strings that need escaping stay what they were", []Event{{Type: "T\"<&>\\\n\u00e9", Data: json.RawMessage(`"x"`)}},
			Metadata{CorrelationID: "a\"b<c>&d\te", CausationID: "ü/\u2028"}},
		{"events with their own aggregate and metadata", []Event{
			{Type: "SeatHeld", Data: json.RawMessage(`{"seatNo":7}`), Ref: &seat, Meta: &Metadata{OccurredAt: at, CausationID: "own"}},
			{Type: "ReservationHeld", Data: json.RawMessage(` { "spaced" : [1, 2] } `)},
			{Type: "Empty"},
		}, Metadata{OccurredAt: at}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stamp := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			b, _, err := encodeCommit(AggregateRef{Type: TypeDate, ID: "c1.d1"}, tt.events, tt.meta, func() time.Time { return stamp })
			if err != nil {
				t.Fatal(err)
			}
			var got commitBody
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("not JSON: %v\n%s", err, b)
			}
			if got.SchemaVersion != SchemaVersion || len(got.Events) != len(tt.events) {
				t.Fatalf("schema %d with %d events, want %d with %d", got.SchemaVersion, len(got.Events), SchemaVersion, len(tt.events))
			}
			for i, ev := range tt.events {
				m, owner := tt.meta, AggregateRef{Type: TypeDate, ID: "c1.d1"}
				if ev.Meta != nil {
					m = *ev.Meta
				}
				if ev.Ref != nil {
					owner = *ev.Ref
				}
				when := m.OccurredAt
				if when.IsZero() {
					when = stamp
				}
				data := ev.Data
				if len(data) == 0 {
					data = json.RawMessage("null")
				}
				e := got.Events[i]
				want := Envelope{EventID: e.EventID, Type: ev.Type, AggregateType: owner.Type, AggregateID: owner.ID,
					OccurredAt: when.UTC(), CorrelationID: m.CorrelationID, CausationID: m.CausationID, SchemaVersion: SchemaVersion}
				e.Data = nil
				if !reflect.DeepEqual(e, want) {
					t.Errorf("event %d reads back as\n%+v\nwant\n%+v", i, e, want)
				}
				var gotData, wantData any
				_ = json.Unmarshal(got.Events[i].Data, &gotData)
				_ = json.Unmarshal(data, &wantData)
				if !reflect.DeepEqual(gotData, wantData) {
					t.Errorf("event %d data %s, want %s", i, got.Events[i].Data, data)
				}
			}
		})
	}
}

func TestAnEventWhoseDataIsNotJSONIsRefusedBeforeAnythingIsWritten(t *testing.T) {
	if err := validateAppend([]Event{{Type: "A", Data: json.RawMessage(`{"open":`)}}); err == nil {
		t.Fatal("data that is not JSON was accepted")
	}
}
