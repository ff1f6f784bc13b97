package audit

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// The seats and reservations of a concert date: their state as the date's commits arrive, the
// checks that run on each event (a seat held or sold twice, a seat in two live reservations),
// and the checks in Report that join a reservation with its seats and the catalog.

// seatMove is a seat event for a reservation.
type seatMove struct {
	seat, user string
	kind       moveKind
	in         commit
}

type moveKind int

const (
	moveHeld     moveKind = iota // SeatHeld
	moveSold                     // SeatSold
	moveReleased                 // SeatReleased
)

type seatState struct {
	stream      string
	status      aggregates.SeatStatus // "" while available
	reservation string
	heldUntil   time.Time
	soldPayment string
	since       uint64 // sequence of the event that gave the seat its current holder
}

type resState struct {
	stream        string
	opened        bool
	held          aggregates.ReservationHeld
	seats         []string // the seat IDs it lists
	openedIn      commit
	confirmedIn   commit // zero until confirmed
	endedIn       commit // zero until expired or cancelled
	status        aggregates.ReservationStatus
	lock          string
	confirmedBy   string
	cancelReason  string
	cancelPayment string
	lastSeq       uint64
}

func (a *Auditor) addSeat(r Record) {
	id := r.AggregateID
	ref := Ref(eventstore.TypeSeat, id)
	s := a.seats[id]
	if s == nil {
		s = &seatState{stream: r.Stream}
		a.seats[id] = s
	}
	holder := func() string {
		return fmt.Sprintf("%s (since %s:%d)", describeSeat(s), s.stream, s.since)
	}
	switch ev := r.Event.(type) {
	case aggregates.SeatHeld:
		if s.status != "" {
			msg := fmt.Sprintf("held for reservation %s while %s", ev.ReservationID, holder())
			a.found.flag(violation, CheckSeatDoubleHold, ref, &r, msg, Ref(eventstore.TypeReservation, s.reservation), Ref(eventstore.TypeReservation, ev.ReservationID))
		}
		*s = seatState{stream: s.stream, status: aggregates.SeatStatusHeld, reservation: ev.ReservationID, heldUntil: ev.HeldUntil, since: r.Sequence}
		a.movesOf[ev.ReservationID] = append(a.movesOf[ev.ReservationID], seatMove{seat: id, user: ev.UserID, kind: moveHeld, in: commitOf(&r)})
	case aggregates.SeatSold:
		switch {
		case s.status == aggregates.SeatStatusSold:
			msg := fmt.Sprintf("sold to reservation %s (payment %s) while already %s", ev.ReservationID, ev.PaymentID, holder())
			a.found.flag(violation, CheckSeatDoubleSale, ref, &r, msg, Ref(eventstore.TypeReservation, s.reservation), Ref(eventstore.TypeReservation, ev.ReservationID))
		case s.status == "":
			a.found.flag(violation, CheckSeatSoldWithoutHold, ref, &r,
				fmt.Sprintf("sold to reservation %s (payment %s) while AVAILABLE", ev.ReservationID, ev.PaymentID), Ref(eventstore.TypeReservation, ev.ReservationID))
		case s.reservation != ev.ReservationID:
			msg := fmt.Sprintf("sold to reservation %s (payment %s) while %s", ev.ReservationID, ev.PaymentID, holder())
			a.found.flag(violation, CheckSeatSoldWithoutHold, ref, &r, msg, Ref(eventstore.TypeReservation, ev.ReservationID), Ref(eventstore.TypeReservation, s.reservation))
		}
		if s.reservation != ev.ReservationID {
			s.since = r.Sequence
		}
		s.status, s.reservation, s.soldPayment = aggregates.SeatStatusSold, ev.ReservationID, ev.PaymentID
		a.movesOf[ev.ReservationID] = append(a.movesOf[ev.ReservationID], seatMove{seat: id, kind: moveSold, in: commitOf(&r)})
	case aggregates.SeatReleased:
		switch {
		case s.status == "":
			a.found.flag(violation, CheckSeatBadRelease, ref, &r,
				fmt.Sprintf("released for reservation %s while AVAILABLE", ev.ReservationID), Ref(eventstore.TypeReservation, ev.ReservationID))
		case s.reservation != ev.ReservationID:
			msg := fmt.Sprintf("released for reservation %s while %s", ev.ReservationID, holder())
			a.found.flag(violation, CheckSeatBadRelease, ref, &r, msg, Ref(eventstore.TypeReservation, ev.ReservationID), Ref(eventstore.TypeReservation, s.reservation))
		case s.status == aggregates.SeatStatusSold && ev.Reason != aggregates.ReleaseRefunded:
			a.found.flag(violation, CheckSeatBadRelease, ref, &r,
				fmt.Sprintf("sold seat released for reservation %s with reason %q: only a refund frees a sold seat", ev.ReservationID, ev.Reason),
				Ref(eventstore.TypeReservation, ev.ReservationID))
		}
		*s = seatState{stream: s.stream, since: r.Sequence}
		a.movesOf[ev.ReservationID] = append(a.movesOf[ev.ReservationID], seatMove{seat: id, kind: moveReleased, in: commitOf(&r)})
	default:
		a.foreign(r)
	}
}

