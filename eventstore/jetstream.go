package eventstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultOpTimeout bounds one store operation whose context has no deadline, so that a lost
// server fails requests quickly instead of queueing them.
const DefaultOpTimeout = 5 * time.Second

// JetStreamStore is the Store, Reader and Tracker on NATS JetStream. Every append is one
// message (a commit) holding the JSON envelopes of its events, on the subject of its
// aggregate (see Place).
type JetStreamStore struct {
	nc        *nats.Conn
	js        jetstream.JetStream
	log       *slog.Logger
	opTimeout time.Duration
	last      appendMarks
	gets      replyMux
	closeFn   func() // set by Open: drains and stops what Open started
	closeOnce sync.Once
	// pubs are extra connections that appends are spread over, by stream. A nats.Conn
	// serialises its writers on one mutex (and an in-process connection is a synchronous
	// pipe), so one connection caps the whole process at one publish at a time and the
	// streams' fsyncs never overlap; with a few connections they do.
	pubs     []jetstream.JetStream
	pubConns []*nats.Conn
	url      string // the embedded server's client URL when it listens
	// committers group concurrent appends into atomic batches, per stream (fixed keys: read
	// without a lock); see groupcommit.go.
	committers     map[string]*streamCommitter
	groupCommitOff atomic.Bool
	batches        atomic.Uint64
	batchedAppends atomic.Uint64
	batchFailures  atomic.Uint64
	// decoded shares the envelopes of commits between the replays that follow one stream.
	decoded *commitCache
}

// NewJetStreamStore wraps an established connection. It does not create streams: call
// EnsureStreams (Open does).
func NewJetStreamStore(nc *nats.Conn, logger *slog.Logger) (*JetStreamStore, error) {
	if logger == nil {
		logger = slog.Default()
	}
	js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(DefaultOpTimeout))
	if err != nil {
		return nil, fmt.Errorf("eventstore: jetstream: %w", err)
	}
	s := &JetStreamStore{
		nc:         nc,
		js:         js,
		log:        logger,
		opTimeout:  DefaultOpTimeout,
		last:       newAppendMarks(),
		decoded:    newCommitCache(),
		gets:       replyMux{nc: nc},
		committers: make(map[string]*streamCommitter),
	}
	for _, spec := range Layout() {
		s.committers[spec.Name] = newStreamCommitter()
	}
	return s, nil
}

// Publishers is how many connections Open spreads appends over.
const Publishers = 8

// addPublishers spreads appends over extra connections; the store closes them.
func (s *JetStreamStore) addPublishers(conns []*nats.Conn) error {
	for _, nc := range conns {
		js, err := jetstream.New(nc, jetstream.WithDefaultTimeout(DefaultOpTimeout))
		if err != nil {
			return fmt.Errorf("eventstore: jetstream: %w", err)
		}
		s.pubs = append(s.pubs, js)
		s.pubConns = append(s.pubConns, nc)
	}
	return nil
}

// publisher returns the JetStream context that appends to stream go through: always the
// same one for a stream, so that one stream's appends keep their order on the wire.
func (s *JetStreamStore) publisher(stream string) jetstream.JetStream {
	if len(s.pubs) == 0 {
		return s.js
	}
	h := uint32(2166136261)
	for i := 0; i < len(stream); i++ {
		h = (h ^ uint32(stream[i])) * 16777619
	}
	return s.pubs[h%uint32(len(s.pubs))]
}

// closePublishers drains the extra connections.
func (s *JetStreamStore) closePublishers() {
	for _, nc := range s.pubConns {
		_ = nc.Drain()
	}
}

// JetStream returns the JetStream context, for the relay and tools.
func (s *JetStreamStore) JetStream() jetstream.JetStream { return s.js }

// Conn returns the NATS connection, for the relay and tools.
func (s *JetStreamStore) Conn() *nats.Conn { return s.nc }

// Close releases what Open started: it drains the connection and, for an embedded server,
// shuts it down and waits until it has, so the data dir can be opened again. A store made by
// NewJetStreamStore leaves the connection to its owner.
func (s *JetStreamStore) Close() error {
	s.closeOnce.Do(func() {
		s.closePublishers()
		if s.closeFn != nil {
			s.closeFn()
		}
	})
	return nil
}

