package loadgen

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
)

// Result is what one scenario run measured. The headline fields (accepted, latencies, errors)
// describe the scenario's main request: the hold for race and flash-sale, the whole flow for
// booking, every GET for read, the rebuild for rebuild.
type Result struct {
	Scenario string `json:"scenario"`
	Target   string `json:"target,omitempty"`
	// Rate is the offered arrival rate per second (0 for race and rebuild).
	Rate float64 `json:"rate"`
	// DurationSec is the measured wall time: the whole schedule, or the hold burst for race.
	DurationSec float64 `json:"durationSec"`
	Requests    int64   `json:"requests"`
	// Accepted is the number of successful main requests (holds won, bookings paid, GETs).
	Accepted int64 `json:"accepted"`
	// AcceptedPerSec is Accepted over DurationSec; for flash-sale, once the date sold out, over
	// the time it took to sell out, since later requests could not be accepted anyway.
	AcceptedPerSec float64 `json:"acceptedPerSec"`
	// Seats is the number of seats on sale (race, flash-sale, booking).
	Seats int `json:"seats"`
	// SeatsPerHold is how many seats each flash-sale hold asked for; SeatsHeld how many seats
	// its accepted holds held (Accepted counts the holds), and SeatsHeldPerSec that over the
	// same time as AcceptedPerSec.
	SeatsPerHold    int     `json:"seatsPerHold,omitempty"`
	SeatsHeld       int64   `json:"seatsHeld,omitempty"`
	SeatsHeldPerSec float64 `json:"seatsHeldPerSec,omitempty"`
	Users           int     `json:"users,omitempty"`
	Conflicts409    int64   `json:"conflicts409"`
	ConflictsPerSec float64 `json:"conflictsPerSec"`
	// Errors4xx is every 4xx answer but the 409s (so including 429 and TOKEN_NOT_ACTIVE).
	Errors4xx       int64 `json:"errors4xx"`
	RateLimited429  int64 `json:"rateLimited429"`
	TokenNotActive  int64 `json:"tokenNotActive"`
	Errors5xx       int64 `json:"errors5xx"`
	TransportErrors int64 `json:"transportErrors"`
	// WarmupSec is the unmeasured warm-up before the measured phase (see Config.Warmup).
	WarmupSec float64 `json:"warmupSec,omitempty"`
	// InflightCapHits counts launches delayed by --max-inflight; MaxLaunchLagMs is the
	// longest delay of a launch behind its schedule (cap or generator too slow).
	InflightCapHits int64   `json:"inflightCapHits"`
	MaxLaunchLagMs  float64 `json:"maxLaunchLagMs"`
	P50Ms           float64 `json:"p50Ms"`
	P95Ms           float64 `json:"p95Ms"`
	P99Ms           float64 `json:"p99Ms"`
	P999Ms          float64 `json:"p999Ms"`
	MaxMs           float64 `json:"maxMs"`
	// SoldOut and SelloutSec (flash-sale): whether every seat was won, and when.
	SoldOut    bool    `json:"soldOut,omitempty"`
	SelloutSec float64 `json:"selloutSec,omitempty"`
	// Events, EventsPerSec, RawEventsPerSec, RawDurationSec: rebuild only.
	Events          int     `json:"events,omitempty"`
	EventsPerSec    float64 `json:"eventsPerSec,omitempty"`
	RawEvents       int     `json:"rawEvents,omitempty"`
	RawEventsPerSec float64 `json:"rawEventsPerSec,omitempty"`
	RawDurationSec  float64 `json:"rawDurationSec,omitempty"`
	// Soak holds the samples and verdicts of the soak scenario.
	Soak *SoakResult `json:"soak,omitempty"`
	// Watch holds the figures of the watch scenario.
	Watch *WatchResult `json:"watch,omitempty"`
	// Timeline is the headline request's answers per second of the measured phase, and
	// LatencyCurve its latency percentile curve: the two charts of the HTML report.
	Timeline     []Second     `json:"timeline,omitempty"`
	LatencyCurve []CurvePoint `json:"latencyCurve,omitempty"`
	// Steps has one entry per request type (and "e2e" for booking).
	Steps []StepResult `json:"steps,omitempty"`
	// Checks are the correctness checks the scenario could make from the client side.
	Checks []Check `json:"checks,omitempty"`
	// Warnings explain answers that point at the target's configuration.
	Warnings []string `json:"warnings,omitempty"`
}

// Check is one correctness check of a run.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Detail string `json:"detail"`
}

// Failed returns the checks that did not hold.
func (r Result) Failed() []Check {
	var out []Check
	for _, c := range r.Checks {
		if !c.OK {
			out = append(out, c)
		}
	}
	return out
}

