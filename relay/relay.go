// Package relay delivers reservation and payment facts to the external data platform after
// they are committed. A stand-in platform for local runs and tests is relay/mockplatform.
//
// The event log is the outbox: a durable JetStream pull consumer on every stream that holds
// reservation or payment events (SEATS_*, where a concert date's commits carry its
// reservations' events beside its seats', and PAYMENTS_*) reads committed events, so the relay
// never sits in a request's path, and a restart (of the relay or of the server) resumes from
// the consumer's acknowledged position.
// Each fact is POSTed with Idempotency-Key: <eventId>; delivery is at least once, and the key
// lets the platform make it exactly once in effect.
//
// Retries are JetStream redeliveries: a failed attempt is NAKed with an exponential, jittered
// delay, so waiting facts cost no goroutine and survive restarts. After MaxAttempts (or at once
// for a 4xx other than 408/429) the fact is stored in the dead-letter bucket, acknowledged,
// and announced on the alert webhook (rate-limited).
//
// Order: facts are delivered in parallel and retried independently, so the platform may see
// ReservationConfirmed before the ReservationHeld it follows. Every fact carries its eventId,
// occurredAt and the aggregate's version (data.version, increasing per aggregate) so the
// platform can put them back in order.
package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/booking-engine/booking/eventstore"
)

// ConsumerName is the durable consumer the relay creates on each stream of reservation and
// payment events. Instances of the service share it, so they share the work.
const ConsumerName = "data-platform-relay"

// Defaults for the zero values of Options.
const (
	DefaultMaxAttempts   = 8
	DefaultBackoff       = time.Second
	DefaultBackoffMax    = time.Minute
	DefaultTimeout       = 10 * time.Second
	DefaultConcurrency   = 16
	DefaultAlertInterval = time.Minute
	DefaultMaxAckPending = 1000
)

// Errors of the relay's lifecycle.
var (
	// ErrDisabled reports a delivery asked of a relay without a data-platform URL.
	ErrDisabled = errors.New("relay: no data platform configured")
	// ErrClosed reports a call on a closed relay.
	ErrClosed = errors.New("relay: closed")
)

// Options configure a Relay. Zero values take the defaults above.
type Options struct {
	// URL is the data platform's base URL; facts go to URL + "/events". Empty: the relay
	// delivers nothing, but the dead-letter list still answers.
	URL string
	// AlertURL receives {"text": "..."} for dead letters; empty: no alerts.
	AlertURL string
	// MaxAttempts is the number of delivery attempts before a fact becomes a dead letter.
	MaxAttempts int
	// Backoff is the first retry delay; it doubles per attempt up to BackoffMax.
	Backoff, BackoffMax time.Duration
	// Timeout bounds each POST.
	Timeout time.Duration
	// Concurrency bounds the POSTs in flight in this process.
	Concurrency int
	// DataDir is unused: dead letters live in the JetStream bucket DeadLetterBucket, which
	// every instance shares. Kept so the wiring does not change if that ever moves.
	DataDir string
	// Registerer receives the relay's metrics; nil: not registered.
	Registerer prometheus.Registerer
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// Clock stamps dead letters, measures the delivery lag and paces alerts; defaults to
	// time.Now.
	Clock func() time.Time

	// AlertInterval is the least time between two alerts (default 1 minute).
	AlertInterval time.Duration
	// AckWait is how long JetStream waits for an answer about a fact handed to this relay
	// before handing it out again (after a crash). Default: long enough to cover every fact
	// waiting for a delivery slot, derived from Timeout and Concurrency.
	AckWait time.Duration
	// MaxAckPending bounds the facts per stream handed out and not yet settled, those
	// waiting for a retry included (default 1000).
	MaxAckPending int
	// Replicas of the dead-letter bucket on a cluster (default 1).
	Replicas int
}

