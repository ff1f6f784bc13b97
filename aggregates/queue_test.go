package aggregates

import (
	"testing"
	"time"
)

func TestQueueUser(t *testing.T) {
	issued := func(tok string) QueueTokenIssued {
		return QueueTokenIssued{TokenID: tok, UserID: "alice", IssuedAt: t0}
	}
	revoked := func(tok string) QueueTokenRevoked {
		return QueueTokenRevoked{TokenID: tok, Reason: "PAID", RevokedAt: at(time.Minute)}
	}
	now := at(time.Hour)
	issue := func(tok string, current TokenStatus) func(QueueUser) ([]Event, error) {
		return func(q QueueUser) ([]Event, error) {
			return q.DecideIssue(IssueToken{TokenID: tok, UserID: "alice", Now: now, CurrentStatus: current})
		}
	}
	revoke := func(tok string) func(QueueUser) ([]Event, error) {
		return func(q QueueUser) ([]Event, error) {
			return q.DecideRevoke(RevokeToken{TokenID: tok, Reason: "PAID", Now: now})
		}
	}
	latest := func(tok string, isRevoked bool) func(*testing.T, QueueUser) {
		return func(t *testing.T, q QueueUser) {
			t.Helper()
			if q.TokenID() != tok || q.Revoked() != isRevoked {
				t.Fatalf("latest token %q revoked=%v, want %q revoked=%v", q.TokenID(), q.Revoked(), tok, isRevoked)
			}
		}
	}
	newToken := func(tok string) []Event {
		return []Event{QueueTokenIssued{TokenID: tok, UserID: "alice", IssuedAt: now}}
	}

	run(t, QueueUser.Apply, []spec[QueueUser]{
		{name: "a user without a token gets one", when: issue("t1", ""), then: newToken("t1"), after: latest("t1", false)},
		{name: "a token needs an ID", when: issue("", ""), err: ErrInvalid},
		{name: "a token needs a user", when: func(q QueueUser) ([]Event, error) { return q.DecideIssue(IssueToken{TokenID: "t1", Now: now}) }, err: ErrInvalid},
		{name: "a user whose token is still waiting gets ErrTokenStillValid", given: []Event{issued("t1")}, when: issue("t2", TokenWaiting), err: ErrTokenStillValid},
		{name: "a user whose token is still active gets ErrTokenStillValid", given: []Event{issued("t1")}, when: issue("t2", TokenActive), err: ErrTokenStillValid},
		{name: "a user whose token expired gets a new token", given: []Event{issued("t1")}, when: issue("t2", TokenExpired), then: newToken("t2"), after: latest("t2", false)},
		{name: "a user whose token was revoked gets a new token", given: []Event{issued("t1"), revoked("t1")}, when: issue("t2", TokenActive), then: newToken("t2"), after: latest("t2", false)},

		{name: "the latest token can be revoked", given: []Event{issued("t1")}, when: revoke("t1"), then: []Event{QueueTokenRevoked{TokenID: "t1", Reason: "PAID", RevokedAt: now}}, after: latest("t1", true)},
		{name: "a repeated revoke is a no-op", given: []Event{issued("t1"), revoked("t1")}, when: revoke("t1"), after: latest("t1", true)},
		{name: "only the latest token can be revoked", given: []Event{issued("t1"), revoked("t1"), issued("t2")}, when: revoke("t1"), after: latest("t2", false)},
		{name: "revoking a token of a user without one (forgotten by the group) revokes the token named, which the queue index gave",
			when: revoke("t1"), then: []Event{QueueTokenRevoked{TokenID: "t1", Reason: "PAID", RevokedAt: now}}, after: latest("", false)},
		{name: "revoking an empty token changes nothing", when: revoke(""), after: latest("", false)},
		{name: "a late revoke of an older token leaves the latest one revocable", given: []Event{issued("t1"), issued("t2"), revoked("t1")}, when: revoke("t2"), then: []Event{QueueTokenRevoked{TokenID: "t2", Reason: "PAID", RevokedAt: now}}},
	})
}

func TestAdmissionAdvance(t *testing.T) {
	advanced := func(w uint64, d time.Duration) QueueAdvanced { return QueueAdvanced{Watermark: w, At: at(d)} }
	advance := func(w uint64) func(Admission) ([]Event, error) {
		return func(a Admission) ([]Event, error) { return a.DecideAdvance(Advance{Watermark: w, Now: at(time.Hour)}) }
	}
	watermark := func(want uint64) func(*testing.T, Admission) {
		return func(t *testing.T, a Admission) {
			t.Helper()
			if a.Watermark() != want {
				t.Fatalf("watermark = %d, want %d", a.Watermark(), want)
			}
		}
	}

	run(t, Admission.Apply, []spec[Admission]{
		{name: "a new gate has watermark 0", when: advance(0), after: watermark(0)},
		{name: "the first advance admits up to its watermark", when: advance(10), then: []Event{QueueAdvanced{Watermark: 10, At: at(time.Hour)}}, after: watermark(10)},
		{name: "the watermark moves forward", given: []Event{advanced(10, 0)}, when: advance(20), then: []Event{QueueAdvanced{Watermark: 20, At: at(time.Hour)}}, after: watermark(20)},
		{name: "an advance to the same watermark is a no-op", given: []Event{advanced(10, 0)}, when: advance(10), after: watermark(10)},
		{name: "the watermark never moves back", given: []Event{advanced(10, 0)}, when: advance(5), after: watermark(10)},
		{name: "a stale advance in the log does not move the watermark back", given: []Event{advanced(10, 0), advanced(5, time.Second)}, when: advance(10), after: watermark(10)},
	})
}

