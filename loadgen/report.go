package loadgen

import (
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// The HTML report is one page with everything inline (SVG drawn here, CSS in a style
// element): it fetches nothing, so it opens from a mail attachment or a CI artefact store and
// still shows the same picture years later. It draws the two charts load testers read first:
// answers per second over the run (vegeta's plot), and latency against percentile on a log
// axis that stretches the tail (HdrHistogram's percentile plot).

// chart is one SVG line chart, laid out in pixels.
type chart struct {
	Title          string
	XLabel, YLabel string
	W, H           int
	// Left, Top, Right, Bottom bound the plot area.
	Left, Top, Right, Bottom float64
	XTicks, YTicks           []tick
	Lines                    []line
}

type tick struct {
	Pos   float64
	Label string
}

type line struct {
	Name   string
	Color  string
	Points string
	// LegendY places the line's name in the legend.
	LegendY float64
}

// series is one named line in data coordinates.
type series struct {
	name, color string
	x, y        []float64
}

// newChart lays out lines over the data ranges [0, xMax] × [0, yMax]; xTicks are in data
// coordinates with their labels, the y ticks are chosen here.
func newChart(title, xLabel, yLabel string, xMax, yMax float64, xTicks []tick, lines []series) chart {
	c := chart{Title: title, XLabel: xLabel, YLabel: yLabel, W: 820, H: 340, Left: 70, Top: 30, Right: 600, Bottom: 290}
	if xMax <= 0 {
		xMax = 1
	}
	if yMax <= 0 {
		yMax = 1
	}
	yTicks, yTop := niceTicks(yMax)
	px := func(x float64) float64 { return c.Left + (c.Right-c.Left)*x/xMax }
	py := func(y float64) float64 { return c.Bottom - (c.Bottom-c.Top)*y/yTop }
	for _, t := range xTicks {
		c.XTicks = append(c.XTicks, tick{Pos: px(t.Pos), Label: t.Label})
	}
	for _, v := range yTicks {
		c.YTicks = append(c.YTicks, tick{Pos: py(v), Label: strconv.FormatFloat(v, 'g', 6, 64)})
	}
	for i, s := range lines {
		var b strings.Builder
		for j := range s.x {
			fmt.Fprintf(&b, "%.1f,%.1f ", px(s.x[j]), py(s.y[j]))
		}
		c.Lines = append(c.Lines, line{Name: s.name, Color: s.color, Points: strings.TrimSpace(b.String()), LegendY: c.Top + 10 + 18*float64(i)})
	}
	return c
}

// niceTicks returns about five round tick values from 0 to at least max, and the top one.
func niceTicks(max float64) ([]float64, float64) {
	raw := max / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if step = m * mag; step >= raw {
			break
		}
	}
	var out []float64
	top := 0.0
	for v := 0.0; ; v += step {
		out = append(out, v)
		top = v
		if v >= max {
			break
		}
	}
	return out, top
}

// throughputChart draws the answers per second.
func throughputChart(tl []Second) chart {
	acc, ref, errs := series{name: "accepted (2xx)", color: "#2a9d3a"}, series{name: "refused (4xx)", color: "#e08a00"}, series{name: "errors (5xx, no answer)", color: "#d62728"}
	yMax := 0.0
	for _, s := range tl {
		x := float64(s.Sec) + 0.5
		acc.x, acc.y = append(acc.x, x), append(acc.y, float64(s.Accepted))
		ref.x, ref.y = append(ref.x, x), append(ref.y, float64(s.Refused))
		errs.x, errs.y = append(errs.x, x), append(errs.y, float64(s.Errors))
		yMax = math.Max(yMax, float64(max(s.Accepted, s.Refused, s.Errors)))
	}
	xMax := float64(len(tl))
	var xt []tick
	every := max(1, len(tl)/10)
	for s := 0; s <= len(tl); s += every {
		xt = append(xt, tick{Pos: float64(s), Label: strconv.Itoa(s)})
	}
	return newChart("Throughput over time", "seconds since the measured phase began", "answers per second", xMax, yMax, xt, []series{acc, ref, errs})
}

