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
	"strings"
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

// seatMove is a seat event for a reservation.
type seatMove struct {
	seat, user string
	kind       moveKind
	in         commit
}

type moveKind int

const (
	moveHeld     moveKind = iota // SeatHeld
	moveSold                     // SeatSold
	moveReleased                 // SeatReleased
)

type ledgerEntry struct {
	wallet string
	amount int64
	reason string
	stream string
	seq    uint64
}

type seatState struct {
	stream      string
	status      aggregates.SeatStatus // "" while available
	reservation string
	heldUntil   time.Time
	soldPayment string
	since       uint64 // sequence of the event that gave the seat its current holder
}

type resState struct {
	stream        string
	opened        bool
	held          aggregates.ReservationHeld
	seats         []string // the seat IDs it lists
	openedIn      commit
	confirmedIn   commit // zero until confirmed
	endedIn       commit // zero until expired or cancelled
	status        aggregates.ReservationStatus
	lock          string
	confirmedBy   string
	cancelReason  string
	cancelPayment string
	lastSeq       uint64
}

type payState struct {
	stream  string
	started aggregates.PaymentStarted
	status  aggregates.PaymentStatus
	lastSeq uint64
}

type walletState struct {
	stream   string
	balance  int64
	negative bool // the balance is below zero now
	debited  map[string]int64
	refunded map[string]bool
}

// severity says where a finding goes in the report.
type severity int

const (
	violation severity = iota
	inFlight           // a violation, unless Options.AllowInFlight
	warning
)

type finding struct {
	Finding
	sev severity
}

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

// sink collects findings.
type sink struct{ list []finding }

// flag records a finding about aggregate; r, when not nil, says where in the log it was seen.
func (s *sink) flag(sev severity, check, aggregate string, r *Record, msg string, related ...string) {
	f := Finding{Check: check, Aggregate: aggregate, Message: msg, Related: related}
	if r != nil {
		f.Stream, f.Sequence = r.Stream, r.Sequence
	}
	s.list = append(s.list, finding{Finding: f, sev: sev})
}

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

func (a *Auditor) addSeat(r Record) {
	id := r.AggregateID
	ref := Ref(eventstore.TypeSeat, id)
	s := a.seats[id]
	if s == nil {
		s = &seatState{stream: r.Stream}
		a.seats[id] = s
	}
	holder := func() string {
		return fmt.Sprintf("%s (since %s:%d)", describeSeat(s), s.stream, s.since)
	}
	switch ev := r.Event.(type) {
	case aggregates.SeatHeld:
		if s.status != "" {
			msg := fmt.Sprintf("held for reservation %s while %s", ev.ReservationID, holder())
			a.found.flag(violation, CheckSeatDoubleHold, ref, &r, msg, Ref(eventstore.TypeReservation, s.reservation), Ref(eventstore.TypeReservation, ev.ReservationID))
		}
		*s = seatState{stream: s.stream, status: aggregates.SeatHeldS, reservation: ev.ReservationID, heldUntil: ev.HeldUntil, since: r.Sequence}
		a.movesOf[ev.ReservationID] = append(a.movesOf[ev.ReservationID], seatMove{seat: id, user: ev.UserID, kind: moveHeld, in: commitOf(&r)})
	case aggregates.SeatSold:
		switch {
		case s.status == aggregates.SeatSoldS:
			msg := fmt.Sprintf("sold to reservation %s (payment %s) while already %s", ev.ReservationID, ev.PaymentID, holder())
			a.found.flag(violation, CheckSeatDoubleSale, ref, &r, msg, Ref(eventstore.TypeReservation, s.reservation), Ref(eventstore.TypeReservation, ev.ReservationID))
		case s.status == "":
			a.found.flag(violation, CheckSeatSoldWithoutHold, ref, &r,
				fmt.Sprintf("sold to reservation %s (payment %s) while AVAILABLE", ev.ReservationID, ev.PaymentID), Ref(eventstore.TypeReservation, ev.ReservationID))
		case s.reservation != ev.ReservationID:
			msg := fmt.Sprintf("sold to reservation %s (payment %s) while %s", ev.ReservationID, ev.PaymentID, holder())
			a.found.flag(violation, CheckSeatSoldWithoutHold, ref, &r, msg, Ref(eventstore.TypeReservation, ev.ReservationID), Ref(eventstore.TypeReservation, s.reservation))
		}
		if s.reservation != ev.ReservationID {
			s.since = r.Sequence
		}
		s.status, s.reservation, s.soldPayment = aggregates.SeatSoldS, ev.ReservationID, ev.PaymentID
		a.movesOf[ev.ReservationID] = append(a.movesOf[ev.ReservationID], seatMove{seat: id, kind: moveSold, in: commitOf(&r)})
	case aggregates.SeatReleased:
		switch {
		case s.status == "":
			a.found.flag(violation, CheckSeatBadRelease, ref, &r,
				fmt.Sprintf("released for reservation %s while AVAILABLE", ev.ReservationID), Ref(eventstore.TypeReservation, ev.ReservationID))
		case s.reservation != ev.ReservationID:
			msg := fmt.Sprintf("released for reservation %s while %s", ev.ReservationID, holder())
			a.found.flag(violation, CheckSeatBadRelease, ref, &r, msg, Ref(eventstore.TypeReservation, ev.ReservationID), Ref(eventstore.TypeReservation, s.reservation))
		case s.status == aggregates.SeatSoldS && ev.Reason != aggregates.ReleaseRefunded:
			a.found.flag(violation, CheckSeatBadRelease, ref, &r,
				fmt.Sprintf("sold seat released for reservation %s with reason %q: only a refund frees a sold seat", ev.ReservationID, ev.Reason),
				Ref(eventstore.TypeReservation, ev.ReservationID))
		}
		*s = seatState{stream: s.stream, since: r.Sequence}
		a.movesOf[ev.ReservationID] = append(a.movesOf[ev.ReservationID], seatMove{seat: id, kind: moveReleased, in: commitOf(&r)})
	default:
		a.foreign(r)
	}
}

