package projections

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"strings"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// batchFuncs adapts a per-event function to batchWriter for models with nothing to do before
// or after the commit.
type batchFuncs struct {
	applyFn func(env *eventstore.Envelope, ev aggregates.Event) error
}

func (b batchFuncs) apply(env *eventstore.Envelope, ev aggregates.Event) error {
	return b.applyFn(env, ev)
}
func (batchFuncs) finish() error   { return nil }
func (batchFuncs) committed() bool { return false }

// ---- catalog ----

const bConcerts = "concerts" // concertId → ConcertCreated JSON

type catalogModel struct{ g *generation }

func newCatalogModel(g *generation) model { return &catalogModel{g: g} }

func (m *catalogModel) buckets() []string { return []string{bConcerts} }

func (m *catalogModel) wants(typ string) bool {
	return typ == (aggregates.ConcertCreated{}).EventType()
}

func (m *catalogModel) begin(t txn) (batchWriter, error) {
	b := t.bucket(bConcerts)
	return batchFuncs{func(_ *eventstore.Envelope, ev aggregates.Event) error {
		c, ok := ev.(aggregates.ConcertCreated)
		if !ok || b.Get([]byte(c.ConcertID)) != nil {
			return nil
		}
		data, err := json.Marshal(c)
		if err != nil {
			return err
		}
		return b.Put([]byte(c.ConcertID), data)
	}}, nil
}

// ---- reservations ----

const (
	bReservations = "reservations" // reservationId → record
	bByUser       = "byuser"       // userId NUL heldAt(8, big-endian) reservationId → 1
)

type reservationRecord struct {
	userID, concertID, dateID string
	seatNo                    int
	seatNos                   []int
	price                     int64
	status                    string
	heldAt, heldUntil         time.Time
	paymentID                 string
}

func (r reservationRecord) encode() []byte {
	e := enc{b: make([]byte, 0, 128)}
	e.str(r.userID)
	e.str(r.concertID)
	e.str(r.dateID)
	e.int(int64(r.seatNo))
	e.int(r.price)
	e.str(r.status)
	e.time(r.heldAt)
	e.time(r.heldUntil)
	e.str(r.paymentID)
	e.int(int64(len(r.seatNos)))
	for _, n := range r.seatNos {
		e.int(int64(n))
	}
	return e.b
}

func decodeReservation(b []byte) (reservationRecord, error) {
	d := dec{b: b}
	r := reservationRecord{userID: d.str(), concertID: d.str(), dateID: d.str(), seatNo: int(d.int()), price: d.int(),
		status: d.str(), heldAt: d.time(), heldUntil: d.time(), paymentID: d.str()}
	n := d.int()
	if n < 0 || n > aggregates.MaxSeatsPerHold {
		d.fail()
		return r, d.err
	}
	r.seatNos = make([]int, n)
	for i := range r.seatNos {
		r.seatNos[i] = int(d.int())
	}
	return r, d.err
}

func (r reservationRecord) view(id string) ReservationView {
	nos := r.seatNos
	if len(nos) == 0 {
		nos = []int{r.seatNo}
	}
	return ReservationView{ReservationID: id, UserID: r.userID, ConcertID: r.concertID, DateID: r.dateID, SeatNo: r.seatNo,
		SeatNos: nos, Price: r.price, Status: aggregates.ReservationStatus(r.status), HeldAt: r.heldAt, HeldUntil: r.heldUntil, PaymentID: r.paymentID}
}

// sortableNanos orders instants as unsigned big-endian bytes.
func sortableNanos(t time.Time) uint64 { return uint64(t.UnixNano()) ^ (1 << 63) }

func userKey(userID string, at time.Time, id string) []byte {
	k := make([]byte, 0, len(userID)+len(id)+9)
	k = append(k, userID...)
	k = append(k, 0)
	k = binary.BigEndian.AppendUint64(k, sortableNanos(at))
	return append(k, id...)
}

type reservationsModel struct{ g *generation }

func newReservationsModel(g *generation) model { return &reservationsModel{g: g} }

func (m *reservationsModel) buckets() []string { return []string{bReservations, bByUser} }

// wants skips the payment lock's events, which the view does not show, and the seat events
// that share the reservations' streams (their dates' commits).
func (m *reservationsModel) wants(typ string) bool {
	return strings.HasPrefix(typ, "Reservation") &&
		typ != (aggregates.ReservationPaymentStarted{}).EventType() && typ != (aggregates.ReservationPaymentAborted{}).EventType()
}

