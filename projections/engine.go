package projections

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/booking-engine/booking/eventstore"
)

// Names of the projections. Each has its own bbolt file, its own checkpoints and can be rebuilt
// on its own.
const (
	Catalog      = "catalog"      // concerts and their dates (CATALOG)
	Seats        = "seats"        // seat maps, per-date counts, holds, sell-out detection (CATALOG, SEATS_*)
	Reservations = "reservations" // reservations by ID and by user (SEATS_*: in their dates' commits)
	Payments     = "payments"     // payments by ID, unfinished payments (SEATS_*: in their dates' commits)
	Wallets      = "wallets"      // balances and ledgers (WALLETS_*)
	Ranking      = "ranking"      // first sell-out of every date (CATALOG)
)

// Errors of the engine.
var (
	ErrUnknownProjection = fmt.Errorf("projections: unknown projection: %w", ErrNotFound)
	ErrRebuildRunning    = errors.New("projections: a rebuild of this projection is already running")
	ErrInUse             = errors.New("projections: read model file in use by another process")
)

// Store is what the engine reads: whole streams, and what this process appended to them.
type Store interface {
	eventstore.Reader
	eventstore.Tracker
}

// SoldOutHook records that every seat of a date is sold. soldOutAt is the OccurredAt of the
// latest SeatSold of the date's seats. The hook must be idempotent (the engine may call it
// again for a date after a crash, a rebuild or an error); an error makes the engine retry later.
type SoldOutHook func(ctx context.Context, concertID, dateID string, soldOutAt time.Time) error

// Options configure an Engine.
type Options struct {
	// Location is the configured timezone; ranking times are shown in it. Nil means UTC.
	Location *time.Location
	// SoldOut is called for every date the seats projection sees sold out. Nil leaves the
	// detections pending in the seats file (they are retried by the next engine that has one).
	SoldOut SoldOutHook
	// Logger receives warnings and errors. Nil means slog.Default().
	Logger *slog.Logger
	// Linger is how long a live read model waits after a batch of the log for more to commit
	// with it, while no read is waiting for it (see groupCommit). Zero commits at once.
	Linger time.Duration
}

// DefaultLinger is the read models' linger of `booking serve`. At 1,000 holds/s over ten
// dates, 5 ms left each read model committing a few hundred small transactions a second,
// and holds answered during their page writes waited: a hold's p99 was 18-20 ms. With
// 100 ms it was 9-16 ms by the medians of two comparisons (the service's own p99 13 -> 5 ms),
// the service's CPU up to a fifth lower, and nothing changed at saturation
// (docs/BENCHMARKS.md, session 11).
// Readers that wait (read-your-writes) end the linger; the seat-map streams, which frame
// changes at most every 100 ms anyway, and the sell-out recorder see a commit up to this
// much later.
const DefaultLinger = 100 * time.Millisecond

// Dir returns where the read models of a data dir live.
func Dir(dataDir string) string { return filepath.Join(dataDir, "projections") }

type spec struct {
	name     string
	streams  []string
	newModel func(g *generation) model
}

func specs() []spec {
	catalog := []string{"CATALOG"}
	return []spec{
		{Catalog, catalog, newCatalogModel},
		{Seats, append(append([]string{}, catalog...), eventstore.StreamsOf(eventstore.TypeSeat)...), newSeatsModel},
		{Reservations, eventstore.StreamsOf(eventstore.TypeReservation), newReservationsModel},
		{Payments, eventstore.StreamsOf(eventstore.TypePayment), newPaymentsModel},
		{Wallets, eventstore.StreamsOf(eventstore.TypeWallet), newWalletsModel},
		{Ranking, catalog, newRankingModel},
	}
}

// Engine runs every projection: it keeps them following the streams, answers the queries of
// the API from them (it implements Queries) and rebuilds them on demand.
type Engine struct {
	dir   string
	store Store
	opts  Options
	log   *slog.Logger

	projs   []*proj
	byName  map[string]*proj
	emitter map[string]*proj // stream → the projection whose commits feed the subscribers

	subMu sync.RWMutex
	subs  []func(eventstore.Envelope)

	startMu    sync.Mutex
	started    bool
	ctx        context.Context
	cancel     context.CancelFunc
	bg         sync.WaitGroup
	startHeads map[string]uint64
	readyCh    chan struct{}
	readyOnce  sync.Once
	kick       chan struct{} // wakes the sell-out recorder

	// concerts caches decoded concerts (concertId → aggregates.ConcertCreated). A concert
	// never changes once created (ConcertCreated is its only event), so an entry never goes
	// stale, not even across a rebuild; the date list, read tens of thousands of times a
	// second in a sale, would otherwise decode the concert's JSON on every read.
	concerts sync.Map
}

var _ Queries = (*Engine)(nil)

// Open opens (creating when missing) the read models in dir. It reads nothing from the store
// until Start.
func Open(dir string, store Store, opts Options) (*Engine, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("projections: %w", err)
	}
	e := &Engine{
		dir: dir, store: store, opts: opts, log: opts.Logger,
		byName: map[string]*proj{}, emitter: map[string]*proj{},
		readyCh: make(chan struct{}), kick: make(chan struct{}, 1),
	}
	for _, sp := range specs() {
		p := &proj{spec: sp, path: filepath.Join(dir, sp.name+".db"), notify: make(chan struct{}), hurry: make(chan struct{}, 1)}
		_ = os.Remove(p.path + ".new") // left by a rebuild that did not finish
		g, err := openGeneration(sp, p.path, false, e.log, e.kickSellOuts)
		if err != nil {
			e.closeAll()
			return nil, err
		}
		p.setGen(g)
		for _, s := range sp.streams {
			p.marks = append(p.marks, store.Mark(s))
		}
		e.projs = append(e.projs, p)
		e.byName[sp.name] = p
		for _, s := range sp.streams {
			if emitsFor(sp, s) {
				e.emitter[s] = p
			}
		}
	}
	return e, nil
}

