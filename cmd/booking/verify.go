package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/audit"
	"github.com/booking-engine/booking/eventstore"
)

const verifyLong = `Audit the event log alone (not the read models): no seat held or sold twice at once,
no seat in two live reservations, a reservation's seats held, sold and released together with
it (in one commit of its date) and never left in different states, every wallet's ledger
balanced and never negative, no payment debited twice, no refund of a debit twice or of a
payment never debited, every debit paid for or reversed, every CONFIRMED reservation paid by
exactly one COMPLETED payment with its seats SOLD to it, and every expired or cancelled hold
released its seats. A hold still HELD past its heldUntil is a warning (the expiry sweeper
settles it).

Exit status 0 when everything holds, 1 with a report naming the offending aggregates otherwise.

A payment still STARTED or REFUNDING (and what follows from it) is a violation: after a
shutdown or a recovery nothing should be in flight. --allow-in-flight reports those states as
warnings instead, for auditing a live server.

With --data-dir, verify starts its own embedded NATS server on the data dir, so it cannot run
while 'booking serve' runs on that data dir. To audit a live server, start it with
--nats-listen 127.0.0.1:4222 and run verify --nats-url nats://127.0.0.1:4222 --allow-in-flight;
streams are read one after the other, so findings that join streams may then be transient.`

// logFlags say where the event log is: an embedded server over a data dir, or NATS servers.
type logFlags struct {
	dataDir string
	natsURL string
}

func (f *logFlags) add(fs *pflag.FlagSet) {
	fs.StringVar(&f.dataDir, "data-dir", "./data", "data directory of a stopped 'booking serve' (its embedded JetStream holds the log)")
	fs.StringVar(&f.natsURL, "nats-url", "", "NATS server or cluster (comma-separated URLs) to read instead, e.g. a server run with --nats-listen")
}

// open connects to the log: the NATS servers if given, otherwise an embedded server over the
// data dir, refused while another process uses that data dir.
func (f logFlags) open(ctx context.Context) (*eventstore.JetStreamStore, error) {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	var urls []string
	for _, u := range strings.Split(f.natsURL, ",") {
		if u = strings.TrimSpace(u); u != "" {
			urls = append(urls, u)
		}
	}
	if len(urls) > 0 {
		s, err := eventstore.Open(ctx, eventstore.Options{NATSURLs: urls, ConnectAttempts: 3, Logger: logger})
		if err != nil {
			return nil, fmt.Errorf("event log at %s: %w", f.natsURL, err)
		}
		return s, nil
	}
	// Open would create an empty log in a mistyped directory, and an empty log passes every
	// audit.
	if _, err := os.Stat(filepath.Join(f.dataDir, "nats")); err != nil {
		return nil, fmt.Errorf("no event log in data dir %s: %w", f.dataDir, err)
	}
	s, err := eventstore.Open(ctx, eventstore.Options{DataDir: f.dataDir, Logger: logger})
	if errors.Is(err, eventstore.ErrDataDirInUse) {
		return nil, fmt.Errorf("data dir %s is in use: stop 'booking serve', or start it with --nats-listen and pass --nats-url: %w", f.dataDir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("event log in %s: %w", f.dataDir, err)
	}
	return s, nil
}

func newVerifyCmd() *cobra.Command {
	var (
		where         logFlags
		asJSON        bool
		allowInFlight bool
	)
	cmd := &cobra.Command{
		Use:   "verify [--data-dir D | --nats-url U]",
		Short: "Audit the event log: seats, wallets, payments and reservations agree",
		Long:  verifyLong,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			store, err := where.open(ctx)
			if err != nil {
				return err
			}
			defer store.Close()
			rep, err := auditLog(ctx, store, audit.Options{AllowInFlight: allowInFlight, Now: time.Now()})
			if err != nil {
				return err
			}
			return writeVerifyReport(cmd.OutOrStdout(), cmd.ErrOrStderr(), rep, asJSON)
		},
	}
	where.add(cmd.Flags())
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the report as JSON (the summary line goes to stderr)")
	cmd.Flags().BoolVar(&allowInFlight, "allow-in-flight", false, "report payments still running as warnings, not violations (for a live server)")
	return cmd
}

// auditLog feeds every stream of the layout, in stream order, to an auditor.
func auditLog(ctx context.Context, r eventstore.Reader, opts audit.Options) (audit.Report, error) {
	a := audit.New(opts)
	for _, spec := range eventstore.Layout() {
		err := r.Replay(ctx, spec.Name, 0, false, func(batch []eventstore.Envelope) error {
			for _, env := range batch {
				a.Add(recordOf(env))
			}
			return nil
		})
		if err != nil {
			return audit.Report{}, fmt.Errorf("read stream %s: %w", spec.Name, err)
		}
	}
	return a.Report(), nil
}

func recordOf(env eventstore.Envelope) audit.Record {
	r := audit.Record{
		AggregateType: env.AggregateType, AggregateID: env.AggregateID, Stream: env.Stream,
		Sequence: env.Sequence, Index: env.Index, OccurredAt: env.OccurredAt, Type: env.Type,
	}
	ev, err := aggregates.Decode(env.Type, env.Data)
	if err != nil {
		r.DecodeError = err.Error()
		return r
	}
	r.Event = ev
	return r
}

// writeVerifyReport prints the report and turns violations into exit status 1.
func writeVerifyReport(stdout, stderr io.Writer, rep audit.Report, asJSON bool) error {
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
		fmt.Fprintln(stderr, rep.Summary())
	} else if err := rep.WriteText(stdout); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	if !rep.OK() {
		return exitCode(1)
	}
	return nil
}