func (a *Auditor) addReservation(r Record) {
	id := r.AggregateID
	ref := Ref(eventstore.TypeReservation, id)
	s := a.reservations[id]
	if s == nil {
		s = &resState{stream: r.Stream}
		a.reservations[id] = s
	}
	s.lastSeq = r.Sequence
	bad := func(format string, args ...any) {
		a.found.flag(violation, CheckReservationTransition, ref, &r, fmt.Sprintf(format, args...))
	}
	if _, opens := r.Event.(aggregates.ReservationHeld); !opens && !s.opened {
		bad("%s before the reservation was opened", r.Type)
	}
	switch ev := r.Event.(type) {
	case aggregates.ReservationHeld:
		if s.opened {
			bad("opened again (it was opened for seat %s)", aggregates.SeatID(s.held.ConcertID, s.held.DateID, s.held.SeatNo))
		}
		if ev.ReservationID != id {
			bad("ReservationHeld names reservation %s", ev.ReservationID)
		}
		s.opened, s.held, s.status, s.openedIn = true, ev, aggregates.ReservationHeldS, commitOf(&r)
		s.seats = seatsOf(ev)
		a.claimSeats(r, id)
	case aggregates.ReservationPaymentStarted:
		switch {
		case s.opened && s.status != aggregates.ReservationHeldS:
			bad("locked for payment %s while %s", ev.PaymentID, s.status)
		case s.lock != "":
			bad("locked for payment %s while locked for payment %s", ev.PaymentID, s.lock)
		}
		s.lock = ev.PaymentID
	case aggregates.ReservationPaymentAborted:
		if s.opened && (s.status != aggregates.ReservationHeldS || s.lock != ev.PaymentID) {
			bad("payment %s aborted without holding the lock (status %s, lock %q)", ev.PaymentID, s.status, s.lock)
		}
		s.lock = ""
	case aggregates.ReservationConfirmed:
		switch {
		case s.opened && s.status != aggregates.ReservationHeldS:
			bad("confirmed by payment %s while %s", ev.PaymentID, s.status)
		case s.opened && s.lock != ev.PaymentID:
			bad("confirmed by payment %s, which did not hold the lock (lock %q)", ev.PaymentID, s.lock)
		}
		s.status, s.confirmedBy, s.lock, s.confirmedIn = aggregates.ReservationConfirmedS, ev.PaymentID, "", commitOf(&r)
	case aggregates.ReservationExpired:
		if s.opened && s.status != aggregates.ReservationHeldS {
			bad("expired while %s", s.status)
		}
		s.status, s.lock, s.endedIn = aggregates.ReservationExpiredS, "", commitOf(&r)
	case aggregates.ReservationCancelled:
		switch ev.Reason {
		case aggregates.ReleaseCancelled:
			if s.opened && s.status != aggregates.ReservationHeldS {
				bad("cancelled while %s", s.status)
			}
		case aggregates.ReleaseRefunded:
			if s.opened && (s.status != aggregates.ReservationConfirmedS || s.confirmedBy != ev.PaymentID) {
				bad("cancelled for the refund of payment %s while %s", ev.PaymentID, confirmation(s))
			}
		default:
			bad("cancelled with unknown reason %q", ev.Reason)
		}
		s.status, s.lock, s.cancelReason, s.cancelPayment = aggregates.ReservationCancelledS, "", ev.Reason, ev.PaymentID
		s.endedIn = commitOf(&r)
	default:
		a.foreign(r)
	}
}

// seatsOf returns the seat IDs a reservation lists: SeatNos, or SeatNo for an event written
// before reservations had several seats.
func seatsOf(h aggregates.ReservationHeld) []string {
	nos := h.SeatNos
	if len(nos) == 0 {
		nos = []int{h.SeatNo}
	}
	ids := make([]string, len(nos))
	for i, n := range nos {
		ids[i] = aggregates.SeatID(h.ConcertID, h.DateID, n)
	}
	return ids
}