func TestAdmissionStatusOf(t *testing.T) {
	ttl := 10 * time.Minute
	gated := QueuePolicy{ActiveTTL: ttl}
	open := QueuePolicy{AdmitAll: true, ActiveTTL: ttl}
	// Positions 1..10 became active at t0+1m, 11..20 at t0+2m.
	steps := []Event{
		QueueAdvanced{Watermark: 10, At: at(time.Minute)},
		QueueAdvanced{Watermark: 20, At: at(2 * time.Minute)},
	}
	tests := []struct {
		name      string
		given     []Event
		policy    QueuePolicy
		position  uint64
		issuedAt  time.Time
		revoked   bool
		now       time.Time
		status    TokenStatus
		activeAt  time.Time // zero: not active yet
		expiresAt time.Time
	}{
		{name: "a token beyond the watermark is waiting", given: steps, policy: gated, position: 21, issuedAt: t0, now: at(3 * time.Minute), status: TokenWaiting},
		{name: "a token before any admission is waiting", policy: gated, position: 1, issuedAt: t0, now: at(time.Hour), status: TokenWaiting},
		{name: "a token is active from the advance that reached its position", given: steps, policy: gated, position: 10, issuedAt: t0, now: at(time.Minute), status: TokenActive, activeAt: at(time.Minute), expiresAt: at(time.Minute + ttl)},
		{name: "a token is active from the first advance past its position", given: steps, policy: gated, position: 11, issuedAt: t0, now: at(3 * time.Minute), status: TokenActive, activeAt: at(2 * time.Minute), expiresAt: at(2*time.Minute + ttl)},
		{name: "a token issued after its position was admitted is active from its issue", given: steps, policy: gated, position: 15, issuedAt: at(5 * time.Minute), now: at(6 * time.Minute), status: TokenActive, activeAt: at(5 * time.Minute), expiresAt: at(5*time.Minute + ttl)},
		{name: "an active token expires at activeAt plus the ttl", given: steps, policy: gated, position: 1, issuedAt: t0, now: at(time.Minute + ttl), status: TokenExpired, activeAt: at(time.Minute), expiresAt: at(time.Minute + ttl)},
		{name: "an active token is still active just before it expires", given: steps, policy: gated, position: 1, issuedAt: t0, now: at(time.Minute + ttl - time.Nanosecond), status: TokenActive, activeAt: at(time.Minute), expiresAt: at(time.Minute + ttl)},
		{name: "a revoked active token is expired", given: steps, policy: gated, position: 1, issuedAt: t0, revoked: true, now: at(2 * time.Minute), status: TokenExpired, activeAt: at(time.Minute), expiresAt: at(time.Minute + ttl)},
		{name: "a revoked waiting token is expired", given: steps, policy: gated, position: 30, issuedAt: t0, revoked: true, now: at(2 * time.Minute), status: TokenExpired},
		{name: "with AdmitAll a token is active when issued", policy: open, position: 500, issuedAt: at(time.Minute), now: at(time.Minute), status: TokenActive, activeAt: at(time.Minute), expiresAt: at(time.Minute + ttl)},
		{name: "with AdmitAll a token still expires after the ttl", policy: open, position: 500, issuedAt: t0, now: at(ttl), status: TokenExpired, activeAt: t0, expiresAt: at(ttl)},
		{name: "with AdmitAll a revoked token is expired", given: steps, policy: open, position: 1, issuedAt: t0, revoked: true, now: t0, status: TokenExpired, activeAt: t0, expiresAt: at(ttl)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := fold(Admission.Apply, tt.given)
			status, activeAt, expiresAt := a.StatusOf(tt.policy, tt.position, tt.issuedAt, tt.revoked, tt.now)
			if status != tt.status || !activeAt.Equal(tt.activeAt) || !expiresAt.Equal(tt.expiresAt) {
				t.Fatalf("StatusOf = %s, %v, %v; want %s, %v, %v", status, activeAt, expiresAt, tt.status, tt.activeAt, tt.expiresAt)
			}
		})
	}
}

func TestAdmissionActiveAt(t *testing.T) {
	a := fold(Admission.Apply, []Event{
		QueueAdvanced{Watermark: 10, At: at(time.Minute)},
		QueueAdvanced{Watermark: 20, At: at(2 * time.Minute)},
	})
	tests := []struct {
		name     string
		position uint64
		active   bool
		at       time.Time
	}{
		{name: "the first position is active from the first advance", position: 1, active: true, at: at(time.Minute)},
		{name: "the watermark itself is admitted", position: 10, active: true, at: at(time.Minute)},
		{name: "the position after a watermark waits for the next advance", position: 11, active: true, at: at(2 * time.Minute)},
		{name: "a position beyond the last watermark is not active", position: 21, active: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := a.ActiveAt(tt.position)
			if ok != tt.active || !got.Equal(tt.at) {
				t.Fatalf("ActiveAt(%d) = %v, %v; want %v, %v", tt.position, got, ok, tt.at, tt.active)
			}
		})
	}
}
