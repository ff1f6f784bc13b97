package app

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// dateRef names one concert date: the aggregate that decides its seats and reservations.
type dateRef struct{ concertID, dateID string }

func (d dateRef) key() string { return d.concertID + "." + d.dateID }

// DateEventRef names the seat, the reservation or the payment an event of a date's commit is
// about (nil for another event), so that readers see seat, reservation and payment events as
// before, stored in the date's commits (eventstore.Event.Ref). dateKey is the date's aggregate ID, "concert.date".
// Tools and tests that write date commits by hand use it to write what the service writes.
func DateEventRef(dateKey string, ev aggregates.Event) *eventstore.AggregateRef {
	if n, ok := aggregates.EventSeatNo(ev); ok {
		return &eventstore.AggregateRef{Type: eventstore.TypeSeat, ID: dateKey + "." + strconv.Itoa(n)}
	}
	if id, ok := aggregates.EventReservationID(ev); ok {
		return &eventstore.AggregateRef{Type: eventstore.TypeReservation, ID: id}
	}
	if id, ok := aggregates.EventPaymentID(ev); ok {
		return &eventstore.AggregateRef{Type: eventstore.TypePayment, ID: id}
	}
	return nil
}

// decideOn decides one command on a date, in a commit it may share with other commands of the
// date, and returns the reservation or payment id as that commit left it (as it is, for a
// no-op): get reads it from the date, about tells which events are its. It is copied out while
// the decision runs under the date's lock: the date's maps are updated in place by later
// commits.
func decideOn[T interface{ Apply(aggregates.Event) T }](ctx context.Context, s *Service, date dateRef, id string, st step,
	get func(aggregates.Date, string) (T, bool), about func(aggregates.Event) (string, bool),
	decide func(aggregates.Date) ([]aggregates.Event, error)) (T, error) {
	var v T
	_, err := s.dates.Do(ctx, date.key(), st, func(d aggregates.Date) ([]aggregates.Event, error) {
		evs, err := decide(d)
		v, _ = get(d, id)
		for _, ev := range evs {
			if x, ok := about(ev); ok && x == id {
				v = v.Apply(ev)
			}
		}
		return evs, err
	})
	return v, err
}

// decideReservation decides one command about reservation resID on its date (see decideOn).
func (s *Service) decideReservation(ctx context.Context, date dateRef, resID string, st step, decide func(aggregates.Date) ([]aggregates.Event, error)) (aggregates.Reservation, error) {
	return decideOn(ctx, s, date, resID, st, aggregates.Date.Reservation, aggregates.EventReservationID, decide)
}

// decidePayment decides one command about payment pid on its reservation's date (see
// decideOn).
func (s *Service) decidePayment(ctx context.Context, date dateRef, pid string, st step, decide func(aggregates.Date) ([]aggregates.Event, error)) (aggregates.Payment, error) {
	return decideOn(ctx, s, date, pid, st, aggregates.Date.Payment, aggregates.EventPaymentID, decide)
}

// reservationOf returns a reservation's current state from its date; forgotten reports that
// the date does not have it and has forgotten ended records, so it may be one of them.
func (s *Service) reservationOf(ctx context.Context, date dateRef, resID string) (res aggregates.Reservation, forgotten bool, err error) {
	err = s.dates.Read(ctx, date.key(), func(d aggregates.Date) {
		var ok bool
		res, ok = d.Reservation(resID)
		forgotten = !ok && d.Compacted()
	})
	return res, forgotten, err
}

// dateOf returns the date of a reservation known by its ID: remembered if this process held
// or looked it up before, else from the reservations read model.
func (s *Service) dateOf(ctx context.Context, resID string) (dateRef, error) {
	if d, _, ok := s.resDates.get(resID); ok {
		return d, nil
	}
	reads := s.reads.Load()
	if reads == nil {
		return dateRef{}, fmt.Errorf("reservation %s: %w", resID, aggregates.ErrReservationNotFound)
	}
	c, d, err := (*reads).ReservationDate(ctx, resID)
	if err != nil {
		return dateRef{}, fmt.Errorf("reservation %s: %w", resID, err)
	}
	ref := dateRef{concertID: c, dateID: d}
	s.resDates.put(resID, ref, 0)
	return ref, nil
}

