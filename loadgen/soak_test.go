package loadgen

import (
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

func TestTheTrendRule(t *testing.T) {
	// Samples every 10 s over 10 minutes; the window is the second half (from 300 s).
	times := make([]float64, 61)
	for i := range times {
		times[i] = float64(10 * i)
	}
	along := func(f func(t float64) float64) []float64 {
		v := make([]float64, len(times))
		for i, t := range times {
			v[i] = f(t)
		}
		return v
	}
	tests := []struct {
		name   string
		values []float64
		floor  float64
		rising bool
	}{
		{name: "a flat series does not trend upward", values: along(func(float64) float64 { return 200 }), floor: 5},
		{name: "a series that climbs 50% over the first half and then stays flat does not trend upward",
			values: along(func(t float64) float64 { return 100 + 50*math.Min(t, 300)/300 }), floor: 5},
		{name: "a series that climbs 20% of its mean over the second half trends upward",
			values: along(func(t float64) float64 { return 200 + 40*t/300 }), floor: 5, rising: true},
		{name: "a series that climbs 5% over the second half stays under the 10% limit",
			values: along(func(t float64) float64 { return 200 + 10*(t-300)/300 }), floor: 5},
		{name: "a garbage collector's saw-tooth around a flat mean does not trend upward",
			values: along(func(t float64) float64 { return 200 + 30*math.Mod(t, 60)/60 }), floor: 5},
		{name: "a small series that climbs more than 10% but less than its floor does not trend upward",
			values: along(func(t float64) float64 { return 2 + 3*t/600 }), floor: 100},
		{name: "a series that rises from zero past its floor trends upward",
			values: along(func(t float64) float64 { return math.Max(0, t-300) }), floor: 100, rising: true},
		{name: "a falling series does not trend upward", values: along(func(t float64) float64 { return 300 - t/10 }), floor: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tr, ok := judgeTrend("s", times, tt.values, 300, DefaultTrendThreshold, tt.floor)
			if !ok {
				t.Fatalf("no verdict from %d samples", tr.Samples)
			}
			if tr.Rising != tt.rising {
				t.Errorf("rising = %v, want %v (mean %.1f, slope %.3f/min, rise %.1f%%)", tr.Rising, tt.rising, tr.Mean, tr.SlopePerMin, 100*tr.Rise)
			}
		})
	}
}

func TestTooFewSamplesGiveNoVerdict(t *testing.T) {
	times := []float64{0, 1, 2, 3, 4, 5, 6, 7}
	values := []float64{1, 2, 3, 4, 5, 6, 7, 8}
	if tr, ok := judgeTrend("s", times, values, 4, DefaultTrendThreshold, 0); ok {
		t.Errorf("a verdict (%+v) from %d samples in the window; want none below %d", tr, tr.Samples, minTrendSamples)
	}
}

func TestParseMetricsSumsASeriesOverItsLabels(t *testing.T) {
	m, err := parseMetrics(strings.NewReader(`# HELP booking_projection_lag_events Events a projection has yet to apply.
# TYPE booking_projection_lag_events gauge
booking_projection_lag_events{projection="seats"} 3
booking_projection_lag_events{projection="wallets"} 4
go_goroutines 17
process_resident_memory_bytes 3.3554432e+07
`))
	if err != nil {
		t.Fatal(err)
	}
	if m["booking_projection_lag_events"] != 7 || m["go_goroutines"] != 17 || m["process_resident_memory_bytes"] != 32<<20 {
		t.Errorf("parsed %v", m)
	}
}