// EnsureStreams creates every stream of the layout, or updates it to the configuration below.
// It is idempotent and safe to run from every instance at start-up.
func (s *JetStreamStore) EnsureStreams(ctx context.Context, replicas int) error {
	if replicas < 1 {
		replicas = 1
	}
	for _, spec := range Layout() {
		cfg := jetstream.StreamConfig{
			Name:     spec.Name,
			Subjects: []string{spec.Subject},
			Storage:  jetstream.FileStorage,
			Replicas: replicas,
			// An event log is never trimmed: no limits, no TTL, no deletes, no purges.
			Retention:         jetstream.LimitsPolicy,
			MaxMsgs:           -1,
			MaxBytes:          -1,
			MaxMsgsPerSubject: -1,
			MaxAge:            0,
			Discard:           jetstream.DiscardOld,
			DenyDelete:        true,
			DenyPurge:         true,
			Duplicates:        DuplicateWindow,
			// Load reads an aggregate with direct gets, which any replica can answer.
			AllowDirect: true,
			// Group commit writes concurrent appends as atomic batches (groupcommit.go).
			AllowAtomicPublish: true,
		}
		opCtx, cancel := s.opContext(ctx)
		err := s.ensureStream(opCtx, cfg)
		cancel()
		if err != nil {
			return ClassifySetup("ensure stream "+spec.Name, err)
		}
	}
	return s.checkSchema(ctx)
}

// checkSchema refuses a log written in another schema at start, with the reason, rather than
// at the first request that happens to read it: the first message of every stream must
// decode. (Read models built from such a log need no replay, so nothing else would read it
// before a request does.)
func (s *JetStreamStore) checkSchema(ctx context.Context) error {
	for _, spec := range Layout() {
		opCtx, cancel := s.opContext(ctx)
		msg, err := s.directGetOne(opCtx, spec.Name, 1, spec.Subject)
		cancel()
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return Classify("check the schema of "+spec.Name, err)
		}
		if _, err := decodeCommit(nil, msg.data, spec.Name, msg.seq); errors.Is(err, ErrSchema) {
			return err
		}
	}
	return nil
}

// ensureStream creates a stream, or updates it when its configuration differs. It asks first
// and creates only what is missing: instances started together on a fresh cluster create the
// same streams at once, and an update of a stream whose creation another instance has in
// flight went unanswered (TestInstancesStartingAtOnceOnAFreshClusterAreReadyQuickly: two
// instances at once never started, where one alone took 3 s). Two equal creates at once are
// fine: the server answers both.
func (s *JetStreamStore) ensureStream(ctx context.Context, cfg jetstream.StreamConfig) error {
	st, err := s.js.Stream(ctx, cfg.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = s.js.CreateStream(ctx, cfg)
		if !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return err
		}
		// Created meanwhile with another configuration (another version of this code).
		st, err = s.js.Stream(ctx, cfg.Name)
	}
	if err != nil {
		return err
	}
	if sameStreamConfig(st.CachedInfo().Config, cfg) {
		return nil
	}
	_, err = s.js.UpdateStream(ctx, cfg)
	return err
}

// sameStreamConfig reports whether a stream as the server has it matches every setting
// EnsureStreams chooses (the server fills in the others).
func sameStreamConfig(have, want jetstream.StreamConfig) bool {
	return slices.Equal(have.Subjects, want.Subjects) && have.Storage == want.Storage &&
		have.Replicas == want.Replicas && have.Retention == want.Retention &&
		have.MaxMsgs == want.MaxMsgs && have.MaxBytes == want.MaxBytes &&
		have.MaxMsgsPerSubject == want.MaxMsgsPerSubject && have.MaxAge == want.MaxAge &&
		have.Discard == want.Discard && have.DenyDelete == want.DenyDelete &&
		have.DenyPurge == want.DenyPurge && have.Duplicates == want.Duplicates &&
		have.AllowDirect == want.AllowDirect && have.AllowAtomicPublish == want.AllowAtomicPublish
}

func (s *JetStreamStore) opContext(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.opTimeout)
}

// ready fails fast while the connection is down: publishes would sit in the reconnect buffer
// until their deadline, holding a request for seconds to learn what is already known.
func (s *JetStreamStore) ready(op string) error {
	switch st := s.nc.Status(); st {
	case nats.CONNECTED, nats.DRAINING_PUBS:
		return nil
	default:
		return fmt.Errorf("%s: %w: connection %s", op, ErrUnavailable, st)
	}
}

