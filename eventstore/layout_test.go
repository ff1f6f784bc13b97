package eventstore_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/booking-engine/booking/eventstore"
)

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
