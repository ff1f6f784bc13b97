package idemstore

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/booking-engine/booking/eventstore"
)

// kvOperationHeader marks a key-value entry that deletes or purges its key.
const kvOperationHeader = "KV-Operation"

// lookupTimeout bounds one direct get of a group of lookups, whatever its callers' deadlines:
// a caller that gives up earlier leaves the others their answers.
const lookupTimeout = 5 * time.Second

// kvLookups reads the keys that concurrent requests look up with one direct get for the last
// message of each (one request and, for keys never used, which is nearly every key, one empty
// answer), the way the event store's group commit writes: a lookup that finds no get in
// flight goes at once, alone; the lookups made while one is in flight go together in the
// next. So a keyed request costs the server a share of one round trip instead of one of its
// own, and a lone request waits no longer than before.
type kvLookups struct {
	getter *eventstore.DirectGetter
	kv     jetstream.KeyValue // for servers without multi-subject direct gets
	stream string
	prefix string // the subject of a key is prefix + key

	mu       sync.Mutex
	queue    []*kvLookup
	inFlight bool
	single   bool // the server has no multi-subject direct get: one Get per key
}

// kvLookup is one key's lookup, answered when done is closed.
type kvLookup struct {
	key   string
	value []byte
	found bool
	err   error
	done  chan struct{}
}

// get returns the value of key, or found false when the bucket holds none (or its deletion).
func (l *kvLookups) get(ctx context.Context, key string) (value []byte, found bool, err error) {
	q := &kvLookup{key: key, done: make(chan struct{})}
	l.mu.Lock()
	if l.single {
		l.mu.Unlock()
		return l.getOne(ctx, key)
	}
	l.queue = append(l.queue, q)
	lead := !l.inFlight
	l.inFlight = true
	l.mu.Unlock()
	if lead {
		// On a goroutine of its own, so that this caller, too, returns when its context ends.
		go l.run()
	}
	select {
	case <-q.done:
		return q.value, q.found, q.err
	case <-ctx.Done():
		return nil, false, ctx.Err()
	}
}

// run answers the queued lookups, a group of them, and hands the lookups queued meanwhile to
// another run.
func (l *kvLookups) run() {
	l.mu.Lock()
	group := l.queue
	if len(group) > l.getter.MaxSubjects() {
		group = group[:l.getter.MaxSubjects()]
	}
	l.queue = l.queue[len(group):]
	l.mu.Unlock()
	l.answer(group)
	l.mu.Lock()
	more := len(l.queue) > 0
	if !more {
		l.inFlight = false
		l.queue = nil
	}
	l.mu.Unlock()
	if more {
		go l.run()
	}
}

// answer reads the keys of a group with one direct get and closes their lookups.
func (l *kvLookups) answer(group []*kvLookup) {
	// Repeats of a key in one group (a client retrying while its first try is looked up)
	// share its subject.
	subjects := make([]string, 0, len(group))
	bySubject := make(map[string][]*kvLookup, len(group))
	for _, q := range group {
		subject := l.prefix + q.key
		if bySubject[subject] == nil {
			subjects = append(subjects, subject)
		}
		bySubject[subject] = append(bySubject[subject], q)
	}
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	err := l.getter.LastFor(ctx, l.stream, subjects, func(subject string, h nats.Header, data []byte) {
		if h.Get(kvOperationHeader) != "" {
			return
		}
		for _, q := range bySubject[subject] {
			q.value, q.found = data, true
		}
	})
	if errors.Is(err, eventstore.ErrMultiGetUnsupported) {
		l.mu.Lock()
		l.single = true
		l.mu.Unlock()
		for _, q := range group {
			q.value, q.found, q.err = l.getOne(ctx, q.key)
			close(q.done)
		}
		return
	}
	for _, q := range group {
		if err != nil {
			q.value, q.found, q.err = nil, false, err
		}
		close(q.done)
	}
}

// getOne reads one key with the key-value API.
func (l *kvLookups) getOne(ctx context.Context, key string) ([]byte, bool, error) {
	e, err := l.kv.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return e.Value(), true, nil
}
