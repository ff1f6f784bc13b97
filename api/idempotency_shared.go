package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/booking-engine/booking/app"
	"github.com/booking-engine/booking/eventstore"
)

// IdempotencyBucket is the JetStream key-value bucket of the shared idempotency store. Its
// keys are the hex SHA-256 of the scopes (a scope holds characters a key may not), its values
// kvRecords.
const IdempotencyBucket = "idempotency"

// idempotencyBucketTTL is the bucket's own age limit. It is an hour past IdempotencyTTL so
// that JetStream never drops an answer that is still live; reads compare StoredAt with
// IdempotencyTTL, which makes expiry exact whatever the bucket has not dropped yet.
const idempotencyBucketTTL = IdempotencyTTL + time.Hour

// claimAbandonAfter is the age past which a pending claim is taken to belong to a request
// that died (its process crashed or lost the bucket) and may be taken over. It is well past
// the request timeout (default 5 s) and clock skew between instances, so a request that is
// merely slow keeps its claim.
const claimAbandonAfter = 30 * time.Second

// claimPollInterval is how often a request waiting on another's claim looks at it again even
// though no change arrived, to notice that the claim became abandoned.
const claimPollInterval = 250 * time.Millisecond

// kvRecord is the value of a scope in the bucket: a pending claim while the first request
// runs, then its answer.
type kvRecord struct {
	// Pending marks a claim: Owner (an IdempotencyStore) runs the request since StartedAt.
	Pending   bool      `json:"pending,omitempty"`
	Owner     string    `json:"owner,omitempty"`
	StartedAt time.Time `json:"startedAt,omitzero"`
	// Answer is the kept answer once the request ended.
	Answer *storedAnswer `json:"answer,omitempty"`
}

// kvAnswers keeps answers in a JetStream key-value bucket shared by every instance.
type kvAnswers struct {
	kv    jetstream.KeyValue
	nc    *nats.Conn
	clock app.Clock
	ttl   time.Duration
	// owner names this instance in its claims: a claim of its own found under the scope's
	// in-process lock is a leftover (its release failed, or the instance's previous run
	// crashed) and is taken over at once.
	owner        string
	abandonAfter time.Duration
	pollEvery    time.Duration
}

// SharedIdempotencyOptions configure OpenSharedIdempotencyStore.
type SharedIdempotencyOptions struct {
	// Replicas of the bucket on a NATS cluster (1 when 0, and on a server that is not part of
	// a cluster).
	Replicas int
	// Clock stamps answers and claims; nil: the system clock.
	Clock app.Clock
	// InstanceFile keeps the name this instance writes in its claims (created on first use),
	// so that an instance restarted after a crash takes over the claims it left at once:
	// its clients' retries run instead of waiting claimAbandonAfter. It must belong to one
	// running instance at a time, as a file of the data dir does. "": a new name every run.
	InstanceFile string
}

// OpenSharedIdempotencyStore returns a store whose keys hold across every instance of the
// service on js: it creates (or updates to this configuration) the IdempotencyBucket with
// file storage and a TTL of 25 h. When the bucket cannot be reached, keyed requests fail with
// eventstore.ErrUnavailable (503) rather than run unprotected. Close it when done (it leaves
// the connection open).
func OpenSharedIdempotencyStore(ctx context.Context, js jetstream.JetStream, opts SharedIdempotencyOptions) (*IdempotencyStore, error) {
	owner, err := instanceName(opts.InstanceFile)
	if err != nil {
		return nil, err
	}
	b, err := openKVAnswers(ctx, js, IdempotencyBucket, opts.Replicas, opts.Clock)
	if err != nil {
		return nil, err
	}
	b.owner = owner
	return &IdempotencyStore{answers: b}, nil
}

func openKVAnswers(ctx context.Context, js jetstream.JetStream, bucket string, replicas int, clock app.Clock) (*kvAnswers, error) {
	if clock == nil {
		clock = app.SystemClock{}
	}
	if replicas < 1 || js.Conn().ConnectedClusterName() == "" {
		replicas = 1
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "answers to requests with an Idempotency-Key (booking API)",
		History:     1,
		TTL:         idempotencyBucketTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("idempotency bucket %s: %w: %w", bucket, eventstore.ErrUnavailable, err)
	}
	return &kvAnswers{kv: kv, nc: js.Conn(), clock: clock, ttl: IdempotencyTTL,
		owner: newInstanceName(), abandonAfter: claimAbandonAfter, pollEvery: claimPollInterval}, nil
}

