package aggregates

import (
	"fmt"
	"time"
)

// Wallets is a group of users' wallets decided and committed together. A wallet alone is a
// poor boundary for group commit: one user rarely has two commands in flight, so every
// charge and debit was a commit (a message, an fsync) of its own. The wallets of many users
// sharing one state let the concurrent commands of different users go in one commit, while
// each decision still sees only its own user's wallet: no rule spans two wallets.
//
// Apply updates the state's maps in place (replaying a group is not copied per event), so a
// Wallets is owned by whoever applies to it: read it only where it is decided on, and keep
// the values its methods return, never the Wallets.
type Wallets struct {
	wallets map[string]Wallet // user → wallet; a user without events has none
	// settled and keyed list the references the wallets may forget, in the order they were
	// settled (see Compact): a charge's reference, a debit once it was given back. Without
	// them a wallet grows with every charge and payment its user ever made.
	settled, keyed expiring[walletRef]
}

// KeyedRetention is how long a wallet remembers what a client may repeat for as long as its
// Idempotency-Key holds: a charge made under a key, a debit reversed because its payment
// failed (recovery may run that payment again).
const KeyedRetention = 24 * time.Hour

// walletRef is one reference of a user's wallet that may be forgotten: a charge's, or a
// payment's debit (debit) once it was given back.
type walletRef struct {
	user  string
	id    string
	debit bool
}

// Wallet returns a copy of one user's wallet (an empty one for a user without events) that
// later commits of the group do not change.
func (ws Wallets) Wallet(userID string) Wallet { return ws.wallets[userID].Clone() }

// BalanceAfter returns one user's balance once evs, events decided on that user's wallet,
// are applied (Wallet.BalanceAfter), without copying the wallet.
func (ws Wallets) BalanceAfter(userID string, evs []Event) int64 {
	return ws.wallets[userID].BalanceAfter(evs)
}

// Clone returns a copy of the group that no later Apply to either changes. The repository
// takes one before deciding where other instances may win the append, to catch up from it.
func (ws Wallets) Clone() Wallets {
	c := Wallets{wallets: make(map[string]Wallet, len(ws.wallets)), settled: ws.settled.clone(), keyed: ws.keyed.clone()}
	for user, w := range ws.wallets {
		c.wallets[user] = w.Clone()
	}
	return c
}

// Decide decides a command of one user with one of Wallet's deciders on that user's wallet,
// and names the user on the events it causes, so that they are applied to that wallet and a
// reader of the log knows whose wallet each is about.
func (ws Wallets) Decide(userID string, decide func(Wallet) ([]Event, error)) ([]Event, error) {
	if userID == "" {
		return nil, fmt.Errorf("%w: a wallet command without a user", ErrInvalid)
	}
	evs, err := decide(ws.wallets[userID])
	if err != nil {
		return nil, err
	}
	for i, ev := range evs {
		evs[i] = withWalletUser(ev, userID)
	}
	return evs, nil
}

// Apply returns the group after one event, applied to the wallet its UserID names; other
// events, and wallet events without a user, leave it unchanged.
func (ws Wallets) Apply(e Event) Wallets {
	user, ok := EventWalletUserID(e)
	if !ok || user == "" {
		return ws
	}
	if ws.wallets == nil {
		ws.wallets = make(map[string]Wallet)
	}
	ws.wallets[user] = ws.wallets[user].Apply(e)
	switch ev := e.(type) {
	case PointsCharged:
		if ev.Reference != "" {
			ref := walletRef{user: user, id: ev.Reference}
			if KeyedReference(ev.Reference) {
				ws.keyed = ws.keyed.add(ref)
			} else {
				ws.settled = ws.settled.add(ref)
			}
		}
	case PointsRefunded:
		ref := walletRef{user: user, id: ev.PaymentID, debit: true}
		if ev.Reason == RefundReversal {
			ws.keyed = ws.keyed.add(ref)
		} else {
			ws.settled = ws.settled.add(ref)
		}
	}
	return ws
}

// KeyedReference reports whether a charge's reference was derived from a client's
// Idempotency-Key (a UUIDv5, as the application derives every ID of a keyed request), which
// the client may repeat for as long as the key holds. Any other reference is a fresh UUIDv7
// that only the engine's own retries repeat, within seconds.
func KeyedReference(ref string) bool { return len(ref) == 36 && ref[14] == '5' }

// Compact stamps the references settled since the last Compact with at, the time of the event
// applied last, and forgets those settled EndedRetention (KeyedRetention, for keyed ones)
// before it: a charge's reference, a given-back debit. A charge is then no longer recognised
// as a repeat, and a payment's debit is unknown (so a refund of it gives nothing back): the
// repeats that matter come within seconds (the engine's retries; recovery, every 30 s, of
// a payment whose refund was cut off), and a client's keyed repeats within the key's 24 h.
// The repository calls it after every event, live and in replays, so every instance and every
// replay of a group forgets the same references.
func (ws Wallets) Compact(at time.Time) Wallets {
	var settled, keyed []stamped[walletRef]
	ws.settled, settled = ws.settled.expire(at, EndedRetention)
	ws.keyed, keyed = ws.keyed.expire(at, KeyedRetention)
	for _, gone := range [2][]stamped[walletRef]{settled, keyed} {
		for _, r := range gone {
			w := ws.wallets[r.v.user]
			if r.v.debit {
				delete(w.debits, r.v.id)
				delete(w.refunded, r.v.id)
			} else {
				delete(w.charged, r.v.id)
			}
		}
	}
	return ws
}

// EventWalletUserID returns the user whose wallet a wallet event is about.
func EventWalletUserID(e Event) (string, bool) {
	switch ev := e.(type) {
	case PointsCharged:
		return ev.UserID, true
	case PointsDebited:
		return ev.UserID, true
	case PointsRefunded:
		return ev.UserID, true
	}
	return "", false
}

func withWalletUser(e Event, userID string) Event {
	switch ev := e.(type) {
	case PointsCharged:
		ev.UserID = userID
		return ev
	case PointsDebited:
		ev.UserID = userID
		return ev
	case PointsRefunded:
		ev.UserID = userID
		return ev
	}
	return e
}