// Append implements Store.
func (s *JetStreamStore) Append(ctx context.Context, agg AggregateRef, expected uint64, events []Event, dedupID string, meta Metadata) (uint64, error) {
	stream, subject, err := Place(agg)
	if err != nil {
		return 0, err
	}
	if err := validateAppend(events); err != nil {
		return 0, err
	}
	op := "append to " + agg.String()
	if err := s.ready(op); err != nil {
		return 0, err
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()

	body, envs, err := encodeCommit(agg, events, meta, time.Now)
	if err != nil {
		return 0, err
	}
	ack, err := s.appendOne(ctx, stream, subject, expected, body, dedupID)
	if err == nil {
		// A duplicate ack carries the sequence the first publish got: the same answer, but
		// not these bytes, which the stream does not hold.
		if ack.Duplicate {
			noteDuplicate(ctx)
		} else {
			s.decoded.remember(stream, ack.Sequence, body, envs)
		}
		s.track(stream, ack.Sequence)
		return ack.Sequence, nil
	}
	if !isWrongLastSequence(err) {
		return 0, Classify(op, err)
	}
	// On a single server the expected check runs before dedup, so a retry of an append that
	// went through lands here: that earlier commit is the subject's first one after expected.
	if dedupID != "" {
		msg, gerr := s.directGetOne(ctx, stream, expected+1, subject)
		switch {
		case gerr == nil && msg.Header.Get(jetstream.MsgIDHeader) == dedupID:
			noteDuplicate(ctx)
			s.track(stream, msg.seq)
			return msg.seq, nil
		case gerr != nil && !errors.Is(gerr, jetstream.ErrMsgNotFound):
			return 0, Classify(op+": look for an earlier attempt", gerr)
		}
	}
	return 0, fmt.Errorf("%s at version %d: %w (%v)", op, expected, ErrConcurrency, err)
}

func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// track records seq as appended by this process to stream, never moving backwards.
func (s *JetStreamStore) track(stream string, seq uint64) { s.last.track(stream, seq) }

// LastAppended implements Tracker.
func (s *JetStreamStore) LastAppended(stream string) uint64 { return s.last[stream].Load() }

// Mark implements Tracker.
func (s *JetStreamStore) Mark(stream string) *AppendMark { return s.last[stream] }

// loadBatch is how many messages one direct get asks for when loading an aggregate.
const loadBatch = 256

// Load implements Store. It reads the aggregate's subject with batched direct gets
// (next-by-subject from after+1), so its cost follows the aggregate, not the stream.
func (s *JetStreamStore) Load(ctx context.Context, agg AggregateRef, after uint64) ([]Envelope, error) {
	stream, subject, err := Place(agg)
	if err != nil {
		return nil, err
	}
	op := "load " + agg.String()
	if err := s.ready(op); err != nil {
		return nil, err
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()

	var out []Envelope
	add := func(m directMsg) (err error) {
		out, err = decodeCommit(out, m.data, stream, m.seq)
		return err
	}
	from := after + 1
	for {
		last, pending, batched, err := s.gets.batch(ctx, stream, from, subject, loadBatch, add)
		if err != nil {
			return nil, Classify(op, err)
		}
		if !batched {
			// A server without batched direct gets answered the first message only: go on
			// one message at a time.
			return s.loadOneByOne(ctx, op, stream, subject, last, out)
		}
		if pending == 0 || last == 0 {
			return out, nil
		}
		from = last + 1
	}
}

func (s *JetStreamStore) loadOneByOne(ctx context.Context, op, stream, subject string, last uint64, out []Envelope) ([]Envelope, error) {
	for from := last + 1; ; {
		m, err := s.directGetOne(ctx, stream, from, subject)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return out, nil
		}
		if err != nil {
			return nil, Classify(op, err)
		}
		if out, err = decodeCommit(out, m.data, stream, m.seq); err != nil {
			return nil, err
		}
		from = m.seq + 1
	}
}

// Streams implements Reader.
func (s *JetStreamStore) Streams() []string {
	specs := Layout()
	names := make([]string, len(specs))
	for i, spec := range specs {
		names[i] = spec.Name
	}
	return names
}

// Head implements Reader.
func (s *JetStreamStore) Head(ctx context.Context, stream string) (uint64, error) {
	if err := s.ready("head of " + stream); err != nil {
		return 0, err
	}
	ctx, cancel := s.opContext(ctx)
	defer cancel()
	st, err := s.js.Stream(ctx, stream)
	if err != nil {
		return 0, Classify("head of "+stream, err)
	}
	return st.CachedInfo().State.LastSeq, nil
}

// Replay implements Reader with an ordered consumer: an ephemeral consumer that the client
// recreates from the last delivered sequence whenever it misses a message or a heartbeat.
func (s *JetStreamStore) Replay(ctx context.Context, stream string, after uint64, follow bool, fn func(batch []Envelope) error) error {
	op := "replay " + stream
	if err := s.ready(op); err != nil {
		return err
	}
	var head uint64
	if !follow {
		h, err := s.Head(ctx, stream)
		if err != nil {
			return err
		}
		if after >= h {
			return nil
		}
		head = h
	}

	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if after > 0 {
		cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: after + 1}
	}
	createCtx, cancel := s.opContext(ctx)
	cons, err := s.js.OrderedConsumer(createCtx, stream, cfg)
	cancel()
	if err != nil {
		return Classify(op, err)
	}

	// The consumer's goroutine decodes while fn works on the previous batch: on two cores
	// that pipelining is most of a replay's speed.
	done := make(chan struct{})
	defer close(done)
	items := make(chan replayItem, 2*replayBatch)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var it replayItem
		md, err := m.Metadata()
		if err != nil {
			it.err = fmt.Errorf("%s: %w", op, err)
		} else if it.envs, err = s.decoded.decode(m.Data(), stream, md.Sequence.Stream); err != nil {
			it.err = err
		}
		it.last = !follow && md != nil && (md.Sequence.Stream >= head || md.NumPending == 0)
		select {
		case items <- it:
		case <-done:
		}
	}, jetstream.PullMaxMessages(2*replayBatch), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		// The ordered consumer recovers by itself; say so for whoever watches the logs.
		s.log.Debug("eventstore: replay consumer", "stream", stream, "err", err)
	}))
	if err != nil {
		return Classify(op, err)
	}
	defer cc.Stop()
	// Closed starts a goroutine on every call that lives until the consumer stops: ask once,
	// not once per batch, or a long follow leaks one goroutine per batch.
	closed := cc.Closed()

	batch := make([]Envelope, 0, replayBatch)
	for {
		var it replayItem
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-closed:
			// Only a closed connection stops an ordered consumer for good.
			return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, nats.ErrConnectionClosed)
		case it = <-items:
		}
		batch = batch[:0]
		for {
			if it.err != nil {
				return it.err
			}
			// Whole commits only: a batch may pass replayBatch by the size of its last one.
			batch = append(batch, it.envs...)
			if it.last || len(batch) >= replayBatch {
				break
			}
			// Take what has already arrived, without waiting for more.
			var more bool
			select {
			case it, more = <-items:
			default:
			}
			if !more {
				break
			}
		}
		if err := fn(batch); err != nil {
			return err
		}
		if it.last {
			return nil
		}
	}
}

