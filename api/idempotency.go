package api

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/booking-engine/booking/app"
)

// IdempotencyTTL is how long an answer is kept for its Idempotency-Key (the contract asks
// for at least 24 hours).
const IdempotencyTTL = 24 * time.Hour

// sweepInterval is how often expired answers are deleted from the file. Expiry itself is
// exact: a lookup ignores an answer older than the TTL whether or not it was swept yet.
const sweepInterval = 10 * time.Minute

// settleTimeout bounds keeping an answer or releasing a claim. It runs on a context detached
// from the request's: a command that took effect must get its answer kept even when the
// request's deadline has just passed.
const settleTimeout = 5 * time.Second

var (
	bucketAnswers = []byte("answers") // scope → storedAnswer (JSON)
	bucketByTime  = []byte("by_time") // 8-byte big-endian unix nanos + scope → nothing
)

// IdempotencyStore keeps the answers to requests that carried an Idempotency-Key, so that a
// repeat gets the first answer, and makes concurrent repeats of one key have one effect.
//
// A key's scope is the method, the route pattern, the request's user and the key. Answers are
// kept IdempotencyTTL (24 h), and only for requests whose command ran and answered below 500.
//
// Two backends:
//
//   - OpenSharedIdempotencyStore (what `booking serve` uses) keeps the answers in a JetStream
//     key-value bucket that every instance of the service shares, so a repeat that lands on
//     another instance is answered too, and they survive restarts as the events do. A request
//     first claims its scope in the bucket (a pending record, created only if the key is
//     absent); a repeat that finds the claim waits for the answer that replaces it (or for
//     its release: a command that did not run or failed with a 5xx keeps nothing). A claim
//     older than claimAbandonAfter (30 s) belongs to a request that died and is taken over
//     with a compare-and-set; the same instance restarted takes over its own claims at once
//     (SharedIdempotencyOptions.InstanceFile). If the bucket cannot be reached, a keyed
//     request is 503 and does not run.
//   - OpenIdempotencyStore keeps them in a bbolt file of this process: restarts are covered,
//     other instances are not (tests and single-process tools).
//
// Either way, repeats within one process queue on an in-process lock of the scope, so only
// one of them at a time consults the backend.
type IdempotencyStore struct {
	locks   keyLocks
	answers answerBackend
}

// answerBackend keeps the answers of scopes. The caller of claim holds the scope's in-process
// lock until it has settled the claim (keep or release).
type answerBackend interface {
	// claim returns the live answer of scope (found), or else claims the scope for the
	// caller, who then keeps an answer under it or releases it. rev identifies the claim.
	claim(ctx context.Context, scope string) (a storedAnswer, found bool, rev uint64, err error)
	// keep stores the answer of a claimed scope; it stamps StoredAt.
	keep(ctx context.Context, scope string, rev uint64, a storedAnswer) error
	// release gives up a claim without an answer, so that a repeat runs.
	release(ctx context.Context, scope string, rev uint64) error
	// sweep deletes expired answers (and abandoned claims) and returns how many.
	sweep(ctx context.Context) (int, error)
	// count returns the number of kept answers, expired ones not yet swept included.
	count(ctx context.Context) (int, error)
	close() error
}

// storedAnswer is one kept answer. Fingerprint identifies the request it answered.
type storedAnswer struct {
	Fingerprint []byte    `json:"fp"`
	Status      int       `json:"status"`
	ContentType string    `json:"contentType"`
	Body        []byte    `json:"body"`
	StoredAt    time.Time `json:"storedAt"`
}

// Close stops what the store runs and closes its file; a shared store leaves the NATS
// connection to its owner.
func (s *IdempotencyStore) Close() error { return s.answers.close() }

// Sweep deletes the answers older than the TTL (and, in the shared bucket, abandoned claims)
// and returns how many it deleted. The file store sweeps itself every 10 minutes; the bucket
// drops old entries by its own TTL, so Sweep only makes that happen earlier.
func (s *IdempotencyStore) Sweep() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return s.answers.sweep(ctx)
}

// Len returns the number of kept answers, expired ones not yet swept included.
func (s *IdempotencyStore) Len() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return s.answers.count(ctx)
}

// idemClaim is one request's hold on its scope: the in-process lock and, while the request
// runs, the backend's claim. It is settled once: keep stores the answer, done releases what
// is left.
type idemClaim struct {
	s       *IdempotencyStore
	scope   string
	rev     uint64
	unlock  func()
	settled bool
}

// begin takes the scope for a request. It returns the answer kept for the scope (found: the
// caller replays it or refuses the request), or else a claim under which the request runs.
// Either way the caller calls done when it has answered.
func (s *IdempotencyStore) begin(ctx context.Context, scope string) (*idemClaim, storedAnswer, bool, error) {
	unlock, err := s.locks.lock(ctx, scope)
	if err != nil {
		return nil, storedAnswer{}, false, err
	}
	a, found, rev, err := s.answers.claim(ctx, scope)
	if err != nil {
		unlock()
		return nil, storedAnswer{}, false, err
	}
	return &idemClaim{s: s, scope: scope, rev: rev, unlock: unlock, settled: found}, a, found, nil
}

