package eventstore

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// DuplicateWindow is how long a dedup ID is remembered by a stream, as JetStream's
// StreamConfig.Duplicates.
const DuplicateWindow = 2 * time.Minute

// MemStore is an in-memory Store, Reader and Tracker with the semantics of the JetStream store:
// one sequence per stream, optimistic concurrency per subject, dedup per stream within
// DuplicateWindow, envelopes round-tripped through JSON. It is meant for tests and for running
// the engine without a NATS server; nothing survives the process.
type MemStore struct {
	mu      sync.Mutex
	streams map[string]*memStream
	// changed is closed (and replaced) on every append so that following replays wake at once
	// without polling; a channel rather than a sync.Cond because waiters also watch ctx.
	changed chan struct{}
	last    appendMarks
	now     func() time.Time
}

type memStream struct {
	name     string
	msgs     []memMsg            // one per commit, in sequence order; no gaps here
	subjects map[string][]uint64 // subject -> its sequences, oldest first
	dedup    map[string]uint64   // msg ID -> sequence, within the duplicate window
	dedupAge []memDedup          // msg IDs in insertion order, to forget them after the window
}

type memMsg struct {
	subject string
	msgID   string
	envs    []Envelope // the commit's events, decoded from the stored JSON, placed
}

type memDedup struct {
	at    time.Time
	msgID string
}

// MemOption configures a MemStore.
type MemOption func(*MemStore)

// WithMemClock sets the clock that ages dedup IDs out of the duplicate window and stamps
// events whose Metadata has no OccurredAt.
func WithMemClock(now func() time.Time) MemOption {
	return func(s *MemStore) { s.now = now }
}

// NewMemStore returns an empty in-memory store with every stream of the layout.
func NewMemStore(opts ...MemOption) *MemStore {
	s := &MemStore{
		streams: make(map[string]*memStream),
		changed: make(chan struct{}),
		last:    newAppendMarks(),
		now:     time.Now,
	}
	for _, spec := range Layout() {
		s.streams[spec.Name] = &memStream{name: spec.Name, subjects: make(map[string][]uint64), dedup: make(map[string]uint64)}
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Append implements Store.
func (s *MemStore) Append(ctx context.Context, agg AggregateRef, expected uint64, events []Event, dedupID string, meta Metadata) (uint64, error) {
	stream, subject, err := Place(agg)
	if err != nil {
		return 0, err
	}
	if err := validateAppend(events); err != nil {
		return 0, err
	}
	if err := ctx.Err(); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	// Encode before taking the lock: it is the expensive part.
	body, _, err := encodeCommit(agg, events, meta, s.now)
	if err != nil {
		return 0, err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[stream]
	now := s.now()
	st.forget(now)

	subj := st.subjects[subject]
	var last uint64
	if n := len(subj); n > 0 {
		last = subj[n-1]
	}
	if last != expected {
		// JetStream checks the expected sequence before dedup, so a retry of an append that
		// went through arrives here with its stale version: recognise our own commit.
		if v, ok := st.recover(subject, expected, dedupID); ok {
			noteDuplicate(ctx)
			s.track(stream, v)
			return v, nil
		}
		return 0, fmt.Errorf("append to %s at version %d (now %d): %w", agg, expected, last, ErrConcurrency)
	}
	if seq, dup := st.dedup[dedupID]; dup && dedupID != "" {
		noteDuplicate(ctx)
		s.track(stream, seq)
		return seq, nil
	}
	seq := uint64(len(st.msgs)) + 1
	envs, err := decodeCommit(nil, body, stream, seq)
	if err != nil {
		return 0, err
	}
	st.msgs = append(st.msgs, memMsg{subject: subject, msgID: dedupID, envs: envs})
	st.subjects[subject] = append(subj, seq)
	if dedupID != "" {
		st.dedup[dedupID] = seq
		st.dedupAge = append(st.dedupAge, memDedup{at: now, msgID: dedupID})
	}
	s.track(stream, seq)
	close(s.changed)
	s.changed = make(chan struct{})
	return seq, nil
}

// track records seq as appended to stream, never moving backwards. Callers hold mu.
func (s *MemStore) track(stream string, seq uint64) { s.last.track(stream, seq) }

// recover looks for the commit of an earlier append with the same dedup ID right after
// expected on subject: if that append went through, it is the subject's first commit after
// expected (it passed the expected check there).
func (st *memStream) recover(subject string, expected uint64, dedupID string) (version uint64, ok bool) {
	if dedupID == "" {
		return 0, false
	}
	for _, seq := range st.subjects[subject] {
		if seq > expected {
			return seq, st.msgs[seq-1].msgID == dedupID
		}
	}
	return 0, false
}

func (st *memStream) forget(now time.Time) {
	cut := 0
	for cut < len(st.dedupAge) && now.Sub(st.dedupAge[cut].at) >= DuplicateWindow {
		delete(st.dedup, st.dedupAge[cut].msgID)
		cut++
	}
	if cut > 0 {
		st.dedupAge = append(st.dedupAge[:0:0], st.dedupAge[cut:]...)
	}
}

// Load implements Store.
func (s *MemStore) Load(ctx context.Context, agg AggregateRef, after uint64) ([]Envelope, error) {
	stream, subject, err := Place(agg)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[stream]
	var out []Envelope
	for _, seq := range st.subjects[subject] {
		if seq > after {
			out = append(out, st.msgs[seq-1].envs...)
		}
	}
	return out, nil
}

// Streams implements Reader.
func (s *MemStore) Streams() []string {
	specs := Layout()
	names := make([]string, len(specs))
	for i, spec := range specs {
		names[i] = spec.Name
	}
	return names
}

// Head implements Reader.
func (s *MemStore) Head(ctx context.Context, stream string) (uint64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	st, ok := s.streams[stream]
	if !ok {
		return 0, fmt.Errorf("eventstore: unknown stream %q", stream)
	}
	return uint64(len(st.msgs)), nil
}

// Replay implements Reader.
func (s *MemStore) Replay(ctx context.Context, stream string, after uint64, follow bool, fn func(batch []Envelope) error) error {
	s.mu.Lock()
	st, ok := s.streams[stream]
	if !ok {
		s.mu.Unlock()
		return fmt.Errorf("eventstore: unknown stream %q", stream)
	}
	head := uint64(len(st.msgs))
	s.mu.Unlock()

	batch := make([]Envelope, 0, replayBatch)
	for {
		if !follow && after >= head {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		s.mu.Lock()
		end := uint64(len(st.msgs))
		if !follow {
			end = min(end, head)
		}
		batch = batch[:0]
		for seq := after + 1; seq <= end; seq++ {
			// Whole commits only: a batch may pass replayBatch by the size of its last one.
			batch = append(batch, st.msgs[seq-1].envs...)
			if len(batch) >= replayBatch {
				end = seq
			}
		}
		changed := s.changed
		s.mu.Unlock()

		if len(batch) > 0 {
			if err := fn(batch); err != nil {
				return err
			}
			after = end
			continue
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-changed:
		}
	}
}

// LastAppended implements Tracker.
func (s *MemStore) LastAppended(stream string) uint64 { return s.last[stream].Load() }

// Mark implements Tracker.
func (s *MemStore) Mark(stream string) *AppendMark { return s.last[stream] }

// replayBatch is the largest batch Replay hands to its callback.
const replayBatch = 1000

var (
	_ Store   = (*MemStore)(nil)
	_ Reader  = (*MemStore)(nil)
	_ Tracker = (*MemStore)(nil)
)
