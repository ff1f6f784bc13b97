package main

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/api"
	"github.com/booking-engine/booking/app"
	"github.com/booking-engine/booking/eventstore"
	"github.com/booking-engine/booking/projections"
)

// metrics are the engine's own series; the relay (booking_relay_*) and the HTTP layer
// (booking_http_*) register theirs on the same registry. docs/OPERATIONS.md explains each.
//
// The booking_holds_* and booking_payments_* counters count events committed to the log after
// this process started, as its read models apply them (projections.Engine.Subscribe). They are
// per-process like every Prometheus counter: they start at 0 on every start and do not re-count
// history, not even when deleted read models are rebuilt. Every instance reads the whole log, so
// on a cluster each instance counts every instance's events: aggregate with max, not sum.
type metrics struct {
	reg       prometheus.Registerer
	appends   *prometheus.HistogramVec
	conflicts *prometheus.CounterVec

	holds             prometheus.Counter
	holdsExpired      prometheus.Counter
	holdsCancelled    prometheus.Counter
	paymentsCompleted prometheus.Counter
	paymentsFailed    *prometheus.CounterVec
	paymentsReversed  prometheus.Counter
	paymentsRefunded  prometheus.Counter

	// scrapeErrors counts scrapes that could not read the read models or the stream heads;
	// their series are left out of that scrape rather than failing the whole of /metrics.
	scrapeErrors *prometheus.CounterVec

	// startHeads are the stream heads when the process started; events at or below them are
	// history and not counted. Written once before the engine starts, then only read.
	startHeads map[string]uint64
}

// appendBuckets span an append without fsync (~100 µs) to a stalled cluster (~3 s).
var appendBuckets = prometheus.ExponentialBuckets(0.0001, 2, 16)

func newMetrics(reg prometheus.Registerer) *metrics {
	counter := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &metrics{
		reg: reg,
		appends: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "booking_eventstore_append_duration_seconds",
			Help:    "Latency of successful appends to the event store, by aggregate type; _count is the number of appends.",
			Buckets: appendBuckets,
		}, []string{"aggregate"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "booking_eventstore_conflicts_total",
			Help: "Optimistic-concurrency conflicts on append (each is retried), by aggregate type.",
		}, []string{"aggregate"}),
		holds:             counter("booking_holds_total", "Seat holds placed (ReservationHeld events)."),
		holdsExpired:      counter("booking_holds_expired_total", "Holds that lapsed unpaid (ReservationExpired events)."),
		holdsCancelled:    counter("booking_holds_cancelled_total", "Holds cancelled by their owner (ReservationCancelled with reason CANCELLED)."),
		paymentsCompleted: counter("booking_payments_completed_total", "Payments completed (PaymentCompleted events)."),
		paymentsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "booking_payments_failed_total",
			Help: "Payments failed (PaymentFailed events), by reason: INSUFFICIENT_POINTS, RESERVATION_NOT_PAYABLE or OTHER.",
		}, []string{"reason"}),
		paymentsReversed: counter("booking_payments_reversed_total", "Debits reversed because a later step of the payment failed (PointsRefunded with reason REVERSAL)."),
		paymentsRefunded: counter("booking_payments_refunded_total", "Completed payments refunded by an admin (PaymentRefunded events)."),
		scrapeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "booking_metrics_scrape_errors_total",
			Help: "Scrapes whose series of one source (projections, holds) were left out because it could not be read.",
		}, []string{"source"}),
	}
	reg.MustRegister(m.appends, m.conflicts, m.holds, m.holdsExpired, m.holdsCancelled,
		m.paymentsCompleted, m.paymentsFailed, m.paymentsReversed, m.paymentsRefunded, m.scrapeErrors)
	// Both reasons exist from the start, so rate() and alerts see a 0 instead of no series.
	for _, r := range []string{aggregates.FailInsufficientPoints, aggregates.FailNotPayable} {
		m.paymentsFailed.WithLabelValues(r)
	}
	return m
}

// Appended implements app.Observer.
func (m *metrics) Appended(aggregateType string, seconds float64) {
	m.appends.WithLabelValues(aggregateType).Observe(seconds)
}

// Conflict implements app.Observer.
func (m *metrics) Conflict(aggregateType string) { m.conflicts.WithLabelValues(aggregateType).Inc() }

// groupCommitStatser is the part of the event store the batch counters read.
type groupCommitStatser interface {
	GroupCommitStats() eventstore.GroupCommitStats
}

