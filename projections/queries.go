package projections

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// Concerts returns every concert, ordered by ID, including those this process created.
func (e *Engine) Concerts(ctx context.Context) ([]ConcertSummary, error) {
	p := e.byName[Catalog]
	if err := e.waitFor(ctx, p, p.all()); err != nil {
		return nil, err
	}
	g := p.acquire()
	defer p.release(g)
	out := []ConcertSummary{}
	err := g.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte(bConcerts)).ForEach(func(_, v []byte) error {
			var c aggregates.ConcertCreated
			if err := json.Unmarshal(v, &c); err != nil {
				return err
			}
			out = append(out, ConcertSummary{ConcertID: c.ConcertID, Title: c.Title, DateCount: len(c.Dates)})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("projections: concerts: %w", err)
	}
	return out, nil
}

// Concert returns the creation event of a concert, including one this process has just
// created. Concerts are cached once read: the slices of the answer are shared, do not modify
// them. A concert never changes, so a cached one needs no wait.
func (e *Engine) Concert(ctx context.Context, concertID string) (aggregates.ConcertCreated, error) {
	if c, ok := e.concerts.Load(concertID); ok {
		return c.(aggregates.ConcertCreated), nil
	}
	p := e.byName[Catalog]
	if err := e.waitFor(ctx, p, p.all()); err != nil {
		return aggregates.ConcertCreated{}, fmt.Errorf("projections: concert %s: %w", concertID, err)
	}
	g := p.acquire()
	defer p.release(g)
	var c aggregates.ConcertCreated
	found := false
	err := g.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(bConcerts)).Get([]byte(concertID))
		if v == nil {
			return nil
		}
		found = true
		return json.Unmarshal(v, &c)
	})
	if err != nil {
		return c, fmt.Errorf("projections: concert %s: %w", concertID, err)
	}
	if !found {
		return c, fmt.Errorf("concert %s: %w", concertID, aggregates.ErrConcertNotFound)
	}
	e.concerts.Store(concertID, c)
	return c, nil
}

// Dates returns a concert's dates with their availability.
func (e *Engine) Dates(ctx context.Context, concertID string) ([]DateView, error) {
	c, err := e.Concert(ctx, concertID)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(c.Dates))
	for i, d := range c.Dates {
		ids[i] = d.DateID
	}
	// The dates of a concert are spread over the seat streams: wait for all of them.
	p := e.byName[Seats]
	if err := e.waitFor(ctx, p, p.all()); err != nil {
		return nil, fmt.Errorf("projections: dates of %s: %w", concertID, err)
	}
	g := p.acquire()
	defer p.release(g)
	counts, err := g.model.(*seatsModel).counts(concertID, ids)
	if err != nil {
		return nil, fmt.Errorf("projections: dates of %s: %w", concertID, err)
	}
	out := make([]DateView, len(c.Dates))
	for i, d := range c.Dates {
		n := counts[d.DateID]
		avail := int64(d.SeatCount) - n.held - n.sold
		out[i] = DateView{DateID: d.DateID, StartsAt: d.StartsAt, TotalSeats: d.SeatCount,
			AvailableSeats: int(max(avail, 0)), SoldOut: n.sold >= int64(d.SeatCount)}
	}
	return out, nil
}

// seatMap returns a date's cached seat map once the seats projection has applied what this
// process appended: the concert (CATALOG) and every seat stream. A date's seats are all in its
// own commits, on one stream, so waiting for that one would do; all of them costs two atomic
// loads per stream when nothing is pending, and naming the date's stream would cost a
// formatted subject per read.
func (e *Engine) seatMap(ctx context.Context, concertID, dateID string) (*seatMap, error) {
	p := e.byName[Seats]
	if err := e.waitFor(ctx, p, p.all()); err != nil {
		return nil, fmt.Errorf("projections: seats of %s/%s: %w", concertID, dateID, err)
	}
	g := p.acquire()
	defer p.release(g)
	sm, err := g.model.(*seatsModel).seatMap(concertID, dateID)
	switch {
	case errors.Is(err, aggregates.ErrConcertNotFound), errors.Is(err, aggregates.ErrDateNotFound):
		return nil, err
	case err != nil:
		return nil, fmt.Errorf("projections: seats of %s/%s: %w", concertID, dateID, err)
	}
	return sm, nil
}

