package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"github.com/booking-engine/booking/loadgen"
)

// benchOptions are the flags every bench scenario shares.
type benchOptions struct {
	target      string
	embedded    bool
	adminToken  string
	jsonPath    string
	reportPath  string
	svgDir      string
	rate        float64
	duration    time.Duration
	maxInflight int
	timeout     time.Duration
	fsync       string
	groupCommit bool
	warmup      time.Duration
	client      string
	keys        bool
	// inProcess makes --embedded start the service inside the generator's process instead of
	// as a child `booking serve`; childArgs are added to the child's flags.
	inProcess bool
	childArgs []string
	// cpuProfile is where the generator's CPU profile goes (--cpuprofile).
	cpuProfile string
}

// benchRebuilder prepares the subject of `bench rebuild`: a fresh data dir filled until it
// holds about events events (or, with events 0, a data dir as it is), and the projections to
// rebuild from it. It lives behind a variable because only the engine's wiring can build one
// (loadgen imports nothing of the engine); it is set where the projections are wired, and
// `bench rebuild` says so plainly while it is nil.
var benchRebuilder func(ctx context.Context, dataDir string, events int, fsync string) (r loadgen.Rebuilder, stop func(), err error)

// errRebuildNotWired is returned by `bench rebuild` while benchRebuilder is not set.
var errRebuildNotWired = errors.New("bench rebuild: no rebuilder is wired into this binary")

func newBenchCmd() *cobra.Command {
	o := &benchOptions{}
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Open-model HTTP load generator against the service",
		Long: `Runs a load scenario against a booking service and prints a table (and, with --json, a
JSON file) of throughput, errors and latency percentiles.

Requests are launched at a fixed --rate whether or not earlier ones have answered, and latency
is measured from each request's scheduled start, so queueing in the service shows up in the
percentiles. --max-inflight caps requests in flight; every launch it delays is counted.

Against --target the service must run with --user-rate-limit 0 --queue-batch 0, or its
abuse limit and waiting queue answer 429 RATE_LIMITED / 403 TOKEN_NOT_ACTIVE (reported as
such). --embedded starts a service on a fresh temporary data dir, set up that way: this binary's
` + "`booking serve`" + ` as a child process, so that the service has a Go runtime of its own, as
deployed. --in-process runs it inside the generator's process instead: one scheduler and one
heap for both, so the generator's goroutines and garbage take CPU from the service (a flash
sale measured about 30% fewer holds a second that way on a 2-core machine).

--target URL1,URL2 spreads the load over instances of one service (same log, same
--token-secret): the benchmark's concerts are created through the first, and each user's
requests all go to one instance, users round robin, as behind a load balancer with session
affinity (read-your-writes holds per instance).`,
	}
	pf := cmd.PersistentFlags()
	pf.StringVar(&o.target, "target", "http://127.0.0.1:8080", "base URL of the service to load, or several instances' URLs comma-separated to spread the users over them (run them with --user-rate-limit 0 --queue-batch 0)")
	pf.BoolVar(&o.embedded, "embedded", false, "start a service (this binary's `booking serve`, a child process) on a fresh temporary data dir instead of using --target")
	pf.StringVar(&o.cpuProfile, "cpuprofile", "", "write the generator's CPU profile (with --in-process, the service's too) to this file, to see what the load itself costs")
	pf.BoolVar(&o.inProcess, "in-process", false, "with --embedded: run the service inside the generator's process instead of as a child process")
	pf.StringVar(&o.adminToken, "admin-token", "", "admin token of the target, to create the benchmark's concerts (generated with --embedded)")
	pf.StringVar(&o.jsonPath, "json", "", "also write the figures as JSON to this file")
	pf.StringVar(&o.reportPath, "report", "", "also write a self-contained HTML page (throughput over time, latency percentile curve) to this file")
	pf.StringVar(&o.svgDir, "svg-dir", "", "also write the run's charts as SVG images, named after the scenario, into this directory (as bench chart draws them)")
	pf.Float64Var(&o.rate, "rate", 1000, "arrival rate, requests (or flows) per second")
	pf.DurationVar(&o.duration, "duration", 10*time.Second, "how long to offer load (flash-sale, read)")
	pf.IntVar(&o.maxInflight, "max-inflight", 1024, "safety cap on requests in flight and connections; launches it delays are counted")
	pf.DurationVar(&o.timeout, "timeout", 10*time.Second, "per-request timeout")
	pf.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured GET /healthz at --rate before flash-sale, booking and read, so connections are open (0: none)")
	pf.StringVar(&o.fsync, "fsync", "always", "with --embedded: the service's --fsync, always or interval")
	pf.BoolVar(&o.groupCommit, "group-commit", true, "with --embedded: the service's --group-commit")
	pf.StringVar(&o.client, "client", string(loadgen.ClientFastHTTP), "HTTP client library of the generator: fasthttp (least CPU) or nethttp (Go's net/http, as most users' clients)")
	cmd.AddCommand(newBenchRaceCmd(o), newBenchFlashSaleCmd(o), newBenchBookingCmd(o), newBenchReadCmd(o), newBenchRebuildCmd(o), newBenchWatchCmd(o), newBenchSoakCmd(o), newBenchChartCmd())
	return cmd
}

