package aggregates

import "testing"

func TestWallets(t *testing.T) {
	charged := func(user string, n int64, ref string) PointsCharged {
		return PointsCharged{Amount: n, Reference: ref, UserID: user}
	}
	debited := func(user, p string, n int64) PointsDebited {
		return PointsDebited{Amount: n, PaymentID: p, UserID: user}
	}
	refunded := func(user, p string, n int64) PointsRefunded {
		return PointsRefunded{Amount: n, PaymentID: p, Reason: RefundRefund, UserID: user}
	}
	charge := func(user string, n int64, ref string) func(Wallets) ([]Event, error) {
		return func(ws Wallets) ([]Event, error) {
			return ws.Decide(user, func(w Wallet) ([]Event, error) { return w.DecideCharge(Charge{Amount: n, Reference: ref}) })
		}
	}
	debit := func(user, p string, n int64) func(Wallets) ([]Event, error) {
		return func(ws Wallets) ([]Event, error) {
			return ws.Decide(user, func(w Wallet) ([]Event, error) { return w.DecideDebit(Debit{PaymentID: p, Amount: n}) })
		}
	}
	refund := func(user, p string) func(Wallets) ([]Event, error) {
		return func(ws Wallets) ([]Event, error) {
			return ws.Decide(user, func(w Wallet) ([]Event, error) {
				return w.DecideRefund(RefundDebit{PaymentID: p, Reason: RefundRefund})
			})
		}
	}
	balances := func(want map[string]int64) func(*testing.T, Wallets) {
		return func(t *testing.T, ws Wallets) {
			t.Helper()
			for user, b := range want {
				if got := ws.Wallet(user).Balance(); got != b {
					t.Errorf("balance of %s = %d, want %d", user, got, b)
				}
			}
		}
	}

	run(t, Wallets.Apply, []spec[Wallets]{
		{name: "a charge names its user and counts on that user's wallet only", given: []Event{charged("u2", 50, "c0")},
			when: charge("u1", 100, "c1"), then: []Event{charged("u1", 100, "c1")}, after: balances(map[string]int64{"u1": 100, "u2": 50})},
		{name: "a debit is paid from its user's wallet, not from another's points", given: []Event{charged("u2", 1000, "c0")},
			when: debit("u1", "p1", 10), err: ErrInsufficientPoints},
		{name: "a debit within its user's balance is taken and names the user", given: []Event{charged("u1", 100, "c1"), charged("u2", 100, "c2")},
			when: debit("u1", "p1", 60), then: []Event{debited("u1", "p1", 60)}, after: balances(map[string]int64{"u1": 40, "u2": 100})},
		{name: "a retried charge of a user changes nothing", given: []Event{charged("u1", 100, "c1")},
			when: charge("u1", 100, "c1"), after: balances(map[string]int64{"u1": 100})},
		{name: "another user's charge with the same reference is a charge of its own", given: []Event{charged("u1", 100, "c1")},
			when: charge("u2", 100, "c1"), then: []Event{charged("u2", 100, "c1")}, after: balances(map[string]int64{"u1": 100, "u2": 100})},
		{name: "a payment's debit is taken once from a wallet", given: []Event{charged("u1", 100, "c1"), debited("u1", "p1", 60)},
			when: debit("u1", "p1", 60), after: balances(map[string]int64{"u1": 40})},
		{name: "a refund returns the debit to its own user and names them", given: []Event{charged("u1", 100, "c1"), debited("u1", "p1", 60), charged("u2", 5, "c2")},
			when: refund("u1", "p1"), then: []Event{refunded("u1", "p1", 60)}, after: balances(map[string]int64{"u1": 100, "u2": 5})},
		{name: "a refund of another user's payment is a no-op", given: []Event{charged("u1", 100, "c1"), debited("u1", "p1", 60)},
			when: refund("u2", "p1"), after: balances(map[string]int64{"u1": 40, "u2": 0})},
		{name: "a wallet command without a user is invalid", when: charge("", 100, "c1"), err: ErrInvalid},
		{name: "a wallet event without a user changes no wallet", given: []Event{PointsCharged{Amount: 100, Reference: "c1"}, SeatHeld{UserID: "u1"}},
			when: debit("u1", "p1", 1), err: ErrInsufficientPoints},
	})
}

