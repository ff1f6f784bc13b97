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
	// touched lists the users whose latest token was issued or revoked, in the order of those
	// events, for Compact: without it the group grows with every user who ever took a token.
	touched expiring[touchedUser]
}

// touchedUser is a user whose latest token was issued (revoked false) or revoked.
type touchedUser struct {
	user    string
	token   string
	revoked bool
}

// User returns one user's queue place (an empty one for a user without events, or forgotten).
func (qs QueueUsers) User(userID string) QueueUser { return qs.users[userID] }

// Clone returns a copy of the group that no later Apply to either changes. The repository
// takes one before deciding where other instances may win the append, to catch up from it.
func (qs QueueUsers) Clone() QueueUsers {
	return QueueUsers{users: maps.Clone(qs.users), touched: qs.touched.clone()}
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
	if after == before {
		// A revocation of a token that is not the user's latest, or of a user the group has
		// forgotten (DecideRevoke on the queue index's word): nothing to remember.
		return qs
	}
	qs.users[user] = after
	qs.touched = qs.touched.add(touchedUser{user: user, token: after.tokenID, revoked: after.revoked})
	return qs
}

// Len returns how many users the group remembers.
func (qs QueueUsers) Len() int { return len(qs.users) }

// Compact stamps the issues and revocations applied since the last Compact with at, the time
// of the event applied last, and forgets each user whose latest token was issued, or revoked,
// EndedRetention before at and has not changed since. The group is then bounded by the users
// whose tokens were issued or revoked in the last EndedRetention, not by every user who ever
// took a token (most of a big sale's never pay).
//
// The group cannot tell whether a forgotten user's token is still waiting or active (that
// depends on the admissions, which the queue gate decides, and on the clock); the queue index
// can, and has long applied a token issued minutes ago: a forgotten user's commands take the
// user's latest token from it (IssueToken.CurrentTokenID, DecideRevoke on an empty QueueUser).
// The repository calls Compact after every event, live and in replays, so every instance and
// every replay forgets the same users.
func (qs QueueUsers) Compact(at time.Time) QueueUsers {
	var gone []stamped[touchedUser]
	qs.touched, gone = qs.touched.expire(at, EndedRetention)
	for _, r := range gone {
		// A user issued a newer token since, or whose token was revoked since, is kept: a
		// later entry stands for it.
		if u, ok := qs.users[r.v.user]; ok && u.tokenID == r.v.token && u.revoked == r.v.revoked {
			delete(qs.users, r.v.user)
		}
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