// instanceName returns the name kept in path, creating the file with a new name when it does
// not exist or holds none; "" gives a new name.
func instanceName(path string) (string, error) {
	if path == "" {
		return newInstanceName(), nil
	}
	b, err := os.ReadFile(path)
	if err == nil {
		if name := strings.TrimSpace(string(b)); validInstanceName(name) {
			return name, nil
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", fmt.Errorf("idempotency instance name: %w", err)
	}
	name := newInstanceName()
	// Written aside and renamed, so a crash never leaves a torn name behind.
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(name+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("idempotency instance name: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return "", fmt.Errorf("idempotency instance name: %w", err)
	}
	return name, nil
}

func newInstanceName() string {
	var id [16]byte
	_, _ = rand.Read(id[:]) // never fails (crypto/rand)
	return hex.EncodeToString(id[:])
}

func validInstanceName(name string) bool {
	if len(name) != 32 {
		return false
	}
	_, err := hex.DecodeString(name)
	return err == nil
}

// kvKey is the bucket key of a scope.
func kvKey(scope string) string {
	sum := sha256.Sum256([]byte(scope))
	return hex.EncodeToString(sum[:])
}

// claim reads the scope's record and acts on it until it has an answer or a claim:
//
//   - none: create a claim — Create fails if another instance created one first, and the
//     loop reads theirs;
//   - a live answer: return it;
//   - a claim of another instance's running request: wait until the record changes (a
//     watch) or the claim grows old enough to be abandoned (re-read every pollEvery);
//   - an expired answer, an abandoned claim, or a record it cannot read: take it over with a
//     compare-and-set on its revision, so two instances never both take it.
//
// Waiting ends with ctx (the request's deadline).
func (b *kvAnswers) claim(ctx context.Context, scope string) (storedAnswer, bool, uint64, error) {
	key := kvKey(scope)
	var w jetstream.KeyWatcher
	var tick *time.Ticker
	defer func() {
		if w != nil {
			_ = w.Stop()
		}
		if tick != nil {
			tick.Stop()
		}
	}()
	create := true // most keys are new: try to claim before reading
	for {
		if err := b.ready(); err != nil {
			return storedAnswer{}, false, 0, err
		}
		if create {
			rev, err := b.kv.Create(ctx, key, b.pending())
			if err == nil {
				return storedAnswer{}, false, rev, nil
			}
			if !casConflict(err) {
				return storedAnswer{}, false, 0, b.fail(ctx, "claim", err)
			}
		}
		e, err := b.kv.Get(ctx, key)
		if errors.Is(err, jetstream.ErrKeyNotFound) { // released or dropped since
			create = true
			continue
		}
		if err != nil {
			return storedAnswer{}, false, 0, b.fail(ctx, "read", err)
		}
		create = false
		rec, ok := decodeRecord(e.Value())
		now := b.clock.Now()
		switch {
		case ok && rec.Answer != nil && !expired(*rec.Answer, now, b.ttl):
			return *rec.Answer, true, 0, nil
		case ok && rec.Pending && rec.Owner != b.owner && now.Sub(rec.StartedAt) < b.abandonAfter:
			if w == nil {
				if w, err = b.kv.Watch(ctx, key, jetstream.MetaOnly()); err != nil {
					w = nil
					return storedAnswer{}, false, 0, b.fail(ctx, "watch", err)
				}
				tick = time.NewTicker(b.pollEvery)
			}
			if err := awaitChange(ctx, w, tick, e.Revision()); err != nil {
				return storedAnswer{}, false, 0, err
			}
			continue
		}
		rev, err := b.kv.Update(ctx, key, b.pending(), e.Revision())
		if err == nil {
			return storedAnswer{}, false, rev, nil
		}
		if !casConflict(err) {
			return storedAnswer{}, false, 0, b.fail(ctx, "take over", err)
		}
	}
}

// awaitChange returns when the watched key moves past revision rev or tick fires. A watcher
// that ends (its connection went) returns too: the next read tells what happened.
func awaitChange(ctx context.Context, w jetstream.KeyWatcher, tick *time.Ticker, rev uint64) error {
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok || (e != nil && e.Revision() > rev) {
				return nil
			}
		case <-tick.C:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("wait for a request with the same Idempotency-Key on another instance: %w", ctx.Err())
		}
	}
}