// keep stores the request's answer under its claim.
func (c *idemClaim) keep(ctx context.Context, a storedAnswer) error {
	if c.settled {
		return nil
	}
	c.settled = true
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	return c.s.answers.keep(ctx, c.scope, c.rev, a)
}

// done releases a claim that kept no answer (the command did not run, or failed with a 5xx),
// so that a retry runs, and then the in-process lock.
func (c *idemClaim) done(ctx context.Context) error {
	defer c.unlock()
	if c.settled {
		return nil
	}
	c.settled = true
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), settleTimeout)
	defer cancel()
	return c.s.answers.release(ctx, c.scope, c.rev)
}

// boltAnswers keeps answers in a bbolt file of this process.
type boltAnswers struct {
	db    *bolt.DB
	clock app.Clock
	ttl   time.Duration

	// sweepBatch bounds the deletions of one sweep transaction.
	sweepBatch int

	writes chan putRequest // to the writer, which commits them in groups
	stop   chan struct{}
	wg     sync.WaitGroup // the sweeper and the writer
	once   sync.Once
}

// putRequest is one answer on its way to the file; done receives the commit's outcome.
type putRequest struct {
	scope    string
	storedAt time.Time
	val      []byte
	done     chan error
}

// maxWriteGroup bounds the answers committed together.
const maxWriteGroup = 1000

// errStoreClosed reports a write after Close.
var errStoreClosed = errors.New("idempotency store closed")

// OpenIdempotencyStore opens (or creates) a store in the bbolt file at path and starts
// sweeping expired answers every 10 minutes. Its keys hold in this process and across its
// restarts, not across instances side by side: those need OpenSharedIdempotencyStore.
// clock may be nil (the system clock). Close it when done.
func OpenIdempotencyStore(path string, clock app.Clock) (*IdempotencyStore, error) {
	b, err := openBoltAnswers(path, clock)
	if err != nil {
		return nil, err
	}
	return &IdempotencyStore{answers: b}, nil
}

func openBoltAnswers(path string, clock app.Clock) (*boltAnswers, error) {
	if clock == nil {
		clock = app.SystemClock{}
	}
	// The timeout turns a second process on the same data dir into an error, not a hang.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("open idempotency store %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketAnswers); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketByTime)
		return err
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("init idempotency store %s: %w", path, err)
	}
	b := &boltAnswers{db: db, clock: clock, ttl: IdempotencyTTL, sweepBatch: 10_000,
		writes: make(chan putRequest), stop: make(chan struct{})}
	b.wg.Add(2)
	go b.sweepLoop()
	go b.writeLoop()
	return b, nil
}

// close stops the sweeper and the writer and closes the file. Answers being written finish
// first; later writes fail.
func (b *boltAnswers) close() error {
	b.once.Do(func() { close(b.stop) })
	b.wg.Wait()
	return b.db.Close()
}

// claim needs no record in the file: the in-process lock the caller holds is the claim.
func (b *boltAnswers) claim(_ context.Context, scope string) (storedAnswer, bool, uint64, error) {
	a, found, err := b.get(scope)
	return a, found, 0, err
}

func (b *boltAnswers) keep(_ context.Context, scope string, _ uint64, a storedAnswer) error {
	return b.put(scope, a)
}

func (b *boltAnswers) release(context.Context, string, uint64) error { return nil }

func (b *boltAnswers) sweep(context.Context) (int, error) { return b.sweepExpired() }

// count returns the number of answers in the file, expired ones not yet swept included.
func (b *boltAnswers) count(context.Context) (int, error) {
	var n int
	err := b.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketAnswers).Stats().KeyN
		return nil
	})
	return n, err
}

// writeLoop commits answers in groups: it takes every answer waiting when a commit starts,
// so a lone answer is committed at once and answers that arrive during a commit share the
// next one (and its fsyncs). This is what lets keyed requests scale with concurrency.
func (b *boltAnswers) writeLoop() {
	defer b.wg.Done()
	for {
		var group []putRequest
		select {
		case r := <-b.writes:
			group = append(group, r)
		case <-b.stop:
			return
		}
	drain:
		for len(group) < maxWriteGroup {
			select {
			case r := <-b.writes:
				group = append(group, r)
			default:
				break drain
			}
		}
		err := b.db.Update(func(tx *bolt.Tx) error {
			for _, r := range group {
				if err := writeAnswer(tx, r); err != nil {
					return err
				}
			}
			return nil
		})
		for _, r := range group {
			r.done <- err
		}
	}
}

func writeAnswer(tx *bolt.Tx, r putRequest) error {
	answers, byTime := tx.Bucket(bucketAnswers), tx.Bucket(bucketByTime)
	if old, ok := decodeAnswer(answers.Get([]byte(r.scope))); ok {
		if err := byTime.Delete(timeKey(old.StoredAt, r.scope)); err != nil {
			return err
		}
	}
	if err := answers.Put([]byte(r.scope), r.val); err != nil {
		return err
	}
	return byTime.Put(timeKey(r.storedAt, r.scope), nil)
}

