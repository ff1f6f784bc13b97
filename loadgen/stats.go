package loadgen

import (
	"sort"
	"sync"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Outcome is the class of one request's answer.
type Outcome int

// The outcomes a scenario tells apart.
const (
	// OutcomeOK is a 2xx answer.
	OutcomeOK Outcome = iota
	// OutcomeConflict is a 409: in the seat scenarios the expected "someone else got it".
	OutcomeConflict
	// OutcomeRateLimited is a 429: the target runs with a per-user rate limit.
	OutcomeRateLimited
	// OutcomeTokenNotActive is a 403 TOKEN_NOT_ACTIVE (or a token issued WAITING): the
	// target's waiting queue is admitting users in batches.
	OutcomeTokenNotActive
	// OutcomeClientError is any other 4xx.
	OutcomeClientError
	// OutcomeServerError is a 5xx.
	OutcomeServerError
	// OutcomeTransport is no HTTP answer at all: refused, reset or timed out.
	OutcomeTransport
	numOutcomes
)

// codeTokenNotActive is the contract's code for a queue token that is still waiting.
const codeTokenNotActive = "TOKEN_NOT_ACTIVE"

// codeSeatUnavailable is the problem code of a hold refused because a seat is taken.
const codeSeatUnavailable = "SEAT_UNAVAILABLE"

// Classify maps one request's result to its outcome.
func Classify(r Response, err error) Outcome {
	switch {
	case err != nil || r.Status == 0:
		return OutcomeTransport
	case r.OK():
		return OutcomeOK
	case r.Status == 409:
		return OutcomeConflict
	case r.Status == 429:
		return OutcomeRateLimited
	case r.Status == 403 && r.Code == codeTokenNotActive:
		return OutcomeTokenNotActive
	case r.Status >= 500:
		return OutcomeServerError
	case r.Status >= 400:
		return OutcomeClientError
	default:
		// 1xx and 3xx are not part of the contract: count them as client-side surprises.
		return OutcomeClientError
	}
}

// Latencies are recorded in microseconds from 1µs to 10 minutes with three significant
// digits, so every percentile is within 0.1% of the true value.
const (
	histMinMicros = 1
	histMaxMicros = int64(10 * time.Minute / time.Microsecond)
	histDigits    = 3
)

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(histMinMicros, histMaxMicros, histDigits)
}

// Recorder collects latencies and outcomes per named step (a request type, or "e2e" for a
// whole flow). It is safe for concurrent use.
type Recorder struct {
	mu    sync.Mutex
	order []string
	steps map[string]*stepStats
	// clk and start, once StartTimeline set them, place every answer in a second of the run.
	clk   Clock
	start time.Time
}

type stepStats struct {
	hist   *hdrhistogram.Histogram
	counts [numOutcomes]int64
	codes  map[string]int64
	// perSec counts answers by the second of the run they arrived in, by kind.
	perSec []Second
}

// Second is what the answers that arrived in one second of a run were (the throughput chart).
type Second struct {
	// Sec is the second since the measured phase began: 0 is [0 s, 1 s).
	Sec int `json:"sec"`
	// Accepted are 2xx answers.
	Accepted int64 `json:"accepted"`
	// Refused are 4xx answers: 409s (seat taken), 429s, and the rest.
	Refused int64 `json:"refused"`
	// Errors are 5xx answers and requests that got no answer.
	Errors int64 `json:"errors"`
}

// add counts one answer of outcome o.
func (s *Second) add(o Outcome) {
	switch o {
	case OutcomeOK:
		s.Accepted++
	case OutcomeServerError, OutcomeTransport:
		s.Errors++
	default:
		s.Refused++
	}
}

// StartTimeline makes the recorder count answers per second of the run that began at start,
// by clk's time of each Record call (an answer's arrival), as vegeta's plot shows them.
func (r *Recorder) StartTimeline(clk Clock, start time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.clk, r.start = clk, start
}

// NewRecorder returns a recorder whose report lists steps in the given order first.
func NewRecorder(steps ...string) *Recorder {
	r := &Recorder{steps: make(map[string]*stepStats)}
	for _, s := range steps {
		r.step(s)
	}
	return r
}

func (r *Recorder) step(name string) *stepStats {
	s, ok := r.steps[name]
	if !ok {
		s = &stepStats{hist: newHistogram(), codes: make(map[string]int64)}
		r.steps[name] = s
		r.order = append(r.order, name)
	}
	return s
}

// Record adds one request of step that took d and ended with o; code is the problem code of
// an error answer, kept so that the report can say what went wrong.
func (r *Recorder) Record(step string, d time.Duration, o Outcome, code string) {
	v := int64(d / time.Microsecond)
	v = max(v, histMinMicros)
	v = min(v, histMaxMicros)
	r.mu.Lock()
	clk, start := r.clk, r.start
	r.mu.Unlock()
	sec := -1
	if clk != nil {
		sec = max(int(clk.Now().Sub(start)/time.Second), 0)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.step(step)
	if sec >= 0 {
		for len(s.perSec) <= sec {
			s.perSec = append(s.perSec, Second{Sec: len(s.perSec)})
		}
		s.perSec[sec].add(o)
	}
	// v is clamped into the histogram's range, so RecordValue cannot fail.
	_ = s.hist.RecordValue(v)
	s.counts[o]++
	if o != OutcomeOK && code != "" {
		s.codes[code]++
	}
}

// StepResult is the summary of one step.
type StepResult struct {
	Name            string           `json:"name"`
	Count           int64            `json:"count"`
	OK              int64            `json:"ok"`
	Conflicts409    int64            `json:"conflicts409"`
	Errors4xx       int64            `json:"errors4xx"`
	RateLimited429  int64            `json:"rateLimited429"`
	TokenNotActive  int64            `json:"tokenNotActive"`
	Errors5xx       int64            `json:"errors5xx"`
	TransportErrors int64            `json:"transportErrors"`
	P50Ms           float64          `json:"p50Ms"`
	P95Ms           float64          `json:"p95Ms"`
	P99Ms           float64          `json:"p99Ms"`
	P999Ms          float64          `json:"p999Ms"`
	MaxMs           float64          `json:"maxMs"`
	MeanMs          float64          `json:"meanMs"`
	Codes           map[string]int64 `json:"codes,omitempty"`
}

// Steps returns the summary of every step, in the recorder's order.
func (r *Recorder) Steps() []StepResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]StepResult, 0, len(r.order))
	for _, name := range r.order {
		out = append(out, summarize(name, r.steps[name]))
	}
	return out
}

