package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/cobra"

	"github.com/booking-engine/booking/eventstore"
	"github.com/booking-engine/booking/projections"
)

func newRebuildCmd() *cobra.Command {
	var (
		dataDir, natsURL, fsync string
		names                   []string
	)
	cmd := &cobra.Command{
		Use:   "rebuild",
		Short: "Rebuild read models from the event log (offline)",
		Long: `Rebuild the read models in DATA_DIR/projections by replaying the event log from the start,
each into a fresh file that replaces the old one only when complete. The log is the embedded
JetStream of --data-dir, or the NATS servers of --nats-url. The server must not be running on
this data dir (a running server rebuilds online: POST /api/v1/admin/projections/{name}/rebuild).
Projections: ` + strings.Join(projections.AllNames(), ", ") + ` (all when --projection is not given).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fsync != "always" && fsync != "interval" {
				return fmt.Errorf("--fsync must be always or interval, not %q", fsync)
			}
			logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
			opts := eventstore.Options{DataDir: dataDir, SyncAlways: fsync == "always", Logger: logger}
			for _, u := range strings.Split(natsURL, ",") {
				if u = strings.TrimSpace(u); u != "" {
					opts.NATSURLs = append(opts.NATSURLs, u)
				}
			}
			if len(opts.NATSURLs) == 0 {
				// Open would create an empty log in a mistyped directory, and rebuild every
				// read model empty from it.
				if _, err := os.Stat(filepath.Join(dataDir, "nats")); err != nil {
					return fmt.Errorf("no event log in data dir %s: %w", dataDir, err)
				}
			}
			store, err := eventstore.Open(cmd.Context(), opts)
			if errors.Is(err, eventstore.ErrDataDirInUse) {
				return fmt.Errorf("data dir %s is in use: stop 'booking serve' first, or rebuild online: %w", dataDir, err)
			}
			if err != nil {
				return fmt.Errorf("rebuild: event log: %w", err)
			}
			defer store.Close()

			out := cmd.ErrOrStderr()
			var bar *progressbar.ProgressBar
			progress := func(p projections.Progress) {
				if bar == nil {
					bar = progressbar.NewOptions64(int64(max(p.Total, 1)), progressbar.OptionSetWriter(out),
						progressbar.OptionSetDescription("rebuilding"), progressbar.OptionShowCount(),
						progressbar.OptionSetItsString("events"), progressbar.OptionShowIts(),
						progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionSetPredictTime(true),
						progressbar.OptionFullWidth(), progressbar.OptionClearOnFinish())
				}
				_ = bar.Set64(int64(p.Done))
			}
			if !rebuildToTerminal(out) {
				progress = nil
			}
			stats, err := projections.RebuildOffline(cmd.Context(), projections.Dir(dataDir), store, names, logger, progress)
			if bar != nil {
				_ = bar.Finish()
			}
			if errors.Is(err, projections.ErrInUse) {
				return fmt.Errorf("rebuild: %w: stop 'booking serve' first, or rebuild online", err)
			}
			if err != nil {
				return fmt.Errorf("rebuild: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "rebuilt %s: %d events in %s (%.0f events/s)\n",
				strings.Join(stats.Projections, ", "), stats.Events, stats.Elapsed.Round(time.Millisecond), stats.EventsPerSecond())
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&dataDir, "data-dir", "./data", "data directory (embedded JetStream and read models)")
	fs.StringVar(&natsURL, "nats-url", "", "external NATS server or cluster (comma-separated URLs) holding the log, instead of the embedded one")
	fs.StringVar(&fsync, "fsync", "always", "the embedded server's fsync policy: always or interval (the rebuild only reads the log)")
	fs.StringSliceVar(&names, "projection", nil, "rebuild only these projections (repeat or comma-separate)")
	return cmd
}

// rebuildToTerminal reports whether w is a terminal, where a progress bar makes sense.
func rebuildToTerminal(w any) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
