package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/spf13/cobra"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// aggregateTypes are the types `events show` tries for a bare ID, the booking ones first.
var aggregateTypes = []string{
	eventstore.TypeSeat, eventstore.TypeReservation, eventstore.TypePayment, eventstore.TypeWallet,
	eventstore.TypeQueueUser, eventstore.TypeConcert, eventstore.TypeSellOut, eventstore.TypeQueueGate,
}

// logStore reads aggregates and streams: what `events show` needs of the log.
type logStore interface {
	eventstore.Store
	eventstore.Reader
}

// errNoEvents reports that nothing in the log matched what `events show` was asked for.
var errNoEvents = errors.New("no events found")

func newEventsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Read the event log: follow it, or show one aggregate's or one request's history",
		Long: `Read the event log, from a stopped server's data dir (--data-dir) or a running server's NATS
(--nats-url; start 'booking serve' with --nats-listen 127.0.0.1:4222 to make the embedded
server reachable). --data-dir cannot be used while 'booking serve' runs on that data dir.`,
		Args: cobra.NoArgs,
	}
	cmd.AddCommand(newEventsTailCmd(), newEventsShowCmd())
	return cmd
}

func newEventsTailCmd() *cobra.Command {
	var (
		where logFlags
		opts  tailOptions
	)
	cmd := &cobra.Command{
		Use:   "tail",
		Short: "Print events as they are appended, one line each",
		Long: `Print events as they are appended, one line each: time, stream:sequence, type,
aggregate, correlation and causation IDs, data. Streams are followed side by side, so with
--from-start the events of different streams interleave in no particular order.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := opts.filter.validate(); err != nil {
				return err
			}
			store, err := where.open(cmd.Context())
			if err != nil {
				return err
			}
			defer store.Close()
			return tailEvents(cmd.Context(), store, cmd.OutOrStdout(), opts)
		},
	}
	where.add(cmd.Flags())
	fs := cmd.Flags()
	fs.BoolVar(&opts.fromStart, "from-start", false, "print the whole log first, then follow")
	fs.StringSliceVar(&opts.filter.streams, "stream", nil, "only these streams (a name like SEATS_3, or a context like SEATS for all its partitions)")
	fs.StringSliceVar(&opts.filter.types, "type", nil, "only these event types (e.g. SeatHeld,SeatSold)")
	fs.StringVar(&opts.filter.aggregate, "aggregate", "", "only this aggregate: an ID, or type/ID (e.g. seat/c1.d1.7)")
	fs.StringVar(&opts.filter.correlation, "correlation", "", "only events with this correlation ID")
	fs.BoolVar(&opts.asJSON, "json", false, "print each event as its JSON envelope, with stream and sequence")
	return cmd
}

func newEventsShowCmd() *cobra.Command {
	var (
		where       logFlags
		correlation string
		asJSON      bool
	)
	cmd := &cobra.Command{
		Use:   "show AGGREGATE_ID | show --correlation ID",
		Short: "Print the history of an aggregate, or every event of one request",
		Long: `Print the history of an aggregate: a seat ("concert.date.seatNo"), reservation, payment or
wallet (userId); every aggregate type is tried, and every aggregate found is printed (a userId
names a wallet and a queue entry). A type/ID argument (e.g. wallet/u1) picks one type.
With --correlation, every stream is scanned for the events of one request (the API puts the
request's X-Request-ID in the correlation ID), printed in time order.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if correlation != "" {
				return cobra.NoArgs(cmd, args)
			}
			return cobra.ExactArgs(1)(cmd, args)
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			store, err := where.open(cmd.Context())
			if err != nil {
				return err
			}
			defer store.Close()
			if correlation != "" {
				return showCorrelation(cmd.Context(), store, cmd.OutOrStdout(), correlation, asJSON)
			}
			return showAggregate(cmd.Context(), store, cmd.OutOrStdout(), args[0], asJSON)
		},
	}
	where.add(cmd.Flags())
	cmd.Flags().StringVar(&correlation, "correlation", "", "print every event carrying this correlation ID, in time order")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print each event as its JSON envelope, with stream and sequence")
	return cmd
}

// eventFilter selects events; its zero value selects all.
type eventFilter struct {
	streams     []string // stream names or context prefixes, any case
	types       []string
	aggregate   string // "id" or "type/id"
	correlation string
}

// aggregateRef splits the --aggregate value: "type/id" when the prefix is a known type.
func aggregateRef(s string) (typ, id string) {
	if t, rest, ok := strings.Cut(s, "/"); ok && slices.Contains(aggregateTypes, t) {
		return t, rest
	}
	return "", s
}

func (f eventFilter) validate() error {
	for _, t := range f.types {
		if _, err := aggregates.Decode(t, []byte("{}")); errors.Is(err, aggregates.ErrUnknownEvent) {
			return fmt.Errorf("--type %s: %w", t, err)
		}
	}
	for _, s := range f.streams {
		if !slices.ContainsFunc(eventstore.Layout(), func(spec eventstore.StreamSpec) bool { return streamMatches(spec.Name, s) }) {
			return fmt.Errorf("--stream %s: no such stream (streams: CATALOG, QUEUE, SEATS_n, WALLETS_n with n < %d)", s, eventstore.Partitions)
		}
	}
	return nil
}

