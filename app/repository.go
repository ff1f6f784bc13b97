package app

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// maxAttempts is a backstop on the optimistic-concurrency retries of one commit; the real
// bound is its commands' contexts (a request's timeout). Commits of one aggregate are
// serialised inside this process, so conflicts only come from other instances, but one
// commit can lose many rounds in a row: the other instance drains its own queue of updates to
// the aggregate (its cache is current after every win), while the loser needs a read after
// every conflict. A bound of 8 turned two instances' burst of charges to one wallet into 503s,
// although every charge must count; the loser only has to outlast the other's burst.
const maxAttempts = 1000

// Repository loads one type of aggregate from the event store and appends its decisions.
// It caches the latest known state of each aggregate: a decision is made on the cached state
// and appended with the cached version, so the common case costs one append and no read; a
// conflict (another instance appended) catches the cache up and decides again.
type Repository[S any] struct {
	store   eventstore.Store
	typ     string
	apply   func(S, aggregates.Event) S
	locks   [lockStripes]sync.Mutex
	seed    maphash.Seed
	lanes   lanes[S]
	cache   *stateCache[S]
	clock   Clock
	metrics Observer
	// singleWriter is set when this process is the only writer of the log (the embedded
	// server, whose data dir is locked; Options.SingleWriter): then a cached state is the
	// log's state and a refusal made on it needs no read to be trusted.
	singleWriter bool
	// owner, when set, names the aggregate each event belongs to, where that is not the one
	// the commit is appended to (nil): a date's commits carry seat and reservation events.
	owner func(id string, ev aggregates.Event) *eventstore.AggregateRef
	// compact, when set, lets a state forget what it no longer needs to decide (a date's
	// records that ended long ago); it is told the time of every event applied (see fold).
	compact func(st S, at time.Time) S
	// contended holds the IDs of the aggregates another instance has won an append of: their
	// commits keep a copy of the state they were decided on (see commit). A few per process:
	// the dates two instances sell at once.
	contended sync.Map
}

// lockStripes is how many mutexes serialise commands per aggregate. Unrelated aggregates that
// share a stripe wait for each other's append, so the stripes must far outnumber the commands
// in flight: with 4,096, a goroutine dump at a flash sale's ~1,200 holds in flight showed a
// quarter of the reservation openings waiting behind unrelated ones. 65,536 take 512 KiB a
// repository.
const lockStripes = 1 << 16

// Observer is told about appends and conflicts, for metrics. Methods must be cheap.
type Observer interface {
	Appended(aggregateType string, seconds float64)
	Conflict(aggregateType string)
}

type nopObserver struct{}

func (nopObserver) Appended(string, float64) {}
func (nopObserver) Conflict(string)          {}

// NewRepository returns a repository of aggregates of type typ (an eventstore.Type*
// constant) whose state is folded with apply. cacheSize bounds the cached states; clock
// stamps the events (nil: SystemClock).
func NewRepository[S any](store eventstore.Store, typ string, apply func(S, aggregates.Event) S, cacheSize int, clock Clock, obs Observer) *Repository[S] {
	if obs == nil {
		obs = nopObserver{}
	}
	if clock == nil {
		clock = SystemClock{}
	}
	r := &Repository[S]{store: store, typ: typ, apply: apply, seed: maphash.MakeSeed(), cache: newStateCache[S](cacheSize), clock: clock, metrics: obs}
	r.lanes.seed = r.seed
	return r
}

func (r *Repository[S]) lock(id string) *sync.Mutex {
	return &r.locks[maphash.String(r.seed, id)%uint64(len(r.locks))]
}

// Load returns an aggregate's current state and version (0 for one without events). It always
// asks the store for events newer than the cached version, so it sees other instances' work.
func (r *Repository[S]) Load(ctx context.Context, id string) (S, uint64, error) {
	// Apply may reuse a state's maps, so folding new events is done under the aggregate's lock.
	mu := r.lock(id)
	mu.Lock()
	defer mu.Unlock()
	st, ver, ok := r.cache.get(id)
	if ok && r.singleWriter {
		return st, ver, nil
	}
	st, ver, err := r.catchUp(ctx, id, st, ver)
	if err != nil {
		return st, ver, err
	}
	r.cache.put(id, st, ver)
	return st, ver, nil
}

