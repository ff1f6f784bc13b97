package eventstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"

	jsonv2 "github.com/go-json-experiment/json"
)

// ErrSchema reports a stored message written in an envelope schema this build does not read.
// Nothing is guessed: a log of another schema is refused, never misread.
var ErrSchema = errors.New("eventstore: message written in another envelope schema")

// commitBody is what one message holds: every event of one append, in order. One append is
// one message, so its events are stored atomically with one fsync, and the message's stream
// sequence is the aggregate's version after all of them.
type commitBody struct {
	SchemaVersion int        `json:"schemaVersion"`
	Events        []Envelope `json:"events"`
}

// encodeCommit builds the stored message of one append; both stores use it so they write the
// same JSON. Every event keeps an envelope of its own (ID, type, times, correlation and
// causation), so readers see events, never messages.
func encodeCommit(agg AggregateRef, events []Event, meta Metadata, now func() time.Time) ([]byte, error) {
	stamp := now()
	body := commitBody{SchemaVersion: SchemaVersion, Events: make([]Envelope, len(events))}
	for i, ev := range events {
		m := meta
		if ev.Meta != nil {
			m = *ev.Meta
		}
		at := m.OccurredAt
		if at.IsZero() {
			at = stamp
		}
		id, err := uuid.NewV7()
		if err != nil {
			return nil, fmt.Errorf("eventstore: event ID: %w", err)
		}
		data := ev.Data
		if len(data) == 0 {
			data = json.RawMessage("null")
		}
		owner := agg
		if ev.Ref != nil {
			owner = *ev.Ref
		}
		body.Events[i] = Envelope{
			EventID:       id.String(),
			Type:          ev.Type,
			AggregateType: owner.Type,
			AggregateID:   owner.ID,
			OccurredAt:    at.UTC(),
			CorrelationID: m.CorrelationID,
			CausationID:   m.CausationID,
			SchemaVersion: SchemaVersion,
			Data:          data,
		}
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, fmt.Errorf("eventstore: encode %s event of %s: %w", events[0].Type, agg, err)
	}
	return b, nil
}

// EncodeCommit returns the message an append of events to agg stores, for tools that fill a
// stream in bulk without the expected-version checks of Append (benchmarks' logs).
func EncodeCommit(agg AggregateRef, events []Event, meta Metadata) ([]byte, error) {
	if err := validateAppend(events); err != nil {
		return nil, err
	}
	return encodeCommit(agg, events, meta, time.Now)
}

// DecodeCommit returns the events of one stored message (the body of a message of stream at
// sequence seq), for readers that consume messages themselves, such as the relay's durable
// consumers. A message of another schema is refused with ErrSchema.
func DecodeCommit(b []byte, stream string, seq uint64) ([]Envelope, error) {
	return decodeCommit(nil, b, stream, seq)
}

// decodeCommit appends the events of one stored message to dst, each placed at stream and seq
// with its position in the commit.
func decodeCommit(dst []Envelope, b []byte, stream string, seq uint64) ([]Envelope, error) {
	var body commitBody
	// json/v2 for the same reason as aggregates.Decode: one pass instead of two, and every
	// replay, load and restart decodes every envelope it reads.
	if err := jsonv2.Unmarshal(b, &body); err != nil {
		return dst, fmt.Errorf("eventstore: decode %s #%d: %w", stream, seq, err)
	}
	if body.SchemaVersion != SchemaVersion {
		return dst, fmt.Errorf("%w: %s #%d has schema %d, this build reads %d only; "+
			"logs of earlier schemas are not migrated: start from an empty data dir",
			ErrSchema, stream, seq, body.SchemaVersion, SchemaVersion)
	}
	if len(body.Events) == 0 {
		return dst, fmt.Errorf("eventstore: decode %s #%d: a commit without events", stream, seq)
	}
	for i := range body.Events {
		env := body.Events[i]
		env.Stream, env.Sequence, env.Index = stream, seq, i
		dst = append(dst, env)
	}
	return dst, nil
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