// Hold holds one or several seats of a date for the user in one reservation: SeatHeld for
// each seat and ReservationHeld, decided together on the date and appended as one commit, so
// the seats are held by a reservation that exists, or not at all. Concurrent holds on a date
// share commits; one that finds a seat taken or the user at the limit is refused in memory
// and writes nothing.
func (s *Service) Hold(ctx context.Context, meta Meta, req HoldRequest) (Reservation, error) {
	if !aggregates.ValidID(req.UserID) {
		return Reservation{}, fmt.Errorf("user %q: %w", req.UserID, aggregates.ErrInvalid)
	}
	c, err := s.concert(ctx, req.ConcertID)
	if err != nil {
		return Reservation{}, err
	}
	date, ok := c.Date(req.DateID)
	if !ok {
		return Reservation{}, fmt.Errorf("date %s of %s: %w", req.DateID, req.ConcertID, aggregates.ErrDateNotFound)
	}
	nos := req.SeatNos
	if len(nos) == 0 {
		nos = []int{req.SeatNo}
	} else if nos, err = aggregates.SeatNosOf(nos); err != nil {
		return Reservation{}, fmt.Errorf("hold: %w", err)
	}
	var price int64
	for _, n := range nos {
		p, ok := date.PriceOf(n)
		if !ok {
			return Reservation{}, fmt.Errorf("seat %d of %s/%s: %w", n, req.ConcertID, req.DateID, aggregates.ErrSeatNotFound)
		}
		price += p
	}
	ref := dateRef{concertID: req.ConcertID, dateID: req.DateID}
	resID := idFor(meta, "reservation")
	if meta.ReplayOnly {
		r, forgotten, err := s.reservationOf(ctx, ref, resID)
		if err != nil {
			return Reservation{}, err
		}
		if forgotten {
			if old, found, err := s.repeatedHold(ctx, resID, req.UserID); err == nil && found {
				return old, nil
			}
		}
		if !r.Exists() || r.Held().UserID != req.UserID {
			return Reservation{}, fmt.Errorf("hold: %w", ErrTokenExpired)
		}
		return reservationResult(r), nil
	}
	now := s.clock.Now()
	hold := aggregates.HoldSeats{
		ReservationID: resID, UserID: req.UserID, ConcertID: req.ConcertID, DateID: req.DateID,
		SeatNos: nos, Price: price, HeldAt: now, HeldUntil: now.Add(s.cfg.HoldTTL), MaxSeatsPerUser: s.cfg.MaxSeatsPerUser,
		NewID: meta.RequestKey == "", // a fresh UUIDv7; a key's ID may be a repeat's
	}
	decide := func(d aggregates.Date) ([]aggregates.Event, error) { return d.DecideHold(hold) }
	r, err := s.decideReservation(ctx, ref, resID, meta.step(resID+"/hold"), decide)
	if errors.Is(err, aggregates.ErrCompacted) {
		// The key's reservation may have ended long ago, forgotten by its date since.
		old, found, ferr := s.repeatedHold(ctx, resID, req.UserID)
		if ferr != nil || found {
			return old, ferr
		}
		hold.NewID = true
		r, err = s.decideReservation(ctx, ref, resID, meta.step(resID+"/hold"), decide)
	}
	if err != nil {
		return Reservation{}, fmt.Errorf("hold seats %v of %s: %w", nos, ref.key(), err)
	}
	s.resDates.put(resID, ref, 0)
	if r.Status() == aggregates.ReservationStatusHeld {
		s.sweeper.track(HeldSeat{ConcertID: req.ConcertID, DateID: req.DateID, SeatNo: r.Held().SeatNo, ReservationID: resID, HeldUntil: r.Held().HeldUntil})
	}
	return reservationResult(r), nil
}