func (a *Auditor) addReservation(r Record) {
	id := r.AggregateID
	ref := Ref(eventstore.TypeReservation, id)
	s := a.reservations[id]
	if s == nil {
		s = &resState{stream: r.Stream}
		a.reservations[id] = s
	}
	s.lastSeq = r.Sequence
	bad := func(format string, args ...any) {
		a.found.flag(violation, CheckReservationTransition, ref, &r, fmt.Sprintf(format, args...))
	}
	if _, opens := r.Event.(aggregates.ReservationHeld); !opens && !s.opened {
		bad("%s before the reservation was opened", r.Type)
	}
	switch ev := r.Event.(type) {
	case aggregates.ReservationHeld:
		if s.opened {
			bad("opened again (it was opened for seat %s)", aggregates.SeatID(s.held.ConcertID, s.held.DateID, s.held.SeatNo))
		}
		if ev.ReservationID != id {
			bad("ReservationHeld names reservation %s", ev.ReservationID)
		}
		s.opened, s.held, s.status, s.openedIn = true, ev, aggregates.ReservationStatusHeld, commitOf(&r)
		s.seats = seatsOf(ev)
		a.claimSeats(r, id)
	case aggregates.ReservationPaymentStarted:
		switch {
		case s.opened && s.status != aggregates.ReservationStatusHeld:
			bad("locked for payment %s while %s", ev.PaymentID, s.status)
		case s.lock != "":
			bad("locked for payment %s while locked for payment %s", ev.PaymentID, s.lock)
		}
		s.lock = ev.PaymentID
	case aggregates.ReservationPaymentAborted:
		if s.opened && (s.status != aggregates.ReservationStatusHeld || s.lock != ev.PaymentID) {
			bad("payment %s aborted without holding the lock (status %s, lock %q)", ev.PaymentID, s.status, s.lock)
		}
		s.lock = ""
	case aggregates.ReservationConfirmed:
		switch {
		case s.opened && s.status != aggregates.ReservationStatusHeld:
			bad("confirmed by payment %s while %s", ev.PaymentID, s.status)
		case s.opened && s.lock != ev.PaymentID:
			bad("confirmed by payment %s, which did not hold the lock (lock %q)", ev.PaymentID, s.lock)
		}
		s.status, s.confirmedBy, s.lock, s.confirmedIn = aggregates.ReservationStatusConfirmed, ev.PaymentID, "", commitOf(&r)
	case aggregates.ReservationExpired:
		if s.opened && s.status != aggregates.ReservationStatusHeld {
			bad("expired while %s", s.status)
		}
		s.status, s.lock, s.endedIn = aggregates.ReservationStatusExpired, "", commitOf(&r)
	case aggregates.ReservationCancelled:
		switch ev.Reason {
		case aggregates.ReleaseCancelled:
			if s.opened && s.status != aggregates.ReservationStatusHeld {
				bad("cancelled while %s", s.status)
			}
		case aggregates.ReleaseRefunded:
			if s.opened && (s.status != aggregates.ReservationStatusConfirmed || s.confirmedBy != ev.PaymentID) {
				bad("cancelled for the refund of payment %s while %s", ev.PaymentID, confirmation(s))
			}
		default:
			bad("cancelled with unknown reason %q", ev.Reason)
		}
		s.status, s.lock, s.cancelReason, s.cancelPayment = aggregates.ReservationStatusCancelled, "", ev.Reason, ev.PaymentID
		s.endedIn = commitOf(&r)
	default:
		a.foreign(r)
	}
}

