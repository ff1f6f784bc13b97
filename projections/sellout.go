package projections

import (
	"context"
	"fmt"
	"time"

	"github.com/booking-engine/booking/eventstore"
)

func (e *Engine) kickSellOuts() {
	select {
	case e.kick <- struct{}{}:
	default:
	}
}

// recordSellOutsLoop hands the seats model's sell-out detections to the SoldOut hook, and
// forgets a detection only once the hook succeeded. Detections live in the seats file, written
// in the same transaction as the sale that completed the date, so neither a crash nor a hook
// error loses one: they are retried with a backoff and at every start.
func (e *Engine) recordSellOutsLoop(ctx context.Context) {
	const first, most = 500 * time.Millisecond, 30 * time.Second
	delay := first
	var retry <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-e.kick:
		case <-retry:
		}
		done, waiting := e.recordSellOuts(ctx)
		switch {
		case !done:
			retry = time.After(delay)
			delay = min(delay*2, most)
		case waiting:
			// Commits wake the recorder while a detection waits for its date's stream; a
			// short timer covers a log that went quiet meanwhile.
			retry, delay = time.After(first), first
		default:
			retry, delay = nil, first
		}
	}
}

// recordSellOuts confirms and records every pending detection. It reports whether none failed,
// and whether some still wait for their date's stream to pass their moment.
func (e *Engine) recordSellOuts(ctx context.Context) (done, waiting bool) {
	p := e.byName[Seats]
	g := p.acquire()
	defer p.release(g)
	m := g.model.(*seatsModel)
	marks, err := m.marks()
	if err != nil {
		e.log.Error("reading sell-out detections", "err", err)
		return false, false
	}
	done = true
	for _, mk := range marks {
		if ctx.Err() != nil {
			return false, waiting
		}
		if !mk.confirmed {
			settled, err := e.dateStreamPassed(ctx, g, mk.concertID, mk.dateID, mk.at)
			if err != nil {
				e.log.Warn("checking a sell-out detection", "concertId", mk.concertID, "dateId", mk.dateID, "err", err)
				done = false
				continue
			}
			if !settled {
				waiting = true
				continue
			}
			stands, err := m.confirm(mk)
			if err != nil {
				e.log.Error("confirming a sell-out detection", "concertId", mk.concertID, "dateId", mk.dateID, "err", err)
				done = false
				continue
			}
			if !stands {
				continue
			}
		}
		hctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := e.opts.SoldOut(hctx, mk.concertID, mk.dateID, mk.at)
		cancel()
		if err != nil {
			e.log.Warn("recording a sell-out failed; will retry", "concertId", mk.concertID, "dateId", mk.dateID, "err", err)
			done = false
			continue
		}
		if err := m.unmark(mk); err != nil {
			e.log.Error("forgetting a recorded sell-out", "concertId", mk.concertID, "dateId", mk.dateID, "err", err)
			done = false
		}
	}
	m.unsettled.Store(waiting)
	return done, waiting
}

// dateStreamPassed reports whether g has applied, on the stream of a date's commits,
// everything that happened up to at: the stream either has an applied event at or after at,
// or nothing left to apply. A date's seat events are all in its own commits, on one stream
// applied in order, so a detection made while applying it saw a true state of the date; the
// wait only keeps a detection whose moment a clock of another instance put ahead of the
// stream's newest event until the stream gets there.
func (e *Engine) dateStreamPassed(ctx context.Context, g *generation, concertID, dateID string, at time.Time) (bool, error) {
	s, _, err := eventstore.Place(eventstore.AggregateRef{Type: eventstore.TypeDate, ID: concertID + "." + dateID})
	if err != nil {
		return false, fmt.Errorf("stream of date %s/%s: %w", concertID, dateID, err)
	}
	if v := g.lastAt[s]; v != nil && v.Load() >= at.UnixNano() {
		return true, nil
	}
	h, err := e.store.Head(ctx, s)
	if err != nil {
		return false, fmt.Errorf("head of %s: %w", s, err)
	}
	return g.checkpoint(s) >= h, nil
}
