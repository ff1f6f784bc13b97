package app

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/projections"
)

// Hold holds a seat for the user: SeatHeld on the seat (where concurrent holds are settled:
// exactly one passes the version check), then ReservationHeld. If the second step fails the
// seat stays held by a reservation that does not exist until the sweeper releases it at
// heldUntil, so a crash never holds a seat forever.
func (s *Service) Hold(ctx context.Context, meta Meta, req HoldRequest) (projections.ReservationView, error) {
	if !aggregates.ValidID(req.UserID) {
		return projections.ReservationView{}, fmt.Errorf("user %q: %w", req.UserID, aggregates.ErrInvalid)
	}
	c, err := s.concert(ctx, req.ConcertID)
	if err != nil {
		return projections.ReservationView{}, err
	}
	date, ok := c.Date(req.DateID)
	if !ok {
		return projections.ReservationView{}, fmt.Errorf("date %s of %s: %w", req.DateID, req.ConcertID, aggregates.ErrDateNotFound)
	}
	price, ok := date.PriceOf(req.SeatNo)
	if !ok {
		return projections.ReservationView{}, fmt.Errorf("seat %d of %s/%s: %w", req.SeatNo, req.ConcertID, req.DateID, aggregates.ErrSeatNotFound)
	}
	now := s.clock.Now()
	resID := idFor(meta, "reservation")
	if meta.ReplayOnly {
		r, _, err := s.reservations.Load(ctx, resID)
		if err != nil {
			return projections.ReservationView{}, err
		}
		if !r.Exists() || r.Held().UserID != req.UserID {
			return projections.ReservationView{}, fmt.Errorf("hold: %w", ErrTokenExpired)
		}
		return reservationView(r), nil
	}
	heldUntil := now.Add(s.cfg.HoldTTL)
	seatID := aggregates.SeatID(req.ConcertID, req.DateID, req.SeatNo)
	step := resID + "/hold"
	_, _, _, err = s.seats.Update(ctx, seatID, step, s.metadata(meta, step), func(st aggregates.Seat) ([]aggregates.Event, error) {
		return st.DecideHold(aggregates.HoldSeat{ReservationID: resID, UserID: req.UserID, HeldUntil: heldUntil})
	})
	if err != nil {
		return projections.ReservationView{}, fmt.Errorf("hold seat %s: %w", seatID, err)
	}
	s.sweeper.track(HeldSeat{ConcertID: req.ConcertID, DateID: req.DateID, SeatNo: req.SeatNo, ReservationID: resID, HeldUntil: heldUntil})
	held := aggregates.ReservationHeld{
		ReservationID: resID, UserID: req.UserID, ConcertID: req.ConcertID, DateID: req.DateID,
		SeatNo: req.SeatNo, Price: price, HeldAt: now, HeldUntil: heldUntil,
	}
	step = resID + "/open"
	r, _, _, err := s.reservations.Update(ctx, resID, step, s.metadata(meta, step), func(st aggregates.Reservation) ([]aggregates.Event, error) {
		return st.DecideOpen(held)
	})
	if err != nil {
		s.releaseSeat(ctx, meta, seatID, resID, aggregates.ReleaseExpired)
		return projections.ReservationView{}, fmt.Errorf("open reservation %s: %w", resID, err)
	}
	return reservationView(r), nil
}

