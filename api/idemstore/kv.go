package idemstore

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/booking-engine/booking/app"
	"github.com/booking-engine/booking/eventstore"
)

// Bucket is the JetStream key-value bucket of the shared store. Its keys are the hex SHA-256
// of the scopes (a scope holds characters a key may not), its values kvRecords.
const Bucket = "idempotency"

// bucketTTL is the bucket's own age limit. It is an hour past TTL so that JetStream never
// drops an answer that is still live; reads compare StoredAt with TTL, which makes expiry
// exact whatever the bucket has not dropped yet.
const bucketTTL = TTL + time.Hour

// kvRecord is the value of a scope in the bucket: its answer. Pending marks the claims that
// earlier versions wrote before a request ran; a bucket may still hold some, which count as
// no answer and are swept.
type kvRecord struct {
	Pending bool    `json:"pending,omitempty"`
	Answer  *Answer `json:"answer,omitempty"`
}

// kvAnswers keeps answers in a JetStream key-value bucket shared by every instance.
type kvAnswers struct {
	kv     jetstream.KeyValue
	js     jetstream.JetStream
	nc     *nats.Conn
	clock  app.Clock
	ttl    time.Duration
	prefix string // the subject of a key is prefix + key
	// lookups reads the keys that concurrent requests look up together.
	lookups *kvLookups
}

// SharedOptions configure OpenShared.
type SharedOptions struct {
	// Replicas of the bucket on a NATS cluster (1 when 0, and on a server that is not part of
	// a cluster).
	Replicas int
	// Clock stamps answers; nil: the system clock.
	Clock app.Clock
	// Bucket names the bucket; "": Bucket. Tests that share one JetStream server name their
	// own, so that their keys stay apart.
	Bucket string
}

// OpenShared returns a store whose keys hold across every instance of the service on js: it
// creates (or updates to this configuration) the bucket with file storage and a TTL of 25 h.
// When the bucket cannot be read, keyed requests fail with eventstore.ErrUnavailable (the
// api's 503) rather than run unprotected. Close it when done (it leaves the connection open).
func OpenShared(ctx context.Context, js jetstream.JetStream, opts SharedOptions) (*Store, error) {
	bucket := opts.Bucket
	if bucket == "" {
		bucket = Bucket
	}
	b, err := openKVAnswers(ctx, js, bucket, opts.Replicas, opts.Clock)
	if err != nil {
		return nil, err
	}
	return newStore(b, opts.Clock), nil
}

// openKVAnswers creates or updates the bucket's stream itself rather than through
// CreateOrUpdateKeyValue, because that cannot set the persist mode: on a single replica the
// stream persists asynchronously (no fsync per answer, whatever the server's --fsync), since
// an answer lost with the machine is rebuilt from the log. A replicated stream may not
// persist asynchronously; its Raft log already batches. A stream created otherwise (by an
// earlier version) keeps its mode: JetStream cannot change it.
func openKVAnswers(ctx context.Context, js jetstream.JetStream, bucket string, replicas int, clock app.Clock) (*kvAnswers, error) {
	if clock == nil {
		clock = app.SystemClock{}
	}
	if replicas < 1 || js.Conn().ConnectedClusterName() == "" {
		replicas = 1
	}
	cfg := kvStreamConfig(bucket, replicas)
	if replicas == 1 {
		cfg.PersistMode = jetstream.AsyncPersistMode
	}
	// A start tries again what is unavailable (a server or cluster not ready yet), and fails
	// at once on a refusal (a stream of that name the server will not change to this).
	setupErr := func(err error) error {
		return eventstore.ClassifySetup("idempotency bucket "+bucket, err)
	}
	st, err := js.Stream(ctx, cfg.Name)
	switch {
	case errors.Is(err, jetstream.ErrStreamNotFound):
		_, err = js.CreateStream(ctx, cfg)
	case err == nil:
		cfg.PersistMode = st.CachedInfo().Config.PersistMode
		_, err = js.UpdateStream(ctx, cfg)
	}
	if err != nil {
		return nil, setupErr(err)
	}
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		return nil, setupErr(err)
	}
	prefix := "$KV." + bucket + "."
	lookups := &kvLookups{getter: eventstore.NewDirectGetter(js.Conn()), kv: kv, stream: cfg.Name,
		prefix: prefix}
	return &kvAnswers{kv: kv, js: js, nc: js.Conn(), clock: clock, ttl: TTL, prefix: prefix, lookups: lookups}, nil
}

// kvStreamConfig is the stream of a key-value bucket with one value per key, as
// CreateKeyValue makes it.
func kvStreamConfig(bucket string, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              "KV_" + bucket,
		Description:       "answers to requests with an Idempotency-Key (booking API)",
		Subjects:          []string{"$KV." + bucket + ".>"},
		MaxMsgsPerSubject: 1,
		MaxBytes:          -1,
		MaxAge:            bucketTTL,
		MaxMsgSize:        -1,
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		AllowRollup:       true,
		DenyDelete:        true,
		Duplicates:        2 * time.Minute,
		MaxMsgs:           -1,
		MaxConsumers:      -1,
		AllowDirect:       true,
		Discard:           jetstream.DiscardNew,
	}
}

// kvKey is the bucket key of a scope.
func kvKey(scope string) string {
	sum := sha256.Sum256([]byte(scope))
	return hex.EncodeToString(sum[:])
}

// lookup reads the scope's answer; a pending claim of an earlier version counts as none.
func (b *kvAnswers) lookup(ctx context.Context, scope string) (Answer, bool, error) {
	if err := b.ready(); err != nil {
		return Answer{}, false, err
	}
	v, found, err := b.lookups.get(ctx, kvKey(scope))
	if err != nil {
		return Answer{}, false, b.fail(ctx, "read", err)
	}
	if !found {
		return Answer{}, false, nil
	}
	rec, ok := decodeRecord(v)
	if !ok || rec.Answer == nil {
		return Answer{}, false, nil
	}
	return *rec.Answer, true, nil
}

// putAll publishes the answers and waits for the acknowledgement of the last one only: the
// stream stores a connection's messages in order, so its acknowledgement says the server has
// taken every one before it, and each acknowledgement less is a message less for the server
// to make and for this process to read. An answer the server refused on its own is not
// noticed: a lost answer is rebuilt from the log.
func (b *kvAnswers) putAll(ctx context.Context, answers []scopedAnswer) error {
	if err := b.ready(); err != nil {
		return err
	}
	for i, q := range answers {
		val, err := json.Marshal(kvRecord{Answer: &q.a})
		if err != nil {
			return fmt.Errorf("encode idempotent answer: %w", err)
		}
		subject := b.prefix + kvKey(q.scope)
		if i < len(answers)-1 {
			if err := b.nc.Publish(subject, val); err != nil {
				return b.fail(ctx, "keep answers", err)
			}
			continue
		}
		f, err := b.js.PublishAsync(subject, val)
		if err != nil {
			return b.fail(ctx, "keep answers", err)
		}
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return b.fail(ctx, "keep answers", err)
		case <-ctx.Done():
			return b.fail(ctx, "keep answers", ctx.Err())
		}
	}
	return nil
}

// sweep deletes expired answers and the claims of earlier versions, each only at the
// revision it read.
func (b *kvAnswers) sweep(ctx context.Context) (int, error) {
	now := b.clock.Now()
	n := 0
	err := b.each(ctx, func(e jetstream.KeyValueEntry, rec kvRecord, ok bool) error {
		stale := !ok || rec.Answer == nil || expired(*rec.Answer, now, b.ttl)
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
