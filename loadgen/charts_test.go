package loadgen

import (
	"bytes"
	"encoding/xml"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// svgDoc is what the tests read back from an image: the parts a reader sees.
type svgDoc struct {
	XMLName xml.Name `xml:"svg"`
	Width   string   `xml:"width,attr"`
	Height  string   `xml:"height,attr"`
	ViewBox string   `xml:"viewBox,attr"`
	Rects   []struct {
		Width  string `xml:"width,attr"`
		Height string `xml:"height,attr"`
		Fill   string `xml:"fill,attr"`
	} `xml:"rect"`
	Texts []struct {
		X      string `xml:"x,attr"`
		DX     string `xml:"dx,attr"`
		Anchor string `xml:"text-anchor,attr"`
		Body   string `xml:",chardata"`
	} `xml:"text"`
	Polylines []struct {
		Stroke string `xml:"stroke,attr"`
		Dash   string `xml:"stroke-dasharray,attr"`
		Points string `xml:"points,attr"`
	} `xml:"polyline"`
}

// parseSVG parses an image strictly as XML (a browser shows nothing of an ill-formed SVG file).
func parseSVG(t *testing.T, f SVGFile) svgDoc {
	t.Helper()
	var d svgDoc
	dec := xml.NewDecoder(bytes.NewReader(f.Data))
	dec.Strict = true
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s is not well-formed XML: %v\n%s", f.Name, err, f.Data)
	}
	if d.XMLName.Space != "http://www.w3.org/2000/svg" {
		t.Errorf("%s: root element %v, want svg in the SVG namespace", f.Name, d.XMLName)
	}
	return d
}

// legend returns the legend entries: the texts right of the plot area.
func (d svgDoc) legend() []string {
	var out []string
	for _, tx := range d.Texts {
		if tx.DX == strconv.Itoa(legendTextX) {
			out = append(out, tx.Body)
		}
	}
	return out
}

// ticks returns the labels of the y axis (anchored at their end) or the x axis (centred).
func (d svgDoc) ticks(anchor string) []string {
	var out []string
	for _, tx := range d.Texts {
		if tx.Anchor == anchor {
			out = append(out, tx.Body)
		}
	}
	return out
}

// lastX is the x of a polyline's last point, in pixels.
func lastX(t *testing.T, points string) float64 {
	t.Helper()
	f := strings.Fields(points)
	if len(f) == 0 {
		t.Fatal("a line without points")
	}
	x, _, _ := strings.Cut(f[len(f)-1], ",")
	v, err := strconv.ParseFloat(x, 64)
	if err != nil {
		t.Fatalf("point %q: %v", f[len(f)-1], err)
	}
	return v
}

// fileNamed finds an image by name among files.
func fileNamed(t *testing.T, files []SVGFile, name string) SVGFile {
	t.Helper()
	for _, f := range files {
		if f.Name == name {
			return f
		}
	}
	var names []string
	for _, f := range files {
		names = append(names, f.Name)
	}
	t.Fatalf("no %s among %v", name, names)
	return SVGFile{}
}

// runOf is a run of secs seconds at about rate accepted answers a second, with a latency
// curve whose tail grows with slow.
func runOf(secs int, rate int64, slow float64) Result {
	r := Result{Scenario: ScenarioFlashSale}
	for s := range secs {
		r.Timeline = append(r.Timeline, Second{Sec: s, Accepted: rate + int64(s%3), Refused: 3})
	}
	for _, p := range []float64{0, 50, 90, 99, 99.9, 100} {
		r.LatencyCurve = append(r.LatencyCurve, CurvePoint{Percentile: p, Ms: 1 + slow*p/100})
	}
	return r
}

// soakOf is a soak of two instances sampled every 10 s for secs seconds, judged as Soak
// judges it, RSS climbing on the second instance.
func soakOf(secs int) Result {
	r := runOf(secs, 200, 50)
	r.Scenario = ScenarioSoak
	var samples []SoakSample
	for at := 0; at <= secs; at += 10 {
		for inst := range 2 {
			samples = append(samples, SoakSample{AtSec: float64(at), Instance: inst, RSSMB: 100 + float64(inst*at)/2,
				Goroutines: 500, OpenFDs: 90, LagEvents: float64(at % 20), P99Ms: 12})
		}
	}
	r.Soak = &SoakResult{Samples: samples, Threshold: DefaultTrendThreshold}
	r.Soak.Trends = judgeSoak(&r, samples, 2, float64(secs)/2, DefaultTrendThreshold)
	return r
}

