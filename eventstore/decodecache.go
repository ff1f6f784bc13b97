package eventstore

import (
	"bytes"
	"hash/maphash"
	"sync/atomic"
	"unicode/utf8"
)

// commitCacheSlots is how many decoded commits a store remembers. The readers of one stream
// (the seat map's, the reservations' and the payments' projections all follow SEATS_*; the
// relay's durable consumers decode for themselves) read the same commits within moments of
// each other; a few hundred commits cover that distance many times over, and a reader
// further behind (a rebuild, a replay at start) just decodes for itself.
const commitCacheSlots = 1024

// commitCache hands the envelopes one replay decoded from a commit to the other replays of
// the same commit, so that a commit read by three followers is parsed once, not three times
// (decoding was the read models' largest cost under a flash sale). The writer of a commit
// puts in the envelopes it encoded (remember), so the commits this process appends are not
// parsed at all: their decoding was still a twentieth of a flash sale's CPU. A slot holds the
// commit's raw bytes beside its envelopes and is reused only for equal bytes, so a stream
// deleted and made again with other commits at the same sequences is never answered from the
// old one. The envelopes are shared: readers copy them by value and must not change what
// their slices and Decoded values point to (none does: Data is only ever decoded, events are
// values the aggregates never change in place).
type commitCache struct {
	seed  maphash.Seed
	slots [commitCacheSlots]atomic.Pointer[decodedCommit]
}

type decodedCommit struct {
	stream string
	seq    uint64
	raw    []byte
	envs   []Envelope
}

func newCommitCache() *commitCache { return &commitCache{seed: maphash.MakeSeed()} }

func (c *commitCache) slot(stream string, seq uint64) *atomic.Pointer[decodedCommit] {
	return &c.slots[(maphash.String(c.seed, stream)+seq)%commitCacheSlots]
}

// decode returns the envelopes of the commit b, stored as seq of stream.
func (c *commitCache) decode(b []byte, stream string, seq uint64) ([]Envelope, error) {
	slot := c.slot(stream, seq)
	if d := slot.Load(); d != nil && d.seq == seq && d.stream == stream && bytes.Equal(d.raw, b) {
		return d.envs, nil
	}
	envs, err := decodeCommit(nil, b, stream, seq)
	if err != nil {
		return nil, err
	}
	slot.Store(&decodedCommit{stream: stream, seq: seq, raw: b, envs: envs})
	return envs, nil
}

// remember puts in the envelopes a writer encoded as raw (encodeCommit's), stored as seq of
// stream, as decoding raw would give them. They are exactly that unless a string was not
// valid UTF-8, which the encoder replaced, or a payload began or ended with white space,
// which decoding drops: such a commit is left to be decoded.
func (c *commitCache) remember(stream string, seq uint64, raw []byte, envs []Envelope) {
	for i := range envs {
		e := &envs[i]
		if !utf8.ValidString(e.EventID) || !utf8.ValidString(e.Type) || !utf8.ValidString(e.AggregateType) ||
			!utf8.ValidString(e.AggregateID) || !utf8.ValidString(e.CorrelationID) || !utf8.ValidString(e.CausationID) ||
			len(e.Data) == 0 || jsonSpace(e.Data[0]) || jsonSpace(e.Data[len(e.Data)-1]) {
			return
		}
		e.Stream, e.Sequence = stream, seq
	}
	c.slot(stream, seq).Store(&decodedCommit{stream: stream, seq: seq, raw: raw, envs: envs})
}

func jsonSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }
