package eventstore

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/go-json-experiment/json/jsontext"
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
//
// The JSON is assembled by hand: encoding/json's reflection over the envelopes, and its
// re-compaction of every payload it had just encoded, were a tenth of a flash sale's CPU.
// Payloads are checked to be JSON (validateAppend); nothing else here can be malformed.
//
// It returns the envelopes it wrote too (Index set, not Stream or Sequence), so that the
// writer can hand its readers the commit without their decoding it (commitCache.remember).
func encodeCommit(agg AggregateRef, events []Event, meta Metadata, now func() time.Time) ([]byte, []Envelope, error) {
	stamp := now()
	size := 64
	for _, ev := range events {
		size += len(ev.Data) + 320
	}
	b := make([]byte, 0, size)
	envs := make([]Envelope, len(events))
	b = append(b, `{"schemaVersion":`...)
	b = strconv.AppendInt(b, SchemaVersion, 10)
	b = append(b, `,"events":[`...)
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
			return nil, nil, fmt.Errorf("eventstore: event ID: %w", err)
		}
		data := ev.Data
		if len(data) == 0 {
			data = json.RawMessage("null")
		}
		owner := agg
		if ev.Ref != nil {
			owner = *ev.Ref
		}
		if i > 0 {
			b = append(b, ',')
		}
		envs[i] = Envelope{
			EventID:       id.String(),
			Type:          ev.Type,
			AggregateType: owner.Type,
			AggregateID:   owner.ID,
			OccurredAt:    at.UTC(),
			CorrelationID: m.CorrelationID,
			CausationID:   m.CausationID,
			SchemaVersion: SchemaVersion,
			Data:          data,
			Index:         i,
			Decoded:       ev.Value,
		}
		b = appendEnvelope(b, &envs[i])
	}
	return append(b, "]}"...), envs, nil
}

// appendEnvelope appends e as the JSON object encoding/json would write for it (member names
// and order of the struct tags, omitempty, RFC 3339 times), except that it does not escape
// <, > and & in strings, which no reader needs.
func appendEnvelope(b []byte, e *Envelope) []byte {
	str := func(b []byte, name, v string) []byte {
		b = append(b, name...)
		b, _ = jsontext.AppendQuote(b, v) // only invalid UTF-8 errs, and it is replaced, not lost
		return b
	}
	b = str(b, `{"eventId":`, e.EventID)
	b = str(b, `,"type":`, e.Type)
	b = str(b, `,"aggregateType":`, e.AggregateType)
	b = str(b, `,"aggregateId":`, e.AggregateID)
	b = append(b, `,"occurredAt":"`...)
	b = e.OccurredAt.AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if e.CorrelationID != "" {
		b = str(b, `,"correlationId":`, e.CorrelationID)
	}
	if e.CausationID != "" {
		b = str(b, `,"causationId":`, e.CausationID)
	}
	b = append(b, `,"schemaVersion":`...)
	b = strconv.AppendInt(b, int64(e.SchemaVersion), 10)
	b = append(b, `,"data":`...)
	b = append(b, e.Data...)
	return append(b, '}')
}

// EncodeCommit returns the message an append of events to agg stores, for tools that fill a
// stream in bulk without the expected-version checks of Append (benchmarks' logs).
func EncodeCommit(agg AggregateRef, events []Event, meta Metadata) ([]byte, error) {
	if err := validateAppend(events); err != nil {
		return nil, err
	}
	b, _, err := encodeCommit(agg, events, meta, time.Now)
	return b, err
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

// validateAppend refuses what readers could not decode, before anything is written. Payloads
// are checked as decodeCommit reads them (json/v2's defaults: valid UTF-8, no duplicate member
// names), not by encoding/json's Valid, which accepts both: a payload with either would be
// stored whole and then refused by every reader of its commit. jsontext's check is also about
// 2.5 times faster than Valid (BenchmarkPayloadCheck), which was 1.7% of a flash sale's CPU.
func validateAppend(events []Event) error {
	if len(events) == 0 {
		return fmt.Errorf("eventstore: append of no events")
	}
	for _, ev := range events {
		if ev.Type == "" {
			return fmt.Errorf("eventstore: event without a type")
		}
		if len(ev.Data) > 0 && !jsontext.Value(ev.Data).IsValid() {
			return fmt.Errorf("eventstore: %s event whose data is not JSON a reader can decode (valid UTF-8, no repeated member names)", ev.Type)
		}
	}
	return nil
}