// Read calls fn with the aggregate's current state (as Load finds it) under the aggregate's
// lock, for states whose maps commits update in place: fn must copy out what it needs and
// keep nothing of the state.
func (r *Repository[S]) Read(ctx context.Context, id string, fn func(S)) error {
	mu := r.lock(id)
	mu.Lock()
	defer mu.Unlock()
	st, ver, ok := r.cache.get(id)
	if !ok || !r.singleWriter {
		var err error
		if st, ver, err = r.catchUp(ctx, id, st, ver); err != nil {
			return err
		}
		r.cache.put(id, st, ver)
	}
	fn(st)
	return nil
}

// Peek calls fn with the cached state under the aggregate's lock, without asking the store, and
// reports whether a state was cached. With other writers possible it may be behind the log:
// for checks that a later decision repeats against the log.
func (r *Repository[S]) Peek(id string, fn func(S)) bool {
	mu := r.lock(id)
	mu.Lock()
	defer mu.Unlock()
	st, _, ok := r.cache.get(id)
	if ok {
		fn(st)
	}
	return ok
}

// Cached returns the cached state without asking the store; ok is false if none is cached.
// For aggregates that never change once created (a concert) this is always current.
func (r *Repository[S]) Cached(id string) (S, uint64, bool) { return r.cache.get(id) }

func (r *Repository[S]) catchUp(ctx context.Context, id string, st S, ver uint64) (S, uint64, error) {
	envs, err := r.store.Load(ctx, eventstore.AggregateRef{Type: r.typ, ID: id}, ver)
	if err != nil {
		return st, ver, fmt.Errorf("load %s %s: %w", r.typ, id, err)
	}
	for _, env := range envs {
		ev, err := aggregates.Decode(env.Type, env.Data)
		if err != nil {
			return st, ver, fmt.Errorf("load %s %s at %d: %w", r.typ, id, env.Sequence, err)
		}
		st, ver = r.fold(st, ev, env.OccurredAt), env.Sequence
	}
	return st, ver, nil
}

// fold applies one event recorded at at, and compacts the state at that time. Compacting is
// part of the fold: a replay compacts at the times the events were recorded, and a live
// commit at the times it stamps on them (the same ones), so both end in the same state.
func (r *Repository[S]) fold(st S, ev aggregates.Event, at time.Time) S {
	st = r.apply(st, ev)
	if r.compact != nil {
		st = r.compact(st, at)
	}
	return st
}

// step is one command's identity in the log: the dedup ID that makes its append safe to
// repeat and the metadata its events carry. A saga step's dedup ID is also its causation ID
// (see Meta.step), so the two are made once, together, and cannot drift apart.
type step struct {
	dedupID string
	meta    eventstore.Metadata
}

// Do decides on the aggregate's state with decide and appends the events it returns, as
// Update does, and returns the state after the commit. It is the common form: most callers
// need neither the version nor the events.
func (r *Repository[S]) Do(ctx context.Context, id string, st step, decide func(S) ([]aggregates.Event, error)) (S, error) {
	state, _, _, err := r.Update(ctx, id, st, decide)
	return state, err
}

// Update decides on the aggregate's state with fn and appends the events it returns with the
// version the decision was made on. On a concurrent append it catches up and calls fn again,
// up to a bound. A decision made on a cached state that yields no events or an error is
// checked against the store first, so a stale cache never answers for the log. The step's
// dedup ID makes the append safe to repeat (saga steps pass IDs derived from the saga and the
// step).
// It returns the state after the commit that holds the events, its version, and the events
// appended (none for a no-op).
//
// Concurrent updates of one aggregate share commits: while one commit of the aggregate is
// being decided and appended, later commands queue; the next commit then decides every queued
// command one after another, each on the state the previous ones left, and appends all their
// events as one message (one fsync) with the version the first was decided on. Every command
// is answered, refusals included, only once the commit it was decided in is acknowledged; a
// conflict discards all the decisions of the commit and decides them again after catching up.
// fn may therefore run more than once, and must be a pure decision. The commit sets each
// command's meta.OccurredAt itself as it decides it, under the aggregate's lock: stamped any
// earlier, concurrent commands of one aggregate could append in another order than they were
// stamped, and a wallet's history would go back in time.
func (r *Repository[S]) Update(ctx context.Context, id string, st step, fn func(S) ([]aggregates.Event, error)) (S, uint64, []aggregates.Event, error) {
	o := r.update(ctx, id, st, fn)
	return o.st, o.ver, o.evs, o.err
}

