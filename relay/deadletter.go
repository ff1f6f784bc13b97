package relay

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrDeadLetterNotFound reports a dead-letter ID that is not (or no longer) on the list.
var ErrDeadLetterNotFound = errors.New("relay: dead letter not found")

// DeadLetterBucket is the JetStream key-value bucket that holds the dead letters, one key per
// fact. It lives next to the event streams rather than in a file of the data dir so that every
// instance of the service sees one list, and it is as durable as the events themselves.
const DeadLetterBucket = "relay_dead_letters"

// DeadLetter is a fact that the data platform did not accept after every attempt, or refused
// outright with a 4xx.
type DeadLetter struct {
	// ID names the dead letter for Redrive: the fact's event ID, so that a fact is on the list
	// at most once however often it fails.
	ID        string    `json:"id"`
	EventID   string    `json:"eventId"`
	EventType string    `json:"eventType"`
	Attempts  int       `json:"attempts"`
	LastError string    `json:"lastError"`
	FailedAt  time.Time `json:"failedAt"`
}

// deadLetterRecord is what the bucket stores: the list entry plus the fact itself, so that a
// redrive does not depend on the event still being in its stream, and where it came from.
type deadLetterRecord struct {
	DeadLetter
	Fact     Fact   `json:"fact"`
	Stream   string `json:"stream,omitempty"`
	Sequence uint64 `json:"sequence,omitempty"`
}

// deadLetterID returns the key of a fact's dead letter. Event IDs written by this code are
// UUIDs, which are valid keys; anything else is hashed rather than rejected.
func deadLetterID(eventID string) string {
	if validKey(eventID) {
		return eventID
	}
	sum := sha256.Sum256([]byte(eventID))
	return "h" + hex.EncodeToString(sum[:16])
}

func validKey(k string) bool {
	if k == "" || len(k) > 256 || k[0] == '.' || k[len(k)-1] == '.' {
		return false
	}
	for _, c := range k {
		ok := c == '-' || c == '_' || c == '=' || c == '/' || c == '.' ||
			(c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')
		if !ok {
			return false
		}
	}
	return true
}

// deadLetters stores dead letters in the bucket. The bucket is created on the first dead
// letter, so a service that never enabled the relay has no bucket and an empty list.
type deadLetters struct {
	js       jetstream.JetStream
	replicas int

	mu sync.Mutex
	kv jetstream.KeyValue
}

// bucket returns the bucket, creating it when create is true; (nil, nil) when it does not
// exist and create is false.
func (d *deadLetters) bucket(ctx context.Context, create bool) (jetstream.KeyValue, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.kv != nil {
		return d.kv, nil
	}
	kv, err := d.js.KeyValue(ctx, DeadLetterBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		if !create {
			return nil, nil
		}
		kv, err = d.js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
			Bucket:      DeadLetterBucket,
			Description: "facts the data platform did not accept (booking relay)",
			History:     1,
			Storage:     jetstream.FileStorage,
			Replicas:    d.replicas,
		})
		if errors.Is(err, jetstream.ErrBucketExists) {
			kv, err = d.js.KeyValue(ctx, DeadLetterBucket)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("relay: dead-letter bucket: %w", err)
	}
	d.kv = kv
	return kv, nil
}

// put stores (or replaces) a dead letter.
func (d *deadLetters) put(ctx context.Context, rec deadLetterRecord) error {
	kv, err := d.bucket(ctx, true)
	if err != nil {
		return err
	}
	b, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("relay: encode dead letter %s: %w", rec.ID, err)
	}
	if _, err := kv.Put(ctx, rec.ID, b); err != nil {
		return fmt.Errorf("relay: store dead letter %s: %w", rec.ID, err)
	}
	return nil
}

// get returns a dead letter and its revision, or ErrDeadLetterNotFound.
func (d *deadLetters) get(ctx context.Context, id string) (deadLetterRecord, uint64, error) {
	if !validKey(id) {
		return deadLetterRecord{}, 0, fmt.Errorf("%w: %q", ErrDeadLetterNotFound, id)
	}
	kv, err := d.bucket(ctx, false)
	if err != nil {
		return deadLetterRecord{}, 0, err
	}
	if kv == nil {
		return deadLetterRecord{}, 0, fmt.Errorf("%w: %q", ErrDeadLetterNotFound, id)
	}
	e, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return deadLetterRecord{}, 0, fmt.Errorf("%w: %q", ErrDeadLetterNotFound, id)
	}
	if err != nil {
		return deadLetterRecord{}, 0, fmt.Errorf("relay: read dead letter %s: %w", id, err)
	}
	var rec deadLetterRecord
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return deadLetterRecord{}, 0, fmt.Errorf("relay: decode dead letter %s: %w", id, err)
	}
	return rec, e.Revision(), nil
}

// remove deletes a dead letter if it is still at revision rev: a fact that failed again while
// it was being redriven keeps its newer entry.
func (d *deadLetters) remove(ctx context.Context, id string, rev uint64) error {
	kv, err := d.bucket(ctx, false)
	if err != nil || kv == nil {
		return err
	}
	if err := kv.Purge(ctx, id, jetstream.LastRevision(rev)); err != nil {
		return fmt.Errorf("relay: remove dead letter %s: %w", id, err)
	}
	return nil
}

// list returns every dead letter, oldest failure first.
func (d *deadLetters) list(ctx context.Context) ([]DeadLetter, error) {
	kv, err := d.bucket(ctx, false)
	if err != nil {
		return nil, err
	}
	out := []DeadLetter{}
	if kv == nil {
		return out, nil
	}
	w, err := kv.WatchAll(ctx, jetstream.IgnoreDeletes())
	if err != nil {
		return nil, fmt.Errorf("relay: list dead letters: %w", err)
	}
	defer func() { _ = w.Stop() }()
	for {
		select {
		case e, ok := <-w.Updates():
			if !ok || e == nil { // nil marks the end of the values present at the start
				slices.SortFunc(out, func(a, b DeadLetter) int {
					if c := a.FailedAt.Compare(b.FailedAt); c != 0 {
						return c
					}
					return cmp.Compare(a.ID, b.ID)
				})
				return out, nil
			}
			var rec deadLetterRecord
			if err := json.Unmarshal(e.Value(), &rec); err != nil {
				return nil, fmt.Errorf("relay: decode dead letter %s: %w", e.Key(), err)
			}
			out = append(out, rec.DeadLetter)
		case <-ctx.Done():
			return nil, fmt.Errorf("relay: list dead letters: %w", ctx.Err())
		}
	}
}
