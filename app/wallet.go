package app

import (
	"context"
	"fmt"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// Charge adds points to a user's wallet and returns the new balance. Concurrent charges of one
// wallet are serialised by its version, so every one counts.
func (s *Service) Charge(ctx context.Context, meta Meta, userID string, amount int64) (Wallet, error) {
	if !aggregates.ValidID(userID) {
		return Wallet{}, fmt.Errorf("user %q: %w", userID, aggregates.ErrInvalid)
	}
	ref := "charge/" + idFor(meta, "charge")
	balance, err := s.wallets.Do(ctx, userID, meta.step(ref), func(w aggregates.Wallet) ([]aggregates.Event, error) {
		return w.DecideCharge(aggregates.Charge{Amount: amount, Reference: ref[len("charge/"):]})
	})
	if err != nil {
		return Wallet{}, fmt.Errorf("charge %s: %w", userID, err)
	}
	return Wallet{UserID: userID, Balance: balance}, nil
}

// WalletEventRef names the wallet an event of a wallet group's commit is about (nil for
// another event), so that readers see wallet events as before, stored in the group's commits
// (eventstore.Event.Ref). Tools and tests that write wallet commits by hand use it to write
// what the service writes.
func WalletEventRef(_ string, ev aggregates.Event) *eventstore.AggregateRef {
	if user, ok := aggregates.EventWalletUserID(ev); ok {
		return &eventstore.AggregateRef{Type: eventstore.TypeWallet, ID: user}
	}
	return nil
}

// walletGroups decides the commands of one user's wallet on the user's group
// (aggregates.Wallets, eventstore.WalletGroupOf), so that concurrent commands of different
// users of a group share commits: a wallet's own commands rarely overlap, and a commit each
// made every charge and debit an fsync of its own.
type walletGroups struct {
	repo *Repository[aggregates.Wallets]
}

func newWalletGroups(log eventstore.Store, clock Clock, obs Observer) walletGroups {
	// Every group stays cached: a cold group reads its whole history (nothing snapshots it),
	// and WalletGroups states hold every wallet anyway.
	repo := NewRepository(log, eventstore.TypeWalletGroup, aggregates.Wallets.Apply, eventstore.WalletGroups, clock, obs)
	repo.owner = WalletEventRef
	repo.compact = aggregates.Wallets.Compact
	return walletGroups{repo: repo}
}

// Do decides one command of a user's wallet with decide, in a commit it may share with
// commands of other users of the group, and returns the user's balance as its command left it
// (as it is, for a no-op). The balance is taken while the decision runs under the group's
// lock: later commits update the group's maps in place.
func (g walletGroups) Do(ctx context.Context, userID string, st step, decide func(aggregates.Wallet) ([]aggregates.Event, error)) (int64, error) {
	var balance int64
	_, err := g.repo.Do(ctx, eventstore.WalletGroupOf(userID).ID, st, func(ws aggregates.Wallets) ([]aggregates.Event, error) {
		evs, err := ws.Decide(userID, decide)
		balance = ws.BalanceAfter(userID, evs)
		return evs, err
	})
	return balance, err
}

// Wallet returns a user's wallet as the log has it (Repository.Read).
func (g walletGroups) Wallet(ctx context.Context, userID string) (aggregates.Wallet, error) {
	var w aggregates.Wallet
	err := g.repo.Read(ctx, eventstore.WalletGroupOf(userID).ID, func(ws aggregates.Wallets) { w = ws.Wallet(userID) })
	return w, err
}

// EventRef names the aggregate an event of a commit on aggregate commit belongs to, as the
// service stores it: a seat or reservation in a date's commits (DateEventRef), a wallet in a
// wallet group's (WalletEventRef), a queue user in a queue group's (QueueEventRef); nil for an
// event of the commit's own aggregate. Tools and
// tests that write commits by hand set eventstore.Event.Ref with it.
func EventRef(commit eventstore.AggregateRef, ev aggregates.Event) *eventstore.AggregateRef {
	switch commit.Type {
	case eventstore.TypeDate:
		return DateEventRef(commit.ID, ev)
	case eventstore.TypeWalletGroup:
		return WalletEventRef(commit.ID, ev)
	case eventstore.TypeQueueGroup:
		return QueueEventRef(commit.ID, ev)
	}
	return nil
}
