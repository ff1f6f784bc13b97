package eventstore_test

import (
	"errors"
	"fmt"
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

func TestWalletGroups(t *testing.T) {
	t.Run("a user's group is the same on every call, and one of WalletGroups", func(t *testing.T) {
		for i := range 1000 {
			user := fmt.Sprintf("user-%d", i)
			g := eventstore.WalletGroupOf(user)
			if g != eventstore.WalletGroupOf(user) || g.Type != eventstore.TypeWalletGroup {
				t.Fatalf("%s: group %v, then %v", user, g, eventstore.WalletGroupOf(user))
			}
			if _, _, err := eventstore.Place(g); err != nil {
				t.Fatalf("%s: group %v cannot be placed: %v", user, g, err)
			}
		}
	})
	t.Run("every stream of the wallets holds as many groups", func(t *testing.T) {
		per := map[string]int{}
		for g := range eventstore.WalletGroups {
			stream, subject, err := eventstore.Place(eventstore.AggregateRef{Type: eventstore.TypeWalletGroup, ID: fmt.Sprint(g)})
			if err != nil {
				t.Fatal(err)
			}
			if ref, ok := eventstore.RefFromSubject(subject); !ok || ref.ID != fmt.Sprint(g) || ref.Type != eventstore.TypeWalletGroup {
				t.Errorf("subject %s reads back as %v, %v", subject, ref, ok)
			}
			per[stream]++
		}
		if len(per) != eventstore.Partitions {
			t.Fatalf("groups in %d streams, want %d: %v", len(per), eventstore.Partitions, per)
		}
		for stream, n := range per {
			if n != eventstore.WalletGroups/eventstore.Partitions {
				t.Errorf("%s holds %d groups, want %d", stream, n, eventstore.WalletGroups/eventstore.Partitions)
			}
		}
	})
	t.Run("a user's wallet is in the WALLETS streams, with no subject of its own", func(t *testing.T) {
		if got := eventstore.StreamsOf(eventstore.TypeWallet); !slices.Equal(got, eventstore.StreamsOf(eventstore.TypeWalletGroup)) || !strings.HasPrefix(got[0], "WALLETS_") {
			t.Errorf("StreamsOf(wallet) = %v", got)
		}
		if _, _, err := eventstore.Place(eventstore.AggregateRef{Type: eventstore.TypeWallet, ID: "u1"}); err == nil {
			t.Error("a wallet was placed on a subject of its own")
		}
	})
	for _, id := range []string{fmt.Sprint(eventstore.WalletGroups), "-1", "07", "x", "1.2", ""} {
		t.Run(fmt.Sprintf("a group named %q is refused", id), func(t *testing.T) {
			if _, _, err := eventstore.Place(eventstore.AggregateRef{Type: eventstore.TypeWalletGroup, ID: id}); err == nil {
				t.Errorf("group %q placed", id)
			}
		})
	}
}

func TestQueueGroups(t *testing.T) {
	t.Run("a user's queue group is the same on every call, one of QueueGroups, on QUEUE", func(t *testing.T) {
		for i := range 1000 {
			user := fmt.Sprintf("u%d", i)
			g := eventstore.QueueGroupOf(user)
			stream, subject, err := eventstore.Place(g)
			if g != eventstore.QueueGroupOf(user) || g.Type != eventstore.TypeQueueGroup || err != nil || stream != "QUEUE" {
				t.Fatalf("%s: group %v in %s (%v)", user, g, stream, err)
			}
			if ref, ok := eventstore.RefFromSubject(subject); !ok || ref != g {
				t.Fatalf("%s: subject %s reads back as %v", user, subject, ref)
			}
		}
	})
	t.Run("a queue user is in the QUEUE stream, with no subject of its own", func(t *testing.T) {
		if got := eventstore.StreamsOf(eventstore.TypeQueueUser); !slices.Equal(got, []string{"QUEUE"}) {
			t.Errorf("StreamsOf(queueuser) = %v", got)
		}
		if _, _, err := eventstore.Place(eventstore.AggregateRef{Type: eventstore.TypeQueueUser, ID: "u1"}); err == nil {
			t.Error("a queue user was placed on a subject of its own")
		}
	})
	for _, id := range []string{fmt.Sprint(eventstore.QueueGroups), "-1", "07", "x", "1.2", ""} {
		t.Run(fmt.Sprintf("a queue group named %q is refused", id), func(t *testing.T) {
			if _, _, err := eventstore.Place(eventstore.AggregateRef{Type: eventstore.TypeQueueGroup, ID: id}); err == nil {
				t.Errorf("group %q placed", id)
			}
		})
	}
}