func TestChartImagesOfRunsSideBySide(t *testing.T) {
	// 12 s and 30 s: the old tick rule (every len/10 seconds) labelled the 30 s axis 0, 3, 6, ...
	before, after := runOf(30, 400, 80), runOf(12, 1500, 20)
	twoRuns := []ChartRun{{Label: "before (afeef28)", Result: before}, {Label: "after", Result: after}}
	tests := []struct {
		name  string
		runs  []ChartRun
		check func(t *testing.T, files []SVGFile)
	}{
		{name: "every image is well-formed SVG with a size, a view box and a white background drawn first",
			runs: append(slices.Clone(twoRuns), ChartRun{Label: "soak", Result: soakOf(120)}),
			check: func(t *testing.T, files []SVGFile) {
				for _, f := range files {
					d := parseSVG(t, f)
					if d.Width == "" || d.Height == "" || d.ViewBox != "0 0 "+d.Width+" "+d.Height {
						t.Errorf("%s: width %q, height %q, viewBox %q", f.Name, d.Width, d.Height, d.ViewBox)
					}
					if len(d.Rects) == 0 || d.Rects[0].Fill != "#fff" || d.Rects[0].Width != d.Width || d.Rects[0].Height != d.Height {
						t.Errorf("%s: first rect %+v; want a white one over the whole image", f.Name, d.Rects)
					}
					if len(d.Texts) == 0 || strings.TrimSpace(d.Texts[0].Body) == "" {
						t.Errorf("%s has no title", f.Name)
					}
				}
			}},
		{name: "the throughput and latency images have one line and one legend entry per run",
			runs: twoRuns,
			check: func(t *testing.T, files []SVGFile) {
				for _, name := range []string{"wp-throughput.svg", "wp-latency.svg"} {
					d := parseSVG(t, fileNamed(t, files, name))
					if len(d.Polylines) != 2 || d.Polylines[0].Stroke == d.Polylines[1].Stroke {
						t.Errorf("%s: lines %+v; want two of different colours", name, d.Polylines)
					}
					if got := d.legend(); !slices.Equal(got, []string{"before (afeef28)", "after"}) {
						t.Errorf("%s: legend %q", name, got)
					}
				}
			}},
		{name: "two runs of different lengths share a time axis long enough for the longer",
			runs: []ChartRun{{Label: "short first", Result: after}, {Label: "long", Result: before}},
			check: func(t *testing.T, files []SVGFile) {
				d := parseSVG(t, fileNamed(t, files, "wp-throughput.svg"))
				xt := d.ticks("middle")
				end, err := strconv.ParseFloat(xt[len(xt)-1], 64)
				if err != nil || end < 30 {
					t.Errorf("x axis ticks %q end before the 30 s run does", xt)
				}
				short, long := lastX(t, d.Polylines[0].Points), lastX(t, d.Polylines[1].Points)
				if !(short < long && long <= 600) {
					t.Errorf("the 12 s run ends at x=%.1f, the 30 s run at x=%.1f; want the shorter to end first, both inside the plot (600)", short, long)
				}
			}},
		{name: "the ticks of every numeric axis are round numbers",
			runs: append(slices.Clone(twoRuns), ChartRun{Label: "soak", Result: soakOf(110)}),
			check: func(t *testing.T, files []SVGFile) {
				for _, f := range files {
					d := parseSVG(t, f)
					axes := [][]string{d.ticks("end")}
					if !strings.HasSuffix(f.Name, "-latency.svg") { // its x axis is percentiles
						axes = append(axes, d.ticks("middle"))
					}
					for _, labels := range axes {
						if !roundTicks(labels) {
							t.Errorf("%s: ticks %q are not 0 and equal steps of 1, 2, 2.5 or 5 times a power of ten", f.Name, labels)
						}
					}
				}
			}},
		{name: "a soak result gives one image per sampled series, each instance with its fitted trend",
			runs: []ChartRun{{Label: "soak", Result: soakOf(120)}},
			check: func(t *testing.T, files []SVGFile) {
				var names []string
				for _, f := range files {
					names = append(names, f.Name)
				}
				want := []string{"wp-throughput.svg", "wp-latency.svg", "wp-soak-rss.svg", "wp-soak-rss-anon.svg", "wp-soak-rss-file.svg", "wp-soak-heap.svg", "wp-soak-goroutines.svg", "wp-soak-goroutines-but-http.svg", "wp-soak-open-fds.svg", "wp-soak-files.svg", "wp-soak-lag.svg", "wp-soak-p99.svg"}
				if !slices.Equal(names, want) {
					t.Fatalf("images %q, want %q", names, want)
				}
				d := parseSVG(t, fileNamed(t, files, "wp-soak-rss.svg"))
				if got := d.legend(); !slices.Equal(got, []string{"soak, instance 1", "soak, instance 1, fitted", "soak, instance 2", "soak, instance 2, fitted"}) {
					t.Errorf("rss legend %q", got)
				}
				if len(d.Polylines) != 4 || d.Polylines[1].Dash == "" || d.Polylines[0].Dash != "" {
					t.Errorf("rss lines %+v; want each instance's data solid and its fitted line dashed", d.Polylines)
				}
				if got := parseSVG(t, fileNamed(t, files, "wp-soak-p99.svg")).legend(); !slices.Equal(got, []string{"soak", "soak, fitted"}) {
					t.Errorf("p99 legend %q; want the client's p99 once", got)
				}
			}},
		{name: "a label with characters XML escapes, and control characters it cannot hold, reads as typed",
			runs: []ChartRun{{Label: "p<99 & \"q\" +'\x01", Result: after}},
			check: func(t *testing.T, files []SVGFile) {
				for _, f := range files {
					if got := parseSVG(t, f).legend(); !slices.Equal(got, []string{"p<99 & \"q\" +'"}) {
						t.Errorf("%s: legend %q", f.Name, got)
					}
				}
			}},
		{name: "a result with values no run produces still draws a well-formed image",
			runs: []ChartRun{{Label: "odd", Result: Result{
				Timeline:     []Second{{Sec: -3, Accepted: 5}, {Sec: 2, Accepted: -7}, {Sec: 1 << 40, Accepted: 1}},
				LatencyCurve: []CurvePoint{{Percentile: -1, Ms: 2}, {Percentile: 150, Ms: 3}, {Percentile: 99.99999999999999, Ms: 4}, {Percentile: 100, Ms: -5}},
				Soak:         &SoakResult{Samples: []SoakSample{{AtSec: -10, Instance: 1 << 40, RSSMB: 1e300}}, Trends: []Trend{{Series: "rss MB", FromSec: 5, ToSec: 1}}},
			}}},
			check: func(t *testing.T, files []SVGFile) {
				for _, f := range files {
					parseSVG(t, f)
				}
				if len(files) != 12 {
					t.Errorf("%d images, want 12", len(files))
				}
			}},
		{name: "a run without a timeline is left out of the throughput image and drawn in the latency one",
			runs: []ChartRun{{Label: "a", Result: before}, {Label: "b", Result: Result{LatencyCurve: after.LatencyCurve}}},
			check: func(t *testing.T, files []SVGFile) {
				if got := parseSVG(t, fileNamed(t, files, "wp-throughput.svg")).legend(); !slices.Equal(got, []string{"a"}) {
					t.Errorf("throughput legend %q", got)
				}
				if got := parseSVG(t, fileNamed(t, files, "wp-latency.svg")).legend(); !slices.Equal(got, []string{"a", "b"}) {
					t.Errorf("latency legend %q", got)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files, err := ChartSVGs("wp", tt.runs)
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, files)
		})
	}
}