// Cancel cancels a held reservation of its owner and frees the seat. Should freeing the seat
// fail, the sweeper frees it at heldUntil.
func (s *Service) Cancel(ctx context.Context, meta Meta, reservationID, userID string) (projections.ReservationView, error) {
	if !aggregates.ValidID(reservationID) {
		return projections.ReservationView{}, fmt.Errorf("reservation %q: %w", reservationID, aggregates.ErrReservationNotFound)
	}
	if meta.ReplayOnly {
		r, _, err := s.reservations.Load(ctx, reservationID)
		if err != nil {
			return projections.ReservationView{}, err
		}
		if _, err := r.DecideCancel(aggregates.Cancel{UserID: userID, Now: s.clock.Now(), RequestID: requestID(meta, "cancel")}); err != nil || r.Status() != aggregates.ReservationCancelledS {
			return projections.ReservationView{}, fmt.Errorf("cancel: %w", ErrTokenExpired)
		}
		return reservationView(r), nil
	}
	step := reservationID + "/cancel"
	r, _, _, err := s.reservations.Update(ctx, reservationID, step, s.metadata(meta, step), func(st aggregates.Reservation) ([]aggregates.Event, error) {
		return st.DecideCancel(aggregates.Cancel{UserID: userID, Now: s.clock.Now(), RequestID: requestID(meta, "cancel")})
	})
	if err != nil {
		return projections.ReservationView{}, fmt.Errorf("cancel reservation %s: %w", reservationID, err)
	}
	h := r.Held()
	s.releaseSeat(ctx, meta, aggregates.SeatID(h.ConcertID, h.DateID, h.SeatNo), reservationID, aggregates.ReleaseCancelled)
	return reservationView(r), nil
}

// releaseSeat frees a seat a reservation no longer needs. Failures are logged, not returned:
// the reservation's own state is already decided, and the sweeper retries at heldUntil.
func (s *Service) releaseSeat(ctx context.Context, meta Meta, seatID, reservationID, reason string) {
	step := reservationID + "/release"
	_, _, _, err := s.seats.Update(ctx, seatID, step, s.metadata(meta, step), func(st aggregates.Seat) ([]aggregates.Event, error) {
		return st.DecideRelease(aggregates.ReleaseSeat{ReservationID: reservationID, Reason: reason})
	})
	if err != nil {
		s.slog.Warn("release seat failed; the sweeper will retry", "seat", seatID, "reservation", reservationID, "correlation_id", meta.CorrelationID, "err", err)
	}
}

// Pay pays a held reservation with the user's points. See runPayment for the saga.
func (s *Service) Pay(ctx context.Context, meta Meta, reservationID, userID string) (projections.PaymentView, error) {
	if !aggregates.ValidID(reservationID) {
		return projections.PaymentView{}, fmt.Errorf("reservation %q: %w", reservationID, aggregates.ErrReservationNotFound)
	}
	pid := idFor(meta, "payment")
	if meta.RequestKey != "" {
		// A retry of a payment whose answer was lost: finish or report the same payment.
		p, _, err := s.payments.Load(ctx, pid)
		if err != nil {
			return projections.PaymentView{}, err
		}
		if p.Exists() && p.Started().ReservationID != reservationID {
			// The key's payment pays another reservation. Going on would run its saga for this
			// one under the same payment ID, whose debit the wallet already holds: a
			// confirmation without a debit.
			return projections.PaymentView{}, fmt.Errorf("payment %s pays reservation %s, not %s: %w", pid, p.Started().ReservationID, reservationID, ErrKeyReused)
		}
		if p.Exists() {
			switch p.Status() {
			case aggregates.PaymentStartedS:
				return s.runPayment(ctx, meta, pid, p.Started())
			case aggregates.PaymentFailedS:
				return projections.PaymentView{}, fmt.Errorf("payment %s: %w", pid, failureError(p.FailureReason()))
			default:
				return paymentView(p), nil
			}
		}
		if meta.ReplayOnly {
			return projections.PaymentView{}, fmt.Errorf("pay: %w", ErrTokenExpired)
		}
	}
	r, _, err := s.reservations.Load(ctx, reservationID)
	if err != nil {
		return projections.PaymentView{}, err
	}
	switch {
	case !r.Exists():
		return projections.PaymentView{}, fmt.Errorf("reservation %s: %w", reservationID, aggregates.ErrReservationNotFound)
	case r.Held().UserID != userID:
		return projections.PaymentView{}, fmt.Errorf("reservation %s: %w", reservationID, aggregates.ErrForbidden)
	case r.Status() != aggregates.ReservationHeldS:
		return projections.PaymentView{}, fmt.Errorf("reservation %s is %s: %w", reservationID, r.Status(), aggregates.ErrReservationNotPayable)
	}
	started := aggregates.PaymentStarted{PaymentID: pid, ReservationID: reservationID, UserID: userID, Amount: r.Held().Price, StartedAt: s.clock.Now()}
	step := pid + "/start"
	if _, _, _, err := s.payments.Update(ctx, pid, step, s.metadata(meta, step), func(p aggregates.Payment) ([]aggregates.Event, error) {
		return p.DecideStart(started)
	}); err != nil {
		return projections.PaymentView{}, fmt.Errorf("start payment: %w", err)
	}
	return s.runPayment(ctx, meta, pid, started)
}

