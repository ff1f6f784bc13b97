package aggregates

import (
	"fmt"
	"maps"
	"slices"
	"time"
)

// MaxSeatsPerHold is how many seats one hold may take (contract v1.1).
const MaxSeatsPerHold = 8

// Date is one concert date as a consistency boundary: its seats, its reservations and their
// payments. Every rule that spans them (a seat is in at most one live reservation, a
// reservation's seats move together, a user holds at most so many seats of a date, of
// concurrent payments of a reservation one debits, a payment completes with the sale of its
// seats) is decided on one state, so a hold is one commit, however many seats it takes, and a
// payment's start, completion and refund are each one commit with the reservation's and seats'
// events they go with.
//
// Apply updates the state's maps in place (a date of 10,000 seats is not copied per event), so
// a Date is owned by whoever applies to it: read it only where it is decided on, and keep the
// values its methods return, never the Date.
type Date struct {
	seats        map[int]Seat           // only seats that are not AVAILABLE
	reservations map[string]Reservation // the date's reservations, but those compacted
	owned        map[string]int         // user → seats in their HELD and CONFIRMED reservations
	payments     map[string]Payment     // its reservations' payments, but those compacted
	// ended lists the reservations and payments that ended (EXPIRED, CANCELLED; FAILED,
	// REFUNDED), in the order they ended; Compact stamps their time and drops them from the
	// maps once EndedRetention has passed. Without it a date's state grows with its history
	// (a seat sold, refunded and sold again is three reservations), not with its seats.
	ended expiring[endedRecord]
	// compacted is set once a record was dropped: a command naming a record the date does
	// not have may then be about one that ended long ago (ErrCompacted), not a new one.
	compacted bool
}

// EndedRetention is how long a date keeps a reservation or payment that ended, answering
// repeated commands about it from its own state. It outlasts the JetStream duplicate window
// (2 minutes), within which a repeated append is dropped by the store, and a read model's lag
// (milliseconds) many times over: a command about a record compacted since is answered from
// the read models (ErrCompacted).
const EndedRetention = 3 * time.Minute

// endedRecord is a reservation (or a payment, when payment) that ended.
type endedRecord struct {
	id      string
	payment bool
}

// Clone returns a copy of the date that no later Apply to either changes. The repository takes
// one before deciding where other instances may win the append, to catch up from it.
func (d Date) Clone() Date {
	return Date{seats: maps.Clone(d.seats), reservations: maps.Clone(d.reservations), owned: maps.Clone(d.owned),
		payments: maps.Clone(d.payments), ended: d.ended.clone(), compacted: d.compacted}
}

// Compact stamps the records that ended since the last Compact with at, the time of the
// event applied last, and forgets those that ended EndedRetention before it. The repository
// calls it after every event, live and in replays, so every instance and every replay of a
// date forgets the same records.
func (d Date) Compact(at time.Time) Date {
	var gone []stamped[endedRecord]
	d.ended, gone = d.ended.expire(at, EndedRetention)
	for _, e := range gone {
		if e.v.payment {
			delete(d.payments, e.v.id)
		} else {
			delete(d.reservations, e.v.id)
		}
	}
	d.compacted = d.compacted || len(gone) > 0
	return d
}

// Compacted reports whether the date has forgotten records that ended: a reservation or
// payment it does not have may then be one of them.
func (d Date) Compacted() bool { return d.compacted }

// missing is the refusal of a command about a record the date does not have: notFound, or
// ErrCompacted once the date has forgotten ended records, as it may be one of them.
func (d Date) missing(notFound error) error {
	if d.compacted {
		return ErrCompacted
	}
	return notFound
}

