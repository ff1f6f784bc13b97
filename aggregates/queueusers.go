package aggregates

import (
	"fmt"
	"maps"
	"time"
)

// QueueUsers is a group of users' places in the waiting queue, decided and committed together.
// A user alone is a poor boundary for group commit: one user rarely has two queue commands in
// flight, so every token issued and revoked was a commit (a message, an fsync on the one QUEUE
// stream) of its own. The users of a group sharing one state let the concurrent commands of
// different users go in one commit, while each decision still sees only its own user's
// QueueUser: no queue rule spans two users.
//
// Apply updates the state's map in place, so a QueueUsers is owned by whoever applies to it:
// read it only where it is decided on, and keep the values its methods return.
type QueueUsers struct {
	users map[string]QueueUser // user → latest token; a user without events has none
	// revoked lists the users whose latest token was revoked, in the order of the revocations,
	// for Compact: without it the group grows with every user who ever booked.
	revoked []revokedUser
}

// revokedUser is a user whose token was revoked; at is zero until the next Compact.
type revokedUser struct {
	at    time.Time
	user  string
	token string
}

// User returns one user's queue place (an empty one for a user without events, or forgotten).
func (qs QueueUsers) User(userID string) QueueUser { return qs.users[userID] }

// Clone returns a copy of the group that no later Apply to either changes. The repository
// takes one before deciding where other instances may win the append, to catch up from it.
func (qs QueueUsers) Clone() QueueUsers {
	return QueueUsers{users: maps.Clone(qs.users), revoked: append([]revokedUser(nil), qs.revoked...)}
}

// Decide decides a command of one user with one of QueueUser's deciders on that user's place,
// and names the user on the events it causes, so that they are applied to that user and a
// reader of the log knows whose token each is about.
func (qs QueueUsers) Decide(userID string, decide func(QueueUser) ([]Event, error)) ([]Event, error) {
	if userID == "" {
		return nil, fmt.Errorf("%w: a queue command without a user", ErrInvalid)
	}
	evs, err := decide(qs.users[userID])
	if err != nil {
		return nil, err
	}
	for i, ev := range evs {
		switch e := ev.(type) {
		case QueueTokenIssued:
			e.UserID = userID
			evs[i] = e
		case QueueTokenRevoked:
			e.UserID = userID
			evs[i] = e
		}
	}
	return evs, nil
}

// Apply returns the group after one event, applied to the user it names; other events, and
// queue events without a user, leave it unchanged.
func (qs QueueUsers) Apply(e Event) QueueUsers {
	user, ok := EventQueueUserID(e)
	if !ok || user == "" {
		return qs
	}
	if qs.users == nil {
		qs.users = make(map[string]QueueUser)
	}
	before := qs.users[user]
	after := before.Apply(e)
	qs.users[user] = after
	if ev, ok := e.(QueueTokenRevoked); ok && after.revoked && !before.revoked {
		qs.revoked = append(qs.revoked, revokedUser{user: user, token: ev.TokenID})
	}
	return qs
}

// Compact stamps the revocations applied since the last Compact with at, the time of the
// event applied last, and forgets each user whose latest token is still the one revoked
// EndedRetention before at. A forgotten user's next DecideIssue issues a new token, which is
// right: a revoked token is never valid again. A user whose token merely expired stays: the
// group cannot tell expiry (it depends on the admissions, which the queue gate decides, and
// on the clock), so only a revocation ends a user here. The repository calls it after every
// event, live and in replays, so every instance and every replay forgets the same users.
func (qs QueueUsers) Compact(at time.Time) QueueUsers {
	for i := len(qs.revoked) - 1; i >= 0 && qs.revoked[i].at.IsZero(); i-- {
		qs.revoked[i].at = at
	}
	horizon := at.Add(-EndedRetention)
	n := 0
	for ; n < len(qs.revoked) && qs.revoked[n].at.Before(horizon); n++ {
		r := qs.revoked[n]
		// A user who was issued a newer token since keeps it.
		if u, ok := qs.users[r.user]; ok && u.tokenID == r.token && u.revoked {
			delete(qs.users, r.user)
		}
	}
	if n > 0 {
		clear(qs.revoked[:n])
		qs.revoked = qs.revoked[n:]
	}
	return qs
}

// EventQueueUserID returns the user a queue token event is about.
func EventQueueUserID(e Event) (string, bool) {
	switch ev := e.(type) {
	case QueueTokenIssued:
		return ev.UserID, true
	case QueueTokenRevoked:
		return ev.UserID, true
	}
	return "", false
}