// runPayment carries a started payment to its end: lock the reservation for it → debit the
// wallet → confirm the reservation → sell the seat and revoke the queue token → complete. A
// failure after the debit reverses it with PointsRefunded. Every step is idempotent (the
// deciders ignore a repeated step and each append has a dedup ID of payment and step), so
// recovery calls this again for a payment a crash left STARTED, and it completes or reverses.
// Infrastructure errors leave the payment STARTED for recovery and are returned as they are;
// a refusal of any step is final (aggregates.IsRefusal), so it ends the payment FAILED; were
// it left STARTED, recovery would run into the same refusal every 30 s for ever.
//
// pid is the payment aggregate, where the saga records its progress; p is the record it was
// started with, whose IDs the steps' commands carry. They agree unless the record is damaged
// (a payment ID missing from it): then a step refuses it and the failure still lands on pid.
func (s *Service) runPayment(ctx context.Context, meta Meta, pid string, p aggregates.PaymentStarted) (projections.PaymentView, error) {
	resID := p.ReservationID
	// fail ends the payment: it reverses the debit if there was one and releases the
	// reservation's lock if this payment holds it (both no-ops otherwise, which matters when
	// recovery resumes a payment whose debit landed before a crash), then records the failure.
	fail := func(reason string, cause error) (projections.PaymentView, error) {
		step := pid + "/reverse"
		if _, _, _, err := s.wallets.Update(ctx, p.UserID, step, s.metadata(meta, step), func(w aggregates.Wallet) ([]aggregates.Event, error) {
			return w.DecideRefund(aggregates.RefundDebit{PaymentID: p.PaymentID, Reason: aggregates.RefundReversal})
		}); err != nil {
			return projections.PaymentView{}, fmt.Errorf("reverse debit of %s: %w", pid, err)
		}
		step = pid + "/abort"
		if _, _, _, err := s.reservations.Update(ctx, resID, step, s.metadata(meta, step), func(st aggregates.Reservation) ([]aggregates.Event, error) {
			return st.DecideAbortPayment(aggregates.AbortPayment{PaymentID: p.PaymentID, Reason: reason})
		}); err != nil {
			return projections.PaymentView{}, fmt.Errorf("unlock reservation %s: %w", resID, err)
		}
		step = pid + "/fail"
		if _, _, _, err := s.payments.Update(ctx, pid, step, s.metadata(meta, step), func(st aggregates.Payment) ([]aggregates.Event, error) {
			return st.DecideFail(reason, s.clock.Now())
		}); err != nil {
			return projections.PaymentView{}, fmt.Errorf("fail payment %s: %w", pid, err)
		}
		return projections.PaymentView{}, fmt.Errorf("payment %s: %w", pid, cause)
	}

	step := pid + "/lock"
	r, _, _, err := s.reservations.Update(ctx, resID, step, s.metadata(meta, step), func(st aggregates.Reservation) ([]aggregates.Event, error) {
		return st.DecideStartPayment(aggregates.StartPayment{PaymentID: p.PaymentID, UserID: p.UserID, Now: s.clock.Now()})
	})
	if err != nil {
		if aggregates.IsRefusal(err) {
			return fail(aggregates.FailNotPayable, err)
		}
		return projections.PaymentView{}, fmt.Errorf("lock reservation %s: %w", resID, err)
	}

	step = pid + "/debit"
	_, _, _, err = s.wallets.Update(ctx, p.UserID, step, s.metadata(meta, step), func(w aggregates.Wallet) ([]aggregates.Event, error) {
		return w.DecideDebit(aggregates.Debit{PaymentID: p.PaymentID, Amount: p.Amount})
	})
	if err != nil {
		if !aggregates.IsRefusal(err) {
			return projections.PaymentView{}, fmt.Errorf("debit %s: %w", p.UserID, err)
		}
		if errors.Is(err, aggregates.ErrInsufficientPoints) {
			return fail(aggregates.FailInsufficientPoints, err)
		}
		return fail(aggregates.FailNotPayable, err)
	}

	step = pid + "/confirm"
	r, _, _, err = s.reservations.Update(ctx, resID, step, s.metadata(meta, step), func(st aggregates.Reservation) ([]aggregates.Event, error) {
		return st.DecideConfirm(aggregates.Confirm{PaymentID: p.PaymentID, Now: s.clock.Now()})
	})
	if err != nil {
		if !aggregates.IsRefusal(err) {
			return projections.PaymentView{}, fmt.Errorf("confirm reservation %s: %w", resID, err)
		}
		// The hold lapsed or was cancelled while we debited: reverse the debit.
		return fail(aggregates.FailNotPayable, err)
	}

	// Selling the seat and revoking the queue token touch unrelated aggregates and neither
	// decides anything for the other: they go side by side, one fsync round instead of two.
	// Recovery finishes whichever did not land, as after any crash between steps.
	h := r.Held()
	seatID := aggregates.SeatID(h.ConcertID, h.DateID, h.SeatNo)
	var sellErr error
	var wg sync.WaitGroup
	wg.Go(func() {
		step := pid + "/sell"
		if _, _, _, err := s.seats.Update(ctx, seatID, step, s.metadata(meta, step), func(st aggregates.Seat) ([]aggregates.Event, error) {
			return st.DecideSell(aggregates.SellSeat{ReservationID: resID, PaymentID: p.PaymentID})
		}); err != nil {
			sellErr = fmt.Errorf("sell seat %s: %w", seatID, err)
			return
		}
		s.sweeper.untrack(seatID, resID)
	})
	revokeErr := s.revokeToken(ctx, meta, p.UserID, pid)
	wg.Wait()
	if aggregates.IsRefusal(sellErr) {
		// The seat is no longer this reservation's, which no step of ours does (something
		// else wrote to the log). The buyer cannot have it, so the sale is undone: the
		// confirmation is cancelled (as a refund cancels it) and the debit reversed.
		s.slog.Error("a confirmed reservation lost its seat; reversing the payment", "payment", pid, "reservation", resID, "seat", seatID, "err", sellErr)
		step = pid + "/unconfirm"
		if _, _, _, err := s.reservations.Update(ctx, resID, step, s.metadata(meta, step), func(st aggregates.Reservation) ([]aggregates.Event, error) {
			return st.DecideCancelForRefund(aggregates.CancelForRefund{PaymentID: p.PaymentID, Now: s.clock.Now()})
		}); err != nil {
			return projections.PaymentView{}, fmt.Errorf("cancel reservation %s of an unsold seat: %w", resID, err)
		}
		return fail(aggregates.FailNotPayable, fmt.Errorf("%w: %w", aggregates.ErrReservationNotPayable, sellErr))
	}
	if err := cmp.Or(sellErr, revokeErr); err != nil {
		return projections.PaymentView{}, err
	}

	step = pid + "/complete"
	now := s.clock.Now()
	st, _, _, err := s.payments.Update(ctx, pid, step, s.metadata(meta, step), func(st aggregates.Payment) ([]aggregates.Event, error) {
		return st.DecideComplete(now)
	})
	if err != nil {
		return projections.PaymentView{}, fmt.Errorf("complete payment %s: %w", pid, err)
	}
	return paymentView(st), nil
}

