package projections

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// The seats model keeps one record per seat that is not AVAILABLE (a released seat's record
// is deleted), per-date counts of held and sold seats (so that availability costs one read and
// a hold one small write, whatever the size of the date), an index of held seats for the
// expiry sweeper, and the sell-out detections not yet recorded in the catalog.
const (
	bSeatConcerts = "concerts" // concertId → ConcertCreated JSON
	bSeats        = "seats"    // seatKey → seat record
	bDateCounts   = "dates"    // dateKey → held, sold
	bHeld         = "held"     // heldUntil, seatKey → reservationId (see heldKey)
	bSoldOut      = "soldout"  // dateKey → soldOutAt: detected, not yet recorded
	bRecorded     = "recorded" // dateKey → DateSoldOut seen in the catalog
)

const (
	seatHeld byte = 'H'
	seatSold byte = 'S'
)

type seatRecord struct {
	status      byte
	reservation string
	heldUntil   time.Time
	at          time.Time // when it was sold
}

func (r seatRecord) encode() []byte {
	e := enc{b: append(make([]byte, 0, 64), r.status)}
	e.str(r.reservation)
	e.time(r.heldUntil)
	e.time(r.at)
	return e.b
}

func decodeSeat(b []byte) (seatRecord, error) {
	if len(b) == 0 {
		return seatRecord{}, errCorrupt
	}
	d := dec{b: b[1:]}
	r := seatRecord{status: b[0], reservation: d.str(), heldUntil: d.time(), at: d.time()}
	return r, d.err
}

type dateCount struct{ held, sold int64 }

func decodeCount(b []byte) (dateCount, error) {
	if b == nil {
		return dateCount{}, nil
	}
	d := dec{b: b}
	c := dateCount{held: d.int(), sold: d.int()}
	return c, d.err
}

func (c dateCount) encode() []byte {
	e := enc{b: make([]byte, 0, 16)}
	e.int(c.held)
	e.int(c.sold)
	return e.b
}

// dateInfo is what the seats model needs of a concert date. Concerts never change, so it is
// cached for good once read from a committed transaction.
type dateInfo struct {
	concert aggregates.ConcertCreated
	spec    aggregates.DateSpec
}

type seatsModel struct {
	g *generation

	infoMu sync.RWMutex
	info   map[string]*dateInfo // dateKey →

	mapsMu sync.RWMutex
	maps   map[string]*seatMap // dateKey → cached seat map, only dates somebody read

	// unsettled is set while a detection waits for its date's stream to pass its time: every
	// commit then wakes the sell-out recorder.
	unsettled atomic.Bool
}

func newSeatsModel(g *generation) model {
	return &seatsModel{g: g, info: map[string]*dateInfo{}, maps: map[string]*seatMap{}}
}

func (m *seatsModel) buckets() []string {
	return []string{bSeatConcerts, bSeats, bDateCounts, bHeld, bSoldOut, bRecorded}
}

// wants skips the reservation events that share the seat streams: nothing here reads them,
// and not decoding them is most of what they would cost.
func (m *seatsModel) wants(typ string) bool { return !strings.HasPrefix(typ, "Reservation") }

type seatChange struct {
	dk     string
	seatNo int
	status aggregates.SeatStatus
}

type seatsBatch struct {
	m                                                *seatsModel
	tx                                               *bolt.Tx
	concerts, seats, counts, held, soldOut, recorded kv
	dates                                            map[string]*dateCount
	sold                                             map[string]bool // dates with a sale in this batch
	changes                                          []seatChange
	newInfo                                          map[string]*dateInfo
	marked                                           bool
}

func (m *seatsModel) begin(t txn) (batchWriter, error) {
	return &seatsBatch{
		m: m, tx: t.tx,
		concerts: t.bucket(bSeatConcerts), seats: t.bucket(bSeats), counts: t.bucket(bDateCounts),
		held: t.bucket(bHeld), soldOut: t.bucket(bSoldOut), recorded: t.bucket(bRecorded),
		dates: map[string]*dateCount{}, newInfo: map[string]*dateInfo{},
	}, nil
}

// parseSeatID splits a seat aggregate ID into the date key and the seat number.
func parseSeatID(id string) (dk string, seatNo int, ok bool) {
	c, d, n, ok := aggregates.ParseSeatID(id)
	return dateKey(c, d), n, ok
}

func (b *seatsBatch) count(dk string) (*dateCount, error) {
	if c := b.dates[dk]; c != nil {
		return c, nil
	}
	c, err := decodeCount(b.counts.Get([]byte(dk)))
	if err != nil {
		return nil, err
	}
	b.dates[dk] = &c
	return &c, nil
}

