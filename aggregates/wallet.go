package aggregates

import (
	"fmt"
	"maps"
	"math"
)

// Limits of a charge, from the contract.
const (
	MinCharge = 1
	MaxCharge = 10_000_000
)

// Wallet is the state of one user's prepaid points.
type Wallet struct {
	balance  int64
	debits   map[string]int64 // payment → debited amount
	refunded map[string]bool  // payment → debit reversed
	charged  map[string]bool  // charge references seen, so a retried charge counts once
}

// Clone returns a copy of the wallet that no later Apply to either changes: a wallet lives in
// its group's state (Wallets), which later commits update in place.
func (w Wallet) Clone() Wallet {
	return Wallet{balance: w.balance, debits: maps.Clone(w.debits), refunded: maps.Clone(w.refunded), charged: maps.Clone(w.charged)}
}

// Balance returns the points available.
func (w Wallet) Balance() int64 { return w.balance }

// Charge is the command to add points.
type Charge struct {
	Amount    int64
	Reference string
}

// DecideCharge adds 1..10,000,000 points; a charge whose reference was already applied (a
// retry) changes nothing.
func (w Wallet) DecideCharge(cmd Charge) ([]Event, error) {
	if cmd.Reference != "" && w.charged[cmd.Reference] {
		return nil, nil
	}
	if cmd.Amount < MinCharge || cmd.Amount > MaxCharge {
		return nil, ErrInvalidAmount
	}
	if w.balance > math.MaxInt64-cmd.Amount {
		return nil, ErrInvalidAmount
	}
	return []Event{PointsCharged{Amount: cmd.Amount, Reference: cmd.Reference}}, nil
}

// Debit is the command to take a payment's points.
type Debit struct {
	PaymentID string
	Amount    int64
}

// DecideDebit takes the points once per payment and never below zero.
func (w Wallet) DecideDebit(cmd Debit) ([]Event, error) {
	// The ledger audit pairs every debit with its payment; an anonymous debit could not be
	// paid for or reversed.
	if cmd.PaymentID == "" {
		return nil, fmt.Errorf("%w: debit without a payment", ErrInvalid)
	}
	if _, done := w.debits[cmd.PaymentID]; done {
		return nil, nil
	}
	if cmd.Amount < 0 {
		return nil, ErrInvalidAmount
	}
	if w.balance < cmd.Amount {
		return nil, ErrInsufficientPoints
	}
	return []Event{PointsDebited{Amount: cmd.Amount, PaymentID: cmd.PaymentID}}, nil
}

// RefundDebit is the command to reverse a payment's debit.
type RefundDebit struct {
	PaymentID string
	Reason    string
}

// DecideRefund returns a payment's points once; without a debit there is nothing to reverse.
func (w Wallet) DecideRefund(cmd RefundDebit) ([]Event, error) {
	amount, debited := w.debits[cmd.PaymentID]
	if !debited || w.refunded[cmd.PaymentID] {
		return nil, nil
	}
	return []Event{PointsRefunded{Amount: amount, PaymentID: cmd.PaymentID, Reason: cmd.Reason}}, nil
}

// BalanceAfter returns the balance once evs, events this wallet decided, are applied, without
// applying them: a caller that only answers with the balance needs no copy of the wallet's
// references.
func (w Wallet) BalanceAfter(evs []Event) int64 {
	b := w.balance
	for _, e := range evs {
		switch ev := e.(type) {
		case PointsCharged:
			b += ev.Amount
		case PointsDebited:
			b -= ev.Amount
		case PointsRefunded:
			b += ev.Amount
		}
	}
	return b
}

// Debited reports whether a payment's points were taken and not given back.
func (w Wallet) Debited(paymentID string) bool {
	_, ok := w.debits[paymentID]
	return ok && !w.refunded[paymentID]
}

// Apply returns the state after one event. It reuses the receiver's maps (copying them would
// make replaying a long wallet quadratic), so a caller must not keep using the old state.
func (w Wallet) Apply(e Event) Wallet {
	switch ev := e.(type) {
	case PointsCharged:
		w.balance += ev.Amount
		if ev.Reference != "" {
			if w.charged == nil {
				w.charged = map[string]bool{}
			}
			w.charged[ev.Reference] = true
		}
	case PointsDebited:
		w.balance -= ev.Amount
		if w.debits == nil {
			w.debits = map[string]int64{}
		}
		w.debits[ev.PaymentID] = ev.Amount
	case PointsRefunded:
		w.balance += ev.Amount
		if w.refunded == nil {
			w.refunded = map[string]bool{}
		}
		w.refunded[ev.PaymentID] = true
	}
	return w
}
