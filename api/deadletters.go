package api

import (
	"context"

	"github.com/booking-engine/booking/relay"
)

// RelayDeadLetters serves the admin dead-letter endpoints from the data-platform relay. Its
// errors pass through as the relay returns them: relay.ErrDeadLetterNotFound (404
// DEAD_LETTER_NOT_FOUND) for an id that is not on the list, relay.ErrDisabled for one that is
// but has no data platform to go to.
func RelayDeadLetters(r *relay.Relay) DeadLetters { return relayDeadLetters{r} }

type relayDeadLetters struct{ r *relay.Relay }

func (d relayDeadLetters) List(ctx context.Context) ([]DeadLetter, error) {
	dls, err := d.r.DeadLetters(ctx)
	out := make([]DeadLetter, len(dls))
	for i, dl := range dls {
		out[i] = DeadLetter{ID: dl.ID, EventID: dl.EventID, EventType: dl.EventType, Attempts: dl.Attempts, LastError: dl.LastError, FailedAt: dl.FailedAt}
	}
	return out, err
}

func (d relayDeadLetters) Redrive(ctx context.Context, id string) error { return d.r.Redrive(ctx, id) }
