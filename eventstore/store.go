// Package eventstore appends domain events to NATS JetStream streams and reads them back.
//
// Layout: one stream per bounded context (catalog, queue) and, for the hot contexts (seats,
// reservations, payments, wallets), several partition streams chosen by a hash of the aggregate
// ID, because with fsync on every stream is bounded by its own fsync rate and spreading
// aggregates over streams is the honest way to commit more events per second. One subject per
// aggregate instance carries that aggregate's whole history, so an aggregate's version is the
// stream sequence of its last event and optimistic concurrency is JetStream's
// expected-last-subject-sequence check.
package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"sync/atomic"
	"time"
)

// ErrConcurrency reports that an append found the aggregate at another version than expected:
// somebody else appended first. Nothing was written; reload and decide again.
var ErrConcurrency = errors.New("eventstore: concurrent append")

// ErrDataDirInUse reports that another process (or another Open in this one) runs the
// embedded server over the same data dir.
var ErrDataDirInUse = errors.New("eventstore: data dir in use by another process")

// ErrUnavailable reports that the event store could not be reached or did not answer in time.
var ErrUnavailable = errors.New("eventstore: unavailable")

// AggregateRef names one aggregate instance: its type (see the Type constants) and its ID.
// IDs contain only [A-Za-z0-9_-] and, for composite IDs, dots between the parts.
type AggregateRef struct {
	Type string
	ID   string
}

func (r AggregateRef) String() string { return r.Type + "/" + r.ID }

// Event is one event to append: a type name and its JSON payload.
type Event struct {
	Type string
	// Data must be JSON that readers decode: valid UTF-8 and no member name twice in an
	// object (json/v2's defaults); an append of anything else is refused.
	Data json.RawMessage
	// Meta, when set, stands for the append's Metadata for this event: a commit that carries
	// several commands keeps each one's time, correlation and causation.
	Meta *Metadata
	// Ref, when set, names the aggregate the event belongs to, in place of the aggregate the
	// commit is appended to. A concert date's commit carries the events of its seats and of
	// its reservations; each keeps its own aggregate, so readers see seat and reservation
	// events, whichever subject stored them.
	Ref *AggregateRef
	// Value, when set, is the event as its writer holds it, the value decoding Data gives. It
	// is not stored: the readers of this process get it as Envelope.Decoded with the commit
	// (JetStreamStore's commit cache), so that they need not decode what was just encoded.
	// The store cannot check that it is what decoding gives; the writer must make it so (a
	// string that is not UTF-8 would not be: encoding replaces what is not).
	Value any
}

// Metadata travels with every event of one append: when it happened and which request or
// event caused it, so that one booking can be followed through the log.
type Metadata struct {
	OccurredAt    time.Time
	CorrelationID string
	CausationID   string
}

// SchemaVersion is the envelope schema written by this code. Schema 5 stores one message per
// append (a commit of one or more envelopes); a reservation's and its payments' events in the
// commits of its concert date (seats.<p>.date.<concert>.<date>) beside its seats' events; a
// wallet's events, which name their user, in the commits of its wallet group
// (wallets.<p>.walletgroup.<g>); and a queue user's token events, which name their user, in
// the commits of its queue group (queue.queuegroup.<g>), where a token's position is its
// commit's sequence and its index in the commit (seq<<10 | index). Schema 4 kept each queue
// user on a subject of its own, a token's position being its message's sequence: read as
// schema 5, its positions would mean something else. Schema 3 kept payments and each wallet
// on subjects of their own (streams PAYMENTS_*), schema 2 seats and reservations too, and
// schema 1 stored one message per event; all are refused with ErrSchema.
const SchemaVersion = 5

// Envelope is an event as stored: the payload plus everything needed to place it.
type Envelope struct {
	EventID       string          `json:"eventId"`
	Type          string          `json:"type"`
	AggregateType string          `json:"aggregateType"`
	AggregateID   string          `json:"aggregateId"`
	OccurredAt    time.Time       `json:"occurredAt"`
	CorrelationID string          `json:"correlationId,omitempty"`
	CausationID   string          `json:"causationId,omitempty"`
	SchemaVersion int             `json:"schemaVersion"`
	Data          json.RawMessage `json:"data"`

	// Stream and Sequence are where the event's commit was stored: every event of one append
	// shares the sequence of its message, which is the aggregate's version after them all.
	// Index is the event's position in that commit. None of them is part of the stored JSON.
	Stream   string `json:"-"`
	Sequence uint64 `json:"-"`
	Index    int    `json:"-"`
	// Decoded, when not nil, is the writer's Event.Value, for a reader in the writer's
	// process: what decoding Data would give. Readers must not change what it points to.
	Decoded any `json:"-"`
}

