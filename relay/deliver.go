package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// settle makes one delivery attempt of every fact of a commit and tells JetStream what
// became of the commit: acknowledged when each fact was delivered or dead-lettered, handed
// back for another attempt while one of them may still get through. A fact delivered before a
// retry of its commit is posted again then; the platform dedups it by its Idempotency-Key.
func (r *Relay) settle(ctx context.Context, msg jetstream.Msg, facts []pendingFact, attempt int) {
	var failed []pendingFact
	var errs []error
	var retry *result
	for _, pf := range facts {
		res := r.post(ctx, pf.fact)
		switch {
		case res.outcome == delivered:
			r.delivered(pf.fact)
		case ctx.Err() != nil:
			// Shutting down mid-request: whatever the platform saw, the next relay tries again.
			handBack(msg)
			return
		case res.outcome == retryable && attempt < r.opts.MaxAttempts:
			if retry == nil || res.retryAfter > retry.retryAfter {
				retry = &res
			}
			r.log.Debug("relay: delivery failed, will retry", "eventId", pf.fact.EventID, "type", pf.fact.Type, "attempt", attempt, "err", res.err)
		default:
			failed, errs = append(failed, pf), append(errs, res.err)
		}
	}
	if retry != nil {
		r.metrics.retried.Inc()
		delay := backoff(attempt, r.opts.Backoff, r.opts.BackoffMax, retry.retryAfter, r.jitter)
		if err := msg.NakWithDelay(delay); err != nil {
			r.log.Warn("relay: nak failed; redelivered after ack wait", "eventId", facts[0].fact.EventID, "err", err)
		}
		return
	}
	for i, pf := range failed {
		rec := deadLetterRecord{
			DeadLetter: DeadLetter{
				ID:        deadLetterID(pf.fact.EventID),
				EventID:   pf.fact.EventID,
				EventType: pf.fact.Type,
				Attempts:  attempt,
				LastError: errs[i].Error(),
				FailedAt:  r.now().UTC(),
			},
			Fact:     pf.fact,
			Stream:   pf.env.Stream,
			Sequence: pf.env.Sequence,
		}
		if err := r.dead.put(ctx, rec); err != nil {
			// Not stored, so not acknowledged: the fact comes back and fails again later.
			if ctx.Err() != nil {
				handBack(msg)
				return
			}
			r.log.Error("relay: dead letter not stored", "eventId", pf.fact.EventID, "err", err)
			_ = msg.NakWithDelay(r.opts.BackoffMax)
			return
		}
		r.deadLettered(rec.DeadLetter)
	}
	if len(failed) > 0 {
		if err := msg.TermWithReason("dead letter"); err != nil {
			r.log.Warn("relay: term failed", "eventId", failed[0].fact.EventID, "err", err)
		}
		return
	}
	// A plain ack, not a confirmed one: waiting for the confirmation cost more than half the
	// throughput at low concurrency, and a lost ack only costs a duplicate that the platform
	// dedups.
	if err := msg.Ack(); err != nil {
		r.log.Warn("relay: ack failed", "eventId", facts[0].fact.EventID, "err", err)
	}
}

func (r *Relay) delivered(f Fact) {
	r.metrics.delivered.Inc()
	r.metrics.lag.Observe(max(r.now().Sub(f.OccurredAt), 0).Seconds())
}

func (r *Relay) deadLettered(dl DeadLetter) {
	r.metrics.deadLettered.Inc()
	r.log.Warn("relay: fact dead-lettered", "id", dl.ID, "eventId", dl.EventID, "type", dl.EventType, "attempts", dl.Attempts, "err", dl.LastError)
	r.alerts.notify(dl)
}

// result is the outcome of one POST.
type result struct {
	outcome    outcome
	err        error
	retryAfter time.Duration
}

// post sends one fact, bounded by Timeout.
func (r *Relay) post(ctx context.Context, f Fact) result {
	body, err := json.Marshal(f)
	if err != nil {
		return result{outcome: permanent, err: fmt.Errorf("encode fact: %w", err)}
	}
	ctx, cancel := context.WithTimeout(ctx, r.opts.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.endpoint, bytes.NewReader(body))
	if err != nil {
		return result{outcome: permanent, err: fmt.Errorf("build request: %w", err)}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", f.EventID)
	req.Header.Set("User-Agent", "booking-relay/1")
	resp, err := r.client.Do(req)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return result{outcome: retryable, err: fmt.Errorf("POST %s: timed out after %s", r.endpoint, r.opts.Timeout)}
		}
		return result{outcome: retryable, err: fmt.Errorf("POST %s: %w", r.endpoint, err)}
	}
	defer resp.Body.Close()
	// Read a little of the answer for the error message; draining the rest lets the
	// connection be reused.
	snippet, _ := io.ReadAll(io.LimitReader(resp.Body, 256))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	o := classify(resp.StatusCode)
	if o == delivered {
		return result{outcome: delivered}
	}
	msg := strings.TrimSpace(string(snippet))
	if msg != "" {
		msg = ": " + msg
	}
	return result{
		outcome:    o,
		err:        fmt.Errorf("POST %s: status %d%s", r.endpoint, resp.StatusCode, msg),
		retryAfter: retryAfter(resp.Header),
	}
}

// outcome classifies one delivery attempt.
type outcome int

const (
	delivered outcome = iota // 2xx
	retryable                // 5xx, 408, 429, transport errors and timeouts
	permanent                // any other answer: retrying would get the same answer
)

// classify maps an HTTP status to an outcome. Redirects that the client did not follow are
// permanent: the platform is misconfigured and retrying would not fix it.
func classify(status int) outcome {
	switch {
	case status >= 200 && status < 300:
		return delivered
	case status >= 500, status == http.StatusRequestTimeout, status == http.StatusTooManyRequests:
		return retryable
	default:
		return permanent
	}
}

// backoff returns the wait before the next attempt after `failures` failed attempts (1 after
// the first failure): first doubling from first up to ceiling, then jitter of ±25% so that
// facts failed by one outage do not come back in lockstep, clamped to [first, ceiling] so that
// the flags bound every wait. A Retry-After (429/503) lengthens the wait, up to ceiling.
func backoff(failures int, first, ceiling, retryAfter time.Duration, jitter func() float64) time.Duration {
	d := first
	for i := 1; i < failures && d < ceiling; i++ {
		d *= 2
	}
	if d > ceiling || d <= 0 { // d <= 0: overflow
		d = ceiling
	}
	d = time.Duration(float64(d) * (0.75 + 0.5*jitter()))
	d = max(d, retryAfter, first)
	return min(d, ceiling)
}

// defaultJitter is uniform in [0, 1).
func defaultJitter() float64 { return rand.Float64() }

// retryAfter parses a Retry-After header given in seconds; dates and junk are ignored.
func retryAfter(h http.Header) time.Duration {
	v := h.Get("Retry-After")
	if v == "" {
		return 0
	}
	s, err := strconv.Atoi(v)
	if err != nil || s < 0 {
		return 0
	}
	return time.Duration(s) * time.Second
}
