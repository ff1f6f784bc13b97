package app

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/booking-engine/booking/eventstore"

	"github.com/booking-engine/booking/internal/testclock"
)

type memSnapshots struct {
	data  []byte
	saves int
}

func (m *memSnapshots) Load() ([]byte, error) { return m.data, nil }
func (m *memSnapshots) Save(b []byte) error {
	m.data, m.saves = bytes.Clone(b), m.saves+1
	return nil
}

var snapshotCfg = Config{HoldTTL: 5 * time.Minute, QueueBatch: 2, QueueInterval: 10 * time.Second,
	QueueActiveTTL: 10 * time.Minute, TokenSecret: []byte("test-secret")}

// startService starts a service over log at now, with snaps (nil: none).
func startService(t *testing.T, ctx context.Context, log EventLog, now time.Time, snaps SnapshotStore) *Service {
	t.Helper()
	clock := testclock.New(now)
	svc := New(log, snapshotCfg, Options{Clock: clock, Logger: quietLogger(), QueueSnapshots: snaps})
	if err := svc.Start(ctx, logReads{log}); err != nil {
		t.Fatal(err)
	}
	return svc
}

// caughtUp waits (with a deadline) until the queue follower has applied the stream's head,
// so that a snapshot covers everything appended so far.
func caughtUp(t *testing.T, ctx context.Context, svc *Service, log EventLog) {
	t.Helper()
	head, err := log.Head(ctx, eventstore.StreamsOf(eventstore.TypeQueueUser)[0])
	if err != nil {
		t.Fatal(err)
	}
	applied := func() uint64 {
		svc.queue.mu.RLock()
		defer svc.queue.mu.RUnlock()
		return svc.queue.seq
	}
	for deadline := time.Now().Add(10 * time.Second); applied() < head; {
		if time.Now().After(deadline) {
			t.Fatalf("queue follower at %d, head %d", applied(), head)
		}
		time.Sleep(time.Millisecond)
	}
}

// queueHistory builds a queue with admitted, waiting, revoked (the first two users') and
// re-issued (the first user's) tokens on svc.
func queueHistory(t *testing.T, ctx context.Context, svc *Service, users ...string) []string {
	t.Helper()
	var tokens []string
	for _, u := range users {
		tok, _, err := svc.IssueToken(ctx, Meta{}, u)
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok.Token)
	}
	for _, u := range users[:2] {
		if err := svc.revokeToken(ctx, Meta{}, u, "pay-"+u); err != nil {
			t.Fatal(err)
		}
	}
	tok, _, err := svc.IssueToken(ctx, Meta{}, users[0]) // a new token after the revoked one
	if err != nil {
		t.Fatal(err)
	}
	return append(tokens, tok.Token)
}

// sameQueue checks that a and b say the same of every token and count the same.
func sameQueue(t *testing.T, ctx context.Context, a, b *Service, tokens []string) {
	t.Helper()
	for i, tok := range tokens {
		ta, errA := a.TokenStatus(ctx, tok)
		tb, errB := b.TokenStatus(ctx, tok)
		if ta.Status != tb.Status || ta.Ahead != tb.Ahead || ta.Position != tb.Position || (errA == nil) != (errB == nil) {
			t.Fatalf("token %d: %+v (%v) with the snapshot, %+v (%v) replaying everything", i, ta, errA, tb, errB)
		}
	}
	if sa, sb := a.QueueStats(), b.QueueStats(); sa != sb {
		t.Fatalf("stats %+v with the snapshot, %+v replaying everything", sa, sb)
	}
}

func TestARestartFromAQueueSnapshotAnswersLikeAFullReplay(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	log := eventstore.NewMemStore()
	snaps := &memSnapshots{}
	first := startService(t, ctx, log, t0, snaps)
	tokens := queueHistory(t, ctx, first, "u0", "u1", "u2", "u3", "u4")
	caughtUp(t, ctx, first, log)
	if err := first.SaveQueueSnapshot(); err != nil || snaps.saves != 1 {
		t.Fatalf("save: %v, %d saves", err, snaps.saves)
	}
	if err := first.SaveQueueSnapshot(); err != nil || snaps.saves != 1 {
		t.Fatalf("a second save with nothing new: %v, %d saves, want still 1", err, snaps.saves)
	}
	// After the snapshot: more tokens, and an admission a while later.
	tokens = append(tokens, queueHistory(t, ctx, first, "u5", "u6")...)
	first.clock.(*testclock.Clock).Advance(11 * time.Second)
	if err := first.admit(ctx); err != nil {
		t.Fatal(err)
	}
	at := first.clock.Now()

	fromSnapshot := startService(t, ctx, log, at, snaps)
	if fromSnapshot.savedSeq.Load() == 0 {
		t.Fatal("the restart did not use the snapshot")
	}
	sameQueue(t, ctx, fromSnapshot, startService(t, ctx, log, at, nil), tokens)
}

func TestAQueueSnapshotThatDoesNotFitTheLogIsIgnored(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	otherLog := eventstore.NewMemStore()
	other := startService(t, ctx, otherLog, t0, &memSnapshots{})
	queueHistory(t, ctx, other, "x0", "x1", "x2", "x3", "x4", "x5", "x6", "x7")
	caughtUp(t, ctx, other, otherLog)
	ofAnotherLog := &memSnapshots{}
	other.snapshots = ofAnotherLog
	if err := other.SaveQueueSnapshot(); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		snaps *memSnapshots
	}{
		{"a snapshot of another log", ofAnotherLog},
		{"a snapshot that is not one", &memSnapshots{data: []byte("not a snapshot")}},
	}
	for _, tc := range cases {
		t.Run(tc.name+" is ignored and the whole queue replayed", func(t *testing.T) {
			log := eventstore.NewMemStore()
			svc := startService(t, ctx, log, t0, nil)
			tokens := queueHistory(t, ctx, svc, "u0", "u1", "u2")
			restarted := startService(t, ctx, log, t0, tc.snaps)
			if restarted.savedSeq.Load() != 0 {
				t.Fatal("the restart used a snapshot that does not fit the log")
			}
			sameQueue(t, ctx, restarted, startService(t, ctx, log, t0, nil), tokens)
		})
	}
}
