package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/booking-engine/booking/eventstore"
)

// Rebuild rebuilds one projection online: it builds a fresh file from sequence 0 while the
// current one keeps serving, then stops the current one's updates for as long as the fresh one
// needs to catch up with the last few events, and swaps it in. Readers see either the old
// model or the complete new one, never a half-built one. Events that reach subscribers are
// delivered once across the swap. It returns when the new model is serving (it can take as
// long as a full replay: callers answering a request should run it on a context of their own).
func (e *Engine) Rebuild(ctx context.Context, name string) error {
	p, err := e.beginRebuild(name)
	if err != nil {
		return err
	}
	defer p.rebuilding.Store(false)
	return e.rebuild(ctx, p)
}

// RebuildAsync checks name and that no rebuild of it runs, then rebuilds it in the background
// for as long as the engine runs, logging the outcome: what an API answering 202 needs.
func (e *Engine) RebuildAsync(name string) error {
	p, err := e.beginRebuild(name)
	if err != nil {
		return err
	}
	ctx := context.Background()
	e.startMu.Lock()
	if e.started {
		ctx = e.ctx
	}
	e.startMu.Unlock()
	go func() {
		defer p.rebuilding.Store(false)
		if err := e.rebuild(ctx, p); err != nil {
			e.log.Error("projection rebuild failed", "projection", name, "err", err)
		}
	}()
	return nil
}

func (e *Engine) beginRebuild(name string) (*proj, error) {
	p := e.byName[name]
	if p == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownProjection, name)
	}
	if !p.rebuilding.CompareAndSwap(false, true) {
		return nil, fmt.Errorf("%w: %s", ErrRebuildRunning, name)
	}
	return p, nil
}

func (e *Engine) rebuild(ctx context.Context, p *proj) error {
	name := p.name
	start := time.Now()
	path := p.path + ".new"
	_ = os.Remove(path)
	g, err := openGeneration(p.spec, path, true, e.log, e.kickSellOuts)
	if err != nil {
		return err
	}
	discard := func() {
		_ = g.close()
		_ = os.Remove(path)
	}
	if err := catchUp(ctx, e.store, []*generation{g}, p.streams, nil, nil); err != nil {
		discard()
		return fmt.Errorf("projections: rebuild %s: %w", name, err)
	}
	if err := g.endOverlay(); err != nil {
		discard()
		return fmt.Errorf("projections: rebuild %s: %w", name, err)
	}

	p.runMu.Lock()
	defer p.runMu.Unlock()
	old := p.current()
	if p.runner != nil {
		p.runner.stop()
		p.runner = nil
	}
	restart := func(g *generation) {
		e.startMu.Lock()
		defer e.startMu.Unlock()
		if e.started && e.ctx.Err() == nil {
			p.runner = e.startRunner(p, g)
		}
	}
	// Catch up from where the older of the two stands, so that the subscribers get every
	// event the old generation had not delivered yet, and the new one applies only what it
	// lacks (apply skips what is at or below its checkpoints).
	from := map[string]uint64{}
	emitAbove := map[string]uint64{}
	for _, s := range p.streams {
		from[s] = min(old.checkpoint(s), g.checkpoint(s))
		if e.emitter[s] == p {
			emitAbove[s] = old.checkpoint(s)
		}
	}
	if err := catchUp(ctx, e.store, []*generation{g}, p.streams, from, func(batch []eventstore.Envelope, s string) {
		if above, ok := emitAbove[s]; ok {
			e.publish(batch, above)
		}
	}); err != nil {
		discard()
		restart(old)
		return fmt.Errorf("projections: rebuild %s: %w", name, err)
	}
	if err := g.syncForLive(); err != nil {
		discard()
		restart(old)
		return fmt.Errorf("projections: rebuild %s: %w", name, err)
	}
	if err := os.Rename(path, p.path); err != nil {
		discard()
		restart(old)
		return fmt.Errorf("projections: rebuild %s: %w", name, err)
	}
	p.setGen(g)
	p.broadcast()
	restart(g)
	if err := g.goLive(); err != nil {
		e.log.Error("rebuilt projection could not finish catching up", "projection", name, "err", err)
	}
	go func() {
		if err := old.close(); err != nil {
			e.log.Warn("closing the replaced read model", "projection", name, "err", err)
		}
	}()
	e.log.Info("projection rebuilt", "projection", name, "took", time.Since(start))
	return nil
}

