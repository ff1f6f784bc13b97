package app

import (
	"context"
	"sync"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// sweeper is the durable timer of hold expiry. Its queue is memory only, but it is refilled at
// start-up from the seats read model (every seat still HELD) and kept current by every
// SeatHeld this instance appends or sees applied, so a restart never forgets a hold: a hold
// whose heldUntil passed while the server was down expires at once. It tracks reservations,
// not seats: the seats of a reservation expire together, in one commit of their date.
type sweeper struct {
	mu      sync.Mutex
	h       holdHeap
	live    map[string]time.Time // reservationID → heldUntil, for untrack
	changed chan struct{}
}

func newSweeper() *sweeper {
	return &sweeper{live: map[string]time.Time{}, changed: make(chan struct{}, 1)}
}

func (w *sweeper) track(h HeldSeat) {
	k := h.ReservationID
	w.mu.Lock()
	if _, ok := w.live[k]; ok {
		w.mu.Unlock()
		return
	}
	w.live[k] = h.HeldUntil
	w.h.push(h)
	w.mu.Unlock()
	select {
	case w.changed <- struct{}{}:
	default:
	}
}

func (w *sweeper) untrack(resID string) {
	w.mu.Lock()
	delete(w.live, resID)
	w.mu.Unlock()
}

// due pops every tracked hold with heldUntil <= now.
func (w *sweeper) due(now time.Time) []HeldSeat {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []HeldSeat
	for w.h.Len() > 0 && !w.h[0].HeldUntil.After(now) {
		h := w.h.pop()
		k := h.ReservationID
		if _, ok := w.live[k]; ok {
			delete(w.live, k)
			out = append(out, h)
		}
	}
	return out
}

// next returns the earliest heldUntil tracked.
func (w *sweeper) next() (time.Time, bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.h.Len() == 0 {
		return time.Time{}, false
	}
	return w.h[0].HeldUntil, true
}

// maxExpiringAtOnce bounds the expiries in flight. They go side by side so that the holds
// of a date that fall due together share its commits (group commit): one after another, each
// waited for its own commit, and under a sale's load (a date commit taking tens of
// milliseconds) the sweeper expired a few dozen holds a second while hundreds fell due, so
// abandoned seats stayed held long past their heldUntil.
const maxExpiringAtOnce = 256

// ExpireDue expires every tracked hold whose heldUntil has passed, and returns how many it
// looked at; it returns when each has expired or been put back to try again. The sweeper's
// loop calls it; tests call it after moving their clock.
func (s *Service) ExpireDue(ctx context.Context) int {
	due := s.sweeper.due(s.clock.Now())
	slots := make(chan struct{}, maxExpiringAtOnce)
	var wg sync.WaitGroup
	for _, h := range due {
		slots <- struct{}{}
		wg.Go(func() {
			defer func() { <-slots }()
			if err := s.expire(ctx, h); err != nil {
				s.slog.Warn("expiring a hold failed; retrying shortly", "reservation", h.ReservationID, "err", err)
				retry := h
				retry.HeldUntil = s.clock.Now().Add(time.Second)
				s.sweeper.track(retry)
			}
		})
	}
	wg.Wait()
	return len(due)
}

// expire settles one lapsed hold: ReservationExpired and the release of its seats, in one
// commit of the date, unless it was paid, cancelled or already expired (the date's version
// decides a race with a payment).
func (s *Service) expire(ctx context.Context, h HeldSeat) error {
	ref := dateRef{concertID: h.ConcertID, dateID: h.DateID}
	meta := Meta{CorrelationID: "expiry/" + h.ReservationID}
	r, err := s.decideReservation(ctx, ref, h.ReservationID, meta.step(h.ReservationID+"/expire"), func(d aggregates.Date) ([]aggregates.Event, error) {
		return d.DecideExpire(h.ReservationID, aggregates.Expire{Now: s.clock.Now()})
	})
	if err != nil {
		return err
	}
	switch r.Status() {
	case aggregates.ReservationStatusHeld:
		// Not due after all (a clock step back): look again at its heldUntil.
		s.sweeper.track(HeldSeat{ConcertID: h.ConcertID, DateID: h.DateID, SeatNo: h.SeatNo, ReservationID: h.ReservationID, HeldUntil: r.Held().HeldUntil})
	case aggregates.ReservationStatusExpired:
		s.resDates.del(h.ReservationID) // a late command about it finds its date in the read models
	}
	return nil
}

// runSweeper expires holds as they fall due until ctx ends. It sleeps until the earliest
// heldUntil (at most 250 ms, so a fake or stepped clock is noticed), or until a new hold is
// tracked.
func (s *Service) runSweeper(ctx context.Context) {
	for {
		s.ExpireDue(ctx)
		wait := 250 * time.Millisecond
		if next, ok := s.sweeper.next(); ok {
			if d := next.Sub(s.clock.Now()); d < wait {
				wait = max(d, time.Millisecond)
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.sweeper.changed:
			t.Stop()
		case <-t.C:
		}
	}
}

// OnEvent keeps the sweeper current with holds made by any instance. Wire it to the read
// models' subscription: it is called for every applied event and must stay cheap.
func (s *Service) OnEvent(env eventstore.Envelope) {
	if env.AggregateType != eventstore.TypeSeat {
		return
	}
	ref := env.AggregateID
	ev, err := aggregates.DecodeKnown(env.Decoded, env.Type, env.Data)
	if err != nil {
		return
	}
	c, d, n, ok := aggregates.ParseSeatID(ref)
	if !ok {
		return
	}
	switch e := ev.(type) {
	case aggregates.SeatHeld:
		s.sweeper.track(HeldSeat{ConcertID: c, DateID: d, SeatNo: n, ReservationID: e.ReservationID, HeldUntil: e.HeldUntil})
	case aggregates.SeatReleased:
		s.sweeper.untrack(e.ReservationID)
	case aggregates.SeatSold:
		s.sweeper.untrack(e.ReservationID)
	}
}

// holdHeap is a min-heap of holds by HeldUntil. It is typed rather than container/heap's
// interface, which boxed every hold into an allocation of its own and called Less through an
// interface: a push per hold showed in a flash sale's profile.
type holdHeap []HeldSeat

func (h holdHeap) Len() int { return len(h) }

func (h *holdHeap) push(x HeldSeat) {
	*h = append(*h, x)
	s := *h
	for i := len(s) - 1; i > 0; {
		parent := (i - 1) / 2
		if !s[i].HeldUntil.Before(s[parent].HeldUntil) {
			break
		}
		s[i], s[parent] = s[parent], s[i]
		i = parent
	}
}

// pop removes and returns the earliest hold; the heap must not be empty.
func (h *holdHeap) pop() HeldSeat {
	s := *h
	top := s[0]
	last := len(s) - 1
	s[0] = s[last]
	s[last] = HeldSeat{} // drop the strings for the collector
	s = s[:last]
	for i := 0; ; {
		least, l, r := i, 2*i+1, 2*i+2
		if l < len(s) && s[l].HeldUntil.Before(s[least].HeldUntil) {
			least = l
		}
		if r < len(s) && s[r].HeldUntil.Before(s[least].HeldUntil) {
			least = r
		}
		if least == i {
			break
		}
		s[i], s[least] = s[least], s[i]
		i = least
	}
	*h = s
	return top
}
