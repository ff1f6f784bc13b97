package api

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// Limits of the seat-map streams.
const (
	// seatFeedBuffer is how many seat changes one stream may fall behind before it is told to
	// start over from a fresh snapshot.
	seatFeedBuffer = 256
	// maxSeatSubscribers bounds the open seat-map streams of one process; more are answered
	// 503 so that a flood of idle streams cannot exhaust memory.
	maxSeatSubscribers = 10_000
	// defaultHeartbeat is the interval of the ": ping" comment that keeps proxies from
	// closing an idle stream and lets the server notice a client that went away.
	defaultHeartbeat = 15 * time.Second
)

// Seat event types the feed turns into seat changes.
var (
	typeSeatHeld     = aggregates.SeatHeld{}.EventType()
	typeSeatReleased = aggregates.SeatReleased{}.EventType()
	typeSeatSold     = aggregates.SeatSold{}.EventType()
)

// SeatFeed fans the seat changes the read side applies out to the open seat-map streams
// (GET .../seats/stream). Wire Publish to projections.Engine.Subscribe: it is called after
// each committed batch of the seats projection, so a stream that re-reads the seat map after
// a change sees the change.
//
// Publish never blocks. Each stream has a buffer of seat changes; a stream whose buffer is
// full (a slow client) loses the change and is told to resynchronise: it discards what it has
// buffered and sends a fresh snapshot of the whole map, so a slow client is never dropped and
// never left with a wrong map.
type SeatFeed struct {
	active atomic.Int64 // open subscriptions; Publish returns at once while it is 0

	mu    sync.RWMutex
	dates map[string]map[*seatSub]struct{} // "concert.date" → its subscribers

	buffer    int
	heartbeat time.Duration
}

// NewSeatFeed returns a feed with no subscribers.
func NewSeatFeed() *SeatFeed {
	return &SeatFeed{dates: map[string]map[*seatSub]struct{}{}, buffer: seatFeedBuffer, heartbeat: defaultHeartbeat}
}

// seatChange is a seat's new status. The stream adds the price from its snapshot: prices
// never change once a concert is created.
type seatChange struct {
	seatNo int
	status aggregates.SeatStatus
}

// seatSub is one stream's subscription to one date.
type seatSub struct {
	key     string
	changes chan seatChange
	// lagged holds a token when a change was lost because changes was full.
	lagged chan struct{}
}

func dateKey(concertID, dateID string) string { return concertID + "." + dateID }

// Publish hands one applied event to the streams of its date. Events other than a seat's
// SeatHeld, SeatReleased and SeatSold are ignored. Safe for concurrent use.
func (f *SeatFeed) Publish(env eventstore.Envelope) {
	if f.active.Load() == 0 || env.AggregateType != eventstore.TypeSeat {
		return
	}
	var status aggregates.SeatStatus
	switch env.Type {
	case typeSeatHeld:
		status = aggregates.SeatHeldS
	case typeSeatReleased:
		status = aggregates.SeatAvailable
	case typeSeatSold:
		status = aggregates.SeatSoldS
	default:
		return
	}
	concertID, dateID, seatNo, ok := aggregates.ParseSeatID(env.AggregateID)
	if !ok {
		return
	}
	ch := seatChange{seatNo: seatNo, status: status}
	f.mu.RLock()
	defer f.mu.RUnlock()
	for sub := range f.dates[dateKey(concertID, dateID)] {
		select {
		case sub.changes <- ch:
		default:
			select {
			case sub.lagged <- struct{}{}:
			default: // already told
			}
		}
	}
}

// subscribe opens a subscription to one date's seat changes, or returns false when too many
// streams are open. Subscribe before reading the snapshot: a change that lands in between is
// then both in the snapshot and in the buffer, and applying it twice is harmless, whereas a
// change missed in between would leave the map wrong.
func (f *SeatFeed) subscribe(concertID, dateID string) (*seatSub, bool) {
	if f.active.Add(1) > maxSeatSubscribers {
		f.active.Add(-1)
		return nil, false
	}
	sub := &seatSub{key: dateKey(concertID, dateID), changes: make(chan seatChange, f.buffer), lagged: make(chan struct{}, 1)}
	f.mu.Lock()
	subs := f.dates[sub.key]
	if subs == nil {
		subs = map[*seatSub]struct{}{}
		f.dates[sub.key] = subs
	}
	subs[sub] = struct{}{}
	f.mu.Unlock()
	return sub, true
}

// unsubscribe ends a subscription. The channels stay open (Publish may hold a reference for
// a moment) and are collected with sub.
func (f *SeatFeed) unsubscribe(sub *seatSub) {
	f.mu.Lock()
	if subs := f.dates[sub.key]; subs != nil {
		if _, ok := subs[sub]; ok {
			delete(subs, sub)
			f.active.Add(-1)
		}
		if len(subs) == 0 {
			delete(f.dates, sub.key)
		}
	}
	f.mu.Unlock()
}

// drain discards the buffered changes; a fresh snapshot is about to replace them.
func (sub *seatSub) drain() {
	for {
		select {
		case <-sub.changes:
		default:
			return
		}
	}
}
