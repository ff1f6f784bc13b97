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

	bolt "go.etcd.io/bbolt"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// Names of the projections. Each has its own bbolt file, its own checkpoints and can be rebuilt
// on its own.
const (
	Catalog      = "catalog"      // concerts and their dates (CATALOG)
	Seats        = "seats"        // seat maps, per-date counts, holds, sell-out detection (CATALOG, SEATS_*)
	Reservations = "reservations" // reservations by ID and by user (SEATS_*: in their dates' commits)
	Payments     = "payments"     // payments by ID, unfinished payments (PAYMENTS_*)
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
}

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
		p := &proj{spec: sp, path: filepath.Join(dir, sp.name+".db"), notify: make(chan struct{})}
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
			if e.emitter[s] == nil {
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

	runMu      sync.Mutex // guards runner; held across a swap
	runner     *runner
	caughtUp   atomic.Bool
	rebuilding atomic.Bool
}

// acquire returns the current generation and keeps it open until release, so that a swap
// never closes a file under a reader and a reader never waits for a swap.
func (p *proj) acquire() *generation {
	p.mu.RLock()
	g := p.gen
	g.users.Add(1)
	p.mu.RUnlock()
	return g
}

func (p *proj) release(g *generation) { g.users.Done() }

// current returns the current generation without keeping it open: for its checkpoints.
// It takes no lock, so that the check of every read (waitFor) does not contend.
func (p *proj) current() *generation { return p.cur.Load() }

// setGen makes g the current generation.
func (p *proj) setGen(g *generation) {
	p.mu.Lock()
	p.gen = g
	p.cur.Store(g)
	p.mu.Unlock()
}

// streamSet is a set of a projection's streams, by their index in its streams.
type streamSet uint32

// all is the set of every stream of p.
func (p *proj) all() streamSet { return 1<<len(p.streams) - 1 }

// only is the set of stream alone (empty when p does not read it).
func (p *proj) only(stream string) streamSet {
	for i, s := range p.streams {
		if s == stream {
			return 1 << i
		}
	}
	return 0
}

func (p *proj) changed() <-chan struct{} {
	p.notifyMu.Lock()
	defer p.notifyMu.Unlock()
	return p.notify
}

func (p *proj) broadcast() {
	p.notifyMu.Lock()
	close(p.notify)
	p.notify = make(chan struct{})
	p.notifyMu.Unlock()
}

type runner struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *runner) stop() {
	r.cancel()
	<-r.done
}

// startRunner follows every stream of p into g, one goroutine per stream, and commits what
// they read together (group commit): a projection reads up to nine streams, and one fsync'd
// commit for all of them instead of one each is what keeps it abreast of the log under load.
func (e *Engine) startRunner(p *proj, g *generation) *runner {
	ctx, cancel := context.WithCancel(e.ctx)
	r := &runner{cancel: cancel, done: make(chan struct{})}
	subs := make(chan submission)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		groupCommit(ctx, g, subs)
	}()
	for _, s := range p.streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.follow(ctx, p, g, s, subs)
		}()
	}
	go func() {
		wg.Wait()
		close(r.done)
	}()
	return r
}

// submission is one stream's batch waiting to be committed.
type submission struct {
	stream string
	batch  []eventstore.Envelope
	done   chan submitted
}

type submitted struct {
	before uint64
	err    error
}

// groupCommit applies every submission waiting when it is free in one transaction, and answers
// each. It answers every submission it took, so a submitter waits for its answer unconditionally
// (and its batch is not reused while it is applied).
func groupCommit(ctx context.Context, g *generation, subs <-chan submission) {
	const most = 8 * 1000
	var taken []submission
	var items []streamBatch
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-subs:
			taken, items = append(taken[:0], s), append(items[:0], streamBatch{s.stream, s.batch})
			n := len(s.batch)
		more:
			for n < most {
				select {
				case s := <-subs:
					taken, items = append(taken, s), append(items, streamBatch{s.stream, s.batch})
					n += len(s.batch)
				default:
					break more
				}
			}
			befores, err := g.applyMany(items)
			for i, s := range taken {
				if err != nil {
					s.done <- submitted{err: err}
				} else {
					s.done <- submitted{before: befores[i]}
				}
			}
		}
	}
}

