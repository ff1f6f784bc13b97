package app

import (
	"bytes"
	"context"
	"encoding/gob"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
	"github.com/booking-engine/booking/internal/testclock"
)

// The queue index drops the tokens that ended queueRetention ago (queue.go). These tests
// drive it with a fake clock: pruning goes by the times of the queue events applied, so a test
// moves the clock and then appends an event (a "pusher" token of another user) to let it run.

var (
	admitAllCfg = Config{QueueBatch: 0, QueueActiveTTL: 10 * time.Minute, TokenSecret: []byte("test-secret")}
	batchCfg    = Config{QueueBatch: 2, QueueInterval: 10 * time.Second, QueueActiveTTL: 10 * time.Minute, TokenSecret: []byte("test-secret")}
	// tq is a start time off the whole millisecond, so that a dropped token's times answered
	// from its claims (milliseconds) are checked against the ones the index gave.
	tq = t0.Add(123_456_789 * time.Nanosecond)
)

// queueFixture is a started service over an in-memory log, with its fake clock.
type queueFixture struct {
	t     *testing.T
	ctx   context.Context
	log   *eventstore.MemStore
	clock *testclock.Clock
	svc   *Service
	n     int // pusher tokens so far
}

func newQueueFixture(t *testing.T, cfg Config, snaps SnapshotStore) *queueFixture {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	f := &queueFixture{t: t, ctx: ctx, log: eventstore.NewMemStore(), clock: testclock.New(tq)}
	f.svc = f.start(cfg, snaps)
	return f
}

// start starts another service over the fixture's log and clock.
func (f *queueFixture) start(cfg Config, snaps SnapshotStore) *Service {
	f.t.Helper()
	svc := New(f.log, cfg, Options{Clock: f.clock, Logger: quietLogger(), QueueSnapshots: snaps})
	if err := svc.Start(f.ctx, logReads{f.log}); err != nil {
		f.t.Fatal(err)
	}
	return svc
}