// seatsOf returns the seat IDs a reservation lists: SeatNos, or SeatNo for an event written
// before reservations had several seats.
func seatsOf(h aggregates.ReservationHeld) []string {
	nos := h.SeatNos
	if len(nos) == 0 {
		nos = []int{h.SeatNo}
	}
	ids := make([]string, len(nos))
	for i, n := range nos {
		ids[i] = aggregates.SeatID(h.ConcertID, h.DateID, n)
	}
	return ids
}

// live reports whether a reservation keeps its seats from others: HELD or CONFIRMED.
func live(s *resState) bool {
	return s != nil && (s.status == aggregates.ReservationStatusHeld || s.status == aggregates.ReservationStatusConfirmed)
}

// claimSeats records that reservation id, just opened, lists its seats, and flags each seat
// that a reservation still live lists too. Every event of a date is in the date's stream, so
// the order they arrive in is the order they happened in.
func (a *Auditor) claimSeats(r Record, id string) {
	for _, sid := range a.reservations[id].seats {
		var still []string
		for _, other := range a.liveIn[sid] {
			if other == id || !live(a.reservations[other]) {
				continue
			}
			still = append(still, other)
			a.found.flag(violation, CheckSeatTwoReservations, Ref(eventstore.TypeSeat, sid), &r,
				fmt.Sprintf("listed by reservation %s while reservation %s, %s, lists it", id, other, a.reservations[other].status),
				Ref(eventstore.TypeReservation, other), Ref(eventstore.TypeReservation, id))
		}
		a.liveIn[sid] = append(still, id)
	}
}

