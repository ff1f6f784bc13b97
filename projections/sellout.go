// Sell-outs: the seats model detects them, the recorder hands them to the SoldOut hook.

package projections

import (
	"bytes"
	"context"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"

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

// dropSpuriousMark forgets an unconfirmed detection of dk when a seat turns out to have been
// released before the detected moment. A date's seat events are applied in the order of its
// commits, so this takes a release stamped by a clock behind the one that stamped the last
// sale (another instance's); it dates from seat subjects spread over every seat stream, when
// a release on another stream could be applied late. A release after the moment is a refund
// of a date that did sell out, and leaves the detection alone.
func (b *seatsBatch) dropSpuriousMark(dk string, releasedAt time.Time) error {
	v := b.soldOut.Get([]byte(dk))
	if v == nil {
		return nil
	}
	mk, err := decodeMark(dk, v)
	if err != nil {
		return err
	}
	if mk.confirmed || !releasedAt.Before(mk.at) {
		return nil
	}
	b.m.g.log.Info("dropped a sell-out seen while the seat streams were out of step", "concertId", mk.concertID, "dateId", mk.dateID)
	return b.soldOut.Delete([]byte(dk))
}

// markIfSoldOut leaves a detection for the sell-out recorder when every seat of dk is sold and
// the catalog has no sell-out of it yet. soldOutAt is the latest sale of the date's seats: the
// moment the last seat went.
func (m *seatsModel) markIfSoldOut(tx *bolt.Tx, dk string, c dateCount, pending map[string]*dateInfo) (bool, error) {
	in, err := m.dateInfo(tx, dk, pending)
	if err != nil || in == nil || c.sold < int64(in.spec.SeatCount) {
		return false, err
	}
	key := []byte(dk)
	if tx.Bucket([]byte(bRecorded)).Get(key) != nil || tx.Bucket([]byte(bSoldOut)).Get(key) != nil {
		return false, nil
	}
	var at time.Time
	sold := 0
	prefix := append([]byte(dk), 0)
	cur := tx.Bucket([]byte(bSeats)).Cursor()
	for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
		r, err := decodeSeat(v)
		if err != nil {
			return false, err
		}
		if r.status != seatSold {
			return false, nil
		}
		sold++
		if r.at.After(at) {
			at = r.at
		}
	}
	if sold < in.spec.SeatCount {
		return false, nil
	}
	return true, tx.Bucket([]byte(bSoldOut)).Put(key, soldOutMark{at: at}.encode())
}

// goLive runs once the seats of every stream are applied up to the heads seen at start. While
// catching up nothing is detected: the catalog, which records the sell-outs, may lag the seat
// streams, and every past sell-out would be handed to the hook again. It detects every
// sell-out that is not recorded yet; from now on each batch checks the dates it sold seats of.
// (A date's seat events are all in its own commits, on one stream applied in order, so every
// state of a date the model shows was a true one; with a subject per seat, spread over all
// the seat streams, a date could look sold out while catching up and never have been.)
func (m *seatsModel) goLive() error {
	marked := false
	m.g.writeMu.Lock()
	err := m.g.db.Update(func(tx *bolt.Tx) error {
		pending := map[string]*dateInfo{}
		err := tx.Bucket([]byte(bDateCounts)).ForEach(func(k, v []byte) error {
			c, err := decodeCount(v)
			if err != nil {
				return err
			}
			ok, err := m.markIfSoldOut(tx, string(k), c, pending)
			marked = marked || ok
			return err
		})
		return err
	})
	m.g.writeMu.Unlock()
	if err != nil {
		return fmt.Errorf("projections: seats: detect sell-outs: %w", err)
	}
	if marked && m.g.kick != nil {
		m.g.kick()
	}
	return nil
}

// soldOutMark is a detected sell-out not yet recorded. It is confirmed once its date's stream
// was seen past its time with the date still sold out.
type soldOutMark struct {
	concertID, dateID string
	at                time.Time
	confirmed         bool
	raw               []byte
}

func decodeMark(dk string, v []byte) (soldOutMark, error) {
	d := dec{b: v}
	at, confirmed := d.time(), d.int() == 1
	c, date := splitDateKey(dk)
	return soldOutMark{concertID: c, dateID: date, at: at, confirmed: confirmed, raw: append([]byte(nil), v...)}, d.err
}

func (mk soldOutMark) encode() []byte {
	e := enc{}
	e.time(mk.at)
	if mk.confirmed {
		e.int(1)
	} else {
		e.int(0)
	}
	return e.b
}

func (m *seatsModel) marks() ([]soldOutMark, error) {
	var out []soldOutMark
	err := m.g.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bSoldOut)).ForEach(func(k, v []byte) error {
			mk, err := decodeMark(string(k), v)
			out = append(out, mk)
			return err
		})
	})
	return out, err
}

// confirm marks a detection as standing, once its date's stream has passed its moment (so no
// release before it can still come). It returns false when the detection is gone meanwhile.
func (m *seatsModel) confirm(mk soldOutMark) (bool, error) {
	m.g.writeMu.Lock()
	defer m.g.writeMu.Unlock()
	stands := false
	err := m.g.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bSoldOut))
		dk := []byte(dateKey(mk.concertID, mk.dateID))
		if !bytes.Equal(b.Get(dk), mk.raw) {
			return nil
		}
		stands = true
		mk.confirmed = true
		return b.Put(dk, mk.encode())
	})
	return stands, err
}

// unmark removes a detection once recorded, unless it changed meanwhile.
func (m *seatsModel) unmark(mk soldOutMark) error {
	m.g.writeMu.Lock()
	defer m.g.writeMu.Unlock()
	return m.g.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bSoldOut))
		k := []byte(dateKey(mk.concertID, mk.dateID))
		if v := b.Get(k); v != nil {
			return b.Delete(k)
		}
		return nil
	})
}