// latencyChart draws the percentile curve with x = log10(1/(1-p)), so that 90%, 99%, 99.9%
// are evenly spaced; the maximum (100%, at infinity on that axis) is drawn a quarter decade
// after the last resolvable percentile and labelled "max".
func latencyChart(curve []CurvePoint) chart {
	s := series{name: "latency", color: "#1f77b4"}
	yMax, last := 0.0, 0.0
	for _, p := range curve {
		x := last + 0.25
		if p.Percentile < 100 {
			x = math.Log10(1 / (1 - p.Percentile/100))
			last = x
		}
		s.x, s.y = append(s.x, x), append(s.y, p.Ms)
		yMax = math.Max(yMax, p.Ms)
	}
	xMax := last + 0.25
	var xt []tick
	for d := 0; float64(d) <= last; d++ {
		xt = append(xt, tick{Pos: float64(d), Label: percentileLabel(d)})
	}
	xt = append(xt, tick{Pos: xMax, Label: "max"})
	return newChart("Latency by percentile", "percentile (log scale of 1/(1-p))", "latency ms", xMax, yMax, xt, []series{s})
}

// percentileLabel names the percentile d decades along the axis: 0%, 90%, 99%, 99.9%, ...
func percentileLabel(d int) string {
	if d == 0 {
		return "0%"
	}
	return strings.TrimRight(strconv.FormatFloat(100*(1-math.Pow(10, -float64(d))), 'f', max(0, d-2), 64), ".") + "%"
}

// reportPage is what the template shows.
type reportPage struct {
	R      Result
	Charts []chart
	Extra  []extraSection
}

// extraSection is a table a scenario adds to the page (the soak's samples).
type extraSection struct {
	Title  string
	Header []string
	Rows   [][]string
	Charts []chart
}

