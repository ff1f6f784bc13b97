package aggregates

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// SeatStatus is where a seat stands.
type SeatStatus string

// Seat statuses, as the API shows them.
const (
	SeatStatusAvailable SeatStatus = "AVAILABLE"
	SeatStatusHeld      SeatStatus = "HELD"
	SeatStatusSold      SeatStatus = "SOLD"
)

// Seat is the state of one seat of one concert date.
type Seat struct {
	status      SeatStatus
	reservation string
	user        string
	heldUntil   time.Time
}

// Status returns the seat's status (AVAILABLE for a seat without events).
func (s Seat) Status() SeatStatus {
	if s.status == "" {
		return SeatStatusAvailable
	}
	return s.status
}

// Reservation returns the reservation holding or owning the seat, if any.
func (s Seat) Reservation() string { return s.reservation }

// HeldUntil returns when the current hold lapses.
func (s Seat) HeldUntil() time.Time { return s.heldUntil }

// HoldSeat is the command to hold a seat for a new reservation.
type HoldSeat struct {
	ReservationID string
	UserID        string
	HeldUntil     time.Time
	SeatNo        int
}

// DecideHold holds an available seat. Repeating the hold of the same reservation is a no-op.
func (s Seat) DecideHold(cmd HoldSeat) ([]Event, error) {
	// An empty reservation would read as "no holder", so release and sell could not tell it
	// from a free seat.
	if cmd.ReservationID == "" {
		return nil, fmt.Errorf("%w: hold without a reservation", ErrInvalid)
	}
	if s.Status() != SeatStatusAvailable {
		if s.reservation == cmd.ReservationID && s.status == SeatStatusHeld {
			return nil, nil
		}
		return nil, ErrSeatUnavailable
	}
	return []Event{SeatHeld(cmd)}, nil
}

// ReleaseSeat is the command to free a seat that a reservation held or bought.
type ReleaseSeat struct {
	ReservationID string
	Reason        string
	SeatNo        int
}

// DecideRelease frees the seat if this reservation has it; otherwise (already released, or
// held by someone else since) it changes nothing. A sold seat is freed only by a refund: an
// expiry or cancellation that lost its race against the payment must not undo the sale.
func (s Seat) DecideRelease(cmd ReleaseSeat) ([]Event, error) {
	if s.Status() == SeatStatusAvailable || s.reservation != cmd.ReservationID {
		return nil, nil
	}
	if s.status == SeatStatusSold && cmd.Reason != ReleaseRefunded {
		return nil, nil
	}
	return []Event{SeatReleased(cmd)}, nil
}

// SellSeat is the command to sell a seat held by a reservation that was paid.
type SellSeat struct {
	ReservationID string
	PaymentID     string
	SeatNo        int
}

// DecideSell sells the seat to the reservation holding it.
func (s Seat) DecideSell(cmd SellSeat) ([]Event, error) {
	if s.reservation != cmd.ReservationID || s.Status() == SeatStatusAvailable {
		return nil, ErrSeatNotHeld
	}
	if s.status == SeatStatusSold {
		return nil, nil
	}
	return []Event{SeatSold(cmd)}, nil
}

// Apply returns the state after one event.
func (s Seat) Apply(e Event) Seat {
	switch ev := e.(type) {
	case SeatHeld:
		return Seat{status: SeatStatusHeld, reservation: ev.ReservationID, user: ev.UserID, heldUntil: ev.HeldUntil}
	case SeatReleased:
		return Seat{status: SeatStatusAvailable}
	case SeatSold:
		s.status = SeatStatusSold
	}
	return s
}

// SeatID is the aggregate ID of one seat of one date: "concertId.dateId.seatNo". Concert and
// date IDs never contain dots, so the ID splits back unambiguously.
func SeatID(concertID, dateID string, seatNo int) string {
	return concertID + "." + dateID + "." + strconv.Itoa(seatNo)
}

// ParseSeatID is the inverse of SeatID; ok is false for anything SeatID cannot produce.
func ParseSeatID(id string) (concertID, dateID string, seatNo int, ok bool) {
	c, rest, ok1 := strings.Cut(id, ".")
	d, n, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || c == "" || d == "" {
		return "", "", 0, false
	}
	no, err := strconv.Atoi(n)
	if err != nil || no < 1 {
		return "", "", 0, false
	}
	return c, d, no, true
}
