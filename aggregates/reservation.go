package aggregates

import (
	"errors"
	"fmt"
	"time"
)

// ReservationStatus is where a reservation stands, as the API shows it.
type ReservationStatus string

// Reservation statuses.
const (
	ReservationStatusHeld      ReservationStatus = "HELD"
	ReservationStatusConfirmed ReservationStatus = "CONFIRMED"
	ReservationStatusExpired   ReservationStatus = "EXPIRED"
	ReservationStatusCancelled ReservationStatus = "CANCELLED"
)

// Reservation is the state of one reservation.
type Reservation struct {
	held      ReservationHeld
	status    ReservationStatus
	paying    string // the payment holding the lock, while HELD
	paymentID string // the payment that confirmed it
	cancelReq string // the request that cancelled it
}

// Exists reports whether the reservation was opened.
func (r Reservation) Exists() bool { return r.status != "" }

// Status returns the reservation's status.
func (r Reservation) Status() ReservationStatus { return r.status }

// Held returns the event that opened the reservation: user, seat, price, heldUntil.
func (r Reservation) Held() ReservationHeld { return r.held }

// SeatNos returns the reservation's seats, ascending.
func (r Reservation) SeatNos() []int {
	if len(r.held.SeatNos) == 0 && r.held.SeatNo > 0 {
		return []int{r.held.SeatNo}
	}
	return r.held.SeatNos
}

// PaymentID returns the payment that confirmed the reservation, if any.
func (r Reservation) PaymentID() string { return r.paymentID }

// PayingWith returns the payment currently holding the lock, if any.
func (r Reservation) PayingWith() string { return r.paying }

// DecideOpen opens the reservation with the seats held for it. Repeating it is a no-op.
func (r Reservation) DecideOpen(cmd ReservationHeld) ([]Event, error) {
	if r.Exists() {
		if r.held.ReservationID == cmd.ReservationID && r.held.UserID == cmd.UserID {
			return nil, nil
		}
		return nil, ErrReservationExists
	}
	return []Event{cmd}, nil
}

// PayableBy tells whether userID may start a payment of the reservation: it exists, it is
// theirs and it is HELD. DecideStartPayment decides the same and more (the lock, heldUntil);
// this is the check before a payment's record is written.
func (r Reservation) PayableBy(userID string) error {
	switch {
	case !r.Exists():
		return ErrReservationNotFound
	case r.held.UserID != userID:
		return ErrForbidden
	case r.status != ReservationStatusHeld:
		return fmt.Errorf("reservation is %s: %w", r.status, ErrReservationNotPayable)
	}
	return nil
}

// StartPayment locks a held reservation for one payment.
type StartPayment struct {
	PaymentID string
	UserID    string
	Now       time.Time
}

// DecideStartPayment lets exactly one payment proceed, and only before heldUntil. Repeating
// it for the payment that holds the lock, or that already confirmed the reservation, is a
// no-op: recovery re-runs an interrupted payment from this step on.
func (r Reservation) DecideStartPayment(cmd StartPayment) ([]Event, error) {
	// An empty payment ID would be a lock that locks nothing.
	if cmd.PaymentID == "" {
		return nil, fmt.Errorf("%w: payment without an ID", ErrInvalid)
	}
	if err := r.PayableBy(cmd.UserID); err != nil && !errors.Is(err, ErrReservationNotPayable) {
		return nil, err
	}
	if r.status == ReservationStatusHeld && r.paying == cmd.PaymentID {
		return nil, nil
	}
	if r.status == ReservationStatusConfirmed && r.paymentID == cmd.PaymentID {
		return nil, nil
	}
	if r.status != ReservationStatusHeld || r.paying != "" || !cmd.Now.Before(r.held.HeldUntil) {
		return nil, ErrReservationNotPayable
	}
	return []Event{ReservationPaymentStarted{ReservationID: r.held.ReservationID, PaymentID: cmd.PaymentID}}, nil
}

// AbortPayment releases the payment lock after a payment failed before confirming.
type AbortPayment struct {
	PaymentID string
	Reason    string
}

// DecideAbortPayment releases the lock if this payment holds it; otherwise it is a no-op.
func (r Reservation) DecideAbortPayment(cmd AbortPayment) ([]Event, error) {
	if cmd.PaymentID == "" || r.status != ReservationStatusHeld || r.paying != cmd.PaymentID {
		return nil, nil
	}
	return []Event{ReservationPaymentAborted{ReservationID: r.held.ReservationID, PaymentID: cmd.PaymentID, Reason: cmd.Reason}}, nil
}

