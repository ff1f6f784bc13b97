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

// DateEventRef names the seat or the reservation an event of a date's commit is about (nil for
// another event), so that readers see seat and reservation events as before, stored in the
// date's commits (eventstore.Event.Ref). dateKey is the date's aggregate ID, "concert.date".
// Tools and tests that write date commits by hand use it to write what the service writes.
func DateEventRef(dateKey string, ev aggregates.Event) *eventstore.AggregateRef {
	if n, ok := aggregates.EventSeatNo(ev); ok {
		return &eventstore.AggregateRef{Type: eventstore.TypeSeat, ID: dateKey + "." + strconv.Itoa(n)}
	}
	if id, ok := aggregates.EventReservationID(ev); ok {
		return &eventstore.AggregateRef{Type: eventstore.TypeReservation, ID: id}
	}
	return nil
}

// decideReservation decides one command about reservation resID on its date, in a commit it
// may share with other commands of the date, and returns the reservation as that commit left
// it (as it is, for a no-op). The reservation is copied out while the decision runs under the
// date's lock: the date's maps are updated in place by later commits.
func (s *Service) decideReservation(ctx context.Context, date dateRef, resID string, st step, decide func(aggregates.Date) ([]aggregates.Event, error)) (aggregates.Reservation, error) {
	var res aggregates.Reservation
	_, err := s.dates.Do(ctx, date.key(), st, func(d aggregates.Date) ([]aggregates.Event, error) {
		evs, err := decide(d)
		res, _ = d.Reservation(resID)
		for _, ev := range evs {
			if id, ok := aggregates.EventReservationID(ev); ok && id == resID {
				res = res.Apply(ev)
			}
		}
		return evs, err
	})
	return res, err
}

// reservation returns a reservation's current state from its date.
func (s *Service) reservation(ctx context.Context, date dateRef, resID string) (aggregates.Reservation, error) {
	var res aggregates.Reservation
	err := s.dates.Read(ctx, date.key(), func(d aggregates.Date) { res, _ = d.Reservation(resID) })
	return res, err
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
		r, err := s.reservation(ctx, ref, resID)
		if err != nil {
			return Reservation{}, err
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
	}
	r, err := s.decideReservation(ctx, ref, resID, meta.step(resID+"/hold"), func(d aggregates.Date) ([]aggregates.Event, error) {
		return d.DecideHold(hold)
	})
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
		r, err := s.reservation(ctx, ref, reservationID)
		if err != nil {
			return Reservation{}, err
		}
		if _, err := r.DecideCancel(aggregates.Cancel{UserID: userID, Now: s.clock.Now(), RequestID: requestID(meta, "cancel")}); err != nil || r.Status() != aggregates.ReservationStatusCancelled {
			return Reservation{}, fmt.Errorf("cancel: %w", ErrTokenExpired)
		}
		return reservationResult(r), nil
	}
	r, err := s.decideReservation(ctx, ref, reservationID, meta.step(reservationID+"/cancel"), func(d aggregates.Date) ([]aggregates.Event, error) {
		return d.DecideCancel(reservationID, aggregates.Cancel{UserID: userID, Now: s.clock.Now(), RequestID: requestID(meta, "cancel")})
	})
	if err != nil {
		return Reservation{}, fmt.Errorf("cancel reservation %s: %w", reservationID, err)
	}
	s.sweeper.untrack(reservationID)
	return reservationResult(r), nil
}

