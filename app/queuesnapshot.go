package app

import (
	"bytes"
	"cmp"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// Queue snapshots.
//
// The waiting queue's index is built by replaying the QUEUE stream, which grows by two events
// per booking (token issued, token revoked) and is never trimmed: a million of them took 11 s
// to replay at start-up. A snapshot of the index, taken now and then and at shutdown, lets a
// restart replay only what came after it. It is a cache of the log, never a source of truth:
// it names the sequence and the event ID it was taken at, and is used only when the log still
// has that very event there; otherwise the whole stream is replayed as before.

// SnapshotStore keeps one snapshot between runs (a file in the data dir). Load returns nil
// and no error when there is none. Save replaces the snapshot atomically: a crash leaves the
// old one or the new one, never a mix.
type SnapshotStore interface {
	Load() ([]byte, error)
	Save(data []byte) error
}

// queueSnapshotVersion changes when the encoding does; a snapshot of another version is
// ignored. Version 2 leaves out the tokens the index dropped and keeps what stands for them
// (the horizon, the counts): code of version 1 would judge those tokens by their claims alone
// and count them nowhere, so it refuses one. A snapshot of version 1 (every token) still loads.
const queueSnapshotVersion = 2

// queueSnapshotEvery is how many QUEUE events make a periodic snapshot worth writing, at
// least; see snapshotDue.
const queueSnapshotEvery = 10_000

// snapshotDue says whether enough has happened since the last snapshot to write another: every
// queueSnapshotEvery events, or every tenth of the index's size when that is more, so that the
// cost of writing (about 0.9 s for a million tokens) stays a small share of the work of the
// events it saves replaying.
func (q *queueIndex) snapshotDue(saved uint64) bool {
	q.mu.RLock()
	defer q.mu.RUnlock()
	return q.seq >= saved+max(queueSnapshotEvery, uint64(len(q.tokens)/10))
}

type queueSnapshot struct {
	Version  int
	Seq      uint64 // the last QUEUE sequence the index applied in order
	EventID  string // the ID of the event at Seq
	Tokens   []snapshotToken
	Steps    []aggregates.QueueAdvanced
	Admitted []admittedStep
	// Since version 2: what stands for the tokens dropped.
	Horizon uint64   // the highest position dropped
	Counted int      // tokens at or below the watermark, dropped ones too
	Dropped []uint64 // positions of dropped tokens still above the watermark
	Clock   int64    // Unix nanoseconds: the index's clock (0: none yet)
}

type snapshotToken struct {
	ID, User   string
	Position   uint64
	IssuedAt   int64 // Unix nanoseconds: gob encodes a time.Time several times slower
	Revoked    bool
	Superseded bool  // since version 2
	DropAt     int64 // since version 2: Unix nanoseconds when it may be dropped (0: not ended)
}

// snapshot copies the index under its read lock (the encoding happens outside it). ok is
// false when the index has applied nothing in order yet.
func (q *queueIndex) snapshot() (queueSnapshot, bool) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.seq == 0 {
		return queueSnapshot{}, false
	}
	s := queueSnapshot{Version: queueSnapshotVersion, Seq: q.seq, EventID: q.eventID,
		Tokens: make([]snapshotToken, 0, len(q.tokens)), Steps: q.admission.Steps(),
		Admitted: append([]admittedStep(nil), q.admitted...), Horizon: q.horizon, Counted: q.counted}
	if !q.clock.IsZero() {
		s.Clock = q.clock.UnixNano()
	}
	for _, t := range q.tokens {
		s.Tokens = append(s.Tokens, snapshotToken{ID: t.id, User: t.user, Position: t.position, IssuedAt: t.issuedAt.UnixNano(),
			Revoked: t.revoked, Superseded: t.superseded, DropAt: t.dropAt})
	}
	for _, t := range q.waiting {
		if q.tokens[t.id] != t {
			s.Dropped = append(s.Dropped, t.position)
		}
	}
	return s, true
}