// streamMatches tells whether a stream is named by want: its name, or its context (the name
// without the partition suffix), in any case.
func streamMatches(stream, want string) bool {
	want = strings.ToUpper(want)
	if stream == want {
		return true
	}
	i := strings.LastIndexByte(stream, '_')
	return i > 0 && stream[:i] == want
}

// selectStreams returns the streams that can hold matching events: the --stream ones, narrowed
// to where the --aggregate can live.
func (f eventFilter) selectStreams() []string {
	var names []string
	typ, id := aggregateRef(f.aggregate)
	for _, spec := range eventstore.Layout() {
		if len(f.streams) > 0 && !slices.ContainsFunc(f.streams, func(s string) bool { return streamMatches(spec.Name, s) }) {
			continue
		}
		if id != "" && !slices.ContainsFunc(aggregateTypes, func(t string) bool {
			if typ != "" && t != typ {
				return false
			}
			_, streams, ok := locate(eventstore.AggregateRef{Type: t, ID: id})
			return ok && slices.Contains(streams, spec.Name)
		}) {
			continue
		}
		names = append(names, spec.Name)
	}
	return names
}

func (f eventFilter) match(env eventstore.Envelope) bool {
	if len(f.types) > 0 && !slices.Contains(f.types, env.Type) {
		return false
	}
	if f.correlation != "" && env.CorrelationID != f.correlation {
		return false
	}
	if f.aggregate != "" {
		typ, id := aggregateRef(f.aggregate)
		if env.AggregateID != id || (typ != "" && env.AggregateType != typ) {
			return false
		}
	}
	return true
}

// tailOptions are the flags of `events tail`.
type tailOptions struct {
	filter    eventFilter
	fromStart bool
	asJSON    bool
}

