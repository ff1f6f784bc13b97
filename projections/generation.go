// Generations: a projection's bbolt file with its model and checkpoints, and how batches are applied to it.

package projections

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

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

// generation is one bbolt file of a projection with the model that reads and writes it. An
// online rebuild builds a new generation beside the serving one and swaps it in.
type generation struct {
	name    string
	db      *bolt.DB
	model   model
	log     *slog.Logger
	writeMu sync.Mutex // serialises a commit with the cache updates that follow it
	cps     map[string]*atomic.Uint64
	cpList  []*atomic.Uint64 // cps in the order of the projection's streams
	// saved is each stream's checkpoint as the file has it (under writeMu). It trails cps
	// when batches the model does not want moved only the in-memory one (skipUnwanted).
	saved map[string]uint64
	// quiet marks the streams whose committed batches this projection does not hand to the
	// subscribers (another projection reading the stream does), so a batch it skips without
	// a transaction is never delivered again after a crash.
	quiet   map[string]bool
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
// discarded and rebuilt from the log. 3: the index of held seats is keyed by heldUntil first.
const formatVersion = 3

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

// lazyCheckpointGap is how far (in stream sequences) a stream's checkpoint may run ahead of
// the file's when only batches the model does not want moved it. Such a batch costs no bbolt
// transaction: under a flash sale the payments projection reads every date commit and wants
// none of the holds, and its transactions were a third of the read models' (each allocates a
// 4 KB meta page and the nodes it touches). After a crash a projection reads again at most
// this many commits per stream, each of which it skips.
const lazyCheckpointGap = 1024

// emitsFor reports whether sp is the projection whose commits of stream feed the
// subscribers (Engine.emitter): the first of specs() that reads it.
func emitsFor(sp spec, stream string) bool {
	for _, o := range specs() {
		if slices.Contains(o.streams, stream) {
			return o.name == sp.name
		}
	}
	return false
}

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
	g := &generation{name: sp.name, db: db, log: log, cps: map[string]*atomic.Uint64{}, lastAt: map[string]*atomic.Int64{}, kick: kick,
		saved: map[string]uint64{}, quiet: map[string]bool{}}
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
			g.saved[s] = v.Load()
			g.quiet[s] = !emitsFor(sp, s)
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
	if err := g.saveCheckpoints(); err != nil {
		_ = g.db.Close()
		return fmt.Errorf("projections: close %s: %w", g.name, err)
	}
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
	wants, _ := g.model.(interested)
	befores = make([]uint64, len(items))
	if g.skipUnwanted(items, wants, befores) {
		return befores, nil
	}
	var w batchWriter
	first := map[string]uint64{} // checkpoint per stream before the transaction
	last := map[string]uint64{}  // checkpoint per stream after it
	lastAt := map[string]time.Time{}
	var carried []streamCheckpoint
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
				// The file's checkpoint may trail the one in memory (skipUnwanted), or lead
				// it (a redelivery after a failure between a commit and the memory).
				cp = max(getU64(meta.Get(cpKey(it.stream))), g.checkpoint(it.stream))
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
				ev, err := aggregates.DecodeKnown(env.Decoded, env.Type, env.Data)
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
		// The checkpoints that only memory has (skipUnwanted) ride along for free.
		carried = carried[:0]
		for _, c := range g.unsaved() {
			if _, put := last[c.stream]; !put {
				if err := meta.Put(cpKey(c.stream), u64(c.cp)); err != nil {
					return err
				}
				carried = append(carried, c)
			}
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
	for s, cp := range last {
		g.saved[s] = max(g.saved[s], cp)
	}
	g.markSaved(carried)
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

type streamCheckpoint struct {
	stream string
	cp     uint64
}

// skipUnwanted takes items without a transaction when none of their new events is one the
// model wants: it moves the in-memory checkpoints only, fills befores with the checkpoint
// before each batch as applyMany does, and reports true. It declines while the generation is
// being rebuilt, for a stream whose batches feed the subscribers, and once a stream's
// checkpoint would run more than lazyCheckpointGap ahead of the file's; applyMany then
// commits (and overwrites befores), and the checkpoints held back ride along.
func (g *generation) skipUnwanted(items []streamBatch, wants interested, befores []uint64) bool {
	if wants == nil || g.overlay != nil {
		return false
	}
	type moved struct {
		stream string
		cp     uint64
		newest int64 // the latest OccurredAt skipped (Unix ns)
	}
	var each [4]moved // a batch of one stream, or a few: no allocation
	ms := each[:0]
	for k, it := range items {
		if g.cps[it.stream] == nil || !g.quiet[it.stream] {
			return false
		}
		i := slices.IndexFunc(ms, func(m moved) bool { return m.stream == it.stream })
		if i < 0 {
			ms = append(ms, moved{stream: it.stream, cp: g.checkpoint(it.stream)})
			i = len(ms) - 1
		}
		m := &ms[i]
		befores[k] = m.cp
		base := m.cp // a batch holds whole commits, whose events share a sequence
		for j := range it.batch {
			env := &it.batch[j]
			if env.Sequence <= base {
				continue
			}
			if wants.wants(env.Type) {
				return false
			}
			m.cp = env.Sequence
			m.newest = max(m.newest, env.OccurredAt.UnixNano())
		}
		if m.cp-g.saved[it.stream] > lazyCheckpointGap {
			return false
		}
	}
	for _, m := range ms {
		if at := g.lastAt[m.stream]; at != nil && m.newest > at.Load() {
			at.Store(m.newest)
		}
		if v := g.cps[m.stream]; v.Load() < m.cp {
			v.Store(m.cp)
		}
	}
	return true
}

// unsaved returns the checkpoints that memory has ahead of the file (skipUnwanted). The
// caller holds writeMu.
func (g *generation) unsaved() []streamCheckpoint {
	var out []streamCheckpoint
	for s, v := range g.cps {
		if cp := v.Load(); cp > g.saved[s] {
			out = append(out, streamCheckpoint{s, cp})
		}
	}
	return out
}

// markSaved records checkpoints a committed transaction wrote. The caller holds writeMu.
func (g *generation) markSaved(cps []streamCheckpoint) {
	for _, c := range cps {
		g.saved[c.stream] = max(g.saved[c.stream], c.cp)
	}
}

// saveCheckpoints writes the checkpoints that only memory has (skipUnwanted) to the file.
func (g *generation) saveCheckpoints() error {
	g.writeMu.Lock()
	defer g.writeMu.Unlock()
	cps := g.unsaved()
	if g.overlay != nil || len(cps) == 0 {
		return nil
	}
	err := g.db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket(bucketMeta)
		for _, c := range cps {
			if err := meta.Put(cpKey(c.stream), u64(c.cp)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	g.markSaved(cps)
	return nil
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