// settle waits until the service's queue follower has applied everything appended so far
// (it blocks on the index's notification, no sleeping).
func (f *queueFixture) settle(svc *Service) {
	f.t.Helper()
	head, err := f.log.Head(f.ctx, eventstore.StreamsOf(eventstore.TypeQueueUser)[0])
	if err != nil {
		f.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(f.ctx, 10*time.Second)
	defer cancel()
	if err := svc.queue.waitApplied(ctx, head); err != nil {
		f.t.Fatalf("queue follower behind head %d: %v", head, err)
	}
}

func (f *queueFixture) issue(user string) Token {
	f.t.Helper()
	tok, _, err := f.svc.IssueToken(f.ctx, Meta{}, user)
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

func (f *queueFixture) revoke(user string) {
	f.t.Helper()
	f.n++
	if err := f.svc.revokeToken(f.ctx, Meta{}, user, fmt.Sprintf("pay-%s-%d", user, f.n)); err != nil {
		f.t.Fatal(err)
	}
}

// pass moves the clock by d, then appends a queue event (a token of a user of its own, at once
// revoked) so that the index prunes up to then, and waits for the follower.
func (f *queueFixture) pass(d time.Duration) {
	f.t.Helper()
	f.settle(f.svc)
	f.clock.Advance(d)
	f.n++
	user := fmt.Sprintf("pusher%d", f.n)
	f.issue(user)
	f.revoke(user)
	f.settle(f.svc)
}

// known reports whether the service's index still holds the token.
func known(svc *Service, token string) bool {
	c, err := svc.parseToken(token)
	if err != nil {
		panic(err)
	}
	svc.queue.mu.RLock()
	defer svc.queue.mu.RUnlock()
	_, ok := svc.queue.tokens[c.tokenID]
	return ok
}

// answers is what the service says of a token: its status and the error of a check.
type answers struct {
	status   Token
	statusOK bool
	check    error
}

func answersOf(t *testing.T, f *queueFixture, tok Token) answers {
	t.Helper()
	st, err := f.svc.TokenStatus(f.ctx, tok.Token)
	_, check := f.svc.CheckToken(f.ctx, tok.Token)
	return answers{status: st, statusOK: err == nil, check: check}
}

func TestADroppedQueueTokenAnswersWhatItAnsweredBefore(t *testing.T) {
	ends := []struct {
		name string
		end  func(f *queueFixture, user string)
	}{
		{"a token revoked by a payment", func(f *queueFixture, user string) { f.revoke(user) }},
		{"a token past its active TTL", func(f *queueFixture, user string) { f.clock.Advance(10 * time.Minute) }},
		{"a token superseded by a newer one its user got through an instance that did not know it", func(f *queueFixture, user string) {
			// Not started: its index never heard of the user's token, so it issues another.
			other := New(f.log, f.svc.cfg, Options{Clock: f.clock, Logger: quietLogger()})
			if _, created, err := other.IssueToken(f.ctx, Meta{}, user); err != nil || !created {
				f.t.Fatalf("issue through the other instance: %v %v", created, err)
			}
		}},
	}
	cfgs := []struct {
		name string
		cfg  Config
	}{{"with AdmitAll", admitAllCfg}, {"with batches", batchCfg}}
	for _, c := range cfgs {
		for _, e := range ends {
			t.Run(e.name+", once dropped, still reads EXPIRED "+c.name, func(t *testing.T) {
				f := newQueueFixture(t, c.cfg, nil)
				tok := f.issue("u1")
				if tok.Status != "ACTIVE" {
					t.Fatalf("issued %s, want ACTIVE", tok.Status)
				}
				e.end(f, "u1")
				f.settle(f.svc)
				before := answersOf(t, f, tok)
				if !before.statusOK || before.status.Status != "EXPIRED" || !isErr(before.check, ErrTokenExpired) {
					t.Fatalf("before it is dropped: %+v", before)
				}
				f.pass(queueRetention - time.Second)
				if !known(f.svc, tok.Token) {
					t.Fatal("dropped before the retention passed")
				}
				f.pass(time.Second)
				if known(f.svc, tok.Token) {
					t.Fatal("still in the index once the retention passed")
				}
				if after := answersOf(t, f, tok); !reflect.DeepEqual(after, before) {
					t.Fatalf("once dropped: %+v\nbefore: %+v", after, before)
				}
			})
		}
	}
	t.Run("a user whose latest token was dropped gets a new token", func(t *testing.T) {
		f := newQueueFixture(t, admitAllCfg, nil)
		old := f.issue("u1")
		f.revoke("u1")
		f.pass(queueRetention)
		if known(f.svc, old.Token) {
			t.Fatal("not dropped")
		}
		tok, created, err := f.svc.IssueToken(f.ctx, Meta{}, "u1")
		if err != nil || !created || tok.Token == old.Token || tok.Status != "ACTIVE" {
			t.Fatalf("issue after the drop: %+v %v %v", tok, created, err)
		}
	})
	t.Run("a forged token of a dropped position stays invalid", func(t *testing.T) {
		f := newQueueFixture(t, admitAllCfg, nil)
		tok := f.issue("u1")
		f.revoke("u1")
		f.pass(queueRetention)
		other := New(eventstore.NewMemStore(), Config{TokenSecret: []byte("another secret")}, Options{Clock: f.clock, Logger: quietLogger()})
		forged, _, _ := other.IssueToken(f.ctx, Meta{}, "u2") // the first position, below the horizon
		for _, bad := range []string{forged.Token, tok.Token + "x", "x." + tok.Token} {
			if _, err := f.svc.CheckToken(f.ctx, bad); !isErr(err, ErrTokenInvalid) {
				t.Errorf("check %q: %v", bad, err)
			}
			if _, err := f.svc.TokenStatus(f.ctx, bad); !isErr(err, ErrTokenInvalid) {
				t.Errorf("status %q: %v", bad, err)
			}
		}
	})
}

func TestWaitingAndActiveQueueTokensAreNeverDropped(t *testing.T) {
	cfg := Config{QueueBatch: 1, QueueInterval: 24 * time.Hour, QueueActiveTTL: 3 * time.Hour, TokenSecret: []byte("test-secret")}
	f := newQueueFixture(t, cfg, nil)
	active, waiting := f.issue("u1"), f.issue("u2")
	for range 150 { // two and a half hours of other users' tokens ending
		f.pass(time.Minute)
	}
	for _, c := range []struct {
		tok  Token
		want string
	}{{active, "ACTIVE"}, {waiting, "WAITING"}} {
		if !known(f.svc, c.tok.Token) {
			t.Fatalf("the %s token was dropped", c.want)
		}
		if st, err := f.svc.TokenStatus(f.ctx, c.tok.Token); err != nil || st.Status != c.want {
			t.Fatalf("the %s token: %+v %v", c.want, st, err)
		}
	}
	// Every pusher waits behind u2 (one admission a day): each one counts for ahead.
	if st, _ := f.svc.TokenStatus(f.ctx, f.issue("late").Token); st.Ahead != 151 {
		t.Fatalf("ahead %d, want 151 (u2 and the 150 ended pushers still waiting)", st.Ahead)
	}
	if n := len(f.svc.queue.tokens); n > 2+int(queueRetention/time.Minute)+2 {
		t.Fatalf("%d tokens in the index, want the two and the pushers of the last retention", n)
	}
}

func TestTheQueueIndexStaysBoundedWhileUsersCycle(t *testing.T) {
	const users, rounds, step = 20, 300, 2 * time.Second // 10 fake minutes, 6,000 tokens
	cfgs := []struct {
		name string
		cfg  Config
	}{
		{"with AdmitAll", admitAllCfg},
		{"with batches", Config{QueueBatch: 1000, QueueInterval: 10 * time.Second, QueueActiveTTL: 10 * time.Minute, TokenSecret: []byte("test-secret")}},
	}
	for _, c := range cfgs {
		t.Run("token then payment, over and over, "+c.name, func(t *testing.T) {
			f := newQueueFixture(t, c.cfg, nil)
			// What ended within the retention (and the step it takes to prune) may stay.
			maxTokens := users * (int(queueRetention/step) + 2)
			maxAdmitted := users * (int(c.cfg.QueueInterval/step) + 1)
			for r := range rounds {
				for u := range users {
					f.issue(userN(u))
					f.revoke(userN(u))
				}
				f.settle(f.svc)
				f.clock.Advance(step)
				q := f.svc.queue
				q.mu.RLock()
				tokens, waiting, admitted, drops := len(q.tokens), len(q.waiting), len(q.admitted), len(q.drops)
				q.mu.RUnlock()
				if tokens > maxTokens || drops > tokens || waiting > 0 || admitted > maxAdmitted {
					t.Fatalf("round %d: %d tokens (at most %d), %d to drop, %d waiting, %d admission steps (at most %d)",
						r, tokens, maxTokens, drops, waiting, admitted, maxAdmitted)
				}
			}
			if st := f.svc.QueueStats(); st.Issued != users*rounds || st.Admitted != users*rounds || st.Waiting != 0 {
				t.Fatalf("stats %+v, want %d issued and admitted", st, users*rounds)
			}
		})
	}
}

func TestAQueueSnapshotKeepsWhatStandsForTheDroppedTokens(t *testing.T) {
	snaps := &memSnapshots{}
	f := newQueueFixture(t, batchCfg, snaps)
	tokens := queueHistory(t, f.ctx, f.svc, "u0", "u1", "u2", "u3", "u4")
	f.pass(queueRetention)
	dropped := 0
	for _, tok := range tokens {
		if !known(f.svc, tok) {
			dropped++
		}
	}
	if dropped == 0 || f.svc.queue.horizon == 0 {
		t.Fatalf("%d of the tokens dropped, horizon %d: want some", dropped, f.svc.queue.horizon)
	}
	if err := f.svc.SaveQueueSnapshot(); err != nil || snaps.saves != 1 {
		t.Fatalf("save: %v, %d saves", err, snaps.saves)
	}
	atOnce := f.start(batchCfg, snaps) // nothing dropped after the snapshot to raise the horizon
	sameQueue(t, f.ctx, atOnce, f.svc, tokens)
	// After the snapshot: more tokens, an admission a while later, more drops.
	tokens = append(tokens, queueHistory(t, f.ctx, f.svc, "u5", "u6", "u7")...)
	f.clock.Advance(11 * time.Second)
	if err := f.svc.admit(f.ctx); err != nil {
		t.Fatal(err)
	}
	f.pass(queueRetention)

	fromSnapshot := f.start(batchCfg, snaps)
	if fromSnapshot.savedSeq.Load() == 0 {
		t.Fatal("the restart did not use the snapshot")
	}
	f.settle(fromSnapshot)
	replayed := f.start(batchCfg, nil)
	f.settle(replayed)
	sameQueue(t, f.ctx, fromSnapshot, replayed, tokens)
	sameQueue(t, f.ctx, fromSnapshot, f.svc, tokens)
	if a, b := fromSnapshot.queue.horizon, f.svc.queue.horizon; a != b {
		t.Fatalf("horizon %d after the restart, %d before", a, b)
	}
}

func TestAQueueSnapshotCountsADroppedTokenThatWasStillWaiting(t *testing.T) {
	cfg := Config{QueueBatch: 1, QueueInterval: 24 * time.Hour, QueueActiveTTL: time.Hour, TokenSecret: []byte("test-secret")}
	snaps := &memSnapshots{}
	f := newQueueFixture(t, cfg, snaps)
	tokens := []string{f.issue("u1").Token, f.issue("u2").Token, f.issue("u3").Token}
	f.revoke("u2") // while waiting: it ends, and still holds its place for ahead
	f.pass(queueRetention)
	if known(f.svc, tokens[1]) {
		t.Fatal("the revoked waiting token was not dropped")
	}
	if st, _ := f.svc.TokenStatus(f.ctx, tokens[2]); st.Ahead != 1 {
		t.Fatalf("u3 has %d ahead, want 1", st.Ahead)
	}
	if err := f.svc.SaveQueueSnapshot(); err != nil {
		t.Fatal(err)
	}
	sameQueue(t, f.ctx, f.start(cfg, snaps), f.svc, tokens)
}

func TestAQueueSnapshotOfVersion1StillLoads(t *testing.T) {
	// Version 1 held every token and nothing of drops: what today's code writes before it
	// dropped anything, under the old version number.
	f := newQueueFixture(t, batchCfg, nil)
	tokens := queueHistory(t, f.ctx, f.svc, "u0", "u1", "u2", "u3", "u4")
	f.settle(f.svc)
	snap, ok := f.svc.queue.snapshot()
	if !ok || snap.Horizon != 0 {
		t.Fatalf("snapshot: %v, horizon %d", ok, snap.Horizon)
	}
	v1 := queueSnapshot{Version: 1, Seq: snap.Seq, EventID: snap.EventID, Steps: snap.Steps, Admitted: snap.Admitted}
	for _, tok := range snap.Tokens {
		v1.Tokens = append(v1.Tokens, snapshotToken{ID: tok.ID, User: tok.User, Position: tok.Position, IssuedAt: tok.IssuedAt, Revoked: tok.Revoked})
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(v1); err != nil {
		t.Fatal(err)
	}
	tokens = append(tokens, queueHistory(t, f.ctx, f.svc, "u5", "u6")...)
	f.pass(queueRetention)

	fromV1 := f.start(batchCfg, &memSnapshots{data: buf.Bytes()})
	if fromV1.savedSeq.Load() != snap.Seq {
		t.Fatalf("the restart did not use the version 1 snapshot (at %d)", fromV1.savedSeq.Load())
	}
	f.settle(fromV1)
	sameQueue(t, f.ctx, fromV1, f.svc, tokens)
}

// indexFeed feeds a queue index events as the follower and this process's own appends do.
type indexFeed struct {
	q   *queueIndex
	seq uint64
}

// append applies ev as the only event of the next commit and returns that commit's sequence.
func (f *indexFeed) append(ev aggregates.Event) uint64 {
	f.seq++
	f.q.applyEvent(ev, f.seq, 0)
	return f.seq
}

// follow applies the events up to seq in order, as the follower does after own appends.
func (f *indexFeed) follow(seq uint64) {
	f.q.appliedInOrder(eventstore.Envelope{Sequence: seq, EventID: fmt.Sprint("e", seq)})
}

func issuedAt(id, user string, at time.Time) aggregates.QueueTokenIssued {
	return aggregates.QueueTokenIssued{TokenID: id, UserID: user, IssuedAt: at}
}

func TestTheQueueHorizonNeverPassesATokenTheFollowerHasYetToApply(t *testing.T) {
	f := &indexFeed{q: newQueueIndex(aggregates.QueuePolicy{AdmitAll: true, ActiveTTL: 10 * time.Minute}, 0)}
	f.follow(f.append(issuedAt("a", "u1", t0)))
	// Another instance's token c takes the commit at sequence 2; this one's own appends (b
	// issued and revoked, then d after the retention) are applied before the follower gets to c.
	f.seq++
	cSeq := f.seq
	c := tokenClaims{tokenID: "c", userID: "u3", position: queuePosition(cSeq, 0), issuedAt: t0}
	f.append(issuedAt("b", "u2", t0))
	f.append(aggregates.QueueTokenRevoked{TokenID: "b", RevokedAt: t0})
	last := f.append(issuedAt("d", "u4", t0.Add(queueRetention+time.Second)))
	if _, ok := f.q.statusOf(c, t0); ok {
		t.Fatal("a token the follower has not applied yet is judged by the horizon")
	}
	f.q.applyEvent(issuedAt("c", "u3", t0), cSeq, 0)
	f.follow(last)
	if want := queuePosition(3, 0); f.q.horizon != want {
		t.Fatalf("horizon %d once the follower applied everything, want %d (b)", f.q.horizon, want)
	}
	if ts, ok := f.q.statusOf(c, t0.Add(time.Minute)); !ok || ts.status != aggregates.TokenActive {
		t.Fatalf("c: %+v %v, want ACTIVE", ts, ok)
	}
}

func TestATokenSupersededByOneDroppedBeforeItStaysSupersededAfterARestore(t *testing.T) {
	policy := aggregates.QueuePolicy{AdmitAll: true, ActiveTTL: 10 * time.Minute}
	f := &indexFeed{q: newQueueIndex(policy, 0)}
	a := tokenClaims{tokenID: "a", userID: "u1", position: queuePosition(f.append(issuedAt("a", "u1", t0)), 0), issuedAt: t0}
	f.append(issuedAt("b", "u1", t0.Add(time.Second)))
	// The instance that revoked b runs 10 s behind: b ends before it was issued, and is due
	// to be dropped before a, which b superseded.
	f.append(aggregates.QueueTokenRevoked{TokenID: "b", RevokedAt: t0.Add(-10 * time.Second)})
	f.follow(f.append(issuedAt("x", "u2", t0.Add(queueRetention-5*time.Second))))
	if _, ok := f.q.tokens["b"]; ok {
		t.Fatal("b not dropped")
	}
	if _, ok := f.q.tokens["a"]; !ok {
		t.Fatal("a dropped already")
	}
	snap, _ := f.q.snapshot()
	restored := newQueueIndex(policy, 0)
	restored.restore(snap)
	for name, q := range map[string]*queueIndex{"before the restore": f.q, "after the restore": restored} {
		if ts, ok := q.statusOf(a, t0.Add(time.Minute)); !ok || ts.status != aggregates.TokenExpired {
			t.Fatalf("a %s: %+v %v, want EXPIRED", name, ts, ok)
		}
	}
}
