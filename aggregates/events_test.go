package aggregates

import (
	"errors"
	"reflect"
	"testing"
	"time"
)

// samples holds one value of every event type, every field set, so a field that does not
// survive encoding shows up as a difference.
func samples() []Event {
	when := time.Date(2026, 12, 24, 19, 30, 15, 123456789, time.UTC)
	return []Event{
		ConcertCreated{ConcertID: "c1", Title: "Aurora Live 공연", SalesOpenedAt: when, Dates: []DateSpec{
			{DateID: "d1", StartsAt: when.Add(48 * time.Hour), SeatCount: 50, Price: 120000, SeatPrices: []PriceRange{{From: 1, To: 10, Price: 150000}}},
			{DateID: "d2", StartsAt: when.Add(72 * time.Hour), SeatCount: 10000, Price: 0},
		}},
		DateSoldOut{ConcertID: "c1", DateID: "d1", SoldOutAt: when.Add(time.Hour), SalesOpenedAt: when},
		QueueTokenIssued{TokenID: "t1", UserID: "alice", IssuedAt: when},
		QueueTokenRevoked{TokenID: "t1", Reason: "PAID", RevokedAt: when},
		QueueAdvanced{Watermark: 1 << 40, At: when},
		SeatHeld{ReservationID: "r1", UserID: "alice", HeldUntil: when},
		SeatReleased{ReservationID: "r1", Reason: ReleaseExpired},
		SeatSold{ReservationID: "r1", PaymentID: "p1"},
		ReservationHeld{ReservationID: "r1", UserID: "alice", ConcertID: "c1", DateID: "d1", SeatNo: 7, Price: 120000, HeldAt: when, HeldUntil: when.Add(5 * time.Minute)},
		ReservationPaymentStarted{PaymentID: "p1"},
		ReservationPaymentAborted{PaymentID: "p1", Reason: FailInsufficientPoints},
		ReservationConfirmed{PaymentID: "p1", ConfirmedAt: when},
		ReservationExpired{ExpiredAt: when},
		ReservationCancelled{Reason: ReleaseRefunded, PaymentID: "p1", CancelledAt: when},
		PaymentStarted{PaymentID: "p1", ReservationID: "r1", UserID: "alice", Amount: 120000, StartedAt: when},
		PaymentCompleted{PaymentID: "p1", CompletedAt: when},
		PaymentFailed{PaymentID: "p1", Reason: FailNotPayable, FailedAt: when},
		PaymentRefundStarted{PaymentID: "p1", StartedAt: when},
		PaymentRefunded{PaymentID: "p1", RefundedAt: when},
		PointsCharged{Amount: 10_000_000, Reference: "charge-1"},
		PointsDebited{Amount: 120000, PaymentID: "p1"},
		PointsRefunded{Amount: 120000, PaymentID: "p1", Reason: RefundRefund},
	}
}

func TestEveryRegisteredEventHasASample(t *testing.T) {
	have := map[string]bool{}
	for _, e := range samples() {
		if have[e.EventType()] {
			t.Errorf("two samples of %s", e.EventType())
		}
		have[e.EventType()] = true
	}
	for name := range registry {
		if !have[name] {
			t.Errorf("event type %s is registered but has no sample here", name)
		}
	}
	for name := range have {
		if _, ok := registry[name]; !ok {
			t.Errorf("event type %s is not registered, so it cannot be decoded", name)
		}
	}
}

