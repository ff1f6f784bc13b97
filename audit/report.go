package audit

import (
	"fmt"
	"io"
	"slices"
	"strings"
)

// Checks: the stable, machine-readable names of what a finding broke.
const (
	CheckUndecodable  = "log.undecodable"     // a stored event that cannot be decoded
	CheckOutOfOrder   = "log.out-of-order"    // a stream's events fed out of sequence order
	CheckForeignEvent = "log.foreign-event"   // an event stored on an aggregate of another type
	CheckSeatCatalog  = "seat.not-in-catalog" // a seat of no created concert, date or seat number

	CheckSeatDoubleHold      = "seat.double-hold"         // held while already held or sold
	CheckSeatDoubleSale      = "seat.double-sale"         // sold while already sold
	CheckSeatSoldWithoutHold = "seat.sold-without-hold"   // sold to a reservation that did not hold it
	CheckSeatBadRelease      = "seat.bad-release"         // released by a non-holder, or a sale undone without a refund
	CheckSeatNotReleased     = "seat.not-released"        // an expired or cancelled reservation still has the seat
	CheckSeatSoldUnconfirmed = "seat.sold-to-unconfirmed" // a SOLD seat whose reservation is not CONFIRMED by that sale
	CheckSeatOrphanHold      = "seat.orphan-hold"         // held outside the commit that opens its reservation, or for one never opened
	CheckSeatTwoReservations = "seat.two-reservations"    // listed by a reservation while another live (HELD or CONFIRMED) one lists it

	CheckReservationTransition = "reservation.bad-transition" // an event its state does not allow
	CheckReservationSeat       = "reservation.seat-mismatch"  // a seat it lists never held for it, a seat it does not list held for it, or one lost while HELD
	CheckReservationSeatsApart = "reservation.seats-apart"    // a seat sold or released in another commit than its confirmation or end, or its seats ending in different states
	CheckReservationLapsed     = "reservation.lapsed-hold"    // still HELD past heldUntil (warning)
	CheckReservationLock       = "reservation.stuck-lock"     // HELD and locked by a payment that ended
	CheckReservationUnpaid     = "reservation.unpaid"         // CONFIRMED without a COMPLETED payment
	CheckReservationPayments   = "reservation.paid-twice"     // more than one payment completed
	CheckReservationNotSold    = "reservation.seat-not-sold"  // CONFIRMED, but a seat of it is not SOLD to it

	CheckPaymentTransition   = "payment.bad-transition"       // an event its state does not allow
	CheckPaymentInFlight     = "payment.in-flight"            // STARTED or REFUNDING
	CheckPaymentDoubleDebit  = "payment.double-debit"         // debited more than once
	CheckPaymentWithoutDebit = "payment.not-debited"          // COMPLETED or REFUNDED without a debit
	CheckPaymentAmount       = "payment.amount-mismatch"      // debit, payment and price disagree
	CheckPaymentReservation  = "payment.reservation-mismatch" // COMPLETED, but its reservation is not CONFIRMED by it
	CheckPaymentRefund       = "payment.refund-mismatch"      // REFUNDED without the reversals, or reversed while COMPLETED

	CheckWalletNegative           = "wallet.negative-balance"     // the balance went below zero
	CheckWalletAmount             = "wallet.bad-amount"           // a non-positive charge, a negative debit, a refund of another amount, an overflow
	CheckWalletDoubleRefund       = "wallet.double-refund"        // a debit refunded twice
	CheckWalletRefundWithoutDebit = "wallet.refund-without-debit" // a refund of a payment that never debited the wallet
	CheckDebitUnpaid              = "wallet.debit-unpaid"         // a debit neither paid for nor reversed
)