// headline copies a step's figures into the result's top-level fields.
func (r *Result) headline(s StepResult) {
	r.Requests = s.Count
	r.Accepted = s.OK
	r.Conflicts409 = s.Conflicts409
	r.Errors4xx = s.Errors4xx
	r.RateLimited429 = s.RateLimited429
	r.TokenNotActive = s.TokenNotActive
	r.Errors5xx = s.Errors5xx
	r.TransportErrors = s.TransportErrors
	r.P50Ms, r.P95Ms, r.P99Ms, r.P999Ms, r.MaxMs = s.P50Ms, s.P95Ms, s.P99Ms, s.P999Ms, s.MaxMs
}

// pictures copies the headline steps' timeline and latency curve (all steps when none named).
func (r *Result) pictures(rec *Recorder, steps ...string) {
	r.Timeline = rec.Timeline(steps...)
	r.LatencyCurve = rec.Curve(steps...)
}

// schedule copies how faithfully the schedule was kept.
func (r *Result) schedule(st ScheduleStats) {
	r.InflightCapHits = st.CapHits
	r.MaxLaunchLagMs = float64(st.MaxLag.Microseconds()) / 1000
}

// perSec divides by a duration in seconds, 0 for an empty one.
func perSec(n int64, sec float64) float64 {
	if sec <= 0 {
		return 0
	}
	return float64(n) / sec
}

// interruptedWarning says that the figures cover only part of the schedule.
func interruptedWarning(st ScheduleStats, s Schedule) string {
	return fmt.Sprintf("interrupted: %d of %d planned requests were launched; the figures cover those", st.Launched, s.Count)
}

// diagnose adds a warning for every kind of answer that says the target is not set up for
// benchmarking, summed over all steps.
func (r *Result) diagnose() {
	var limited, waiting, expired, unavailable, seatLimit int64
	for _, s := range r.Steps {
		if s.Name == "e2e" {
			continue // its outcomes repeat those of the failing step
		}
		limited += s.RateLimited429
		waiting += s.TokenNotActive
		expired += s.Codes["TOKEN_EXPIRED"]
		unavailable += s.Codes["SERVICE_UNAVAILABLE"]
		seatLimit += s.Codes["SEAT_LIMIT_REACHED"]
	}
	if limited > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%d answers were 429 RATE_LIMITED: run the target with --user-rate-limit 0", limited))
	}
	if waiting > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%d answers were TOKEN_NOT_ACTIVE (queue tokens still waiting): run the target with --queue-batch 0", waiting))
	}
	if expired > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%d answers were TOKEN_EXPIRED: the run outlived --queue-active-ttl, or a token was reused after payment", expired))
	}
	if seatLimit > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%d answers were 409 SEAT_LIMIT_REACHED: some users would have passed the target's --max-seats-per-user on a date; more --users spread the seats thinner", seatLimit))
	}
	if unavailable > 0 {
		r.Warnings = append(r.Warnings, fmt.Sprintf("%d answers were 503 SERVICE_UNAVAILABLE: the target lost its event store", unavailable))
	}
}