// watchGroupCommit exports the store's group-commit counters, read at scrape time.
func (m *metrics) watchGroupCommit(st groupCommitStatser) {
	counter := func(name, help string, read func(eventstore.GroupCommitStats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 {
			return float64(read(st.GroupCommitStats()))
		})
	}
	m.reg.MustRegister(
		counter("booking_eventstore_batches_total", "Atomic batches committed by group commit (one fsync each).",
			func(s eventstore.GroupCommitStats) uint64 { return s.Batches }),
		counter("booking_eventstore_batched_appends_total", "Appends committed inside atomic batches; the rest were published alone.",
			func(s eventstore.GroupCommitStats) uint64 { return s.Appends }),
		counter("booking_eventstore_batch_failures_total", "Atomic batches the server refused; their appends were published again alone.",
			func(s eventstore.GroupCommitStats) uint64 { return s.Failures }),
	)
}

// watchSeatFeed exports the seat-map streams' gauges, read at scrape time.
func (m *metrics) watchSeatFeed(f *api.SeatFeed) {
	m.reg.MustRegister(
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "booking_seat_streams_open", Help: "Open seat-map streams (GET .../seats/stream)."},
			func() float64 { return float64(f.Streams()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "booking_seat_stream_frames_total", Help: "Frames and snapshots written to seat-map streams (at most one write per stream and frame)."},
			func() float64 { return float64(f.FramesSent()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "booking_seat_stream_snapshots_resent_total", Help: "Fresh snapshots sent to seat-map streams that fell behind the frame backlog."},
			func() float64 { return float64(f.SnapshotsResent()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "booking_seat_stream_frame_interval_seconds", Help: "Current frame interval of the seat-map streams; it grows with their number."},
			func() float64 { return f.FrameInterval().Seconds() }),
	)
}

// queueStatser is the part of app.Service the queue gauges read.
type queueStatser interface{ QueueStats() app.QueueStats }

// heldSeatser is the part of projections.Engine the holds gauge reads.
type heldSeatser interface {
	HeldSeats(ctx context.Context) ([]projections.HeldSeat, error)
}

// watch connects the series that read the engine: the event counters (subscribed to e, so
// call it before e.Start), the projections' progress, the queue and the active holds. store
// gives the stream heads at start, below which events are history and not counted.
func (m *metrics) watch(ctx context.Context, store eventstore.Reader, e *projections.Engine, q queueStatser) error {
	if err := m.markStart(ctx, store); err != nil {
		return err
	}
	e.Subscribe(m.onEvent)
	m.reg.MustRegister(newProjectionCollector(e, m.scrapeErrors.WithLabelValues("projections")),
		newLiveCollector(q, e, m.scrapeErrors.WithLabelValues("holds")))
	return nil
}

// markStart records the head of every stream, so onEvent counts only what comes after.
func (m *metrics) markStart(ctx context.Context, store eventstore.Reader) error {
	heads := map[string]uint64{}
	for _, s := range store.Streams() {
		h, err := store.Head(ctx, s)
		if err != nil {
			return fmt.Errorf("head of %s: %w", s, err)
		}
		heads[s] = h
	}
	m.startHeads = heads
	return nil
}

// onEvent counts one applied event. It runs on the projections' goroutines, so it only
// touches counters; it decodes just the three event types whose reason it needs.
func (m *metrics) onEvent(env eventstore.Envelope) {
	if env.Sequence <= m.startHeads[env.Stream] {
		return
	}
	switch env.Type {
	case aggregates.ReservationHeld{}.EventType():
		m.holds.Inc()
	case aggregates.ReservationExpired{}.EventType():
		m.holdsExpired.Inc()
	case aggregates.ReservationCancelled{}.EventType():
		if ev, err := aggregates.DecodeKnown(env.Decoded, env.Type, env.Data); err == nil && ev.(aggregates.ReservationCancelled).Reason == aggregates.ReleaseCancelled {
			m.holdsCancelled.Inc()
		}
	case aggregates.PaymentCompleted{}.EventType():
		m.paymentsCompleted.Inc()
	case aggregates.PaymentFailed{}.EventType():
		reason := "OTHER"
		if ev, err := aggregates.DecodeKnown(env.Decoded, env.Type, env.Data); err == nil {
			if r := ev.(aggregates.PaymentFailed).Reason; r == aggregates.FailInsufficientPoints || r == aggregates.FailNotPayable {
				reason = r
			}
		}
		m.paymentsFailed.WithLabelValues(reason).Inc()
	case aggregates.PointsRefunded{}.EventType():
		if ev, err := aggregates.DecodeKnown(env.Decoded, env.Type, env.Data); err == nil && ev.(aggregates.PointsRefunded).Reason == aggregates.RefundReversal {
			m.paymentsReversed.Inc()
		}
	case aggregates.PaymentRefunded{}.EventType():
		m.paymentsRefunded.Inc()
	}
}

// watchReady exposes readiness (the same test as GET /readyz) as a gauge.
func (m *metrics) watchReady(ready func() bool) {
	m.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "booking_ready",
		Help: "1 when the event store is reachable and the read models caught up at start-up (GET /readyz answers 200), else 0.",
	}, func() float64 {
		if ready() {
			return 1
		}
		return 0
	}))
}

