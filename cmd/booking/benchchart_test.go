package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/booking-engine/booking/loadgen"
)

func TestBenchChartCommand(t *testing.T) {
	dir := t.TempDir()
	result := func(name string, secs int, rate int64) string {
		r := loadgen.Result{Scenario: loadgen.ScenarioFlashSale}
		for s := range secs {
			r.Timeline = append(r.Timeline, loadgen.Second{Sec: s, Accepted: rate})
		}
		r.LatencyCurve = []loadgen.CurvePoint{{Percentile: 0, Ms: 1}, {Percentile: 90, Ms: 4}, {Percentile: 100, Ms: 9}}
		p := filepath.Join(dir, name)
		if err := r.WriteJSONFile(p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	before, after := result("before.json", 8, 400), result("after.json", 5, 900)
	out := filepath.Join(dir, "charts")
	tests := []struct {
		name      string
		args      []string
		wantFiles []string
		wantErr   string
	}{
		{name: "two labelled runs give a throughput and a latency image, each path printed",
			args:      []string{"--run", "before (afeef28)=" + before, "--run", "after=" + after, "--out-dir", out, "--name", "write-path"},
			wantFiles: []string{"write-path-throughput.svg", "write-path-latency.svg"}},
		{name: "a missing result file fails naming it", args: []string{"--run", "x=" + filepath.Join(dir, "nope.json"), "--out-dir", out}, wantErr: "nope.json"},
		{name: "no run at all is refused", args: []string{"--out-dir", out}, wantErr: "at least one --run"},
		{name: "a name prefix with a path in it is refused", args: []string{"--run", before, "--out-dir", out, "--name", "../up"}, wantErr: "plain file name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, err := runCmd(context.Background(), t, append([]string{"bench", "chart"}, tt.args...)...)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v; want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var want []string
			for _, f := range tt.wantFiles {
				p := filepath.Join(out, f)
				want = append(want, p)
				b, err := os.ReadFile(p)
				if err != nil {
					t.Fatal(err)
				}
				for _, label := range []string{"before (afeef28)", "after"} {
					if !bytes.Contains(b, []byte(">"+label+"<")) {
						t.Errorf("%s has no legend entry %q", f, label)
					}
				}
			}
			if got := strings.Fields(stdout); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Errorf("printed %q, want %q", got, want)
			}
		})
	}
}

// TestBenchSVGDirWritesWhatChartDrawsFromTheJSON runs one small scenario with --json and
// --svg-dir: the images beside the run are those `bench chart` draws from its JSON, byte for
// byte, so a committed image can be made again from the committed JSON.
func TestBenchSVGDirWritesWhatChartDrawsFromTheJSON(t *testing.T) {
	dir := t.TempDir()
	js, svgs, again := filepath.Join(dir, "race.json"), filepath.Join(dir, "svg"), filepath.Join(dir, "again")
	if _, err := runCmd(context.Background(), t, "bench", "race", "--embedded", "--in-process", "--users", "20", "--json", js, "--svg-dir", svgs); err != nil {
		t.Fatal(err)
	}
	if _, err := runCmd(context.Background(), t, "bench", "chart", "--run", "race="+js, "--out-dir", again, "--name", "race"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"race-throughput.svg", "race-latency.svg"} {
		a, errA := os.ReadFile(filepath.Join(svgs, f))
		b, errB := os.ReadFile(filepath.Join(again, f))
		if errA != nil || errB != nil {
			t.Fatalf("%s: %v, %v", f, errA, errB)
		}
		if !bytes.Equal(a, b) {
			t.Errorf("%s from --svg-dir differs from bench chart's drawing of the run's JSON", f)
		}
	}
}
