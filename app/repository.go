package app

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"sync"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// maxAttempts bounds the optimistic-concurrency retries of one Update. Updates of one
// aggregate are serialised inside this process, so conflicts only come from other instances
// and a handful of attempts is plenty.
const maxAttempts = 8

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
	cache   *stateCache[S]
	clock   Clock
	metrics Observer
	// sole is set when this process is the only writer of the log (the embedded server,
	// whose data dir is locked): then a cached state is the log's state and a refusal made
	// on it needs no read to be trusted.
	sole bool
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
	return &Repository[S]{store: store, typ: typ, apply: apply, seed: maphash.MakeSeed(), cache: newStateCache[S](cacheSize), clock: clock, metrics: obs}
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
	if ok && r.sole {
		return st, ver, nil
	}
	st, ver, err := r.catchUp(ctx, id, st, ver)
	if err != nil {
		return st, ver, err
	}
	r.cache.put(id, st, ver)
	return st, ver, nil
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
		st, ver = r.apply(st, ev), env.Sequence
	}
	return st, ver, nil
}

// Update decides on the aggregate's state with fn and appends the events it returns with the
// version the decision was made on. On a concurrent append it catches up and calls fn again,
// up to a bound. A decision made on a cached state that yields no events or an error is
// checked against the store first, so a stale cache never answers for the log. dedupID makes
// the append safe to repeat (saga steps pass IDs derived from the saga and the step).
// It returns the state after the events, its version, and the events appended (none for a
// no-op). Update sets meta.OccurredAt itself, under the aggregate's lock, right before the
// append: stamped any earlier, concurrent commands of one aggregate could append in another
// order than they were stamped, and a wallet's history would go back in time.
func (r *Repository[S]) Update(ctx context.Context, id, dedupID string, meta eventstore.Metadata, fn func(S) ([]aggregates.Event, error)) (S, uint64, []aggregates.Event, error) {
	mu := r.lock(id)
	mu.Lock()
	defer mu.Unlock()

	// An aggregate that is not cached is taken to have no events yet (most are new: a
	// reservation, a payment, a seat's first hold) and decided on without a read. That guess
	// is never trusted: an append carries expected version 0, which the store refuses if
	// events exist, and a refusal or no-op is checked against the log before it is returned.
	st, ver, cached := r.cache.get(id)
	fresh := cached && r.sole
	ref := eventstore.AggregateRef{Type: r.typ, ID: id}
	for attempt := 0; attempt < maxAttempts; attempt++ {
		evs, decideErr := fn(st)
		if (decideErr != nil || len(evs) == 0) && !fresh {
			// The cache may be behind another instance: decide again on the log's state.
			nst, nver, err := r.catchUp(ctx, id, st, ver)
			if err != nil {
				return st, ver, nil, err
			}
			fresh = true
			if nver != ver {
				st, ver = nst, nver
				r.cache.put(id, st, ver)
				continue
			}
		}
		if decideErr != nil {
			r.cache.put(id, st, ver)
			return st, ver, nil, decideErr
		}
		if len(evs) == 0 {
			r.cache.put(id, st, ver)
			return st, ver, nil, nil
		}
		out := make([]eventstore.Event, len(evs))
		for i, ev := range evs {
			data, err := aggregates.Encode(ev)
			if err != nil {
				return st, ver, nil, fmt.Errorf("encode %s: %w", ev.EventType(), err)
			}
			out[i] = eventstore.Event{Type: ev.EventType(), Data: data}
		}
		meta.OccurredAt = r.clock.Now()
		start := nowMono()
		newVer, err := r.store.Append(ctx, ref, ver, out, dedupID, meta)
		if errors.Is(err, eventstore.ErrConcurrency) {
			r.metrics.Conflict(r.typ)
			if st, ver, err = r.catchUp(ctx, id, st, ver); err != nil {
				return st, ver, nil, err
			}
			fresh = true
			r.cache.put(id, st, ver)
			continue
		}
		if err != nil {
			// The append may or may not have landed: forget the cached state so the next
			// command reads the log.
			r.cache.del(id)
			return st, ver, nil, fmt.Errorf("append %s %s: %w", r.typ, id, err)
		}
		r.metrics.Appended(r.typ, sinceMono(start))
		for _, ev := range evs {
			st = r.apply(st, ev)
		}
		r.cache.put(id, st, newVer)
		return st, newVer, evs, nil
	}
	return st, ver, nil, fmt.Errorf("update %s %s: gave up after %d attempts: %w", r.typ, id, maxAttempts, eventstore.ErrConcurrency)
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