func TestAWalletTakenFromItsGroupIsNotChangedByLaterCommits(t *testing.T) {
	ws := Wallets{}.Apply(PointsCharged{Amount: 100, Reference: "c1", UserID: "u1"})
	w := ws.Wallet("u1")
	c := ws.Clone()
	ws = ws.Apply(PointsDebited{Amount: 60, PaymentID: "p1", UserID: "u1"})
	if w.Balance() != 100 || w.Debited("p1") {
		t.Errorf("the wallet taken before the debit has balance %d, debited %v; want 100, false", w.Balance(), w.Debited("p1"))
	}
	if cw := c.Wallet("u1"); cw.Balance() != 100 || cw.Debited("p1") {
		t.Errorf("the group's clone has balance %d, debited %v; want 100, false", cw.Balance(), cw.Debited("p1"))
	}
	c = c.Apply(PointsDebited{Amount: 10, PaymentID: "p2", UserID: "u1"})
	if got := ws.Wallet("u1"); got.Debited("p2") || got.Balance() != 40 {
		t.Errorf("a debit applied to the clone reached the original: balance %d, debited p2 %v", got.Balance(), got.Debited("p2"))
	}
}

func TestABalanceAfterADecisionIsTheBalanceItsEventsLeave(t *testing.T) {
	tests := []struct {
		name  string
		given []Event
		when  func(Wallets) ([]Event, error)
	}{
		{"a charge adds its points", []Event{PointsCharged{Amount: 10, Reference: "c1", UserID: "u1"}},
			func(ws Wallets) ([]Event, error) {
				return ws.Decide("u1", func(w Wallet) ([]Event, error) { return w.DecideCharge(Charge{Amount: 5, Reference: "c2"}) })
			}},
		{"a debit takes its points", []Event{PointsCharged{Amount: 10, Reference: "c1", UserID: "u1"}},
			func(ws Wallets) ([]Event, error) {
				return ws.Decide("u1", func(w Wallet) ([]Event, error) { return w.DecideDebit(Debit{PaymentID: "p1", Amount: 7}) })
			}},
		{"a refund gives a debit's points back", []Event{PointsCharged{Amount: 10, Reference: "c1", UserID: "u1"}, PointsDebited{Amount: 7, PaymentID: "p1", UserID: "u1"}},
			func(ws Wallets) ([]Event, error) {
				return ws.Decide("u1", func(w Wallet) ([]Event, error) {
					return w.DecideRefund(RefundDebit{PaymentID: "p1", Reason: RefundRefund})
				})
			}},
		{"a repeated charge is the balance as it is", []Event{PointsCharged{Amount: 10, Reference: "c1", UserID: "u1"}},
			func(ws Wallets) ([]Event, error) {
				return ws.Decide("u1", func(w Wallet) ([]Event, error) { return w.DecideCharge(Charge{Amount: 10, Reference: "c1"}) })
			}},
		{"another user's points do not count", []Event{PointsCharged{Amount: 10, Reference: "c1", UserID: "u2"}},
			func(ws Wallets) ([]Event, error) {
				return ws.Decide("u1", func(w Wallet) ([]Event, error) { return w.DecideCharge(Charge{Amount: 3, Reference: "c2"}) })
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ws Wallets
			for _, e := range tt.given {
				ws = ws.Apply(e)
			}
			evs, err := tt.when(ws)
			if err != nil {
				t.Fatal(err)
			}
			got := ws.BalanceAfter("u1", evs)
			for _, e := range evs {
				ws = ws.Apply(e)
			}
			if want := ws.Wallet("u1").Balance(); got != want {
				t.Errorf("BalanceAfter = %d, the events left %d", got, want)
			}
		})
	}
}