// scrapeTimeout bounds what one scrape may spend reading the read models and stream heads.
const scrapeTimeout = 2 * time.Second

// projectionCollector exposes each projection's checkpoint, head and lag, read at scrape time.
type projectionCollector struct {
	e                     *projections.Engine
	errs                  prometheus.Counter
	checkpoint, head, lag *prometheus.Desc
}

func newProjectionCollector(e *projections.Engine, errs prometheus.Counter) *projectionCollector {
	return &projectionCollector{e: e, errs: errs,
		checkpoint: prometheus.NewDesc("booking_projection_checkpoint", "Last stream sequence applied by a projection (summed over its streams).", []string{"projection"}, nil),
		head:       prometheus.NewDesc("booking_projection_head", "Newest stream sequence a projection reads (summed over its streams).", []string{"projection"}, nil),
		lag:        prometheus.NewDesc("booking_projection_lag_events", "Events a projection has yet to apply.", []string{"projection"}, nil),
	}
}

func (c *projectionCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.checkpoint
	ch <- c.head
	ch <- c.lag
}

func (c *projectionCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	st, err := c.e.Status(ctx)
	if err != nil {
		// No series rather than stale ones (an alert on absent lag catches a store that is
		// down), and the rest of /metrics still answers.
		c.errs.Inc()
		return
	}
	for _, s := range st {
		ch <- prometheus.MustNewConstMetric(c.checkpoint, prometheus.GaugeValue, float64(s.Checkpoint), s.Name)
		ch <- prometheus.MustNewConstMetric(c.head, prometheus.GaugeValue, float64(s.Head), s.Name)
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(s.Lag), s.Name)
	}
}

// liveCollector exposes the waiting queue and the active holds, read at scrape time.
//
// Active holds are counted from the seats read model's held-seat index, which holds only the
// seats now HELD (not the catalog): a scrape costs one bbolt read of as many entries as there
// are holds. Holds are the one figure that events counted since start cannot give, because
// holds placed before a restart are still active after it.
type liveCollector struct {
	q                         queueStatser
	held                      heldSeatser
	errs                      prometheus.Counter
	waiting, admitted, issued *prometheus.Desc
	holdsActive               *prometheus.Desc
}

func newLiveCollector(q queueStatser, held heldSeatser, errs prometheus.Counter) *liveCollector {
	return &liveCollector{q: q, held: held, errs: errs,
		waiting:     prometheus.NewDesc("booking_queue_waiting", "Queue tokens issued and not yet admitted.", nil, nil),
		admitted:    prometheus.NewDesc("booking_queue_admitted", "Queue tokens admitted so far (ACTIVE, expired or revoked since).", nil, nil),
		issued:      prometheus.NewDesc("booking_queue_issued", "Queue tokens ever issued (the length of the queue's history).", nil, nil),
		holdsActive: prometheus.NewDesc("booking_holds_active", "Seats HELD now (held and neither sold, released nor expired yet).", nil, nil),
	}
}

func (c *liveCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.waiting
	ch <- c.admitted
	ch <- c.issued
	ch <- c.holdsActive
}

func (c *liveCollector) Collect(ch chan<- prometheus.Metric) {
	qs := c.q.QueueStats()
	ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(qs.Waiting))
	ch <- prometheus.MustNewConstMetric(c.admitted, prometheus.GaugeValue, float64(qs.Admitted))
	ch <- prometheus.MustNewConstMetric(c.issued, prometheus.GaugeValue, float64(qs.Issued))
	ctx, cancel := context.WithTimeout(context.Background(), scrapeTimeout)
	defer cancel()
	held, err := c.held.HeldSeats(ctx)
	if err != nil {
		c.errs.Inc()
		return
	}
	ch <- prometheus.MustNewConstMetric(c.holdsActive, prometheus.GaugeValue, float64(len(held)))
}
