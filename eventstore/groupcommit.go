package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Group commit.
//
// With SyncAlways the server fsyncs every message it stores, one after another, so one stream
// stores at most a few thousand messages a second however many clients publish to it. An
// atomic batch (nats-server 2.12+) is stored with one fsync at its commit and acknowledged
// only after it, so it commits many appends per fsync without acknowledging anything early.
// But a batch has a fixed cost of its own (the server stages it in a directory of its own:
// about eight fsyncs and sixty other file-system calls here), so it only pays when dozens of
// appends wait.
//
// Hence, per stream: while fewer than soloLimit publishes are in flight, an append is
// published alone at once, as without group commit. Beyond that, appends queue, and one
// flusher at a time commits the queue as one atomic batch once it holds minBatch, or hands
// appends out to be published alone as single publishes end, whichever comes first. A busy
// stream thus keeps soloLimit single publishes and one batch in flight. Every message
// of a batch carries its own expected-last-subject-sequence and dedup ID, so the server checks
// each append exactly as it checks a single publish. If anything fails a batch, nothing of it
// is stored and every append in it is published again alone, so each gets its own exact answer
// (a conflict, a duplicate to recover, unavailable): a batch is only ever a faster way to the
// same result.

const (
	// soloLimit is how many single publishes may be in flight on one stream before appends
	// queue for a batch. The server stores a stream's messages one at a time, so more than a
	// few in flight only wait there.
	soloLimit = 4
	// minBatch is the shortest queue worth an atomic batch.
	minBatch = 32
	// maxBatch bounds one batch, well below the server's limit of 1,000 messages.
	maxBatch = 256
)

// Atomic batch publish headers (ADR-50).
const (
	batchIDHeader     = "Nats-Batch-Id"
	batchSeqHeader    = "Nats-Batch-Sequence"
	batchCommitHeader = "Nats-Batch-Commit"
)

// pendingAppend is one single-event publish waiting in a stream's queue.
type pendingAppend struct {
	subject  string
	expected uint64
	body     []byte
	msgID    string
	done     chan publishResult // buffered: nobody blocks on a waiter that left
}

type publishResult struct {
	ack *jetstream.PubAck
	err error
}

// streamCommitter is the group-commit state of one stream; see newStreamCommitter.
type streamCommitter struct {
	mu       sync.Mutex
	changed  sync.Cond // signalled when the queue grows or a single publish ends; L is &mu
	solo     int       // single publishes in flight
	queue    []*pendingAppend
	flushing bool
}

func newStreamCommitter() *streamCommitter {
	c := &streamCommitter{}
	c.changed.L = &c.mu
	return c
}

// enter decides how an append goes: alone now (queued == nil: the caller publishes, then
// calls leave), or queued (its answer arrives on queued.done; startFlusher: the caller starts
// the flusher). It takes the append by value so that the common, solo case allocates nothing.
func (c *streamCommitter) enter(a pendingAppend) (queued *pendingAppend, startFlusher bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.solo < soloLimit && len(c.queue) == 0 {
		c.solo++
		return nil, false
	}
	queued = new(pendingAppend) // not &a, which would move every a to the heap
	*queued = a
	queued.done = make(chan publishResult, 1)
	c.queue = append(c.queue, queued)
	c.changed.Signal()
	if c.flushing {
		return queued, false
	}
	c.flushing = true
	return queued, true
}

func (c *streamCommitter) leave() {
	c.mu.Lock()
	c.solo--
	c.changed.Signal()
	c.mu.Unlock()
}

// next waits until the queue holds a batch's worth, or a single publish can go; it returns
// the batch (len >= minBatch) or the appends to publish alone (each counted in solo). It
// returns nil, and the flusher ends, when the queue is empty.
func (c *streamCommitter) next() []*pendingAppend {
	c.mu.Lock()
	defer c.mu.Unlock()
	for len(c.queue) > 0 && len(c.queue) < minBatch && c.solo >= soloLimit {
		c.changed.Wait()
	}
	n := len(c.queue)
	switch {
	case n == 0:
		c.flushing = false
		return nil
	case n >= minBatch:
		n = min(n, maxBatch)
	default:
		n = min(n, soloLimit-c.solo)
		c.solo += n
	}
	out := make([]*pendingAppend, n)
	copy(out, c.queue)
	c.queue = append(c.queue[:0], c.queue[n:]...)
	return out
}

// GroupCommitStats counts the store's atomic batches since it was opened.
type GroupCommitStats struct {
	// Batches is how many batches were committed, and Appends how many appends they held.
	Batches, Appends uint64
	// Failures is how many batches the server refused; their appends were published alone.
	Failures uint64
}

// GroupCommitStats reports the store's group commits so far; safe for concurrent use.
func (s *JetStreamStore) GroupCommitStats() GroupCommitStats {
	return GroupCommitStats{Batches: s.batches.Load(), Appends: s.batchedAppends.Load(), Failures: s.batchFailures.Load()}
}

// groupCommitter returns the committer of stream, or nil when group commit is off.
func (s *JetStreamStore) groupCommitter(stream string) *streamCommitter {
	if s.groupCommitOff.Load() {
		return nil
	}
	return s.committers[stream]
}