// live reports whether a reservation keeps its seats from others: HELD or CONFIRMED.
func live(s *resState) bool {
	return s != nil && (s.status == aggregates.ReservationHeldS || s.status == aggregates.ReservationConfirmedS)
}

// claimSeats records that reservation id, just opened, lists its seats, and flags each seat
// that a reservation still live lists too. Every event of a date is in the date's stream, so
// the order they arrive in is the order they happened in.
func (a *Auditor) claimSeats(r Record, id string) {
	for _, sid := range a.reservations[id].seats {
		var still []string
		for _, other := range a.liveIn[sid] {
			if other == id || !live(a.reservations[other]) {
				continue
			}
			still = append(still, other)
			a.found.flag(violation, CheckSeatTwoReservations, Ref(eventstore.TypeSeat, sid), &r,
				fmt.Sprintf("listed by reservation %s while reservation %s, %s, lists it", id, other, a.reservations[other].status),
				Ref(eventstore.TypeReservation, other), Ref(eventstore.TypeReservation, id))
		}
		a.liveIn[sid] = append(still, id)
	}
}

func (a *Auditor) addPayment(r Record) {
	id := r.AggregateID
	ref := Ref(eventstore.TypePayment, id)
	s := a.payments[id]
	if s == nil {
		s = &payState{stream: r.Stream}
		a.payments[id] = s
	}
	s.lastSeq = r.Sequence
	from := func(want aggregates.PaymentStatus) {
		if s.status != want {
			was := string(s.status)
			if was == "" {
				was = "not started"
			}
			a.found.flag(violation, CheckPaymentTransition, ref, &r, fmt.Sprintf("%s while %s", r.Type, was))
		}
	}
	switch ev := r.Event.(type) {
	case aggregates.PaymentStarted:
		if s.status != "" {
			a.found.flag(violation, CheckPaymentTransition, ref, &r, fmt.Sprintf("started again while %s", s.status))
		}
		if ev.PaymentID != id {
			a.found.flag(violation, CheckPaymentTransition, ref, &r, fmt.Sprintf("PaymentStarted names payment %s", ev.PaymentID))
		}
		s.started, s.status = ev, aggregates.PaymentStartedS
		a.paymentsOf[ev.ReservationID] = append(a.paymentsOf[ev.ReservationID], id)
	case aggregates.PaymentCompleted:
		from(aggregates.PaymentStartedS)
		s.status = aggregates.PaymentCompletedS
	case aggregates.PaymentFailed:
		from(aggregates.PaymentStartedS)
		s.status = aggregates.PaymentFailedS
	case aggregates.PaymentRefundStarted:
		from(aggregates.PaymentCompletedS)
		s.status = aggregates.PaymentRefundingS
	case aggregates.PaymentRefunded:
		from(aggregates.PaymentRefundingS)
		s.status = aggregates.PaymentRefundedS
	default:
		a.foreign(r)
	}
}

