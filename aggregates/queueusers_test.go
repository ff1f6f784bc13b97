package aggregates

import (
	"errors"
	"testing"
	"time"
)

func TestQueueUsers(t *testing.T) {
	issued := func(user, tok string, d time.Duration) QueueTokenIssued {
		return QueueTokenIssued{TokenID: tok, UserID: user, IssuedAt: at(d)}
	}
	revoked := func(user, tok string, d time.Duration) QueueTokenRevoked {
		return QueueTokenRevoked{TokenID: tok, UserID: user, Reason: "PAID", RevokedAt: at(d)}
	}
	now := at(time.Hour)
	issue := func(user, tok string, current TokenStatus) func(QueueUsers) ([]Event, error) {
		return func(qs QueueUsers) ([]Event, error) {
			return qs.Decide(user, func(q QueueUser) ([]Event, error) {
				return q.DecideIssue(IssueToken{TokenID: tok, UserID: user, Now: now, CurrentStatus: current})
			})
		}
	}
	revoke := func(user, tok string) func(QueueUsers) ([]Event, error) {
		return func(qs QueueUsers) ([]Event, error) {
			return qs.Decide(user, func(q QueueUser) ([]Event, error) {
				return q.DecideRevoke(RevokeToken{TokenID: tok, Reason: "PAID", Now: now})
			})
		}
	}
	latest := func(want map[string]string) func(*testing.T, QueueUsers) {
		return func(t *testing.T, qs QueueUsers) {
			t.Helper()
			for user, tok := range want {
				if got := qs.User(user).TokenID(); got != tok {
					t.Errorf("latest token of %s = %q, want %q", user, got, tok)
				}
			}
		}
	}
	// apply folds as the repository does: every event is followed by a compaction at its time.
	apply := func(qs QueueUsers, e Event) QueueUsers {
		qs = qs.Apply(e)
		switch ev := e.(type) {
		case QueueTokenIssued:
			return qs.Compact(ev.IssuedAt)
		case QueueTokenRevoked:
			return qs.Compact(ev.RevokedAt)
		}
		return qs
	}
	// alice and carol share a group (eventstore.QueueGroupOf): here, one QueueUsers.
	run(t, apply, []spec[QueueUsers]{
		{name: "two users of one group get a token each", given: []Event{issued("alice", "t1", 0)}, when: issue("carol", "t2", ""),
			then: []Event{QueueTokenIssued{TokenID: "t2", UserID: "carol", IssuedAt: now}}, after: latest(map[string]string{"alice": "t1", "carol": "t2"})},
		{name: "a user whose token is still waiting gets ErrTokenStillValid, whatever the other users of the group hold",
			given: []Event{issued("alice", "t1", 0), issued("carol", "t2", 0), revoked("carol", "t2", time.Minute)}, when: issue("alice", "t3", TokenWaiting), err: ErrTokenStillValid},
		{name: "a revocation names its user", given: []Event{issued("alice", "t1", 0), issued("carol", "t2", 0)}, when: revoke("carol", "t2"),
			then: []Event{QueueTokenRevoked{TokenID: "t2", UserID: "carol", Reason: "PAID", RevokedAt: now}}, after: latest(map[string]string{"alice": "t1", "carol": "t2"})},
		{name: "a revocation of another user's token changes nothing", given: []Event{issued("alice", "t1", 0), issued("carol", "t2", 0)}, when: revoke("alice", "t2")},
		{name: "a revoked user is remembered within the retention",
			given: []Event{issued("alice", "t1", 0), revoked("alice", "t1", time.Minute), issued("carol", "t2", time.Minute+EndedRetention)},
			when:  revoke("alice", "t1"), after: func(t *testing.T, qs QueueUsers) {
				if u := qs.User("alice"); u.TokenID() != "t1" || !u.Revoked() {
					t.Fatalf("alice = %q revoked=%v, want t1 revoked", u.TokenID(), u.Revoked())
				}
			}},
		{name: "a revoked user is forgotten once the retention passed",
			given: []Event{issued("alice", "t1", 0), revoked("alice", "t1", time.Minute), issued("carol", "t2", 2*time.Minute+EndedRetention)},
			when:  revoke("alice", "t1"), after: latest(map[string]string{"alice": "", "carol": "t2"})},
		{name: "a forgotten user is issued a new token",
			given: []Event{issued("alice", "t1", 0), revoked("alice", "t1", time.Minute), issued("carol", "t2", 2*time.Minute+EndedRetention)},
			when:  issue("alice", "t3", TokenWaiting), then: []Event{QueueTokenIssued{TokenID: "t3", UserID: "alice", IssuedAt: now}},
			after: latest(map[string]string{"alice": "t3", "carol": "t2"})},
		{name: "a revoked user who got a new token keeps it after the retention",
			given: []Event{issued("alice", "t1", 0), revoked("alice", "t1", time.Minute), issued("alice", "t3", 2*time.Minute), issued("carol", "t2", time.Hour)},
			when:  issue("alice", "t4", TokenWaiting), err: ErrTokenStillValid},
		{name: "a user whose token merely expired is kept: the group cannot tell expiry",
			given: []Event{issued("alice", "t1", 0), issued("carol", "t2", time.Hour)},
			when:  issue("alice", "t3", TokenActive), err: ErrTokenStillValid},
		{name: "a command needs a user", when: issue("", "t1", ""), err: ErrInvalid},
	})
}

func TestQueueUsersCloneIsIndependent(t *testing.T) {
	var qs QueueUsers
	qs = qs.Apply(QueueTokenIssued{TokenID: "t1", UserID: "alice", IssuedAt: t0})
	c := qs.Clone()
	qs = qs.Apply(QueueTokenRevoked{TokenID: "t1", UserID: "alice", RevokedAt: t0})
	qs.Compact(t0.Add(time.Hour))
	if u := c.User("alice"); u.TokenID() != "t1" || u.Revoked() {
		t.Fatalf("clone's alice = %q revoked=%v, want t1 not revoked", u.TokenID(), u.Revoked())
	}
	if u := qs.User("alice"); u.TokenID() != "t1" || !u.Revoked() {
		// The revocation was stamped by this Compact: it is forgotten only a retention later.
		t.Fatalf("alice = %q revoked=%v, want t1 revoked", u.TokenID(), u.Revoked())
	}
	if _, err := qs.Decide("alice", func(QueueUser) ([]Event, error) { return nil, ErrInvalid }); !errors.Is(err, ErrInvalid) {
		t.Fatalf("a decider's error = %v, want it passed on", err)
	}
}