// Refund reverses a completed payment; see runRefund.
func (s *Service) Refund(ctx context.Context, meta Meta, paymentID string) (projections.PaymentView, error) {
	if !aggregates.ValidID(paymentID) {
		return projections.PaymentView{}, fmt.Errorf("payment %q: %w", paymentID, aggregates.ErrPaymentNotFound)
	}
	step := paymentID + "/refund"
	p, _, _, err := s.payments.Update(ctx, paymentID, step, s.metadata(meta, step), func(st aggregates.Payment) ([]aggregates.Event, error) {
		return st.DecideRefundRequest(s.clock.Now(), requestID(meta, "refund"))
	})
	if err != nil {
		return projections.PaymentView{}, fmt.Errorf("refund %s: %w", paymentID, err)
	}
	if p.Status() == aggregates.PaymentRefundedS {
		return paymentView(p), nil
	}
	return s.runRefund(ctx, meta, p.Started())
}

// runRefund carries a refund past its gate: ReservationCancelled{REFUNDED} →
// PointsRefunded{REFUND} → SeatReleased{REFUNDED} → PaymentRefunded. Each step is a reversal
// event and idempotent; nothing is deleted. Recovery calls it for a payment left REFUNDING.
func (s *Service) runRefund(ctx context.Context, meta Meta, p aggregates.PaymentStarted) (projections.PaymentView, error) {
	pid, resID := p.PaymentID, p.ReservationID
	step := pid + "/refund-cancel"
	r, _, _, err := s.reservations.Update(ctx, resID, step, s.metadata(meta, step), func(st aggregates.Reservation) ([]aggregates.Event, error) {
		return st.DecideCancelForRefund(aggregates.CancelForRefund{PaymentID: pid, Now: s.clock.Now()})
	})
	if err != nil {
		return projections.PaymentView{}, fmt.Errorf("cancel reservation %s for refund: %w", resID, err)
	}
	step = pid + "/refund-points"
	if _, _, _, err := s.wallets.Update(ctx, p.UserID, step, s.metadata(meta, step), func(w aggregates.Wallet) ([]aggregates.Event, error) {
		return w.DecideRefund(aggregates.RefundDebit{PaymentID: pid, Reason: aggregates.RefundRefund})
	}); err != nil {
		return projections.PaymentView{}, fmt.Errorf("refund points of %s: %w", pid, err)
	}
	h := r.Held()
	seatID := aggregates.SeatID(h.ConcertID, h.DateID, h.SeatNo)
	step = pid + "/refund-seat"
	if _, _, _, err := s.seats.Update(ctx, seatID, step, s.metadata(meta, step), func(st aggregates.Seat) ([]aggregates.Event, error) {
		return st.DecideRelease(aggregates.ReleaseSeat{ReservationID: resID, Reason: aggregates.ReleaseRefunded})
	}); err != nil {
		return projections.PaymentView{}, fmt.Errorf("release seat %s: %w", seatID, err)
	}
	step = pid + "/refunded"
	st, _, _, err := s.payments.Update(ctx, pid, step, s.metadata(meta, step), func(st aggregates.Payment) ([]aggregates.Event, error) {
		return st.DecideFinishRefund(s.clock.Now())
	})
	if err != nil {
		return projections.PaymentView{}, fmt.Errorf("finish refund %s: %w", pid, err)
	}
	return paymentView(st), nil
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

func reservationView(r aggregates.Reservation) projections.ReservationView {
	h := r.Held()
	return projections.ReservationView{
		ReservationID: h.ReservationID, UserID: h.UserID, ConcertID: h.ConcertID, DateID: h.DateID,
		SeatNo: h.SeatNo, Price: h.Price, Status: r.Status(), HeldAt: h.HeldAt, HeldUntil: h.HeldUntil,
		PaymentID: r.PaymentID(),
	}
}

func paymentView(p aggregates.Payment) projections.PaymentView {
	st := p.Started()
	v := projections.PaymentView{
		PaymentID: st.PaymentID, ReservationID: st.ReservationID, UserID: st.UserID,
		Amount: st.Amount, Status: p.Status(), FailureReason: p.FailureReason(),
	}
	if p.Status() == aggregates.PaymentRefundingS {
		v.Status = aggregates.PaymentCompletedS
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