// Pay pays a held reservation with the user's points. See runPayment for the saga.
func (s *Service) Pay(ctx context.Context, meta Meta, reservationID, userID string) (Payment, error) {
	if !aggregates.ValidID(reservationID) {
		return Payment{}, fmt.Errorf("reservation %q: %w", reservationID, aggregates.ErrReservationNotFound)
	}
	pid := idFor(meta, "payment")
	if meta.RequestKey != "" {
		// A retry of a payment whose answer was lost: finish or report the same payment.
		p, _, err := s.payments.Load(ctx, pid)
		if err != nil {
			return Payment{}, err
		}
		if p.Exists() && p.Started().ReservationID != reservationID {
			// The key's payment pays another reservation. Going on would run its saga for this
			// one under the same payment ID, whose debit the wallet already holds: a
			// confirmation without a debit.
			return Payment{}, fmt.Errorf("payment %s pays reservation %s, not %s: %w", pid, p.Started().ReservationID, reservationID, ErrKeyReused)
		}
		if p.Exists() {
			switch p.Status() {
			case aggregates.PaymentStatusStarted:
				return s.runPayment(ctx, meta, pid, p.Started(), false)
			case aggregates.PaymentStatusFailed:
				return Payment{}, fmt.Errorf("payment %s: %w", pid, failureError(p.FailureReason()))
			default:
				return paymentResult(p), nil
			}
		}
		if meta.ReplayOnly {
			return Payment{}, fmt.Errorf("pay: %w", ErrTokenExpired)
		}
	}
	ref, err := s.dateOf(ctx, reservationID)
	if err != nil {
		return Payment{}, err
	}
	// What this instance knows of the reservation is enough to go on with: the lock decides
	// again against the log. Only a refusal, or a date not cached, reads the log first; with
	// other instances writing, that read would otherwise hold up the date's lane for every
	// payment.
	var r aggregates.Reservation
	known := s.dates.Peek(ref.key(), func(d aggregates.Date) { r, _ = d.Reservation(reservationID) })
	if !known || r.PayableBy(userID) != nil {
		if r, err = s.reservation(ctx, ref, reservationID); err != nil {
			return Payment{}, err
		}
	}
	if err := r.PayableBy(userID); err != nil {
		return Payment{}, fmt.Errorf("reservation %s: %w", reservationID, err)
	}
	started := aggregates.PaymentStarted{PaymentID: pid, ReservationID: reservationID, UserID: userID, Amount: r.Held().Price, StartedAt: s.clock.Now(), SeatNos: r.SeatNos()}
	// The payment's record and the reservation's lock do not depend on each other: they go
	// side by side, one round of commits.
	var startErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		_, startErr = s.payments.Do(ctx, pid, meta.step(pid+"/start"), func(p aggregates.Payment) ([]aggregates.Event, error) {
			return p.DecideStart(started)
		})
	})
	lockErr := s.lock(ctx, meta, ref, started)
	wg.Wait()
	if startErr != nil {
		if lockErr == nil {
			// Without its record nobody would ever finish this payment, and its lock would
			// keep every other payment of the reservation out until the hold lapses.
			if err := s.unlock(ctx, meta, ref, started, aggregates.FailNotPayable); err != nil {
				s.slog.Warn("a payment without its record keeps its lock until the hold lapses", "payment", pid, "reservation", reservationID, "err", err)
			}
		}
		return Payment{}, fmt.Errorf("start payment: %w", startErr)
	}
	if lockErr != nil && !aggregates.IsRefusal(lockErr) {
		return Payment{}, lockErr
	}
	return s.runPayment(ctx, meta, pid, started, lockErr == nil)
}

// lock locks the reservation for one payment, so that of concurrent payments only one debits.
func (s *Service) lock(ctx context.Context, meta Meta, date dateRef, p aggregates.PaymentStarted) error {
	_, err := s.decideReservation(ctx, date, p.ReservationID, meta.step(p.PaymentID+"/lock"), func(d aggregates.Date) ([]aggregates.Event, error) {
		r, _ := d.Reservation(p.ReservationID)
		return r.DecideStartPayment(aggregates.StartPayment{PaymentID: p.PaymentID, UserID: p.UserID, Now: s.clock.Now()})
	})
	if err != nil {
		return fmt.Errorf("lock reservation %s: %w", p.ReservationID, err)
	}
	return nil
}

