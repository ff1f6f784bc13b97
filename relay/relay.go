// Package relay delivers reservation and payment facts to the external data platform after
// they are committed. A stand-in platform for local runs and tests is relay/mockplatform.
//
// The event log is the outbox: a durable JetStream pull consumer on every stream that holds
// reservation or payment events (SEATS_*, where a concert date's commits carry its
// reservations' and their payments' events beside its seats') reads committed events, so the relay
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
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

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

// streams are the streams whose events may be facts, each once: the date streams (SEATS_*),
// whose commits hold reservation and payment events among seat events.
func streams() []string {
	return eventstore.StreamsOfTypes(eventstore.TypeReservation, eventstore.TypePayment)
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
