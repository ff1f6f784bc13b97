package app

import "time"

// Latency of appends is measured on the monotonic clock: it is a metric, not domain time,
// so it does not go through the injected Clock.
func nowMono() time.Time { return time.Now() }

func sinceMono(t time.Time) float64 { return time.Since(t).Seconds() }