// Cancel cancels a held reservation of its owner and frees its seats, in one commit.
func (s *Service) Cancel(ctx context.Context, meta Meta, reservationID, userID string) (Reservation, error) {
	if !aggregates.ValidID(reservationID) {
		return Reservation{}, fmt.Errorf("reservation %q: %w", reservationID, aggregates.ErrReservationNotFound)
	}
	ref, err := s.dateOf(ctx, reservationID)
	if err != nil {
		return Reservation{}, err
	}
	if meta.ReplayOnly {
		r, forgotten, err := s.reservationOf(ctx, ref, reservationID)
		if err != nil {
			return Reservation{}, err
		}
		if forgotten {
			if old, err := s.cancelForgotten(ctx, meta, reservationID, userID); err == nil {
				return old, nil
			}
			return Reservation{}, fmt.Errorf("cancel: %w", ErrTokenExpired)
		}
		if _, err := r.DecideCancel(aggregates.Cancel{UserID: userID, Now: s.clock.Now(), RequestID: requestID(meta, "cancel")}); err != nil || r.Status() != aggregates.ReservationStatusCancelled {
			return Reservation{}, fmt.Errorf("cancel: %w", ErrTokenExpired)
		}
		return reservationResult(r), nil
	}
	r, err := s.decideReservation(ctx, ref, reservationID, meta.step(reservationID+"/cancel"), func(d aggregates.Date) ([]aggregates.Event, error) {
		return d.DecideCancel(reservationID, aggregates.Cancel{UserID: userID, Now: s.clock.Now(), RequestID: requestID(meta, "cancel")})
	})
	if errors.Is(err, aggregates.ErrCompacted) {
		return s.cancelForgotten(ctx, meta, reservationID, userID)
	}
	if err != nil {
		return Reservation{}, fmt.Errorf("cancel reservation %s: %w", reservationID, err)
	}
	s.sweeper.untrack(reservationID)
	s.resDates.del(reservationID)
	return reservationResult(r), nil
}

// Pay pays a held reservation with the user's points, in three rounds of commits: the
// payment's start with the reservation's lock (one commit of the date) → the debit → the
// confirmation with the sale of every seat and the payment's completion (one commit of the
// date) beside the queue token's revocation. See runPayment for the rounds after the first.
// A reservation the user may not pay now is refused in the first round's decision, and no
// payment exists.
func (s *Service) Pay(ctx context.Context, meta Meta, reservationID, userID string) (Payment, error) {
	if !aggregates.ValidID(reservationID) {
		return Payment{}, fmt.Errorf("reservation %q: %w", reservationID, aggregates.ErrReservationNotFound)
	}
	pid := idFor(meta, "payment")
	if meta.RequestKey != "" {
		// A retry of a payment whose answer was lost: finish or report the same payment.
		p, ref, err := s.keyedPayment(ctx, pid, reservationID)
		if errors.Is(err, aggregates.ErrCompacted) {
			return s.resumeForgotten(ctx, pid)
		}
		if err != nil {
			return Payment{}, err
		}
		if p.Exists() && p.Started().ReservationID != reservationID {
			// The key's payment pays another reservation of the date. Going on would run its
			// saga for this one under the same payment ID, whose debit the wallet already
			// holds: a confirmation without a debit.
			return Payment{}, fmt.Errorf("payment %s pays reservation %s, not %s: %w", pid, p.Started().ReservationID, reservationID, ErrKeyReused)
		}
		if p.Exists() {
			return s.resumePayment(ctx, meta, ref, p)
		}
		if meta.ReplayOnly {
			return Payment{}, fmt.Errorf("pay: %w", ErrTokenExpired)
		}
	}
	ref, err := s.dateOf(ctx, reservationID)
	if err != nil {
		return Payment{}, err
	}
	// The payment's record and the reservation's lock are one decision of the date, decided
	// against the log by the commit: of concurrent payments of a reservation one starts, and
	// a refused one leaves nothing behind.
	now := s.clock.Now()
	p, err := s.decidePayment(ctx, ref, pid, meta.step(pid+"/start"), func(d aggregates.Date) ([]aggregates.Event, error) {
		return d.DecideStartPayment(reservationID, aggregates.StartPayment{PaymentID: pid, UserID: userID, Now: now})
	})
	if errors.Is(err, aggregates.ErrCompacted) {
		return Payment{}, s.payForgotten(ctx, reservationID, userID)
	}
	if err != nil {
		if aggregates.IsRefusal(err) {
			return Payment{}, fmt.Errorf("reservation %s: %w", reservationID, err)
		}
		return Payment{}, fmt.Errorf("start payment: %w", err)
	}
	s.payDates.put(pid, ref, 0)
	// A retry of the same key may have started the payment first: this is then a no-op.
	return s.resumePayment(ctx, meta, ref, p)
}