// replayItem is one decoded commit of a replay, or why it could not be decoded.
type replayItem struct {
	envs []Envelope
	last bool // the head seen at the start, where a replay without follow stops
	err  error
}

// Classify wraps err of a JetStream operation with op, adding ErrUnavailable when the cause
// is the connection, a timeout or a missing responder rather than the request itself: what
// is worth trying again. Packages beside the store that talk to JetStream (the relay) use it
// so that a start can tell a cluster not ready yet from a refusal. Setting a stream up
// (ClassifySetup) has one more cause worth another attempt.
func Classify(op string, err error) error {
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, context.Canceled),
		errors.Is(err, nats.ErrTimeout),
		errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrNoStreamResponse),
		errors.Is(err, nats.ErrConnectionClosed),
		errors.Is(err, nats.ErrConnectionDraining),
		errors.Is(err, nats.ErrConnectionReconnecting),
		errors.Is(err, nats.ErrDisconnected),
		errors.Is(err, nats.ErrNoServers),
		errors.Is(err, nats.ErrStaleConnection),
		errors.Is(err, jetstream.ErrServerShutdown),
		errors.Is(err, jetstream.ErrJetStreamNotEnabled),
		errors.As(err, &apiErr) && apiErr.Code == 503:
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

// ClassifySetup is Classify for creating or updating a stream (or a bucket, which is one):
// "no suitable peers" is worth another attempt too, since a cluster still forming has no
// peers to place the replicas on yet. Anything else the server refuses (a configuration it
// cannot take, subjects another stream holds) fails the start at once.
func ClassifySetup(op string, err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeNoSuitablePeers {
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	}
	return Classify(op, err)
}

// errCodeNoSuitablePeers is nats-server's JSClusterNoPeersErrF ("no suitable peers for
// placement"), which nats.go names no constant for.
const errCodeNoSuitablePeers jetstream.ErrorCode = 10005

var (
	_ Store   = (*JetStreamStore)(nil)
	_ Reader  = (*JetStreamStore)(nil)
	_ Tracker = (*JetStreamStore)(nil)
)
