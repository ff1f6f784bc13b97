package idemstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/booking-engine/booking/app"
)

// sweepInterval is how often expired answers are deleted from the file. Expiry itself is
// exact: a lookup ignores an answer older than the TTL whether or not it was swept yet.
const sweepInterval = 10 * time.Minute

var (
	bucketAnswers = []byte("answers") // scope → Answer (JSON)
	bucketByTime  = []byte("by_time") // 8-byte big-endian unix nanos + scope → nothing
)

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

// Open opens (or creates) a store in the bbolt file at path and starts sweeping expired
// answers every 10 minutes. Its keys hold in this process and across its restarts, not across
// instances side by side: those need OpenShared. clock may be nil (the system clock). Close it
// when done.
func Open(path string, clock app.Clock) (*Store, error) {
	b, err := openBoltAnswers(path, clock)
	if err != nil {
		return nil, err
	}
	return newStore(b, clock), nil
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
	b := &boltAnswers{db: db, clock: clock, ttl: TTL, sweepBatch: 10_000, stop: make(chan struct{})}
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

func (b *boltAnswers) lookup(_ context.Context, scope string) (Answer, bool, error) {
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
func (b *boltAnswers) get(scope string) (Answer, bool, error) {
	var a Answer
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
func (b *boltAnswers) put(scope string, a Answer) error {
	a.StoredAt = b.clock.Now()
	return b.putAll(context.Background(), []scopedAnswer{{scope: scope, a: a}})
}

func decodeAnswer(v []byte) (Answer, bool) {
	var a Answer
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
