package aggregates

import "fmt"

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
	c := Wallets{wallets: make(map[string]Wallet, len(ws.wallets))}
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
