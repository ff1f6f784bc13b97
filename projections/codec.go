package projections

import (
	"encoding/binary"
	"errors"
	"time"
)

// Records are stored in a small binary form rather than JSON because a rebuild writes one or
// more of them per event, and JSON encoding would dominate its cost.

var errCorrupt = errors.New("projections: corrupt record")

type enc struct{ b []byte }

func (e *enc) str(s string) {
	e.b = binary.AppendUvarint(e.b, uint64(len(s)))
	e.b = append(e.b, s...)
}

func (e *enc) int(v int64) { e.b = binary.AppendVarint(e.b, v) }

// time keeps the instant only (as UTC); the zero time is kept as a flag because its UnixNano
// is out of range.
func (e *enc) time(t time.Time) {
	if t.IsZero() {
		e.b = append(e.b, 0)
		return
	}
	e.b = append(e.b, 1)
	e.b = binary.AppendVarint(e.b, t.UnixNano())
}

type dec struct {
	b   []byte
	err error
}

func (d *dec) str() string {
	n, k := binary.Uvarint(d.b)
	if k <= 0 || uint64(len(d.b)-k) < n {
		d.fail()
		return ""
	}
	s := string(d.b[k : k+int(n)])
	d.b = d.b[k+int(n):]
	return s
}

func (d *dec) int() int64 {
	v, k := binary.Varint(d.b)
	if k <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[k:]
	return v
}

func (d *dec) time() time.Time {
	if len(d.b) == 0 {
		d.fail()
		return time.Time{}
	}
	flag := d.b[0]
	d.b = d.b[1:]
	if flag == 0 {
		return time.Time{}
	}
	return time.Unix(0, d.int()).UTC()
}

func (d *dec) fail() {
	if d.err == nil {
		d.err = errCorrupt
	}
	d.b = nil
}

func u64(v uint64) []byte { return binary.BigEndian.AppendUint64(nil, v) }

func getU64(b []byte) uint64 {
	if len(b) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(b)
}

// dateKey is the key of one concert date. IDs are [A-Za-z0-9_-], so a NUL never occurs in them
// and keeps prefix scans exact.
func dateKey(concertID, dateID string) string { return concertID + "\x00" + dateID }

func splitDateKey(k string) (concertID, dateID string) {
	for i := 0; i < len(k); i++ {
		if k[i] == 0 {
			return k[:i], k[i+1:]
		}
	}
	return k, ""
}

// seatKey is dateKey, a NUL, and the seat number big-endian, so a date's seats sort by number.
func seatKey(dk string, seatNo int) []byte {
	b := make([]byte, 0, len(dk)+5)
	b = append(b, dk...)
	b = append(b, 0)
	return binary.BigEndian.AppendUint32(b, uint32(seatNo))
}

// heldKey is a held seat's key in the index of held seats: its heldUntil first, so that holds
// made one after another land on the index's last page instead of on a page of their own each
// (in a flash sale the seats are random; keyed by seat, the index cost a page written per hold),
// and the seat's key after it.
func heldKey(until time.Time, seat []byte) []byte {
	var ns uint64
	if !until.IsZero() {
		ns = uint64(until.UnixNano())
	}
	b := make([]byte, 0, 8+len(seat))
	b = binary.BigEndian.AppendUint64(b, ns)
	return append(b, seat...)
}

func splitHeldKey(k []byte) (until time.Time, seat []byte, ok bool) {
	if len(k) < 8+6 {
		return time.Time{}, nil, false
	}
	if ns := binary.BigEndian.Uint64(k); ns != 0 {
		until = time.Unix(0, int64(ns)).UTC()
	}
	return until, k[8:], true
}

func splitSeatKey(k []byte) (dk string, seatNo int, ok bool) {
	if len(k) < 6 || k[len(k)-5] != 0 {
		return "", 0, false
	}
	return string(k[:len(k)-5]), int(binary.BigEndian.Uint32(k[len(k)-4:])), true
}
