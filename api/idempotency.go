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

// writeTimeout bounds one write of a group of answers by the writer.
const writeTimeout = 5 * time.Second

// writeRetryDelay is how long the writer waits before it writes again a group whose write
// failed, and writeAttempts how often it tries before it gives the group up.
const (
	writeRetryDelay = time.Second
	writeAttempts   = 5
)

var (
	bucketAnswers = []byte("answers") // scope → storedAnswer (JSON)
	bucketByTime  = []byte("by_time") // 8-byte big-endian unix nanos + scope → nothing
)

// IdempotencyStore keeps the answers to requests that carried an Idempotency-Key, so that a
// repeat gets the first answer, and makes repeats of one key have one effect.
//
// A key's scope is the method, the route pattern, the request's user and the key. Answers are
// kept IdempotencyTTL (24 h), and only for requests whose command ran and answered below 500.
//
// A keyed request writes nothing it waits for (issue 14: a key costs no fsync of its own). It
// looks its scope up, runs, answers, and hands its answer to a writer that stores the answers
// of many requests together, after the response. Until then this instance answers repeats
// from memory. What covers the moment in between for the other instances, and an answer lost
// in a crash, is the log: the command runs with a RequestKey, so the IDs it creates are
// derived from the key and a repeat resumes or finds the first effect instead of making
// another (see docs/ARCHITECTURE.md, "Retries and idempotency").
//
// Two backends:
//
//   - OpenSharedIdempotencyStore (what `booking serve` uses) keeps the answers in a JetStream
//     key-value bucket that every instance of the service shares, so a repeat that lands on
//     another instance is answered too, and they survive restarts. On a single server the
//     bucket persists asynchronously: its writes cost no fsync. If the bucket cannot be
//     read, a keyed request is 503 and does not run.
//   - OpenIdempotencyStore keeps them in a bbolt file of this process: restarts are covered,
//     other instances are not (tests and single-process tools).
//
// Either way, repeats within one process queue on an in-process lock of the scope, so a
// repeat waits for the first request's answer instead of running beside it.
type IdempotencyStore struct {
	locks   keyLocks
	answers answerBackend
	clock   app.Clock

	mu        sync.Mutex
	unwritten map[string]storedAnswer // kept answers the backend does not hold yet
	queue     []scopedAnswer          // what the writer is to write next
	flushes   []chan struct{}         // closed when the writer has written what was queued before
	closed    bool
	wake      chan struct{} // one slot: the writer has work
	stop      chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
}

// answerBackend keeps the answers of scopes for the store's writer.
type answerBackend interface {
	// lookup returns the answer of scope, if any, expired or not.
	lookup(ctx context.Context, scope string) (storedAnswer, bool, error)
	// putAll stores answers (StoredAt stamped), replacing what their scopes held.
	putAll(ctx context.Context, answers []scopedAnswer) error
	// sweep deletes expired answers and returns how many.
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

// scopedAnswer is an answer on its way to the backend.
type scopedAnswer struct {
	scope    string
	a        storedAnswer
	attempts int
}

func newIdempotencyStore(b answerBackend, clock app.Clock) *IdempotencyStore {
	if clock == nil {
		clock = app.SystemClock{}
	}
	s := &IdempotencyStore{answers: b, clock: clock, unwritten: map[string]storedAnswer{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	go s.writeLoop()
	return s
}

// Close writes the answers still in memory, stops the writer and closes the backend (a
// shared store leaves the NATS connection to its owner). Answers kept after Close are not
// written: a repeat of theirs is rebuilt from the log.
func (s *IdempotencyStore) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.stop)
		<-s.stopped
	})
	return s.answers.close()
}

// Flush returns once the answers kept before it was called are written (or their write failed
// and is retried later), or when ctx ends.
func (s *IdempotencyStore) Flush(ctx context.Context) error {
	done := make(chan struct{})
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return errStoreClosed
	}
	s.flushes = append(s.flushes, done)
	s.mu.Unlock()
	s.signal()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("flush idempotent answers: %w", ctx.Err())
	}
}

// Sweep deletes the answers older than the TTL and returns how many it deleted. The file
// store sweeps itself every 10 minutes; the bucket drops old entries by its own TTL, so Sweep
// only makes that happen earlier. It writes the answers in memory first.
func (s *IdempotencyStore) Sweep() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		return 0, err
	}
	return s.answers.sweep(ctx)
}

// Len returns the number of kept answers, expired ones not yet swept included. It writes the
// answers in memory first.
func (s *IdempotencyStore) Len() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		return 0, err
	}
	return s.answers.count(ctx)
}

// idemClaim is one request's hold on its scope in this process. keep hands its answer to the
// writer; done lets the next repeat in.
type idemClaim struct {
	s      *IdempotencyStore
	scope  string
	unlock func()
}

// begin takes the scope for a request. It returns the answer kept for the scope (found: the
// caller replays it or refuses the request), or else a claim under which the request runs.
// Either way the caller calls done when it has answered. It writes nothing.
func (s *IdempotencyStore) begin(ctx context.Context, scope string) (*idemClaim, storedAnswer, bool, error) {
	unlock, err := s.locks.lock(ctx, scope)
	if err != nil {
		return nil, storedAnswer{}, false, err
	}
	s.mu.Lock()
	a, found := s.unwritten[scope]
	s.mu.Unlock()
	if !found {
		if a, found, err = s.answers.lookup(ctx, scope); err != nil {
			unlock()
			return nil, storedAnswer{}, false, err
		}
	}
	if found && expired(a, s.clock.Now(), IdempotencyTTL) {
		found = false
	}
	return &idemClaim{s: s, scope: scope, unlock: unlock}, a, found, nil
}