// Finding is one broken invariant, or one warning.
type Finding struct {
	// Check is one of the Check constants.
	Check string `json:"check"`
	// Aggregate is the offending aggregate, "type/id".
	Aggregate string `json:"aggregate"`
	// Related names the other aggregates involved.
	Related []string `json:"related,omitempty"`
	// Stream and Sequence locate the offending event, when one event is to blame.
	Stream   string `json:"stream,omitempty"`
	Sequence uint64 `json:"sequence,omitempty"`
	Message  string `json:"message"`
	// InFlight marks a state that a running saga passes through: a violation in a log at
	// rest, a warning with Options.AllowInFlight.
	InFlight bool `json:"inFlight,omitempty"`
}

// String renders the finding on one line.
func (f Finding) String() string {
	var b strings.Builder
	b.WriteString(f.Aggregate)
	if f.Stream != "" {
		fmt.Fprintf(&b, " at %s:%d", f.Stream, f.Sequence)
	}
	b.WriteString(": ")
	b.WriteString(f.Message)
	if len(f.Related) > 0 {
		fmt.Fprintf(&b, " [%s]", strings.Join(f.Related, " "))
	}
	if f.InFlight {
		b.WriteString(" (in flight)")
	}
	return b.String()
}

// Ledger sums the points of every wallet.
type Ledger struct {
	Charged  int64 `json:"charged"`
	Debited  int64 `json:"debited"`
	Refunded int64 `json:"refunded"`
	Balance  int64 `json:"balance"`
}

// Report is the outcome of an audit. Findings are sorted by check, then aggregate.
type Report struct {
	Events     int            `json:"events"`
	Streams    int            `json:"streams"`
	Aggregates map[string]int `json:"aggregates"` // type → how many
	Ledger     Ledger         `json:"ledger"`
	Violations []Finding      `json:"violations"`
	Warnings   []Finding      `json:"warnings"`
}

// OK reports whether every invariant holds.
func (r Report) OK() bool { return len(r.Violations) == 0 }

// AggregateCount is the number of aggregates of every type.
func (r Report) AggregateCount() int {
	n := 0
	for _, c := range r.Aggregates {
		n += c
	}
	return n
}

// Summary is the report in one line.
func (r Report) Summary() string {
	verdict := "OK"
	if !r.OK() {
		verdict = "FAILED"
	}
	return fmt.Sprintf("verify %s: %d events in %d streams, %d aggregates, %d violations, %d warnings",
		verdict, r.Events, r.Streams, r.AggregateCount(), len(r.Violations), len(r.Warnings))
}

// WriteText writes the report for a reader: the findings grouped by check, the aggregate
// counts and the ledger, then the summary line.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	section := func(title string, fs []Finding) {
		if len(fs) == 0 {
			return
		}
		fmt.Fprintf(&b, "%s (%d)\n", title, len(fs))
		for i, f := range fs {
			if i == 0 || fs[i-1].Check != f.Check {
				n := 0
				for _, g := range fs[i:] {
					if g.Check != f.Check {
						break
					}
					n++
				}
				fmt.Fprintf(&b, "  %s (%d)\n", f.Check, n)
			}
			fmt.Fprintf(&b, "    %s\n", f)
		}
	}
	section("VIOLATIONS", r.Violations)
	section("WARNINGS", r.Warnings)
	types := make([]string, 0, len(r.Aggregates))
	for t := range r.Aggregates {
		types = append(types, t)
	}
	slices.Sort(types)
	parts := make([]string, len(types))
	for i, t := range types {
		parts[i] = fmt.Sprintf("%s %d", t, r.Aggregates[t])
	}
	if len(parts) > 0 {
		fmt.Fprintf(&b, "aggregates: %s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(&b, "points: charged %d, debited %d, refunded %d, balance %d\n",
		r.Ledger.Charged, r.Ledger.Debited, r.Ledger.Refunded, r.Ledger.Balance)
	b.WriteString(r.Summary())
	b.WriteString("\n")
	_, err := io.WriteString(w, b.String())
	return err
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

// crossCheck adds to out the findings that need several aggregates.
func (a *Auditor) crossCheck(out *sink) {
	a.checkDebits(out)
	a.checkPayments(out)
	a.checkReservations(out)
	a.checkOrphanHolds(out)
	a.checkSeats(out)
}
