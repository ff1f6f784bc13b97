package relay

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the relay's Prometheus series.
type metrics struct {
	delivered    prometheus.Counter
	retried      prometheus.Counter
	deadLettered prometheus.Counter
	lag          prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		delivered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "booking_relay_delivered_total",
			Help: "Facts the data platform accepted (2xx), redrives included.",
		}),
		retried: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "booking_relay_retried_total",
			Help: "Delivery attempts that failed and were scheduled for another attempt.",
		}),
		deadLettered: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "booking_relay_dead_lettered_total",
			Help: "Facts that went to the dead-letter list.",
		}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "booking_relay_delivery_lag_seconds",
			Help: "Time from a fact's occurredAt to its delivery to the data platform.",
			// 5 ms to about 11 minutes: a healthy relay lands in the first buckets, an outage
			// with the default backoff (up to 8 attempts, 1 minute apart at most) in the last.
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 18),
		}),
	}
	if reg == nil {
		return m, nil
	}
	var err error
	if m.delivered, err = register(reg, m.delivered); err != nil {
		return nil, err
	}
	if m.retried, err = register(reg, m.retried); err != nil {
		return nil, err
	}
	if m.deadLettered, err = register(reg, m.deadLettered); err != nil {
		return nil, err
	}
	if m.lag, err = register(reg, m.lag); err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the collector already registered under its name: a second
// relay on one registry (a restart inside one process, tests) shares the existing series.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	if err == nil {
		return c, nil
	}
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, fmt.Errorf("relay: register metrics: %w", err)
}