// roundTicks says whether labels are 0 and then equal steps of 1, 2, 2.5 or 5 × 10^k.
func roundTicks(labels []string) bool {
	if len(labels) < 2 {
		return false
	}
	var v []float64
	for _, l := range labels {
		f, err := strconv.ParseFloat(l, 64)
		if err != nil {
			return false
		}
		v = append(v, f)
	}
	step := v[1] - v[0]
	if v[0] != 0 || step <= 0 {
		return false
	}
	mant := step / math.Pow(10, math.Floor(math.Log10(step)))
	if !slices.ContainsFunc([]float64{1, 2, 2.5, 5}, func(m float64) bool { return math.Abs(m-mant) < 1e-9 }) {
		return false
	}
	for i := range v {
		if math.Abs(v[i]-float64(i)*step) > step*1e-9 {
			return false
		}
	}
	return true
}

func TestChartInputThatCannotBeDrawnIsAClearError(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	garbled := write("garbled.json", `{"scenario": "flash-sale", "timeline": [{"sec": 0, "accepted": 12`)
	empty := write("empty.json", ``)
	other := write("other.json", `{"name": "not a bench result"}`)
	array := write("array.json", `[1, 2, 3]`)
	missing := filepath.Join(dir, "missing.json")
	tests := []struct {
		name string
		spec string
		want string
	}{
		{name: "a missing file is named", spec: "before=" + missing, want: missing},
		{name: "a cut-off JSON file is named", spec: "before=" + garbled, want: garbled},
		{name: "an empty file is named", spec: empty, want: empty},
		{name: "JSON that is not an object is named", spec: "x=" + array, want: array},
		{name: "a JSON object with nothing to draw is named", spec: "x=" + other, want: other},
		{name: "a run that names no file says so", spec: "before=", want: "names no result file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadChartRun(tt.spec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v; want one naming %q", err, tt.want)
			}
		})
	}
	if _, err := ChartSVGs("x", []ChartRun{{Label: "a", Result: Result{Scenario: ScenarioRebuild}}}); !errors.Is(err, ErrBadConfig) {
		t.Errorf("runs with nothing to draw: %v; want ErrBadConfig", err)
	}
}

