package relay

import (
	"context"
	"fmt"
)

// DeadLetters lists the dead letters, oldest failure first; empty (not nil) when there are none.
func (r *Relay) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	return r.dead.list(ctx)
}

// Redrive delivers a dead letter's fact again, in the background: it returns once the
// delivery is under way (the API answers 202), or ErrDeadLetterNotFound for an unknown id.
// The entry leaves the list when the platform accepts the fact; if every attempt fails again,
// it stays with the new attempts and error, and a new alert goes out. A redrive interrupted
// by Close or a crash leaves the entry as it was, to be redriven again. The id is looked up
// first, so an unknown one is ErrDeadLetterNotFound even on a relay that cannot deliver
// (ErrDisabled, ErrClosed): what does not exist is never reported as a relay that is down.
func (r *Relay) Redrive(ctx context.Context, id string) error {
	rec, rev, err := r.dead.get(ctx, id)
	if err != nil {
		return err
	}
	if r.opts.URL == "" {
		return fmt.Errorf("redrive %s: %w", id, ErrDisabled)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if r.redriving[rec.ID] {
		return nil // already under way; one delivery is enough
	}
	r.redriving[rec.ID] = true
	r.work.Add(1)
	go func() {
		defer r.work.Done()
		r.redrive(r.base, rec, rev)
		r.mu.Lock()
		delete(r.redriving, rec.ID)
		r.mu.Unlock()
	}()
	return nil
}

// redrive retries one dead letter in this process with the relay's backoff. The fact is no
// longer in a consumer (it was acknowledged when it was dead-lettered), so the waits are timers
// here; the stored entry is what makes the redrive durable.
func (r *Relay) redrive(ctx context.Context, rec deadLetterRecord, rev uint64) {
	var res result
	attempts := 0
	for attempts < r.opts.MaxAttempts {
		attempts++
		slotted := false
		select {
		case r.slots <- struct{}{}:
			slotted = true
		case <-ctx.Done():
		}
		if !slotted {
			return
		}
		res = r.post(ctx, rec.Fact)
		<-r.slots
		if ctx.Err() != nil {
			return
		}
		if res.outcome == delivered {
			r.delivered(rec.Fact)
			if err := r.dead.remove(ctx, rec.ID, rev); err != nil {
				r.log.Warn("relay: redriven fact delivered but its dead letter stays", "id", rec.ID, "err", err)
			}
			r.log.Info("relay: dead letter redriven", "id", rec.ID, "eventId", rec.EventID, "attempts", attempts)
			return
		}
		if res.outcome == permanent || attempts == r.opts.MaxAttempts {
			break
		}
		r.metrics.retried.Inc()
		if !r.wait(ctx, backoff(attempts, r.opts.Backoff, r.opts.BackoffMax, res.retryAfter, r.jitter)) {
			return
		}
	}
	rec.Attempts += attempts
	rec.LastError = res.err.Error()
	rec.FailedAt = r.now().UTC()
	if err := r.dead.put(ctx, rec); err != nil {
		r.log.Error("relay: dead letter not updated after a failed redrive", "id", rec.ID, "err", err)
	}
	r.deadLettered(rec.DeadLetter)
}