// checkReservations: every CONFIRMED reservation has exactly one COMPLETED payment and its
// seats SOLD; no payment lock is left behind; every expired or cancelled reservation released
// its seats; a reservation's seats move with it and end in one state.
func (a *Auditor) checkReservations(out *sink) {
	for _, rid := range sortedKeys(a.reservations) {
		res := a.reservations[rid]
		rref := Ref(eventstore.TypeReservation, rid)
		if !res.opened {
			continue // reported as it was read
		}

		var paid []string // payments of this reservation that took its money and kept it
		for _, pid := range a.paymentsOf[rid] {
			switch a.payments[pid].status {
			case aggregates.PaymentStatusCompleted, aggregates.PaymentStatusRefunding, aggregates.PaymentStatusRefunded:
				paid = append(paid, pid)
			}
		}
		if len(paid) > 1 {
			related := make([]string, len(paid))
			for i, pid := range paid {
				related[i] = Ref(eventstore.TypePayment, pid)
			}
			out.flag(violation, CheckReservationPayments, rref, nil,
				fmt.Sprintf("%d payments completed: %s", len(paid), strings.Join(paid, ", ")), related...)
		}

		heldFor := a.checkMoves(out, rid, res)
		a.checkSeatsEndTogether(out, rid, res)
		hasSeat := func(sid string) bool {
			s := a.seats[sid]
			return s != nil && s.reservation == rid && s.status != ""
		}

		switch res.status {
		case aggregates.ReservationStatusHeld:
			if res.lock != "" {
				p := a.payments[res.lock]
				switch {
				case p == nil:
					out.flag(violation, CheckReservationLock, rref, nil, fmt.Sprintf("locked for payment %s, which was never started", res.lock), Ref(eventstore.TypePayment, res.lock))
				case p.status != aggregates.PaymentStatusStarted:
					out.flag(violation, CheckReservationLock, rref, nil, fmt.Sprintf("still locked for payment %s, which is %s", res.lock, p.status), Ref(eventstore.TypePayment, res.lock))
				}
			}
			for _, sid := range res.seats {
				if slices.Contains(heldFor, sid) && !hasSeat(sid) {
					out.flag(violation, CheckReservationSeat, rref, nil,
						fmt.Sprintf("HELD, but its seat %s is %s", sid, a.seatDescription(sid)), Ref(eventstore.TypeSeat, sid))
				}
			}
			if !a.opts.Now.IsZero() && !a.opts.Now.Before(res.held.HeldUntil) {
				out.flag(warning, CheckReservationLapsed, rref, nil,
					fmt.Sprintf("still HELD, though its hold lapsed at %s; the expiry sweeper settles it", res.held.HeldUntil.UTC().Format(time.RFC3339)))
			}
		case aggregates.ReservationStatusConfirmed:
			p := a.payments[res.confirmedBy]
			pref := Ref(eventstore.TypePayment, res.confirmedBy)
			switch {
			case p == nil:
				out.flag(violation, CheckReservationUnpaid, rref, nil, fmt.Sprintf("CONFIRMED by payment %s, which was never started", res.confirmedBy), pref)
				continue
			case p.started.ReservationID != rid:
				out.flag(violation, CheckReservationUnpaid, rref, nil,
					fmt.Sprintf("CONFIRMED by payment %s, which paid for reservation %s", res.confirmedBy, p.started.ReservationID), pref)
				continue
			case p.status == aggregates.PaymentStatusStarted, p.status == aggregates.PaymentStatusRefunding:
				continue // in flight, reported on the payment
			case p.status != aggregates.PaymentStatusCompleted:
				out.flag(violation, CheckReservationUnpaid, rref, nil, fmt.Sprintf("CONFIRMED by payment %s, which is %s", res.confirmedBy, p.status), pref)
			}
			for _, sid := range res.seats {
				if s := a.seats[sid]; s == nil || s.status != aggregates.SeatStatusSold || s.reservation != rid {
					out.flag(violation, CheckReservationNotSold, rref, nil,
						fmt.Sprintf("CONFIRMED, but its seat %s is %s", sid, a.seatDescription(sid)), Ref(eventstore.TypeSeat, sid), pref)
				}
			}
		case aggregates.ReservationStatusExpired, aggregates.ReservationStatusCancelled:
			// The ending event and the release of the seats are one commit: there is no
			// moment, in flight or not, when an ended reservation keeps a seat.
			for _, sid := range res.seats {
				if hasSeat(sid) {
					out.flag(violation, CheckSeatNotReleased, Ref(eventstore.TypeSeat, sid), nil,
						fmt.Sprintf("still %s, though reservation %s is %s", describeSeat(a.seats[sid]), rid, res.status), rref)
				}
			}
		}
	}
}

