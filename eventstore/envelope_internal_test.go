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

func TestAnAppendIsAcceptedExactlyWhenItsReadersCanDecodeIt(t *testing.T) {
	agg := AggregateRef{Type: "seat", ID: "c1.d1"}
	cases := []struct {
		name   string
		data   string
		accept bool
	}{
		{"an object is accepted", `{"seatNo":7,"userId":"u-1"}`, true},
		{"white space around the value is accepted", " \n{\"a\":1}\t", true},
		{"a scalar is accepted", `42`, true},
		{"escaped non-ASCII text is accepted", `{"name":"\uc548\ub155 <&>"}`, true},
		{"raw non-ASCII text is accepted", `{"name":"안녕"}`, true},
		{"a truncated object is refused", `{"open":`, false},
		{"two values are refused", `{} {}`, false},
		{"invalid UTF-8 in a string is refused", "{\"name\":\"\xff\xfe\"}", false},
		{"a member name given twice is refused", `{"a":1,"a":2}`, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			events := []Event{{Type: "SeatHeld", Data: json.RawMessage(c.data)}}
			err := validateAppend(events)
			if (err == nil) != c.accept {
				t.Fatalf("validateAppend(%q) = %v, want accepted %v", c.data, err, c.accept)
			}
			// What is accepted must decode; what is refused would not have.
			body, _, err := encodeCommit(agg, events, Metadata{}, time.Now)
			if err != nil {
				t.Fatal(err)
			}
			_, decErr := DecodeCommit(body, "SEATS_0", 1)
			if (decErr == nil) != c.accept {
				t.Fatalf("a commit of %q decodes with error %v, where validateAppend's verdict was accepted %v", c.data, decErr, c.accept)
			}
		})
	}
}

// BenchmarkPayloadCheck compares validateAppend with encoding/json's Valid, which it replaced,
// on a ReservationHeld's payload.
func BenchmarkPayloadCheck(b *testing.B) {
	data := json.RawMessage(`{"reservationId":"01a25218-ba15-7e83-bdea-00656ab3ef43","userId":"bench-8e155ac9-book-u-2363",` +
		`"concertId":"bench-8e155ac9-book-0","dateId":"d1","seatNo":2364,"seatNos":[2364],"price":100,` +
		`"heldAt":"2026-12-07T20:01:21.941951194Z","heldUntil":"2026-12-07T20:06:21.941951194Z"}`)
	events := []Event{{Type: "ReservationHeld", Data: data}}
	b.Run("encoding/json Valid", func(b *testing.B) {
		for b.Loop() {
			if !json.Valid(data) {
				b.Fatal("invalid")
			}
		}
	})
	b.Run("validateAppend", func(b *testing.B) {
		for b.Loop() {
			if err := validateAppend(events); err != nil {
				b.Fatal(err)
			}
		}
	})
}