// resumePayment carries a payment on from where it stands: a STARTED one is run on, a FAILED
// one answers its failure, a finished one its result.
func (s *Service) resumePayment(ctx context.Context, meta Meta, ref dateRef, p aggregates.Payment) (Payment, error) {
	switch p.Status() {
	case aggregates.PaymentStatusStarted:
		return s.runPayment(ctx, meta, ref, p.Started())
	case aggregates.PaymentStatusFailed:
		return Payment{}, fmt.Errorf("payment %s: %w", p.Started().PaymentID, failureError(p.FailureReason()))
	default:
		return paymentResult(p), nil
	}
}

// keyedPayment finds the payment a keyed request may have started before its answer was
// lost, and its date: the date this process saw it start on, else the reservation's date. A
// payment in neither may pay a reservation of another date (its key reused, through another
// instance or before a restart): the payments read model tells, and such a reuse is
// ErrKeyReused. A payment that does not exist is the zero Payment.
func (s *Service) keyedPayment(ctx context.Context, pid, resID string) (aggregates.Payment, dateRef, error) {
	ref, _, seen := s.payDates.get(pid)
	if !seen {
		var err error
		if ref, err = s.dateOf(ctx, resID); err != nil {
			return aggregates.Payment{}, ref, err
		}
	}
	var p aggregates.Payment
	compacted := false
	find := func(d aggregates.Date) { p, _ = d.Payment(pid); compacted = d.Compacted() }
	// The cached date finds a retry without a read of the log, which would hold up the
	// date's commits while other instances write it. Alone, the cached date is the log's: a
	// second look would only wait for the date's commit in flight once more.
	if cached := s.dates.Peek(ref.key(), find); !p.Exists() && !(cached && s.dates.singleWriter) {
		if err := s.dates.Read(ctx, ref.key(), find); err != nil {
			return p, ref, err
		}
	}
	// A payment this process started that its date does not have is one the date forgot,
	// if it forgot any: the read model tells.
	if p.Exists() || (seen && !compacted) {
		return p, ref, nil
	}
	reads := s.reads.Load()
	if reads == nil {
		return p, ref, nil
	}
	// With other writers, the payment may have started a moment ago through another instance
	// (whose answer to the key is written lazily): only the log's heads tell. Alone, this
	// process remembers the payments it started (payDates), and the read model has applied
	// every older one: waiting for the heads would hold each keyed payment up behind the
	// projection's lag, which under load is what answered 503s.
	lookup := (*reads).PaymentReservation
	if s.dates.singleWriter {
		lookup = (*reads).AppliedPaymentReservation
	}
	other, err := lookup(ctx, pid)
	switch {
	case errors.Is(err, aggregates.ErrPaymentNotFound):
		return p, ref, nil
	case err != nil:
		return p, ref, fmt.Errorf("payment %s: %w", pid, err)
	case other != resID:
		return p, ref, fmt.Errorf("payment %s pays reservation %s, not %s: %w", pid, other, resID, ErrKeyReused)
	case compacted:
		// The read model has the payment and its date does not: it ended long ago.
		return p, ref, fmt.Errorf("payment %s: %w", pid, aggregates.ErrCompacted)
	}
	return p, ref, nil
}

// paymentDate returns the date that holds a payment known by its ID: remembered if this
// process started or looked it up before, else through the payments read model (the
// payment's reservation) and the reservation's date.
func (s *Service) paymentDate(ctx context.Context, pid string) (dateRef, error) {
	if d, _, ok := s.payDates.get(pid); ok {
		return d, nil
	}
	reads := s.reads.Load()
	if reads == nil {
		return dateRef{}, fmt.Errorf("payment %s: %w", pid, aggregates.ErrPaymentNotFound)
	}
	resID, err := (*reads).PaymentReservation(ctx, pid)
	if err != nil {
		return dateRef{}, fmt.Errorf("payment %s: %w", pid, err)
	}
	ref, err := s.dateOf(ctx, resID)
	if err != nil {
		return dateRef{}, fmt.Errorf("payment %s: %w", pid, err)
	}
	s.payDates.put(pid, ref, 0)
	return ref, nil
}