func (a *Auditor) addWallet(r Record) {
	id := r.AggregateID
	ref := Ref(eventstore.TypeWallet, id)
	w := a.wallets[id]
	if w == nil {
		w = &walletState{stream: r.Stream, debited: map[string]int64{}, refunded: map[string]bool{}}
		a.wallets[id] = w
	}
	add := func(delta int64) {
		sum := w.balance + delta
		// Signed overflow wraps around: the sum moves against the sign of delta.
		if (delta > 0 && sum < w.balance) || (delta < 0 && sum > w.balance) {
			a.found.flag(violation, CheckWalletAmount, ref, &r, fmt.Sprintf("balance %d overflows by %+d", w.balance, delta))
			return
		}
		w.balance = sum
	}
	switch ev := r.Event.(type) {
	case aggregates.PointsCharged:
		if ev.Amount < aggregates.MinCharge {
			a.found.flag(violation, CheckWalletAmount, ref, &r, fmt.Sprintf("charge of %d points (reference %s)", ev.Amount, ev.Reference))
		}
		add(ev.Amount)
		a.charged += ev.Amount
	case aggregates.PointsDebited:
		if ev.Amount < 0 {
			a.found.flag(violation, CheckWalletAmount, ref, &r, fmt.Sprintf("debit of %d points for payment %s", ev.Amount, ev.PaymentID), Ref(eventstore.TypePayment, ev.PaymentID))
		}
		add(-ev.Amount)
		if _, again := w.debited[ev.PaymentID]; !again {
			w.debited[ev.PaymentID] = ev.Amount
		}
		a.debits[ev.PaymentID] = append(a.debits[ev.PaymentID], ledgerEntry{wallet: id, amount: ev.Amount, stream: r.Stream, seq: r.Sequence})
	case aggregates.PointsRefunded:
		amount, debited := w.debited[ev.PaymentID]
		switch {
		case !debited:
			a.found.flag(violation, CheckWalletRefundWithoutDebit, ref, &r,
				fmt.Sprintf("refund of %d points for payment %s, which never debited this wallet", ev.Amount, ev.PaymentID), Ref(eventstore.TypePayment, ev.PaymentID))
		case w.refunded[ev.PaymentID]:
			a.found.flag(violation, CheckWalletDoubleRefund, ref, &r,
				fmt.Sprintf("debit of payment %s refunded again (%d points, reason %s)", ev.PaymentID, ev.Amount, ev.Reason), Ref(eventstore.TypePayment, ev.PaymentID))
		case amount != ev.Amount:
			a.found.flag(violation, CheckWalletAmount, ref, &r,
				fmt.Sprintf("refund of %d points for payment %s, which debited %d", ev.Amount, ev.PaymentID, amount), Ref(eventstore.TypePayment, ev.PaymentID))
		}
		if ev.Reason != aggregates.RefundReversal && ev.Reason != aggregates.RefundRefund {
			a.found.flag(violation, CheckWalletAmount, ref, &r, fmt.Sprintf("refund for payment %s with unknown reason %q", ev.PaymentID, ev.Reason), Ref(eventstore.TypePayment, ev.PaymentID))
		}
		if debited {
			w.refunded[ev.PaymentID] = true
		}
		add(ev.Amount)
		a.refunds[ev.PaymentID] = append(a.refunds[ev.PaymentID], ledgerEntry{wallet: id, amount: ev.Amount, reason: ev.Reason, stream: r.Stream, seq: r.Sequence})
	default:
		a.foreign(r)
		return
	}
	// Report each dip below zero once, where it happens.
	if w.balance < 0 && !w.negative {
		a.found.flag(violation, CheckWalletNegative, ref, &r, fmt.Sprintf("balance %d after %s", w.balance, r.Type))
	}
	w.negative = w.balance < 0
}

// Report runs the checks that join aggregates and returns every finding so far. It does not
// change the auditor: more events may be added and Report called again.
func (a *Auditor) Report() Report {
	found := sink{list: slices.Clone(a.found.list)}
	a.crossCheck(&found)

	rep := Report{
		Events:     a.events,
		Streams:    len(a.streams),
		Aggregates: map[string]int{},
		Violations: []Finding{},
		Warnings:   []Finding{},
	}
	for ref := range a.refs {
		typ, _, _ := strings.Cut(ref, "/")
		rep.Aggregates[typ]++
	}
	for _, w := range a.wallets {
		rep.Ledger.Balance += w.balance
	}
	for _, es := range a.debits {
		for _, e := range es {
			rep.Ledger.Debited += e.amount
		}
	}
	for _, es := range a.refunds {
		for _, e := range es {
			rep.Ledger.Refunded += e.amount
		}
	}
	rep.Ledger.Charged = a.charged

	for _, f := range found.list {
		switch {
		case f.sev == warning, f.sev == inFlight && a.opts.AllowInFlight:
			f.InFlight = f.sev == inFlight
			rep.Warnings = append(rep.Warnings, f.Finding)
		default:
			f.InFlight = f.sev == inFlight
			rep.Violations = append(rep.Violations, f.Finding)
		}
	}
	sortFindings(rep.Violations)
	sortFindings(rep.Warnings)
	return rep
}