// catchUp applies every stream to the generations reading it, from `from` (by default the
// lowest checkpoint of those generations) up to the stream's head seen when its replay starts.
// Streams are replayed concurrently, each once however many of gens read it, and each
// generation applies on its own goroutine, so that reading and decoding the log overlaps with
// writing the files. after, when set, runs once every generation has applied a batch.
func catchUp(ctx context.Context, store eventstore.Reader, gens []*generation, streams []string, from map[string]uint64,
	after func(batch []eventstore.Envelope, stream string)) error {
	const workers = 4
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var errMu sync.Mutex
	var firstErr error
	fail := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
		cancel()
	}

	type job struct {
		stream  string
		batch   []eventstore.Envelope
		pending *atomic.Int32 // generations yet to apply the batch
	}
	queues := make([]chan job, len(gens))
	var appliers sync.WaitGroup
	for i, g := range gens {
		queues[i] = make(chan job, 16)
		appliers.Add(1)
		go func() {
			defer appliers.Done()
			// Batches that queued up while the last transaction ran go into the next one
			// together: fewer, larger commits write each touched page once for more events.
			const most = 8 * 1000
			var jobs []job
			var items []streamBatch
			for j := range queues[i] {
				jobs, items = append(jobs[:0], j), append(items[:0], streamBatch{j.stream, j.batch})
				n := len(j.batch)
			more:
				for n < most {
					select {
					case j, ok := <-queues[i]:
						if !ok {
							break more
						}
						jobs, items = append(jobs, j), append(items, streamBatch{j.stream, j.batch})
						n += len(j.batch)
					default:
						break more
					}
				}
				if ctx.Err() != nil {
					continue // drain
				}
				if _, err := g.applyMany(items); err != nil {
					fail(err)
					continue
				}
				for _, j := range jobs {
					if j.pending.Add(-1) == 0 && after != nil {
						after(j.batch, j.stream)
					}
				}
			}
		}()
	}

	streamJobs := make(chan string)
	var readers sync.WaitGroup
	for range min(workers, len(streams)) {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for s := range streamJobs {
				var targets []int
				start := ^uint64(0)
				for i, g := range gens {
					if _, reads := g.cps[s]; reads {
						targets = append(targets, i)
						start = min(start, g.checkpoint(s))
					}
				}
				if f, ok := from[s]; ok {
					start = f
				}
				if len(targets) == 0 {
					continue
				}
				err := store.Replay(ctx, s, start, false, func(batch []eventstore.Envelope) error {
					j := job{stream: s, batch: append([]eventstore.Envelope(nil), batch...), pending: &atomic.Int32{}}
					j.pending.Store(int32(len(targets)))
					for _, i := range targets {
						select {
						case queues[i] <- j:
						case <-ctx.Done():
							return ctx.Err()
						}
					}
					return nil
				})
				if err != nil && ctx.Err() == nil {
					fail(fmt.Errorf("replay %s: %w", s, err))
				}
			}
		}()
	}
	for _, s := range interleave(streams) {
		select {
		case streamJobs <- s:
		case <-ctx.Done():
		}
	}
	close(streamJobs)
	readers.Wait()
	for _, q := range queues {
		close(q)
	}
	appliers.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

// interleave orders streams so that streams replayed at the same time feed different
// projections: SEATS_0, WALLETS_0, SEATS_1, ... rather than every partition of one context in
// a row, which would queue them all behind one bbolt writer. (A SEATS stream feeds three
// projections, seats, reservations and payments: reservations and payments are stored in
// their dates' commits.)
func interleave(streams []string) []string {
	var families []string
	byFamily := map[string][]string{}
	for _, s := range streams {
		f, _, _ := strings.Cut(s, "_")
		if byFamily[f] == nil {
			families = append(families, f)
		}
		byFamily[f] = append(byFamily[f], s)
	}
	out := make([]string, 0, len(streams))
	for len(out) < len(streams) {
		for _, f := range families {
			if q := byFamily[f]; len(q) > 0 {
				out = append(out, q[0])
				byFamily[f] = q[1:]
			}
		}
	}
	return out
}

// Progress reports an offline rebuild's progress in stream sequences: Done of Total, summed
// over the streams each projection reads.
type Progress struct {
	Done, Total uint64
}

// RebuildStats sums up an offline rebuild.
type RebuildStats struct {
	Projections []string
	Events      uint64 // events read from the streams (a stream read by two projections counts once)
	Elapsed     time.Duration
}

// EventsPerSecond is the rebuild's rate.
func (s RebuildStats) EventsPerSecond() float64 {
	if s.Elapsed <= 0 {
		return 0
	}
	return float64(s.Events) / s.Elapsed.Seconds()
}

