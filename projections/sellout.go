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
			// Commits wake the recorder while a detection waits for the seat streams; a
			// short timer covers a log that went quiet meanwhile.
			retry, delay = time.After(first), first
		default:
			retry, delay = nil, first
		}
	}
}

// recordSellOuts confirms and records every pending detection. It reports whether none failed,
// and whether some still wait for the seat streams to pass their moment.
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
			settled, err := e.seatStreamsPassed(ctx, g, mk.at)
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

// seatStreamsPassed reports whether g has applied, on every seat stream, everything that
// happened up to at: the stream either has an applied event at or after at, or nothing left
// to apply. Seat events of one date live on several streams applied independently, so a date
// can look sold out on one stream before another stream's earlier release is applied.
func (e *Engine) seatStreamsPassed(ctx context.Context, g *generation, at time.Time) (bool, error) {
	for _, s := range eventstore.StreamsOf(eventstore.TypeSeat) {
		if v := g.lastAt[s]; v != nil && v.Load() >= at.UnixNano() {
			continue
		}
		h, err := e.store.Head(ctx, s)
		if err != nil {
			return false, fmt.Errorf("head of %s: %w", s, err)
		}
		if g.checkpoint(s) < h {
			return false, nil
		}
	}
	return true, nil
}
