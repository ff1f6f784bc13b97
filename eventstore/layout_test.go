package eventstore_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/booking-engine/booking/eventstore"
)

func TestAggregatesHeldInTheirDatesCommitsShareItsStreams(t *testing.T) {
	seats := eventstore.StreamsOf(eventstore.TypeDate)
	tests := []struct {
		name  string
		types []string
		want  []string
	}{
		{"a date's seats, reservations and payments are read from its streams once", []string{eventstore.TypeSeat, eventstore.TypeReservation, eventstore.TypePayment}, seats},
		{"reservations and payments, as the relay reads them, are the date streams once", []string{eventstore.TypeReservation, eventstore.TypePayment}, seats},
		{"streams of different contexts are all kept, in order", []string{eventstore.TypePayment, eventstore.TypeWallet}, append(slices.Clone(seats), eventstore.StreamsOf(eventstore.TypeWallet)...)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := eventstore.StreamsOfTypes(tt.types...); !slices.Equal(got, tt.want) {
				t.Fatalf("StreamsOfTypes(%v) = %v, want %v", tt.types, got, tt.want)
			}
		})
	}
	t.Run("a payment has no subject of its own", func(t *testing.T) {
		if _, _, err := eventstore.Place(eventstore.AggregateRef{Type: eventstore.TypePayment, ID: "p1"}); err == nil {
			t.Fatal("a payment was placed on a subject of its own")
		}
	})
	t.Run("the layout has no payment streams", func(t *testing.T) {
		for _, s := range eventstore.Layout() {
			if strings.HasPrefix(s.Name, "PAYMENTS") {
				t.Fatalf("stream %s in the layout", s.Name)
			}
		}
	})
}

func TestALogOfTheFormerSchemaIsRefusedAtStart(t *testing.T) {
	dir := t.TempDir()
	s, err := eventstore.Open(testCtx(t), eventstore.Options{DataDir: dir, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	// A schema-3 commit of a date, as the build before payments moved into dates wrote it.
	_, subject, _ := eventstore.Place(eventstore.AggregateRef{Type: eventstore.TypeDate, ID: "c1.d1"})
	body := `{"schemaVersion":3,"events":[{"eventId":"x","type":"SeatHeld","aggregateType":"seat","aggregateId":"c1.d1.1","occurredAt":"2026-12-01T00:00:00Z","schemaVersion":3,"data":{}}]}`
	if _, err := s.JetStream().Publish(testCtx(t), subject, []byte(body)); err != nil {
		t.Fatal(err)
	}
	_ = s.Close()
	again, err := eventstore.Open(testCtx(t), eventstore.Options{DataDir: dir, Logger: quietLogger()})
	if err == nil {
		_ = again.Close()
	}
	if !errors.Is(err, eventstore.ErrSchema) || !strings.Contains(err.Error(), "schema 3") || !strings.Contains(err.Error(), "empty data dir") {
		t.Fatalf("opening a schema-3 log: %v, want ErrSchema naming schema 3 and the way out", err)
	}
}