// update is Update with the whole answer, for callers that need to know where in the commit
// their events are (updateResult.first).
func (r *Repository[S]) update(ctx context.Context, id string, st step, fn func(S) ([]aggregates.Event, error)) updateResult[S] {
	c := &command[S]{ctx: ctx, step: st, decide: fn, done: make(chan updateResult[S], 1)}
	if !r.lanes.join(id, c) {
		select {
		case o := <-c.done:
			return o
		case <-c.lead:
			// The commit before ours has ended: ours leads the next one.
		}
	}
	r.commitQueued(id, c)
	return <-c.done
}

// commitQueued decides lead's command and every command queued behind it as one commit, then
// hands the lead to the first command queued meanwhile.
func (r *Repository[S]) commitQueued(id string, lead *command[S]) {
	batch := r.lanes.take(id, lead)
	mu := r.lock(id)
	mu.Lock()
	r.commit(id, batch)
	mu.Unlock()
	r.lanes.handOff(id)
}

// commit decides a batch of commands and appends their events as one commit; it answers
// every command. The caller holds the aggregate's lock.
func (r *Repository[S]) commit(id string, batch []*command[S]) {
	// A command whose caller has gone is not decided: nobody would hear the answer.
	live := batch[:0]
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.answer(updateResult[S]{err: fmt.Errorf("update %s %s: %w: %w", r.typ, id, eventstore.ErrUnavailable, err)})
			continue
		}
		live = append(live, c)
	}
	if len(live) == 0 {
		return
	}
	// The append outlives any one caller: it carries every command of the batch.
	ctx := context.WithoutCancel(live[0].ctx)

	// An aggregate that is not cached is taken to have no events yet (most are new: a
	// reservation, a payment, a seat's first hold) and decided on without a read. That guess
	// is never trusted: an append carries the expected version, which the store refuses if
	// events exist, and a batch of refusals or no-ops is checked against the log before it is
	// answered.
	st, ver, cached := r.cache.get(id)
	fresh := cached && r.singleWriter
	ref := eventstore.AggregateRef{Type: r.typ, ID: id}
	fail := func(err error) {
		for _, c := range live {
			c.answer(updateResult[S]{st: st, ver: ver, err: err})
		}
	}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		if attempt > 0 {
			// A command whose caller gave up while the commit lost conflicts leaves it.
			if live = r.dropExpired(id, live); len(live) == 0 {
				return
			}
		}
		// Deciding applies the commit's events to st in place. Where another instance has won
		// an append of this aggregate before, keep a copy of the state the commit is decided
		// on, if the state can copy itself, so that a conflict catches that copy up instead of
		// reading the aggregate's whole history again (a date's is thousands of commits). Only
		// there: a copy of a busy date costs about as much as deciding a commit of it, which
		// an aggregate nobody else writes would pay for nothing.
		var before S
		canResume := false
		if c, ok := any(st).(cloner[S]); ok && !r.singleWriter {
			if _, contended := r.contended.Load(id); contended {
				before, canResume = c.Clone(), true
			}
		}
		d := r.decideAll(id, st, live)
		if len(d.events) == 0 {
			if !fresh {
				// The cache may be behind another instance: decide again on the log's state.
				nst, nver, err := r.catchUp(ctx, id, st, ver)
				if err != nil {
					fail(err)
					return
				}
				fresh = true
				if nver != ver {
					st, ver = nst, nver
					r.cache.put(id, st, ver)
					continue
				}
			}
			r.cache.put(id, st, ver)
			for _, c := range live {
				c.answer(updateResult[S]{st: st, ver: ver, err: c.err})
			}
			return
		}
		if d.encodeErr != nil {
			// d.state had the batch's events applied to the cached state's maps.
			r.cache.del(id)
			fail(d.encodeErr)
			return
		}
		start := nowMono()
		var note eventstore.AppendNote
		newVer, err := r.store.Append(eventstore.WithAppendNote(ctx, &note), ref, ver, d.events, d.dedupID, live[0].meta)
		// Deciding applied the batch's events to the state (Apply reuses its maps): unless the
		// commit landed, the state is no longer the one at ver.
		if errors.Is(err, eventstore.ErrConcurrency) {
			r.metrics.Conflict(r.typ)
			if _, ok := any(st).(cloner[S]); ok {
				r.contended.Store(id, struct{}{})
			}
			from, fromVer := before, ver
			if !canResume {
				var zero S
				from, fromVer = zero, 0
			}
			if st, ver, err = r.catchUp(ctx, id, from, fromVer); err != nil {
				r.cache.del(id)
				fail(err)
				return
			}
			fresh = true
			r.cache.put(id, st, ver)
			continue
		}
		if err != nil {
			// The append may or may not have landed: forget the cached state so the next
			// command reads the log.
			r.cache.del(id)
			fail(fmt.Errorf("append %s %s: %w", r.typ, id, err))
			return
		}
		r.metrics.Appended(r.typ, sinceMono(start))
		if note.Duplicate {
			// The commit was already in the log, and d.state is the decision made on a state
			// that did not have it (else the deciders would have made no events): it is not
			// the aggregate's state, which the next command reads from the log.
			r.cache.del(id)
		} else {
			r.cache.put(id, d.state, newVer)
		}
		for _, c := range live {
			c.answer(updateResult[S]{st: d.state, ver: newVer, evs: c.evs, first: c.first, err: c.err})
		}
		return
	}
	fail(fmt.Errorf("update %s %s: gave up after %d attempts: %w", r.typ, id, maxAttempts, eventstore.ErrConcurrency))
}

