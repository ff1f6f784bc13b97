package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/booking-engine/booking/loadgen"
)

func newBenchSoakCmd(o *benchOptions) *cobra.Command {
	var opts loadgen.SoakOptions
	var holdTTL time.Duration
	cmd := &cobra.Command{
		Use:   "soak",
		Short: "Bookings with refunds, expiries and seat-map reads at --rate for --duration (default 10m); fails when the server's RSS, heap, goroutines, open files, p99 or read-model lag trend upward",
		Long: `Offers a steady mix at --rate arrivals per second for --duration: of every four arrivals,
one user's booking (token, charge, hold, pay) refunded at once through the admin API, one
user's hold left unpaid to expire, and two seat-map reads. Users come back from a population of
--users, and seats from a fixed set that refunds and expiries give back, so the service's data
reaches a steady state instead of growing with the run (but for the history the read models
keep). Every --sample-every it reads each target's /metrics (process_resident_memory_bytes and
its anonymous and file-backed parts, booking_process_resident_anon_bytes and _file_bytes;
go_memstats_heap_inuse_bytes, go_goroutines, process_open_fds and booking_http_open_connections,
booking_projection_lag_events) and the client-side p99 since the last sample. Over the second
half of the run (the first is warm-up) it fits a least-squares line to each series; one whose
line climbs by more than --threshold of its mean (and more than a small absolute floor) fails
the run. The total and file-backed resident memory are reported, not judged: the file-backed
part is the read models' files, mapped by bbolt, which grow with every booking they keep. So
are the open files and the goroutines: they count the generator's keep-alive connections (a
file and a goroutine each), which it opens when latency rises for a moment and keeps; the files
and goroutines other than HTTP connections are judged.

Run it at about half the measured capacity. With --embedded the service runs as a child
process (booking serve on a temporary data dir) with --hold-ttl, so that abandoned holds
expire during the run and only the server's own memory and goroutines are sampled; against
--target, run the target with --user-rate-limit 0 --queue-batch 0 and pass its --hold-ttl
here too (it sizes the seat set; unset, the service's default of 5m is assumed).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("duration") {
				o.duration = 10 * time.Minute
			}
			if !cmd.Flags().Changed("rate") {
				o.rate = 200
			}
			if o.embedded {
				if o.inProcess {
					return errors.New("bench soak: --in-process: the soak samples the service's own process, so it runs it as a child")
				}
				opts.HoldTTL = holdTTL
				o.childArgs = []string{"--hold-ttl=" + holdTTL.String()}
			} else if cmd.Flags().Changed("hold-ttl") {
				opts.HoldTTL = holdTTL
			}
			return o.run(cmd, func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
				return loadgen.Soak(ctx, cfg, opts)
			})
		},
	}
	cmd.Flags().DurationVar(&opts.SampleEvery, "sample-every", 10*time.Second, "how often every target's /metrics is sampled")
	cmd.Flags().DurationVar(&holdTTL, "hold-ttl", 15*time.Second, "with --embedded: the service's --hold-ttl, short so that abandoned holds expire during the run; with --target: the target's --hold-ttl")
	cmd.Flags().IntVar(&opts.Users, "users", loadgen.DefaultSoakUsers, "the population users are drawn from, round robin")
	cmd.Flags().Float64Var(&opts.Threshold, "threshold", loadgen.DefaultTrendThreshold, "largest climb of a series' fitted line over the second half, relative to its mean")
	return cmd
}

// startChild starts `booking serve` from this binary as a child process on a fresh temporary
// data dir and a free loopback port, configured so that neither the abuse limit nor the waiting
// queue shapes the load, and waits until it is ready. stop sends SIGTERM, waits for the graceful shutdown and removes the dir.
func (o *benchOptions) startChild(ctx context.Context) (target, admin string, stop func(), err error) {
	self, err := os.Executable()
	if err != nil {
		return "", "", nil, fmt.Errorf("bench: find this binary: %w", err)
	}
	dir, err := os.MkdirTemp("", "booking-bench-")
	if err != nil {
		return "", "", nil, fmt.Errorf("bench: data dir: %w", err)
	}
	admin = o.adminToken
	if admin == "" {
		admin = "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	// The port is free now; another process could take it before the child binds it, in
	// which case the child fails and waitReady says so.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		os.RemoveAll(dir)
		return "", "", nil, fmt.Errorf("bench: free port: %w", err)
	}
	addr := l.Addr().String()
	l.Close()
	args := append([]string{"serve", "--data-dir=" + dir, "--http-addr=" + addr, "--no-demo", "--log-level=error",
		"--user-rate-limit=0", "--queue-batch=0", "--fsync=" + o.fsync, "--group-commit=" + strconv.FormatBool(o.groupCommit),
		"--admin-token=" + admin}, o.childArgs...)
	c := exec.Command(self, args...)
	c.Stdout, c.Stderr = os.Stderr, os.Stderr
	if err := c.Start(); err != nil {
		os.RemoveAll(dir)
		return "", "", nil, fmt.Errorf("bench: start booking serve: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = c.Wait()
		close(exited)
	}()
	stop = func() {
		_ = c.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = c.Process.Kill()
			<-exited
		}
		os.RemoveAll(dir)
	}
	target = "http://" + addr
	if err := waitReady(ctx, target, 60*time.Second); err != nil {
		stop()
		return "", "", nil, fmt.Errorf("bench: child service: %w", err)
	}
	return target, admin, stop, nil
}
