package loadgen

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestAReportIsSelfContainedAndShowsBothCharts(t *testing.T) {
	_, srv := newFakeService(t, fakeKnobs{})
	cfg := testConfig(srv.URL)
	cfg.Rate, cfg.Duration = 100, 3*time.Second
	res, err := FlashSale(context.Background(), cfg, FlashSaleOptions{Seats: 250, Users: 10})
	if err != nil {
		t.Fatal(err)
	}
	// 100 holds a second for 3 s on 250 seats: 250 accepted, then the date is sold out. An
	// answer lands in the second it arrived in, so a few cross a boundary: compare totals.
	var accepted, refused, errs int64
	for i, s := range res.Timeline {
		if s.Sec != i || s.Accepted+s.Refused+s.Errors == 0 {
			t.Errorf("second %d: %+v; want every second of the run, each with answers", i, s)
		}
		accepted, refused, errs = accepted+s.Accepted, refused+s.Refused, errs+s.Errors
	}
	if len(res.Timeline) != 3 || accepted != 250 || refused != 50 || errs != 0 {
		t.Errorf("timeline %+v: %d seconds, %d accepted, %d refused, %d errors; want 3, 250, 50, 0", res.Timeline, len(res.Timeline), accepted, refused, errs)
	}
	if last := res.Timeline[len(res.Timeline)-1]; last.Refused == 0 {
		t.Errorf("the last second %+v shows no sold-out answers", last)
	}
	if n := len(res.LatencyCurve); n < 3 || res.LatencyCurve[n-1].Percentile != 100 {
		t.Errorf("latency curve %+v does not run up to 100%%", res.LatencyCurve)
	}

	var b bytes.Buffer
	if err := res.WriteHTML(&b); err != nil {
		t.Fatal(err)
	}
	page := b.String()
	if m := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?\s*(https?:)?//`).FindString(page); m != "" {
		t.Errorf("the page fetches something: %q", m)
	}
	if strings.Contains(page, "<script") || strings.Contains(page, "<link") || strings.Contains(page, "@import") {
		t.Error("the page has a script, link or import; it must be plain inline HTML and SVG")
	}
	for _, s := range []string{"Throughput over time", "accepted (2xx)", "refused (4xx)", "errors (5xx, no answer)", "Latency by percentile", ">90%<", ">99%<", ">max<"} {
		if !strings.Contains(page, s) {
			t.Errorf("the page lacks %q", s)
		}
	}
	if n := strings.Count(page, "<polyline"); n != 4 {
		t.Errorf("%d lines drawn, want 4 (three throughput series and the latency curve)", n)
	}
}

func TestTheLatencyCurveFollowsTheRecordedPercentiles(t *testing.T) {
	rec := NewRecorder("hold")
	for ms := 1; ms <= 1000; ms++ {
		rec.Record("hold", time.Duration(ms)*time.Millisecond, OutcomeOK, "")
	}
	curve := rec.Curve()
	tests := []struct {
		name       string
		percentile float64
		wantMs     float64
	}{
		{name: "the 0th percentile is the fastest request", percentile: 0, wantMs: 1},
		{name: "the 90th percentile is the 900th of 1000 requests", percentile: 90, wantMs: 900},
		{name: "the 99th percentile is the 990th of 1000 requests", percentile: 99, wantMs: 990},
		{name: "the 99.9th percentile is the 999th of 1000 requests", percentile: 99.9, wantMs: 999},
		{name: "100 percent is the slowest request", percentile: 100, wantMs: 1000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, p := range curve {
				if p.Percentile > tt.percentile-1e-9 && p.Percentile < tt.percentile+1e-9 {
					// Three significant digits: within 0.1%.
					if d := p.Ms - tt.wantMs; d > tt.wantMs/1000+0.001 || d < -tt.wantMs/1000-0.001 {
						t.Errorf("p%g = %g ms, want %g", tt.percentile, p.Ms, tt.wantMs)
					}
					return
				}
			}
			t.Errorf("no point at p%g in %+v", tt.percentile, curve)
		})
	}
	// 1000 requests resolve up to 99.9%: no point claims more.
	if p := curve[len(curve)-2].Percentile; p > 99.9+1e-9 {
		t.Errorf("the curve claims p%g from 1000 requests", p)
	}
}

func TestPercentileAxisLabels(t *testing.T) {
	tests := []struct {
		name    string
		decades int
		want    string
	}{
		{name: "no decade along the axis is 0%", decades: 0, want: "0%"},
		{name: "one decade is 90%", decades: 1, want: "90%"},
		{name: "two decades are 99%", decades: 2, want: "99%"},
		{name: "three decades are 99.9%", decades: 3, want: "99.9%"},
		{name: "five decades are 99.999%", decades: 5, want: "99.999%"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := percentileLabel(tt.decades); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}