func (e *Engine) follow(ctx context.Context, p *proj, g *generation, stream string, subs chan<- submission) {
	const first, most = 100 * time.Millisecond, 5 * time.Second
	delay := first
	emit := e.emitter[stream] == p
	done := make(chan submitted, 1)
	for {
		err := e.store.Replay(ctx, stream, g.checkpoint(stream), true, func(batch []eventstore.Envelope) error {
			select {
			case subs <- submission{stream, batch, done}:
			case <-ctx.Done():
				return ctx.Err()
			}
			res := <-done
			if res.err != nil {
				return res.err
			}
			delay = first
			p.broadcast()
			if emit {
				e.publish(batch, res.before)
			}
			e.progressed(p, g)
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		e.log.Warn("projection stopped following a stream; retrying", "projection", p.name, "stream", stream, "err", err, "retryIn", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, most)
	}
}

// publish hands the events after seq `after` to the subscribers.
func (e *Engine) publish(batch []eventstore.Envelope, after uint64) {
	e.subMu.RLock()
	subs := e.subs
	e.subMu.RUnlock()
	if len(subs) == 0 {
		return
	}
	for _, env := range batch {
		// after is fixed for the batch: the events of one commit share a sequence.
		if env.Sequence <= after {
			continue
		}
		for _, fn := range subs {
			fn(env)
		}
	}
}

// progressed notes that p (in its live generation g) may have caught up with the start heads.
func (e *Engine) progressed(p *proj, g *generation) {
	if p.caughtUp.Load() || e.startHeads == nil {
		return
	}
	for _, s := range p.streams {
		if g.checkpoint(s) < e.startHeads[s] {
			return
		}
	}
	if !p.caughtUp.CompareAndSwap(false, true) {
		return
	}
	if err := g.goLive(); err != nil {
		e.log.Error("projection could not finish catching up", "projection", p.name, "err", err)
	}
	for _, q := range e.projs {
		if !q.caughtUp.Load() {
			return
		}
	}
	e.readyOnce.Do(func() { close(e.readyCh) })
}

// waitFor gives read-your-writes: it waits until p has applied everything this process had
// appended to the streams of set (eventstore.Tracker) when it was called, or ctx ends. When
// nothing of those streams is pending it returns after two atomic loads per stream, without
// locking or allocating: seat-map reads run at tens of thousands a second. Otherwise it waits
// for the marks seen on entry, not for appends made meanwhile, so a read under a steady
// stream of writes waits for about one commit, not for a quiet moment.
func (e *Engine) waitFor(ctx context.Context, p *proj, set streamSet) error {
	g := p.current()
	for i, m := range p.marks {
		if set&(1<<i) != 0 && g.cpList[i].Load() < m.Load() {
			return e.waitBehind(ctx, p, set)
		}
	}
	return nil
}

// waitForHeads waits until p has applied every stream of its up to the head the log reports
// now, appended by whichever process: a read that finds nothing may have run ahead of another
// instance's write. It costs a request per stream, so it is for misses only.
func (e *Engine) waitForHeads(ctx context.Context, p *proj) error {
	targets := make([]uint64, len(p.streams))
	for i, s := range p.streams {
		h, err := e.store.Head(ctx, s)
		if err != nil {
			return fmt.Errorf("projections: head of %s: %w", s, err)
		}
		targets[i] = h
	}
	return waitUntil(ctx, p, p.all(), targets)
}

// waitBehind is waitFor once a stream was found behind.
func (e *Engine) waitBehind(ctx context.Context, p *proj, set streamSet) error {
	targets := make([]uint64, len(p.marks))
	for i, m := range p.marks {
		targets[i] = m.Load()
	}
	return waitUntil(ctx, p, set, targets)
}

// waitUntil waits until p has applied each stream of set up to its target sequence.
func waitUntil(ctx context.Context, p *proj, set streamSet, targets []uint64) error {
	for {
		ch := p.changed()
		g := p.current()
		behind := -1
		for i, target := range targets {
			if set&(1<<i) != 0 && g.cpList[i].Load() < target {
				behind = i
				break
			}
		}
		if behind < 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("projections: %s waiting for %s to reach %d: %w", p.name, p.streams[behind], targets[behind], ctx.Err())
		}
	}
}

// generation is one bbolt file of a projection with the model that reads and writes it. An
// online rebuild builds a new generation beside the serving one and swaps it in.
type generation struct {
	name    string
	db      *bolt.DB
	model   model
	log     *slog.Logger
	writeMu sync.Mutex // serialises a commit with the cache updates that follow it
	cps     map[string]*atomic.Uint64
	cpList  []*atomic.Uint64         // cps in the order of the projection's streams
	lastAt  map[string]*atomic.Int64 // per stream, the latest OccurredAt applied (Unix ns)
	overlay *overlay                 // while a fresh file is built: the writes not yet flushed
	users   sync.WaitGroup
	live    atomic.Bool
	kick    func()

	// afterCommit, when set by a test, runs after each commit and before anything else: an
	// error stands for a crash there.
	afterCommit func(stream string) error
}

// formatVersion is the layout of the files written by this code. A file of another version is
// discarded and rebuilt from the log.
const formatVersion = 2

var (
	bucketMeta = []byte("meta")
	keyFormat  = []byte("format")
	// keyUnsynced holds the boot ID of the kernel under which the file is being written
	// without fsync; it is removed after the final sync of a clean close.
	keyUnsynced = []byte("unsynced-boot")
)

// currentBoot identifies this run of the kernel (empty where unknown). Writes that were not
// fsynced survive the death of the process (they sit in the kernel's page cache) but not of
// the kernel: a read model left unsynced under another boot may be torn, and is rebuilt.
var currentBoot = func() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}()

