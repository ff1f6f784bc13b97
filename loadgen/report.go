package loadgen

import (
	"bytes"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The HTML report is one page with everything inline (SVG drawn here, CSS in a style
// element): it fetches nothing, so it opens from a mail attachment or a CI artefact store and
// still shows the same picture years later. It draws the two charts load testers read first:
// answers per second over the run (vegeta's plot), and latency against percentile on a log
// axis that stretches the tail (HdrHistogram's percentile plot). The same chart element, with
// its namespace, size and white background, is also a standalone SVG file (charts.go).

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
	// Dash is the stroke-dasharray of a fitted line, empty for data.
	Dash string
	// LegendY places the line's name in the legend.
	LegendY float64
}

// series is one named line in data coordinates; dashed for a fitted line rather than data.
type series struct {
	name, color string
	dashed      bool
	x, y        []float64
}

// palette colours the lines of a chart; a comparison gives run i the colour i in every image,
// so a run is recognised across them. Eight runs side by side are more than a reader tells apart.
var palette = []string{"#1f77b4", "#d62728", "#2a9d3a", "#9467bd", "#e08a00", "#17becf", "#8c564b", "#e377c2"}

// The legend sits right of the plot area, its text legendTextX right of it (the template's
// dx); the chart widens for long names (a run's label) rather than letting them run off the
// image. legendCharW is a generous width of a 12 px glyph.
const (
	legendTextX = 28
	legendCharW = 7.0
)

// newChart lays out lines over the data ranges [0, xMax] × [0, yMax]; xTicks are in data
// coordinates with their labels, the y ticks are chosen here. Points that are not finite are
// left out and values outside the axes are drawn on their edge, so no input breaks the picture.
func newChart(title, xLabel, yLabel string, xMax, yMax float64, xTicks []tick, lines []series) chart {
	c := chart{Title: title, XLabel: xLabel, YLabel: yLabel, W: 820, H: 340, Left: 70, Top: 30, Right: 600, Bottom: 290}
	for _, s := range lines {
		c.W = max(c.W, int(c.Right)+legendTextX+int(math.Ceil(legendCharW*float64(utf8.RuneCountInString(s.name))))+10)
	}
	if !(xMax > 0) || math.IsInf(xMax, 1) {
		xMax = 1
	}
	yTicks, yTop := niceTicks(yMax)
	// A tenth of a pixel is finer than any screen shows; more digits would only bloat the file.
	px := func(x float64) float64 { return tenth(c.Left + (c.Right-c.Left)*math.Min(math.Max(x, 0), xMax)/xMax) }
	py := func(y float64) float64 { return tenth(c.Bottom - (c.Bottom-c.Top)*math.Min(math.Max(y, 0), yTop)/yTop) }
	for _, t := range xTicks {
		c.XTicks = append(c.XTicks, tick{Pos: px(t.Pos), Label: t.Label})
	}
	for _, v := range yTicks {
		c.YTicks = append(c.YTicks, tick{Pos: py(v), Label: strconv.FormatFloat(v, 'g', 6, 64)})
	}
	for i, s := range lines {
		var b strings.Builder
		for j := range s.x {
			if finite(s.x[j]) && finite(s.y[j]) {
				fmt.Fprintf(&b, "%.1f,%.1f ", px(s.x[j]), py(s.y[j]))
			}
		}
		l := line{Name: s.name, Color: s.color, Points: strings.TrimSpace(b.String()), LegendY: c.Top + 10 + 18*float64(i)}
		if s.dashed {
			l.Dash = "6 4"
		}
		c.Lines = append(c.Lines, l)
	}
	return c
}

func tenth(v float64) float64 { return math.Round(v*10) / 10 }

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

// niceTicks returns about five round tick values from 0 to at least max (1 when max is not a
// positive number), and the top one.
func niceTicks(max float64) ([]float64, float64) {
	if !(max > 0) || math.IsInf(max, 1) {
		max = 1
	}
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
	for i := 0; ; i++ {
		// Multiplying rather than adding keeps 0.1, 0.3, ... free of accumulated error.
		v := float64(i) * step
		out = append(out, v)
		top = v
		if v >= max {
			break
		}
	}
	return out, top
}

// linearAxis returns niceTicks as labelled ticks, for an x axis of plain numbers, and its end.
func linearAxis(max float64) ([]tick, float64) {
	vals, top := niceTicks(max)
	ticks := make([]tick, len(vals))
	for i, v := range vals {
		ticks[i] = tick{Pos: v, Label: strconv.FormatFloat(v, 'g', 6, 64)}
	}
	return ticks, top
}

// perSecond is one count of a timeline as a line, each second's count at the second's middle.
func perSecond(name, color string, tl []Second, count func(Second) int64) series {
	s := series{name: name, color: color}
	for _, sec := range tl {
		if sec.Sec >= 0 {
			s.x, s.y = append(s.x, float64(sec.Sec)+0.5), append(s.y, float64(count(sec)))
		}
	}
	return s
}

// throughputChart draws per-second lines (from perSecond) on one time axis long enough for
// the longest.
func throughputChart(yLabel string, lines []series) chart {
	xMax, yMax := 0.0, 0.0
	for _, l := range lines {
		for i := range l.x {
			xMax, yMax = math.Max(xMax, l.x[i]+0.5), math.Max(yMax, l.y[i])
		}
	}
	xt, xTop := linearAxis(xMax)
	return newChart("Throughput over time", "seconds since the measured phase began", yLabel, xTop, yMax, xt, lines)
}

// pageThroughput is the page's throughput chart: every kind of answer of the one run.
func pageThroughput(tl []Second) chart {
	return throughputChart("answers per second", []series{
		perSecond("accepted (2xx)", "#2a9d3a", tl, func(s Second) int64 { return s.Accepted }),
		perSecond("refused (4xx)", "#e08a00", tl, func(s Second) int64 { return s.Refused }),
		perSecond("errors (5xx, no answer)", "#d62728", tl, func(s Second) int64 { return s.Errors }),
	})
}

// namedCurve is one run's latency percentile curve with its legend name and colour.
type namedCurve struct {
	name, color string
	points      []CurvePoint
}

// latencyChart draws percentile curves with x = log10(1/(1-p)), so that 90%, 99%, 99.9%
// are evenly spaced; the maximum (100%, at infinity on that axis) is drawn a quarter decade
// after the last percentile any curve resolves and labelled "max", where every curve ends.
// Points outside [0, 100] are not percentiles and are left out.
func latencyChart(curves []namedCurve) chart {
	logX := func(p float64) float64 { return math.Log10(1 / (1 - p/100)) }
	last, yMax := 0.0, 0.0
	for _, c := range curves {
		for _, p := range c.points {
			if x := logX(p.Percentile); p.Percentile >= 0 && p.Percentile < 100 && finite(x) {
				last = math.Max(last, x)
			}
		}
	}
	xMax := last + 0.25
	var lines []series
	for _, c := range curves {
		s := series{name: c.name, color: c.color}
		for _, p := range c.points {
			x := logX(p.Percentile)
			switch {
			case !(p.Percentile >= 0 && p.Percentile <= 100):
				continue
			case p.Percentile == 100 || !finite(x):
				x = xMax
			}
			s.x, s.y = append(s.x, x), append(s.y, p.Ms)
			yMax = math.Max(yMax, p.Ms)
		}
		lines = append(lines, s)
	}
	var xt []tick
	for d := 0; float64(d) <= last; d++ {
		xt = append(xt, tick{Pos: float64(d), Label: percentileLabel(d)})
	}
	xt = append(xt, tick{Pos: xMax, Label: "max"})
	return newChart("Latency by percentile", "percentile (log scale of 1/(1-p))", "latency ms", xMax, yMax, xt, lines)
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
{{define "chart"}}<svg xmlns="http://www.w3.org/2000/svg" width="{{.W}}" height="{{.H}}" viewBox="0 0 {{.W}} {{.H}}" role="img" aria-label="{{.Title}}" font-family="system-ui,Helvetica,Arial,sans-serif" fill="#222">
<rect width="{{.W}}" height="{{.H}}" fill="#fff"/>
<text x="{{.Left}}" y="18" font-size="15" font-weight="bold">{{.Title}}</text>
{{$c := .}}{{range .YTicks}}<line x1="{{$c.Left}}" x2="{{$c.Right}}" y1="{{.Pos}}" y2="{{.Pos}}" stroke="#e5e5e5"/><text x="{{$c.Left}}" dx="-6" y="{{.Pos}}" dy="4" font-size="11" text-anchor="end">{{.Label}}</text>
{{end}}{{range .XTicks}}<line x1="{{.Pos}}" x2="{{.Pos}}" y1="{{$c.Top}}" y2="{{$c.Bottom}}" stroke="#e5e5e5"/><text x="{{.Pos}}" y="{{$c.Bottom}}" dy="16" font-size="11" text-anchor="middle">{{.Label}}</text>
{{end}}<line x1="{{.Left}}" x2="{{.Right}}" y1="{{.Bottom}}" y2="{{.Bottom}}" stroke="#333"/><line x1="{{.Left}}" x2="{{.Left}}" y1="{{.Top}}" y2="{{.Bottom}}" stroke="#333"/>
<text x="{{.Left}}" y="{{.Bottom}}" dy="36" font-size="12">{{.XLabel}}</text>
<text transform="translate(14 {{.Bottom}}) rotate(-90)" font-size="12">{{.YLabel}}</text>
{{range .Lines}}<polyline fill="none" stroke="{{.Color}}" stroke-width="2"{{if .Dash}} stroke-dasharray="{{.Dash}}"{{end}} points="{{.Points}}"/><path d="M{{$c.Right}} {{.LegendY}} h14" stroke="{{.Color}}" stroke-width="3"{{if .Dash}} stroke-dasharray="{{.Dash}}"{{end}} transform="translate(8 1)"/><text x="{{$c.Right}}" dx="28" y="{{.LegendY}}" dy="5" font-size="12">{{.Name}}</text>
{{end}}</svg>{{end}}`))

// WriteHTML writes the self-contained report page of the result.
func (r Result) WriteHTML(w io.Writer) error {
	p := reportPage{R: r}
	if r.Soak != nil {
		p.Extra = append(p.Extra, soakSection(r.Soak))
	}
	if len(r.Timeline) > 0 {
		p.Charts = append(p.Charts, pageThroughput(r.Timeline))
	}
	if len(r.LatencyCurve) > 0 {
		p.Charts = append(p.Charts, latencyChart([]namedCurve{{name: "latency", color: palette[0], points: r.LatencyCurve}}))
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

// svg renders c as a standalone SVG file: the page's own chart element, which carries its
// namespace, size and background, so the file shows the same picture as the page does.
func (c chart) svg() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n")
	if err := reportTemplate.ExecuteTemplate(&b, "chart", c); err != nil {
		return nil, fmt.Errorf("render chart %q: %w", c.Title, err)
	}
	b.WriteByte('\n')
	return b.Bytes(), nil
}