// appendOne publishes one event with body at expected on subject: alone or in a batch, with
// the same answer either way.
func (s *JetStreamStore) appendOne(ctx context.Context, stream, subject string, expected uint64, body []byte, msgID string) (*jetstream.PubAck, error) {
	c := s.groupCommitter(stream)
	if c == nil {
		return s.publishOne(ctx, stream, subject, expected, body, msgID)
	}
	p, startFlusher := c.enter(pendingAppend{subject: subject, expected: expected, body: body, msgID: msgID})
	if p == nil {
		defer c.leave()
		return s.publishOne(ctx, stream, subject, expected, body, msgID)
	}
	if startFlusher {
		go s.flush(stream, c)
	}
	select {
	case r := <-p.done:
		return r.ack, r.err
	case <-ctx.Done():
		// The publish may still go through: like a publish that timed out, the outcome is
		// unknown until a retry with the same dedup ID finds it.
		return nil, ctx.Err()
	}
}

// publishOne publishes one event alone with the expected-sequence check and its dedup ID.
func (s *JetStreamStore) publishOne(ctx context.Context, stream, subject string, expected uint64, body []byte, msgID string) (*jetstream.PubAck, error) {
	opts := []jetstream.PublishOpt{jetstream.WithExpectStream(stream), jetstream.WithExpectLastSequencePerSubject(expected)}
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	return s.publisher(stream).PublishMsg(ctx, &nats.Msg{Subject: subject, Data: body, Header: nats.Header{}}, opts...)
}

// flush commits a stream's queue, round after round, until it is empty. One runs per stream
// at a time; appends published alone from a short queue do not hold up the next round.
func (s *JetStreamStore) flush(stream string, c *streamCommitter) {
	for {
		batch := c.next()
		if batch == nil {
			return
		}
		if len(batch) >= minBatch {
			first, err := s.commitBatch(stream, batch)
			if err == nil {
				s.batches.Add(1)
				s.batchedAppends.Add(uint64(len(batch)))
				for i, p := range batch {
					p.done <- publishResult{ack: &jetstream.PubAck{Stream: stream, Sequence: first + uint64(i)}}
				}
				continue
			}
			s.batchFailures.Add(1)
			s.log.Debug("eventstore: batch failed, publishing its appends alone", "stream", stream, "appends", len(batch), "err", err)
			// Alone, side by side: the queue waits for these as for any single publishes.
			c.mu.Lock()
			c.solo += len(batch)
			c.mu.Unlock()
		}
		for _, p := range batch {
			go s.publishAlone(stream, c, p)
		}
	}
}

// publishAlone publishes p on its own, for the flusher (p is counted in c.solo), and answers it.
func (s *JetStreamStore) publishAlone(stream string, c *streamCommitter, p *pendingAppend) {
	defer c.leave()
	// Not the waiter's context: a waiter that gave up still wants its dedup ID settled.
	ctx, cancel := context.WithTimeout(context.Background(), s.opTimeout)
	defer cancel()
	ack, err := s.publishOne(ctx, stream, p.subject, p.expected, p.body, p.msgID)
	p.done <- publishResult{ack: ack, err: err}
}

// batchAck is the server's answer to a batch commit.
type batchAck struct {
	Stream string              `json:"stream"`
	Seq    uint64              `json:"seq"`
	Count  int                 `json:"count"`
	Error  *jetstream.APIError `json:"error,omitempty"`
}

// commitBatch publishes batch as one atomic batch and returns the sequence of its first
// message: the batch is stored contiguously, in order.
func (s *JetStreamStore) commitBatch(stream string, batch []*pendingAppend) (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.opTimeout)
	defer cancel()
	nc := s.publisher(stream).Conn()
	id := uuid.NewString()
	for i, p := range batch {
		m := &nats.Msg{Subject: p.subject, Data: p.body, Header: nats.Header{}}
		m.Header.Set(jetstream.ExpectedStreamHeader, stream)
		m.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(p.expected, 10))
		if p.msgID != "" {
			m.Header.Set(jetstream.MsgIDHeader, p.msgID)
		}
		m.Header.Set(batchIDHeader, id)
		m.Header.Set(batchSeqHeader, strconv.Itoa(i+1))
		if i < len(batch)-1 {
			// Only the commit is answered; a message lost before it makes the commit fail.
			if err := nc.PublishMsg(m); err != nil {
				return 0, err
			}
			continue
		}
		m.Header.Set(batchCommitHeader, "1")
		resp, err := nc.RequestMsgWithContext(ctx, m)
		if err != nil {
			return 0, err
		}
		var ack batchAck
		if err := json.Unmarshal(resp.Data, &ack); err != nil {
			return 0, fmt.Errorf("batch ack %q: %w", resp.Data, err)
		}
		if ack.Error != nil {
			if ack.Error.ErrorCode == jsAtomicPublishDisabled && s.groupCommitOff.CompareAndSwap(false, true) {
				s.log.Warn("eventstore: the server refuses atomic batches; group commit is off", "stream", stream, "err", ack.Error)
			}
			return 0, ack.Error
		}
		if ack.Count != len(batch) || ack.Seq < uint64(len(batch)) {
			// A server that does not know atomic batches stores each message as a plain
			// publish and answers the last alone. The retries alone find those messages by
			// their dedup IDs.
			if s.groupCommitOff.CompareAndSwap(false, true) {
				s.log.Warn("eventstore: the server does not answer atomic batches; group commit is off", "stream", stream, "ack", string(resp.Data))
			}
			return 0, fmt.Errorf("batch ack %q: want %d messages", resp.Data, len(batch))
		}
		return ack.Seq - uint64(len(batch)) + 1, nil
	}
	return 0, errors.New("empty batch")
}

// jsAtomicPublishDisabled is the server's error code for a stream that does not allow atomic
// batches (or a server older than 2.12, which does not know them).
const jsAtomicPublishDisabled = 10174
