package app

import (
	"context"
	"errors"
	"fmt"

	"github.com/booking-engine/booking/aggregates"
)

// A date forgets the reservations and payments that ended aggregates.EndedRetention ago (its
// state would otherwise grow with its history), and answers a command about an ID it does not
// have with aggregates.ErrCompacted once it has forgotten any. Such a command is about a
// record that ended long ago, or about one that never existed: the read models, which keep
// every record, tell which, and the answer is made from there. This is the rare path: a
// retry or a late command about a finished booking; new holds and payments carry fresh IDs
// (HoldSeats.NewID) and never come here.

// forgottenReservation returns a reservation its date has forgotten, from the reservations
// read model; one the read model does not have either is aggregates.ErrReservationNotFound.
func (s *Service) forgottenReservation(ctx context.Context, resID string) (Reservation, error) {
	reads := s.reads.Load()
	if reads == nil {
		return Reservation{}, fmt.Errorf("reservation %s: %w", resID, aggregates.ErrReservationNotFound)
	}
	r, err := (*reads).Reservation(ctx, resID)
	if err != nil {
		return Reservation{}, fmt.Errorf("reservation %s: %w", resID, err)
	}
	return r, nil
}

// forgottenPayment returns a payment its date has forgotten, from the payments read model.
func (s *Service) forgottenPayment(ctx context.Context, pid string) (Payment, error) {
	reads := s.reads.Load()
	if reads == nil {
		return Payment{}, fmt.Errorf("payment %s: %w", pid, aggregates.ErrPaymentNotFound)
	}
	p, err := (*reads).Payment(ctx, pid)
	if err != nil {
		return Payment{}, fmt.Errorf("payment %s: %w", pid, err)
	}
	return p, nil
}

// repeatedHold answers a keyed hold whose reservation ID its date does not know, after the
// date forgot records: the reservation the key made long ago, if the read model has it
// (found), as a repeated hold would have answered.
func (s *Service) repeatedHold(ctx context.Context, resID, userID string) (r Reservation, found bool, err error) {
	r, err = s.forgottenReservation(ctx, resID)
	switch {
	case errors.Is(err, aggregates.ErrReservationNotFound):
		return Reservation{}, false, nil
	case err != nil:
		return Reservation{}, false, err
	case r.UserID != userID:
		return Reservation{}, true, fmt.Errorf("hold: %w", aggregates.ErrReservationExists)
	}
	return r, true, nil
}

// payForgotten answers the payment of a reservation its date has forgotten: it ended (EXPIRED
// or CANCELLED) long ago, so it is not payable, or it never existed.
func (s *Service) payForgotten(ctx context.Context, resID, userID string) error {
	r, err := s.forgottenReservation(ctx, resID)
	switch {
	case err != nil:
		return err
	case r.UserID != userID:
		return fmt.Errorf("reservation %s: %w", resID, aggregates.ErrForbidden)
	}
	return fmt.Errorf("reservation %s is %s: %w", resID, r.Status, aggregates.ErrReservationNotPayable)
}

// cancelForgotten answers the cancellation of a reservation its date has forgotten. A keyed
// request finding it CANCELLED is taken for the repeat of the cancel whose answer was lost
// (the read model does not keep which request cancelled it); anything else ended is not
// cancellable, as the date would have answered.
func (s *Service) cancelForgotten(ctx context.Context, meta Meta, resID, userID string) (Reservation, error) {
	r, err := s.forgottenReservation(ctx, resID)
	switch {
	case err != nil:
		return Reservation{}, err
	case r.UserID != userID:
		return Reservation{}, fmt.Errorf("cancel reservation %s: %w", resID, aggregates.ErrForbidden)
	case r.Status == aggregates.ReservationStatusCancelled && meta.RequestKey != "":
		return r, nil
	}
	return Reservation{}, fmt.Errorf("cancel reservation %s is %s: %w", resID, r.Status, aggregates.ErrReservationNotCancellable)
}

// refundForgotten answers the refund of a payment its date has forgotten: it ended (FAILED or
// REFUNDED) long ago. A keyed request finding it REFUNDED is taken for the repeat of the
// refund whose answer was lost, as for cancelForgotten.
func (s *Service) refundForgotten(ctx context.Context, meta Meta, pid string) (Payment, error) {
	p, err := s.forgottenPayment(ctx, pid)
	switch {
	case err != nil:
		return Payment{}, fmt.Errorf("refund: %w", err)
	case p.Status == aggregates.PaymentStatusRefunded && meta.RequestKey != "":
		return p, nil
	}
	return Payment{}, fmt.Errorf("refund %s, %s: %w", pid, p.Status, aggregates.ErrPaymentNotRefundable)
}

// resumeForgotten answers a keyed payment whose payment its date has forgotten: it ended long
// ago, FAILED (answered with its failure, as resumePayment does) or REFUNDED.
func (s *Service) resumeForgotten(ctx context.Context, pid string) (Payment, error) {
	p, err := s.forgottenPayment(ctx, pid)
	if err != nil {
		return Payment{}, err
	}
	if p.Status == aggregates.PaymentStatusFailed {
		return Payment{}, fmt.Errorf("payment %s: %w", pid, failureError(p.FailureReason))
	}
	return p, nil
}