func TestTheSoaksSeatPool(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)
	// take takes a seat at t, -1 when none is free.
	take := func(p *seatPool, t time.Time) int {
		if n, ok := p.take(t); ok {
			return n
		}
		return -1
	}
	tests := []struct {
		name string
		run  func(p *seatPool) []int // the seats taken, in order
		want []int
	}{
		{"seats are handed out once each, lowest first", func(p *seatPool) []int {
			return []int{take(p, t0), take(p, t0), take(p, t0)}
		}, []int{0, 1, -1}},
		{"a seat given back after a refund is free at once", func(p *seatPool) []int {
			a, b := take(p, t0), take(p, t0)
			p.put(a)
			return []int{a, b, take(p, t0)}
		}, []int{0, 1, 0}},
		{"an abandoned hold's seat is free once its hold has lapsed, not before", func(p *seatPool) []int {
			a, b := take(p, t0), take(p, t0)
			p.putAt(a, t0.Add(20*time.Second))
			return []int{a, b, take(p, t0.Add(19*time.Second)), take(p, t0.Add(20*time.Second))}
		}, []int{0, 1, -1, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.run(newSeatPool(2)); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("seats taken %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTheSoaksSeatSetCoversTheSeatsInUse(t *testing.T) {
	tests := []struct {
		name     string
		rate     float64
		ttl      time.Duration
		arrivals int
		want     int
	}{
		{"600 arrivals/s with a 15 s hold TTL need twice the 5,250 seats in use", 600, 15 * time.Second, 360_000, 10_500},
		{"a short run never gets more seats than it has users' arrivals", 100, 5 * time.Minute, 300, 151},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := soakSeats(tt.rate, tt.ttl, tt.arrivals); got != tt.want {
				t.Errorf("soakSeats(%g, %s, %d) = %d, want %d", tt.rate, tt.ttl, tt.arrivals, got, tt.want)
			}
		})
	}
}

// TestSeriesThatGrowWithDataOrClientAreReportedNotJudged: the file-backed part of the RSS
// (the read models' files mapped by bbolt) grows with the data they keep, and the open files
// count the load client's keep-alive connections, which it opens when latency rises; so a
// run fails on the anonymous memory and the files other than connections only, and the
// totals are reported beside the checks.
func TestSeriesThatGrowWithDataOrClientAreReportedNotJudged(t *testing.T) {
	samples := func(anonSlope, fileSlope, connSlope, filesSlope, goSlope float64) []SoakSample {
		var out []SoakSample
		for i := range 61 {
			at := float64(10 * i)
			anon, file := 500+anonSlope*at, 100+fileSlope*at
			conns, files := 200+connSlope*at, 100+filesSlope*at
			out = append(out, SoakSample{AtSec: at, RSSMB: anon + file, RSSAnonMB: anon, RSSFileMB: file, HeapMB: 300, Goroutines: 600 + goSlope*at + conns,
				OpenFDs: conns + files, HTTPConns: conns, P99Ms: 50})
		}
		return out
	}
	failed := func(res *Result) []string {
		var names []string
		for _, c := range res.Checks {
			if !c.OK {
				names = append(names, c.Name)
			}
		}
		return names
	}
	reported := []string{"rss MB", "rss file MB", "open fds", "goroutines"}
	tests := []struct {
		name         string
		anon, file   float64 // MB per second
		conns, files float64 // per second
		goroutines   float64 // per second, other than the connections'
		wantFailed   []string
	}{
		{"mapped files growing with the data fail nothing and are reported", 0, 0.4, 0, 0, 0, nil},
		{"anonymous memory growing fails the run", 0.4, 0, 0, 0, 0, []string{"rss anon MB does not trend upward after warm-up"}},
		{"the client's connections growing fail nothing and are reported with the open files and goroutines", 0, 0, 0.5, 0, 0, nil},
		{"open files other than connections growing fail the run", 0, 0, 0, 0.5, 0, []string{"files but http does not trend upward after warm-up"}},
		{"goroutines other than connections growing fail the run", 0, 0, 0, 0, 0.5, []string{"goroutines but http does not trend upward after warm-up"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var res Result
			judgeSoak(&res, samples(tt.anon, tt.file, tt.conns, tt.files, tt.goroutines), 1, 300, DefaultTrendThreshold)
			if got := failed(&res); strings.Join(got, "|") != strings.Join(tt.wantFailed, "|") {
				t.Errorf("failed checks %q, want %q", got, tt.wantFailed)
			}
			for _, series := range reported {
				found := false
				for _, w := range res.Warnings {
					found = found || strings.HasPrefix(w, series+" is reported, not judged")
				}
				if !found {
					t.Errorf("no report of %s among %q", series, res.Warnings)
				}
			}
		})
	}
}
