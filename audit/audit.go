// Package audit checks an event log against the invariants of the booking engine: no seat
// held or sold twice at once, no seat in two live reservations, a reservation's seats moving
// together with it, every wallet's ledger balanced and never negative, every debit paid for or
// reversed, every CONFIRMED reservation paid by exactly one COMPLETED payment, every lapsed or
// cancelled hold released.
//
// It is pure: it is fed decoded events with their envelope metadata and produces a Report.
// Streams are independent, so events arrive in stream order per stream but in no particular
// order across streams: the checks within one aggregate run as its events arrive, and the
// checks that join aggregates run in Report, once everything has been read.
//
// A concert date is one consistency boundary: each command on it is one commit of the date's
// stream, holding the events of its seats and reservations, each with its own envelope
// aggregate (seat/… or reservation/…). So a hold's SeatHeld and ReservationHeld share a
// sequence (Index orders them), a confirmation sells its seats in its own commit, and an
// expiry, cancellation or refund releases them in its own. The checks that join a seat and a
// reservation compare commits (stream and sequence) rather than trust any order between
// commits; and since every event of a date is in one stream, the check that needs time (a
// seat in two live reservations at once) runs as the events arrive.
package audit

import (
	"fmt"
	"slices"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// Record is one stored event, decoded, with where it was stored.
type Record struct {
	AggregateType string
	AggregateID   string
	Stream        string
	Sequence      uint64
	// Index is the event's position in its commit: the events of one append share a
	// sequence.
	Index      int
	OccurredAt time.Time
	// Type is the stored type name; Event is nil when it could not be decoded, and
	// DecodeError then says why.
	Type        string
	Event       aggregates.Event
	DecodeError string
}

// Options tune the audit.
type Options struct {
	// AllowInFlight reports the states a saga passes through while it runs (a payment STARTED
	// or REFUNDING, and what follows from it) as warnings rather than violations. Leave it off
	// for a log at rest (after a shutdown or a recovery), where nothing should be in flight;
	// turn it on to audit a live server.
	AllowInFlight bool
	// Now is when the audit runs: a reservation still HELD at or after its heldUntil is
	// reported as a lapsed hold (a warning: the expiry sweeper settles it, on the next start
	// for a log at rest). The zero time leaves that check out.
	Now time.Time
}

// Auditor accumulates the state of every aggregate from the events it is fed. It is not safe
// for concurrent use.
type Auditor struct {
	opts    Options
	events  int
	charged int64
	streams map[string]position // stream → last position seen
	refs    map[string]struct{} // every aggregate seen, "type/id"
	found   sink

	concerts     map[string]aggregates.ConcertCreated
	seats        map[string]*seatState
	reservations map[string]*resState
	payments     map[string]*payState
	wallets      map[string]*walletState

	// Cross-aggregate facts, keyed by the saga's ID.
	movesOf    map[string][]seatMove // reservation → the seat events for it
	liveIn     map[string][]string   // seat → the reservations listing it that were live when last seen
	debits     map[string][]ledgerEntry
	refunds    map[string][]ledgerEntry
	paymentsOf map[string][]string // reservation → payments started for it
}

// commit names one append: the events of a commit share stream and sequence.
type commit struct {
	stream string
	seq    uint64
}

func commitOf(r *Record) commit { return commit{r.Stream, r.Sequence} }

func (c commit) String() string { return fmt.Sprintf("%s:%d", c.stream, c.seq) }

func (c commit) at() *Record { return &Record{Stream: c.stream, Sequence: c.seq} }

// New returns an empty auditor.
func New(opts Options) *Auditor {
	return &Auditor{
		opts:         opts,
		streams:      map[string]position{},
		refs:         map[string]struct{}{},
		concerts:     map[string]aggregates.ConcertCreated{},
		seats:        map[string]*seatState{},
		reservations: map[string]*resState{},
		payments:     map[string]*payState{},
		wallets:      map[string]*walletState{},
		movesOf:      map[string][]seatMove{},
		liveIn:       map[string][]string{},
		debits:       map[string][]ledgerEntry{},
		refunds:      map[string][]ledgerEntry{},
		paymentsOf:   map[string][]string{},
	}
}

// Ref names an aggregate the way findings do: "type/id".
func Ref(typ, id string) string { return typ + "/" + id }

// position is where an event sits in a stream: its commit's sequence and its index there.
type position struct {
	seq   uint64
	index int
}

func (p position) before(q position) bool {
	return p.seq < q.seq || (p.seq == q.seq && p.index < q.index)
}

// Add feeds one event. Events of one stream must come in stream order; streams may
// interleave in any way.
func (a *Auditor) Add(r Record) {
	a.events++
	at := position{r.Sequence, r.Index}
	if last, seen := a.streams[r.Stream]; seen && !last.before(at) {
		a.found.flag(violation, CheckOutOfOrder, Ref(r.AggregateType, r.AggregateID), &r,
			fmt.Sprintf("sequence %d (event %d of its commit) of %s came after %d (event %d)", r.Sequence, r.Index, r.Stream, last.seq, last.index))
	} else {
		a.streams[r.Stream] = at
	}
	ref := Ref(r.AggregateType, r.AggregateID)
	a.refs[ref] = struct{}{}
	if r.Event == nil {
		a.found.flag(violation, CheckUndecodable, ref, &r, fmt.Sprintf("%s event could not be decoded: %s", r.Type, r.DecodeError))
		return
	}
	switch r.AggregateType {
	case eventstore.TypeSeat:
		a.addSeat(r)
	case eventstore.TypeReservation:
		a.addReservation(r)
	case eventstore.TypePayment:
		a.addPayment(r)
	case eventstore.TypeWallet:
		a.addWallet(r)
	case eventstore.TypeConcert:
		switch ev := r.Event.(type) {
		case aggregates.ConcertCreated:
			a.concerts[ev.ConcertID] = ev
		default:
			a.foreign(r)
		}
	}
}

func (a *Auditor) foreign(r Record) {
	a.found.flag(violation, CheckForeignEvent, Ref(r.AggregateType, r.AggregateID), &r,
		fmt.Sprintf("%s is not an event of a %s", r.Type, r.AggregateType))
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