func (b *boltAnswers) sweepLoop() {
	defer b.wg.Done()
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-b.stop:
			return
		case <-t.C:
			if _, err := b.sweepExpired(); err != nil {
				slog.Default().Warn("idempotency sweep failed", "error", err)
			}
		}
	}
}

// sweepExpired deletes the answers older than the TTL in transactions of bounded size, so
// that a large backlog never builds one huge commit.
func (b *boltAnswers) sweepExpired() (int, error) {
	perTx := b.sweepBatch
	cutoff := b.clock.Now().Add(-b.ttl)
	limit := timeKey(cutoff, "")
	total := 0
	for {
		n := 0
		err := b.db.Update(func(tx *bolt.Tx) error {
			answers, byTime := tx.Bucket(bucketAnswers), tx.Bucket(bucketByTime)
			var expired [][]byte
			cur := byTime.Cursor()
			for k, _ := cur.First(); k != nil && bytes.Compare(k, limit) < 0 && len(expired) < perTx; k, _ = cur.Next() {
				expired = append(expired, bytes.Clone(k))
			}
			for _, k := range expired {
				if err := byTime.Delete(k); err != nil {
					return err
				}
				if err := answers.Delete(k[8:]); err != nil {
					return err
				}
			}
			n = len(expired)
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("sweep idempotency store: %w", err)
		}
		total += n
		if n < perTx {
			return total, nil
		}
	}
}

// get returns the live answer of a scope, if any.
func (b *boltAnswers) get(scope string) (storedAnswer, bool, error) {
	var a storedAnswer
	var ok bool
	err := b.db.View(func(tx *bolt.Tx) error {
		a, ok = decodeAnswer(tx.Bucket(bucketAnswers).Get([]byte(scope)))
		return nil
	})
	if err != nil {
		return a, false, fmt.Errorf("read idempotency store: %w", err)
	}
	if ok && expired(a, b.clock.Now(), b.ttl) {
		return a, false, nil
	}
	return a, ok, nil
}

// put keeps the answer of a scope (replacing an expired one) and returns once it is on disk.
func (b *boltAnswers) put(scope string, a storedAnswer) error {
	a.StoredAt = b.clock.Now()
	val, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode idempotent answer: %w", err)
	}
	r := putRequest{scope: scope, storedAt: a.StoredAt, val: val, done: make(chan error, 1)}
	select {
	case b.writes <- r:
	case <-b.stop:
		return errStoreClosed
	}
	if err := <-r.done; err != nil {
		return fmt.Errorf("write idempotency store: %w", err)
	}
	return nil
}

// expired reports whether an answer is past the TTL: exactly TTL old is still live.
func expired(a storedAnswer, now time.Time, ttl time.Duration) bool {
	return a.StoredAt.Before(now.Add(-ttl))
}

func decodeAnswer(v []byte) (storedAnswer, bool) {
	var a storedAnswer
	if v == nil || json.Unmarshal(v, &a) != nil {
		return a, false
	}
	return a, true
}

func timeKey(t time.Time, scope string) []byte {
	k := make([]byte, 8, 8+len(scope))
	ns := t.UnixNano()
	if ns < 0 {
		ns = 0
	}
	binary.BigEndian.PutUint64(k, uint64(ns))
	return append(k, scope...)
}

// fingerprint identifies a request for its key: the path (which holds the path parameters)
// and the body in a canonical form, so that a client re-encoding the same JSON with other
// white space or field order is still "the same body".
func fingerprint(path string, body []byte) []byte {
	h := sha256.New()
	h.Write([]byte(path))
	h.Write([]byte{0})
	h.Write(canonicalJSON(body))
	return h.Sum(nil)
}

func canonicalJSON(body []byte) []byte {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return body
	}
	out, err := json.Marshal(v) // map keys come out sorted
	if err != nil {
		return body
	}
	return out
}

// keyLocks is a set of mutexes by key whose waits end with a context. Entries are removed
// when nobody holds or waits for them, so the set stays as small as the traffic in flight.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	ch   chan struct{} // holds one element while locked
	refs int
}

// lock takes the key's lock, waiting at most until ctx ends; unlock releases it.
func (l *keyLocks) lock(ctx context.Context, key string) (unlock func(), err error) {
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*keyLock{}
	}
	k := l.m[key]
	if k == nil {
		k = &keyLock{ch: make(chan struct{}, 1)}
		l.m[key] = k
	}
	k.refs++
	l.mu.Unlock()

	release := func() {
		l.mu.Lock()
		k.refs--
		if k.refs == 0 {
			delete(l.m, key)
		}
		l.mu.Unlock()
	}
	select {
	case k.ch <- struct{}{}:
		return func() { <-k.ch; release() }, nil
	case <-ctx.Done():
		release()
		return nil, fmt.Errorf("wait for a concurrent request with the same Idempotency-Key: %w", ctx.Err())
	}
}
