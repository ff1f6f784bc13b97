package aggregates

import (
	"errors"
	"fmt"
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
	// Commands are decided at now, a minute after t0 unless a case says otherwise.
	now := at(time.Minute)
	// issue asks for a token; indexTok and current are the queue index's word on the user's
	// latest token (IssueToken.CurrentTokenID and CurrentStatus).
	issueAt := func(user, tok, indexTok string, current TokenStatus, when time.Time) func(QueueUsers) ([]Event, error) {
		return func(qs QueueUsers) ([]Event, error) {
			return qs.Decide(user, func(q QueueUser) ([]Event, error) {
				cmd := IssueToken{TokenID: tok, UserID: user, Now: when, CurrentStatus: current}
				if q.TokenID() == "" {
					cmd.CurrentTokenID = indexTok
				}
				return q.DecideIssue(cmd)
			})
		}
	}
	issue := func(user, tok string, current TokenStatus) func(QueueUsers) ([]Event, error) {
		return issueAt(user, tok, "", current, now)
	}
	revokeAt := func(user, tok string, when time.Time) func(QueueUsers) ([]Event, error) {
		return func(qs QueueUsers) ([]Event, error) {
			return qs.Decide(user, func(q QueueUser) ([]Event, error) {
				return q.DecideRevoke(RevokeToken{TokenID: tok, Reason: "PAID", Now: when})
			})
		}
	}
	revoke := func(user, tok string) func(QueueUsers) ([]Event, error) { return revokeAt(user, tok, now) }
	nothing := func(QueueUsers) ([]Event, error) { return nil, nil }
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
	past := EndedRetention + time.Second // just past the retention
	later := at(past + time.Minute)      // carol, issued at past, is still remembered
	// alice and carol share a group (eventstore.QueueGroupOf): here, one QueueUsers.
	run(t, apply, []spec[QueueUsers]{
		{name: "two users of one group get a token each", given: []Event{issued("alice", "t1", 0)}, when: issue("carol", "t2", ""),
			then: []Event{QueueTokenIssued{TokenID: "t2", UserID: "carol", IssuedAt: now}}, after: latest(map[string]string{"alice": "t1", "carol": "t2"})},
		{name: "a user whose token is still waiting gets ErrTokenStillValid, whatever the other users of the group hold",
			given: []Event{issued("alice", "t1", 0), issued("carol", "t2", 0), revoked("carol", "t2", time.Minute)}, when: issue("alice", "t3", TokenWaiting), err: ErrTokenStillValid},
		{name: "a revocation names its user", given: []Event{issued("alice", "t1", 0), issued("carol", "t2", 0)}, when: revoke("carol", "t2"),
			then: []Event{QueueTokenRevoked{TokenID: "t2", UserID: "carol", Reason: "PAID", RevokedAt: now}}, after: latest(map[string]string{"alice": "t1", "carol": "t2"})},
		{name: "a revocation of another user's token changes nothing", given: []Event{issued("alice", "t1", 0), issued("carol", "t2", 0)}, when: revoke("alice", "t2")},
		{name: "a repeated revocation of a token the group knows changes nothing",
			given: []Event{issued("alice", "t1", 0), revoked("alice", "t1", time.Second)}, when: revoke("alice", "t1")},

		{name: "a user is remembered within the retention after the token was issued",
			given: []Event{issued("alice", "t1", 0), issued("carol", "t2", EndedRetention)},
			when:  nothing, after: latest(map[string]string{"alice": "t1", "carol": "t2"})},
		{name: "a user who never paid is forgotten once the retention after the issue passed",
			given: []Event{issued("alice", "t1", 0), issued("carol", "t2", past)},
			when:  nothing, after: func(t *testing.T, qs QueueUsers) {
				latest(map[string]string{"alice": "", "carol": "t2"})(t, qs)
				if qs.Len() != 1 {
					t.Errorf("the group remembers %d users, want 1", qs.Len())
				}
			}},
		{name: "a revoked user is remembered within the retention after the revocation, though issued long before",
			given: []Event{issued("alice", "t1", 0), revoked("alice", "t1", 2*time.Minute), issued("carol", "t2", past)},
			when:  nothing, after: func(t *testing.T, qs QueueUsers) {
				if u := qs.User("alice"); u.TokenID() != "t1" || !u.Revoked() {
					t.Fatalf("alice = %q revoked=%v, want t1 revoked", u.TokenID(), u.Revoked())
				}
			}},
		{name: "a revoked user is forgotten once the retention after the revocation passed",
			given: []Event{issued("alice", "t1", 0), revoked("alice", "t1", time.Minute), issued("carol", "t2", time.Minute+past)},
			when:  nothing, after: latest(map[string]string{"alice": "", "carol": "t2"})},
		{name: "a user issued a newer token keeps it past the retention of the older one",
			given: []Event{issued("alice", "t1", 0), issued("alice", "t3", 2*time.Minute), issued("carol", "t2", past)},
			when:  issue("alice", "t4", TokenWaiting), err: ErrTokenStillValid, after: latest(map[string]string{"alice": "t3"})},

		{name: "a forgotten user whose token the queue index holds WAITING gets ErrTokenStillValid",
			given: []Event{issued("alice", "t1", 0), issued("carol", "t2", past)},
			when:  issueAt("alice", "t3", "t1", TokenWaiting, later), err: ErrTokenStillValid},
		{name: "a forgotten user whose token the queue index holds ACTIVE gets ErrTokenStillValid",
			given: []Event{issued("alice", "t1", 0), issued("carol", "t2", past)},
			when:  issueAt("alice", "t3", "t1", TokenActive, later), err: ErrTokenStillValid},
		{name: "a forgotten user whose token the queue index says EXPIRED is issued a new token",
			given: []Event{issued("alice", "t1", 0), issued("carol", "t2", past)},
			when:  issueAt("alice", "t3", "t1", TokenExpired, later), then: []Event{QueueTokenIssued{TokenID: "t3", UserID: "alice", IssuedAt: later}},
			after: latest(map[string]string{"alice": "t3", "carol": "t2"})},
		{name: "a forgotten user the queue index knows no token of is issued a new token",
			given: []Event{issued("alice", "t1", 0), revoked("alice", "t1", time.Minute), issued("carol", "t2", time.Minute+past)},
			when:  issueAt("alice", "t3", "", "", later), then: []Event{QueueTokenIssued{TokenID: "t3", UserID: "alice", IssuedAt: later}}},
		{name: "a payment of a forgotten user revokes the token the queue index names, and the group does not remember the user again",
			given: []Event{issued("alice", "t1", 0), issued("carol", "t2", past)},
			when:  revokeAt("alice", "t1", later), then: []Event{QueueTokenRevoked{TokenID: "t1", UserID: "alice", Reason: "PAID", RevokedAt: later}},
			after: func(t *testing.T, qs QueueUsers) {
				if u := qs.User("alice"); u != (QueueUser{}) || qs.Len() != 1 {
					t.Fatalf("alice = %+v in a group of %d, want forgotten in a group of 1", u, qs.Len())
				}
			}},
		{name: "a revocation without a token changes nothing", when: revoke("alice", "")},
		{name: "a command needs a user", when: issue("", "t1", ""), err: ErrInvalid},
	})
}

func TestAQueueGroupIsBoundedByTheUsersOfTheLastRetention(t *testing.T) {
	var qs QueueUsers
	const users, every = 10_000, time.Second
	for i := range users {
		d := time.Duration(i) * every
		user, tok := fmt.Sprintf("u%d", i), fmt.Sprintf("t%d", i)
		qs = qs.Apply(QueueTokenIssued{TokenID: tok, UserID: user, IssuedAt: at(d)}).Compact(at(d))
		if i%3 == 0 { // a third of them pay
			qs = qs.Apply(QueueTokenRevoked{TokenID: tok, UserID: user, RevokedAt: at(d)}).Compact(at(d))
		}
		if limit := int(EndedRetention/every) + 1; qs.Len() > limit {
			t.Fatalf("after %d users the group remembers %d, want at most %d", i+1, qs.Len(), limit)
		}
	}
	if qs.touched.len() > 2*int(EndedRetention/every)+2 {
		t.Fatalf("the group keeps %d entries to forget, want those of the last retention", qs.touched.len())
	}
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