// restore replaces the index's content with s. It replays the snapshot's tokens as issued
// after its admissions, which rebuilds the counts, the latest tokens and the ends the tokens
// themselves tell (supersession, active TTL); revocations and, since version 2, what was
// dropped come from the snapshot.
func (q *queueIndex) restore(s queueSnapshot) {
	fresh := newQueueIndex(q.policy, q.window)
	fresh.tokens = make(map[string]*tokenRec, len(s.Tokens))
	fresh.latest = make(map[string]string, len(s.Tokens))
	for _, st := range s.Steps {
		fresh.admission = fresh.admission.Apply(st)
		fresh.tick(st.At)
	}
	// In position order, so that each lands at the end of the waiting tokens.
	slices.SortFunc(s.Tokens, func(a, b snapshotToken) int { return cmp.Compare(a.Position, b.Position) })
	for _, t := range s.Tokens {
		issuedAt := time.Unix(0, t.IssuedAt).UTC()
		fresh.tick(issuedAt)
		fresh.issued(aggregates.QueueTokenIssued{TokenID: t.ID, UserID: t.User, IssuedAt: issuedAt}, t.Position)
	}
	if s.Clock != 0 {
		fresh.tick(time.Unix(0, s.Clock).UTC())
	}
	for _, t := range s.Tokens {
		rec := fresh.tokens[t.ID]
		rec.revoked = t.Revoked
		rec.superseded = rec.superseded || t.Superseded
		switch {
		case t.DropAt != 0:
			fresh.dropAfter(rec, t.DropAt)
		case t.Revoked:
			// Version 1 kept no time of the revocation: count it from the snapshot's.
			fresh.endAt(rec, fresh.clock)
		}
	}
	if s.Version >= 2 {
		fresh.waiting = withDropped(fresh.waiting, s.Dropped)
		fresh.counted, fresh.horizon = s.Counted, s.Horizon
	}
	fresh.admitted = s.Admitted
	fresh.seq, fresh.eventID = s.Seq, s.EventID
	fresh.prune()
	q.mu.Lock()
	defer q.mu.Unlock()
	q.tokens, q.latest, q.waiting, q.counted = fresh.tokens, fresh.latest, fresh.waiting, fresh.counted
	q.admission, q.admitted, q.drops = fresh.admission, fresh.admitted, fresh.drops
	q.horizon, q.clock = fresh.horizon, fresh.clock
	q.seq, q.eventID = fresh.seq, fresh.eventID
}

// withDropped returns the waiting tokens (in position order) with a stand-in for each dropped
// position among them, in position order too; a stand-in goes before a token of its own
// position. One merge of the two sorted lists: inserting the stand-ins one by one moved the
// tail of the list for each, which made a restart of a log with a hundred thousand dropped
// tokens spend seconds copying (docs/BENCHMARKS.md, session 14).
func withDropped(waiting []*tokenRec, dropped []uint64) []*tokenRec {
	if len(dropped) == 0 {
		return waiting
	}
	if !slices.IsSorted(dropped) {
		// A snapshot writes them in the waiting list's order; sorting one that did not costs
		// little and keeps the merge right.
		dropped = slices.Sorted(slices.Values(dropped))
	}
	merged := make([]*tokenRec, 0, len(waiting)+len(dropped))
	i := 0
	for _, p := range dropped {
		for i < len(waiting) && waiting[i].position < p {
			merged = append(merged, waiting[i])
			i++
		}
		merged = append(merged, &tokenRec{position: p})
	}
	return append(merged, waiting[i:]...)
}

// appliedInOrder records the last event the QUEUE follower applied: what a snapshot covers,
// and how far the index may drop tokens (prune).
func (q *queueIndex) appliedInOrder(env eventstore.Envelope) {
	q.mu.Lock()
	q.seq, q.eventID = env.Sequence, env.EventID
	q.prune()
	if q.moved != nil {
		close(q.moved)
		q.moved = nil
	}
	q.mu.Unlock()
}

