package relay

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/booking-engine/booking/eventstore"
)

// consumer creates or updates the relay's durable consumer on stream.
func (r *Relay) consumer(ctx context.Context, stream string) (jetstream.Consumer, error) {
	c, err := r.js.CreateOrUpdateConsumer(ctx, stream, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "booking: facts to the data platform",
		DeliverPolicy: jetstream.DeliverAllPolicy,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       r.opts.AckWait,
		// The relay counts attempts itself (NumDelivered) and dead-letters; the server must
		// never drop a fact on its own.
		MaxDeliver:    -1,
		MaxAckPending: r.opts.MaxAckPending,
	})
	if err != nil {
		return nil, eventstore.Classify("relay: consumer on "+stream, err)
	}
	return c, nil
}

// wakeEvery bounds how long the fetch loop waits in one call for a message. The iterator
// decides whether to ask the server for more only when it is called; if a message arrives
// while its previous request is still being sent (an in-process server answers that fast), it
// can skip asking and wait forever for a message it never requested. Waking up and asking
// again repairs that within this bound; an idle wake-up costs no server round trip.
const wakeEvery = 250 * time.Millisecond

// renewAfter is how long a fetch loop may hear nothing before it replaces its iterator. The
// iterator's own missing-heartbeat check only runs while a call waits longer than wakeEvery,
// so this stands in for it: a pull request lost by the server (a leader change) would
// otherwise leave the loop waiting forever.
const renewAfter = time.Minute

// fetchLoop keeps an iterator on the consumer and hands its messages to dispatch, replacing
// the iterator when it fails or idles, and the consumer when it was deleted.
func (r *Relay) fetchLoop(ctx context.Context, stream string, c jetstream.Consumer) {
	for ctx.Err() == nil {
		it, err := c.Messages(jetstream.PullMaxMessages(1))
		if err == nil {
			err = r.consume(ctx, stream, it)
		}
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			continue // renewed after idling
		}
		r.log.Warn("relay: fetch failed, retrying", "stream", stream, "err", err)
		if !r.wait(ctx, time.Second) {
			return
		}
		if nc, cerr := r.consumer(ctx, stream); cerr == nil {
			c = nc // the consumer may have been deleted under us
		}
	}
}

// consume pulls facts one at a time. One at a time keeps at most one fetched fact per stream
// waiting for a delivery slot, which is what AckWait is sized for; commits without facts
// (seat events and the saga's internal steps only) are acknowledged without taking a slot. The iterator is always ended by draining rather than
// stopping, so a message already on its way is dispatched (or, at shutdown, handed back)
// instead of vanishing until AckWait. It returns nil when it ended the iterator for idling.
func (r *Relay) consume(ctx context.Context, stream string, it jetstream.MessagesContext) error {
	stop := context.AfterFunc(ctx, it.Drain)
	defer it.Stop()
	defer stop()
	var idle time.Duration
	renewing := false
	for {
		msg, err := it.Next(jetstream.NextMaxWait(wakeEvery))
		switch {
		case errors.Is(err, nats.ErrTimeout), errors.Is(err, jetstream.ErrNoHeartbeat):
			if idle += wakeEvery; idle >= r.renewAfter && !renewing {
				renewing = true
				it.Drain()
			}
			continue
		case renewing && errors.Is(err, jetstream.ErrMsgIteratorClosed):
			r.renewals.Add(1)
			return nil
		case err != nil:
			return err
		}
		idle = 0
		r.dispatch(ctx, stream, msg)
	}
}

// dispatch acknowledges commits without facts and starts the delivery of the facts of the
// others.
func (r *Relay) dispatch(ctx context.Context, stream string, msg jetstream.Msg) {
	meta, err := msg.Metadata()
	if err != nil {
		r.log.Error("relay: message without metadata", "stream", stream, "err", err)
		_ = msg.Term()
		return
	}
	envs, err := eventstore.DecodeCommit(msg.Data(), meta.Stream, meta.Sequence.Stream)
	if err != nil {
		// Nothing to deliver and nothing a retry could fix; the event store never writes this.
		r.log.Error("relay: undecodable commit skipped", "stream", stream, "seq", meta.Sequence.Stream, "err", err)
		_ = msg.TermWithReason("undecodable commit")
		return
	}
	var facts []pendingFact
	var seats map[string][]int
	seatsRead := false
	for _, env := range envs {
		if !IsFact(env.Type) {
			continue // seat events and the saga's internal steps
		}
		if env.AggregateID == "" {
			// A date's subject names no reservation, so it cannot stand in for one.
			if ref, ok := eventstore.RefFromSubject(msg.Subject()); ok && idKeys[ref.Type] != "" {
				env.AggregateType, env.AggregateID = ref.Type, ref.ID
			}
		}
		if env.AggregateType == eventstore.TypeReservation && !seatsRead {
			// Read once per commit, and only for commits with a reservation fact.
			seatsRead = true
			if seats, err = seatNosOf(envs); err != nil {
				r.log.Error("relay: a seat event of a commit not readable, its facts lack that seat", "stream", stream, "seq", meta.Sequence.Stream, "err", err)
			}
		}
		f, err := factOf(env, seats[env.AggregateID])
		if err != nil {
			r.log.Error("relay: fact not encodable, skipped", "stream", stream, "seq", env.Sequence, "eventId", env.EventID, "err", err)
			continue
		}
		facts = append(facts, pendingFact{env: env, fact: f})
	}
	if len(facts) == 0 {
		_ = msg.Ack()
		return
	}
	select {
	case r.slots <- struct{}{}:
	case <-ctx.Done():
		handBack(msg)
		return
	}
	r.work.Add(1)
	go func() {
		defer r.work.Done()
		defer func() { <-r.slots }()
		r.settle(ctx, msg, facts, int(meta.NumDelivered))
	}()
}

// pendingFact is one fact of a commit with the event it was made from.
type pendingFact struct {
	env  eventstore.Envelope
	fact Fact
}

// handBackDelay is how long a fact handed back at shutdown waits before it is redelivered.
// Handing it back at once could deliver it to a pull request of this very relay that the
// server has not yet seen withdrawn, where it would sit unread until AckWait; a moment's wait
// lets the withdrawal arrive first, and a relay elsewhere still gets the fact at once after.
const handBackDelay = 200 * time.Millisecond

// handBack returns an unsettled fact to JetStream for the next relay, rather than letting it
// wait out AckWait.
func handBack(msg jetstream.Msg) { _ = msg.NakWithDelay(handBackDelay) }