// Confirm is the command to confirm a reservation whose payment debited the points.
type Confirm struct {
	PaymentID string
	Now       time.Time
}

// DecideConfirm confirms a held reservation locked by this payment, before heldUntil.
func (r Reservation) DecideConfirm(cmd Confirm) ([]Event, error) {
	if r.status == ReservationStatusConfirmed && r.paymentID == cmd.PaymentID {
		return nil, nil
	}
	// An unlocked reservation has paying == "", so an empty payment ID must not match it.
	if cmd.PaymentID == "" || r.status != ReservationStatusHeld || r.paying != cmd.PaymentID || !cmd.Now.Before(r.held.HeldUntil) {
		return nil, ErrReservationNotPayable
	}
	return []Event{ReservationConfirmed{ReservationID: r.held.ReservationID, PaymentID: cmd.PaymentID, ConfirmedAt: cmd.Now}}, nil
}

// Expire is the command to expire an unpaid hold.
type Expire struct{ Now time.Time }

// DecideExpire expires a held reservation once heldUntil has passed, even while a payment is
// in progress: that payment then fails to confirm and reverses its debit. Anything else is a
// no-op, so that an expiry racing a payment or a cancellation loses quietly.
func (r Reservation) DecideExpire(cmd Expire) ([]Event, error) {
	if r.status != ReservationStatusHeld || cmd.Now.Before(r.held.HeldUntil) {
		return nil, nil
	}
	return []Event{ReservationExpired{ReservationID: r.held.ReservationID, ExpiredAt: cmd.Now}}, nil
}

// Cancel is the owner's command to give up a hold.
type Cancel struct {
	UserID string
	Now    time.Time
	// RequestID names the request; repeating the request that cancelled is a no-op.
	RequestID string
}

// DecideCancel cancels a held reservation of its owner, before heldUntil. A hold that has
// lapsed is EXPIRED by contract even before the sweeper records it, so it cannot become
// CANCELLED instead.
func (r Reservation) DecideCancel(cmd Cancel) ([]Event, error) {
	if !r.Exists() {
		return nil, ErrReservationNotFound
	}
	if r.held.UserID != cmd.UserID {
		return nil, ErrForbidden
	}
	if cmd.RequestID != "" && r.status == ReservationStatusCancelled && r.cancelReq == cmd.RequestID {
		return nil, nil
	}
	if r.status != ReservationStatusHeld || !cmd.Now.Before(r.held.HeldUntil) {
		return nil, ErrReservationNotCancellable
	}
	return []Event{ReservationCancelled{ReservationID: r.held.ReservationID, Reason: ReleaseCancelled, CancelledAt: cmd.Now, RequestID: cmd.RequestID}}, nil
}

// CancelForRefund reverses the confirmation of a refunded payment.
type CancelForRefund struct {
	PaymentID string
	Now       time.Time
}

// DecideCancelForRefund cancels a reservation confirmed by this payment; repeating it is a
// no-op.
func (r Reservation) DecideCancelForRefund(cmd CancelForRefund) ([]Event, error) {
	// r.paymentID is empty until a confirmation, so an empty ID names no payment.
	if cmd.PaymentID == "" || r.paymentID != cmd.PaymentID {
		return nil, ErrPaymentNotRefundable
	}
	if r.status == ReservationStatusCancelled || r.status == ReservationStatusExpired {
		return nil, nil
	}
	if r.status != ReservationStatusConfirmed {
		return nil, ErrPaymentNotRefundable
	}
	return []Event{ReservationCancelled{ReservationID: r.held.ReservationID, Reason: ReleaseRefunded, PaymentID: cmd.PaymentID, CancelledAt: cmd.Now}}, nil
}

// Apply returns the state after one event.
func (r Reservation) Apply(e Event) Reservation {
	switch ev := e.(type) {
	case ReservationHeld:
		r.held, r.status = ev, ReservationStatusHeld
	case ReservationPaymentStarted:
		r.paying = ev.PaymentID
	case ReservationPaymentAborted:
		r.paying = ""
	case ReservationConfirmed:
		r.status, r.paymentID, r.paying = ReservationStatusConfirmed, ev.PaymentID, ""
	case ReservationExpired:
		r.status, r.paying = ReservationStatusExpired, ""
	case ReservationCancelled:
		r.status, r.paying, r.cancelReq = ReservationStatusCancelled, "", ev.RequestID
	}
	return r
}
