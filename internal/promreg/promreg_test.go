package promreg_test

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/booking-engine/booking/internal/promreg"
)

func counter(help string) prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{Name: "test_total", Help: help})
}

func TestShared(t *testing.T) {
	tests := []struct {
		name      string
		already   prometheus.Collector // registered first; nil: none
		wantFirst bool                 // Shared returns the collector registered first
		wantErr   bool
	}{
		{name: "a new series is registered and returned"},
		{name: "a second counter of the same series gets the first one back", already: counter("h"), wantFirst: true},
		{name: "a histogram under the counter's name is refused", already: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "test_total", Help: "h"}), wantErr: true},
		{name: "a counter of the same name with other help is refused", already: counter("other"), wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			if tt.already != nil {
				reg.MustRegister(tt.already)
			}
			c := counter("h")
			got, err := promreg.Shared(reg, c)
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, want an error: %v", err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			want := prometheus.Collector(c)
			if tt.wantFirst {
				want = tt.already
			}
			if prometheus.Collector(got) != want {
				t.Fatalf("Shared returned %p, want %p", got, want)
			}
			// The returned counter is the one the registry exports.
			got.Inc()
			mfs, err := reg.Gather()
			if err != nil {
				t.Fatal(err)
			}
			if len(mfs) != 1 || mfs[0].GetMetric()[0].GetCounter().GetValue() != 1 {
				t.Fatalf("the registry exports %v, want test_total 1", mfs)
			}
		})
	}
}
