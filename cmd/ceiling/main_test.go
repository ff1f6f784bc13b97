package main

import (
	"bytes"
	"context"
	"math"
	"os"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary be the ceiling's server child: startChild runs
// os.Executable() --serve ADDR, which under `go test` is this binary.
func TestMain(m *testing.M) {
	if slices.Contains(os.Args[1:], "--serve") {
		main()
		return
	}
	os.Exit(m.Run())
}

// TestTheCeilingStartsItsServerAsAChildAndReportsBothCPUs: given no --target, when the
// ceiling runs, then it serves from a child process, every hold is answered, and the report
// gives the CPU time of the generator and of the server.
func TestTheCeilingStartsItsServerAsAChildAndReportsBothCPUs(t *testing.T) {
	var out bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := run(ctx, []string{"--rate", "200", "--duration", "500ms", "--warmup", "0s"}, &out); err != nil {
		t.Fatalf("run: %v", err)
	}
	report := out.String()
	for _, want := range []string{"100 ok", ", 0 not;", "CPU s generator ", "per hold left at this rate"} {
		if !strings.Contains(report, want) {
			t.Fatalf("report %q: want %q", report, want)
		}
	}
	if strings.Contains(report, "server n/a") {
		t.Fatalf("report %q: the child's CPU time was not read", report)
	}
}

// TestTheCeilingMeasuresHoldsAnsweredByTheNoOpServer: given the no-op server on a loopback
// port, when the generator offers holds with either client, then every hold is answered 201
// and the report says so.
func TestTheCeilingMeasuresHoldsAnsweredByTheNoOpServer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- serve(ctx, "127.0.0.1:0", ready) }()
	var addr string
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	for _, client := range []string{"fasthttp", "nethttp"} {
		t.Run("with the "+client+" client every hold is answered", func(t *testing.T) {
			var out bytes.Buffer
			err := run(ctx, []string{"--target", "http://" + addr, "--client", client, "--rate", "200", "--duration", "500ms", "--warmup", "100ms"}, &out)
			if err != nil {
				t.Fatalf("run: %v", err)
			}
			if want := "100 ok"; !strings.Contains(out.String(), want) || !strings.Contains(out.String(), ", 0 not;") {
				t.Fatalf("report %q: want %q and none not ok", out.String(), want)
			}
			if want := "server n/a"; !strings.Contains(out.String(), want) {
				t.Fatalf("report %q: want %q for a server this run did not start", out.String(), want)
			}
			if strings.Contains(out.String(), "per hold left") {
				t.Fatalf("report %q: a budget without the server's CPU time", out.String())
			}
		})
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve after cancel: %v", err)
	}
}

// TestTheCeilingRefusesABadCommandLine: a rate, duration or cap of zero is refused.
func TestTheCeilingRefusesABadCommandLine(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
	}{
		{"a rate of zero is refused", []string{"--rate", "0"}},
		{"a duration of zero is refused", []string{"--duration", "0s"}},
		{"no requests in flight is refused", []string{"--max-inflight", "0"}},
		{"an unknown client is refused", []string{"--client", "curl", "--target", "http://127.0.0.1:1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := run(ctx, tt.args, &out); err == nil {
				t.Fatalf("run %v: no error", tt.args)
			}
		})
	}
}

// TestEngineBudgetIsTheMachineLeftOverPerHold: given what a run measured, the budget is the
// CPU time the generator and the no-op server left, divided among the holds answered.
func TestEngineBudgetIsTheMachineLeftOverPerHold(t *testing.T) {
	for _, tt := range []struct {
		name           string
		cpus           int
		took, gen, srv time.Duration
		holds          int64
		wantBusy       float64
		wantPerHold    time.Duration
		wantOK         bool
	}{
		{"two CPUs with 1.2 busy leave 0.8 of a CPU for 10,000 holds a second",
			2, 15 * time.Second, 9 * time.Second, 9 * time.Second, 150_000, 1.2, 80 * time.Microsecond, true},
		{"a machine the generator and the server fill leaves nothing",
			2, 10 * time.Second, 12 * time.Second, 9 * time.Second, 1000, 2.1, 0, true},
		{"a server whose CPU time is unknown gives no budget",
			2, 15 * time.Second, 9 * time.Second, -1, 150_000, 0, 0, false},
		{"a run that answered nothing gives no budget",
			2, 15 * time.Second, 9 * time.Second, 9 * time.Second, 0, 0, 0, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			busy, perHold, ok := engineBudget(tt.cpus, tt.took, tt.gen, tt.srv, tt.holds)
			if ok != tt.wantOK || perHold != tt.wantPerHold || math.Abs(busy-tt.wantBusy) > 1e-9 {
				t.Fatalf("engineBudget = %.3f CPUs busy, %s per hold, ok %v; want %.3f, %s, %v",
					busy, perHold, ok, tt.wantBusy, tt.wantPerHold, tt.wantOK)
			}
		})
	}
}