// unlock releases a payment's lock on its reservation (a no-op if it holds none).
func (s *Service) unlock(ctx context.Context, meta Meta, date dateRef, p aggregates.PaymentStarted, reason string) error {
	_, err := s.decideReservation(ctx, date, p.ReservationID, meta.step(p.PaymentID+"/abort"), func(d aggregates.Date) ([]aggregates.Event, error) {
		return d.DecideAbortPayment(p.ReservationID, aggregates.AbortPayment{PaymentID: p.PaymentID, Reason: reason})
	})
	if err != nil {
		return fmt.Errorf("unlock reservation %s: %w", p.ReservationID, err)
	}
	return nil
}

// runPayment carries a started payment to its end, in rounds of commits: the reservation's
// lock (beside PaymentStarted, in Pay; locked says it is taken) → the debit → the
// confirmation with the sale of every seat (one commit of the date) → PaymentCompleted beside
// the queue token's revocation. A failure after the debit reverses it with PointsRefunded.
// Every step is idempotent (the deciders ignore a repeated step and each append has a dedup
// ID of payment and step), so recovery calls this again for a payment a crash left STARTED,
// and it completes or reverses. Infrastructure errors leave the payment STARTED for recovery
// and are returned as they are; a refusal of any step is final (aggregates.IsRefusal), so it
// ends the payment FAILED; were it left STARTED, recovery would run into the same refusal
// every 30 s for ever.
//
// pid is the payment aggregate, where the saga records its progress; p is the record it was
// started with, whose IDs the steps' commands carry. They agree unless the record is damaged
// (a payment ID missing from it): then a step refuses it and the failure still lands on pid.
func (s *Service) runPayment(ctx context.Context, meta Meta, pid string, p aggregates.PaymentStarted, locked bool) (Payment, error) {
	resID := p.ReservationID
	ref, err := s.dateOf(ctx, resID)
	if err != nil && !aggregates.IsRefusal(err) {
		return Payment{}, err
	}
	// fail ends the payment: it reverses the debit if there was one and releases the
	// reservation's lock if this payment holds it (both no-ops otherwise, which matters when
	// recovery resumes a payment whose debit landed before a crash), then records the failure.
	fail := func(reason string, cause error) (Payment, error) {
		if _, err := s.wallets.Do(ctx, p.UserID, meta.step(pid+"/reverse"), func(w aggregates.Wallet) ([]aggregates.Event, error) {
			return w.DecideRefund(aggregates.RefundDebit{PaymentID: p.PaymentID, Reason: aggregates.RefundReversal})
		}); err != nil {
			return Payment{}, fmt.Errorf("reverse debit of %s: %w", pid, err)
		}
		if ref != (dateRef{}) {
			if err := s.unlock(ctx, meta, ref, p, reason); err != nil {
				return Payment{}, err
			}
		}
		if _, err := s.payments.Do(ctx, pid, meta.step(pid+"/fail"), func(st aggregates.Payment) ([]aggregates.Event, error) {
			return st.DecideFail(reason, s.clock.Now())
		}); err != nil {
			return Payment{}, fmt.Errorf("fail payment %s: %w", pid, err)
		}
		return Payment{}, fmt.Errorf("payment %s: %w", pid, cause)
	}
	if err != nil {
		// The reservation is unknown: nothing of it can be paid.
		return fail(aggregates.FailNotPayable, err)
	}

	if !locked {
		if err := s.lock(ctx, meta, ref, p); err != nil {
			if aggregates.IsRefusal(err) {
				return fail(aggregates.FailNotPayable, err)
			}
			return Payment{}, err
		}
	}

	_, err = s.wallets.Do(ctx, p.UserID, meta.step(pid+"/debit"), func(w aggregates.Wallet) ([]aggregates.Event, error) {
		return w.DecideDebit(aggregates.Debit{PaymentID: p.PaymentID, Amount: p.Amount})
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

	_, err = s.decideReservation(ctx, ref, resID, meta.step(pid+"/confirm"), func(d aggregates.Date) ([]aggregates.Event, error) {
		return d.DecideConfirm(resID, aggregates.Confirm{PaymentID: p.PaymentID, Now: s.clock.Now()})
	})
	if err != nil {
		if !aggregates.IsRefusal(err) {
			return Payment{}, fmt.Errorf("confirm reservation %s: %w", resID, err)
		}
		// The hold lapsed or was cancelled while we debited: reverse the debit.
		return fail(aggregates.FailNotPayable, err)
	}
	s.sweeper.untrack(resID)

	// Completing the payment and revoking the queue token touch unrelated aggregates and
	// neither decides anything for the other: they go side by side, one round instead of two.
	// Recovery finishes a payment whose completion did not land. A revocation that did not
	// land is not retried: the payment is done, and the token only keeps its queue slot until
	// its active TTL, which ends it anyway.
	var st aggregates.Payment
	var completeErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		now := s.clock.Now()
		st, completeErr = s.payments.Do(ctx, pid, meta.step(pid+"/complete"), func(st aggregates.Payment) ([]aggregates.Event, error) {
			return st.DecideComplete(now)
		})
	})
	revokeErr := s.revokeToken(ctx, meta, p.UserID, pid)
	wg.Wait()
	if completeErr != nil {
		return Payment{}, fmt.Errorf("complete payment %s: %w", pid, completeErr)
	}
	if revokeErr != nil {
		s.slog.Warn("a paid user's queue token stays active until its TTL", "payment", pid, "user", p.UserID, "correlation_id", meta.CorrelationID, "err", revokeErr)
	}
	return paymentResult(st), nil
}

