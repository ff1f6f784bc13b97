package loadgen

import (
	"context"
	"fmt"
	"time"
)

// Rebuilder is what the rebuild benchmark measures: the engine wires its projections behind
// it, so that this package stays a client that imports nothing of the engine.
type Rebuilder interface {
	// Rebuild rebuilds every read model from the event log and reports how many events it
	// applied and how long that took.
	Rebuild(ctx context.Context) (events int, dur time.Duration, err error)
	// RawReplay reads the same events without applying them, the upper bound for Rebuild.
	RawReplay(ctx context.Context) (events int, dur time.Duration, err error)
}

// RebuildBench times a raw replay and then a rebuild, and reports both rates side by side.
func RebuildBench(ctx context.Context, r Rebuilder) (Result, error) {
	res := Result{Scenario: ScenarioRebuild}
	rawEvents, rawDur, err := r.RawReplay(ctx)
	if err != nil {
		return res, fmt.Errorf("raw replay: %w", err)
	}
	events, dur, err := r.Rebuild(ctx)
	if err != nil {
		return res, fmt.Errorf("rebuild: %w", err)
	}
	res.Events, res.DurationSec = events, dur.Seconds()
	res.EventsPerSec = perSec(int64(events), res.DurationSec)
	res.RawEvents, res.RawDurationSec = rawEvents, rawDur.Seconds()
	res.RawEventsPerSec = perSec(int64(rawEvents), res.RawDurationSec)
	// The throughput fields carry the rebuild too, so that one JSON reader serves every
	// scenario; there is no per-request latency to report.
	res.Requests, res.Accepted, res.AcceptedPerSec = int64(events), int64(events), res.EventsPerSec
	return res, nil
}