func (o *Options) applyDefaults() error {
	if o.MaxAttempts == 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	if o.Backoff == 0 {
		o.Backoff = DefaultBackoff
	}
	if o.BackoffMax == 0 {
		o.BackoffMax = max(DefaultBackoffMax, o.Backoff)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.Concurrency == 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.AlertInterval == 0 {
		o.AlertInterval = DefaultAlertInterval
	}
	if o.MaxAckPending == 0 {
		o.MaxAckPending = DefaultMaxAckPending
	}
	if o.Replicas == 0 {
		o.Replicas = 1
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	switch {
	case o.MaxAttempts < 1:
		return fmt.Errorf("relay: max attempts %d: must be at least 1", o.MaxAttempts)
	case o.Backoff < 0 || o.BackoffMax < o.Backoff:
		return fmt.Errorf("relay: backoff %s..%s: must be positive and first <= max", o.Backoff, o.BackoffMax)
	case o.Timeout < 0 || o.Concurrency < 0 || o.AlertInterval < 0 || o.AckWait < 0 || o.MaxAckPending < 0:
		return fmt.Errorf("relay: negative timeout, concurrency, alert interval, ack wait or max ack pending")
	}
	if o.URL != "" {
		if !strings.HasPrefix(o.URL, "http://") && !strings.HasPrefix(o.URL, "https://") {
			return fmt.Errorf("relay: data platform URL %q: must be http(s)", o.URL)
		}
	}
	if o.AckWait == 0 {
		// A fact fetched from one of the streams may wait for a slot behind one fact of every
		// other stream, then take up to Timeout itself; the margin covers storing a dead letter.
		streams := len(streams())
		o.AckWait = o.Timeout*time.Duration((streams+o.Concurrency-1)/o.Concurrency+1) + 30*time.Second
	}
	return nil
}

// streams are the streams whose events may be facts: the date streams (SEATS_*), whose
// commits hold reservation events among seat events, and the payment streams.
func streams() []string {
	return append(eventstore.StreamsOf(eventstore.TypeReservation), eventstore.StreamsOf(eventstore.TypePayment)...)
}

// Relay delivers facts to the data platform. Create it with New, run it with Start, stop it
// with Close. DeadLetters and Redrive work whether or not it was started.
type Relay struct {
	js       jetstream.JetStream
	opts     Options
	endpoint string
	client   *http.Client
	log      *slog.Logger
	now      func() time.Time
	jitter   func() float64
	metrics  *metrics
	dead     *deadLetters
	alerts   *alerter
	slots    chan struct{}

	renewAfter time.Duration // renewAfter, shortened by tests
	renewals   atomic.Int64  // iterators replaced for idling

	base   context.Context // ends at Close
	cancel context.CancelFunc
	work   sync.WaitGroup // fetch loops, deliveries, redrives

	mu        sync.Mutex
	started   bool
	closed    bool
	redriving map[string]bool
}

// New returns a relay that is not running yet. It does no I/O.
func New(js jetstream.JetStream, opts Options) (*Relay, error) {
	if js == nil {
		return nil, errors.New("relay: no JetStream")
	}
	if err := opts.applyDefaults(); err != nil {
		return nil, err
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("relay: register metrics: %w", err)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = opts.Concurrency
	client := &http.Client{Transport: transport}
	base, cancel := context.WithCancel(context.Background())
	r := &Relay{
		js:       js,
		opts:     opts,
		endpoint: strings.TrimSuffix(opts.URL, "/") + "/events",
		client:   client,
		log:      opts.Logger.With("component", "relay"),
		now:      opts.Clock,
		jitter:   defaultJitter,
		metrics:  m,
		dead:     &deadLetters{js: js, replicas: opts.Replicas},
		slots:    make(chan struct{}, opts.Concurrency),
		base:     base,

		renewAfter: renewAfter,
		cancel:     cancel,

		redriving: map[string]bool{},
	}
	r.alerts = &alerter{
		url:      opts.AlertURL,
		client:   client,
		timeout:  opts.Timeout,
		interval: opts.AlertInterval,
		now:      opts.Clock,
		log:      r.log,
	}
	return r, nil
}

// Start creates (or updates) the durable consumers and starts delivering in the background.
// It returns once every consumer exists; deliveries go on until ctx ends or Close. A new
// consumer starts at the beginning of its stream, so facts committed before the relay was
// first enabled are delivered too; an existing one resumes where it was left.
func (r *Relay) Start(ctx context.Context) error {
	if r.opts.URL == "" {
		return ErrDisabled
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case r.closed:
		return ErrClosed
	case r.started:
		return errors.New("relay: already started")
	}
	run, stop := context.WithCancel(r.base)
	unhook := context.AfterFunc(ctx, stop)
	consumers := make([]jetstream.Consumer, 0, len(streams()))
	for _, stream := range streams() {
		c, err := r.consumer(ctx, stream)
		if err != nil {
			unhook()
			stop()
			return err
		}
		consumers = append(consumers, c)
	}
	r.started = true
	for i, stream := range streams() {
		r.work.Add(1)
		go func() {
			defer r.work.Done()
			r.fetchLoop(run, stream, consumers[i])
		}()
	}
	r.log.Info("relay: started", "url", r.opts.URL, "streams", len(consumers), "concurrency", r.opts.Concurrency)
	return nil
}

// consumer creates or updates the relay's durable consumer on stream.
func (r *Relay) consumer(ctx context.Context, stream string) (jetstream.Consumer, error) {
	c, err := r.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "booking: facts to the data platform",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       r.opts.AckWait,
		// The relay counts attempts itself (NumDelivered) and dead-letters; the server must
		// never drop a fact on its own.
		MaxDeliver:    -1,
		MaxAckPending: r.opts.MaxAckPending,
	})
	if err != nil {
		return nil, fmt.Errorf("relay: consumer on %s: %w", stream, err)
	}
	return c, nil
}

// wakeEvery bounds how long the fetch loop waits in one call for a message. The iterator
// decides whether to ask the server for more only when it is called; if a message arrives
// while its previous request is still being sent (an in-process server answers that fast), it
// can skip asking and wait forever for a message it never requested. Waking up and asking
// again repairs that within this bound; an idle wake-up costs no server round trip.
const wakeEvery = 250 * time.Millisecond

// renewAfter is how long a fetch loop may hear nothing before it replaces its iterator. The
// iterator's own missing-heartbeat check only runs while a call waits longer than wakeEvery,
// so this stands in for it: a pull request lost by the server (a leader change) would
// otherwise leave the loop waiting forever.
const renewAfter = time.Minute

// fetchLoop keeps an iterator on the consumer and hands its messages to dispatch, replacing
// the iterator when it fails or idles, and the consumer when it was deleted.
func (r *Relay) fetchLoop(ctx context.Context, stream string, c jetstream.Consumer) {
	for ctx.Err() == nil {
		it, err := c.Messages(jetstream.PullMaxMessages(1))
		if err == nil {
			err = r.consume(ctx, stream, it)
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			continue // renewed after idling
		}
		r.log.Warn("relay: fetch failed, retrying", "stream", stream, "err", err)
		if !r.wait(ctx, time.Second) {
			return
		}
		if nc, cerr := r.consumer(ctx, stream); cerr == nil {
			c = nc // the consumer may have been deleted under us
		}
	}
}

// consume pulls facts one at a time. One at a time keeps at most one fetched fact per stream
// waiting for a delivery slot, which is what AckWait is sized for; commits without facts
// (seat events and the saga's internal steps only) are acknowledged without taking a slot. The iterator is always ended by draining rather than
// stopping, so a message already on its way is dispatched (or, at shutdown, handed back)
// instead of vanishing until AckWait. It returns nil when it ended the iterator for idling.
func (r *Relay) consume(ctx context.Context, stream string, it jetstream.MessagesContext) error {
	stop := context.AfterFunc(ctx, it.Drain)
	defer it.Stop()
	defer stop()
	var idle time.Duration
	renewing := false
	for {
		msg, err := it.Next(jetstream.NextMaxWait(wakeEvery))
		switch {
		case errors.Is(err, nats.ErrTimeout), errors.Is(err, jetstream.ErrNoHeartbeat):
			if idle += wakeEvery; idle >= r.renewAfter && !renewing {
				renewing = true
				it.Drain()
			}
			continue
		case renewing && errors.Is(err, jetstream.ErrMsgIteratorClosed):
			r.renewals.Add(1)
			return nil
		case err != nil:
			return err
		}
		idle = 0
		r.dispatch(ctx, stream, msg)
	}
}

// dispatch acknowledges commits without facts and starts the delivery of the facts of the
// others.
func (r *Relay) dispatch(ctx context.Context, stream string, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		r.log.Error("relay: message without metadata", "stream", stream, "err", err)
		_ = msg.Term()
		return
	}
	envs, err := eventstore.DecodeCommit(msg.Data(), meta.Stream, meta.Sequence.Stream)
	if err != nil {
		// Nothing to deliver and nothing a retry could fix; the event store never writes this.
		r.log.Error("relay: undecodable commit skipped", "stream", stream, "seq", meta.Sequence.Stream, "err", err)
		_ = msg.TermWithReason("undecodable commit")
		return
	}
	var facts []pendingFact
	var seats map[string][]int
	seatsRead := false
	for _, env := range envs {
		if !IsFact(env.Type) {
			continue // seat events and the saga's internal steps
		}
		if env.AggregateID == "" {
			// A date's subject names no reservation, so it cannot stand in for one.
			if ref, ok := eventstore.RefFromSubject(msg.Subject()); ok && idKeys[ref.Type] != "" {
				env.AggregateType, env.AggregateID = ref.Type, ref.ID
			}
		}
		if env.AggregateType == eventstore.TypeReservation && !seatsRead {
			// Read once per commit, and only for commits with a reservation fact.
			seatsRead = true
			if seats, err = seatNosOf(envs); err != nil {
				r.log.Error("relay: a seat event of a commit not readable, its facts lack that seat", "stream", stream, "seq", meta.Sequence.Stream, "err", err)
			}
		}
		f, err := factOf(env, seats[env.AggregateID])
		if err != nil {
			r.log.Error("relay: fact not encodable, skipped", "stream", stream, "seq", env.Sequence, "eventId", env.EventID, "err", err)
			continue
		}
		facts = append(facts, pendingFact{env: env, fact: f})
	}
	if len(facts) == 0 {
		_ = msg.Ack()
		return
	}
	select {
	case r.slots <- struct{}{}:
	case <-ctx.Done():
		handBack(msg)
		return
	}
	r.work.Add(1)
	go func() {
		defer r.work.Done()
		defer func() { <-r.slots }()
		r.settle(ctx, msg, facts, int(meta.NumDelivered))
	}()
}

