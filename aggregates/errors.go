package aggregates

import "errors"

// Domain errors. The API maps each to a status and a problem code; nothing else does.
var (
	ErrInvalid                   = errors.New("invalid input")
	ErrConcertExists             = errors.New("concert already exists")
	ErrConcertNotFound           = errors.New("concert not found")
	ErrDateNotFound              = errors.New("date not found")
	ErrSeatNotFound              = errors.New("seat not found")
	ErrSeatUnavailable           = errors.New("seat unavailable")
	ErrSeatNotHeld               = errors.New("seat not held by this reservation")
	ErrReservationExists         = errors.New("reservation already exists")
	ErrReservationNotFound       = errors.New("reservation not found")
	ErrReservationNotPayable     = errors.New("reservation not payable")
	ErrReservationNotCancellable = errors.New("reservation not cancellable")
	ErrForbidden                 = errors.New("forbidden")
	ErrPaymentNotFound           = errors.New("payment not found")
	ErrPaymentNotRefundable      = errors.New("payment not refundable")
	ErrInvalidAmount             = errors.New("invalid amount")
	ErrInsufficientPoints        = errors.New("insufficient points")
	ErrTokenStillValid           = errors.New("queue token still valid")
)
