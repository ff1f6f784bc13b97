package eventstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	jsonv2 "github.com/go-json-experiment/json"
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
	msgs     []memMsg            // in sequence order; sequences have no gaps here
	subjects map[string][]uint64 // subject -> its sequences, oldest first
	dedup    map[string]uint64   // msg ID -> sequence, within the duplicate window
	dedupAge []memDedup          // msg IDs in insertion order, to forget them after the window
}

type memMsg struct {
	subject string
	msgID   string
	env     Envelope // decoded from the stored JSON, Stream and Sequence set
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

// msgIDFor is the dedup ID of the i-th event of an append: JetStream dedups per message, so
// every event of a multi-event append needs its own ID derived from the append's.
func msgIDFor(dedupID string, i int) string {
	if i == 0 || dedupID == "" {
		return dedupID
	}
	return dedupID + "/" + strconv.Itoa(i)
}

// newEnvelope builds the stored envelope of one event; both stores use it so they write the
// same JSON.
func newEnvelope(agg AggregateRef, ev Event, meta Metadata, now func() time.Time) ([]byte, error) {
	id, err := uuid.NewV7()
	if err != nil {
		return nil, fmt.Errorf("eventstore: event ID: %w", err)
	}
	at := meta.OccurredAt
	if at.IsZero() {
		at = now()
	}
	env := Envelope{
		EventID:       id.String(),
		Type:          ev.Type,
		AggregateType: agg.Type,
		AggregateID:   agg.ID,
		OccurredAt:    at.UTC(),
		CorrelationID: meta.CorrelationID,
		CausationID:   meta.CausationID,
		SchemaVersion: SchemaVersion,
		Data:          ev.Data,
	}
	if len(env.Data) == 0 {
		env.Data = json.RawMessage("null")
	}
	b, err := json.Marshal(env)
	if err != nil {
		return nil, fmt.Errorf("eventstore: encode %s event of %s: %w", ev.Type, agg, err)
	}
	return b, nil
}

func decodeEnvelope(b []byte, stream string, seq uint64) (Envelope, error) {
	var env Envelope
	// json/v2 for the same reason as aggregates.Decode: one pass instead of two, and every
	// replay, load and restart decodes every envelope it reads.
	if err := jsonv2.Unmarshal(b, &env); err != nil {
		return Envelope{}, fmt.Errorf("eventstore: decode %s #%d: %w", stream, seq, err)
	}
	env.Stream, env.Sequence = stream, seq
	return env, nil
}

func validateAppend(events []Event) error {
	if len(events) == 0 {
		return fmt.Errorf("eventstore: append of no events")
	}
	for _, ev := range events {
		if ev.Type == "" {
			return fmt.Errorf("eventstore: event without a type")
		}
	}
	return nil
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
	// Encode before taking the lock: it is the expensive part and cannot fail half-way.
	bodies := make([][]byte, len(events))
	for i, ev := range events {
		if bodies[i], err = newEnvelope(agg, ev, meta, s.now); err != nil {
			return 0, err
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.streams[stream]
	now := s.now()
	st.forget(now)

	version := expected
	wrote := false
	for i := 0; i < len(events); i++ {
		msgID := msgIDFor(dedupID, i)
		subj := st.subjects[subject]
		var last uint64
		if n := len(subj); n > 0 {
			last = subj[n-1]
		}
		if last != version {
			// JetStream checks the expected sequence before dedup, so a retry of an append
			// that went through arrives here with its stale version: recognise our own events.
			if i == 0 && dedupID != "" {
				if v, resume, ok := st.recover(subject, expected, dedupID, len(events)); ok {
					if resume == len(events) {
						s.track(stream, v)
						return v, nil
					}
					version, i = v, resume-1
					continue
				}
			}
			return 0, fmt.Errorf("append to %s at version %d (now %d): %w", agg, version, last, ErrConcurrency)
		}
		if seq, dup := st.dedup[msgID]; dup && msgID != "" {
			if i == 0 {
				// As in JetStream: the rest of the first append follows its first event.
				if v, resume, ok := st.recover(subject, seq-1, dedupID, len(events)); ok {
					if resume == len(events) {
						s.track(stream, v)
						return v, nil
					}
					version, i = v, resume-1
					continue
				}
			}
			version = seq
			continue
		}
		seq := uint64(len(st.msgs)) + 1
		env, err := decodeEnvelope(bodies[i], stream, seq)
		if err != nil {
			return 0, err
		}
		st.msgs = append(st.msgs, memMsg{subject: subject, msgID: msgID, env: env})
		st.subjects[subject] = append(subj, seq)
		if msgID != "" {
			st.dedup[msgID] = seq
			st.dedupAge = append(st.dedupAge, memDedup{at: now, msgID: msgID})
		}
		version = seq
		wrote = true
	}
	s.track(stream, version)
	if wrote {
		close(s.changed)
		s.changed = make(chan struct{})
	}
	return version, nil
}

// track records seq as appended to stream, never moving backwards. Callers hold mu.
func (s *MemStore) track(stream string, seq uint64) { s.last.track(stream, seq) }

// recover looks for the events of an earlier append with the same dedup ID right after
// expected on subject. It returns the sequence of the last of them found and how many were
// found; ok is false when they are not there or when another append followed a partial one.
func (st *memStream) recover(subject string, expected uint64, dedupID string, n int) (version uint64, found int, ok bool) {
	subj := st.subjects[subject]
	k := 0
	for k < len(subj) && subj[k] <= expected {
		k++
	}
	for found < n && k < len(subj) && st.msgs[subj[k]-1].msgID == msgIDFor(dedupID, found) {
		version = subj[k]
		found++
		k++
	}
	if found == 0 || (found < n && k < len(subj)) {
		return 0, 0, false
	}
	return version, found, true
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
			out = append(out, st.msgs[seq-1].env)
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
		end = min(end, after+replayBatch)
		batch = batch[:0]
		for seq := after + 1; seq <= end; seq++ {
			batch = append(batch, st.msgs[seq-1].env)
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
