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

var (
	bucketAnswers = []byte("answers") // scope → storedAnswer (JSON)
	bucketByTime  = []byte("by_time") // 8-byte big-endian unix nanos + scope → nothing
)

// IdempotencyStore keeps the answers to requests that carried an Idempotency-Key, in a bbolt
// file, so that a repeat gets the first answer even after a restart. It also serialises
// requests of one key within this process, so that concurrent repeats have one effect.
//
// Scope: one file per process. API instances side by side each keep their own keys, so a
// retry that lands on another instance is executed again; such deployments need sticky
// routing by user until the store moves to a shared place (a JetStream key-value bucket).
type IdempotencyStore struct {
	db    *bolt.DB
	clock app.Clock
	ttl   time.Duration
	locks keyLocks

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

// storedAnswer is one kept answer. Fingerprint identifies the request it answered.
type storedAnswer struct {
	Fingerprint []byte    `json:"fp"`
	Status      int       `json:"status"`
	ContentType string    `json:"contentType"`
	Body        []byte    `json:"body"`
	StoredAt    time.Time `json:"storedAt"`
}

// OpenIdempotencyStore opens (or creates) the store at path and starts sweeping expired
// answers every 10 minutes. clock may be nil (the system clock). Close it when done.
func OpenIdempotencyStore(path string, clock app.Clock) (*IdempotencyStore, error) {
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
	s := &IdempotencyStore{db: db, clock: clock, ttl: IdempotencyTTL, sweepBatch: 10_000,
		writes: make(chan putRequest), stop: make(chan struct{})}
	s.wg.Add(2)
	go s.sweepLoop()
	go s.writeLoop()
	return s, nil
}

// Close stops the sweeper and the writer and closes the file. Answers being written finish
// first; later writes fail.
func (s *IdempotencyStore) Close() error {
	s.once.Do(func() { close(s.stop) })
	s.wg.Wait()
	return s.db.Close()
}

// writeLoop commits answers in groups: it takes every answer waiting when a commit starts,
// so a lone answer is committed at once and answers that arrive during a commit share the
// next one (and its fsyncs). This is what lets keyed requests scale with concurrency.
func (s *IdempotencyStore) writeLoop() {
	defer s.wg.Done()
	for {
		var group []putRequest
		select {
		case r := <-s.writes:
			group = append(group, r)
		case <-s.stop:
			return
		}
	drain:
		for len(group) < maxWriteGroup {
			select {
			case r := <-s.writes:
				group = append(group, r)
			default:
				break drain
			}
		}
		err := s.db.Update(func(tx *bolt.Tx) error {
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

func (s *IdempotencyStore) sweepLoop() {
	defer s.wg.Done()
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
			if _, err := s.Sweep(); err != nil {
				slog.Default().Warn("idempotency sweep failed", "error", err)
			}
		}
	}
}

// Sweep deletes the answers older than the TTL and returns how many it deleted. It works in
// transactions of bounded size, so that a large backlog never builds one huge commit.
func (s *IdempotencyStore) Sweep() (int, error) {
	perTx := s.sweepBatch
	cutoff := s.clock.Now().Add(-s.ttl)
	limit := timeKey(cutoff, "")
	total := 0
	for {
		n := 0
		err := s.db.Update(func(tx *bolt.Tx) error {
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

// Len returns the number of answers in the file, expired ones not yet swept included.
func (s *IdempotencyStore) Len() (int, error) {
	var n int
	err := s.db.View(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketAnswers).Stats().KeyN
		return nil
	})
	return n, err
}

// get returns the live answer of a scope, if any.
func (s *IdempotencyStore) get(scope string) (storedAnswer, bool, error) {
	var a storedAnswer
	var ok bool
	err := s.db.View(func(tx *bolt.Tx) error {
		a, ok = decodeAnswer(tx.Bucket(bucketAnswers).Get([]byte(scope)))
		return nil
	})
	if err != nil {
		return a, false, fmt.Errorf("read idempotency store: %w", err)
	}
	if ok && a.StoredAt.Before(s.clock.Now().Add(-s.ttl)) {
		return a, false, nil
	}
	return a, ok, nil
}

// put keeps the answer of a scope (replacing an expired one) and returns once it is on disk.
func (s *IdempotencyStore) put(scope string, a storedAnswer) error {
	a.StoredAt = s.clock.Now()
	val, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("encode idempotent answer: %w", err)
	}
	r := putRequest{scope: scope, storedAt: a.StoredAt, val: val, done: make(chan error, 1)}
	select {
	case s.writes <- r:
	case <-s.stop:
		return errStoreClosed
	}
	if err := <-r.done; err != nil {
		return fmt.Errorf("write idempotency store: %w", err)
	}
	return nil
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
