package aggregates

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// MaxSeatsPerHold is how many seats one hold may take (contract v1.1).
const MaxSeatsPerHold = 8

// Date is one concert date as a consistency boundary: its seats and its reservations. Every
// rule that spans them (a seat is in at most one live reservation, a reservation's seats move
// together, a user holds at most so many seats of a date) is decided on one state, so a hold
// is one commit, however many seats it takes, and no crash can leave a seat held by a
// reservation that does not exist.
//
// Apply updates the state's maps in place (a date of 10,000 seats is not copied per event), so
// a Date is owned by whoever applies to it: read it only where it is decided on, and keep the
// values its methods return, never the Date.
type Date struct {
	seats        map[int]Seat           // only seats that are not AVAILABLE
	reservations map[string]Reservation // every reservation of the date
	owned        map[string]int         // user → seats in their HELD and CONFIRMED reservations
}

// Clone returns a copy of the date that no later Apply to either changes. The repository takes
// one before deciding where other instances may win the append, to catch up from it.
func (d Date) Clone() Date {
	return Date{seats: maps.Clone(d.seats), reservations: maps.Clone(d.reservations), owned: maps.Clone(d.owned)}
}

// Reservation returns one reservation of the date; ok is false for one it does not have.
func (d Date) Reservation(id string) (Reservation, bool) {
	r, ok := d.reservations[id]
	return r, ok
}

// Seat returns one seat of the date (AVAILABLE for a seat without events).
func (d Date) Seat(no int) Seat { return d.seats[no] }

// SeatsOwnedBy returns how many seats of the date the user holds or bought.
func (d Date) SeatsOwnedBy(userID string) int { return d.owned[userID] }

// UnavailableSeatsError is the refusal of a hold that names the seats that were not
// AVAILABLE; it is ErrSeatUnavailable for errors.Is and IsRefusal.
type UnavailableSeatsError struct{ SeatNos []int }

func (e *UnavailableSeatsError) Error() string {
	return fmt.Sprintf("%v: seats %v", ErrSeatUnavailable, e.SeatNos)
}

// Unwrap makes the error ErrSeatUnavailable.
func (e *UnavailableSeatsError) Unwrap() error { return ErrSeatUnavailable }

// SeatNosOf returns the seat numbers of a hold in the order they are decided and stored:
// 1 to MaxSeatsPerHold distinct numbers from 1 up, ascending. The input is not changed.
func SeatNosOf(nos []int) ([]int, error) {
	if len(nos) == 0 || len(nos) > MaxSeatsPerHold {
		return nil, fmt.Errorf("%w: a hold takes 1 to %d seats, not %d", ErrInvalid, MaxSeatsPerHold, len(nos))
	}
	out := slices.Clone(nos)
	slices.Sort(out)
	for i, n := range out {
		if n < 1 {
			return nil, fmt.Errorf("%w: seat number %d", ErrInvalid, n)
		}
		if i > 0 && out[i-1] == n {
			return nil, fmt.Errorf("%w: seat %d given twice", ErrInvalid, n)
		}
	}
	return out, nil
}

// HoldSeats is the command to hold seats of the date for a new reservation.
type HoldSeats struct {
	ReservationID string
	UserID        string
	ConcertID     string
	DateID        string
	SeatNos       []int // from SeatNosOf
	Price         int64 // the sum of the seats' prices
	HeldAt        time.Time
	HeldUntil     time.Time
	// MaxSeatsPerUser bounds the seats one user holds or bought on the date; 0: no bound.
	MaxSeatsPerUser int
}

// DecideHold holds every seat for one new reservation, or none: SeatHeld per seat, then
// ReservationHeld. Repeating the hold of an existing reservation of the same user is a
// no-op, so a retried request finds its reservation.
func (d Date) DecideHold(cmd HoldSeats) ([]Event, error) {
	// An empty reservation would read as "no holder", so release and sell could not tell it
	// from a free seat.
	if cmd.ReservationID == "" || cmd.UserID == "" {
		return nil, fmt.Errorf("%w: hold without a reservation or a user", ErrInvalid)
	}
	if nos, err := SeatNosOf(cmd.SeatNos); err != nil {
		return nil, err
	} else if !slices.Equal(nos, cmd.SeatNos) {
		return nil, fmt.Errorf("%w: seats %v not in ascending order", ErrInvalid, cmd.SeatNos)
	}
	if r, ok := d.reservations[cmd.ReservationID]; ok {
		if r.held.UserID == cmd.UserID {
			return nil, nil
		}
		return nil, ErrReservationExists
	}
	var taken []int
	for _, n := range cmd.SeatNos {
		if d.seats[n].Status() != SeatStatusAvailable {
			taken = append(taken, n)
		}
	}
	if len(taken) > 0 {
		return nil, &UnavailableSeatsError{SeatNos: taken}
	}
	if cmd.MaxSeatsPerUser > 0 && d.owned[cmd.UserID]+len(cmd.SeatNos) > cmd.MaxSeatsPerUser {
		return nil, fmt.Errorf("%w: %s has %d of %d seats", ErrSeatLimitReached, cmd.UserID, d.owned[cmd.UserID], cmd.MaxSeatsPerUser)
	}
	evs := make([]Event, 0, len(cmd.SeatNos)+1)
	for _, n := range cmd.SeatNos {
		evs = append(evs, SeatHeld{ReservationID: cmd.ReservationID, UserID: cmd.UserID, HeldUntil: cmd.HeldUntil, SeatNo: n})
	}
	return append(evs, ReservationHeld{
		ReservationID: cmd.ReservationID, UserID: cmd.UserID, ConcertID: cmd.ConcertID, DateID: cmd.DateID,
		SeatNo: cmd.SeatNos[0], SeatNos: cmd.SeatNos, Price: cmd.Price, HeldAt: cmd.HeldAt, HeldUntil: cmd.HeldUntil,
	}), nil
}