// keep replaces the claim with the answer. It fails if the claim was taken over meanwhile
// (this request outlived claimAbandonAfter): the other request's record stays.
func (b *kvAnswers) keep(ctx context.Context, scope string, rev uint64, a storedAnswer) error {
	a.StoredAt = b.clock.Now()
	val, err := json.Marshal(kvRecord{Answer: &a})
	if err != nil {
		return fmt.Errorf("encode idempotent answer: %w", err)
	}
	if err := b.ready(); err != nil {
		return err
	}
	if _, err := b.kv.Update(ctx, kvKey(scope), val, rev); err != nil {
		if casConflict(err) {
			return fmt.Errorf("keep idempotent answer: the claim was taken over after %s: %w", b.abandonAfter, err)
		}
		return b.fail(ctx, "keep answer", err)
	}
	return nil
}

// release deletes the claim if it is still this request's.
func (b *kvAnswers) release(ctx context.Context, scope string, rev uint64) error {
	if err := b.ready(); err != nil {
		return err
	}
	err := b.kv.Delete(ctx, kvKey(scope), jetstream.LastRevision(rev))
	if err != nil && !casConflict(err) {
		return b.fail(ctx, "release claim", err)
	}
	return nil
}

// sweep deletes expired answers and abandoned claims, each only at the revision it read.
func (b *kvAnswers) sweep(ctx context.Context) (int, error) {
	now := b.clock.Now()
	n := 0
	err := b.each(ctx, func(e jetstream.KeyValueEntry, rec kvRecord, ok bool) error {
		stale := !ok || (rec.Answer != nil && expired(*rec.Answer, now, b.ttl)) ||
			(rec.Pending && now.Sub(rec.StartedAt) >= b.abandonAfter)
		if !stale {
			return nil
		}
		err := b.kv.Delete(ctx, e.Key(), jetstream.LastRevision(e.Revision()))
		switch {
		case err == nil:
			n++
		case !casConflict(err): // a conflict: the key changed since, so it is not stale
			return b.fail(ctx, "sweep", err)
		}
		return nil
	})
	return n, err
}

// count returns the number of answers in the bucket, expired ones not yet swept included.
func (b *kvAnswers) count(ctx context.Context) (int, error) {
	n := 0
	err := b.each(ctx, func(_ jetstream.KeyValueEntry, rec kvRecord, ok bool) error {
		if ok && rec.Answer != nil {
			n++
		}
		return nil
	})
	return n, err
}

// each calls fn with every record in the bucket.
func (b *kvAnswers) each(ctx context.Context, fn func(e jetstream.KeyValueEntry, rec kvRecord, ok bool) error) error {
	w, err := b.kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return b.fail(ctx, "list", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case e, more := <-w.Updates():
			if !more {
				return b.fail(ctx, "list", errors.New("watch ended"))
			}
			if e == nil { // the end of what the bucket held when the watch began
				return nil
			}
			rec, ok := decodeRecord(e.Value())
			if err := fn(e, rec, ok); err != nil {
				return err
			}
		case <-ctx.Done():
			return fmt.Errorf("idempotency store: list: %w", ctx.Err())
		}
	}
}

// close leaves the connection to its owner.
func (b *kvAnswers) close() error { return nil }

func (b *kvAnswers) pending() []byte {
	val, _ := json.Marshal(kvRecord{Pending: true, Owner: b.owner, StartedAt: b.clock.Now()}) // cannot fail
	return val
}

// ready fails fast while the connection is down: a KV request would wait in the reconnect
// buffer until the request's deadline to learn what is already known.
func (b *kvAnswers) ready() error {
	switch st := b.nc.Status(); st {
	case nats.CONNECTED, nats.DRAINING_PUBS:
		return nil
	default:
		return fmt.Errorf("idempotency store: %w: connection %s", eventstore.ErrUnavailable, st)
	}
}

// fail wraps a bucket error: the request's own deadline when it ended, else ErrUnavailable.
func (b *kvAnswers) fail(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		return fmt.Errorf("idempotency store: %s: %w: %w", op, ctx.Err(), err)
	}
	return fmt.Errorf("idempotency store: %s: %w: %w", op, eventstore.ErrUnavailable, err)
}

// casConflict reports a compare-and-set that lost: the key exists (Create) or moved past the
// revision (Update, Delete). Replicated streams report it with another error code than
// single-copy ones, which not every KV call maps to its sentinel.
func casConflict(err error) bool {
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return true
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

func decodeRecord(v []byte) (kvRecord, bool) {
	var rec kvRecord
	if json.Unmarshal(v, &rec) != nil || (!rec.Pending && rec.Answer == nil) {
		return kvRecord{}, false
	}
	return rec, true
}