// liveNoSync says whether live read models skip fsync. They can be rebuilt from the log, and
// their fsyncs compete with the log's own for the disk: on this project's machines they
// tripled the tail latency of a hold. Only where the boot can be told apart is it safe.
func liveNoSync() bool { return currentBoot != "" }

func cpKey(stream string) []byte { return []byte("cp/" + stream) }

func openGeneration(sp spec, path string, fresh bool, log *slog.Logger, kick func()) (*generation, error) {
	// A fresh file (a rebuild) is written without any fsync, not even bbolt's fsync on every
	// growth of the file (which otherwise dominates a rebuild), and synced once when complete.
	noSync := fresh || liveNoSync()
	opts := &bolt.Options{Timeout: 500 * time.Millisecond, FreelistType: bolt.FreelistMapType, NoFreelistSync: true,
		NoSync: noSync, NoGrowSync: noSync}
	if fresh {
		opts.InitialMmapSize = 256 << 20 // fewer remaps, each of which copies the open write transaction's nodes
	}
	db, err := bolt.Open(path, 0o600, opts)
	if errors.Is(err, bolt.ErrTimeout) {
		return nil, fmt.Errorf("%w: %s", ErrInUse, path)
	}
	if err != nil {
		return nil, fmt.Errorf("projections: open %s: %w", path, err)
	}
	g := &generation{name: sp.name, db: db, log: log, cps: map[string]*atomic.Uint64{}, lastAt: map[string]*atomic.Int64{}, kick: kick}
	g.model = sp.newModel(g)
	if fresh {
		g.overlay = &overlay{buckets: map[string]*ovBucket{}}
	}
	stale, torn := false, false
	err = db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		if meta != nil && getU64(meta.Get(keyFormat)) != formatVersion {
			stale = true
			return nil
		}
		if meta != nil {
			if b := meta.Get(keyUnsynced); b != nil && string(b) != currentBoot {
				torn = true
				return nil
			}
		}
		if meta == nil {
			var err error
			if meta, err = tx.CreateBucket(bucketMeta); err != nil {
				return err
			}
			if err := meta.Put(keyFormat, u64(formatVersion)); err != nil {
				return err
			}
		}
		for _, b := range g.model.buckets() {
			if _, err := tx.CreateBucketIfNotExists([]byte(b)); err != nil {
				return err
			}
		}
		if !fresh && liveNoSync() {
			if err := meta.Put(keyUnsynced, []byte(currentBoot)); err != nil {
				return err
			}
		}
		for _, s := range sp.streams {
			v := &atomic.Uint64{}
			v.Store(getU64(meta.Get(cpKey(s))))
			g.cps[s] = v
			g.cpList = append(g.cpList, v)
			g.lastAt[s] = &atomic.Int64{}
		}
		return nil
	})
	if err == nil && (stale || torn) {
		if torn {
			log.Warn("read model was written without fsync before the machine restarted; rebuilding it from the log", "file", path)
		} else {
			log.Warn("read model file has another format; rebuilding it from the log", "file", path)
		}
		_ = db.Close()
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("projections: %w", err)
		}
		return openGeneration(sp, path, fresh, log, kick)
	}
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("projections: init %s: %w", path, err)
	}
	return g, nil
}

