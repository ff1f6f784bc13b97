package aggregates

import (
	"fmt"
	"slices"
	"sort"
	"time"
)

// TokenStatus is where a queue token stands, as the API shows it.
type TokenStatus string

// Token statuses.
const (
	TokenWaiting TokenStatus = "WAITING"
	TokenActive  TokenStatus = "ACTIVE"
	TokenExpired TokenStatus = "EXPIRED"
)

// QueueUser is the state of one user's place in the waiting queue: the latest token.
type QueueUser struct {
	tokenID string
	revoked bool
}

// TokenID returns the user's latest token, if any.
func (q QueueUser) TokenID() string { return q.tokenID }

// Revoked reports whether the latest token was revoked.
func (q QueueUser) Revoked() bool { return q.revoked }

// IssueToken is the command to join the queue. CurrentStatus is the status of the user's
// latest token as the admission view sees it now (computed with Admission.StatusOf).
//
// The user's group forgets a user some minutes after the latest token was issued or revoked
// (QueueUsers.Compact), while that token may still be waiting or active. For a user the group
// holds no token of, CurrentTokenID is the user's latest token as the queue index knows it
// (empty if none), and CurrentStatus is that token's status.
type IssueToken struct {
	TokenID        string
	UserID         string
	Now            time.Time
	CurrentTokenID string
	CurrentStatus  TokenStatus
}

// DecideIssue issues a new token unless the user's latest token is still waiting or active.
func (q QueueUser) DecideIssue(cmd IssueToken) ([]Event, error) {
	// An empty token ID is how the state says "no token yet".
	if cmd.TokenID == "" || cmd.UserID == "" {
		return nil, fmt.Errorf("%w: a token needs its token and user IDs", ErrInvalid)
	}
	valid := cmd.CurrentStatus == TokenWaiting || cmd.CurrentStatus == TokenActive
	if q.tokenID != "" && !q.revoked && valid {
		return nil, ErrTokenStillValid
	}
	if q.tokenID == "" && cmd.CurrentTokenID != "" && valid {
		// Forgotten by the group, but the queue index still has the token waiting or active.
		return nil, ErrTokenStillValid
	}
	return []Event{QueueTokenIssued{TokenID: cmd.TokenID, UserID: cmd.UserID, IssuedAt: cmd.Now}}, nil
}

// RevokeToken is the command to end a token after its user paid.
type RevokeToken struct {
	TokenID string
	Reason  string
	Now     time.Time
}

// DecideRevoke revokes the user's latest token if it is the one named; otherwise no-op. On a
// user the group forgot (an empty QueueUser) it revokes the token named, which the caller
// takes from the queue index as the user's latest: revoking a token the index already ended
// changes nothing there.
func (q QueueUser) DecideRevoke(cmd RevokeToken) ([]Event, error) {
	if cmd.TokenID == "" || q.tokenID != "" && (q.tokenID != cmd.TokenID || q.revoked) {
		return nil, nil
	}
	return []Event{QueueTokenRevoked{TokenID: cmd.TokenID, Reason: cmd.Reason, RevokedAt: cmd.Now}}, nil
}

// Apply returns the state after one event.
func (q QueueUser) Apply(e Event) QueueUser {
	switch ev := e.(type) {
	case QueueTokenIssued:
		return QueueUser{tokenID: ev.TokenID}
	case QueueTokenRevoked:
		if ev.TokenID == q.tokenID {
			q.revoked = true
		}
	}
	return q
}

// Admission is the state of the queue's gate: the history of its advances, oldest first.
type Admission struct {
	steps []QueueAdvanced
}

// Steps returns the advances applied so far, oldest first (a copy): applying them to an empty
// Admission rebuilds this one.
func (a Admission) Steps() []QueueAdvanced { return slices.Clone(a.steps) }

// Watermark returns the highest admitted position.
func (a Admission) Watermark() uint64 {
	if len(a.steps) == 0 {
		return 0
	}
	return a.steps[len(a.steps)-1].Watermark
}

// Advance is the command to admit every token up to a new watermark.
type Advance struct {
	Watermark uint64
	Now       time.Time
}

// DecideAdvance moves the watermark forward only.
func (a Admission) DecideAdvance(cmd Advance) ([]Event, error) {
	if cmd.Watermark <= a.Watermark() {
		return nil, nil
	}
	return []Event{QueueAdvanced{Watermark: cmd.Watermark, At: cmd.Now}}, nil
}

// Apply returns the state after one event. It appends to the receiver's slice, so a caller
// must not keep using the old state.
func (a Admission) Apply(e Event) Admission {
	if ev, ok := e.(QueueAdvanced); ok && ev.Watermark > a.Watermark() {
		a.steps = append(a.steps, ev)
	}
	return a
}

// ActiveAt returns when the token at position became active, if it has.
func (a Admission) ActiveAt(position uint64) (time.Time, bool) {
	i := sort.Search(len(a.steps), func(i int) bool { return a.steps[i].Watermark >= position })
	if i == len(a.steps) {
		return time.Time{}, false
	}
	return a.steps[i].At, true
}

// QueuePolicy is how the queue admits: AdmitAll (batch 0) makes every token active when
// issued; ActiveTTL is how long a token stays active.
type QueuePolicy struct {
	AdmitAll  bool
	ActiveTTL time.Duration
}

// StatusOf returns a token's status at now, with activeAt and expiresAt once it is active.
func (a Admission) StatusOf(p QueuePolicy, position uint64, issuedAt time.Time, revoked bool, now time.Time) (status TokenStatus, activeAt, expiresAt time.Time) {
	activeAt, active := a.ActiveAt(position)
	if p.AdmitAll {
		activeAt, active = issuedAt, true
	}
	if active && activeAt.Before(issuedAt) {
		activeAt = issuedAt
	}
	if !active {
		if revoked {
			return TokenExpired, time.Time{}, time.Time{}
		}
		return TokenWaiting, time.Time{}, time.Time{}
	}
	expiresAt = activeAt.Add(p.ActiveTTL)
	if revoked || !now.Before(expiresAt) {
		return TokenExpired, activeAt, expiresAt
	}
	return TokenActive, activeAt, expiresAt
}