func TestChartImagesLabelRunsAndDependOnlyOnTheirInput(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.json"), filepath.Join(dir, "b.json")
	for p, r := range map[string]Result{a: runOf(7, 900, 40), b: soakOf(60)} {
		if err := r.WriteJSONFile(p); err != nil {
			t.Fatal(err)
		}
	}
	draw := func(specs ...string) []SVGFile {
		var runs []ChartRun
		for _, s := range specs {
			r, err := LoadChartRun(s)
			if err != nil {
				t.Fatal(err)
			}
			runs = append(runs, r)
		}
		files, err := ChartSVGs("d", runs)
		if err != nil {
			t.Fatal(err)
		}
		return files
	}
	tests := []struct {
		name       string
		specs      []string
		wantLegend []string
	}{
		{name: "a label may hold an equals sign, the file follows the last", specs: []string{"fsync=always=" + a}, wantLegend: []string{"fsync=always"}},
		{name: "a run without a label is labelled by its file's name", specs: []string{a, "soak run=" + b}, wantLegend: []string{"a", "soak run"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first, again := draw(tt.specs...), draw(tt.specs...)
			if len(first) != len(again) {
				t.Fatalf("%d images, then %d", len(first), len(again))
			}
			for i := range first {
				if first[i].Name != again[i].Name || !bytes.Equal(first[i].Data, again[i].Data) {
					t.Errorf("%s differs when drawn again from the same files", first[i].Name)
				}
			}
			if got := parseSVG(t, fileNamed(t, first, "d-latency.svg")).legend(); !slices.Equal(got, tt.wantLegend) {
				t.Errorf("legend %q, want %q", got, tt.wantLegend)
			}
		})
	}
}

func TestTheFittedLineRunsThroughTheWindowOfTheVerdict(t *testing.T) {
	// v = 2t + 1 exactly: the least-squares line is the series itself over its window.
	var ts, vs []float64
	for i := range 13 {
		ts, vs = append(ts, float64(10*i)), append(vs, float64(20*i+1))
	}
	tr, ok := judgeTrend("s", ts, vs, 60, DefaultTrendThreshold, 0)
	if !ok {
		t.Fatal("no verdict")
	}
	if tr.FromSec != 60 || tr.ToSec != 120 || math.Abs(tr.FitFrom-121) > 1e-9 || math.Abs(tr.FitTo-241) > 1e-9 {
		t.Errorf("fitted line from (%g, %g) to (%g, %g); want (60, 121) to (120, 241)", tr.FromSec, tr.FitFrom, tr.ToSec, tr.FitTo)
	}
}