func (g *generation) checkpoint(stream string) uint64 {
	if v := g.cps[stream]; v != nil {
		return v.Load()
	}
	return 0
}

func (g *generation) close() error {
	g.users.Wait()
	if g.db.NoSync && g.overlay == nil {
		// A clean close: sync, then clear the unsynced mark (and sync that too).
		err := g.db.Sync()
		if err == nil {
			err = g.db.Update(func(tx *bolt.Tx) error {
				if meta := tx.Bucket(bucketMeta); meta != nil {
					return meta.Delete(keyUnsynced)
				}
				return nil
			})
		}
		if err == nil {
			err = g.db.Sync()
		}
		if err != nil {
			_ = g.db.Close()
			return fmt.Errorf("projections: sync %s: %w", g.name, err)
		}
	}
	return g.db.Close()
}

// syncForLive turns a freshly rebuilt file into a live one: synced once, then written like
// every live read model (without fsync where that is safe, marked with the boot writing it).
func (g *generation) syncForLive() error {
	if err := g.db.Sync(); err != nil {
		return err
	}
	if !liveNoSync() {
		g.db.NoSync, g.db.NoGrowSync = false, false
		return nil
	}
	return g.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyUnsynced, []byte(currentBoot))
	})
}

// streamBatch is a batch of events of one stream.
type streamBatch struct {
	stream string
	batch  []eventstore.Envelope
}

// apply applies one batch of one stream in one bbolt transaction together with the stream's
// checkpoint, and returns the checkpoint before the batch. See applyMany.
func (g *generation) apply(stream string, batch []eventstore.Envelope) (before uint64, err error) {
	befores, err := g.applyMany([]streamBatch{{stream, batch}})
	if err != nil {
		return 0, err
	}
	return befores[0], nil
}

