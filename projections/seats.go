package projections

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"strconv"
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
	bHeld         = "held"     // seatKey → reservationId, heldUntil
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
		if err := b.held.Delete(key); err != nil {
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
		e := enc{b: make([]byte, 0, 64)}
		e.str(ev.ReservationID)
		e.time(ev.HeldUntil)
		if err := b.held.Put(key, e.b); err != nil {
			return err
		}
		b.changes = append(b.changes, seatChange{dk, seatNo, aggregates.SeatHeldS})
	case aggregates.SeatSold:
		next = seatRecord{status: seatSold, reservation: ev.ReservationID, at: env.OccurredAt}
		c.sold++
		b.changes = append(b.changes, seatChange{dk, seatNo, aggregates.SeatSoldS})
	case aggregates.SeatReleased:
		b.changes = append(b.changes, seatChange{dk, seatNo, aggregates.SeatAvailable})
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

// seatMap is the cached seat map of one date, kept current by every commit. Readers get an
// immutable snapshot that is rebuilt lazily after a change, so a hold costs O(1) here and a
// read O(seats) only when something changed since the last read.
type seatMap struct {
	mu     sync.Mutex
	status []aggregates.SeatStatus
	prices []int64
	views  []SeatView // snapshot, nil when stale
	json   []byte     // snapshot, nil when stale
	gz     []byte     // json gzipped, nil when stale
}

func (s *seatMap) set(seatNo int, st aggregates.SeatStatus) {
	if seatNo < 1 || seatNo > len(s.status) {
		return
	}
	s.mu.Lock()
	if s.status[seatNo-1] != st {
		s.status[seatNo-1] = st
		s.views, s.json, s.gz = nil, nil, nil
	}
	s.mu.Unlock()
}

func (s *seatMap) snapshot() []SeatView {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.views == nil {
		v := make([]SeatView, len(s.status))
		for i := range v {
			v[i] = SeatView{SeatNo: i + 1, Price: s.prices[i], Status: s.status[i]}
		}
		s.views = v
	}
	return s.views
}

func (s *seatMap) encoded() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.encodedLocked()
}

// encodedGzip is encoded() gzipped: a 1,000-seat map is 48 KB of JSON and about a tenth of
// that gzipped, which is most of the cost of serving it (copies through the kernel, and the
// client's reading) at tens of thousands of reads a second. It is compressed at most once per
// change of the map, on the first read that wants it, and outside the map's lock: every
// applied hold takes that lock, and compressing a 10,000-seat map takes milliseconds.
func (s *seatMap) encodedGzip() ([]byte, error) {
	s.mu.Lock()
	gz, plain := s.gz, s.encodedLocked()
	s.mu.Unlock()
	if gz != nil {
		return gz, nil
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(plain); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	// Keep it only if the map has not changed meanwhile (set drops json and gz together).
	if s.json != nil && &s.json[0] == &plain[0] {
		s.gz = buf.Bytes()
	}
	s.mu.Unlock()
	return buf.Bytes(), nil
}

func (s *seatMap) encodedLocked() []byte {
	if s.json == nil {
		b := make([]byte, 0, 16+len(s.status)*48)
		b = append(b, `{"seats":[`...)
		for i, st := range s.status {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, `{"seatNo":`...)
			b = strconv.AppendInt(b, int64(i+1), 10)
			b = append(b, `,"price":`...)
			b = strconv.AppendInt(b, s.prices[i], 10)
			b = append(b, `,"status":"`...)
			b = append(b, st...)
			b = append(b, `"}`...)
		}
		s.json = append(b, "]}"...)
	}
	return s.json
}

// seatMap returns the cached map of a date, loading it on first use. The load holds the
// generation's write lock, so that no commit can fall between reading the file and
// publishing the map (commits update only maps already published).
func (m *seatsModel) seatMap(concertID, dateID string) (*seatMap, error) {
	dk := dateKey(concertID, dateID)
	m.mapsMu.RLock()
	sm := m.maps[dk]
	m.mapsMu.RUnlock()
	if sm != nil {
		return sm, nil
	}
	m.g.writeMu.Lock()
	defer m.g.writeMu.Unlock()
	m.mapsMu.RLock()
	sm = m.maps[dk]
	m.mapsMu.RUnlock()
	if sm != nil {
		return sm, nil
	}
	err := m.g.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket([]byte(bSeatConcerts)).Get([]byte(concertID)) == nil {
			return fmt.Errorf("concert %s: %w", concertID, aggregates.ErrConcertNotFound)
		}
		in, err := m.dateInfo(tx, dk, nil)
		if err != nil {
			return err
		}
		if in == nil {
			return fmt.Errorf("date %s of concert %s: %w", dateID, concertID, aggregates.ErrDateNotFound)
		}
		n := in.spec.SeatCount
		sm = &seatMap{status: make([]aggregates.SeatStatus, n), prices: make([]int64, n)}
		for i := range n {
			sm.status[i] = aggregates.SeatAvailable
			sm.prices[i], _ = in.spec.PriceOf(i + 1)
		}
		prefix := append([]byte(dk), 0)
		cur := tx.Bucket([]byte(bSeats)).Cursor()
		for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
			_, no, ok := splitSeatKey(k)
			if !ok || no < 1 || no > n || len(v) == 0 {
				continue
			}
			switch v[0] {
			case seatHeld:
				sm.status[no-1] = aggregates.SeatHeldS
			case seatSold:
				sm.status[no-1] = aggregates.SeatSoldS
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	m.mapsMu.Lock()
	m.maps[dk] = sm
	m.mapsMu.Unlock()
	return sm, nil
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
			dk, no, ok := splitSeatKey(k)
			if !ok {
				return errCorrupt
			}
			d := dec{b: v}
			c, date := splitDateKey(dk)
			h := HeldSeat{ConcertID: c, DateID: date, SeatNo: no, ReservationID: d.str(), HeldUntil: d.time()}
			if d.err != nil {
				return d.err
			}
			out = append(out, h)
			return nil
		})
	})
	return out, err
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