// dropExpired answers the commands whose context ended and returns the others.
func (r *Repository[S]) dropExpired(id string, batch []*command[S]) []*command[S] {
	live := batch[:0]
	for _, c := range batch {
		if err := c.ctx.Err(); err != nil {
			c.answer(updateResult[S]{err: fmt.Errorf("update %s %s: gave up on conflicts: %w", r.typ, id, errors.Join(err, eventstore.ErrConcurrency))})
			continue
		}
		live = append(live, c)
	}
	return live
}

// cloner is a state that can copy itself, so that no later Apply to one changes the other.
type cloner[S any] interface{ Clone() S }

// decisions is what a batch of commands decided, one after another.
type decisions[S any] struct {
	state     S                  // after every decided event
	events    []eventstore.Event // the commit: every command's events, encoded, in order
	dedupID   string             // the commit's dedup ID; see decideAll
	encodeErr error
}

// decideAll decides each command on the state the previous ones left. The commit's dedup ID
// is that of its only command with events; a commit of several commands has none, and a
// retried command is then recognised by its decider (a step already taken is a no-op), as the
// IDs its events carry are derived from its request.
func (r *Repository[S]) decideAll(id string, st S, batch []*command[S]) decisions[S] {
	var d decisions[S]
	deciders := 0
	for _, c := range batch {
		c.evs, c.err = c.decide(st)
		if c.err != nil || len(c.evs) == 0 {
			c.evs = nil
			continue
		}
		deciders++
		d.dedupID = c.dedupID
		c.meta.OccurredAt = r.clock.Now()
		c.first = len(d.events)
		for _, ev := range c.evs {
			data, err := aggregates.Encode(ev)
			if err != nil && d.encodeErr == nil {
				d.encodeErr = fmt.Errorf("encode %s: %w", ev.EventType(), err)
			}
			e := eventstore.Event{Type: ev.EventType(), Data: data, Meta: &c.meta, Value: ev}
			if r.owner != nil {
				e.Ref = r.owner(id, ev)
			}
			d.events = append(d.events, e)
			st = r.fold(st, ev, c.meta.OccurredAt)
		}
	}
	if deciders > 1 {
		d.dedupID = ""
	}
	d.state = st
	return d
}

