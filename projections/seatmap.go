// The seat map of a date, cached and kept current by every commit, and its encoded JSON.

package projections

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"strconv"
	"sync"

	bolt "go.etcd.io/bbolt"

	"github.com/booking-engine/booking/aggregates"
)

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
	// A seat map compresses to about a tenth; a little more room saves the buffer's regrowth.
	buf := bytes.NewBuffer(make([]byte, 0, len(plain)/8+512))
	zw := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(zw)
	zw.Reset(buf)
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

// gzipWriters keeps compressors between encodings: a compressor's state is larger than the
// 10,000-seat map it compresses, and a date on sale is compressed again after every change
// that a read sees (the soak's heap profiles showed them as the largest allocation).
var gzipWriters = sync.Pool{New: func() any {
	zw, err := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	if err != nil {
		panic(err) // BestSpeed is a valid level: only a programming error gets here
	}
	return zw
}}

func (s *seatMap) encodedLocked() []byte {
	if s.json == nil {
		// Sized exactly: an estimate short by a few bytes a seat doubled a 10,000-seat map's
		// buffer on its last seats.
		size := len(`{"seats":[]}`)
		for i, st := range s.status {
			size += len(`{"seatNo":,"price":,"status":""},`) + decimalLen(int64(i+1)) + decimalLen(s.prices[i]) + len(st)
		}
		b := make([]byte, 0, size)
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
			sm.status[i] = aggregates.SeatStatusAvailable
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
				sm.status[no-1] = aggregates.SeatStatusHeld
			case seatSold:
				sm.status[no-1] = aggregates.SeatStatusSold
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

// decimalLen is the length of n written in decimal.
func decimalLen(n int64) int {
	l := 1
	if n < 0 {
		l, n = 2, -n
	}
	for n >= 10 {
		n /= 10
		l++
	}
	return l
}
