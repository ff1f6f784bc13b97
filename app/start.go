package app

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// Start loads the waiting queue (from its snapshot, when there is a usable one, then the
// events after it), arms the expiry of every held seat, recovers the payments a
// crash left in the middle of a saga, and starts the background loops (queue follower,
// admission ticker, expiry sweeper, periodic recovery). It returns once the service is ready;
// the loops run until ctx ends. Call it after the read models have caught up.
func (s *Service) Start(ctx context.Context, reads ReadSide) error {
	s.reads.Store(&reads)
	queueStream := eventstore.StreamsOf(eventstore.TypeQueueUser)[0]
	s.queueLoading.Store(true)
	head, err := s.log.Head(ctx, queueStream)
	if err != nil {
		return fmt.Errorf("queue head: %w", err)
	}
	after := s.restoreQueue(ctx, queueStream)
	caughtUp := make(chan struct{})
	var once bool
	go func() {
		err := s.log.Replay(ctx, queueStream, after, true, func(batch []eventstore.Envelope) error {
			for _, env := range batch {
				s.queue.apply(env)
			}
			if len(batch) > 0 {
				s.queue.appliedInOrder(batch[len(batch)-1])
			}
			if !once && len(batch) > 0 && batch[len(batch)-1].Sequence >= head {
				once = true
				close(caughtUp)
			}
			return nil
		})
		if err != nil && ctx.Err() == nil {
			s.slog.Error("queue follower stopped", "err", err)
		}
	}()
	if head > after {
		select {
		case <-caughtUp:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.queueLoading.Store(false)
	s.queueShared.Store(!s.dates.singleWriter)

	held, err := reads.HeldSeats(ctx)
	if err != nil {
		return fmt.Errorf("held seats: %w", err)
	}
	for _, h := range held {
		s.sweeper.track(h)
	}
	if err := s.Recover(ctx, reads); err != nil {
		return err
	}
	go s.runSweeper(ctx)
	go s.every(ctx, s.admissionTick(), func() {
		if err := s.admit(ctx); err != nil {
			s.slog.Warn("queue admission failed", "err", err)
		}
	})
	go s.every(ctx, 30*time.Second, func() {
		if err := s.Recover(ctx, reads); err != nil {
			s.slog.Warn("payment recovery failed", "err", err)
		}
	})
	go s.every(ctx, 10*time.Second, func() {
		if !s.queue.snapshotDue(s.savedSeq.Load()) {
			return
		}
		if err := s.SaveQueueSnapshot(); err != nil {
			s.slog.Warn("queue snapshot failed", "err", err)
		}
	})
	s.ready.Store(true)
	return nil
}

func (s *Service) admissionTick() time.Duration {
	if s.cfg.QueueInterval <= 0 {
		return time.Second
	}
	return max(s.cfg.QueueInterval/10, 100*time.Millisecond)
}

func (s *Service) every(ctx context.Context, d time.Duration, fn func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// Recover finishes every payment the read models show in the middle of its saga: a STARTED
// payment is run again from its debit (it completes, or fails and reverses its debit), a
// REFUNDING one from the return of its points. The steps are idempotent, so recovering a payment
// that another instance is still running is harmless.
func (s *Service) Recover(ctx context.Context, reads ReadSide) error {
	ids, err := reads.PendingPayments(ctx)
	if err != nil {
		return fmt.Errorf("pending payments: %w", err)
	}
	var errs []error
	for _, id := range ids {
		if err := s.RecoverPayment(ctx, id); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// RecoverPayment finishes one payment left STARTED or REFUNDING.
func (s *Service) RecoverPayment(ctx context.Context, paymentID string) error {
	ref, err := s.paymentDate(ctx, paymentID)
	if err != nil {
		return fmt.Errorf("recover payment %s: %w", paymentID, err)
	}
	var p aggregates.Payment
	if err := s.dates.Read(ctx, ref.key(), func(d aggregates.Date) { p, _ = d.Payment(paymentID) }); err != nil {
		return fmt.Errorf("recover payment %s: %w", paymentID, err)
	}
	meta := Meta{CorrelationID: "recovery/" + paymentID}
	switch p.Status() {
	case aggregates.PaymentStatusStarted:
		_, err = s.runPayment(ctx, meta, ref, p.Started())
	case aggregates.PaymentStatusRefunding:
		_, err = s.runRefund(ctx, meta, ref, p.Started())
	default:
		return nil
	}
	if err != nil && !aggregates.IsRefusal(err) {
		return fmt.Errorf("recover payment %s: %w", paymentID, err)
	}
	s.slog.Info("recovered payment", "payment", paymentID, "was", p.Status(), "outcome", outcome(err))
	return nil
}

func outcome(err error) string {
	if err == nil {
		return "finished"
	}
	return err.Error()
}