// Refund reverses a completed payment; see runRefund.
func (s *Service) Refund(ctx context.Context, meta Meta, paymentID string) (Payment, error) {
	if !aggregates.ValidID(paymentID) {
		return Payment{}, fmt.Errorf("payment %q: %w", paymentID, aggregates.ErrPaymentNotFound)
	}
	p, err := s.payments.Do(ctx, paymentID, meta.step(paymentID+"/refund"), func(st aggregates.Payment) ([]aggregates.Event, error) {
		return st.DecideRefundRequest(s.clock.Now(), requestID(meta, "refund"))
	})
	if err != nil {
		return Payment{}, fmt.Errorf("refund %s: %w", paymentID, err)
	}
	if p.Status() == aggregates.PaymentStatusRefunded {
		return paymentResult(p), nil
	}
	return s.runRefund(ctx, meta, p.Started())
}

// runRefund carries a refund past its gate: ReservationCancelled{REFUNDED} with the release
// of its seats (one commit of the date) → PointsRefunded{REFUND} → PaymentRefunded. Each step
// is a reversal event and idempotent; nothing is deleted. Recovery calls it for a payment
// left REFUNDING.
func (s *Service) runRefund(ctx context.Context, meta Meta, p aggregates.PaymentStarted) (Payment, error) {
	pid, resID := p.PaymentID, p.ReservationID
	ref, err := s.dateOf(ctx, resID)
	if err != nil {
		return Payment{}, err
	}
	if _, err := s.decideReservation(ctx, ref, resID, meta.step(pid+"/refund-cancel"), func(d aggregates.Date) ([]aggregates.Event, error) {
		return d.DecideCancelForRefund(resID, aggregates.CancelForRefund{PaymentID: pid, Now: s.clock.Now()})
	}); err != nil {
		return Payment{}, fmt.Errorf("cancel reservation %s for refund: %w", resID, err)
	}
	if _, err := s.wallets.Do(ctx, p.UserID, meta.step(pid+"/refund-points"), func(w aggregates.Wallet) ([]aggregates.Event, error) {
		return w.DecideRefund(aggregates.RefundDebit{PaymentID: pid, Reason: aggregates.RefundRefund})
	}); err != nil {
		return Payment{}, fmt.Errorf("refund points of %s: %w", pid, err)
	}
	st, err := s.payments.Do(ctx, pid, meta.step(pid+"/refunded"), func(st aggregates.Payment) ([]aggregates.Event, error) {
		return st.DecideFinishRefund(s.clock.Now())
	})
	if err != nil {
		return Payment{}, fmt.Errorf("finish refund %s: %w", pid, err)
	}
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