// pendingFact is one fact of a commit with the event it was made from.
type pendingFact struct {
	env  eventstore.Envelope
	fact Fact
}

// handBackDelay is how long a fact handed back at shutdown waits before it is redelivered.
// Handing it back at once could deliver it to a pull request of this very relay that the
// server has not yet seen withdrawn, where it would sit unread until AckWait; a moment's wait
// lets the withdrawal arrive first, and a relay elsewhere still gets the fact at once after.
const handBackDelay = 200 * time.Millisecond

// handBack returns an unsettled fact to JetStream for the next relay, rather than letting it
// wait out AckWait.
func handBack(msg jetstream.Msg) { _ = msg.NakWithDelay(handBackDelay) }

// settle makes one delivery attempt of every fact of a commit and tells JetStream what
// became of the commit: acknowledged when each fact was delivered or dead-lettered, handed
// back for another attempt while one of them may still get through. A fact delivered before a
// retry of its commit is posted again then; the platform dedups it by its Idempotency-Key.
func (r *Relay) settle(ctx context.Context, msg jetstream.Msg, facts []pendingFact, attempt int) {
	var failed []pendingFact
	var errs []error
	var retry *result
	for _, pf := range facts {
		res := r.post(ctx, pf.fact)
		switch {
		case res.outcome == delivered:
			r.delivered(pf.fact)
		case ctx.Err() != nil:
			// Shutting down mid-request: whatever the platform saw, the next relay tries again.
			handBack(msg)
			return
		case res.outcome == retryable && attempt < r.opts.MaxAttempts:
			if retry == nil || res.retryAfter > retry.retryAfter {
				retry = &res
			}
			r.log.Debug("relay: delivery failed, will retry", "eventId", pf.fact.EventID, "type", pf.fact.Type, "attempt", attempt, "err", res.err)
		default:
			failed, errs = append(failed, pf), append(errs, res.err)
		}
	}
	if retry != nil {
		r.metrics.retried.Inc()
		delay := backoff(attempt, r.opts.Backoff, r.opts.BackoffMax, retry.retryAfter, r.jitter)
		if err := msg.NakWithDelay(delay); err != nil {
			r.log.Warn("relay: nak failed; redelivered after ack wait", "eventId", facts[0].fact.EventID, "err", err)
		}
		return
	}
	for i, pf := range failed {
		rec := deadLetterRecord{
			DeadLetter: DeadLetter{
				ID:        deadLetterID(pf.fact.EventID),
				EventID:   pf.fact.EventID,
				EventType: pf.fact.Type,
				Attempts:  attempt,
				LastError: errs[i].Error(),
				FailedAt:  r.now().UTC(),
			},
			Fact:     pf.fact,
			Stream:   pf.env.Stream,
			Sequence: pf.env.Sequence,
		}
		if err := r.dead.put(ctx, rec); err != nil {
			// Not stored, so not acknowledged: the fact comes back and fails again later.
			if ctx.Err() != nil {
				handBack(msg)
				return
			}
			r.log.Error("relay: dead letter not stored", "eventId", pf.fact.EventID, "err", err)
			_ = msg.NakWithDelay(r.opts.BackoffMax)
			return
		}
		r.deadLettered(rec.DeadLetter)
	}
	if len(failed) > 0 {
		if err := msg.TermWithReason("dead letter"); err != nil {
			r.log.Warn("relay: term failed", "eventId", failed[0].fact.EventID, "err", err)
		}
		return
	}
	// A plain ack, not a confirmed one: waiting for the confirmation cost more than half the
	// throughput at low concurrency, and a lost ack only costs a duplicate that the platform
	// dedups.
	if err := msg.Ack(); err != nil {
		r.log.Warn("relay: ack failed", "eventId", facts[0].fact.EventID, "err", err)
	}
}

