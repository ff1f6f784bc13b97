package app

import (
	"context"
	"fmt"

	"github.com/booking-engine/booking/aggregates"
)

// Charge adds points to a user's wallet and returns the new balance. Concurrent charges of one
// wallet are serialised by its version, so every one counts.
func (s *Service) Charge(ctx context.Context, meta Meta, userID string, amount int64) (Wallet, error) {
	if !aggregates.ValidID(userID) {
		return Wallet{}, fmt.Errorf("user %q: %w", userID, aggregates.ErrInvalid)
	}
	ref := "charge/" + idFor(meta, "charge")
	w, err := s.wallets.Do(ctx, userID, meta.step(ref), func(w aggregates.Wallet) ([]aggregates.Event, error) {
		return w.DecideCharge(aggregates.Charge{Amount: amount, Reference: ref[len("charge/"):]})
	})
	if err != nil {
		return Wallet{}, fmt.Errorf("charge %s: %w", userID, err)
	}
	return Wallet{UserID: userID, Balance: w.Balance()}, nil
}
