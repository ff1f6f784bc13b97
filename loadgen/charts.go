package loadgen

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"unicode"
)

// The report page shows one run; a benchmark's story is usually two or three runs side by
// side (before and after a change, one instance against a cluster). ChartSVGs draws those as
// standalone SVG files from the runs' --json results, with the page's own chart code and
// template, so a committed image looks like the page it came from. The bytes depend only on
// the results and labels (no clock, no map order), so regenerating an image from the same
// JSON leaves git with nothing to commit.

// ChartRun is one run's result under the label its lines carry in the legends.
type ChartRun struct {
	Label  string
	Result Result
}

// SVGFile is one chart image: its file name and its content.
type SVGFile struct {
	Name string
	Data []byte
}

// ReadResultFile reads a result that `booking bench --json` wrote. Its errors name the file.
func ReadResultFile(path string) (Result, error) {
	var r Result
	b, err := os.ReadFile(path)
	if err != nil {
		return r, fmt.Errorf("result file: %w", err)
	}
	if err := json.Unmarshal(b, &r); err != nil {
		return r, fmt.Errorf("result file %s is not a bench result: %w", path, err)
	}
	return r, nil
}

// LoadChartRun reads the run that spec names: "LABEL=FILE", split at the last "=" so that a
// label may hold one ("fsync=always=a.json"), or just FILE, labelled by its base name without
// ".json". A result with nothing to draw is refused, naming the file.
func LoadChartRun(spec string) (ChartRun, error) {
	label, path := "", spec
	if i := strings.LastIndex(spec, "="); i >= 0 {
		label, path = spec[:i], spec[i+1:]
	}
	if path == "" {
		return ChartRun{}, fmt.Errorf("%w: run %q names no result file (want LABEL=FILE)", ErrBadConfig, spec)
	}
	if label == "" {
		label = strings.TrimSuffix(filepath.Base(path), ".json")
	}
	r, err := ReadResultFile(path)
	if err != nil {
		return ChartRun{}, err
	}
	if len(r.Timeline) == 0 && len(r.LatencyCurve) == 0 && (r.Soak == nil || len(r.Soak.Samples) == 0) {
		return ChartRun{}, fmt.Errorf("%w: result file %s has no timeline, latency curve or soak samples to draw", ErrBadConfig, path)
	}
	return ChartRun{Label: label, Result: r}, nil
}

// ChartSVGs draws the runs side by side, run i in the palette's colour i in every image:
// name-throughput.svg (accepted answers per second, a line per run), name-latency.svg (the
// latency percentile curves) and, for soak results, name-soak-SERIES.svg for every sampled
// series with the fitted trend lines. A chart is drawn when some run has its data, without the
// runs that lack it; when no run has any, that is an error.
func ChartSVGs(name string, runs []ChartRun) ([]SVGFile, error) {
	type named struct {
		file string
		c    chart
	}
	var charts []named
	var thr []series
	var lat []namedCurve
	var soaks []soakRun
	for i, r := range runs {
		label, color := xmlText(r.Label), palette[i%len(palette)]
		if len(r.Result.Timeline) > 0 {
			thr = append(thr, perSecond(label, color, r.Result.Timeline, func(s Second) int64 { return s.Accepted }))
		}
		if len(r.Result.LatencyCurve) > 0 {
			lat = append(lat, namedCurve{name: label, color: color, points: r.Result.LatencyCurve})
		}
		if s := r.Result.Soak; s != nil && len(s.Samples) > 0 {
			soaks = append(soaks, soakRun{label: label, soak: s})
		}
	}
	if len(thr) > 0 {
		charts = append(charts, named{"throughput", throughputChart("accepted answers per second", thr)})
	}
	if len(lat) > 0 {
		charts = append(charts, named{"latency", latencyChart(lat)})
	}
	if len(soaks) > 0 {
		for i, c := range soakCharts(soaks) {
			charts = append(charts, named{"soak-" + soakMetrics[i].file, c})
		}
	}
	if len(charts) == 0 {
		return nil, fmt.Errorf("%w: no run has a timeline, latency curve or soak samples to draw", ErrBadConfig)
	}
	files := make([]SVGFile, 0, len(charts))
	for _, c := range charts {
		b, err := c.c.svg()
		if err != nil {
			return nil, err
		}
		files = append(files, SVGFile{Name: name + "-" + c.file + ".svg", Data: b})
	}
	return files, nil
}

// WriteChartSVGs writes ChartSVGs' images into dir (made if missing) and returns their paths.
func WriteChartSVGs(dir, name string, runs []ChartRun) ([]string, error) {
	if name == "" || strings.ContainsAny(name, `/\`) {
		return nil, fmt.Errorf("%w: image name prefix %q must be a plain file name", ErrBadConfig, name)
	}
	files, err := ChartSVGs(name, runs)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("write charts: %w", err)
	}
	paths := make([]string, 0, len(files))
	for _, f := range files {
		p := filepath.Join(dir, f.Name)
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			return nil, fmt.Errorf("write charts: %w", err)
		}
		paths = append(paths, p)
	}
	return paths, nil
}

// xmlText drops from a label the control characters XML cannot hold (the template escapes
// the rest), so that no label makes an image that a browser refuses to show.
func xmlText(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == 0xFFFE || r == 0xFFFF {
			return -1
		}
		return r
	}, s)
}
