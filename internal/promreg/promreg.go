// Package promreg registers Prometheus collectors so that a second registration of the same
// series shares the first one instead of failing: a second API server or relay on one
// registry (a restart inside one process, tests) counts into the series already exported.
package promreg

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// Shared registers c with reg and returns it, or returns the collector of the same type
// already registered under its name. Any other refusal of the registry (another kind of
// collector, or the same name with other labels or help) is returned as it is, unwrapped, for
// the caller to name itself in.
func Shared[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
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
	return c, err
}
