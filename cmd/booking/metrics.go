package main

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/booking-engine/booking/projections"
)

// metrics are the engine's own series; the relay and the HTTP layer register theirs beside.
type metrics struct {
	appends   *prometheus.HistogramVec
	conflicts *prometheus.CounterVec
	reg       prometheus.Registerer
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		reg: reg,
		appends: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "booking_eventstore_append_seconds",
			Help:    "Latency of successful appends to the event store, by aggregate type.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"aggregate"}),
		conflicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "booking_eventstore_conflicts_total",
			Help: "Optimistic-concurrency conflicts on append (each is retried), by aggregate type.",
		}, []string{"aggregate"}),
	}
	reg.MustRegister(m.appends, m.conflicts)
	return m
}

// Appended implements app.Observer.
func (m *metrics) Appended(aggregateType string, seconds float64) {
	m.appends.WithLabelValues(aggregateType).Observe(seconds)
}

// Conflict implements app.Observer.
func (m *metrics) Conflict(aggregateType string) { m.conflicts.WithLabelValues(aggregateType).Inc() }

// watchProjections exposes each projection's checkpoint, head and lag, read at scrape time.
func (m *metrics) watchProjections(e *projections.Engine) {
	m.reg.MustRegister(&projectionCollector{e: e,
		checkpoint: prometheus.NewDesc("booking_projection_checkpoint", "Last stream sequence applied by a projection (summed over its streams).", []string{"projection"}, nil),
		head:       prometheus.NewDesc("booking_projection_head", "Newest stream sequence a projection reads (summed over its streams).", []string{"projection"}, nil),
		lag:        prometheus.NewDesc("booking_projection_lag_events", "Events a projection has yet to apply.", []string{"projection"}, nil),
	})
}

type projectionCollector struct {
	e                     *projections.Engine
	checkpoint, head, lag *prometheus.Desc
}

func (c *projectionCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.checkpoint
	ch <- c.head
	ch <- c.lag
}

func (c *projectionCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.e.Status(ctx)
	if err != nil {
		return
	}
	for _, s := range st {
		ch <- prometheus.MustNewConstMetric(c.checkpoint, prometheus.GaugeValue, float64(s.Checkpoint), s.Name)
		ch <- prometheus.MustNewConstMetric(c.head, prometheus.GaugeValue, float64(s.Head), s.Name)
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(s.Lag), s.Name)
	}
}