// runPayment carries a started payment (its reservation locked for it, in the same commit) to
// its end: the debit → the reservation's confirmation with the sale of every seat and the
// payment's completion (one commit of the date), beside the queue token's revocation. A
// confirmation refused after the debit reverses it with PointsRefunded and ends the payment
// FAILED with its lock released (one commit of the date). Every step is idempotent (the
// deciders ignore a repeated step and each append has a dedup ID of payment and step), so
// recovery calls this again for a payment a crash left STARTED, and it completes or reverses.
// Infrastructure errors leave the payment STARTED for recovery and are returned as they are;
// a refusal of any step is final (aggregates.IsRefusal), so it ends the payment FAILED; were
// it left STARTED, recovery would run into the same refusal every 30 s for ever.
func (s *Service) runPayment(ctx context.Context, meta Meta, ref dateRef, p aggregates.PaymentStarted) (Payment, error) {
	pid, resID := p.PaymentID, p.ReservationID
	// fail ends the payment: it reverses the debit if there was one (a no-op otherwise, which
	// matters when recovery resumes a payment whose debit did not land before a crash), then
	// records the failure with the release of the reservation's lock.
	fail := func(reason string, cause error) (Payment, error) {
		if _, err := s.wallets.Do(ctx, p.UserID, meta.step(pid+"/reverse"), func(w aggregates.Wallet) ([]aggregates.Event, error) {
			return w.DecideRefund(aggregates.RefundDebit{PaymentID: pid, Reason: aggregates.RefundReversal})
		}); err != nil {
			return Payment{}, fmt.Errorf("reverse debit of %s: %w", pid, err)
		}
		if _, err := s.decidePayment(ctx, ref, pid, meta.step(pid+"/fail"), func(d aggregates.Date) ([]aggregates.Event, error) {
			return d.DecideFailPayment(pid, reason, s.clock.Now())
		}); err != nil {
			return Payment{}, fmt.Errorf("fail payment %s: %w", pid, err)
		}
		s.payDates.del(pid)
		return Payment{}, fmt.Errorf("payment %s: %w", pid, cause)
	}

	_, err := s.wallets.Do(ctx, p.UserID, meta.step(pid+"/debit"), func(w aggregates.Wallet) ([]aggregates.Event, error) {
		return w.DecideDebit(aggregates.Debit{PaymentID: pid, Amount: p.Amount})
	})
	if err != nil {
		if !aggregates.IsRefusal(err) {
			return Payment{}, fmt.Errorf("debit %s: %w", p.UserID, err)
		}
		if errors.Is(err, aggregates.ErrInsufficientPoints) {
			return fail(aggregates.FailInsufficientPoints, err)
		}
		return fail(aggregates.FailNotPayable, err)
	}

	// Completing the payment and revoking the queue token touch unrelated aggregates and
	// neither decides anything for the other: they go side by side, one round instead of two.
	// Recovery finishes a payment whose completion did not land. A revocation that did not
	// land is not retried: the payment is done, and the token only keeps its queue slot until
	// its active TTL, which ends it anyway. (A completion refused after all, its hold lapsed
	// during the debit, leaves the token revoked: the user joins the queue again.)
	var st aggregates.Payment
	var completeErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		now := s.clock.Now()
		st, completeErr = s.decidePayment(ctx, ref, pid, meta.step(pid+"/complete"), func(d aggregates.Date) ([]aggregates.Event, error) {
			return d.DecideCompletePayment(pid, now)
		})
	})
	revokeErr := s.revokeToken(ctx, meta, p.UserID, pid)
	wg.Wait()
	if completeErr != nil {
		if !aggregates.IsRefusal(completeErr) {
			return Payment{}, fmt.Errorf("complete payment %s: %w", pid, completeErr)
		}
		// The hold lapsed or was cancelled while we debited: reverse the debit.
		return fail(aggregates.FailNotPayable, completeErr)
	}
	s.sweeper.untrack(resID)
	if revokeErr != nil {
		s.slog.Warn("a paid user's queue token stays active until its TTL", "payment", pid, "user", p.UserID, "correlation_id", meta.CorrelationID, "err", revokeErr)
	}
	return paymentResult(st), nil
}

