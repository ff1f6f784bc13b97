package audit

import (
	"fmt"
	"slices"
	"strings"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// Payments and wallets: their state as their events arrive (a wallet's ledger checked on each
// event), and the checks in Report that join them: every debit paid for or reversed, nothing
// left in flight, every paid payment debited and matched by its reservation.

type ledgerEntry struct {
	wallet string
	amount int64
	reason string
	stream string
	seq    uint64
}

type payState struct {
	stream  string
	started aggregates.PaymentStarted
	status  aggregates.PaymentStatus
	lastSeq uint64
}

type walletState struct {
	stream   string
	balance  int64
	negative bool // the balance is below zero now
	debited  map[string]int64
	refunded map[string]bool
}

func (a *Auditor) addPayment(r Record) {
	id := r.AggregateID
	ref := Ref(eventstore.TypePayment, id)
	s := a.payments[id]
	if s == nil {
		s = &payState{stream: r.Stream}
		a.payments[id] = s
	}
	s.lastSeq = r.Sequence
	from := func(want aggregates.PaymentStatus) {
		if s.status != want {
			was := string(s.status)
			if was == "" {
				was = "not started"
			}
			a.found.flag(violation, CheckPaymentTransition, ref, &r, fmt.Sprintf("%s while %s", r.Type, was))
		}
	}
	switch ev := r.Event.(type) {
	case aggregates.PaymentStarted:
		if s.status != "" {
			a.found.flag(violation, CheckPaymentTransition, ref, &r, fmt.Sprintf("started again while %s", s.status))
		}
		if ev.PaymentID != id {
			a.found.flag(violation, CheckPaymentTransition, ref, &r, fmt.Sprintf("PaymentStarted names payment %s", ev.PaymentID))
		}
		s.started, s.status = ev, aggregates.PaymentStatusStarted
		a.paymentsOf[ev.ReservationID] = append(a.paymentsOf[ev.ReservationID], id)
	case aggregates.PaymentCompleted:
		from(aggregates.PaymentStatusStarted)
		s.status = aggregates.PaymentStatusCompleted
	case aggregates.PaymentFailed:
		from(aggregates.PaymentStatusStarted)
		s.status = aggregates.PaymentStatusFailed
	case aggregates.PaymentRefundStarted:
		from(aggregates.PaymentStatusCompleted)
		s.status = aggregates.PaymentStatusRefunding
	case aggregates.PaymentRefunded:
		from(aggregates.PaymentStatusRefunding)
		s.status = aggregates.PaymentStatusRefunded
	default:
		a.foreign(r)
	}
}

func (a *Auditor) addWallet(r Record) {
	id := r.AggregateID
	ref := Ref(eventstore.TypeWallet, id)
	w := a.wallets[id]
	if w == nil {
		w = &walletState{stream: r.Stream, debited: map[string]int64{}, refunded: map[string]bool{}}
		a.wallets[id] = w
	}
	add := func(delta int64) {
		sum := w.balance + delta
		// Signed overflow wraps around: the sum moves against the sign of delta.
		if (delta > 0 && sum < w.balance) || (delta < 0 && sum > w.balance) {
			a.found.flag(violation, CheckWalletAmount, ref, &r, fmt.Sprintf("balance %d overflows by %+d", w.balance, delta))
			return
		}
		w.balance = sum
	}
	switch ev := r.Event.(type) {
	case aggregates.PointsCharged:
		if ev.Amount < aggregates.MinCharge {
			a.found.flag(violation, CheckWalletAmount, ref, &r, fmt.Sprintf("charge of %d points (reference %s)", ev.Amount, ev.Reference))
		}
		add(ev.Amount)
		a.charged += ev.Amount
	case aggregates.PointsDebited:
		if ev.Amount < 0 {
			a.found.flag(violation, CheckWalletAmount, ref, &r, fmt.Sprintf("debit of %d points for payment %s", ev.Amount, ev.PaymentID), Ref(eventstore.TypePayment, ev.PaymentID))
		}
		add(-ev.Amount)
		if _, again := w.debited[ev.PaymentID]; !again {
			w.debited[ev.PaymentID] = ev.Amount
		}
		a.debits[ev.PaymentID] = append(a.debits[ev.PaymentID], ledgerEntry{wallet: id, amount: ev.Amount, stream: r.Stream, seq: r.Sequence})
	case aggregates.PointsRefunded:
		amount, debited := w.debited[ev.PaymentID]
		switch {
		case !debited:
			a.found.flag(violation, CheckWalletRefundWithoutDebit, ref, &r,
				fmt.Sprintf("refund of %d points for payment %s, which never debited this wallet", ev.Amount, ev.PaymentID), Ref(eventstore.TypePayment, ev.PaymentID))
		case w.refunded[ev.PaymentID]:
			a.found.flag(violation, CheckWalletDoubleRefund, ref, &r,
				fmt.Sprintf("debit of payment %s refunded again (%d points, reason %s)", ev.PaymentID, ev.Amount, ev.Reason), Ref(eventstore.TypePayment, ev.PaymentID))
		case amount != ev.Amount:
			a.found.flag(violation, CheckWalletAmount, ref, &r,
				fmt.Sprintf("refund of %d points for payment %s, which debited %d", ev.Amount, ev.PaymentID, amount), Ref(eventstore.TypePayment, ev.PaymentID))
		}
		if ev.Reason != aggregates.RefundReversal && ev.Reason != aggregates.RefundRefund {
			a.found.flag(violation, CheckWalletAmount, ref, &r, fmt.Sprintf("refund for payment %s with unknown reason %q", ev.PaymentID, ev.Reason), Ref(eventstore.TypePayment, ev.PaymentID))
		}
		if debited {
			w.refunded[ev.PaymentID] = true
		}
		add(ev.Amount)
		a.refunds[ev.PaymentID] = append(a.refunds[ev.PaymentID], ledgerEntry{wallet: id, amount: ev.Amount, reason: ev.Reason, stream: r.Stream, seq: r.Sequence})
	default:
		a.foreign(r)
		return
	}
	// Report each dip below zero once, where it happens.
	if w.balance < 0 && !w.negative {
		a.found.flag(violation, CheckWalletNegative, ref, &r, fmt.Sprintf("balance %d after %s", w.balance, r.Type))
	}
	w.negative = w.balance < 0
}

// checkDebits: no payment debited twice, and every debit paid for or reversed.
func (a *Auditor) checkDebits(out *sink) {
	for _, pid := range sortedKeys(a.debits) {
		ds := a.debits[pid]
		pref := Ref(eventstore.TypePayment, pid)
		if len(ds) > 1 {
			where := make([]string, len(ds))
			related := make([]string, 0, len(ds))
			for i, d := range ds {
				where[i] = fmt.Sprintf("%d points from wallet %s at %s:%d", d.amount, d.wallet, d.stream, d.seq)
				if !slices.Contains(related, Ref(eventstore.TypeWallet, d.wallet)) {
					related = append(related, Ref(eventstore.TypeWallet, d.wallet))
				}
			}
			out.flag(violation, CheckPaymentDoubleDebit, pref, nil,
				fmt.Sprintf("debited %d times: %s", len(ds), strings.Join(where, "; ")), related...)
		}
		p := a.payments[pid]
		for _, d := range ds {
			wref := Ref(eventstore.TypeWallet, d.wallet)
			at := &Record{Stream: d.stream, Sequence: d.seq}
			reversed := a.reversed(pid, d.wallet)
			if p == nil {
				if !reversed {
					out.flag(violation, CheckDebitUnpaid, wref, at,
						fmt.Sprintf("debit of %d points for payment %s, which was never started, is not reversed", d.amount, pid), pref)
				}
				continue
			}
			if p.started.UserID != d.wallet {
				out.flag(violation, CheckDebitUnpaid, wref, at,
					fmt.Sprintf("debit of %d points for payment %s of user %s", d.amount, pid, p.started.UserID), pref)
			}
			switch p.status {
			case aggregates.PaymentStatusCompleted, aggregates.PaymentStatusRefunding, aggregates.PaymentStatusRefunded:
				if d.amount != p.started.Amount {
					out.flag(violation, CheckPaymentAmount, pref, at,
						fmt.Sprintf("%s payment of %d points debited %d from wallet %s", p.status, p.started.Amount, d.amount, d.wallet), wref)
				}
				if p.status == aggregates.PaymentStatusCompleted && reversed {
					out.flag(violation, CheckPaymentRefund, pref, nil,
						fmt.Sprintf("COMPLETED, yet its debit was returned to wallet %s", d.wallet), wref)
				}
				if p.status == aggregates.PaymentStatusRefunded && !reversed {
					out.flag(violation, CheckPaymentRefund, pref, nil,
						fmt.Sprintf("REFUNDED, yet its %d points were never returned to wallet %s", d.amount, d.wallet), wref)
				}
			case aggregates.PaymentStatusFailed:
				if !reversed {
					out.flag(violation, CheckDebitUnpaid, wref, at,
						fmt.Sprintf("debit of %d points for FAILED payment %s is not reversed", d.amount, pid), pref)
				}
			}
			// A STARTED payment is reported as in flight by checkPayments.
		}
	}
}

func (a *Auditor) reversed(pid, wallet string) bool {
	for _, r := range a.refunds[pid] {
		if r.wallet == wallet {
			return true
		}
	}
	return false
}

// checkPayments: nothing left in flight, and every paid payment debited and matched by its
// reservation.
func (a *Auditor) checkPayments(out *sink) {
	for _, pid := range sortedKeys(a.payments) {
		p := a.payments[pid]
		pref := Ref(eventstore.TypePayment, pid)
		rid := p.started.ReservationID
		rref := Ref(eventstore.TypeReservation, rid)
		if p.status == "" {
			out.flag(violation, CheckPaymentTransition, pref, nil, "events of a payment that was never started")
			continue
		}
		switch p.status {
		case aggregates.PaymentStatusStarted:
			msg := fmt.Sprintf("still STARTED: reservation %s, user %s, %d points", rid, p.started.UserID, p.started.Amount)
			if len(a.debits[pid]) > 0 && !a.reversed(pid, p.started.UserID) {
				msg += ", debited and not yet paid for"
			}
			out.flag(inFlight, CheckPaymentInFlight, pref, nil, msg, rref, Ref(eventstore.TypeWallet, p.started.UserID))
			continue
		case aggregates.PaymentStatusRefunding:
			out.flag(inFlight, CheckPaymentInFlight, pref, nil,
				fmt.Sprintf("still REFUNDING: reservation %s, user %s", rid, p.started.UserID), rref, Ref(eventstore.TypeWallet, p.started.UserID))
			continue
		case aggregates.PaymentStatusFailed:
			continue
		}
		// COMPLETED or REFUNDED: the points were taken, the reservation confirmed.
		if len(a.debits[pid]) == 0 {
			out.flag(violation, CheckPaymentWithoutDebit, pref, nil,
				fmt.Sprintf("%s without any debit (user %s, %d points)", p.status, p.started.UserID, p.started.Amount), Ref(eventstore.TypeWallet, p.started.UserID))
		}
		res := a.reservations[rid]
		if res == nil || !res.opened {
			out.flag(violation, CheckPaymentReservation, pref, nil, fmt.Sprintf("%s payment of reservation %s, which was never opened", p.status, rid), rref)
			continue
		}
		if res.held.UserID != p.started.UserID {
			out.flag(violation, CheckPaymentReservation, pref, nil,
				fmt.Sprintf("payment of user %s for reservation %s of user %s", p.started.UserID, rid, res.held.UserID), rref)
		}
		if res.held.Price != p.started.Amount {
			out.flag(violation, CheckPaymentAmount, pref, nil,
				fmt.Sprintf("%d points paid for reservation %s priced %d", p.started.Amount, rid, res.held.Price), rref)
		}
		switch p.status {
		case aggregates.PaymentStatusCompleted:
			if res.status != aggregates.ReservationStatusConfirmed || res.confirmedBy != pid {
				out.flag(violation, CheckPaymentReservation, pref, nil,
					fmt.Sprintf("COMPLETED, but reservation %s is %s", rid, confirmation(res)), rref)
			}
		case aggregates.PaymentStatusRefunded:
			if res.status != aggregates.ReservationStatusCancelled || res.cancelReason != aggregates.ReleaseRefunded || res.cancelPayment != pid {
				out.flag(violation, CheckPaymentRefund, pref, nil,
					fmt.Sprintf("REFUNDED, but reservation %s is %s", rid, confirmation(res)), rref)
			}
		}
	}
}