func (r *Relay) delivered(f Fact) {
	r.metrics.delivered.Inc()
	r.metrics.lag.Observe(max(r.now().Sub(f.OccurredAt), 0).Seconds())
}

func (r *Relay) deadLettered(dl DeadLetter) {
	r.metrics.deadLettered.Inc()
	r.log.Warn("relay: fact dead-lettered", "id", dl.ID, "eventId", dl.EventID, "type", dl.EventType, "attempts", dl.Attempts, "err", dl.LastError)
	r.alerts.notify(dl)
}

// result is the outcome of one POST.
type result struct {
	outcome    outcome
	err        error
	retryAfter time.Duration
}

// post sends one fact, bounded by Timeout.
func (r *Relay) post(ctx context.Context, f Fact) result {
	body, err := json.Marshal(f)
	if err != nil {
		return result{outcome: permanent, err: fmt.Errorf("encode fact: %w", err)}
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.endpoint, bytes.NewReader(body))
	if err != nil {
		return result{outcome: permanent, err: fmt.Errorf("build request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", f.EventID)
	req.Header.Set("User-Agent", "booking-relay/1")
	resp, err := r.client.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return result{outcome: retryable, err: fmt.Errorf("POST %s: timed out after %s", r.endpoint, r.opts.Timeout)}
		}
		return result{outcome: retryable, err: fmt.Errorf("POST %s: %w", r.endpoint, err)}
	}
	defer resp.Body.Close()
	// Read a little of the answer for the error message; draining the rest lets the
	// connection be reused.
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	o := classify(resp.StatusCode)
	if o == delivered {
		return result{outcome: delivered}
	}
	msg := strings.TrimSpace(string(snippet))
	if msg != "" {
		msg = ": " + msg
	}
	return result{
		outcome:    o,
		err:        fmt.Errorf("POST %s: status %d%s", r.endpoint, resp.StatusCode, msg),
		retryAfter: retryAfter(resp.Header),
	}
}