// WriteTable prints the result for a person.
func (r Result) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format, args...) }
	p("scenario\t%s\n", r.Scenario)
	if r.Target != "" {
		p("target\t%s\n", r.Target)
	}
	switch r.Scenario {
	case ScenarioRebuild:
		p("events\t%d\n", r.Events)
		p("rebuild\t%.3fs\t%.0f events/s\n", r.DurationSec, r.EventsPerSec)
		p("raw replay\t%.3fs\t%.0f events/s (%d events)\n", r.RawDurationSec, r.RawEventsPerSec, r.RawEvents)
		return flushChecks(tw, w, r)
	case ScenarioWatch:
		if w := r.Watch; w != nil {
			p("streams\t%d\t(%d failed, opened in %.1fs)\n", w.Streams, w.StreamsFailed, w.OpenSec)
			p("server RSS\t%.0f MB before\t%.0f MB with the streams open\t%.1f KB per stream\n", w.ServerRSSBeforeMB, w.ServerRSSOpenMB, w.RSSPerStreamKB)
			p("server CPU\t%.2f cores idle\t%.2f cores while probing\t%.0f frames, %.1f µs CPU per frame\n", w.ServerCPUIdle, w.ServerCPUProbing, w.FramesSent, w.CPUPerFrameUs)
			if w.SaleHoldsPerSec > 0 {
				p("flash sale\t%.0f holds/s accepted (offered %.0f/s)\n", w.SaleHoldsPerSec, r.Rate)
			}
			p("201 → a stream sees it\tp50 %.1f ms\tp99 %.1f ms\tmax %.1f ms\n", w.SeenP50Ms, w.SeenP99Ms, w.SeenMaxMs)
			p("201 → the last stream\tp50 %.1f ms\tp99 %.1f ms\t(over probes)\n", w.LastSeenP50Ms, w.LastSeenP99Ms)
		}
	case ScenarioRace:
		p("users\t%d\n", r.Users)
		p("hold burst\t%.1f ms wall time\n", r.DurationSec*1000)
		p("winners\t%d\n", r.Accepted)
		p("409s\t%d\n", r.Conflicts409)
		p("others\t%d\t(4xx %d, 5xx %d, no answer %d)\n", r.Requests-r.Accepted-r.Conflicts409, r.Errors4xx, r.Errors5xx, r.TransportErrors)
		p("in-flight cap hits\t%d\n", r.InflightCapHits)
	default:
		p("offered rate\t%.0f/s\n", r.Rate)
		if r.WarmupSec > 0 {
			p("warm-up\t%.1fs of GET /healthz at that rate, not measured\n", r.WarmupSec)
		}
		p("duration\t%.2fs\n", r.DurationSec)
		if r.Seats > 0 {
			p("seats\t%d\n", r.Seats)
		}
		if r.SoldOut {
			p("sold out after\t%.2fs\n", r.SelloutSec)
		}
		p("requests\t%d\n", r.Requests)
		if r.Scenario == ScenarioFlashSale {
			per := "seats"
			if r.SeatsPerHold == 1 {
				per = "seat"
			}
			p("accepted holds\t%d\t%.1f/s\t(%d %s per hold)\n", r.Accepted, r.AcceptedPerSec, r.SeatsPerHold, per)
			p("seats held\t%d\t%.1f/s\n", r.SeatsHeld, r.SeatsHeldPerSec)
		} else {
			p("accepted\t%d\t%.1f/s\n", r.Accepted, r.AcceptedPerSec)
		}
		if r.Scenario == ScenarioFlashSale || r.Conflicts409 > 0 {
			p("409s\t%d\t%.1f/s\n", r.Conflicts409, r.ConflictsPerSec)
		}
		p("other 4xx\t%d\t(429 %d, not active %d)\n", r.Errors4xx, r.RateLimited429, r.TokenNotActive)
		p("5xx\t%d\n", r.Errors5xx)
		p("no answer\t%d\n", r.TransportErrors)
		p("in-flight cap hits\t%d\t(max launch lag %.1f ms)\n", r.InflightCapHits, r.MaxLaunchLagMs)
	}
	p("latency ms\tp50 %.2f\tp95 %.2f\tp99 %.2f\tp99.9 %.2f\tmax %.2f\n", r.P50Ms, r.P95Ms, r.P99Ms, r.P999Ms, r.MaxMs)
	if len(r.Steps) > 1 {
		p("\nstep\tcount\tok\t409\t4xx\t5xx\tno answer\tp50 ms\tp95 ms\tp99 ms\tp99.9 ms\tmax ms\n")
		for _, s := range r.Steps {
			p("%s\t%d\t%d\t%d\t%d\t%d\t%d\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\n", s.Name, s.Count, s.OK, s.Conflicts409, s.Errors4xx,
				s.Errors5xx, s.TransportErrors, s.P50Ms, s.P95Ms, s.P99Ms, s.P999Ms, s.MaxMs)
		}
	}
	if r.Soak != nil {
		p("\nholds expired\t%.0f\tpayments completed %.0f\t(the first target's counters over the run)\n", r.Soak.HoldsExpired, r.Soak.PaymentsCompleted)
		p("\n%s\n", strings.Join(soakHeader, "\t"))
		for _, row := range soakRows(r.Soak.Samples) {
			p("%s\n", strings.Join(row, "\t"))
		}
	}
	var codes []string
	for _, s := range r.Steps {
		for _, c := range topCodes(s.Codes) {
			codes = append(codes, fmt.Sprintf("%s %s=%d", s.Name, c, s.Codes[c]))
		}
	}
	if len(codes) > 0 {
		p("error codes\t%s\n", strings.Join(codes, ", "))
	}
	return flushChecks(tw, w, r)
}

func flushChecks(tw *tabwriter.Writer, w io.Writer, r Result) error {
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, c := range r.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		if _, err := fmt.Fprintf(w, "check %s %s: %s\n", mark, c.Name, c.Detail); err != nil {
			return err
		}
	}
	for _, m := range r.Warnings {
		if _, err := fmt.Fprintf(w, "warning: %s\n", m); err != nil {
			return err
		}
	}
	return nil
}

// WriteJSONFile writes the result as indented JSON to path.
func (r Result) WriteJSONFile(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write result: %w", err)
	}
	return nil
}