// tailEvents follows every selected stream until ctx ends, printing the matching events.
// The end of ctx is a normal end, not an error.
func tailEvents(ctx context.Context, r eventstore.Reader, w io.Writer, opts tailOptions) error {
	streams := opts.filter.selectStreams()
	if len(streams) == 0 {
		return fmt.Errorf("no stream can hold such events")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu   sync.Mutex // one line at a time across the streams
		wg   sync.WaitGroup
		errs = make([]error, len(streams))
	)
	for i, stream := range streams {
		wg.Go(func() {
			var after uint64
			if !opts.fromStart {
				head, err := r.Head(ctx, stream)
				if err != nil {
					errs[i] = fmt.Errorf("head of %s: %w", stream, err)
					cancel()
					return
				}
				after = head
			}
			err := r.Replay(ctx, stream, after, true, func(batch []eventstore.Envelope) error {
				var buf bytes.Buffer
				for _, env := range batch {
					if opts.filter.match(env) {
						if err := writeEvent(&buf, env, opts.asJSON); err != nil {
							return err
						}
					}
				}
				if buf.Len() == 0 {
					return nil
				}
				mu.Lock()
				defer mu.Unlock()
				_, err := w.Write(buf.Bytes())
				return err
			})
			if err != nil && ctx.Err() == nil {
				errs[i] = fmt.Errorf("follow %s: %w", stream, err)
				cancel()
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// showAggregate prints the history of every aggregate with this ID (or of the one named by
// type/ID).
func showAggregate(ctx context.Context, s logStore, w io.Writer, arg string, asJSON bool) error {
	typ, id := aggregateRef(arg)
	types := aggregateTypes
	if typ != "" {
		types = []string{typ}
	}
	found := 0
	for _, t := range types {
		ref := eventstore.AggregateRef{Type: t, ID: id}
		envs, err := history(ctx, s, ref)
		if err != nil {
			return err
		}
		if len(envs) == 0 {
			continue
		}
		found++
		if !asJSON {
			if found > 1 {
				fmt.Fprintln(w)
			}
			fmt.Fprintf(w, "%s (stream %s, %d events)\n", ref, envs[0].Stream, len(envs))
		}
		for _, env := range envs {
			var err error
			if asJSON {
				err = writeEvent(w, env, true)
			} else {
				_, err = fmt.Fprintf(w, "  v%d  %s  %s  corr=%s  cause=%s  %s\n", env.Sequence, formatTime(env), env.Type,
					orDash(env.CorrelationID), orDash(env.CausationID), compactJSON(env.Data))
			}
			if err != nil {
				return err
			}
		}
	}
	if found == 0 {
		return fmt.Errorf("aggregate %s: %w", arg, errNoEvents)
	}
	return nil
}

// locate says where an aggregate's events are: the aggregate whose subject holds them, to
// load, and the streams they can be in; ok is false for an ID the type cannot have. A seat's
// events are in its date's commits, a wallet's and a queue user's in their groups'; a
// reservation's and a payment's in the commits of a date their IDs do not name, so owner is
// nil and any SEATS stream may hold them.
func locate(ref eventstore.AggregateRef) (owner *eventstore.AggregateRef, streams []string, ok bool) {
	switch ref.Type {
	case eventstore.TypeSeat:
		concertID, dateID, _, valid := aggregates.ParseSeatID(ref.ID)
		if !valid {
			return nil, nil, false
		}
		ref = eventstore.AggregateRef{Type: eventstore.TypeDate, ID: concertID + "." + dateID}
	case eventstore.TypeWallet:
		ref = eventstore.WalletGroupOf(ref.ID)
	case eventstore.TypeQueueUser:
		ref = eventstore.QueueGroupOf(ref.ID)
	case eventstore.TypeReservation, eventstore.TypePayment:
		return nil, eventstore.StreamsOf(ref.Type), aggregates.ValidID(ref.ID)
	}
	stream, _, err := eventstore.Place(ref)
	if err != nil {
		return nil, nil, false
	}
	return &ref, []string{stream}, true
}

// history returns the events of one aggregate, in stream order; none for an ID its type
// cannot have.
func history(ctx context.Context, s logStore, ref eventstore.AggregateRef) ([]eventstore.Envelope, error) {
	owner, streams, ok := locate(ref)
	if !ok {
		return nil, nil
	}
	if owner != nil && *owner == ref {
		envs, err := s.Load(ctx, ref, 0)
		if err != nil {
			return nil, fmt.Errorf("load %s: %w", ref, err)
		}
		return envs, nil
	}
	var envs []eventstore.Envelope
	keep := func(batch []eventstore.Envelope) error {
		for _, env := range batch {
			if env.AggregateType == ref.Type && env.AggregateID == ref.ID {
				envs = append(envs, env)
			}
		}
		return nil
	}
	if owner != nil {
		all, err := s.Load(ctx, *owner, 0)
		if err != nil {
			return nil, fmt.Errorf("load %s of %s: %w", *owner, ref, err)
		}
		_ = keep(all)
		return envs, nil
	}
	for _, stream := range streams {
		if err := s.Replay(ctx, stream, 0, false, keep); err != nil {
			return nil, fmt.Errorf("read stream %s for %s: %w", stream, ref, err)
		}
	}
	return envs, nil
}

// showCorrelation scans every stream for the events of one correlation ID and prints them in
// time order (event IDs, which are time-ordered too, break ties).
func showCorrelation(ctx context.Context, r eventstore.Reader, w io.Writer, correlation string, asJSON bool) error {
	var found []eventstore.Envelope
	for _, spec := range eventstore.Layout() {
		err := r.Replay(ctx, spec.Name, 0, false, func(batch []eventstore.Envelope) error {
			for _, env := range batch {
				if env.CorrelationID == correlation {
					found = append(found, env)
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read stream %s: %w", spec.Name, err)
		}
	}
	if len(found) == 0 {
		return fmt.Errorf("correlation %s: %w", correlation, errNoEvents)
	}
	slices.SortStableFunc(found, func(a, b eventstore.Envelope) int {
		if c := a.OccurredAt.Compare(b.OccurredAt); c != 0 {
			return c
		}
		return strings.Compare(a.EventID, b.EventID)
	})
	for _, env := range found {
		if err := writeEvent(w, env, asJSON); err != nil {
			return err
		}
	}
	return nil
}

// envelopeJSON is an envelope as `--json` prints it: as stored, plus where it is stored.
type envelopeJSON struct {
	Stream   string `json:"stream"`
	Sequence uint64 `json:"sequence"`
	eventstore.Envelope
}

// writeEvent writes one event on one line.
func writeEvent(w io.Writer, env eventstore.Envelope, asJSON bool) error {
	if asJSON {
		b, err := json.Marshal(envelopeJSON{Stream: env.Stream, Sequence: env.Sequence, Envelope: env})
		if err != nil {
			return fmt.Errorf("encode %s:%d: %w", env.Stream, env.Sequence, err)
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	_, err := io.WriteString(w, formatLine(env)+"\n")
	return err
}

// formatLine is the one-line form of an event: time, stream:seq, type, aggregate,
// correlation and causation IDs, data.
func formatLine(env eventstore.Envelope) string {
	return fmt.Sprintf("%s  %s:%d  %s  %s/%s  corr=%s  cause=%s  %s", formatTime(env), env.Stream, env.Sequence, env.Type,
		env.AggregateType, env.AggregateID, orDash(env.CorrelationID), orDash(env.CausationID), compactJSON(env.Data))
}

func formatTime(env eventstore.Envelope) string {
	return env.OccurredAt.UTC().Format("2006-01-02T15:04:05.000Z07:00")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// compactJSON keeps an event's data on one line whatever its stored form.
func compactJSON(data json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, data); err != nil {
		return fmt.Sprintf("%q", data)
	}
	return b.String()
}