var reportTemplate = template.Must(template.New("report").Parse(`<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>booking bench {{.R.Scenario}}</title>
<style>
body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:3px 8px;text-align:right}
th{background:#f3f3f3}td:first-child,th:first-child{text-align:left}
svg{display:block;margin:1em 0}.fail{color:#d62728}.warn{color:#b06000}
</style></head><body>
<h1>booking bench {{.R.Scenario}}</h1>
<table>
{{if .R.Target}}<tr><td>target</td><td>{{.R.Target}}</td></tr>{{end}}
<tr><td>offered rate</td><td>{{printf "%.0f" .R.Rate}}/s</td></tr>
<tr><td>duration</td><td>{{printf "%.2f" .R.DurationSec}} s</td></tr>
<tr><td>requests</td><td>{{.R.Requests}}</td></tr>
<tr><td>accepted</td><td>{{.R.Accepted}} ({{printf "%.1f" .R.AcceptedPerSec}}/s)</td></tr>
{{if .R.SeatsPerHold}}<tr><td>seats held ({{.R.SeatsPerHold}} per hold)</td><td>{{.R.SeatsHeld}} ({{printf "%.1f" .R.SeatsHeldPerSec}}/s)</td></tr>{{end}}
<tr><td>409s / other 4xx / 5xx / no answer</td><td>{{.R.Conflicts409}} / {{.R.Errors4xx}} / {{.R.Errors5xx}} / {{.R.TransportErrors}}</td></tr>
<tr><td>latency ms p50 / p95 / p99 / p99.9 / max</td><td>{{printf "%.2f" .R.P50Ms}} / {{printf "%.2f" .R.P95Ms}} / {{printf "%.2f" .R.P99Ms}} / {{printf "%.2f" .R.P999Ms}} / {{printf "%.2f" .R.MaxMs}}</td></tr>
</table>
{{range .R.Checks}}<p{{if not .OK}} class="fail"{{end}}>check {{if .OK}}ok{{else}}FAIL{{end}} {{.Name}}: {{.Detail}}</p>{{end}}
{{range .R.Warnings}}<p class="warn">warning: {{.}}</p>{{end}}
{{range .Charts}}{{template "chart" .}}{{end}}
{{if .R.Steps}}<table><tr><th>step</th><th>count</th><th>ok</th><th>409</th><th>4xx</th><th>5xx</th><th>no answer</th><th>p50 ms</th><th>p99 ms</th><th>p99.9 ms</th><th>max ms</th></tr>
{{range .R.Steps}}<tr><td>{{.Name}}</td><td>{{.Count}}</td><td>{{.OK}}</td><td>{{.Conflicts409}}</td><td>{{.Errors4xx}}</td><td>{{.Errors5xx}}</td><td>{{.TransportErrors}}</td><td>{{printf "%.2f" .P50Ms}}</td><td>{{printf "%.2f" .P99Ms}}</td><td>{{printf "%.2f" .P999Ms}}</td><td>{{printf "%.2f" .MaxMs}}</td></tr>
{{end}}</table>{{end}}
{{range .Extra}}<h2>{{.Title}}</h2>{{range .Charts}}{{template "chart" .}}{{end}}
<table><tr>{{range .Header}}<th>{{.}}</th>{{end}}</tr>
{{range .Rows}}<tr>{{range .}}<td>{{.}}</td>{{end}}</tr>
{{end}}</table>{{end}}
</body></html>
{{define "chart"}}<svg width="{{.W}}" height="{{.H}}" viewBox="0 0 {{.W}} {{.H}}" role="img" aria-label="{{.Title}}">
<text x="{{.Left}}" y="18" font-size="15" font-weight="bold">{{.Title}}</text>
{{$c := .}}{{range .YTicks}}<line x1="{{$c.Left}}" x2="{{$c.Right}}" y1="{{.Pos}}" y2="{{.Pos}}" stroke="#e5e5e5"/><text x="{{$c.Left}}" dx="-6" y="{{.Pos}}" dy="4" font-size="11" text-anchor="end">{{.Label}}</text>
{{end}}{{range .XTicks}}<line x1="{{.Pos}}" x2="{{.Pos}}" y1="{{$c.Top}}" y2="{{$c.Bottom}}" stroke="#e5e5e5"/><text x="{{.Pos}}" y="{{$c.Bottom}}" dy="16" font-size="11" text-anchor="middle">{{.Label}}</text>
{{end}}<line x1="{{.Left}}" x2="{{.Right}}" y1="{{.Bottom}}" y2="{{.Bottom}}" stroke="#333"/><line x1="{{.Left}}" x2="{{.Left}}" y1="{{.Top}}" y2="{{.Bottom}}" stroke="#333"/>
<text x="{{.Left}}" y="{{.Bottom}}" dy="36" font-size="12">{{.XLabel}}</text>
<text transform="translate(14 {{.Bottom}}) rotate(-90)" font-size="12">{{.YLabel}}</text>
{{range .Lines}}<polyline fill="none" stroke="{{.Color}}" stroke-width="2" points="{{.Points}}"/><rect x="{{$c.Right}}" dx="10" y="{{.LegendY}}" width="12" height="3" fill="{{.Color}}" transform="translate(10 0)"/><text x="{{$c.Right}}" dx="28" y="{{.LegendY}}" dy="5" font-size="12">{{.Name}}</text>
{{end}}</svg>{{end}}`))

// WriteHTML writes the self-contained report page of the result.
func (r Result) WriteHTML(w io.Writer) error {
	p := reportPage{R: r}
	if r.Soak != nil {
		p.Extra = append(p.Extra, soakSection(r.Soak))
	}
	if len(r.Timeline) > 0 {
		p.Charts = append(p.Charts, throughputChart(r.Timeline))
	}
	if len(r.LatencyCurve) > 0 {
		p.Charts = append(p.Charts, latencyChart(r.LatencyCurve))
	}
	if err := reportTemplate.Execute(w, p); err != nil {
		return fmt.Errorf("render report: %w", err)
	}
	return nil
}

// WriteHTMLFile writes the report page to path.
func (r Result) WriteHTMLFile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if err := r.WriteHTML(f); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