// Seats returns a date's seat map, seat 1 first. It is served from memory (after the first
// read of the date), after what this process appended to the seat streams (see seatMap).
func (e *Engine) Seats(ctx context.Context, concertID, dateID string) ([]SeatView, error) {
	sm, err := e.seatMap(ctx, concertID, dateID)
	if err != nil {
		return nil, err
	}
	return append([]SeatView(nil), sm.snapshot()...), nil
}

// SeatsJSON returns the same seat map as Seats, already encoded as the API's response body
// {"seats":[{"seatNo":1,"price":100,"status":"AVAILABLE"},...]}. The bytes are shared by every
// caller until the map changes: do not modify them. This is the fast path for seat-map reads,
// which would otherwise spend most of their time encoding.
func (e *Engine) SeatsJSON(ctx context.Context, concertID, dateID string) ([]byte, error) {
	sm, err := e.seatMap(ctx, concertID, dateID)
	if err != nil {
		return nil, err
	}
	return sm.encoded(), nil
}

// SeatsJSONGzip returns SeatsJSON gzipped, shared like it: do not modify the bytes.
func (e *Engine) SeatsJSONGzip(ctx context.Context, concertID, dateID string) ([]byte, error) {
	sm, err := e.seatMap(ctx, concertID, dateID)
	if err != nil {
		return nil, err
	}
	gz, err := sm.encodedGzip()
	if err != nil {
		return nil, fmt.Errorf("projections: gzip seats of %s/%s: %w", concertID, dateID, err)
	}
	return gz, nil
}

// HeldSeats returns every seat currently held, for the expiry sweeper. Call it after
// WaitReady; events applied afterwards reach subscribers (a seat may show up in both).
func (e *Engine) HeldSeats(ctx context.Context) ([]HeldSeat, error) {
	p := e.byName[Seats]
	g := p.acquire()
	defer p.release(g)
	out, err := g.model.(*seatsModel).heldSeats()
	if err != nil {
		return nil, fmt.Errorf("projections: held seats: %w", err)
	}
	return out, nil
}

// Reservation returns one reservation, after the reservations projection has applied what this
// process appended to its streams (a reservation is stored in its date's commits, on any of
// the seat streams).
func (e *Engine) Reservation(ctx context.Context, reservationID string) (ReservationView, error) {
	p := e.byName[Reservations]
	if err := e.waitFor(ctx, p, p.all()); err != nil {
		return ReservationView{}, err
	}
	r, found, err := e.reservationRecord(p, reservationID)
	if err != nil {
		return ReservationView{}, err
	}
	if !found {
		return ReservationView{}, fmt.Errorf("reservation %s: %w", reservationID, aggregates.ErrReservationNotFound)
	}
	return r.view(reservationID), nil
}

// ReservationDate returns the concert and date of a reservation, for commands that name a
// reservation only. One the projection has not applied yet (held through another instance a
// moment ago) is looked for again once the projection has reached the heads the streams had
// when asked; one still unknown then does not exist.
func (e *Engine) ReservationDate(ctx context.Context, reservationID string) (concertID, dateID string, err error) {
	p := e.byName[Reservations]
	if err := e.waitFor(ctx, p, p.all()); err != nil {
		return "", "", err
	}
	r, found, err := e.reservationRecord(p, reservationID)
	if err == nil && !found {
		if err = e.waitForHeads(ctx, p); err == nil {
			r, found, err = e.reservationRecord(p, reservationID)
		}
	}
	if err != nil {
		return "", "", err
	}
	if !found {
		return "", "", fmt.Errorf("reservation %s: %w", reservationID, aggregates.ErrReservationNotFound)
	}
	return r.concertID, r.dateID, nil
}

