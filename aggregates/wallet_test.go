package aggregates

import (
	"math"
	"testing"
)

func TestWallet(t *testing.T) {
	charged := func(n int64) PointsCharged { return PointsCharged{Amount: n, Reference: "earlier"} }
	debited := func(p string, n int64) PointsDebited { return PointsDebited{Amount: n, PaymentID: p} }
	refunded := func(p string, n int64, reason string) PointsRefunded {
		return PointsRefunded{Amount: n, PaymentID: p, Reason: reason}
	}
	charge := func(n int64) func(Wallet) ([]Event, error) {
		return func(w Wallet) ([]Event, error) { return w.DecideCharge(Charge{Amount: n, Reference: "ref"}) }
	}
	debit := func(p string, n int64) func(Wallet) ([]Event, error) {
		return func(w Wallet) ([]Event, error) { return w.DecideDebit(Debit{PaymentID: p, Amount: n}) }
	}
	refund := func(p, reason string) func(Wallet) ([]Event, error) {
		return func(w Wallet) ([]Event, error) { return w.DecideRefund(RefundDebit{PaymentID: p, Reason: reason}) }
	}
	balance := func(want int64) func(*testing.T, Wallet) {
		return func(t *testing.T, w Wallet) {
			t.Helper()
			if w.Balance() != want {
				t.Fatalf("balance = %d, want %d", w.Balance(), want)
			}
		}
	}
	debitedFor := func(p string, want bool) func(*testing.T, Wallet) {
		return func(t *testing.T, w Wallet) {
			t.Helper()
			if w.Debited(p) != want {
				t.Fatalf("Debited(%q) = %v, want %v", p, w.Debited(p), want)
			}
		}
	}
	// No sequence of legal charges gets near the int64 limit in a test's time, so the balance
	// is given as one recorded fact, which Apply trusts as it trusts the log.
	room := int64(5)
	nearMax := []Event{charged(math.MaxInt64 - room)}

	run(t, Wallet.Apply, []spec[Wallet]{
		{name: "an unknown wallet has balance 0", when: refund("p1", RefundReversal), after: balance(0)},
		{name: "a charge of 1 point is accepted", when: charge(1), then: []Event{PointsCharged{Amount: 1, Reference: "ref"}}, after: balance(1)},
		{name: "a charge of 10,000,000 points is accepted", when: charge(10_000_000), then: []Event{PointsCharged{Amount: 10_000_000, Reference: "ref"}}, after: balance(10_000_000)},
		{name: "a charge of 0 points is invalid", when: charge(0), err: ErrInvalidAmount},
		{name: "a retried charge whose reference was already applied changes nothing", given: []Event{PointsCharged{Amount: 5, Reference: "ref"}},
			when: charge(5), after: balance(5)},
		{name: "a negative charge is invalid", when: charge(-5), err: ErrInvalidAmount},
		{name: "a charge of 10,000,001 points is invalid", when: charge(10_000_001), err: ErrInvalidAmount},
		{name: "charges add up", given: []Event{charged(300), charged(200)}, when: charge(500), then: []Event{PointsCharged{Amount: 500, Reference: "ref"}}, after: balance(1000)},
		{name: "a charge that fits exactly under the int64 limit is accepted", given: nearMax, when: charge(room), then: []Event{PointsCharged{Amount: room, Reference: "ref"}}, after: balance(math.MaxInt64)},
		{name: "a charge that would overflow the balance is refused", given: nearMax, when: charge(room + 1), err: ErrInvalidAmount},

		{name: "a debit within the balance is taken", given: []Event{charged(1000)}, when: debit("p1", 600), then: []Event{debited("p1", 600)}, after: func(t *testing.T, w Wallet) {
			balance(400)(t, w)
			debitedFor("p1", true)(t, w)
		}},
		{name: "a debit of the whole balance leaves zero", given: []Event{charged(1000)}, when: debit("p1", 1000), then: []Event{debited("p1", 1000)}, after: balance(0)},
		{name: "a debit of zero points for a free seat is taken", when: debit("p1", 0), then: []Event{debited("p1", 0)}, after: debitedFor("p1", true)},
		{name: "a debit never takes the balance below zero", given: []Event{charged(1000)}, when: debit("p1", 1001), err: ErrInsufficientPoints},
		{name: "a refused debit leaves the balance intact", given: []Event{charged(1000)}, when: debit("p1", 5000), err: ErrInsufficientPoints},
		{name: "an empty wallet cannot pay", when: debit("p1", 1), err: ErrInsufficientPoints},
		{name: "a negative debit is invalid", given: []Event{charged(1000)}, when: debit("p1", -1), err: ErrInvalidAmount},
		{name: "a debit without a payment is invalid", given: []Event{charged(1000)}, when: debit("", 10), err: ErrInvalid},
		{name: "a debit is taken once per payment", given: []Event{charged(1000), debited("p1", 600)}, when: debit("p1", 600), after: balance(400)},
		{name: "a reversed debit is not taken again", given: []Event{charged(1000), debited("p1", 600), refunded("p1", 600, RefundReversal)}, when: debit("p1", 600), after: balance(1000)},
		{name: "debits of two payments are both taken", given: []Event{charged(1000), debited("p1", 600)}, when: debit("p2", 400), then: []Event{debited("p2", 400)}, after: balance(0)},

		{name: "a debit is refunded", given: []Event{charged(1000), debited("p1", 600)}, when: refund("p1", RefundRefund), then: []Event{refunded("p1", 600, RefundRefund)}, after: func(t *testing.T, w Wallet) {
			balance(1000)(t, w)
			debitedFor("p1", false)(t, w)
		}},
		{name: "a debit is reversed with its own amount", given: []Event{charged(1000), debited("p1", 600), debited("p2", 300)}, when: refund("p2", RefundReversal), then: []Event{refunded("p2", 300, RefundReversal)}, after: func(t *testing.T, w Wallet) {
			balance(400)(t, w)
			debitedFor("p1", true)(t, w)
		}},
		{name: "a debit is refunded once", given: []Event{charged(1000), debited("p1", 600), refunded("p1", 600, RefundReversal)}, when: refund("p1", RefundRefund), after: balance(1000)},
		{name: "a refund without a debit is a no-op", given: []Event{charged(1000)}, when: refund("p1", RefundRefund), after: func(t *testing.T, w Wallet) {
			balance(1000)(t, w)
			debitedFor("p1", false)(t, w)
		}},
	})
}