func (m *reservationsModel) begin(t txn) (batchWriter, error) {
	res, byUser := t.bucket(bReservations), t.bucket(bByUser)
	return batchFuncs{func(env *eventstore.Envelope, ev aggregates.Event) error {
		id := []byte(env.AggregateID)
		if h, ok := ev.(aggregates.ReservationHeld); ok {
			if res.Get(id) != nil {
				return nil
			}
			r := reservationRecord{userID: h.UserID, concertID: h.ConcertID, dateID: h.DateID, seatNo: h.SeatNo, seatNos: h.SeatNos, price: h.Price,
				status: string(aggregates.ReservationStatusHeld), heldAt: h.HeldAt, heldUntil: h.HeldUntil}
			if err := byUser.Put(userKey(h.UserID, h.HeldAt, env.AggregateID), []byte{1}); err != nil {
				return err
			}
			return res.Put(id, r.encode())
		}
		var status aggregates.ReservationStatus
		payment := ""
		switch ev := ev.(type) {
		case aggregates.ReservationConfirmed:
			status, payment = aggregates.ReservationStatusConfirmed, ev.PaymentID
		case aggregates.ReservationExpired:
			status = aggregates.ReservationStatusExpired
		case aggregates.ReservationCancelled:
			status, payment = aggregates.ReservationStatusCancelled, ev.PaymentID
		default:
			return nil // the payment lock is not shown
		}
		v := res.Get(id)
		if v == nil {
			m.g.log.Warn("reservations projection skips an event of an unknown reservation", "id", env.AggregateID, "type", env.Type)
			return nil
		}
		r, err := decodeReservation(v)
		if err != nil {
			return err
		}
		r.status = string(status)
		if payment != "" {
			r.paymentID = payment
		}
		return res.Put(id, r.encode())
	}}, nil
}

// ---- payments ----

const (
	bPayments = "payments" // paymentId → record
	bPending  = "pending"  // paymentId → 1 while STARTED or REFUNDING
)

type paymentRecord struct {
	reservationID, userID   string
	amount                  int64
	status                  string
	startedAt               time.Time
	completedAt, refundedAt time.Time
	reason                  string
}

func (r paymentRecord) encode() []byte {
	e := enc{b: make([]byte, 0, 128)}
	e.str(r.reservationID)
	e.str(r.userID)
	e.int(r.amount)
	e.str(r.status)
	e.time(r.startedAt)
	e.time(r.completedAt)
	e.time(r.refundedAt)
	e.str(r.reason)
	return e.b
}

func decodePayment(b []byte) (paymentRecord, error) {
	d := dec{b: b}
	r := paymentRecord{reservationID: d.str(), userID: d.str(), amount: d.int(), status: d.str(), startedAt: d.time(),
		completedAt: d.time(), refundedAt: d.time(), reason: d.str()}
	return r, d.err
}

type paymentsModel struct{ g *generation }

func newPaymentsModel(g *generation) model { return &paymentsModel{g: g} }

func (m *paymentsModel) buckets() []string { return []string{bPayments, bPending} }

// wants skips the seat and reservation events that share the payments' streams (their dates'
// commits).
func (m *paymentsModel) wants(typ string) bool { return strings.HasPrefix(typ, "Payment") }

func (m *paymentsModel) begin(t txn) (batchWriter, error) {
	pay, pending := t.bucket(bPayments), t.bucket(bPending)
	return batchFuncs{func(env *eventstore.Envelope, ev aggregates.Event) error {
		id := []byte(env.AggregateID)
		if s, ok := ev.(aggregates.PaymentStarted); ok {
			if pay.Get(id) != nil {
				return nil
			}
			r := paymentRecord{reservationID: s.ReservationID, userID: s.UserID, amount: s.Amount, status: string(aggregates.PaymentStatusStarted), startedAt: s.StartedAt}
			if err := pending.Put(id, []byte{1}); err != nil {
				return err
			}
			return pay.Put(id, r.encode())
		}
		v := pay.Get(id)
		if v == nil {
			switch ev.(type) {
			case aggregates.PaymentCompleted, aggregates.PaymentFailed, aggregates.PaymentRefundStarted, aggregates.PaymentRefunded:
				m.g.log.Warn("payments projection skips an event of an unknown payment", "id", env.AggregateID, "type", env.Type)
			}
			return nil
		}
		r, err := decodePayment(v)
		if err != nil {
			return err
		}
		switch ev := ev.(type) {
		case aggregates.PaymentCompleted:
			r.status, r.completedAt = string(aggregates.PaymentStatusCompleted), ev.CompletedAt
		case aggregates.PaymentFailed:
			r.status, r.reason = string(aggregates.PaymentStatusFailed), ev.Reason
		case aggregates.PaymentRefundStarted:
			r.status = string(aggregates.PaymentStatusRefunding)
		case aggregates.PaymentRefunded:
			r.status, r.refundedAt = string(aggregates.PaymentStatusRefunded), ev.RefundedAt
		default:
			return nil
		}
		switch aggregates.PaymentStatus(r.status) {
		case aggregates.PaymentStatusStarted, aggregates.PaymentStatusRefunding:
			err = pending.Put(id, []byte{1})
		default:
			err = pending.Delete(id)
		}
		if err != nil {
			return err
		}
		return pay.Put(id, r.encode())
	}}, nil
}

// ---- wallets ----

