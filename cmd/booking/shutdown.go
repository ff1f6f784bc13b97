package main

import (
	"fmt"
	"log/slog"
	"time"
)

// The bounds of a stop (SIGTERM, SIGINT). Requests are bounded by --request-timeout, so the
// HTTP server waits that long for them, plus shutdownAnswerGrace to write their answers; the
// stages after it (queue snapshot, relay, read models' final sync, idempotency store, NATS)
// share shutdownCloseBudget. A stage that overruns its deadline is logged and left behind,
// and the process exits non-zero: it is bounded, not clean.
const (
	shutdownAnswerGrace = time.Second
	shutdownCloseBudget = 3 * time.Second
	// shutdownStageFloor is the least a stage gets, even when an earlier one used up the
	// budget: closing NATS after a stuck stage is what lets the stuck one end.
	shutdownStageFloor = 200 * time.Millisecond
	// shutdownHTTPWithoutTimeout is how long the HTTP server waits for requests when
	// --request-timeout is 0 (requests unbounded).
	shutdownHTTPWithoutTimeout = 10 * time.Second
	// shutdownLogEvery is how often a slow stage logs what it is waiting for.
	shutdownLogEvery = time.Second
)

// shutdownDeadlines returns when the HTTP server must have stopped and when every other
// stage must have, for a stop that starts at start.
func shutdownDeadlines(start time.Time, requestTimeout time.Duration) (httpDone, allDone time.Time) {
	wait := requestTimeout
	if wait <= 0 {
		wait = shutdownHTTPWithoutTimeout
	}
	httpDone = start.Add(wait + shutdownAnswerGrace)
	return httpDone, httpDone.Add(shutdownCloseBudget)
}

// shutdownStage is one step of a stop: what it is called, what it waits for (for the log)
// and when it must be done.
type shutdownStage struct {
	name       string
	waitingFor string
	deadline   time.Time
	// state adds attributes to the slow-stage log (e.g. the open connections); may be nil.
	state func() []any
}

// run runs step and waits for it until the stage's deadline (or shutdownStageFloor, when
// that is later). While it waits it logs, every logEvery, what it is waiting for; at the
// deadline it gives up and returns an error, leaving step running.
func (st shutdownStage) run(log *slog.Logger, logEvery time.Duration, step func() error) error {
	start := time.Now()
	deadline := st.deadline
	if floor := start.Add(shutdownStageFloor); deadline.Before(floor) {
		deadline = floor
	}
	done := make(chan error, 1)
	go func() { done <- step() }()
	tick := time.NewTicker(logEvery)
	defer tick.Stop()
	timeout := time.NewTimer(time.Until(deadline))
	defer timeout.Stop()
	attrs := func() []any {
		a := []any{"stage", st.name, "waiting_for", st.waitingFor,
			"waited", time.Since(start).Round(time.Millisecond), "deadline_in", time.Until(deadline).Round(time.Millisecond)}
		if st.state != nil {
			a = append(a, st.state()...)
		}
		return a
	}
	for {
		select {
		case err := <-done:
			if err != nil {
				return fmt.Errorf("stop %s: %w", st.name, err)
			}
			return nil
		case <-tick.C:
			log.Warn("shutdown: still waiting", attrs()...)
		case <-timeout.C:
			log.Error("shutdown: gave up waiting", attrs()...)
			return fmt.Errorf("stop %s: still waiting for %s after %s", st.name, st.waitingFor, time.Since(start).Round(time.Millisecond))
		}
	}
}