// Store appends events to one aggregate's subject and reads them back.
//
// Append succeeds only if the aggregate's version (the stream sequence of its last event, 0
// when it has none) equals expected; otherwise it returns an error wrapping ErrConcurrency and
// writes nothing. dedupID identifies the append: repeating an append with the same dedupID
// (a retry after a lost answer) is a success that writes nothing and returns the version the
// first append produced. An append is one message, so its events are stored atomically.
//
// Load returns the aggregate's events with a sequence greater than after, oldest first, without
// scanning the whole stream. Implementations are safe for concurrent use.
type Store interface {
	Append(ctx context.Context, agg AggregateRef, expected uint64, events []Event, dedupID string, meta Metadata) (version uint64, err error)
	Load(ctx context.Context, agg AggregateRef, after uint64) ([]Envelope, error)
}

// AppendNote receives, for the Appends made with a context from WithAppendNote, what an
// append's result does not say: Duplicate is set when the store recognised the append as a
// repeat of an earlier one (same dedup ID) and wrote nothing. The version such an append
// returns is the earlier commit's, which need not be the aggregate's newest: a caller that
// decided on a state it had not read (a cache after a restart) must not take its decision
// for the aggregate's state.
type AppendNote struct{ Duplicate bool }

type appendNoteKey struct{}

// WithAppendNote returns a context whose Appends fill n. It is a context value, not a result,
// so that stores wrapped by other stores (tests inject faults that way) still report it.
func WithAppendNote(ctx context.Context, n *AppendNote) context.Context {
	return context.WithValue(ctx, appendNoteKey{}, n)
}

// noteDuplicate records in ctx's AppendNote, if any, that an append was a repeat.
func noteDuplicate(ctx context.Context) {
	if n, ok := ctx.Value(appendNoteKey{}).(*AppendNote); ok {
		n.Duplicate = true
	}
}

// Reader reads whole streams, for projections, the relay, audits and tools.
type Reader interface {
	// Streams lists the names of every stream of the layout.
	Streams() []string
	// Head returns the sequence of the newest message of a stream (0 when empty).
	Head(ctx context.Context, stream string) (uint64, error)
	// Replay calls fn with the events of stream whose sequence is greater than after, in order,
	// in batches of whole commits (about 1,000 events, more when the last commit is large, and
	// whatever has arrived, so a quiet stream does not hold an event back), until it reaches
	// the head seen when Replay started (follow == false) or until ctx ends (follow == true).
	// fn's error stops the replay and is returned. Sequences may have gaps, and the events of
	// one commit share theirs. fn must not keep the slice.
	Replay(ctx context.Context, stream string, after uint64, follow bool, fn func(batch []Envelope) error) error
}

// Tracker reports, per stream, the newest sequence this process appended. Queries wait for a
// read model to reach it, which gives a client read-your-writes without asking the server.
// Mark(stream) is the same number as a handle, resolved once by a reader that checks it on
// every request (a seat-map read checks nine streams); it is nil for an unknown stream.
type Tracker interface {
	LastAppended(stream string) uint64
	Mark(stream string) *AppendMark
}

// AppendMark is the newest sequence this process appended to one stream. It only moves
// forward; Load reads it with one atomic load.
type AppendMark struct{ seq atomic.Uint64 }

// Load returns the newest sequence appended (0: none yet, or m is nil).
func (m *AppendMark) Load() uint64 {
	if m == nil {
		return 0
	}
	return m.seq.Load()
}

// advance moves the mark to seq unless it is already there or past it.
func (m *AppendMark) advance(seq uint64) {
	for {
		cur := m.seq.Load()
		if seq <= cur || m.seq.CompareAndSwap(cur, seq) {
			return
		}
	}
}

// appendMarks holds one AppendMark per stream of the layout. Its keys are fixed at creation,
// so it is read without a lock.
type appendMarks map[string]*AppendMark

func newAppendMarks() appendMarks {
	m := appendMarks{}
	for _, spec := range Layout() {
		m[spec.Name] = &AppendMark{}
	}
	return m
}

// track records seq as appended to stream, never moving backwards.
func (m appendMarks) track(stream string, seq uint64) {
	if l := m[stream]; l != nil {
		l.advance(seq)
	}
}