func (b *seatsBatch) apply(env *eventstore.Envelope, ev aggregates.Event) error {
	switch ev := ev.(type) {
	case aggregates.ConcertCreated:
		if b.concerts.Get([]byte(ev.ConcertID)) != nil {
			return nil
		}
		data, err := json.Marshal(ev)
		if err != nil {
			return err
		}
		if err := b.concerts.Put([]byte(ev.ConcertID), data); err != nil {
			return err
		}
		if !b.m.g.live.Load() {
			return nil
		}
		// The seat streams may have run ahead of the catalog: check the dates already sold.
		for _, d := range ev.Dates {
			dk := dateKey(ev.ConcertID, d.DateID)
			c, err := b.count(dk)
			if err != nil {
				return err
			}
			marked, err := b.m.markIfSoldOut(b.tx, dk, *c, b.newInfo)
			if err != nil {
				return err
			}
			b.marked = b.marked || marked
		}
		return nil
	case aggregates.DateSoldOut:
		dk := []byte(dateKey(ev.ConcertID, ev.DateID))
		if err := b.soldOut.Delete(dk); err != nil {
			return err
		}
		return b.recorded.Put(dk, []byte{1})
	case aggregates.SeatHeld, aggregates.SeatReleased, aggregates.SeatSold:
	default:
		return nil
	}
	dk, seatNo, ok := parseSeatID(env.AggregateID)
	if !ok {
		b.m.g.log.Error("seats projection skips an event of a malformed seat ID", "id", env.AggregateID, "type", env.Type)
		return nil
	}
	key := seatKey(dk, seatNo)
	c, err := b.count(dk)
	if err != nil {
		return err
	}
	var prev seatRecord
	if v := b.seats.Get(key); v != nil {
		if prev, err = decodeSeat(v); err != nil {
			return err
		}
	}
	switch prev.status {
	case seatHeld:
		c.held--
		if err := b.held.Delete(heldKey(prev.heldUntil, key)); err != nil {
			return err
		}
	case seatSold:
		c.sold--
	}
	var next seatRecord
	switch ev := ev.(type) {
	case aggregates.SeatHeld:
		next = seatRecord{status: seatHeld, reservation: ev.ReservationID, heldUntil: ev.HeldUntil}
		c.held++
		e := enc{b: make([]byte, 0, 48)}
		e.str(ev.ReservationID)
		if err := b.held.Put(heldKey(ev.HeldUntil, key), e.b); err != nil {
			return err
		}
		b.changes = append(b.changes, seatChange{dk, seatNo, aggregates.SeatStatusHeld})
	case aggregates.SeatSold:
		next = seatRecord{status: seatSold, reservation: ev.ReservationID, at: env.OccurredAt}
		c.sold++
		b.changes = append(b.changes, seatChange{dk, seatNo, aggregates.SeatStatusSold})
	case aggregates.SeatReleased:
		b.changes = append(b.changes, seatChange{dk, seatNo, aggregates.SeatStatusAvailable})
		if err := b.seats.Delete(key); err != nil {
			return err
		}
		return b.dropSpuriousMark(dk, env.OccurredAt)
	}
	if err := b.seats.Put(key, next.encode()); err != nil {
		return err
	}
	if next.status != seatSold || !b.m.g.live.Load() {
		return nil // while catching up, detection waits for a consistent view: see goLive
	}
	marked, err := b.m.markIfSoldOut(b.tx, dk, *c, b.newInfo)
	b.marked = b.marked || marked
	return err
}

func (b *seatsBatch) finish() error {
	for dk, c := range b.dates {
		if err := b.counts.Put([]byte(dk), c.encode()); err != nil {
			return err
		}
	}
	return nil
}

func (b *seatsBatch) committed() bool {
	m := b.m
	if len(b.newInfo) > 0 {
		m.infoMu.Lock()
		for dk, in := range b.newInfo {
			m.info[dk] = in
		}
		m.infoMu.Unlock()
	}
	m.mapsMu.RLock()
	for _, ch := range b.changes {
		if sm := m.maps[ch.dk]; sm != nil {
			sm.set(ch.seatNo, ch.status)
		}
	}
	m.mapsMu.RUnlock()
	return b.marked || m.unsettled.Load()
}

// dateInfo returns a date's concert and spec as seen by tx (nil when the concert or the date
// is unknown). Infos read by a writing transaction go to pending until it commits.
func (m *seatsModel) dateInfo(tx *bolt.Tx, dk string, pending map[string]*dateInfo) (*dateInfo, error) {
	m.infoMu.RLock()
	in := m.info[dk]
	m.infoMu.RUnlock()
	if in != nil {
		return in, nil
	}
	if in = pending[dk]; in != nil {
		return in, nil
	}
	c, d := splitDateKey(dk)
	raw := tx.Bucket([]byte(bSeatConcerts)).Get([]byte(c))
	if raw == nil {
		return nil, nil
	}
	var concert aggregates.ConcertCreated
	if err := json.Unmarshal(raw, &concert); err != nil {
		return nil, fmt.Errorf("concert %s: %w", c, err)
	}
	spec, ok := aggregates.Concert{}.Apply(concert).Date(d)
	if !ok {
		return nil, nil
	}
	in = &dateInfo{concert: concert, spec: spec}
	if tx.Writable() {
		if pending != nil {
			pending[dk] = in
		}
	} else {
		m.infoMu.Lock()
		m.info[dk] = in
		m.infoMu.Unlock()
	}
	return in, nil
}

// counts returns the held and sold counts of a concert's dates as of one read transaction.
func (m *seatsModel) counts(concertID string, dateIDs []string) (map[string]dateCount, error) {
	out := make(map[string]dateCount, len(dateIDs))
	err := m.g.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte(bDateCounts))
		for _, d := range dateIDs {
			c, err := decodeCount(b.Get([]byte(dateKey(concertID, d))))
			if err != nil {
				return err
			}
			out[d] = c
		}
		return nil
	})
	return out, err
}

// HeldSeat is a seat currently held, for the expiry sweeper.
type HeldSeat struct {
	ConcertID     string
	DateID        string
	SeatNo        int
	ReservationID string
	HeldUntil     time.Time
}

func (m *seatsModel) heldSeats() ([]HeldSeat, error) {
	var out []HeldSeat
	err := m.g.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bHeld)).ForEach(func(k, v []byte) error {
			until, seat, ok := splitHeldKey(k)
			if !ok {
				return errCorrupt
			}
			dk, no, ok := splitSeatKey(seat)
			if !ok {
				return errCorrupt
			}
			d := dec{b: v}
			c, date := splitDateKey(dk)
			h := HeldSeat{ConcertID: c, DateID: date, SeatNo: no, ReservationID: d.str(), HeldUntil: until}
			if d.err != nil {
				return d.err
			}
			out = append(out, h)
			return nil
		})
	})
	return out, err
}