// keep stamps the request's answer and hands it to the writer. From now on this instance
// replays it; the others once the writer has stored it.
func (c *idemClaim) keep(a storedAnswer) {
	a.StoredAt = c.s.clock.Now()
	s := c.s
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.unwritten[c.scope] = a
	s.queue = append(s.queue, scopedAnswer{scope: c.scope, a: a})
	s.mu.Unlock()
	s.signal()
}

// done lets the next repeat of the scope in this process look it up.
func (c *idemClaim) done() { c.unlock() }

func (s *IdempotencyStore) signal() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// writeLoop writes kept answers in groups: it takes every answer waiting when a write starts,
// so a lone answer is written at once and the answers kept during a write share the next one.
// A group whose write failed stays in memory (this instance still replays it) and is tried
// again after writeRetryDelay, writeAttempts times in all; then it is given up and logged: a
// repeat of its keys is rebuilt from the log.
func (s *IdempotencyStore) writeLoop() {
	defer close(s.stopped)
	var retry <-chan time.Time
	for {
		stopping := false
		select {
		case <-s.wake:
		case <-retry:
		case <-s.stop:
			stopping = true
		}
		retry = nil
		s.mu.Lock()
		group := s.queue
		if len(group) > maxWriteGroup {
			group = group[:maxWriteGroup]
		}
		s.queue = s.queue[len(group):]
		flushes := s.flushes
		if len(s.queue) == 0 {
			s.flushes = nil
		} else {
			flushes = nil // they wait for the rest of the queue
			s.signal()
		}
		s.mu.Unlock()
		failed := s.write(group)
		if len(failed) > 0 {
			s.mu.Lock()
			s.queue = append(failed, s.queue...)
			s.mu.Unlock()
			retry = time.After(writeRetryDelay)
		}
		for _, f := range flushes {
			close(f)
		}
		if stopping {
			return
		}
	}
}

// write stores a group and forgets the answers it stored from memory. It returns the answers
// to try again.
func (s *IdempotencyStore) write(group []scopedAnswer) (again []scopedAnswer) {
	if len(group) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
	err := s.answers.putAll(ctx, group)
	cancel()
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range group {
		if err != nil && q.attempts+1 < writeAttempts && !s.closed {
			q.attempts++
			again = append(again, q)
			continue
		}
		if cur, ok := s.unwritten[q.scope]; ok && cur.StoredAt.Equal(q.a.StoredAt) {
			delete(s.unwritten, q.scope)
		}
	}
	if err != nil {
		slog.Default().Warn("storing idempotent answers failed", "answers", len(group), "retried", len(again), "error", err)
	}
	return again
}

// boltAnswers keeps answers in a bbolt file of this process.
type boltAnswers struct {
	db    *bolt.DB
	clock app.Clock
	ttl   time.Duration

	// sweepBatch bounds the deletions of one sweep transaction.
	sweepBatch int

	stop chan struct{}
	wg   sync.WaitGroup // the sweeper
	once sync.Once
}

// putRequest is one answer on its way to the file.
type putRequest struct {
	scope    string
	storedAt time.Time
	val      []byte
}

// maxWriteGroup bounds the answers written together.
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
	return newIdempotencyStore(b, clock), nil
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
	b := &boltAnswers{db: db, clock: clock, ttl: IdempotencyTTL, sweepBatch: 10_000, stop: make(chan struct{})}
	b.wg.Add(1)
	go b.sweepLoop()
	return b, nil
}

// close stops the sweeper and closes the file.
func (b *boltAnswers) close() error {
	b.once.Do(func() { close(b.stop) })
	b.wg.Wait()
	return b.db.Close()
}

func (b *boltAnswers) putAll(_ context.Context, answers []scopedAnswer) error {
	group := make([]putRequest, len(answers))
	for i, q := range answers {
		val, err := json.Marshal(q.a)
		if err != nil {
			return fmt.Errorf("encode idempotent answer: %w", err)
		}
		group[i] = putRequest{scope: q.scope, storedAt: q.a.StoredAt, val: val}
	}
	return b.commit(group)
}

func (b *boltAnswers) sweep(context.Context) (int, error) { return b.sweepExpired() }

func (b *boltAnswers) lookup(_ context.Context, scope string) (storedAnswer, bool, error) {
	return b.get(scope)
}

// count returns the number of answers in the file, expired ones not yet swept included.
func (b *boltAnswers) count(context.Context) (int, error) {
	var n int
	err := b.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketAnswers).Stats().KeyN
		return nil
	})
	return n, err
}

// commit writes a group of answers in one transaction (one fsync).
func (b *boltAnswers) commit(group []putRequest) error {
	err := b.db.Update(func(tx *bolt.Tx) error {
		for _, r := range group {
			if err := writeAnswer(tx, r); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write idempotency store: %w", err)
	}
	return nil
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

// put keeps the answer of a scope (replacing an expired one), stamped now.
func (b *boltAnswers) put(scope string, a storedAnswer) error {
	a.StoredAt = b.clock.Now()
	return b.putAll(context.Background(), []scopedAnswer{{scope: scope, a: a}})
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