// checkMoves checks that the seat events for an opened reservation are in the commits of the
// reservation's own events: held in the commit that opened it, sold in the one that confirmed
// it, released in the one that ended it. It returns the listed seats that were held for it in
// the commit that opened it. A reservation has a few seats: slices beat maps here.
func (a *Auditor) checkMoves(out *sink, rid string, res *resState) (heldFor []string) {
	rref := Ref(eventstore.TypeReservation, rid)
	moves := a.movesOf[rid]
	movedAnywhere := func(kind moveKind, sid string) bool {
		return slices.ContainsFunc(moves, func(m seatMove) bool { return m.kind == kind && m.seat == sid })
	}
	var soldIn []string // seats sold in the commit that confirmed rid
	for _, m := range moves {
		sref := Ref(eventstore.TypeSeat, m.seat)
		switch m.kind {
		case moveHeld:
			switch {
			case m.in != res.openedIn:
				// Reported by checkOrphanHolds.
			case !slices.Contains(res.seats, m.seat):
				out.flag(violation, CheckReservationSeat, rref, m.in.at(),
					fmt.Sprintf("lists seats %s but also held seat %s", strings.Join(res.seats, " "), m.seat), sref)
			default:
				heldFor = append(heldFor, m.seat)
				if m.user != res.held.UserID {
					out.flag(violation, CheckReservationSeat, rref, m.in.at(),
						fmt.Sprintf("seat %s held for user %s, reservation opened for user %s", m.seat, m.user, res.held.UserID), sref)
				}
			}
		case moveSold:
			switch {
			case res.confirmedIn == commit{}:
				out.flag(violation, CheckReservationSeatsApart, rref, m.in.at(), fmt.Sprintf("seat %s sold at %s, but the reservation was never confirmed", m.seat, m.in), sref)
			case m.in != res.confirmedIn:
				out.flag(violation, CheckReservationSeatsApart, rref, m.in.at(),
					fmt.Sprintf("seat %s sold at %s, apart from the confirmation at %s", m.seat, m.in, res.confirmedIn), sref)
			default:
				soldIn = append(soldIn, m.seat)
			}
		case moveReleased:
			switch {
			case res.endedIn == commit{}:
				out.flag(violation, CheckReservationSeatsApart, rref, m.in.at(),
					fmt.Sprintf("seat %s released at %s while the reservation is %s", m.seat, m.in, res.status), sref)
			case m.in != res.endedIn:
				out.flag(violation, CheckReservationSeatsApart, rref, m.in.at(),
					fmt.Sprintf("seat %s released at %s, apart from the reservation's end (%s) at %s", m.seat, m.in, res.status, res.endedIn), sref)
			}
		}
	}
	for _, sid := range res.seats {
		if !movedAnywhere(moveHeld, sid) {
			out.flag(violation, CheckReservationSeat, rref, nil, fmt.Sprintf("opened for seat %s, which was never held for it", sid), Ref(eventstore.TypeSeat, sid))
		}
		// A sale of the seat in another commit is reported above, where it happened.
		if res.confirmedIn != (commit{}) && !slices.Contains(soldIn, sid) && !movedAnywhere(moveSold, sid) {
			out.flag(violation, CheckReservationSeatsApart, rref, res.confirmedIn.at(),
				fmt.Sprintf("confirmed at %s without selling its seat %s", res.confirmedIn, sid), Ref(eventstore.TypeSeat, sid))
		}
	}
	return heldFor
}

// checkSeatsEndTogether: the seats a reservation lists are all HELD by it, all SOLD to it, or
// all no longer its.
func (a *Auditor) checkSeatsEndTogether(out *sink, rid string, res *resState) {
	if len(res.seats) < 2 {
		return
	}
	state := func(sid string) string {
		if s := a.seats[sid]; s != nil && s.status != "" && s.reservation == rid {
			return string(s.status)
		}
		return "not its"
	}
	first := state(res.seats[0])
	for _, sid := range res.seats[1:] {
		if state(sid) != first {
			parts := make([]string, len(res.seats))
			related := make([]string, len(res.seats))
			for i, sid := range res.seats {
				parts[i] = fmt.Sprintf("%s %s", sid, a.seatDescription(sid))
				related[i] = Ref(eventstore.TypeSeat, sid)
			}
			out.flag(violation, CheckReservationSeatsApart, Ref(eventstore.TypeReservation, rid), nil,
				fmt.Sprintf("%s, its seats ended apart: %s", res.status, strings.Join(parts, ", ")), related...)
			return
		}
	}
}

// checkOrphanHolds: every SeatHeld is in the commit that opens its reservation. The hold of a
// date's seats and the reservation are one decision and one append, so a hold outside it is
// a broken writer, not a crash between two steps.
func (a *Auditor) checkOrphanHolds(out *sink) {
	for _, rid := range sortedKeys(a.movesOf) {
		res := a.reservations[rid]
		for _, m := range a.movesOf[rid] {
			if m.kind != moveHeld {
				continue
			}
			switch {
			case res == nil || !res.opened:
				out.flag(violation, CheckSeatOrphanHold, Ref(eventstore.TypeSeat, m.seat), m.in.at(),
					fmt.Sprintf("held for reservation %s, which was never opened", rid), Ref(eventstore.TypeReservation, rid))
			case m.in != res.openedIn:
				out.flag(violation, CheckSeatOrphanHold, Ref(eventstore.TypeSeat, m.seat), m.in.at(),
					fmt.Sprintf("held for reservation %s at %s, apart from its opening at %s", rid, m.in, res.openedIn), Ref(eventstore.TypeReservation, rid))
			}
		}
	}
}

