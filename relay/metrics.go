package relay

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/booking-engine/booking/internal/promreg"
)

// metrics are the relay's Prometheus series.
type metrics struct {
	delivered    prometheus.Counter
	retried      prometheus.Counter
	deadLettered prometheus.Counter
	lag          prometheus.Histogram
}

// newMetrics makes the relay's series and registers them with reg (none when reg is nil); a
// registry that already has them (a second relay: a restart inside one process, tests)
// shares them. It returns the registry's refusal as it is.
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
	if m.delivered, err = promreg.Shared(reg, m.delivered); err != nil {
		return nil, err
	}
	if m.retried, err = promreg.Shared(reg, m.retried); err != nil {
		return nil, err
	}
	if m.deadLettered, err = promreg.Shared(reg, m.deadLettered); err != nil {
		return nil, err
	}
	if m.lag, err = promreg.Shared(reg, m.lag); err != nil {
		return nil, err
	}
	return m, nil
}