// DeadLetters lists the dead letters, oldest failure first; empty (not nil) when there are none.
func (r *Relay) DeadLetters(ctx context.Context) ([]DeadLetter, error) {
	return r.dead.list(ctx)
}

// Redrive delivers a dead letter's fact again, in the background: it returns once the
// delivery is under way (the API answers 202), or ErrDeadLetterNotFound for an unknown id.
// The entry leaves the list when the platform accepts the fact; if every attempt fails again,
// it stays with the new attempts and error, and a new alert goes out. A redrive interrupted
// by Close or a crash leaves the entry as it was, to be redriven again. The id is looked up
// first, so an unknown one is ErrDeadLetterNotFound even on a relay that cannot deliver
// (ErrDisabled, ErrClosed): what does not exist is never reported as a relay that is down.
func (r *Relay) Redrive(ctx context.Context, id string) error {
	rec, rev, err := r.dead.get(ctx, id)
	if err != nil {
		return err
	}
	if r.opts.URL == "" {
		return fmt.Errorf("redrive %s: %w", id, ErrDisabled)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return ErrClosed
	}
	if r.redriving[rec.ID] {
		return nil // already under way; one delivery is enough
	}
	r.redriving[rec.ID] = true
	r.work.Add(1)
	go func() {
		defer r.work.Done()
		r.redrive(r.base, rec, rev)
		r.mu.Lock()
		delete(r.redriving, rec.ID)
		r.mu.Unlock()
	}()
	return nil
}

