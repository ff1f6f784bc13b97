package aggregates

import (
	"strconv"
	"testing"
	"time"
)

// TestWalletsCompaction: a group forgets the references of charges and of debits given back
// after a retention (24 hours for what a client's key may repeat), never an open debit.
func TestWalletsCompaction(t *testing.T) {
	const (
		unkeyed = "0190e6d4-0000-7000-8000-000000000001" // a fresh UUIDv7
		keyed   = "6f1c1d2e-5b7a-5c9e-9a57-2f0e8c3b7d41" // a UUIDv5 of a request key
	)
	later := func(d time.Duration) time.Time { return t0.Add(d) }
	// foldAt applies events recorded at t0, then one unrelated charge recorded at now, whose
	// Compact moves the group's clock.
	foldAt := func(now time.Time, evs ...Event) Wallets {
		var ws Wallets
		for _, e := range evs {
			ws = ws.Apply(e).Compact(t0)
		}
		return ws.Apply(PointsCharged{Amount: 1, Reference: "tick", UserID: "other"}).Compact(now)
	}
	charge := func(ws Wallets, ref string) []Event {
		evs, _ := ws.Decide("u1", func(w Wallet) ([]Event, error) { return w.DecideCharge(Charge{Amount: 10, Reference: ref}) })
		return evs
	}
	debit := func(ws Wallets, pid string) []Event {
		evs, _ := ws.Decide("u1", func(w Wallet) ([]Event, error) { return w.DecideDebit(Debit{PaymentID: pid, Amount: 10}) })
		return evs
	}
	paid := []Event{PointsCharged{Amount: 100, Reference: unkeyed, UserID: "u1"}, PointsDebited{Amount: 10, PaymentID: "p1", UserID: "u1"}}
	tests := []struct {
		name string
		ws   Wallets
		when func(Wallets) []Event
		want int // events decided: 0 for a repeat recognised
	}{
		{"an unkeyed charge repeated within the retention counts once",
			foldAt(later(EndedRetention-time.Second), paid[0]), func(ws Wallets) []Event { return charge(ws, unkeyed) }, 0},
		{"an unkeyed charge's reference is forgotten after the retention",
			foldAt(later(EndedRetention+time.Second), paid[0]), func(ws Wallets) []Event { return charge(ws, unkeyed) }, 1},
		{"a keyed charge repeated a day less a minute later counts once",
			foldAt(later(KeyedRetention-time.Minute), PointsCharged{Amount: 100, Reference: keyed, UserID: "u1"}), func(ws Wallets) []Event { return charge(ws, keyed) }, 0},
		{"an open debit is never forgotten, however old",
			foldAt(later(48*time.Hour), paid...), func(ws Wallets) []Event { return debit(ws, "p1") }, 0},
		{"a debit reversed because its payment failed is remembered while recovery may run the payment again",
			foldAt(later(KeyedRetention-time.Minute), append(paid, PointsRefunded{Amount: 10, PaymentID: "p1", Reason: RefundReversal, UserID: "u1"})...),
			func(ws Wallets) []Event { return debit(ws, "p1") }, 0},
		{"a debit given back by a refund is forgotten after the retention, and a refund of it gives nothing",
			foldAt(later(EndedRetention+time.Second), append(paid, PointsRefunded{Amount: 10, PaymentID: "p1", Reason: RefundRefund, UserID: "u1"})...),
			func(ws Wallets) []Event {
				evs, _ := ws.Decide("u1", func(w Wallet) ([]Event, error) {
					return w.DecideRefund(RefundDebit{PaymentID: "p1", Reason: RefundRefund})
				})
				return evs
			}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.when(tt.ws); len(got) != tt.want {
				t.Fatalf("decided %#v, want %d events", got, tt.want)
			}
		})
	}
}

// TestWalletsCompactionIsBounded: a user charging, paying and being refunded for ever keeps a
// wallet bounded by what was settled within the retention.
func TestWalletsCompactionIsBounded(t *testing.T) {
	var ws Wallets
	now := t0
	for i := range 10_000 {
		now = now.Add(100 * time.Millisecond)
		pid, ref := "p"+strconv.Itoa(i), "0190e6d4-0000-7000-8000-"+strconv.Itoa(100000000000+i)
		for _, e := range []Event{
			PointsCharged{Amount: 10, Reference: ref, UserID: "u1"},
			PointsDebited{Amount: 10, PaymentID: pid, UserID: "u1"},
			PointsRefunded{Amount: 10, PaymentID: pid, Reason: RefundRefund, UserID: "u1"},
		} {
			ws = ws.Apply(e).Compact(now)
		}
	}
	w := ws.wallets["u1"]
	limit := int(EndedRetention/(100*time.Millisecond)) + 2
	if len(w.charged) > limit || len(w.debits) > limit || len(w.refunded) > limit || ws.settled.len() > 2*limit {
		t.Fatalf("after 10,000 bookings the wallet keeps %d charges, %d debits, %d refunds (%d settled), want at most %d each",
			len(w.charged), len(w.debits), len(w.refunded), ws.settled.len(), limit)
	}
	if w.balance != 100_000 {
		t.Fatalf("balance %d, want 100,000", w.balance)
	}
}
