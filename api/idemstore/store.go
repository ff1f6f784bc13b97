// Package idemstore keeps the answers to requests that carried an Idempotency-Key: in a
// JetStream key-value bucket every instance shares, or in a bbolt file of one process, behind
// one Store whose writer stores the answers of many requests together after their responses.
// The HTTP side (scopes, fingerprints, replays, status codes) is the api package's.
package idemstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/booking-engine/booking/app"
)

// TTL is how long an answer is kept for its Idempotency-Key (the contract asks
// for at least 24 hours).
const TTL = 24 * time.Hour

// writeTimeout bounds one write of a group of answers by the writer.
const writeTimeout = 5 * time.Second

// writeRetryDelay is how long the writer waits before it writes again a group whose write
// failed, and writeAttempts how often it tries before it gives the group up.
const (
	writeRetryDelay = time.Second
	writeAttempts   = 5
)

// maxWriteGroup bounds the answers written together.
const maxWriteGroup = 1000

// errStoreClosed reports a write after Close.
var errStoreClosed = errors.New("idempotency store closed")

// Store keeps the answers to requests that carried an Idempotency-Key, so that a
// repeat gets the first answer, and makes repeats of one key have one effect.
//
// A key's scope is the method, the route pattern, the request's user and the key. Answers are
// kept TTL (24 h), and only for requests whose command ran and answered below 500.
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
//   - OpenShared (what `booking serve` uses) keeps the answers in a JetStream
//     key-value bucket that every instance of the service shares, so a repeat that lands on
//     another instance is answered too, and they survive restarts. On a single server the
//     bucket persists asynchronously: its writes cost no fsync. If the bucket cannot be
//     read, a keyed request is 503 and does not run.
//   - Open keeps them in a bbolt file of this process: restarts are covered,
//     other instances are not (tests and single-process tools).
//
// Either way, repeats within one process queue on an in-process lock of the scope, so a
// repeat waits for the first request's answer instead of running beside it.
type Store struct {
	locks   keyLocks
	answers answerBackend
	clock   app.Clock

	mu        sync.Mutex
	unwritten map[string]Answer // kept answers the backend does not hold yet
	queue     []scopedAnswer    // what the writer is to write next
	flushes   []chan struct{}   // closed when the writer has written what was queued before
	closed    bool
	wake      chan struct{} // one slot: the writer has work
	stop      chan struct{}
	stopped   chan struct{}
	closeOnce sync.Once
}

// answerBackend keeps the answers of scopes for the store's writer.
type answerBackend interface {
	// lookup returns the answer of scope, if any, expired or not.
	lookup(ctx context.Context, scope string) (Answer, bool, error)
	// putAll stores answers (StoredAt stamped), replacing what their scopes held.
	putAll(ctx context.Context, answers []scopedAnswer) error
	// sweep deletes expired answers and returns how many.
	sweep(ctx context.Context) (int, error)
	// count returns the number of kept answers, expired ones not yet swept included.
	count(ctx context.Context) (int, error)
	close() error
}

// Answer is one kept answer. Fingerprint identifies the request it answered (the caller
// computes it; the store only keeps it); Keep stamps StoredAt.
type Answer struct {
	Fingerprint []byte    `json:"fp"`
	Status      int       `json:"status"`
	ContentType string    `json:"contentType"`
	Body        []byte    `json:"body"`
	StoredAt    time.Time `json:"storedAt"`
}

// scopedAnswer is an answer on its way to the backend.
type scopedAnswer struct {
	scope    string
	a        Answer
	attempts int
}

func newStore(b answerBackend, clock app.Clock) *Store {
	if clock == nil {
		clock = app.SystemClock{}
	}
	s := &Store{answers: b, clock: clock, unwritten: map[string]Answer{},
		wake: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	go s.writeLoop()
	return s
}

// Close writes the answers still in memory, stops the writer and closes the backend (a
// shared store leaves the NATS connection to its owner). Answers kept after Close are not
// written: a repeat of theirs is rebuilt from the log.
func (s *Store) Close() error {
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
func (s *Store) Flush(ctx context.Context) error {
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
func (s *Store) Sweep() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		return 0, err
	}
	return s.answers.sweep(ctx)
}

// Len returns the number of kept answers, expired ones not yet swept included. It writes the
// answers in memory first.
func (s *Store) Len() (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Flush(ctx); err != nil {
		return 0, err
	}
	return s.answers.count(ctx)
}

// Claim is one request's hold on its scope in this process. Keep hands its answer to the
// writer; Done lets the next repeat in.
type Claim struct {
	s      *Store
	scope  string
	unlock func()
}

// Begin takes the scope for a request. It returns the answer kept for the scope (found: the
// caller replays it or refuses the request), or else a claim under which the request runs.
// Either way the caller calls Done when it has answered. It writes nothing.
func (s *Store) Begin(ctx context.Context, scope string) (*Claim, Answer, bool, error) {
	unlock, err := s.locks.lock(ctx, scope)
	if err != nil {
		return nil, Answer{}, false, err
	}
	s.mu.Lock()
	a, found := s.unwritten[scope]
	s.mu.Unlock()
	if !found {
		if a, found, err = s.answers.lookup(ctx, scope); err != nil {
			unlock()
			return nil, Answer{}, false, err
		}
	}
	if found && expired(a, s.clock.Now(), TTL) {
		found = false
	}
	return &Claim{s: s, scope: scope, unlock: unlock}, a, found, nil
}

// Keep stamps the request's answer and hands it to the writer. From now on this instance
// replays it; the others once the writer has stored it.
func (c *Claim) Keep(a Answer) {
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

// Done lets the next repeat of the scope in this process look it up.
func (c *Claim) Done() { c.unlock() }

func (s *Store) signal() {
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
func (s *Store) writeLoop() {
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
func (s *Store) write(group []scopedAnswer) (again []scopedAnswer) {
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

// expired reports whether an answer is past the TTL: exactly TTL old is still live.
func expired(a Answer, now time.Time, ttl time.Duration) bool {
	return a.StoredAt.Before(now.Add(-ttl))
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