func sortFindings(fs []Finding) {
	slices.SortStableFunc(fs, func(x, y Finding) int {
		if c := strings.Compare(x.Check, y.Check); c != 0 {
			return c
		}
		if c := strings.Compare(x.Aggregate, y.Aggregate); c != 0 {
			return c
		}
		if c := strings.Compare(x.Stream, y.Stream); c != 0 {
			return c
		}
		if x.Sequence != y.Sequence {
			if x.Sequence < y.Sequence {
				return -1
			}
			return 1
		}
		return strings.Compare(x.Message, y.Message)
	})
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// crossCheck adds to out the findings that need several aggregates.
func (a *Auditor) crossCheck(out *sink) {
	a.checkDebits(out)
	a.checkPayments(out)
	a.checkReservations(out)
	a.checkOrphanHolds(out)
	a.checkSeats(out)
}

// checkDebits: no payment debited twice, and every debit paid for or reversed.
func (a *Auditor) checkDebits(out *sink) {
	for _, pid := range sortedKeys(a.debits) {
		ds := a.debits[pid]
		pref := Ref(eventstore.TypePayment, pid)
		if len(ds) > 1 {
			where := make([]string, len(ds))
			related := make([]string, 0, len(ds))
			for i, d := range ds {
				where[i] = fmt.Sprintf("%d points from wallet %s at %s:%d", d.amount, d.wallet, d.stream, d.seq)
				if !slices.Contains(related, Ref(eventstore.TypeWallet, d.wallet)) {
					related = append(related, Ref(eventstore.TypeWallet, d.wallet))
				}
			}
			out.flag(violation, CheckPaymentDoubleDebit, pref, nil,
				fmt.Sprintf("debited %d times: %s", len(ds), strings.Join(where, "; ")), related...)
		}
		p := a.payments[pid]
		for _, d := range ds {
			wref := Ref(eventstore.TypeWallet, d.wallet)
			at := &Record{Stream: d.stream, Sequence: d.seq}
			reversed := a.reversed(pid, d.wallet)
			if p == nil {
				if !reversed {
					out.flag(violation, CheckDebitUnpaid, wref, at,
						fmt.Sprintf("debit of %d points for payment %s, which was never started, is not reversed", d.amount, pid), pref)
				}
				continue
			}
			if p.started.UserID != d.wallet {
				out.flag(violation, CheckDebitUnpaid, wref, at,
					fmt.Sprintf("debit of %d points for payment %s of user %s", d.amount, pid, p.started.UserID), pref)
			}
			switch p.status {
			case aggregates.PaymentCompletedS, aggregates.PaymentRefundingS, aggregates.PaymentRefundedS:
				if d.amount != p.started.Amount {
					out.flag(violation, CheckPaymentAmount, pref, at,
						fmt.Sprintf("%s payment of %d points debited %d from wallet %s", p.status, p.started.Amount, d.amount, d.wallet), wref)
				}
				if p.status == aggregates.PaymentCompletedS && reversed {
					out.flag(violation, CheckPaymentRefund, pref, nil,
						fmt.Sprintf("COMPLETED, yet its debit was returned to wallet %s", d.wallet), wref)
				}
				if p.status == aggregates.PaymentRefundedS && !reversed {
					out.flag(violation, CheckPaymentRefund, pref, nil,
						fmt.Sprintf("REFUNDED, yet its %d points were never returned to wallet %s", d.amount, d.wallet), wref)
				}
			case aggregates.PaymentFailedS:
				if !reversed {
					out.flag(violation, CheckDebitUnpaid, wref, at,
						fmt.Sprintf("debit of %d points for FAILED payment %s is not reversed", d.amount, pid), pref)
				}
			}
			// A STARTED payment is reported as in flight by checkPayments.
		}
	}
}

func (a *Auditor) reversed(pid, wallet string) bool {
	for _, r := range a.refunds[pid] {
		if r.wallet == wallet {
			return true
		}
	}
	return false
}

// checkPayments: nothing left in flight, and every paid payment debited and matched by its
// reservation.
func (a *Auditor) checkPayments(out *sink) {
	for _, pid := range sortedKeys(a.payments) {
		p := a.payments[pid]
		pref := Ref(eventstore.TypePayment, pid)
		rid := p.started.ReservationID
		rref := Ref(eventstore.TypeReservation, rid)
		if p.status == "" {
			out.flag(violation, CheckPaymentTransition, pref, nil, "events of a payment that was never started")
			continue
		}
		switch p.status {
		case aggregates.PaymentStartedS:
			msg := fmt.Sprintf("still STARTED: reservation %s, user %s, %d points", rid, p.started.UserID, p.started.Amount)
			if len(a.debits[pid]) > 0 && !a.reversed(pid, p.started.UserID) {
				msg += ", debited and not yet paid for"
			}
			out.flag(inFlight, CheckPaymentInFlight, pref, nil, msg, rref, Ref(eventstore.TypeWallet, p.started.UserID))
			continue
		case aggregates.PaymentRefundingS:
			out.flag(inFlight, CheckPaymentInFlight, pref, nil,
				fmt.Sprintf("still REFUNDING: reservation %s, user %s", rid, p.started.UserID), rref, Ref(eventstore.TypeWallet, p.started.UserID))
			continue
		case aggregates.PaymentFailedS:
			continue
		}
		// COMPLETED or REFUNDED: the points were taken, the reservation confirmed.
		if len(a.debits[pid]) == 0 {
			out.flag(violation, CheckPaymentWithoutDebit, pref, nil,
				fmt.Sprintf("%s without any debit (user %s, %d points)", p.status, p.started.UserID, p.started.Amount), Ref(eventstore.TypeWallet, p.started.UserID))
		}
		res := a.reservations[rid]
		if res == nil || !res.opened {
			out.flag(violation, CheckPaymentReservation, pref, nil, fmt.Sprintf("%s payment of reservation %s, which was never opened", p.status, rid), rref)
			continue
		}
		if res.held.UserID != p.started.UserID {
			out.flag(violation, CheckPaymentReservation, pref, nil,
				fmt.Sprintf("payment of user %s for reservation %s of user %s", p.started.UserID, rid, res.held.UserID), rref)
		}
		if res.held.Price != p.started.Amount {
			out.flag(violation, CheckPaymentAmount, pref, nil,
				fmt.Sprintf("%d points paid for reservation %s priced %d", p.started.Amount, rid, res.held.Price), rref)
		}
		switch p.status {
		case aggregates.PaymentCompletedS:
			if res.status != aggregates.ReservationConfirmedS || res.confirmedBy != pid {
				out.flag(violation, CheckPaymentReservation, pref, nil,
					fmt.Sprintf("COMPLETED, but reservation %s is %s", rid, confirmation(res)), rref)
			}
		case aggregates.PaymentRefundedS:
			if res.status != aggregates.ReservationCancelledS || res.cancelReason != aggregates.ReleaseRefunded || res.cancelPayment != pid {
				out.flag(violation, CheckPaymentRefund, pref, nil,
					fmt.Sprintf("REFUNDED, but reservation %s is %s", rid, confirmation(res)), rref)
			}
		}
	}
}

// checkReservations: every CONFIRMED reservation has exactly one COMPLETED payment and its
// seats SOLD; no payment lock is left behind; every expired or cancelled reservation released
// its seats; a reservation's seats move with it and end in one state.
func (a *Auditor) checkReservations(out *sink) {
	for _, rid := range sortedKeys(a.reservations) {
		res := a.reservations[rid]
		rref := Ref(eventstore.TypeReservation, rid)
		if !res.opened {
			continue // reported as it was read
		}

		var paid []string // payments of this reservation that took its money and kept it
		for _, pid := range a.paymentsOf[rid] {
			switch a.payments[pid].status {
			case aggregates.PaymentCompletedS, aggregates.PaymentRefundingS, aggregates.PaymentRefundedS:
				paid = append(paid, pid)
			}
		}
		if len(paid) > 1 {
			related := make([]string, len(paid))
			for i, pid := range paid {
				related[i] = Ref(eventstore.TypePayment, pid)
			}
			out.flag(violation, CheckReservationPayments, rref, nil,
				fmt.Sprintf("%d payments completed: %s", len(paid), strings.Join(paid, ", ")), related...)
		}

		heldFor := a.checkMoves(out, rid, res)
		a.checkSeatsEndTogether(out, rid, res)
		hasSeat := func(sid string) bool {
			s := a.seats[sid]
			return s != nil && s.reservation == rid && s.status != ""
		}

		switch res.status {
		case aggregates.ReservationHeldS:
			if res.lock != "" {
				p := a.payments[res.lock]
				switch {
				case p == nil:
					out.flag(violation, CheckReservationLock, rref, nil, fmt.Sprintf("locked for payment %s, which was never started", res.lock), Ref(eventstore.TypePayment, res.lock))
				case p.status != aggregates.PaymentStartedS:
					out.flag(violation, CheckReservationLock, rref, nil, fmt.Sprintf("still locked for payment %s, which is %s", res.lock, p.status), Ref(eventstore.TypePayment, res.lock))
				}
			}
			for _, sid := range res.seats {
				if slices.Contains(heldFor, sid) && !hasSeat(sid) {
					out.flag(violation, CheckReservationSeat, rref, nil,
						fmt.Sprintf("HELD, but its seat %s is %s", sid, a.seatDescription(sid)), Ref(eventstore.TypeSeat, sid))
				}
			}
			if !a.opts.Now.IsZero() && !a.opts.Now.Before(res.held.HeldUntil) {
				out.flag(warning, CheckReservationLapsed, rref, nil,
					fmt.Sprintf("still HELD, though its hold lapsed at %s; the expiry sweeper settles it", res.held.HeldUntil.UTC().Format(time.RFC3339)))
			}
		case aggregates.ReservationConfirmedS:
			p := a.payments[res.confirmedBy]
			pref := Ref(eventstore.TypePayment, res.confirmedBy)
			switch {
			case p == nil:
				out.flag(violation, CheckReservationUnpaid, rref, nil, fmt.Sprintf("CONFIRMED by payment %s, which was never started", res.confirmedBy), pref)
				continue
			case p.started.ReservationID != rid:
				out.flag(violation, CheckReservationUnpaid, rref, nil,
					fmt.Sprintf("CONFIRMED by payment %s, which paid for reservation %s", res.confirmedBy, p.started.ReservationID), pref)
				continue
			case p.status == aggregates.PaymentStartedS, p.status == aggregates.PaymentRefundingS:
				continue // in flight, reported on the payment
			case p.status != aggregates.PaymentCompletedS:
				out.flag(violation, CheckReservationUnpaid, rref, nil, fmt.Sprintf("CONFIRMED by payment %s, which is %s", res.confirmedBy, p.status), pref)
			}
			for _, sid := range res.seats {
				if s := a.seats[sid]; s == nil || s.status != aggregates.SeatSoldS || s.reservation != rid {
					out.flag(violation, CheckReservationNotSold, rref, nil,
						fmt.Sprintf("CONFIRMED, but its seat %s is %s", sid, a.seatDescription(sid)), Ref(eventstore.TypeSeat, sid), pref)
				}
			}
		case aggregates.ReservationExpiredS, aggregates.ReservationCancelledS:
			// The ending event and the release of the seats are one commit: there is no
			// moment, in flight or not, when an ended reservation keeps a seat.
			for _, sid := range res.seats {
				if hasSeat(sid) {
					out.flag(violation, CheckSeatNotReleased, Ref(eventstore.TypeSeat, sid), nil,
						fmt.Sprintf("still %s, though reservation %s is %s", describeSeat(a.seats[sid]), rid, res.status), rref)
				}
			}
		}
	}
}

// checkMoves checks that the seat events for an opened reservation are in the commits of the
// reservation's own events: held in the commit that opened it, sold in the one that confirmed
// it, released in the one that ended it. It returns the listed seats that were held for it in
// the commit that opened it. A reservation has a few seats: slices beat maps here.
func (a *Auditor) checkMoves(out *sink, rid string, res *resState) (heldFor []string) {
	rref := Ref(eventstore.TypeReservation, rid)
	moves := a.movesOf[rid]
	movedAnywhere := func(kind moveKind, sid string) bool {
		return slices.ContainsFunc(moves, func(m seatMove) bool { return m.kind == kind && m.seat == sid })
	}
	var soldIn []string // seats sold in the commit that confirmed rid
	for _, m := range moves {
		sref := Ref(eventstore.TypeSeat, m.seat)
		switch m.kind {
		case moveHeld:
			switch {
			case m.in != res.openedIn:
				// Reported by checkOrphanHolds.
			case !slices.Contains(res.seats, m.seat):
				out.flag(violation, CheckReservationSeat, rref, m.in.at(),
					fmt.Sprintf("lists seats %s but also held seat %s", strings.Join(res.seats, " "), m.seat), sref)
			default:
				heldFor = append(heldFor, m.seat)
				if m.user != res.held.UserID {
					out.flag(violation, CheckReservationSeat, rref, m.in.at(),
						fmt.Sprintf("seat %s held for user %s, reservation opened for user %s", m.seat, m.user, res.held.UserID), sref)
				}
			}
		case moveSold:
			switch {
			case res.confirmedIn == commit{}:
				out.flag(violation, CheckReservationSeatsApart, rref, m.in.at(), fmt.Sprintf("seat %s sold at %s, but the reservation was never confirmed", m.seat, m.in), sref)
			case m.in != res.confirmedIn:
				out.flag(violation, CheckReservationSeatsApart, rref, m.in.at(),
					fmt.Sprintf("seat %s sold at %s, apart from the confirmation at %s", m.seat, m.in, res.confirmedIn), sref)
			default:
				soldIn = append(soldIn, m.seat)
			}
		case moveReleased:
			switch {
			case res.endedIn == commit{}:
				out.flag(violation, CheckReservationSeatsApart, rref, m.in.at(),
					fmt.Sprintf("seat %s released at %s while the reservation is %s", m.seat, m.in, res.status), sref)
			case m.in != res.endedIn:
				out.flag(violation, CheckReservationSeatsApart, rref, m.in.at(),
					fmt.Sprintf("seat %s released at %s, apart from the reservation's end (%s) at %s", m.seat, m.in, res.status, res.endedIn), sref)
			}
		}
	}
	for _, sid := range res.seats {
		if !movedAnywhere(moveHeld, sid) {
			out.flag(violation, CheckReservationSeat, rref, nil, fmt.Sprintf("opened for seat %s, which was never held for it", sid), Ref(eventstore.TypeSeat, sid))
		}
		// A sale of the seat in another commit is reported above, where it happened.
		if res.confirmedIn != (commit{}) && !slices.Contains(soldIn, sid) && !movedAnywhere(moveSold, sid) {
			out.flag(violation, CheckReservationSeatsApart, rref, res.confirmedIn.at(),
				fmt.Sprintf("confirmed at %s without selling its seat %s", res.confirmedIn, sid), Ref(eventstore.TypeSeat, sid))
		}
	}
	return heldFor
}

// checkSeatsEndTogether: the seats a reservation lists are all HELD by it, all SOLD to it, or
// all no longer its.
func (a *Auditor) checkSeatsEndTogether(out *sink, rid string, res *resState) {
	if len(res.seats) < 2 {
		return
	}
	state := func(sid string) string {
		if s := a.seats[sid]; s != nil && s.status != "" && s.reservation == rid {
			return string(s.status)
		}
		return "not its"
	}
	first := state(res.seats[0])
	for _, sid := range res.seats[1:] {
		if state(sid) != first {
			parts := make([]string, len(res.seats))
			related := make([]string, len(res.seats))
			for i, sid := range res.seats {
				parts[i] = fmt.Sprintf("%s %s", sid, a.seatDescription(sid))
				related[i] = Ref(eventstore.TypeSeat, sid)
			}
			out.flag(violation, CheckReservationSeatsApart, Ref(eventstore.TypeReservation, rid), nil,
				fmt.Sprintf("%s, its seats ended apart: %s", res.status, strings.Join(parts, ", ")), related...)
			return
		}
	}
}

// checkOrphanHolds: every SeatHeld is in the commit that opens its reservation. The hold of a
// date's seats and the reservation are one decision and one append, so a hold outside it is
// a broken writer, not a crash between two steps.
func (a *Auditor) checkOrphanHolds(out *sink) {
	for _, rid := range sortedKeys(a.movesOf) {
		res := a.reservations[rid]
		for _, m := range a.movesOf[rid] {
			if m.kind != moveHeld {
				continue
			}
			switch {
			case res == nil || !res.opened:
				out.flag(violation, CheckSeatOrphanHold, Ref(eventstore.TypeSeat, m.seat), m.in.at(),
					fmt.Sprintf("held for reservation %s, which was never opened", rid), Ref(eventstore.TypeReservation, rid))
			case m.in != res.openedIn:
				out.flag(violation, CheckSeatOrphanHold, Ref(eventstore.TypeSeat, m.seat), m.in.at(),
					fmt.Sprintf("held for reservation %s at %s, apart from its opening at %s", rid, m.in, res.openedIn), Ref(eventstore.TypeReservation, rid))
			}
		}
	}
}

// checkSeats: a SOLD seat's reservation is CONFIRMED by the payment that bought it; every seat
// is one of the catalog.
func (a *Auditor) checkSeats(out *sink) {
	for _, sid := range sortedKeys(a.seats) {
		s := a.seats[sid]
		sref := Ref(eventstore.TypeSeat, sid)
		a.checkCatalog(out, sid)
		rref := Ref(eventstore.TypeReservation, s.reservation)
		res := a.reservations[s.reservation]
		if s.status != aggregates.SeatSoldS {
			continue
		}
		switch {
		case res == nil || !res.opened:
			out.flag(violation, CheckSeatSoldUnconfirmed, sref, nil, fmt.Sprintf("SOLD to reservation %s, which was never opened", s.reservation), rref)
		case res.status == aggregates.ReservationConfirmedS && res.confirmedBy == s.soldPayment:
		case res.status == aggregates.ReservationCancelledS && res.cancelReason == aggregates.ReleaseRefunded:
			// A refund cancelled the reservation; checkReservations reports the seat it kept.
		default:
			out.flag(violation, CheckSeatSoldUnconfirmed, sref, nil,
				fmt.Sprintf("SOLD to reservation %s by payment %s, but the reservation is %s", s.reservation, s.soldPayment, confirmation(res)),
				rref, Ref(eventstore.TypePayment, s.soldPayment))
		}
	}
}

func (a *Auditor) checkCatalog(out *sink, seatID string) {
	concertID, dateID, n, ok := aggregates.ParseSeatID(seatID)
	if !ok {
		out.flag(violation, CheckSeatCatalog, Ref(eventstore.TypeSeat, seatID), nil, "not a seat ID (concert.date.seatNo)")
		return
	}
	c, ok := a.concerts[concertID]
	if !ok {
		out.flag(violation, CheckSeatCatalog, Ref(eventstore.TypeSeat, seatID), nil, fmt.Sprintf("concert %s was never created", concertID), Ref(eventstore.TypeConcert, concertID))
		return
	}
	for _, d := range c.Dates {
		if d.DateID == dateID {
			if n < 1 || n > d.SeatCount {
				out.flag(violation, CheckSeatCatalog, Ref(eventstore.TypeSeat, seatID), nil,
					fmt.Sprintf("date %s of concert %s has seats 1..%d", d.DateID, c.ConcertID, d.SeatCount), Ref(eventstore.TypeConcert, concertID))
			}
			return
		}
	}
	out.flag(violation, CheckSeatCatalog, Ref(eventstore.TypeSeat, seatID), nil, fmt.Sprintf("concert %s has no date %s", c.ConcertID, dateID), Ref(eventstore.TypeConcert, concertID))
}

func (a *Auditor) seatDescription(seatID string) string {
	if s := a.seats[seatID]; s != nil {
		return describeSeat(s)
	}
	return "without events"
}

func describeSeat(s *seatState) string {
	switch s.status {
	case "":
		return "AVAILABLE"
	case aggregates.SeatSoldS:
		return fmt.Sprintf("SOLD to reservation %s", s.reservation)
	}
	return fmt.Sprintf("%s by reservation %s", s.status, s.reservation)
}

// confirmation says how a reservation stands towards its payments, for messages.
func confirmation(r *resState) string {
	switch {
	case r.confirmedBy != "" && r.cancelPayment != "":
		return fmt.Sprintf("%s (confirmed by %s, cancelled for the refund of %s)", r.status, r.confirmedBy, r.cancelPayment)
	case r.confirmedBy != "":
		return fmt.Sprintf("%s (confirmed by %s)", r.status, r.confirmedBy)
	}
	return fmt.Sprintf("%s (never confirmed)", r.status)
}