// Refund reverses a completed payment: its gate with the reservation's cancellation and the
// release of its seats (one commit of the date), then runRefund.
func (s *Service) Refund(ctx context.Context, meta Meta, paymentID string) (Payment, error) {
	if !aggregates.ValidID(paymentID) {
		return Payment{}, fmt.Errorf("payment %q: %w", paymentID, aggregates.ErrPaymentNotFound)
	}
	ref, err := s.paymentDate(ctx, paymentID)
	if err != nil {
		return Payment{}, fmt.Errorf("refund: %w", err)
	}
	p, err := s.decidePayment(ctx, ref, paymentID, meta.step(paymentID+"/refund"), func(d aggregates.Date) ([]aggregates.Event, error) {
		return d.DecideRefund(paymentID, aggregates.RefundPayment{Now: s.clock.Now(), RequestID: requestID(meta, "refund")})
	})
	if errors.Is(err, aggregates.ErrCompacted) {
		return s.refundForgotten(ctx, meta, paymentID)
	}
	if err != nil {
		return Payment{}, fmt.Errorf("refund %s: %w", paymentID, err)
	}
	if p.Status() == aggregates.PaymentStatusRefunded {
		return paymentResult(p), nil
	}
	return s.runRefund(ctx, meta, ref, p.Started())
}

// runRefund carries a refund past its gate (which cancelled the reservation and released its
// seats in the same commit): PointsRefunded{REFUND} → PaymentRefunded. Each step is a
// reversal event and idempotent; nothing is deleted. Recovery calls it for a payment left
// REFUNDING.
func (s *Service) runRefund(ctx context.Context, meta Meta, ref dateRef, p aggregates.PaymentStarted) (Payment, error) {
	pid := p.PaymentID
	if _, err := s.wallets.Do(ctx, p.UserID, meta.step(pid+"/refund-points"), func(w aggregates.Wallet) ([]aggregates.Event, error) {
		return w.DecideRefund(aggregates.RefundDebit{PaymentID: pid, Reason: aggregates.RefundRefund})
	}); err != nil {
		return Payment{}, fmt.Errorf("refund points of %s: %w", pid, err)
	}
	st, err := s.decidePayment(ctx, ref, pid, meta.step(pid+"/refunded"), func(d aggregates.Date) ([]aggregates.Event, error) {
		return d.DecideFinishRefund(pid, s.clock.Now())
	})
	if err != nil {
		return Payment{}, fmt.Errorf("finish refund %s: %w", pid, err)
	}
	// Both ended: a late command about either finds its date in the read models.
	s.payDates.del(pid)
	s.resDates.del(p.ReservationID)
	return paymentResult(st), nil
}

// requestID names a request for the aggregates, when it has a key (empty otherwise).
func requestID(meta Meta, kind string) string {
	if meta.RequestKey == "" {
		return ""
	}
	return idFor(meta, kind)
}

// failureError turns a recorded failure reason back into the error the payment answered with.
func failureError(reason string) error {
	if reason == aggregates.FailInsufficientPoints {
		return aggregates.ErrInsufficientPoints
	}
	return aggregates.ErrReservationNotPayable
}

func reservationResult(r aggregates.Reservation) Reservation {
	h := r.Held()
	return Reservation{
		ReservationID: h.ReservationID, UserID: h.UserID, ConcertID: h.ConcertID, DateID: h.DateID,
		SeatNo: h.SeatNo, SeatNos: r.SeatNos(), Price: h.Price, Status: r.Status(), HeldAt: h.HeldAt, HeldUntil: h.HeldUntil,
		PaymentID: r.PaymentID(),
	}
}

func paymentResult(p aggregates.Payment) Payment {
	st := p.Started()
	v := Payment{
		PaymentID: st.PaymentID, ReservationID: st.ReservationID, UserID: st.UserID,
		Amount: st.Amount, Status: p.Status(), FailureReason: p.FailureReason(),
	}
	if p.Status() == aggregates.PaymentStatusRefunding {
		v.Status = aggregates.PaymentStatusCompleted
	}
	v.CompletedAt = timePtr(p.CompletedAt())
	v.RefundedAt = timePtr(p.RefundedAt())
	return v
}

func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}