func (e *Engine) reservationRecord(p *proj, reservationID string) (reservationRecord, bool, error) {
	if !aggregates.ValidID(reservationID) {
		return reservationRecord{}, false, nil
	}
	g := p.acquire()
	defer p.release(g)
	var r reservationRecord
	found := false
	err := g.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(bReservations)).Get([]byte(reservationID))
		if v == nil {
			return nil
		}
		found = true
		var err error
		r, err = decodeReservation(v)
		return err
	})
	if err != nil {
		return r, false, fmt.Errorf("projections: reservation %s: %w", reservationID, err)
	}
	return r, found, nil
}

// UserReservations returns a user's reservations, newest hold first.
func (e *Engine) UserReservations(ctx context.Context, userID string) ([]ReservationView, error) {
	p := e.byName[Reservations]
	if err := e.waitFor(ctx, p, p.all()); err != nil {
		return nil, err
	}
	g := p.acquire()
	defer p.release(g)
	out := []ReservationView{}
	err := g.db.View(func(tx *bolt.Tx) error {
		res := tx.Bucket([]byte(bReservations))
		prefix := append([]byte(userID), 0)
		cur := tx.Bucket([]byte(bByUser)).Cursor()
		// Walk the user's keys backwards: seek past the last one, then step back.
		end := append(append([]byte(nil), userID...), 1)
		k, _ := cur.Seek(end)
		if k == nil {
			k, _ = cur.Last()
		} else {
			k, _ = cur.Prev()
		}
		for ; k != nil && bytes.HasPrefix(k, prefix); k, _ = cur.Prev() {
			id := k[len(prefix)+8:]
			v := res.Get(id)
			if v == nil {
				continue
			}
			r, err := decodeReservation(v)
			if err != nil {
				return err
			}
			out = append(out, r.view(string(id)))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("projections: reservations of %s: %w", userID, err)
	}
	return out, nil
}

// Payment returns a payment as clients see it: a payment still STARTED is not found yet, one
// being refunded is still COMPLETED. It waits for what this process appended to the seat
// streams: a payment is stored in its reservation's date's commits, on any of them.
func (e *Engine) Payment(ctx context.Context, paymentID string) (PaymentView, error) {
	p := e.byName[Payments]
	if !aggregates.ValidID(paymentID) {
		return PaymentView{}, fmt.Errorf("payment %s: %w", paymentID, aggregates.ErrPaymentNotFound)
	}
	if err := e.waitFor(ctx, p, p.all()); err != nil {
		return PaymentView{}, err
	}
	r, found, err := e.payment(p, paymentID)
	if err != nil {
		return PaymentView{}, err
	}
	if !found || r.status == string(aggregates.PaymentStatusStarted) {
		return PaymentView{}, fmt.Errorf("payment %s: %w", paymentID, aggregates.ErrPaymentNotFound)
	}
	v := PaymentView{PaymentID: paymentID, ReservationID: r.reservationID, UserID: r.userID, Amount: r.amount,
		Status: aggregates.PaymentStatus(r.status), FailureReason: r.reason}
	if v.Status == aggregates.PaymentStatusRefunding {
		v.Status = aggregates.PaymentStatusCompleted
	}
	if !r.completedAt.IsZero() {
		t := r.completedAt
		v.CompletedAt = &t
	}
	if v.Status == aggregates.PaymentStatusRefunded && !r.refundedAt.IsZero() {
		t := r.refundedAt
		v.RefundedAt = &t
	}
	return v, nil
}

// PaymentReservation returns the reservation a payment pays, for commands that name a payment
// only (a refund, the recovery of a payment): the reservation leads to the date that holds
// the payment. Like ReservationDate, a payment not applied yet is looked for again once the
// projection has reached the heads the streams had when asked; one still unknown then does
// not exist.
func (e *Engine) PaymentReservation(ctx context.Context, paymentID string) (string, error) {
	p := e.byName[Payments]
	if !aggregates.ValidID(paymentID) {
		return "", fmt.Errorf("payment %s: %w", paymentID, aggregates.ErrPaymentNotFound)
	}
	if err := e.waitFor(ctx, p, p.all()); err != nil {
		return "", err
	}
	r, found, err := e.payment(p, paymentID)
	if err == nil && !found {
		if err = e.waitForHeads(ctx, p); err == nil {
			r, found, err = e.payment(p, paymentID)
		}
	}
	if err != nil {
		return "", err
	}
	if !found {
		return "", fmt.Errorf("payment %s: %w", paymentID, aggregates.ErrPaymentNotFound)
	}
	return r.reservationID, nil
}

// AppliedPaymentReservation is PaymentReservation without waiting for anything but the read
// models' start-up catch-up: what the payments read model has applied so far. For a log with
// one writer, whose own recent payments the caller remembers: every payment older than those
// is applied, and waiting for the streams' heads on each miss would hold every keyed payment
// up behind the projection's lag.
func (e *Engine) AppliedPaymentReservation(ctx context.Context, paymentID string) (string, error) {
	if !aggregates.ValidID(paymentID) {
		return "", fmt.Errorf("payment %s: %w", paymentID, aggregates.ErrPaymentNotFound)
	}
	if err := e.WaitReady(ctx); err != nil {
		return "", err
	}
	r, found, err := e.payment(e.byName[Payments], paymentID)
	if err != nil {
		return "", err
	}
	if !found {
		return "", fmt.Errorf("payment %s: %w", paymentID, aggregates.ErrPaymentNotFound)
	}
	return r.reservationID, nil
}

func (e *Engine) payment(p *proj, id string) (r paymentRecord, found bool, err error) {
	g := p.acquire()
	defer p.release(g)
	err = g.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket([]byte(bPayments)).Get([]byte(id))
		if v == nil {
			return nil
		}
		found = true
		var err error
		r, err = decodePayment(v)
		return err
	})
	if err != nil {
		err = fmt.Errorf("projections: payment %s: %w", id, err)
	}
	return r, found, err
}