// redrive retries one dead letter in this process with the relay's backoff. The fact is no
// longer in a consumer (it was acknowledged when it was dead-lettered), so the waits are timers
// here; the stored entry is what makes the redrive durable.
func (r *Relay) redrive(ctx context.Context, rec deadLetterRecord, rev uint64) {
	var res result
	attempts := 0
	for attempts < r.opts.MaxAttempts {
		attempts++
		slotted := false
		select {
		case r.slots <- struct{}{}:
			slotted = true
		case <-ctx.Done():
		}
		if !slotted {
			return
		}
		res = r.post(ctx, rec.Fact)
		<-r.slots
		if ctx.Err() != nil {
			return
		}
		if res.outcome == delivered {
			r.delivered(rec.Fact)
			if err := r.dead.remove(ctx, rec.ID, rev); err != nil {
				r.log.Warn("relay: redriven fact delivered but its dead letter stays", "id", rec.ID, "err", err)
			}
			r.log.Info("relay: dead letter redriven", "id", rec.ID, "eventId", rec.EventID, "attempts", attempts)
			return
		}
		if res.outcome == permanent || attempts == r.opts.MaxAttempts {
			break
		}
		r.metrics.retried.Inc()
		if !r.wait(ctx, backoff(attempts, r.opts.Backoff, r.opts.BackoffMax, res.retryAfter, r.jitter)) {
			return
		}
	}
	rec.Attempts += attempts
	rec.LastError = res.err.Error()
	rec.FailedAt = r.now().UTC()
	if err := r.dead.put(ctx, rec); err != nil {
		r.log.Error("relay: dead letter not updated after a failed redrive", "id", rec.ID, "err", err)
	}
	r.deadLettered(rec.DeadLetter)
}

// wait sleeps for d unless ctx ends first; it reports whether ctx is still alive.
func (r *Relay) wait(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Close stops fetching, cancels the POSTs in flight (their facts are handed back to JetStream
// for the next relay), sends a last alert summary if one is pending and waits for all of it.
// It is safe to call more than once.
func (r *Relay) Close() {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return
	}
	r.closed = true
	r.mu.Unlock()
	r.cancel()
	r.work.Wait()
	r.alerts.close()
	r.client.CloseIdleConnections()
}