// AllNames returns the names of the projections, in the order they start.
func AllNames() []string {
	var names []string
	for _, sp := range specs() {
		names = append(names, sp.name)
	}
	return names
}

// Names returns the names of the projections.
func (e *Engine) Names() []string {
	names := make([]string, len(e.projs))
	for i, p := range e.projs {
		names[i] = p.name
	}
	return names
}

// Subscribe registers fn to be called, after each committed batch, with each event that batch
// applied, in stream order (streams are independent of one another). Only events of streams
// that a projection reads are delivered (not QUEUE), each once per process. fn runs on the
// projection's goroutines, one per stream, so it may be called concurrently for different
// streams; it must be fast and must not block (hand work to a channel or a goroutine). Events of a batch whose commit is lost to a crash are not delivered again, so a
// subscriber recovers its state from the read models at start-up (see HeldSeats).
// Register before Start to see every event.
func (e *Engine) Subscribe(fn func(eventstore.Envelope)) {
	e.subMu.Lock()
	e.subs = append(e.subs, fn)
	e.subMu.Unlock()
}

// Start resumes every projection from its checkpoints and keeps it following the streams
// until ctx ends or Close. It returns once the stream heads are known; Ready turns true once
// every projection has applied everything up to those heads.
func (e *Engine) Start(ctx context.Context) error {
	e.startMu.Lock()
	if e.started {
		e.startMu.Unlock()
		return errors.New("projections: already started")
	}
	heads := map[string]uint64{}
	for _, p := range e.projs {
		for _, s := range p.streams {
			if _, ok := heads[s]; ok {
				continue
			}
			h, err := e.store.Head(ctx, s)
			if err != nil {
				e.startMu.Unlock()
				return fmt.Errorf("projections: head of %s: %w", s, err)
			}
			heads[s] = h
		}
	}
	e.startHeads = heads
	e.ctx, e.cancel = context.WithCancel(context.WithoutCancel(ctx))
	e.started = true
	e.startMu.Unlock()
	go func() {
		select {
		case <-ctx.Done():
			e.cancel()
		case <-e.ctx.Done():
		}
	}()
	for _, p := range e.projs {
		p.runMu.Lock()
		g := p.current()
		e.progressed(p, g)
		if p.runner == nil { // else a rebuild that has just swapped started it
			p.runner = e.startRunner(p, g)
		}
		p.runMu.Unlock()
	}
	if e.opts.SoldOut != nil {
		e.bg.Add(1)
		go func() { defer e.bg.Done(); e.recordSellOutsLoop(e.ctx) }()
		e.kickSellOuts()
	}
	return nil
}

// Ready reports whether every projection has caught up with the stream heads seen at Start.
func (e *Engine) Ready() bool {
	select {
	case <-e.readyCh:
		return true
	default:
		return false
	}
}

// WaitReady waits until Ready or ctx ends.
func (e *Engine) WaitReady(ctx context.Context) error {
	select {
	case <-e.readyCh:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("projections: waiting for read models to catch up: %w", ctx.Err())
	}
}

// Close stops every projection and closes the files. Queries after Close fail.
func (e *Engine) Close() error {
	e.startMu.Lock()
	if e.started {
		e.cancel()
	}
	e.startMu.Unlock()
	for _, p := range e.projs {
		p.runMu.Lock()
		if p.runner != nil {
			p.runner.stop()
			p.runner = nil
		}
		p.runMu.Unlock()
	}
	e.bg.Wait()
	return e.closeAll()
}

func (e *Engine) closeAll() error {
	var errs []error
	for _, p := range e.projs {
		p.mu.Lock()
		g := p.gen
		p.mu.Unlock()
		if g != nil {
			errs = append(errs, g.close())
		}
	}
	return errors.Join(errs...)
}

// Status returns every projection's progress. Checkpoint and Head are sums over the streams
// the projection reads (each stream's sequence of its last applied event and of its newest
// message), so Lag is the number of sequences still to apply.
func (e *Engine) Status(ctx context.Context) ([]Status, error) {
	heads := map[string]uint64{}
	out := make([]Status, 0, len(e.projs))
	for _, p := range e.projs {
		g := p.acquire()
		st := Status{Name: p.name}
		for _, s := range p.streams {
			h, ok := heads[s]
			if !ok {
				var err error
				if h, err = e.store.Head(ctx, s); err != nil {
					p.release(g)
					return nil, fmt.Errorf("projections: head of %s: %w", s, err)
				}
				heads[s] = h
			}
			cp := g.checkpoint(s)
			st.Checkpoint += cp
			st.Head += h
			if h > cp {
				st.Lag += h - cp
			}
		}
		p.release(g)
		out = append(out, st)
	}
	return out, nil
}

// proj is one projection: its current generation (bbolt file and model) and its runner.
type proj struct {
	spec
	path string

	mu  sync.RWMutex // guards gen
	gen *generation
	cur atomic.Pointer[generation] // gen, read without the lock (see current)

	// marks are what this process appended to each of streams (same order), resolved once:
	// read-your-writes checks them on every read.
	marks []*eventstore.AppendMark

	notifyMu sync.Mutex
	notify   chan struct{} // closed and replaced after every commit and swap

	// waiting counts the reads waiting for this projection to catch up (read-your-writes);
	// hurry wakes a group commit that lingers for more batches when one starts to wait.
	waiting atomic.Int32
	hurry   chan struct{}

	runMu      sync.Mutex // guards runner; held across a swap
	runner     *runner
	caughtUp   atomic.Bool
	rebuilding atomic.Bool
}
