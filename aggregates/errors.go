package aggregates

import "errors"

// Refusal is the kind of every error a decider returns: a rule of the domain said no. A
// refusal is final for the command that got it (retrying the same command on the same state
// gets the same answer), unlike an infrastructure failure, which a retry may get past. Sagas
// end on a refusal and retry the rest; the API answers a refusal with a 4xx.
type Refusal struct{ msg string }

func (r *Refusal) Error() string { return r.msg }

// refuse declares one refusal. Each is a distinct pointer, so errors.Is tells them apart.
func refuse(msg string) error { return &Refusal{msg: msg} }

// IsRefusal reports whether err is, or wraps (with %w, at any depth), a domain refusal. It is
// the one answer to "did the rules refuse, or did something fail?" for every layer above.
func IsRefusal(err error) bool {
	var r *Refusal
	return errors.As(err, &r)
}

// ErrCompacted answers a command about a reservation or payment that a date does not have
// after it has forgotten records that ended (Date.Compact): the record may be one of them. It
// is no refusal: the caller looks the record up in the read models and answers from there.
var ErrCompacted = errors.New("the date may have forgotten this record: it ended long ago, if it existed")

// Domain refusals. The API maps each to a status and a problem code; nothing else does.
var (
	ErrInvalid                   = refuse("invalid input")
	ErrConcertExists             = refuse("concert already exists")
	ErrConcertNotFound           = refuse("concert not found")
	ErrDateNotFound              = refuse("date not found")
	ErrSeatNotFound              = refuse("seat not found")
	ErrSeatUnavailable           = refuse("seat unavailable")
	ErrSeatNotHeld               = refuse("seat not held by this reservation")
	ErrSeatLimitReached          = refuse("seat limit per user reached")
	ErrReservationExists         = refuse("reservation already exists")
	ErrReservationNotFound       = refuse("reservation not found")
	ErrReservationNotPayable     = refuse("reservation not payable")
	ErrReservationNotCancellable = refuse("reservation not cancellable")
	ErrForbidden                 = refuse("forbidden")
	ErrPaymentNotFound           = refuse("payment not found")
	ErrPaymentNotRefundable      = refuse("payment not refundable")
	ErrInvalidAmount             = refuse("invalid amount")
	ErrInsufficientPoints        = refuse("insufficient points")
	ErrTokenStillValid           = refuse("queue token still valid")
)