// Merged returns one summary over the named steps together (all steps when none are named).
func (r *Recorder) Merged(name string, steps ...string) StepResult {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(steps) == 0 {
		steps = r.order
	}
	all := &stepStats{hist: newHistogram(), codes: make(map[string]int64)}
	for _, n := range steps {
		s, ok := r.steps[n]
		if !ok {
			continue
		}
		all.hist.Merge(s.hist)
		for i, c := range s.counts {
			all.counts[i] += c
		}
		for k, c := range s.codes {
			all.codes[k] += c
		}
	}
	return summarize(name, all)
}

// Timeline returns the answers per second of the named steps together (all when none are
// named), from second 0 to the last one any answer arrived in; nil without StartTimeline.
func (r *Recorder) Timeline(steps ...string) []Second {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(steps) == 0 {
		steps = r.order
	}
	var out []Second
	for _, n := range steps {
		s, ok := r.steps[n]
		if !ok {
			continue
		}
		for _, sec := range s.perSec {
			for len(out) <= sec.Sec {
				out = append(out, Second{Sec: len(out)})
			}
			o := &out[sec.Sec]
			o.Accepted += sec.Accepted
			o.Refused += sec.Refused
			o.Errors += sec.Errors
		}
	}
	return out
}

// CurvePoint is one point of a latency percentile curve.
type CurvePoint struct {
	// Percentile is in [0, 100].
	Percentile float64 `json:"percentile"`
	// Ms is the latency at or below which Percentile percent of the requests answered.
	Ms float64 `json:"ms"`
}

// Curve returns the latency percentile curve of the named steps together (all when none are
// named), as HdrHistogram plots it: points evenly spaced in log10(1/(1-p)), six per decade
// (0%, 33%, 50%, 67%, 80%, 86%, 90%, ... 99%, ... 99.9%), as far as the requests can resolve,
// then 100% (the maximum). Nil when nothing was recorded.
func (r *Recorder) Curve(steps ...string) []CurvePoint {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(steps) == 0 {
		steps = r.order
	}
	h := newHistogram()
	for _, n := range steps {
		if s, ok := r.steps[n]; ok {
			h.Merge(s.hist)
		}
	}
	n := h.TotalCount()
	if n == 0 {
		return nil
	}
	var ps []float64
	for d := 1.0; d <= float64(n); d *= 10 {
		for _, m := range []float64{1, 1.5, 2, 3, 5, 7} {
			// 1/(1-p) = m·d: the "1 in m·d requests was slower" point.
			if inv := m * d; inv <= float64(n) {
				ps = append(ps, 100*(1-1/inv))
			}
		}
	}
	vals := h.ValueAtPercentilesSlice(ps)
	out := make([]CurvePoint, 0, len(ps)+1)
	for i, p := range ps {
		out = append(out, CurvePoint{Percentile: p, Ms: float64(vals[i]) / 1000})
	}
	return append(out, CurvePoint{Percentile: 100, Ms: float64(h.Max()) / 1000})
}

func summarize(name string, s *stepStats) StepResult {
	q := s.hist.ValueAtPercentiles([]float64{50, 95, 99, 99.9})
	ms := func(micros int64) float64 { return float64(micros) / 1000 }
	res := StepResult{
		Name:            name,
		Count:           s.hist.TotalCount(),
		OK:              s.counts[OutcomeOK],
		Conflicts409:    s.counts[OutcomeConflict],
		RateLimited429:  s.counts[OutcomeRateLimited],
		TokenNotActive:  s.counts[OutcomeTokenNotActive],
		Errors5xx:       s.counts[OutcomeServerError],
		TransportErrors: s.counts[OutcomeTransport],
		// errors4xx is every 4xx but the 409s, which the seat scenarios expect and report
		// on their own; the rate-limited and not-active answers are in it and also broken out.
		Errors4xx: s.counts[OutcomeClientError] + s.counts[OutcomeRateLimited] + s.counts[OutcomeTokenNotActive],
		P50Ms:     ms(q[50]),
		P95Ms:     ms(q[95]),
		P99Ms:     ms(q[99]),
		P999Ms:    ms(q[99.9]),
		MaxMs:     ms(s.hist.Max()),
		MeanMs:    s.hist.Mean() / 1000,
	}
	if res.Count == 0 {
		res.MaxMs, res.MeanMs = 0, 0
	}
	if len(s.codes) > 0 {
		res.Codes = make(map[string]int64, len(s.codes))
		for k, c := range s.codes {
			res.Codes[k] = c
		}
	}
	return res
}

// topCodes lists the problem codes of a step, most frequent first.
func topCodes(codes map[string]int64) []string {
	keys := make([]string, 0, len(codes))
	for k := range codes {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		if codes[keys[i]] != codes[keys[j]] {
			return codes[keys[i]] > codes[keys[j]]
		}
		return keys[i] < keys[j]
	})
	return keys
}
