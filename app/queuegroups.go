package app

import (
	"context"
	"fmt"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// QueueEventRef names the queue user a token event of a queue group's commit is about (nil
// for another event), so that readers see token events as before, under queueuser/<user>,
// stored in the group's commits (eventstore.Event.Ref). Tools and tests that write queue
// commits by hand use it to write what the service writes.
func QueueEventRef(_ string, ev aggregates.Event) *eventstore.AggregateRef {
	if user, ok := aggregates.EventQueueUserID(ev); ok {
		return &eventstore.AggregateRef{Type: eventstore.TypeQueueUser, ID: user}
	}
	return nil
}

// queueGroups decides the queue commands of one user on the user's group
// (aggregates.QueueUsers, eventstore.QueueGroupOf), so that concurrent commands of different
// users share commits: with a commit each, the QUEUE stream's one fsync at a time capped the
// booking flow.
type queueGroups struct {
	repo *Repository[aggregates.QueueUsers]
}

func newQueueGroups(log eventstore.Store, clock Clock, obs Observer) queueGroups {
	// Every group stays cached: a cold group reads its whole history (nothing snapshots it);
	// Compact keeps a group to the users whose tokens were issued or revoked in the last
	// aggregates.EndedRetention; the queue index answers for the users it forgot.
	repo := NewRepository(log, eventstore.TypeQueueGroup, aggregates.QueueUsers.Apply, eventstore.QueueGroups, clock, obs)
	repo.owner = QueueEventRef
	repo.compact = aggregates.QueueUsers.Compact
	return queueGroups{repo: repo}
}

// Do decides one queue command of a user with decide, in a commit it may share with commands
// of other users of the group. It returns the commit's version (its QUEUE sequence), the
// events the command caused and the index of the first of them in the commit: where the log's
// readers see them, which a token's position is made of (queuePosition).
func (g queueGroups) Do(ctx context.Context, userID string, st step, decide func(aggregates.QueueUser) ([]aggregates.Event, error)) (uint64, []aggregates.Event, int, error) {
	o := g.repo.update(ctx, eventstore.QueueGroupOf(userID).ID, st, func(qs aggregates.QueueUsers) ([]aggregates.Event, error) {
		return qs.Decide(userID, decide)
	})
	if o.err != nil {
		return o.ver, nil, 0, o.err
	}
	if o.first+len(o.evs) > 1<<positionIndexBits {
		// Cannot happen while a commit holds at most maxBatch commands of one event each (see
		// the check below positionIndexBits); refuse rather than give two tokens one position.
		return o.ver, nil, 0, fmt.Errorf("queue commit of %d events: more than a position can index", o.first+len(o.evs))
	}
	return o.ver, o.evs, o.first, nil
}

// positionIndexBits is how many low bits of a token's position hold the token's index in its
// commit; the higher ones hold the commit's QUEUE sequence. Positions then increase strictly
// in the order the follower applies the tokens (by sequence, then by index), as a token's
// position did when it was its message's sequence, and every instance derives the same one.
const positionIndexBits = 10

// A queue commit holds at most maxBatch commands of one event each (QueueUser's deciders
// decide one), so its indexes fit in positionIndexBits; this fails to compile if they might not.
const _ = uint(1<<positionIndexBits - maxBatch)

// queuePosition is the position of the event at index of the QUEUE commit at seq.
func queuePosition(seq uint64, index int) uint64 { return seq<<positionIndexBits | uint64(index) }

// positionSeq is the QUEUE sequence of the commit that holds the token at position.
func positionSeq(position uint64) uint64 { return position >> positionIndexBits }
