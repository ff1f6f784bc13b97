package main

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/booking-engine/booking/relay/mockplatform"
)

// newDataPlatformCmd runs the mock data platform until SIGINT/SIGTERM.
func newDataPlatformCmd() *cobra.Command {
	var (
		addr      string
		failRate  float64
		latency   time.Duration
		failFirst int
		verbose   bool
	)
	cmd := &cobra.Command{
		Use:   "dataplatform",
		Short: "Run a mock data platform that receives the relay's facts",
		Long: `Runs a mock data platform: POST /events accepts facts and dedups them by
Idempotency-Key; GET /events lists the unique events ({"count", "events"}); GET /stats
counts requests ({"received", "unique", "duplicates", "failed"}). --fail-rate, --latency and
--fail-first inject failures (500) and slowness to watch the relay retry.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if failRate < 0 || failRate > 1 {
				return fmt.Errorf("--fail-rate %v: must be between 0 and 1", failRate)
			}
			if latency < 0 || failFirst < 0 {
				return fmt.Errorf("--latency and --fail-first must not be negative")
			}
			level := slog.LevelInfo
			if verbose {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
			p := mockplatform.New(mockplatform.Options{FailRate: failRate, Latency: latency, FailFirst: failFirst, Logger: log})
			if err := p.Start(addr); err != nil {
				return err
			}
			log.Info("dataplatform: listening", "url", p.URL(), "failRate", failRate, "latency", latency, "failFirst", failFirst)
			<-cmd.Context().Done()
			err := p.Close()
			s := p.Stats()
			log.Info("dataplatform: stopped", "received", s.Received, "unique", s.Unique, "duplicates", s.Duplicates, "failed", s.Failed)
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&addr, "addr", "127.0.0.1:9090", "address to listen on")
	f.Float64Var(&failRate, "fail-rate", 0, "share of POST /events answered 500 at random (0 to 1)")
	f.DurationVar(&latency, "latency", 0, "delay before answering each POST /events")
	f.IntVar(&failFirst, "fail-first", 0, "answer the first N POST /events with 500")
	f.BoolVarP(&verbose, "verbose", "v", false, "log every accepted event")
	return cmd
}