// applyMany applies batches (of one or several streams, each stream's in order) in one bbolt
// transaction together with the streams' checkpoints. Events at or below a stream's stored
// checkpoint are skipped, so a batch delivered again (after a crash between the commit and
// anything else) changes nothing. It returns each batch's stream checkpoint before it.
func (g *generation) applyMany(items []streamBatch) (befores []uint64, err error) {
	g.writeMu.Lock()
	defer g.writeMu.Unlock()
	var w batchWriter
	befores = make([]uint64, len(items))
	first := map[string]uint64{} // checkpoint per stream before the transaction
	last := map[string]uint64{}  // checkpoint per stream after it
	lastAt := map[string]time.Time{}
	wants, _ := g.model.(interested)
	run := g.db.Update
	if g.overlay != nil {
		run = g.db.View // every write goes to the overlay
	}
	err = run(func(tx *bolt.Tx) error {
		t := txn{tx: tx, ov: g.overlay}
		meta := t.bucket(string(bucketMeta))
		var err error
		if w, err = g.model.begin(t); err != nil {
			return err
		}
		for k, it := range items {
			cp, seen := last[it.stream]
			if !seen {
				cp = getU64(meta.Get(cpKey(it.stream)))
				first[it.stream] = cp
			}
			befores[k] = cp
			// The newest instant is kept in a local and merged once per batch: a map write
			// per event showed up in a rebuild's profile.
			newest := lastAt[it.stream]
			// A batch holds whole commits, whose events share a sequence: compare with the
			// checkpoint before the batch, not with the last event applied.
			base := cp
			for i := range it.batch {
				env := &it.batch[i]
				if env.Sequence <= base {
					continue
				}
				cp = env.Sequence
				if env.OccurredAt.After(newest) {
					newest = env.OccurredAt
				}
				if wants != nil && !wants.wants(env.Type) {
					continue
				}
				ev, err := aggregates.Decode(env.Type, env.Data)
				if err != nil {
					// A log that cannot be read must not stop every read model behind it for
					// good: skip the event, loudly.
					g.log.Error("projection skips an event it cannot decode", "projection", g.name, "stream", it.stream, "seq", env.Sequence, "type", env.Type, "err", err)
					continue
				}
				if err := w.apply(env, ev); err != nil {
					return fmt.Errorf("apply %s seq %d: %w", env.Type, env.Sequence, err)
				}
			}
			last[it.stream] = cp
			if !newest.IsZero() {
				lastAt[it.stream] = newest
			}
		}
		changed := false
		for s, cp := range last {
			if cp > first[s] {
				changed = true
				if err := meta.Put(cpKey(s), u64(cp)); err != nil {
					return err
				}
			}
		}
		if !changed {
			return nil
		}
		return w.finish()
	})
	if err == nil && g.overlay != nil && g.overlay.full() {
		err = g.flush()
	}
	if err != nil {
		return nil, fmt.Errorf("projections: %s: %w", g.name, err)
	}
	changed := false
	for s, cp := range last {
		changed = changed || cp > first[s]
	}
	if !changed {
		// Nothing new: the batches were applied before (a redelivery after a failure between
		// the commit and the in-memory checkpoint). Catch the in-memory checkpoints up.
		for s, cp := range last {
			if v := g.cps[s]; v != nil && v.Load() < cp {
				v.Store(cp)
			}
		}
		return befores, nil
	}
	if g.afterCommit != nil {
		for s := range last {
			if err := g.afterCommit(s); err != nil {
				return nil, err
			}
		}
	}
	for s, at := range lastAt {
		if v := g.lastAt[s]; v != nil && at.UnixNano() > v.Load() {
			v.Store(at.UnixNano())
		}
	}
	// The in-memory caches (seat maps) first, then the checkpoints: a reader that sees a
	// checkpoint must see every cache that reflects it (read-your-writes, see waitFor). The
	// sell-out recorder reads the checkpoints, so it is woken last.
	wake := w.committed()
	for s, cp := range last {
		if v := g.cps[s]; v != nil && v.Load() < cp {
			v.Store(cp)
		}
	}
	if wake && g.kick != nil {
		g.kick()
	}
	return befores, nil
}

// goLive marks the generation as caught up with the log: from now on its model may act on
// what it sees (the seats model detects sell-outs only from here on).
func (g *generation) goLive() error {
	if !g.live.CompareAndSwap(false, true) {
		return nil
	}
	if lm, ok := g.model.(liveModel); ok {
		return lm.goLive()
	}
	return nil
}

// model is one read model: the buckets it owns and how a batch of events changes them.
type model interface {
	buckets() []string
	begin(t txn) (batchWriter, error)
}

// batchWriter applies the events of one batch inside one transaction.
type batchWriter interface {
	apply(env *eventstore.Envelope, ev aggregates.Event) error
	// finish runs before the commit.
	finish() error
	// committed runs after a successful commit, under the generation's write lock, before
	// the checkpoints move. It reports whether the sell-out recorder has work.
	committed() (wake bool)
}

// interested is a model that ignores some event types: they are not even decoded.
type interested interface{ wants(eventType string) bool }

// liveModel is a model with work to do once it has caught up with the log.
type liveModel interface{ goLive() error }