// PendingPayment is a payment whose saga has not finished: STARTED (pay) or REFUNDING.
type PendingPayment struct {
	PaymentID     string
	ReservationID string
	UserID        string
	Amount        int64
	Status        aggregates.PaymentStatus
	StartedAt     time.Time
}

// PendingPayments returns every payment left STARTED or REFUNDING, for recovery at start-up.
// Call it after WaitReady.
func (e *Engine) PendingPayments(ctx context.Context) ([]PendingPayment, error) {
	p := e.byName[Payments]
	g := p.acquire()
	defer p.release(g)
	var out []PendingPayment
	err := g.db.View(func(tx *bolt.Tx) error {
		pay := tx.Bucket([]byte(bPayments))
		return tx.Bucket([]byte(bPending)).ForEach(func(k, _ []byte) error {
			v := pay.Get(k)
			if v == nil {
				return nil
			}
			r, err := decodePayment(v)
			if err != nil {
				return err
			}
			out = append(out, PendingPayment{PaymentID: string(k), ReservationID: r.reservationID, UserID: r.userID,
				Amount: r.amount, Status: aggregates.PaymentStatus(r.status), StartedAt: r.startedAt})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("projections: pending payments: %w", err)
	}
	return out, nil
}

func (e *Engine) walletStream(userID string) (string, error) {
	if !aggregates.ValidID(userID) {
		return "", fmt.Errorf("wallet %s: %w", userID, aggregates.ErrInvalid)
	}
	stream, _, err := eventstore.Place(eventstore.WalletGroupOf(userID))
	if err != nil {
		return "", fmt.Errorf("wallet %s: %w", userID, aggregates.ErrInvalid)
	}
	return stream, nil
}

// Wallet returns a user's balance (0 for a user without a wallet).
func (e *Engine) Wallet(ctx context.Context, userID string) (WalletView, error) {
	p := e.byName[Wallets]
	stream, err := e.walletStream(userID)
	if err != nil {
		return WalletView{}, err
	}
	if err := e.waitFor(ctx, p, p.only(stream)); err != nil {
		return WalletView{}, err
	}
	g := p.acquire()
	defer p.release(g)
	w := WalletView{UserID: userID}
	err = g.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket([]byte(bBalances)).Get([]byte(userID)); v != nil {
			d := dec{b: v}
			w.Balance = d.int()
			return d.err
		}
		return nil
	})
	if err != nil {
		return WalletView{}, fmt.Errorf("projections: wallet %s: %w", userID, err)
	}
	return w, nil
}

// History returns a user's ledger, oldest first (empty for a user without a wallet).
func (e *Engine) History(ctx context.Context, userID string) ([]LedgerEntry, error) {
	p := e.byName[Wallets]
	stream, err := e.walletStream(userID)
	if err != nil {
		return nil, err
	}
	if err := e.waitFor(ctx, p, p.only(stream)); err != nil {
		return nil, err
	}
	g := p.acquire()
	defer p.release(g)
	out := []LedgerEntry{}
	err = g.db.View(func(tx *bolt.Tx) error {
		prefix := append([]byte(userID), 0)
		cur := tx.Bucket([]byte(bLedger)).Cursor()
		for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
			d := dec{b: v}
			l := LedgerEntry{Type: d.str(), Amount: d.int(), BalanceAfter: d.int(), At: d.time(), Reference: d.str()}
			if d.err != nil {
				return d.err
			}
			out = append(out, l)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("projections: history of %s: %w", userID, err)
	}
	return out, nil
}

// DailyRanking returns the dates whose first sell-out fell on day's calendar date, midnight to
// midnight in day's location, fastest sell-out first (ties: earlier sell-out, then IDs).
// Times are shown in the configured location.
func (e *Engine) DailyRanking(ctx context.Context, day time.Time) ([]RankingEntry, error) {
	y, mo, d := day.Date()
	from := time.Date(y, mo, d, 0, 0, 0, 0, day.Location())
	to := from.AddDate(0, 0, 1)
	type row struct {
		RankingEntry
		took time.Duration
	}
	p := e.byName[Ranking]
	g := p.acquire()
	defer p.release(g)
	var rows []row
	err := g.db.View(func(tx *bolt.Tx) error {
		titles := tx.Bucket([]byte(bTitles))
		cur := tx.Bucket([]byte(bSellOuts)).Cursor()
		start, end := u64(sortableNanos(from)), u64(sortableNanos(to))
		for k, v := cur.Seek(start); k != nil && bytes.Compare(k[:8], end) < 0; k, v = cur.Next() {
			if len(k) < 8 {
				return errCorrupt
			}
			at := time.Unix(0, int64(getU64(k[:8])^(1<<63))).In(e.opts.Location)
			dd := dec{b: v}
			opened := dd.time()
			if dd.err != nil {
				return dd.err
			}
			c, date := splitDateKey(string(k[8:]))
			took := at.Sub(opened)
			rows = append(rows, row{RankingEntry{ConcertID: c, DateID: date, Title: string(titles.Get([]byte(c))),
				SoldOutAt: at, SecondsToSellOut: int64(took / time.Second)}, took})
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("projections: ranking: %w", err)
	}
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.took != b.took {
			return a.took < b.took
		}
		if !a.SoldOutAt.Equal(b.SoldOutAt) {
			return a.SoldOutAt.Before(b.SoldOutAt)
		}
		if a.ConcertID != b.ConcertID {
			return a.ConcertID < b.ConcertID
		}
		return a.DateID < b.DateID
	})
	out := make([]RankingEntry, len(rows))
	for i, r := range rows {
		out[i] = r.RankingEntry
		out[i].Rank = i + 1
	}
	return out, nil
}