func TestEventsRoundTrip(t *testing.T) {
	for _, want := range samples() {
		t.Run(want.EventType()+" encodes and decodes to an equal value", func(t *testing.T) {
			data, err := Encode(want)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			got, err := Decode(want.EventType(), data)
			if err != nil {
				t.Fatalf("decode %s: %v", data, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("round trip changed the event:\n got %#v\nwant %#v\njson %s", got, want, data)
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	tests := []struct {
		name      string
		eventType string
		data      string
		err       error // nil: any error
	}{
		{name: "an unknown type gives ErrUnknownEvent", eventType: "SeatTeleported", data: `{}`, err: ErrUnknownEvent},
		{name: "an empty type gives ErrUnknownEvent", eventType: "", data: `{}`, err: ErrUnknownEvent},
		{name: "a type name differing in case gives ErrUnknownEvent", eventType: "seatheld", data: `{}`, err: ErrUnknownEvent},
		{name: "malformed JSON is an error", eventType: "SeatHeld", data: `{"reservationId":`},
		{name: "a field of the wrong type is an error", eventType: "PointsCharged", data: `{"amount":"lots"}`},
		{name: "a bad time is an error", eventType: "SeatHeld", data: `{"heldUntil":"tomorrow"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := Decode(tt.eventType, []byte(tt.data))
			if err == nil {
				t.Fatalf("decoded %#v, want an error", e)
			}
			if tt.err != nil && !errors.Is(err, tt.err) {
				t.Fatalf("error = %v, want %v", err, tt.err)
			}
			if tt.err == nil && errors.Is(err, ErrUnknownEvent) {
				t.Fatalf("a known type reported as unknown: %v", err)
			}
		})
	}
}

// FuzzDecode checks that decoding never panics and that whatever decodes is a value (never a
// pointer, so type switches match) that encodes and decodes to itself.
func FuzzDecode(f *testing.F) {
	for _, e := range samples() {
		data, err := Encode(e)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(e.EventType(), data)
	}
	f.Add("SeatHeld", []byte("null"))
	f.Add("Nope", []byte("{}"))
	f.Fuzz(func(t *testing.T, eventType string, data []byte) {
		e, err := Decode(eventType, data)
		if err != nil {
			return
		}
		if reflect.TypeOf(e).Kind() == reflect.Pointer {
			t.Fatalf("Decode returned a pointer %T", e)
		}
		if e.EventType() != eventType {
			t.Fatalf("decoded a %s from type %s", e.EventType(), eventType)
		}
		again, err := Encode(e)
		if err != nil {
			t.Fatalf("a decoded event does not encode: %v", err)
		}
		back, err := Decode(eventType, again)
		if err != nil {
			t.Fatalf("a re-encoded event does not decode: %v (%s)", err, again)
		}
		if !reflect.DeepEqual(normalized(t, back), normalized(t, e)) {
			t.Fatalf("re-encoding changed the event:\n%#v\n%#v", back, e)
		}
	})
}

// normalized re-encodes an event so that values JSON cannot tell apart (a nil and an empty
// slice, time zones of the same instant) compare equal.
func normalized(t *testing.T, e Event) string {
	data, err := Encode(e)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// BenchmarkDecode decodes one payload of every event type per iteration: decoding is a large
// share of a rebuild's and a restart's work, so a slower registry shows here first.
func BenchmarkDecode(b *testing.B) {
	type payload struct {
		eventType string
		data      []byte
	}
	var payloads []payload
	for _, e := range samples() {
		data, err := Encode(e)
		if err != nil {
			b.Fatal(err)
		}
		payloads = append(payloads, payload{e.EventType(), data})
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, p := range payloads {
			if _, err := Decode(p.eventType, p.data); err != nil {
				b.Fatal(err)
			}
		}
	}
}

func TestDecodeKnown(t *testing.T) {
	held := SeatHeld{ReservationID: "r1", UserID: "alice", HeldUntil: time.Date(2026, 12, 24, 19, 30, 0, 0, time.UTC)}
	data, err := Encode(held)
	if err != nil {
		t.Fatal(err)
	}
	stored := SeatHeld{ReservationID: "stored"} // what data would be if known were not taken
	storedData, err := Encode(stored)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		known any
		typ   string
		data  []byte
		want  Event
	}{
		{"a known event of the type is taken as it is", held, "SeatHeld", storedData, held},
		{"without a known event the payload is decoded", nil, "SeatHeld", data, held},
		{"a known event of another type is not taken", SeatSold{ReservationID: "r1"}, "SeatHeld", storedData, stored},
		{"a pointer to the event is not taken: type switches would miss it", &held, "SeatHeld", storedData, stored},
		{"a known value that is no event is not taken", "SeatHeld", "SeatHeld", storedData, stored},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := DecodeKnown(tt.known, tt.typ, tt.data)
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v, %v; want %#v", got, err, tt.want)
			}
		})
	}
	if _, err := DecodeKnown(held, "Nope", data); !errors.Is(err, ErrUnknownEvent) {
		t.Errorf("an unknown type with a known value: %v, want ErrUnknownEvent", err)
	}
}