// Payment returns one payment of the date's reservations; ok is false for one it does not have.
func (d Date) Payment(id string) (Payment, bool) {
	p, ok := d.payments[id]
	return p, ok
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
	// NewID says the reservation ID was never used: a fresh one, or one the read models do
	// not have. Without it a date that has compacted answers ErrCompacted for an ID it does
	// not know (a repeated hold whose reservation ended long ago must not hold seats again).
	NewID bool
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
	} else if !cmd.NewID && d.compacted {
		return nil, ErrCompacted
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

// DecideStartPayment starts a payment of a held reservation and locks the reservation for it,
// in one decision: PaymentStarted (with the reservation's price and seats) and
// ReservationPaymentStarted, or nothing. A reservation its user may not pay now (unknown,
// another user's, not HELD, locked by another payment, past heldUntil) refuses the payment,
// which then does not exist: no record is left for recovery to fail. Repeating the start of a
// payment the date has is a no-op; its ID given for another reservation is refused.
func (d Date) DecideStartPayment(reservationID string, cmd StartPayment) ([]Event, error) {
	if p, ok := d.payments[cmd.PaymentID]; ok {
		if p.started.ReservationID != reservationID {
			return nil, fmt.Errorf("%w: payment %s pays reservation %s", ErrInvalid, cmd.PaymentID, p.started.ReservationID)
		}
		return nil, nil
	}
	r, ok := d.reservations[reservationID]
	if !ok {
		return nil, d.missing(ErrReservationNotFound)
	}
	lock, err := r.DecideStartPayment(cmd)
	if err != nil {
		return nil, err
	}
	evs, err := Payment{}.DecideStart(PaymentStarted{
		PaymentID: cmd.PaymentID, ReservationID: reservationID, UserID: cmd.UserID,
		Amount: r.held.Price, StartedAt: cmd.Now, SeatNos: r.SeatNos(),
	})
	if err != nil {
		return nil, err
	}
	return append(evs, lock...), nil
}

// DecideCompletePayment confirms the reservation of a payment whose points were debited,
// sells its seats and completes the payment, in one decision (DecideConfirm's events, then
// PaymentCompleted). A confirmation the reservation refuses (its hold lapsed, it was
// cancelled) refuses it all, so the saga reverses the debit. Repeating it is a no-op.
func (d Date) DecideCompletePayment(paymentID string, now time.Time) ([]Event, error) {
	p, ok := d.payments[paymentID]
	if !ok {
		return nil, ErrPaymentNotFound
	}
	done, err := p.DecideComplete(now)
	if err != nil || len(done) == 0 {
		return done, err
	}
	evs, err := d.DecideConfirm(p.started.ReservationID, Confirm{PaymentID: paymentID, Now: now})
	if err != nil {
		return nil, err
	}
	return append(evs, done...), nil
}

// DecideFailPayment ends a started payment FAILED and releases its lock on the reservation,
// if it still holds it, in one decision. A payment that already ended is left as it is.
func (d Date) DecideFailPayment(paymentID, reason string, now time.Time) ([]Event, error) {
	p, ok := d.payments[paymentID]
	if !ok {
		return nil, ErrPaymentNotFound
	}
	failed, err := p.DecideFail(reason, now)
	if err != nil || len(failed) == 0 {
		return failed, err
	}
	unlock, err := d.DecideAbortPayment(p.started.ReservationID, AbortPayment{PaymentID: paymentID, Reason: reason})
	if err != nil {
		return nil, err
	}
	return append(unlock, failed...), nil
}

// RefundPayment is the command to refund a completed payment; RequestID, when set, names the
// request, so that its retry finishes the same refund.
type RefundPayment struct {
	Now       time.Time
	RequestID string
}

// DecideRefund passes the refund gate of a completed payment and reverses its confirmation,
// in one decision: PaymentRefundStarted, then DecideCancelForRefund's events (the reservation
// cancelled, its seats released). Of concurrent refunds exactly one passes; the others are
// refused with ErrPaymentNotRefundable, the request that passed may repeat it as a no-op.
func (d Date) DecideRefund(paymentID string, cmd RefundPayment) ([]Event, error) {
	p, ok := d.payments[paymentID]
	if !ok {
		return nil, d.missing(ErrPaymentNotFound)
	}
	gate, err := p.DecideRefundRequest(cmd.Now, cmd.RequestID)
	if err != nil || len(gate) == 0 {
		return gate, err
	}
	cancel, err := d.DecideCancelForRefund(p.started.ReservationID, CancelForRefund{PaymentID: paymentID, Now: cmd.Now})
	if err != nil {
		return nil, err
	}
	return append(gate, cancel...), nil
}

// DecideFinishRefund records that a refunding payment's points were returned; repeating it is a
// no-op.
func (d Date) DecideFinishRefund(paymentID string, now time.Time) ([]Event, error) {
	p, ok := d.payments[paymentID]
	if !ok {
		return nil, ErrPaymentNotFound
	}
	return p.DecideFinishRefund(now)
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
	r, ok := d.reservations[reservationID]
	if !ok {
		return nil, d.missing(ErrReservationNotFound)
	}
	evs, err := r.DecideCancel(cmd)
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
		d = Date{seats: map[int]Seat{}, reservations: map[string]Reservation{}, owned: map[string]int{}, payments: map[string]Payment{}}
	}
	if n, ok := EventSeatNo(e); ok {
		if s := d.seats[n].Apply(e); s.Status() == SeatStatusAvailable {
			delete(d.seats, n)
		} else {
			d.seats[n] = s
		}
		return d
	}
	if id, ok := EventPaymentID(e); ok {
		before := d.payments[id]
		after := before.Apply(e)
		d.payments[id] = after
		if !paymentEnded(before) && paymentEnded(after) {
			d.ended = d.ended.add(endedRecord{id: id, payment: true})
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
	if !reservationEnded(before) && reservationEnded(after) {
		d.ended = d.ended.add(endedRecord{id: id})
	}
	return d
}

// reservationEnded reports whether no command can change a reservation any more.
func reservationEnded(r Reservation) bool {
	return r.status == ReservationStatusExpired || r.status == ReservationStatusCancelled
}

// paymentEnded reports whether no command can change a payment any more.
func paymentEnded(p Payment) bool {
	return p.status == PaymentStatusFailed || p.status == PaymentStatusRefunded
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

// EventPaymentID returns the payment a payment event is about (not the payment a reservation
// or seat event names).
func EventPaymentID(e Event) (string, bool) {
	switch ev := e.(type) {
	case PaymentStarted:
		return ev.PaymentID, true
	case PaymentCompleted:
		return ev.PaymentID, true
	case PaymentFailed:
		return ev.PaymentID, true
	case PaymentRefundStarted:
		return ev.PaymentID, true
	case PaymentRefunded:
		return ev.PaymentID, true
	}
	return "", false
}