func newBenchRaceCmd(o *benchOptions) *cobra.Command {
	var opts loadgen.RaceOptions
	cmd := &cobra.Command{
		Use:   "race",
		Short: "N users hold one seat at the same instant: exactly one must win",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd, func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
				return loadgen.Race(ctx, cfg, opts)
			})
		},
	}
	cmd.Flags().IntVar(&opts.Users, "users", 1000, "users racing for the seat")
	cmd.Flags().StringVar(&opts.ConcertID, "concert", "", "race for a seat of this existing concert instead of creating one (needs --date and --seat)")
	cmd.Flags().StringVar(&opts.DateID, "date", "", "date of --concert")
	cmd.Flags().IntVar(&opts.SeatNo, "seat", 0, "seat number of --concert/--date; it must be AVAILABLE")
	return cmd
}

func newBenchFlashSaleCmd(o *benchOptions) *cobra.Command {
	var opts loadgen.FlashSaleOptions
	cmd := &cobra.Command{
		Use:   "flash-sale",
		Short: "Holds on random free seats of a new concert (dates of up to 10000 seats) at --rate for --duration (needs --admin-token)",
		Long: `Puts --seats seats on sale (one new concert, dates of up to 10000 seats) and, at --rate for
--duration, holds random seats the run has not won yet; once all are won it keeps holding, so
the figures also show how fast the service says "sold out".

--seats-per-hold N (1-8) makes each hold ask for N seats of one date at once (seatNos): a block
of N consecutive seats not won yet, or, once a date has no such block, the free seats nearest
to one (fewer when the date has fewer left). The table counts accepted holds and the seats they
hold; the checks are that the accepted holds hold exactly --seats seats, each hold exactly the
seats it asked for, and no seat is held twice.

The users (--users) take turns; by default there are enough of them that each wins about two
seats of a date, well below the target's --max-seats-per-user (8 by default). Holds refused
with SEAT_LIMIT_REACHED are counted among the 409s and reported with a warning.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd, func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
				return loadgen.FlashSale(ctx, cfg, opts)
			})
		},
	}
	cmd.Flags().IntVar(&opts.Seats, "seats", 1000, "seats on sale (1-1000000), over dates of at most 10000: 100000 is ten dates")
	cmd.Flags().IntVar(&opts.Users, "users", 0, "distinct users sending the holds (default min(seats, 1000), and at least half the seats of the largest date)")
	cmd.Flags().IntVar(&opts.SeatsPerHold, "seats-per-hold", 1, "seats of one date each hold asks for (1-8; more than 1 sends seatNos)")
	addKeysFlag(cmd, o)
	return cmd
}

func newBenchBookingCmd(o *benchOptions) *cobra.Command {
	var opts loadgen.BookingOptions
	cmd := &cobra.Command{
		Use:   "booking",
		Short: "New users arrive at --rate and each runs token, charge, hold, pay (needs --admin-token; ignores --duration)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd, func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
				return loadgen.Booking(ctx, cfg, opts)
			})
		},
	}
	cmd.Flags().IntVar(&opts.Users, "users", 1000, "users arriving, one booking each")
	addKeysFlag(cmd, o)
	return cmd
}

// addKeysFlag adds --idempotency-keys to a scenario that sends state-changing requests.
func addKeysFlag(cmd *cobra.Command, o *benchOptions) {
	cmd.Flags().BoolVar(&o.keys, "idempotency-keys", false, "send a unique Idempotency-Key with every POST, to measure what keys cost")
}

func newBenchReadCmd(o *benchOptions) *cobra.Command {
	var opts loadgen.ReadOptions
	cmd := &cobra.Command{
		Use:   "read",
		Short: "Seat map and date list GETs at --rate for --duration",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return o.run(cmd, func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
				return loadgen.Read(ctx, cfg, opts)
			})
		},
	}
	cmd.Flags().StringVar(&opts.ConcertID, "concert", "", "concert to read (default: the first one listed)")
	cmd.Flags().StringVar(&opts.DateID, "date", "", "date to read (default: the concert's first)")
	cmd.Flags().BoolVar(&opts.Plain, "plain", false, "ask for uncompressed answers (by default reads accept gzip, as browsers do)")
	return cmd
}

func newBenchWatchCmd(o *benchOptions) *cobra.Command {
	var opts loadgen.WatchOptions
	cmd := &cobra.Command{
		Use:   "watch",
		Short: "Open --streams seat-map streams on one new date; report the server's RSS per stream and how fast holds reach them all (needs --admin-token)",
		Long: `Opens --streams seat-map streams on one new date (spread over 127.0.0.x source addresses,
--per-source each), measures the target's resident memory and CPU from its /metrics, then holds
--probes seats of that date one after another and times each from its 201 to every stream
seeing it. With --sale-rate a flash sale holds seats of another concert at that rate meanwhile.
Run the target as its own process (--target), with a --max-streams and an open-file limit above
--streams; this command raises its own soft open-file limit to the hard one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if soft, _, err := raiseOpenFileLimit(); err != nil || soft < uint64(opts.Streams)+1024 {
				return fmt.Errorf("bench watch: open-file limit %d is too low for %d streams (raise it with ulimit -Hn): %v", soft, opts.Streams, err)
			}
			return o.run(cmd, func(ctx context.Context, cfg loadgen.Config) (loadgen.Result, error) {
				return loadgen.Watch(ctx, cfg, opts)
			})
		},
	}
	cmd.Flags().IntVar(&opts.Streams, "streams", 1000, "seat-map streams to open")
	cmd.Flags().IntVar(&opts.Seats, "seats", 1000, "seats of the watched date (1-10000)")
	cmd.Flags().IntVar(&opts.Probes, "probes", 20, "holds on the watched date timed until every stream saw them")
	cmd.Flags().DurationVar(&opts.ProbeEvery, "probe-every", 500*time.Millisecond, "pause between probe holds")
	cmd.Flags().Float64Var(&opts.SaleRate, "sale-rate", 0, "holds per second of a flash sale on another concert while probing (0: none)")
	cmd.Flags().IntVar(&opts.PerSource, "per-source", 20_000, "streams per 127.0.0.x source address")
	cmd.Flags().DurationVar(&opts.Settle, "settle", 15*time.Second, "idle time with the streams open before the server's memory is read")
	return cmd
}