// waitApplied waits until the follower has applied the QUEUE stream up to seq, or ctx ends.
func (q *queueIndex) waitApplied(ctx context.Context, seq uint64) error {
	for {
		q.mu.Lock()
		if q.seq >= seq {
			q.mu.Unlock()
			return nil
		}
		if q.moved == nil {
			q.moved = make(chan struct{})
		}
		moved := q.moved
		q.mu.Unlock()
		select {
		case <-moved:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// errFound stops a replay once it has read what it looked for.
var errFound = errors.New("found")

// restoreQueue loads the queue snapshot into the index when the log still holds the event it
// was taken at, and returns the sequence to replay the stream after (0: no usable snapshot).
func (s *Service) restoreQueue(ctx context.Context, stream string) uint64 {
	if s.snapshots == nil {
		return 0
	}
	data, err := s.snapshots.Load()
	if err != nil || data == nil {
		if err != nil {
			s.slog.Warn("queue snapshot unreadable; replaying the whole queue", "err", err)
		}
		return 0
	}
	var snap queueSnapshot
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&snap); err != nil || (snap.Version != queueSnapshotVersion && snap.Version != 1) || snap.Seq == 0 {
		s.slog.Warn("queue snapshot unusable; replaying the whole queue", "err", err, "version", snap.Version)
		return 0
	}
	var at eventstore.Envelope
	err = s.log.Replay(ctx, stream, snap.Seq-1, false, func(batch []eventstore.Envelope) error {
		// The snapshot names the last event of the commit it was taken at.
		for _, env := range batch {
			if env.Sequence != batch[0].Sequence {
				break
			}
			at = env
		}
		return errFound
	})
	if err != nil && !errors.Is(err, errFound) {
		s.slog.Warn("queue snapshot not checked against the log; replaying the whole queue", "err", err)
		return 0
	}
	if at.Sequence != snap.Seq || at.EventID != snap.EventID {
		s.slog.Warn("queue snapshot is of another log; replaying the whole queue", "seq", snap.Seq, "found_seq", at.Sequence)
		return 0
	}
	s.queue.restore(snap)
	s.savedSeq.Store(snap.Seq)
	s.slog.Info("queue snapshot loaded", "seq", snap.Seq, "tokens", len(snap.Tokens))
	return snap.Seq
}

// SettleQueue waits until the queue index has applied the QUEUE stream up to its head as of
// now, or ctx ends. The server calls it at shutdown before the last snapshot, so that a token
// issued just before the stop is in the snapshot rather than only in the log.
func (s *Service) SettleQueue(ctx context.Context) error {
	head, err := s.log.Head(ctx, eventstore.StreamsOf(eventstore.TypeQueueUser)[0])
	if err != nil {
		return fmt.Errorf("settle queue: %w", err)
	}
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		s.queue.mu.RLock()
		seq := s.queue.seq
		s.queue.mu.RUnlock()
		if seq >= head {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("settle queue at %d of %d: %w", seq, head, ctx.Err())
		case <-tick.C:
		}
	}
}

// SaveQueueSnapshot writes a snapshot of the waiting queue when it has moved since the last
// one. The server calls it at shutdown; Start's loop calls it every queueSnapshotEvery events.
func (s *Service) SaveQueueSnapshot() error {
	if s.snapshots == nil || s.queueLoading.Load() {
		return nil
	}
	snap, ok := s.queue.snapshot()
	if !ok || snap.Seq == s.savedSeq.Load() {
		return nil
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(snap); err != nil {
		return fmt.Errorf("encode queue snapshot: %w", err)
	}
	if err := s.snapshots.Save(buf.Bytes()); err != nil {
		return fmt.Errorf("save queue snapshot: %w", err)
	}
	s.savedSeq.Store(snap.Seq)
	return nil
}