// command is one Update waiting for its commit.
type command[S any] struct {
	ctx context.Context
	step
	decide func(S) ([]aggregates.Event, error)
	done   chan updateResult[S] // buffered: answered once
	lead   chan struct{}        // buffered: told once when it leads the next commit; made when it queues
	// evs and err are what the command decided in the commit under way; first is the index
	// of its first event in the commit (eventstore.Envelope.Index).
	evs   []aggregates.Event
	err   error
	first int
	// alone is the batch of a commit that holds only this command.
	alone [1]*command[S]
}

func (c *command[S]) answer(o updateResult[S]) { c.done <- o }

// updateResult is a command's answer. first is the index of the command's first event in
// the commit at ver, as readers of the log see it (eventstore.Envelope.Index): the queue makes
// a token's position of the two.
type updateResult[S any] struct {
	st    S
	ver   uint64
	evs   []aggregates.Event
	first int
	err   error
}

// maxBatch bounds the commands of one commit, so that a commit stays far below JetStream's
// largest message (1 MiB by default) and a queue never makes one commit's latency unbounded.
const maxBatch = 256

// lanes queue the commands of each aggregate that arrive while a commit of it is under way.
// At most one command per aggregate leads (decides and appends a commit); the others wait in
// its lane until the leader answers them or hands them the lead.
type lanes[S any] struct {
	shards [laneShards]laneShard[S]
	seed   maphash.Seed
}

const laneShards = 64

type laneShard[S any] struct {
	mu    sync.Mutex
	queue map[string][]*command[S] // aggregate → commands waiting; present while one leads
}

func (l *lanes[S]) shard(id string) *laneShard[S] {
	return &l.shards[maphash.String(l.seed, id)%laneShards]
}

// join reports whether c leads a commit at once; otherwise it is queued behind the one
// under way.
func (l *lanes[S]) join(id string, c *command[S]) bool {
	sh := l.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.queue == nil {
		sh.queue = make(map[string][]*command[S])
	}
	q, busy := sh.queue[id]
	if !busy {
		sh.queue[id] = q[:0]
		return true
	}
	c.lead = make(chan struct{}, 1)
	sh.queue[id] = append(q, c)
	return false
}

// take returns lead and up to maxBatch-1 commands queued behind it: one commit's worth.
func (l *lanes[S]) take(id string, lead *command[S]) []*command[S] {
	sh := l.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	q := sh.queue[id]
	if len(q) > 0 && q[0] == lead {
		q = q[1:] // a command handed the lead is still at the head of the queue
	}
	n := min(len(q), maxBatch-1)
	sh.queue[id] = q[n:]
	if n == 0 {
		// The common case under light load: a commit of one, with no slice to allocate.
		lead.alone[0] = lead
		return lead.alone[:]
	}
	batch := make([]*command[S], 0, n+1)
	batch = append(batch, lead)
	batch = append(batch, q[:n]...)
	return batch
}

// handOff ends a commit: the first command queued meanwhile leads the next one, or the
// aggregate's lane closes.
func (l *lanes[S]) handOff(id string) {
	sh := l.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	q := sh.queue[id]
	if len(q) == 0 {
		delete(sh.queue, id)
		return
	}
	q[0].lead <- struct{}{}
}

// stateCache is a bounded map of aggregate states. When full it drops an arbitrary entry
// (Go's map iteration order is random): states are cheap to reload, and a bound keeps memory
// flat under a million seats.
type stateCache[S any] struct {
	mu   sync.Mutex
	max  int
	data map[string]cached[S]
}

type cached[S any] struct {
	st  S
	ver uint64
}

func newStateCache[S any](max int) *stateCache[S] {
	return &stateCache[S]{max: max, data: make(map[string]cached[S])}
}

func (c *stateCache[S]) get(id string) (S, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.data[id]
	return e.st, e.ver, ok
}

func (c *stateCache[S]) put(id string, st S, ver uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.data[id]; !ok && len(c.data) >= c.max {
		for k := range c.data {
			delete(c.data, k)
			break
		}
	}
	c.data[id] = cached[S]{st, ver}
}

func (c *stateCache[S]) del(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.data, id)
}