func newBenchRebuildCmd(o *benchOptions) *cobra.Command {
	var events int
	var keep, reuse string
	cmd := &cobra.Command{
		Use:   "rebuild",
		Short: "Read-model rebuild throughput in events/s beside the raw replay rate (not HTTP)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if benchRebuilder == nil {
				return errRebuildNotWired
			}
			if events < 1 {
				return fmt.Errorf("bench rebuild: --events %d must be positive", events)
			}
			if err := o.checkFsync(); err != nil {
				return err
			}
			if reuse != "" && keep != "" {
				return errors.New("bench rebuild: --reuse-data-dir and --keep-data-dir exclude each other")
			}
			dir := keep
			if reuse != "" {
				// Timing the same log again separates a change's effect from run-to-run noise.
				if _, err := os.Stat(filepath.Join(reuse, "nats")); err != nil {
					return fmt.Errorf("bench rebuild: --reuse-data-dir %s holds no log: %w", reuse, err)
				}
				dir, events = reuse, 0
			}
			if dir == "" {
				tmp, err := os.MkdirTemp("", "booking-bench-rebuild-")
				if err != nil {
					return fmt.Errorf("bench rebuild: %w", err)
				}
				defer os.RemoveAll(tmp)
				dir = tmp
			}
			r, stop, err := benchRebuilder(cmd.Context(), dir, events, o.fsync)
			if err != nil {
				return fmt.Errorf("bench rebuild: prepare %d events: %w", events, err)
			}
			defer stop()
			res, err := loadgen.RebuildBench(cmd.Context(), r)
			if err != nil {
				return fmt.Errorf("bench rebuild: %w", err)
			}
			return o.report(cmd, res)
		},
	}
	cmd.Flags().IntVar(&events, "events", 100_000, "events in the log to rebuild from")
	cmd.Flags().StringVar(&keep, "keep-data-dir", "", "fill and keep this (new) data dir instead of a temporary one, e.g. to time a restart on it")
	cmd.Flags().StringVar(&reuse, "reuse-data-dir", "", "time on this data dir, filled earlier with --keep-data-dir, instead of filling one (--events is ignored)")
	return cmd
}

