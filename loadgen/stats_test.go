package loadgen

import (
	"errors"
	"math"
	"sync"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	tests := []struct {
		name string
		r    Response
		err  error
		want Outcome
	}{
		{name: "a 201 is accepted", r: Response{Status: 201}, want: OutcomeOK},
		{name: "a 200 is accepted", r: Response{Status: 200}, want: OutcomeOK},
		{name: "a 409 is a conflict whatever its code", r: Response{Status: 409, Code: "SEAT_UNAVAILABLE"}, want: OutcomeConflict},
		{name: "a 429 is a rate limit", r: Response{Status: 429, Code: "RATE_LIMITED"}, want: OutcomeRateLimited},
		{name: "a 403 TOKEN_NOT_ACTIVE is a waiting queue token", r: Response{Status: 403, Code: "TOKEN_NOT_ACTIVE"}, want: OutcomeTokenNotActive},
		{name: "a 403 FORBIDDEN is an ordinary client error", r: Response{Status: 403, Code: "FORBIDDEN"}, want: OutcomeClientError},
		{name: "a 401 is a client error", r: Response{Status: 401, Code: "TOKEN_EXPIRED"}, want: OutcomeClientError},
		{name: "a 503 is a server error", r: Response{Status: 503, Code: "SERVICE_UNAVAILABLE"}, want: OutcomeServerError},
		{name: "a 500 without a body is a server error", r: Response{Status: 500}, want: OutcomeServerError},
		{name: "no answer at all is a transport error", err: errors.New("connection refused"), want: OutcomeTransport},
		{name: "a 302 is not part of the contract and counts as a client error", r: Response{Status: 302}, want: OutcomeClientError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Classify(tt.r, tt.err); got != tt.want {
				t.Errorf("Classify(%+v, %v) = %d, want %d", tt.r, tt.err, got, tt.want)
			}
		})
	}
}

func TestRecorderPercentiles(t *testing.T) {
	rec := NewRecorder("hold")
	for ms := 1; ms <= 1000; ms++ {
		rec.Record("hold", time.Duration(ms)*time.Millisecond, OutcomeOK, "")
	}
	s := rec.Steps()[0]
	tests := []struct {
		name      string
		got, want float64
	}{
		{name: "the median is the 500th value", got: s.P50Ms, want: 500},
		{name: "p95 is the 950th value", got: s.P95Ms, want: 950},
		{name: "p99 is the 990th value", got: s.P99Ms, want: 990},
		{name: "p99.9 is the 999th value", got: s.P999Ms, want: 999},
		{name: "the maximum is the largest value", got: s.MaxMs, want: 1000},
		{name: "the mean is the average", got: s.MeanMs, want: 500.5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Three significant digits: within 0.1%.
			if math.Abs(tt.got-tt.want) > tt.want*0.001 {
				t.Errorf("got %.3f ms, want %.3f ms ±0.1%%", tt.got, tt.want)
			}
		})
	}
	if s.Count != 1000 || s.OK != 1000 {
		t.Errorf("count %d ok %d, want 1000 and 1000", s.Count, s.OK)
	}
}

func TestRecorderCountsOutcomesAndCodesPerStep(t *testing.T) {
	rec := NewRecorder("hold", "pay")
	rec.Record("hold", time.Millisecond, OutcomeOK, "")
	rec.Record("hold", time.Millisecond, OutcomeConflict, "SEAT_UNAVAILABLE")
	rec.Record("hold", time.Millisecond, OutcomeConflict, "SEAT_UNAVAILABLE")
	rec.Record("hold", time.Millisecond, OutcomeRateLimited, "RATE_LIMITED")
	rec.Record("pay", time.Millisecond, OutcomeTokenNotActive, "TOKEN_NOT_ACTIVE")
	rec.Record("pay", time.Millisecond, OutcomeClientError, "FORBIDDEN")
	rec.Record("pay", time.Millisecond, OutcomeServerError, "")
	rec.Record("pay", time.Millisecond, OutcomeTransport, "")
	steps := rec.Steps()
	hold, pay := steps[0], steps[1]
	if hold.Name != "hold" || pay.Name != "pay" {
		t.Fatalf("steps %q, %q; want hold, pay in the order given", hold.Name, pay.Name)
	}
	if hold.OK != 1 || hold.Conflicts409 != 2 || hold.RateLimited429 != 1 || hold.Errors4xx != 1 || hold.Codes["SEAT_UNAVAILABLE"] != 2 {
		t.Errorf("hold: %+v", hold)
	}
	// errors4xx holds every 4xx but the 409s.
	if pay.Errors4xx != 2 || pay.TokenNotActive != 1 || pay.Errors5xx != 1 || pay.TransportErrors != 1 {
		t.Errorf("pay: %+v", pay)
	}
	all := rec.Merged("all")
	if all.Count != 8 || all.OK != 1 || all.Errors4xx != 3 || all.Codes["FORBIDDEN"] != 1 {
		t.Errorf("merged: %+v", all)
	}
}

func TestRecorderKeepsValuesOutsideTheHistogramRange(t *testing.T) {
	rec := NewRecorder()
	rec.Record("x", 0, OutcomeOK, "")
	rec.Record("x", time.Hour, OutcomeOK, "")
	s := rec.Steps()[0]
	if s.Count != 2 {
		t.Fatalf("count %d, want 2: out-of-range values must be clamped, not dropped", s.Count)
	}
	if s.MaxMs < float64(9*time.Minute/time.Millisecond) {
		t.Errorf("max %.0f ms, want the 10 minute ceiling", s.MaxMs)
	}
}

func TestRecorderIsSafeForConcurrentUse(t *testing.T) {
	rec := NewRecorder("a")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				step := "a"
				if i%2 == 1 {
					step = "b"
				}
				rec.Record(step, time.Duration(g*500+i)*time.Microsecond, OutcomeOK, "")
			}
		}()
	}
	wg.Wait()
	if all := rec.Merged("all"); all.Count != 4000 {
		t.Errorf("merged count %d, want 4000", all.Count)
	}
}

func TestAnEmptyStepReportsZeros(t *testing.T) {
	s := NewRecorder("hold").Steps()[0]
	if s.Count != 0 || s.P50Ms != 0 || s.MaxMs != 0 || s.MeanMs != 0 {
		t.Errorf("empty step: %+v", s)
	}
}