const (
	bBalances = "balances" // userId → balance, entry count
	bLedger   = "ledger"   // userId NUL entryNo(4, big-endian) → entry
)

// Ledger entry types, as the API shows them.
const (
	LedgerCharge  = "CHARGE"
	LedgerPayment = "PAYMENT"
	LedgerRefund  = "REFUND"
)

type walletState struct{ balance, entries int64 }

type walletsModel struct{ g *generation }

func newWalletsModel(g *generation) model { return &walletsModel{g: g} }

func (m *walletsModel) buckets() []string { return []string{bBalances, bLedger} }

func ledgerKey(userID string, n int64) []byte {
	k := make([]byte, 0, len(userID)+5)
	k = append(k, userID...)
	k = append(k, 0)
	return binary.BigEndian.AppendUint32(k, uint32(n))
}

type walletsBatch struct {
	balances, ledger kv
	users            map[string]*walletState
}

func (m *walletsModel) begin(t txn) (batchWriter, error) {
	return &walletsBatch{balances: t.bucket(bBalances), ledger: t.bucket(bLedger), users: map[string]*walletState{}}, nil
}

func (b *walletsBatch) state(user string) (*walletState, error) {
	if w := b.users[user]; w != nil {
		return w, nil
	}
	w := &walletState{}
	if v := b.balances.Get([]byte(user)); v != nil {
		d := dec{b: v}
		w.balance, w.entries = d.int(), d.int()
		if d.err != nil {
			return nil, d.err
		}
	}
	b.users[user] = w
	return w, nil
}

func (b *walletsBatch) apply(env *eventstore.Envelope, ev aggregates.Event) error {
	var typ, ref string
	var amount, delta int64
	switch ev := ev.(type) {
	case aggregates.PointsCharged:
		typ, ref, amount, delta = LedgerCharge, ev.Reference, ev.Amount, ev.Amount
	case aggregates.PointsDebited:
		typ, ref, amount, delta = LedgerPayment, ev.PaymentID, ev.Amount, -ev.Amount
	case aggregates.PointsRefunded:
		typ, ref, amount, delta = LedgerRefund, ev.PaymentID, ev.Amount, ev.Amount
	default:
		return nil
	}
	w, err := b.state(env.AggregateID)
	if err != nil {
		return err
	}
	if w.entries >= math.MaxUint32 {
		return errCorrupt
	}
	w.balance += delta
	e := enc{b: make([]byte, 0, 64)}
	e.str(typ)
	e.int(amount)
	e.int(w.balance)
	e.time(env.OccurredAt)
	e.str(ref)
	if err := b.ledger.Put(ledgerKey(env.AggregateID, w.entries), e.b); err != nil {
		return err
	}
	w.entries++
	return nil
}

func (b *walletsBatch) finish() error {
	for user, w := range b.users {
		e := enc{b: make([]byte, 0, 16)}
		e.int(w.balance)
		e.int(w.entries)
		if err := b.balances.Put([]byte(user), e.b); err != nil {
			return err
		}
	}
	return nil
}

func (b *walletsBatch) committed() bool { return false }

// ---- ranking ----

const (
	bTitles   = "titles"   // concertId → title
	bSellOuts = "sellouts" // soldOutAt(8, big-endian) dateKey → salesOpenedAt
	bFirsts   = "firsts"   // dateKey → 1: the date has its sell-out
)

type rankingModel struct{ g *generation }

func newRankingModel(g *generation) model { return &rankingModel{g: g} }

func (m *rankingModel) buckets() []string { return []string{bTitles, bSellOuts, bFirsts} }

func (m *rankingModel) wants(typ string) bool {
	return typ == (aggregates.ConcertCreated{}).EventType() || typ == (aggregates.DateSoldOut{}).EventType()
}

func sellOutKey(at time.Time, dk string) []byte {
	k := binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(dk)), sortableNanos(at))
	return append(k, dk...)
}

func (m *rankingModel) begin(t txn) (batchWriter, error) {
	titles, sellOuts, firsts := t.bucket(bTitles), t.bucket(bSellOuts), t.bucket(bFirsts)
	return batchFuncs{func(_ *eventstore.Envelope, ev aggregates.Event) error {
		switch ev := ev.(type) {
		case aggregates.ConcertCreated:
			if titles.Get([]byte(ev.ConcertID)) != nil {
				return nil
			}
			return titles.Put([]byte(ev.ConcertID), []byte(ev.Title))
		case aggregates.DateSoldOut:
			dk := dateKey(ev.ConcertID, ev.DateID)
			if firsts.Get([]byte(dk)) != nil {
				return nil // the first sell-out ranks; the log holds one per date anyway
			}
			e := enc{}
			e.time(ev.SalesOpenedAt)
			if err := sellOuts.Put(sellOutKey(ev.SoldOutAt, dk), e.b); err != nil {
				return err
			}
			return firsts.Put([]byte(dk), []byte{1})
		}
		return nil
	}}, nil
}