func newBenchChartCmd() *cobra.Command {
	var runs []string
	var outDir, name string
	cmd := &cobra.Command{
		Use:   "chart --run LABEL=FILE.json [--run ...] --out-dir DIR --name NAME",
		Short: "Draw the --json results of one or more runs side by side as SVG images (runs nothing)",
		Long: `Reads results written by "booking bench ... --json FILE" and draws them side by side as
standalone SVG images (white background, so they read on light and dark pages) into --out-dir:

  NAME-throughput.svg     accepted answers per second over the run, a line per run
  NAME-latency.svg        latency by percentile on HdrHistogram's log axis, a line per run
  NAME-soak-SERIES.svg    for soak results, each sampled series (rss, goroutines,
                          goroutines-but-http, open-fds, files, lag, p99) with the line the
                          trend verdict fitted over the second half

--run LABEL=FILE is repeatable; the label names the run's line in the legends (split at the
last "="; without one the file's base name is the label). The images are the HTML report's
charts and depend only on the files and labels, so drawing them again changes no byte.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(runs) == 0 {
				return errors.New("bench chart: give at least one --run LABEL=FILE.json")
			}
			var loaded []loadgen.ChartRun
			for _, spec := range runs {
				r, err := loadgen.LoadChartRun(spec)
				if err != nil {
					return fmt.Errorf("bench chart: %w", err)
				}
				loaded = append(loaded, r)
			}
			paths, err := loadgen.WriteChartSVGs(outDir, name, loaded)
			if err != nil {
				return fmt.Errorf("bench chart: %w", err)
			}
			for _, p := range paths {
				fmt.Fprintln(cmd.OutOrStdout(), p)
			}
			return nil
		},
	}
	cmd.Flags().StringArrayVar(&runs, "run", nil, "a run to draw, LABEL=FILE.json (a bench --json result); repeat for several")
	cmd.Flags().StringVar(&outDir, "out-dir", ".", "directory to write the images into (made if missing)")
	cmd.Flags().StringVar(&name, "name", "bench", "prefix of the image files' names")
	return cmd
}

// run sets up the target, runs one HTTP scenario against it and reports the result.
func (o *benchOptions) run(cmd *cobra.Command, scenario func(context.Context, loadgen.Config) (loadgen.Result, error)) error {
	ctx := cmd.Context()
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
	cfg := loadgen.Config{
		Target:      o.target,
		AdminToken:  o.adminToken,
		Rate:        o.rate,
		Duration:    o.duration,
		MaxInflight: o.maxInflight,
		Warmup:      o.warmup,
		Timeout:     o.timeout,
		Log:         log,

		Client:          loadgen.ClientKind(o.client),
		IdempotencyKeys: o.keys,
	}
	if err := o.checkFsync(); err != nil {
		return err
	}
	if k := loadgen.ClientKind(o.client); k != loadgen.ClientFastHTTP && k != loadgen.ClientNetHTTP {
		return fmt.Errorf("bench: --client %q: want %s or %s", o.client, loadgen.ClientFastHTTP, loadgen.ClientNetHTTP)
	}
	if o.embedded {
		if cmd.Flags().Changed("target") {
			return errors.New("bench: --target and --embedded exclude each other")
		}
		start := o.startChild
		if o.inProcess {
			start = o.startEmbedded
		}
		target, admin, stop, err := start(ctx)
		if err != nil {
			return err
		}
		defer stop()
		cfg.Target, cfg.AdminToken = target, admin
	} else {
		if cmd.Flags().Changed("fsync") || cmd.Flags().Changed("group-commit") || o.inProcess {
			return errors.New("bench: --fsync, --group-commit and --in-process apply to --embedded only; set the first two on the target service")
		}
		log.Info("benchmarking an external target: it must run with --user-rate-limit 0 --queue-batch 0", "target", o.target)
	}
	if o.cpuProfile != "" {
		stop, err := startCPUProfile(o.cpuProfile)
		if err != nil {
			return err
		}
		defer stop()
	}
	log.Info("bench starting", "scenario", cmd.Name(), "target", cfg.Target, "rate", cfg.Rate, "duration", cfg.Duration,
		"client", o.client, "idempotency_keys", o.keys)
	res, err := scenario(ctx, cfg)
	if err != nil {
		return fmt.Errorf("bench %s: %w", cmd.Name(), err)
	}
	return o.report(cmd, res)
}

// startEmbedded starts a service in-process on a fresh temporary data dir, configured as
// startChild configures its child, and returns how to reach it.
func (o *benchOptions) startEmbedded(ctx context.Context) (target, admin string, stop func(), err error) {
	dir, err := os.MkdirTemp("", "booking-bench-")
	if err != nil {
		return "", "", nil, fmt.Errorf("bench: data dir: %w", err)
	}
	admin = o.adminToken
	if admin == "" {
		var b [16]byte
		if _, err := rand.Read(b[:]); err != nil {
			os.RemoveAll(dir)
			return "", "", nil, fmt.Errorf("bench: admin token: %w", err)
		}
		admin = hex.EncodeToString(b[:])
	}
	target, got, stopServer, err := startEmbedded(ctx, dir,
		"--user-rate-limit=0", "--queue-batch=0", "--fsync="+o.fsync, "--group-commit="+strconv.FormatBool(o.groupCommit), "--admin-token="+admin)
	if err != nil {
		os.RemoveAll(dir)
		return "", "", nil, fmt.Errorf("bench: start embedded service: %w", err)
	}
	if got != "" {
		admin = got
	}
	return target, admin, func() {
		stopServer()
		os.RemoveAll(dir)
	}, nil
}

// startCPUProfile profiles this process's CPU into path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("bench: --cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench: --cpuprofile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}, nil
}

func (o *benchOptions) checkFsync() error {
	if o.fsync != "always" && o.fsync != "interval" {
		return fmt.Errorf("bench: --fsync %q: want always or interval", o.fsync)
	}
	return nil
}

// report prints the table, writes the JSON file when asked, and fails the command when a
// correctness check failed, so that scripts and CI notice.
func (o *benchOptions) report(cmd *cobra.Command, res loadgen.Result) error {
	if err := res.WriteTable(cmd.OutOrStdout()); err != nil {
		return fmt.Errorf("bench: print result: %w", err)
	}
	if o.jsonPath != "" {
		if err := res.WriteJSONFile(o.jsonPath); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if o.reportPath != "" {
		if err := res.WriteHTMLFile(o.reportPath); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if o.svgDir != "" {
		if _, err := loadgen.WriteChartSVGs(o.svgDir, res.Scenario, []loadgen.ChartRun{{Label: res.Scenario, Result: res}}); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	if failed := res.Failed(); len(failed) > 0 {
		return fmt.Errorf("bench %s: %d check(s) failed, first %q: %w", res.Scenario, len(failed), failed[0].Name, exitCode(1))
	}
	return nil
}
