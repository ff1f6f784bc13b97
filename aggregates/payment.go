package aggregates

import (
	"fmt"
	"time"
)

// PaymentStatus is where a payment stands. STARTED and REFUNDING are internal steps of the
// payment and refund sagas; recovery finishes every payment left in one of them.
type PaymentStatus string

// Payment statuses.
const (
	PaymentStatusStarted   PaymentStatus = "STARTED"
	PaymentStatusCompleted PaymentStatus = "COMPLETED"
	PaymentStatusFailed    PaymentStatus = "FAILED"
	PaymentStatusRefunding PaymentStatus = "REFUNDING"
	PaymentStatusRefunded  PaymentStatus = "REFUNDED"
)

// Payment is the state of one payment: the saga's own record of how far it got.
type Payment struct {
	started     PaymentStarted
	status      PaymentStatus
	reason      string
	completedAt time.Time
	refundedAt  time.Time
	refundReq   string // the request that started the refund
}

// RefundRequest returns the ID of the request that started the refund, if it named one.
func (p Payment) RefundRequest() string { return p.refundReq }

// DecideRefundRequest is DecideRefund for a request with an ID: the same request, repeated
// after its answer was lost, gets no events and no error, so that it can finish the refund.
func (p Payment) DecideRefundRequest(now time.Time, requestID string) ([]Event, error) {
	if requestID != "" && p.refundReq == requestID && (p.status == PaymentStatusRefunding || p.status == PaymentStatusRefunded) {
		return nil, nil
	}
	evs, err := p.DecideRefund(now)
	for i, e := range evs {
		if rs, ok := e.(PaymentRefundStarted); ok {
			rs.RequestID = requestID
			evs[i] = rs
		}
	}
	return evs, err
}

// CompletedAt returns when the payment completed (zero if it did not).
func (p Payment) CompletedAt() time.Time { return p.completedAt }

// RefundedAt returns when the refund finished (zero if it did not).
func (p Payment) RefundedAt() time.Time { return p.refundedAt }

// Exists reports whether the payment was started.
func (p Payment) Exists() bool { return p.status != "" }

// Status returns the payment's status.
func (p Payment) Status() PaymentStatus { return p.status }

// Started returns the event that opened the payment.
func (p Payment) Started() PaymentStarted { return p.started }

// FailureReason returns why a FAILED payment failed.
func (p Payment) FailureReason() string { return p.reason }

// DecideStart opens the payment; repeating it is a no-op.
func (p Payment) DecideStart(cmd PaymentStarted) ([]Event, error) {
	if p.Exists() {
		return nil, nil
	}
	if cmd.PaymentID == "" || cmd.ReservationID == "" || cmd.UserID == "" {
		return nil, fmt.Errorf("%w: a payment needs its payment, reservation and user IDs", ErrInvalid)
	}
	if cmd.Amount < 0 {
		return nil, ErrInvalidAmount
	}
	return []Event{cmd}, nil
}

// DecideComplete completes a started payment; repeating it is a no-op.
func (p Payment) DecideComplete(now time.Time) ([]Event, error) {
	switch p.status {
	case PaymentStatusStarted:
		return []Event{PaymentCompleted{PaymentID: p.started.PaymentID, CompletedAt: now, SeatNos: p.started.SeatNos}}, nil
	case PaymentStatusCompleted, PaymentStatusRefunding, PaymentStatusRefunded:
		return nil, nil
	case "":
		return nil, ErrPaymentNotFound
	}
	return nil, ErrReservationNotPayable
}

// DecideFail fails a started payment; a payment that already ended is left as it is.
func (p Payment) DecideFail(reason string, now time.Time) ([]Event, error) {
	if p.status != PaymentStatusStarted {
		return nil, nil
	}
	return []Event{PaymentFailed{PaymentID: p.started.PaymentID, Reason: reason, FailedAt: now}}, nil
}

// DecideRefund starts the refund of a completed payment. It is the gate of the refund saga:
// of concurrent refunds exactly one gets past it, the others get ErrPaymentNotRefundable.
// The reversal steps after it are idempotent, so recovery finishes an interrupted refund.
func (p Payment) DecideRefund(now time.Time) ([]Event, error) {
	switch p.status {
	case PaymentStatusCompleted:
		return []Event{PaymentRefundStarted{PaymentID: p.started.PaymentID, StartedAt: now}}, nil
	case "":
		return nil, ErrPaymentNotFound
	}
	return nil, ErrPaymentNotRefundable
}

// DecideFinishRefund records that every reversal of a refund is done; repeating it is a no-op.
func (p Payment) DecideFinishRefund(now time.Time) ([]Event, error) {
	switch p.status {
	case PaymentStatusRefunding:
		return []Event{PaymentRefunded{PaymentID: p.started.PaymentID, RefundedAt: now, SeatNos: p.started.SeatNos}}, nil
	case PaymentStatusRefunded:
		return nil, nil
	}
	return nil, ErrPaymentNotRefundable
}

// Apply returns the state after one event.
func (p Payment) Apply(e Event) Payment {
	switch ev := e.(type) {
	case PaymentStarted:
		p.started, p.status = ev, PaymentStatusStarted
	case PaymentCompleted:
		p.status, p.completedAt = PaymentStatusCompleted, ev.CompletedAt
	case PaymentFailed:
		p.status, p.reason = PaymentStatusFailed, ev.Reason
	case PaymentRefundStarted:
		p.status, p.refundReq = PaymentStatusRefunding, ev.RequestID
	case PaymentRefunded:
		p.status, p.refundedAt = PaymentStatusRefunded, ev.RefundedAt
	}
	return p
}