// DecideStartPayment locks a held reservation of the date for one payment.
func (d Date) DecideStartPayment(reservationID string, cmd StartPayment) ([]Event, error) {
	return d.reservations[reservationID].DecideStartPayment(cmd)
}

// DecideAbortPayment releases a payment's lock on a reservation of the date.
func (d Date) DecideAbortPayment(reservationID string, cmd AbortPayment) ([]Event, error) {
	return d.reservations[reservationID].DecideAbortPayment(cmd)
}

// DecideConfirm confirms a reservation paid for and sells its seats, in one decision: no
// state has a paid reservation whose seats are still HELD. A seat that is no longer the
// reservation's (nothing of ours does that) refuses the confirmation, so the payment is
// reversed instead of selling what the buyer cannot have.
func (d Date) DecideConfirm(reservationID string, cmd Confirm) ([]Event, error) {
	r := d.reservations[reservationID]
	evs, err := r.DecideConfirm(cmd)
	if err != nil || len(evs) == 0 {
		return evs, err
	}
	for _, n := range r.SeatNos() {
		sold, err := d.seats[n].DecideSell(SellSeat{ReservationID: reservationID, PaymentID: cmd.PaymentID, SeatNo: n})
		if err != nil {
			return nil, fmt.Errorf("seat %d of reservation %s: %w", n, reservationID, err)
		}
		evs = append(evs, sold...)
	}
	return evs, nil
}

// DecideExpire expires a lapsed hold and frees its seats.
func (d Date) DecideExpire(reservationID string, cmd Expire) ([]Event, error) {
	evs, err := d.reservations[reservationID].DecideExpire(cmd)
	return d.releasing(reservationID, ReleaseExpired, evs, err)
}

// DecideCancel cancels a hold at its owner's request and frees its seats.
func (d Date) DecideCancel(reservationID string, cmd Cancel) ([]Event, error) {
	evs, err := d.reservations[reservationID].DecideCancel(cmd)
	return d.releasing(reservationID, ReleaseCancelled, evs, err)
}

// DecideCancelForRefund reverses the confirmation of a refunded payment and frees the seats
// it bought.
func (d Date) DecideCancelForRefund(reservationID string, cmd CancelForRefund) ([]Event, error) {
	evs, err := d.reservations[reservationID].DecideCancelForRefund(cmd)
	return d.releasing(reservationID, ReleaseRefunded, evs, err)
}

// releasing appends to a reservation's ending events the release of every seat it still has.
func (d Date) releasing(reservationID, reason string, evs []Event, err error) ([]Event, error) {
	if err != nil || len(evs) == 0 {
		return evs, err
	}
	for _, n := range d.reservations[reservationID].SeatNos() {
		rel, _ := d.seats[n].DecideRelease(ReleaseSeat{ReservationID: reservationID, Reason: reason, SeatNo: n})
		evs = append(evs, rel...)
	}
	return evs, nil
}

// Apply returns the state after one event of the date's commits.
func (d Date) Apply(e Event) Date {
	if d.seats == nil {
		d = Date{seats: map[int]Seat{}, reservations: map[string]Reservation{}, owned: map[string]int{}}
	}
	if n, ok := EventSeatNo(e); ok {
		if s := d.seats[n].Apply(e); s.Status() == SeatStatusAvailable {
			delete(d.seats, n)
		} else {
			d.seats[n] = s
		}
		return d
	}
	id, ok := EventReservationID(e)
	if !ok {
		return d
	}
	before := d.reservations[id]
	after := before.Apply(e)
	d.reservations[id] = after
	user, seats := after.held.UserID, len(after.SeatNos())
	switch {
	case !counts(before) && counts(after):
		d.owned[user] += seats
	case counts(before) && !counts(after):
		if d.owned[user] -= seats; d.owned[user] <= 0 {
			delete(d.owned, user)
		}
	}
	return d
}

// counts reports whether a reservation's seats count toward its user's limit.
func counts(r Reservation) bool {
	return r.status == ReservationStatusHeld || r.status == ReservationStatusConfirmed
}

// EventSeatNo returns the seat a seat event of a date's commit is about.
func EventSeatNo(e Event) (int, bool) {
	switch ev := e.(type) {
	case SeatHeld:
		return ev.SeatNo, true
	case SeatReleased:
		return ev.SeatNo, true
	case SeatSold:
		return ev.SeatNo, true
	}
	return 0, false
}

// EventReservationID returns the reservation a reservation event is about.
func EventReservationID(e Event) (string, bool) {
	switch ev := e.(type) {
	case ReservationHeld:
		return ev.ReservationID, true
	case ReservationPaymentStarted:
		return ev.ReservationID, true
	case ReservationPaymentAborted:
		return ev.ReservationID, true
	case ReservationConfirmed:
		return ev.ReservationID, true
	case ReservationExpired:
		return ev.ReservationID, true
	case ReservationCancelled:
		return ev.ReservationID, true
	}
	return "", false
}