// checkSeats: a SOLD seat's reservation is CONFIRMED by the payment that bought it; every seat
// is one of the catalog.
func (a *Auditor) checkSeats(out *sink) {
	for _, sid := range sortedKeys(a.seats) {
		s := a.seats[sid]
		sref := Ref(eventstore.TypeSeat, sid)
		a.checkCatalog(out, sid)
		rref := Ref(eventstore.TypeReservation, s.reservation)
		res := a.reservations[s.reservation]
		if s.status != aggregates.SeatStatusSold {
			continue
		}
		switch {
		case res == nil || !res.opened:
			out.flag(violation, CheckSeatSoldUnconfirmed, sref, nil, fmt.Sprintf("SOLD to reservation %s, which was never opened", s.reservation), rref)
		case res.status == aggregates.ReservationStatusConfirmed && res.confirmedBy == s.soldPayment:
		case res.status == aggregates.ReservationStatusCancelled && res.cancelReason == aggregates.ReleaseRefunded:
			// A refund cancelled the reservation; checkReservations reports the seat it kept.
		default:
			out.flag(violation, CheckSeatSoldUnconfirmed, sref, nil,
				fmt.Sprintf("SOLD to reservation %s by payment %s, but the reservation is %s", s.reservation, s.soldPayment, confirmation(res)),
				rref, Ref(eventstore.TypePayment, s.soldPayment))
		}
	}
}

func (a *Auditor) checkCatalog(out *sink, seatID string) {
	concertID, dateID, n, ok := aggregates.ParseSeatID(seatID)
	if !ok {
		out.flag(violation, CheckSeatCatalog, Ref(eventstore.TypeSeat, seatID), nil, "not a seat ID (concert.date.seatNo)")
		return
	}
	c, ok := a.concerts[concertID]
	if !ok {
		out.flag(violation, CheckSeatCatalog, Ref(eventstore.TypeSeat, seatID), nil, fmt.Sprintf("concert %s was never created", concertID), Ref(eventstore.TypeConcert, concertID))
		return
	}
	for _, d := range c.Dates {
		if d.DateID == dateID {
			if n < 1 || n > d.SeatCount {
				out.flag(violation, CheckSeatCatalog, Ref(eventstore.TypeSeat, seatID), nil,
					fmt.Sprintf("date %s of concert %s has seats 1..%d", d.DateID, c.ConcertID, d.SeatCount), Ref(eventstore.TypeConcert, concertID))
			}
			return
		}
	}
	out.flag(violation, CheckSeatCatalog, Ref(eventstore.TypeSeat, seatID), nil, fmt.Sprintf("concert %s has no date %s", c.ConcertID, dateID), Ref(eventstore.TypeConcert, concertID))
}

func (a *Auditor) seatDescription(seatID string) string {
	if s := a.seats[seatID]; s != nil {
		return describeSeat(s)
	}
	return "without events"
}

func describeSeat(s *seatState) string {
	switch s.status {
	case "":
		return "AVAILABLE"
	case aggregates.SeatStatusSold:
		return fmt.Sprintf("SOLD to reservation %s", s.reservation)
	}
	return fmt.Sprintf("%s by reservation %s", s.status, s.reservation)
}

// confirmation says how a reservation stands towards its payments, for messages.
func confirmation(r *resState) string {
	switch {
	case r.confirmedBy != "" && r.cancelPayment != "":
		return fmt.Sprintf("%s (confirmed by %s, cancelled for the refund of %s)", r.status, r.confirmedBy, r.cancelPayment)
	case r.confirmedBy != "":
		return fmt.Sprintf("%s (confirmed by %s)", r.status, r.confirmedBy)
	}
	return fmt.Sprintf("%s (never confirmed)", r.status)
}