// RebuildOffline rebuilds the named projections (every one when names is empty) in dir from
// the log, each into a fresh file that replaces the old one only when complete. It refuses to
// run while another process (a running server) has the files open. Sell-outs it detects stay
// pending in the seats file for the next server to record. progress, when not nil, is called
// after every applied batch (from several goroutines, one call at a time).
func RebuildOffline(ctx context.Context, dir string, store eventstore.Reader, names []string, logger *slog.Logger,
	progress func(Progress)) (RebuildStats, error) {
	if logger == nil {
		logger = slog.Default()
	}
	all := specs()
	var chosen []spec
	if len(names) == 0 {
		chosen = all
	}
	for _, n := range names {
		found := false
		for _, sp := range all {
			if sp.name == n {
				chosen, found = append(chosen, sp), true
			}
		}
		if !found {
			return RebuildStats{}, fmt.Errorf("%w: %q", ErrUnknownProjection, n)
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return RebuildStats{}, fmt.Errorf("projections: %w", err)
	}
	start := time.Now()
	stats := RebuildStats{}
	var olds, gens []*generation
	defer func() {
		for _, g := range gens {
			if g != nil {
				_ = g.close()
				_ = os.Remove(g.db.Path())
			}
		}
		for _, g := range olds {
			_ = g.close()
		}
	}()
	streamSet := map[string]bool{}
	var streams []string
	for _, sp := range chosen {
		stats.Projections = append(stats.Projections, sp.name)
		path := filepath.Join(dir, sp.name+".db")
		// Opening the current file takes its lock: a running server holds it.
		old, err := openGeneration(sp, path, false, logger, nil)
		if err != nil {
			return stats, err
		}
		olds = append(olds, old)
		_ = os.Remove(path + ".new")
		g, err := openGeneration(sp, path+".new", true, logger, nil)
		if err != nil {
			return stats, err
		}
		gens = append(gens, g)
		for _, s := range sp.streams {
			if !streamSet[s] {
				streamSet[s] = true
				streams = append(streams, s)
			}
		}
	}
	var total uint64
	heads := map[string]uint64{}
	for _, s := range streams {
		h, err := store.Head(ctx, s)
		if err != nil {
			return stats, fmt.Errorf("projections: head of %s: %w", s, err)
		}
		heads[s] = h
	}
	for _, sp := range chosen {
		for _, s := range sp.streams {
			total += heads[s]
		}
	}
	readers := map[string]uint64{}
	for _, sp := range chosen {
		for _, s := range sp.streams {
			readers[s]++
		}
	}
	var done, events atomic.Uint64
	var progMu sync.Mutex
	if progress != nil {
		progress(Progress{Total: total})
	}
	last := map[string]uint64{}
	var lastMu sync.Mutex
	err := catchUp(ctx, store, gens, streams, nil, func(batch []eventstore.Envelope, s string) {
		events.Add(uint64(len(batch)))
		lastMu.Lock()
		step := batch[len(batch)-1].Sequence - last[s]
		last[s] = batch[len(batch)-1].Sequence
		lastMu.Unlock()
		d := done.Add(step * readers[s])
		if progress != nil {
			progMu.Lock()
			progress(Progress{Done: min(d, total), Total: total})
			progMu.Unlock()
		}
	})
	if err != nil {
		return stats, fmt.Errorf("projections: rebuild: %w", err)
	}
	// Write out, finish and sync the files side by side: writing and syncing one file leaves
	// the processor idle part of the time.
	finished := make(chan error, len(gens))
	for _, g := range gens {
		go func() {
			if err := g.endOverlay(); err != nil {
				finished <- err
				return
			}
			if err := g.goLive(); err != nil {
				finished <- err
				return
			}
			if err := g.db.Sync(); err != nil {
				finished <- fmt.Errorf("projections: rebuild %s: %w", g.name, err)
				return
			}
			finished <- nil
		}()
	}
	var errs []error
	for range gens {
		errs = append(errs, <-finished)
	}
	if err := errors.Join(errs...); err != nil {
		return stats, err
	}
	for i, g := range gens {
		newPath, oldPath := g.db.Path(), olds[i].db.Path()
		if err := g.close(); err != nil {
			return stats, fmt.Errorf("projections: rebuild %s: %w", g.name, err)
		}
		if err := os.Rename(newPath, oldPath); err != nil {
			return stats, fmt.Errorf("projections: rebuild %s: %w", g.name, err)
		}
		gens[i] = nil
	}
	gens = gens[:0]
	stats.Events = events.Load()
	stats.Elapsed = time.Since(start)
	if progress != nil {
		progress(Progress{Done: total, Total: total})
	}
	return stats, nil
}

// ReplayOnly reads every stream the projections read, with the same concurrency as a rebuild,
// and does nothing with the events: the ceiling a rebuild's rate is measured against.
func ReplayOnly(ctx context.Context, store eventstore.Reader) (events uint64, elapsed time.Duration, err error) {
	seen := map[string]bool{}
	var streams []string
	for _, sp := range specs() {
		for _, s := range sp.streams {
			if !seen[s] {
				seen[s] = true
				streams = append(streams, s)
			}
		}
	}
	start := time.Now()
	var n atomic.Uint64
	jobs := make(chan string)
	errs := make(chan error, len(streams))
	var wg sync.WaitGroup
	for range min(4, len(streams)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for s := range jobs {
				if err := store.Replay(ctx, s, 0, false, func(batch []eventstore.Envelope) error {
					n.Add(uint64(len(batch)))
					return nil
				}); err != nil {
					errs <- fmt.Errorf("replay %s: %w", s, err)
				}
			}
		}()
	}
	for _, s := range interleave(streams) {
		jobs <- s
	}
	close(jobs)
	wg.Wait()
	close(errs)
	return n.Load(), time.Since(start), <-errs
}
