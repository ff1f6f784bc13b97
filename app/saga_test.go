package app

import (
	"sync"
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// pendingPayment finds the one payment the log shows in the middle of a saga.
func (h *harness) pendingPayment() string {
	h.t.Helper()
	ids, err := logReads{h.log}.PendingPayments(h.ctx)
	if err != nil || len(ids) != 1 {
		h.t.Fatalf("pending payments %v (%v), want exactly one", ids, err)
	}
	return ids[0]
}

// agree checks that wallet, reservation, seat and payment tell the same story.
func (h *harness) agree(user, resID string, seatNo int, charged, price int64) {
	h.t.Helper()
	r := h.reservation(resID)
	s := h.seat(seatNo)
	w := h.wallet(user)
	switch r.Status() {
	case aggregates.ReservationStatusConfirmed:
		p := h.payment(r.PaymentID())
		if p.Status() != aggregates.PaymentStatusCompleted || s.Status() != aggregates.SeatStatusSold || w.Balance() != charged-price {
			h.t.Fatalf("confirmed reservation but payment %s, seat %s, balance %d", p.Status(), s.Status(), w.Balance())
		}
	default:
		if w.Balance() != charged {
			h.t.Fatalf("reservation %s but balance %d, want %d (debit not reversed)", r.Status(), w.Balance(), charged)
		}
		if s.Status() == aggregates.SeatStatusSold {
			h.t.Fatalf("reservation %s but seat sold", r.Status())
		}
	}
}

// interruptedPayment pays seat 2 (price 100) of u1 (1,000 points, a queue token) with a crash
// right before step, and returns the harness and the reservation.
func interruptedPayment(t *testing.T, sk storeKind, step string) (*harness, string) {
	t.Helper()
	h := newHarness(t, sk.open(t), Config{}, sk.sole)
	h.concert(5, 100)
	h.charge("u1", 1000)
	if _, _, err := h.svc.IssueToken(h.ctx, Meta{}, "u1"); err != nil {
		t.Fatal(err)
	}
	res := h.hold("u1", 2)
	h.fault.arm(step)
	if _, err := h.svc.Pay(h.ctx, Meta{}, res, "u1"); !isErr(err, eventstore.ErrUnavailable) {
		t.Fatalf("pay with a crash before %s: %v", step, err)
	}
	return h, res
}

func TestPaymentSagaRecoversFromACrashAtEachStep(t *testing.T) {
	steps := []string{"/debit", "/complete"}
	for _, sk := range withSoleWriter(stores) {
		for _, step := range steps {
			t.Run(sk.name+": a payment interrupted before "+step+" is completed by recovery", func(t *testing.T) {
				h, res := interruptedPayment(t, sk, step)
				pid := h.pendingPayment()
				if err := h.svc.Recover(h.ctx, logReads{h.log}); err != nil {
					t.Fatal(err)
				}
				if st := h.payment(pid).Status(); st != aggregates.PaymentStatusCompleted {
					t.Fatalf("payment %s after recovery, want COMPLETED", st)
				}
				h.agree("u1", res, 2, 1000, 100)
				if n := h.countEvents(eventstore.AggregateRef{Type: eventstore.TypeWallet, ID: "u1"}, "PointsDebited"); n != 1 {
					t.Fatalf("%d debits, want 1", n)
				}
			})
			t.Run(sk.name+": a payment interrupted before "+step+" whose hold lapsed meanwhile is reversed or completed consistently", func(t *testing.T) {
				h, res := interruptedPayment(t, sk, step)
				h.clock.Advance(6 * time.Minute)
				h.svc.ExpireDue(h.ctx)
				if err := h.svc.Recover(h.ctx, logReads{h.log}); err != nil {
					t.Fatal(err)
				}
				h.svc.ExpireDue(h.ctx)
				h.agree("u1", res, 2, 1000, 100)
				if pending, _ := (logReads{h.log}).PendingPayments(h.ctx); len(pending) != 0 {
					t.Fatalf("payments still pending after recovery: %v", pending)
				}
			})
		}
	}
}

func TestRefundSagaRecoversFromACrashAtEachStep(t *testing.T) {
	for _, step := range []string{"/refund-points", "/refunded"} {
		t.Run("a refund interrupted before "+step+" is finished by recovery", func(t *testing.T) {
			h := newHarness(t, eventstore.NewMemStore(), Config{})
			h.concert(5, 100)
			h.charge("u1", 1000)
			res := h.hold("u1", 3)
			p, err := h.svc.Pay(h.ctx, Meta{}, res, "u1")
			if err != nil {
				t.Fatal(err)
			}
			h.fault.arm(step)
			if _, err := h.svc.Refund(h.ctx, Meta{}, p.PaymentID); !isErr(err, eventstore.ErrUnavailable) {
				t.Fatalf("refund with a crash before %s: %v", step, err)
			}
			if err := h.svc.Recover(h.ctx, logReads{h.log}); err != nil {
				t.Fatal(err)
			}
			if st := h.payment(p.PaymentID).Status(); st != aggregates.PaymentStatusRefunded {
				t.Fatalf("payment %s, want REFUNDED", st)
			}
			if st := h.reservation(res).Status(); st != aggregates.ReservationStatusCancelled {
				t.Fatalf("reservation %s, want CANCELLED", st)
			}
			if b := h.wallet("u1").Balance(); b != 1000 {
				t.Fatalf("balance %d, want 1000", b)
			}
			if st := h.seat(3).Status(); st != aggregates.SeatStatusAvailable {
				t.Fatalf("seat %s, want AVAILABLE", st)
			}
		})
	}
}

func TestARefundWhoseGateCommitFailsChangesNothingAndCanBeRepeated(t *testing.T) {
	h := newHarness(t, eventstore.NewMemStore(), Config{})
	h.concert(5, 100)
	h.charge("u1", 1000)
	p, err := h.svc.Pay(h.ctx, Meta{}, h.hold("u1", 3), "u1")
	if err != nil {
		t.Fatal(err)
	}
	h.fault.arm("/refund")
	if _, err := h.svc.Refund(h.ctx, Meta{}, p.PaymentID); !isErr(err, eventstore.ErrUnavailable) {
		t.Fatalf("refund with a crash before its gate: %v", err)
	}
	if st, seat := h.payment(p.PaymentID).Status(), h.seat(3).Status(); st != aggregates.PaymentStatusCompleted || seat != aggregates.SeatStatusSold {
		t.Fatalf("payment %s, seat %s after a refund that did not land; want COMPLETED, SOLD", st, seat)
	}
	if r, err := h.svc.Refund(h.ctx, Meta{}, p.PaymentID); err != nil || r.Status != aggregates.PaymentStatusRefunded {
		t.Fatalf("the repeated refund: %+v %v", r, err)
	}
}

// TestAKeyReusedForAReservationOfAnotherDateIsRefused: a payment's ID comes from its request
// key, and the payment lives in its reservation's date; the same key sent for a reservation
// of another date must not start a second payment of that ID there (the wallet's debit of the
// ID is the first one's), whether this process started the first or not.
func TestAKeyReusedForAReservationOfAnotherDateIsRefused(t *testing.T) {
	for _, restarted := range []bool{false, true} {
		name := map[bool]string{false: "through the process that paid", true: "through a process that did not"}[restarted]
		t.Run(name, func(t *testing.T) {
			log := eventstore.NewMemStore()
			h := newHarness(t, log, Config{})
			h.concert(5, 100)
			if _, err := h.svc.CreateConcert(h.ctx, Meta{}, NewConcert{ConcertID: "c2", Title: "Other", Dates: []NewDate{{DateID: "d1", StartsAt: t0.Add(720 * time.Hour), SeatCount: 5, Price: 100}}}); err != nil {
				t.Fatal(err)
			}
			h.charge("u1", 1000)
			if _, err := h.svc.Pay(h.ctx, Meta{RequestKey: "pay-1"}, h.hold("u1", 1), "u1"); err != nil {
				t.Fatal(err)
			}
			other, err := h.svc.Hold(h.ctx, Meta{}, HoldRequest{UserID: "u1", ConcertID: "c2", DateID: "d1", SeatNo: 1})
			if err != nil {
				t.Fatal(err)
			}
			if restarted {
				h = newHarness(t, log, Config{})
			}
			if _, err := h.svc.Pay(h.ctx, Meta{RequestKey: "pay-1"}, other.ReservationID, "u1"); !isErr(err, ErrKeyReused) {
				t.Fatalf("pay-1 for a reservation of another date: %v, want ErrKeyReused", err)
			}
			if st := h.reservation(other.ReservationID).Status(); st != aggregates.ReservationStatusHeld {
				t.Fatalf("the other date's reservation is %s, want HELD", st)
			}
			if b := h.wallet("u1").Balance(); b != 900 {
				t.Fatalf("balance %d, want 900", b)
			}
		})
	}
}

func TestBookingFlow(t *testing.T) {
	tests := []struct {
		name string
		run  func(t *testing.T, h *harness)
	}{
		{"a paid reservation is confirmed, its seat sold and its points debited", func(t *testing.T, h *harness) {
			h.charge("u1", 1000)
			res := h.hold("u1", 1)
			p, err := h.svc.Pay(h.ctx, Meta{}, res, "u1")
			if err != nil {
				t.Fatal(err)
			}
			if p.Status != aggregates.PaymentStatusCompleted || p.Amount != 100 || p.CompletedAt == nil {
				t.Fatalf("payment %+v", p)
			}
			h.agree("u1", res, 1, 1000, 100)
		}},
		{"paying without enough points changes nothing and keeps the hold", func(t *testing.T, h *harness) {
			h.charge("u1", 50)
			res := h.hold("u1", 1)
			if _, err := h.svc.Pay(h.ctx, Meta{}, res, "u1"); !isErr(err, aggregates.ErrInsufficientPoints) {
				t.Fatalf("pay: %v", err)
			}
			if st := h.reservation(res).Status(); st != aggregates.ReservationStatusHeld {
				t.Fatalf("reservation %s", st)
			}
			h.charge("u1", 50)
			if _, err := h.svc.Pay(h.ctx, Meta{}, res, "u1"); err != nil {
				t.Fatalf("pay after topping up: %v", err)
			}
		}},
		{"somebody else's reservation cannot be paid", func(t *testing.T, h *harness) {
			h.charge("u2", 1000)
			res := h.hold("u1", 1)
			if _, err := h.svc.Pay(h.ctx, Meta{}, res, "u2"); !isErr(err, aggregates.ErrForbidden) {
				t.Fatalf("pay: %v", err)
			}
		}},
		{"an unknown reservation cannot be paid", func(t *testing.T, h *harness) {
			if _, err := h.svc.Pay(h.ctx, Meta{}, "nope", "u1"); !isErr(err, aggregates.ErrReservationNotFound) {
				t.Fatalf("pay: %v", err)
			}
		}},
		{"an unpaid hold expires at heldUntil and frees its seat", func(t *testing.T, h *harness) {
			res := h.hold("u1", 1)
			h.clock.Advance(5*time.Minute - time.Millisecond)
			h.svc.ExpireDue(h.ctx)
			if st := h.reservation(res).Status(); st != aggregates.ReservationStatusHeld {
				t.Fatalf("reservation %s before heldUntil", st)
			}
			h.clock.Advance(time.Millisecond)
			h.svc.ExpireDue(h.ctx)
			if st := h.reservation(res).Status(); st != aggregates.ReservationStatusExpired {
				t.Fatalf("reservation %s at heldUntil", st)
			}
			h.hold("u2", 1)
		}},
		{"an expired reservation cannot be paid and nothing is debited", func(t *testing.T, h *harness) {
			h.charge("u1", 1000)
			res := h.hold("u1", 1)
			h.clock.Advance(5 * time.Minute)
			h.svc.ExpireDue(h.ctx)
			if _, err := h.svc.Pay(h.ctx, Meta{}, res, "u1"); !isErr(err, aggregates.ErrReservationNotPayable) {
				t.Fatalf("pay: %v", err)
			}
			h.agree("u1", res, 1, 1000, 100)
		}},
		{"a hold that lapses before confirmation gets its debit reversed", func(t *testing.T, h *harness) {
			h.charge("u1", 1000)
			res := h.hold("u1", 1)
			h.clock.Advance(5 * time.Minute) // lapsed, but the sweeper has not run yet
			if _, err := h.svc.Pay(h.ctx, Meta{}, res, "u1"); !isErr(err, aggregates.ErrReservationNotPayable) {
				t.Fatalf("pay: %v", err)
			}
			h.svc.ExpireDue(h.ctx)
			h.agree("u1", res, 1, 1000, 100)
		}},
		{"a hold that lapses while its points are debited is not confirmed, and the debit is reversed with the lock released in one commit", func(t *testing.T, h *harness) {
			h.charge("u1", 1000)
			res := h.hold("u1", 1)
			h.fault.then("/debit", func() { h.clock.Advance(5 * time.Minute) })
			if _, err := h.svc.Pay(h.ctx, Meta{}, res, "u1"); !isErr(err, aggregates.ErrReservationNotPayable) {
				t.Fatalf("pay: %v", err)
			}
			pid := h.paymentOf(res)
			if p := h.payment(pid); p.Status() != aggregates.PaymentStatusFailed || p.FailureReason() != aggregates.FailNotPayable {
				t.Fatalf("payment %s (%s), want FAILED (%s)", p.Status(), p.FailureReason(), aggregates.FailNotPayable)
			}
			if n := h.countEvents(eventstore.AggregateRef{Type: eventstore.TypeWallet, ID: "u1"}, "PointsRefunded"); n != 1 {
				t.Fatalf("%d reversals, want 1", n)
			}
			if r := h.reservation(res); r.PayingWith() != "" {
				t.Fatalf("reservation still locked by %q", r.PayingWith())
			}
			h.sameCommit(pid, "ReservationPaymentAborted", "PaymentFailed")
			h.svc.ExpireDue(h.ctx)
			h.agree("u1", res, 1, 1000, 100)
		}},
		{"a payment is three rounds: its start with the lock, the debit, and its completion with the confirmation and the sales", func(t *testing.T, h *harness) {
			h.charge("u1", 1000)
			res, err := h.svc.Hold(h.ctx, Meta{}, HoldRequest{UserID: "u1", ConcertID: "c1", DateID: "d1", SeatNos: []int{2, 3}})
			if err != nil {
				t.Fatal(err)
			}
			p, err := h.svc.Pay(h.ctx, Meta{}, res.ReservationID, "u1")
			if err != nil {
				t.Fatal(err)
			}
			h.sameCommit(p.PaymentID, "PaymentStarted", "ReservationPaymentStarted")
			h.sameCommit(p.PaymentID, "ReservationConfirmed", "SeatSold", "PaymentCompleted")
			if n := h.commitsOf(p.PaymentID); n != 2 {
				t.Fatalf("the payment took %d commits of its date, want 2", n)
			}
			r, err := h.svc.Refund(h.ctx, Meta{}, p.PaymentID)
			if err != nil || r.Status != aggregates.PaymentStatusRefunded {
				t.Fatalf("refund: %+v %v", r, err)
			}
			h.sameCommit(p.PaymentID, "PaymentRefundStarted", "ReservationCancelled", "SeatReleased")
		}},
		{"the owner can cancel a hold and the seat is free again", func(t *testing.T, h *harness) {
			res := h.hold("u1", 1)
			if _, err := h.svc.Cancel(h.ctx, Meta{}, res, "u2"); !isErr(err, aggregates.ErrForbidden) {
				t.Fatalf("cancel by another user: %v", err)
			}
			v, err := h.svc.Cancel(h.ctx, Meta{}, res, "u1")
			if err != nil || v.Status != aggregates.ReservationStatusCancelled {
				t.Fatalf("cancel: %+v %v", v, err)
			}
			if _, err := h.svc.Cancel(h.ctx, Meta{}, res, "u1"); !isErr(err, aggregates.ErrReservationNotCancellable) {
				t.Fatalf("second cancel: %v", err)
			}
			h.hold("u2", 1)
		}},
		{"a refund returns the points, cancels the reservation and frees the seat, once", func(t *testing.T, h *harness) {
			h.charge("u1", 1000)
			res := h.hold("u1", 1)
			p, err := h.svc.Pay(h.ctx, Meta{}, res, "u1")
			if err != nil {
				t.Fatal(err)
			}
			r, err := h.svc.Refund(h.ctx, Meta{}, p.PaymentID)
			if err != nil || r.Status != aggregates.PaymentStatusRefunded {
				t.Fatalf("refund: %+v %v", r, err)
			}
			if _, err := h.svc.Refund(h.ctx, Meta{}, p.PaymentID); !isErr(err, aggregates.ErrPaymentNotRefundable) {
				t.Fatalf("second refund: %v", err)
			}
			if b := h.wallet("u1").Balance(); b != 1000 {
				t.Fatalf("balance %d", b)
			}
			h.hold("u2", 1)
		}},
		{"an unknown payment cannot be refunded", func(t *testing.T, h *harness) {
			if _, err := h.svc.Refund(h.ctx, Meta{}, "nope"); !isErr(err, aggregates.ErrPaymentNotFound) {
				t.Fatalf("refund: %v", err)
			}
		}},
		{"a hold whose commit fails holds no seat and opens no reservation", func(t *testing.T, h *harness) {
			h.fault.arm("/hold")
			if _, err := h.svc.Hold(h.ctx, Meta{}, HoldRequest{UserID: "u1", ConcertID: "c1", DateID: "d1", SeatNos: []int{1, 2}}); err == nil {
				t.Fatal("hold succeeded despite the crash")
			}
			for _, n := range []int{1, 2} {
				if st := h.seat(n).Status(); st != aggregates.SeatStatusAvailable {
					t.Fatalf("seat %d is %s right after the failed hold", n, st)
				}
			}
			if ids := h.reservationsOf("u1"); len(ids) != 0 {
				t.Fatalf("reservations %v after the failed hold", ids)
			}
		}},
		{"a payment whose start commit fails leaves no payment and no lock, so the next payment goes through", func(t *testing.T, h *harness) {
			h.charge("u1", 1000)
			res := h.hold("u1", 1)
			h.fault.arm("/start")
			if _, err := h.svc.Pay(h.ctx, Meta{}, res, "u1"); !isErr(err, eventstore.ErrUnavailable) {
				t.Fatalf("pay with a failed start: %v", err)
			}
			if r := h.reservation(res); r.PayingWith() != "" || r.Status() != aggregates.ReservationStatusHeld {
				t.Fatalf("reservation %s still locked by %q", r.Status(), r.PayingWith())
			}
			if pending, _ := (logReads{h.log}).PendingPayments(h.ctx); len(pending) != 0 {
				t.Fatalf("payments %v left for recovery by a start that did not land", pending)
			}
			if _, err := h.svc.Pay(h.ctx, Meta{}, res, "u1"); err != nil {
				t.Fatalf("the next payment: %v", err)
			}
		}},
		{"a payment whose token revocation fails is completed all the same", func(t *testing.T, h *harness) {
			h.charge("u1", 1000)
			if _, _, err := h.svc.IssueToken(h.ctx, Meta{}, "u1"); err != nil {
				t.Fatal(err)
			}
			res := h.hold("u1", 1)
			h.fault.arm("/revoke")
			p, err := h.svc.Pay(h.ctx, Meta{}, res, "u1")
			if err != nil || p.Status != aggregates.PaymentStatusCompleted {
				t.Fatalf("pay with a failed revocation: %+v, %v", p, err)
			}
			h.agree("u1", res, 1, 1000, 100)
		}},
		{"holds of unknown concerts, dates and seats are refused", func(t *testing.T, h *harness) {
			for _, c := range []struct {
				req HoldRequest
				err error
			}{
				{HoldRequest{UserID: "u1", ConcertID: "c9", DateID: "d1", SeatNo: 1}, aggregates.ErrConcertNotFound},
				{HoldRequest{UserID: "u1", ConcertID: "c1", DateID: "d9", SeatNo: 1}, aggregates.ErrDateNotFound},
				{HoldRequest{UserID: "u1", ConcertID: "c1", DateID: "d1", SeatNo: 6}, aggregates.ErrSeatNotFound},
				{HoldRequest{UserID: "u1", ConcertID: "c1", DateID: "d1", SeatNo: 0}, aggregates.ErrSeatNotFound},
			} {
				if _, err := h.svc.Hold(h.ctx, Meta{}, c.req); !isErr(err, c.err) {
					t.Errorf("hold %+v: %v, want %v", c.req, err, c.err)
				}
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, eventstore.NewMemStore(), Config{})
			h.concert(5, 100)
			tt.run(t, h)
		})
	}
}

func TestExpiryRacingAPaymentHasExactlyOneWinner(t *testing.T) {
	for i := range 20 {
		h := newHarness(t, eventstore.NewMemStore(), Config{})
		h.concert(5, 100)
		h.charge("u1", 1000)
		res := h.hold("u1", 1)
		h.clock.Advance(5*time.Minute - time.Microsecond)
		var wg sync.WaitGroup
		wg.Add(2)
		go func() {
			defer wg.Done()
			_, err := h.svc.Pay(h.ctx, Meta{}, res, "u1")
			if err != nil && !isErr(err, aggregates.ErrReservationNotPayable) {
				t.Errorf("round %d: pay: %v", i, err)
			}
		}()
		go func() {
			defer wg.Done()
			h.clock.Advance(time.Microsecond)
			h.svc.ExpireDue(h.ctx)
		}()
		wg.Wait()
		h.svc.ExpireDue(h.ctx)
		h.agree("u1", res, 1, 1000, 100)
	}
}

func TestQueue(t *testing.T) {
	t.Run("positions increase in arrival order and a batch is admitted per interval", func(t *testing.T) {
		h := newHarness(t, eventstore.NewMemStore(), Config{QueueBatch: 2, QueueInterval: 10 * time.Second})
		var toks []Token
		for i := range 5 {
			tok, created, err := h.svc.IssueToken(h.ctx, Meta{}, userN(i))
			if err != nil || !created {
				t.Fatalf("issue: %v %v", created, err)
			}
			if i > 0 && tok.Position <= toks[i-1].Position {
				t.Fatalf("position %d after %d", tok.Position, toks[i-1].Position)
			}
			toks = append(toks, tok)
		}
		want := []string{"ACTIVE", "ACTIVE", "WAITING", "WAITING", "WAITING"}
		for i, tok := range toks {
			st, err := h.svc.TokenStatus(h.ctx, tok.Token)
			if err != nil || st.Status != want[i] {
				t.Fatalf("token %d: %+v %v, want %s", i, st, err, want[i])
			}
		}
		if st, _ := h.svc.TokenStatus(h.ctx, toks[4].Token); st.Ahead != 2 {
			t.Fatalf("ahead %d, want 2", st.Ahead)
		}
		if _, err := h.svc.CheckToken(h.ctx, toks[2].Token); !isErr(err, ErrTokenNotActive) {
			t.Fatalf("check waiting token: %v", err)
		}
		h.clock.Advance(10*time.Second + time.Millisecond)
		if err := h.svc.admit(h.ctx); err != nil {
			t.Fatal(err)
		}
		if u, err := h.svc.CheckToken(h.ctx, toks[3].Token); err != nil || u != userN(3) {
			t.Fatalf("check admitted token: %q %v", u, err)
		}
		if _, err := h.svc.CheckToken(h.ctx, toks[4].Token); !isErr(err, ErrTokenNotActive) {
			t.Fatalf("check token beyond the batch: %v", err)
		}
	})
	t.Run("a user with a valid token gets the same token back", func(t *testing.T) {
		h := newHarness(t, eventstore.NewMemStore(), Config{})
		a, _, _ := h.svc.IssueToken(h.ctx, Meta{}, "u1")
		b, created, err := h.svc.IssueToken(h.ctx, Meta{}, "u1")
		if err != nil || created || a.Token != b.Token {
			t.Fatalf("second issue: created=%v same=%v %v", created, a.Token == b.Token, err)
		}
	})
	t.Run("an active token expires after the active TTL and a new one can be issued", func(t *testing.T) {
		h := newHarness(t, eventstore.NewMemStore(), Config{QueueActiveTTL: time.Minute})
		a, _, _ := h.svc.IssueToken(h.ctx, Meta{}, "u1")
		h.clock.Advance(time.Minute)
		if _, err := h.svc.CheckToken(h.ctx, a.Token); !isErr(err, ErrTokenExpired) {
			t.Fatalf("check: %v", err)
		}
		b, created, err := h.svc.IssueToken(h.ctx, Meta{}, "u1")
		if err != nil || !created || b.Token == a.Token || b.Status != "ACTIVE" {
			t.Fatalf("reissue: %+v %v %v", b, created, err)
		}
		if _, err := h.svc.CheckToken(h.ctx, a.Token); !isErr(err, ErrTokenExpired) {
			t.Fatalf("old token after reissue: %v", err)
		}
	})
	t.Run("a payment revokes the payer's token", func(t *testing.T) {
		h := newHarness(t, eventstore.NewMemStore(), Config{})
		h.concert(5, 100)
		h.charge("u1", 1000)
		tok, _, _ := h.svc.IssueToken(h.ctx, Meta{}, "u1")
		res := h.hold("u1", 1)
		if _, err := h.svc.Pay(h.ctx, Meta{}, res, "u1"); err != nil {
			t.Fatal(err)
		}
		if _, err := h.svc.CheckToken(h.ctx, tok.Token); !isErr(err, ErrTokenExpired) {
			t.Fatalf("check after payment: %v", err)
		}
		if st, _ := h.svc.TokenStatus(h.ctx, tok.Token); st.Status != "EXPIRED" {
			t.Fatalf("status after payment: %s", st.Status)
		}
	})
	t.Run("forged, altered and malformed tokens are invalid", func(t *testing.T) {
		h := newHarness(t, eventstore.NewMemStore(), Config{})
		tok, _, _ := h.svc.IssueToken(h.ctx, Meta{}, "u1")
		other := New(h.log, Config{TokenSecret: []byte("another secret")}, Options{Clock: h.clock, Logger: quietLogger()})
		forged, _, _ := other.IssueToken(h.ctx, Meta{}, "u2")
		altered := []byte(tok.Token)
		altered[3] ^= 1
		for _, bad := range []string{"", "x", "a.b", tok.Token + "x", string(altered), forged.Token} {
			if _, err := h.svc.CheckToken(h.ctx, bad); !isErr(err, ErrTokenInvalid) {
				t.Errorf("check %q: %v", bad, err)
			}
		}
	})
}

func TestStartRearmsHoldsAndRecoversAfterARestart(t *testing.T) {
	log := eventstore.NewMemStore()
	h := newHarness(t, log, Config{})
	h.concert(5, 100)
	h.charge("u1", 1000)
	res := h.hold("u1", 1)
	h.fault.arm("/complete")
	if _, err := h.svc.Pay(h.ctx, Meta{}, res, "u1"); err == nil {
		t.Fatal("pay succeeded despite the crash")
	}
	res2 := h.hold("u2", 2)

	// A new process over the same log.
	h2 := newHarness(t, log, Config{})
	h2.clock.Set(h.clock.Now())
	if err := h2.svc.Start(h2.ctx, logReads{log}); err != nil {
		t.Fatal(err)
	}
	if !h2.svc.Ready() {
		t.Fatal("not ready after Start")
	}
	if st := h2.reservation(res).Status(); st != aggregates.ReservationStatusConfirmed {
		t.Fatalf("interrupted payment's reservation %s after restart", st)
	}
	h2.clock.Advance(5 * time.Minute)
	h2.svc.ExpireDue(h2.ctx)
	if st := h2.reservation(res2).Status(); st != aggregates.ReservationStatusExpired {
		t.Fatalf("hold made before the restart is %s after heldUntil", st)
	}
}

// TestARetriedRequestResumesTheSameSaga: when the first answer of a request was lost (the
// server died after the command took effect, before its idempotent answer was stored), a retry
// with the same request key must find the same reservation or payment, not start another.
func TestARetriedRequestResumesTheSameSaga(t *testing.T) {
	h := newHarness(t, eventstore.NewMemStore(), Config{})
	h.concert(5, 100)
	key := func(k string) Meta { return Meta{RequestKey: k} }
	for range 2 {
		if _, err := h.svc.Charge(h.ctx, key("charge-1"), "u1", 500); err != nil {
			t.Fatal(err)
		}
	}
	if b := h.wallet("u1").Balance(); b != 500 {
		t.Fatalf("a retried charge counted twice: balance %d", b)
	}
	r1, err := h.svc.Hold(h.ctx, key("hold-1"), HoldRequest{UserID: "u1", ConcertID: "c1", DateID: "d1", SeatNo: 1})
	if err != nil {
		t.Fatal(err)
	}
	r2, err := h.svc.Hold(h.ctx, key("hold-1"), HoldRequest{UserID: "u1", ConcertID: "c1", DateID: "d1", SeatNo: 1})
	if err != nil || r2.ReservationID != r1.ReservationID {
		t.Fatalf("retried hold: %+v %v, want reservation %s", r2, err, r1.ReservationID)
	}
	// The payment is cut off after its debit; the retry finishes that same payment.
	h.fault.arm("/complete")
	if _, err := h.svc.Pay(h.ctx, key("pay-1"), r1.ReservationID, "u1"); err == nil {
		t.Fatal("pay succeeded despite the crash")
	}
	p, err := h.svc.Pay(h.ctx, key("pay-1"), r1.ReservationID, "u1")
	if err != nil || p.Status != aggregates.PaymentStatusCompleted {
		t.Fatalf("retried payment: %+v %v", p, err)
	}
	again, err := h.svc.Pay(h.ctx, key("pay-1"), r1.ReservationID, "u1")
	if err != nil || again.PaymentID != p.PaymentID {
		t.Fatalf("payment retried after it completed: %+v %v", again, err)
	}
	if b := h.wallet("u1").Balance(); b != 400 {
		t.Fatalf("balance %d after one payment of 100", b)
	}
	// The same key for another reservation (its stored answer lost) pays nothing: its payment
	// pays r1, and running it for r3 would confirm r3 on r1's debit.
	other, err := h.svc.Hold(h.ctx, key("hold-4"), HoldRequest{UserID: "u1", ConcertID: "c1", DateID: "d1", SeatNo: 4})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.svc.Pay(h.ctx, key("pay-1"), other.ReservationID, "u1"); !isErr(err, ErrKeyReused) {
		t.Fatalf("pay-1 for another reservation: %v, want ErrKeyReused", err)
	}
	if st := h.reservation(other.ReservationID).Status(); st != aggregates.ReservationStatusHeld {
		t.Fatalf("reservation paid with another reservation's key is %s, want HELD", st)
	}
	// Replay-only (the token was used up): the same request reports its payment, another
	// request fails as the token would.
	if rp, err := h.svc.Pay(h.ctx, Meta{RequestKey: "pay-1", ReplayOnly: true}, r1.ReservationID, "u1"); err != nil || rp.PaymentID != p.PaymentID {
		t.Fatalf("replay-only payment: %+v %v", rp, err)
	}
	if _, err := h.svc.Pay(h.ctx, Meta{RequestKey: "pay-9", ReplayOnly: true}, r1.ReservationID, "u1"); !isErr(err, ErrTokenExpired) {
		t.Fatalf("replay-only payment of another request: %v", err)
	}
	if rh, err := h.svc.Hold(h.ctx, Meta{RequestKey: "hold-1", ReplayOnly: true}, HoldRequest{UserID: "u1", ConcertID: "c1", DateID: "d1", SeatNo: 1}); err != nil || rh.ReservationID != r1.ReservationID {
		t.Fatalf("replay-only hold: %+v %v", rh, err)
	}
	if _, err := h.svc.Hold(h.ctx, Meta{RequestKey: "hold-9", ReplayOnly: true}, HoldRequest{UserID: "u1", ConcertID: "c1", DateID: "d1", SeatNo: 3}); !isErr(err, ErrTokenExpired) {
		t.Fatalf("replay-only hold of another request: %v", err)
	}
	// A different key is a different request: the reservation is no longer payable.
	if _, err := h.svc.Pay(h.ctx, key("pay-2"), r1.ReservationID, "u1"); !isErr(err, aggregates.ErrReservationNotPayable) {
		t.Fatalf("a second payment: %v", err)
	}
	for range 2 {
		if r, err := h.svc.Refund(h.ctx, key("refund-1"), p.PaymentID); err != nil || r.Status != aggregates.PaymentStatusRefunded {
			t.Fatalf("refund (or its retry): %+v %v", r, err)
		}
	}
	if _, err := h.svc.Refund(h.ctx, key("refund-2"), p.PaymentID); !isErr(err, aggregates.ErrPaymentNotRefundable) {
		t.Fatalf("a second refund: %v", err)
	}
	r3 := h.hold("u2", 2)
	for range 2 {
		if v, err := h.svc.Cancel(h.ctx, key("cancel-1"), r3, "u2"); err != nil || v.Status != aggregates.ReservationStatusCancelled {
			t.Fatalf("cancel (or its retry): %+v %v", v, err)
		}
	}
}

func TestARetriedHoldAfterARestartLeavesTheDateAsTheLogHasIt(t *testing.T) {
	for _, sk := range stores {
		t.Run(sk.name, func(t *testing.T) {
			log := sk.open(t)
			h := newHarness(t, log, Config{}, true)
			h.concert(5, 100)
			h.charge("u2", 1000)
			keyed := Meta{RequestKey: "hold-key-1"}
			if _, err := h.svc.Hold(h.ctx, keyed, HoldRequest{UserID: "u1", ConcertID: "c1", DateID: "d1", SeatNo: 1}); err != nil {
				t.Fatal(err)
			}
			other := h.hold("u2", 2)

			// The same process restarted (nothing cached) receives the first hold again, as a
			// client repeats a request whose answer it lost: the store recognises its commit.
			h2 := newHarness(t, log, Config{}, true)
			if _, err := h2.svc.Hold(h2.ctx, keyed, HoldRequest{UserID: "u1", ConcertID: "c1", DateID: "d1", SeatNo: 1}); err != nil {
				t.Fatalf("the repeated hold: %v", err)
			}
			if err := h2.svc.Start(h2.ctx, logReads{log}); err != nil {
				t.Fatal(err)
			}
			// Had the repeat's own decision been cached as the date, the date would know one
			// reservation, and u2's would be "not found".
			if _, err := h2.svc.Pay(h2.ctx, Meta{}, other, "u2"); err != nil {
				t.Fatalf("paying the other reservation of the date after the repeat: %v", err)
			}
			if st := h2.seat(2).Status(); st != aggregates.SeatStatusSold {
				t.Fatalf("seat 2 is %s after its payment, want SOLD", st)
			}
		})
	}
}

func TestATokenAdmittedThroughOneInstanceIsActiveThroughAnotherAtOnce(t *testing.T) {
	log := stores[1].open(t) // JetStream: the followers lag behind the appends as in production
	cfg := Config{QueueBatch: 100, QueueInterval: time.Hour, QueueActiveTTL: time.Hour}
	a, b := newHarness(t, log, cfg), newHarness(t, log, cfg)
	for _, h := range []*harness{a, b} {
		if err := h.svc.Start(h.ctx, logReads{log}); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 20 {
		tok, _, err := a.svc.IssueToken(a.ctx, Meta{}, userN(i))
		if err != nil {
			t.Fatal(err)
		}
		if err := a.svc.admit(a.ctx); err != nil {
			t.Fatal(err)
		}
		// Instance a shows it ACTIVE; a client may send its next request to b.
		if st, err := a.svc.TokenStatus(a.ctx, tok.Token); err != nil || st.Status != "ACTIVE" {
			t.Fatalf("token %d through a: %+v, %v", i, st, err)
		}
		if user, err := b.svc.CheckToken(b.ctx, tok.Token); err != nil || user != userN(i) {
			t.Fatalf("token %d, ACTIVE through a, checked through b: %q, %v", i, user, err)
		}
	}
}

func TestAPaymentThroughAnInstanceWithAStaleDateIsDecidedByTheLog(t *testing.T) {
	log := stores[0].open(t)
	a, b := newHarness(t, log, Config{}), newHarness(t, log, Config{})
	for _, h := range []*harness{a, b} {
		if err := h.svc.Start(h.ctx, logReads{log}); err != nil {
			t.Fatal(err)
		}
	}
	a.concert(5, 100)
	a.charge("u1", 1000)
	first, second := a.hold("u1", 1), a.hold("u1", 2)
	// b has never seen the date: it reads it from the log, and pays.
	if _, err := b.svc.Pay(b.ctx, Meta{}, first, "u1"); err != nil {
		t.Fatalf("pay through the instance that had not seen the hold: %v", err)
	}
	// b's cached date now shows the second hold HELD; a cancels it.
	if _, err := a.svc.Cancel(a.ctx, Meta{}, second, "u1"); err != nil {
		t.Fatal(err)
	}
	_, err := b.svc.Pay(b.ctx, Meta{}, second, "u1")
	if !isErr(err, aggregates.ErrReservationNotPayable) {
		t.Fatalf("paying a reservation cancelled through the other instance: %v, want not payable", err)
	}
	if st := a.reservation(second).Status(); st != aggregates.ReservationStatusCancelled {
		t.Fatalf("the cancelled reservation is %s after the refused payment", st)
	}
	if bal := a.wallet("u1").Balance(); bal != 900 {
		t.Fatalf("balance %d, want 900: one payment of 100, the refused one debited nothing or was reversed", bal)
	}
}

// dateEventsOfPayment returns the events of the harness's date that a payment's commits hold:
// every event of each commit that has one of the payment's own events.
func (h *harness) dateEventsOfPayment(pid string) []eventstore.Envelope {
	h.t.Helper()
	envs, err := h.log.Load(h.ctx, eventstore.AggregateRef{Type: eventstore.TypeDate, ID: "c1.d1"}, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	mine := map[uint64]bool{}
	for _, e := range envs {
		if e.AggregateType == eventstore.TypePayment && e.AggregateID == pid {
			mine[e.Sequence] = true
		}
	}
	var out []eventstore.Envelope
	for _, e := range envs {
		if mine[e.Sequence] {
			out = append(out, e)
		}
	}
	return out
}

// sameCommit fails unless events of every one of the types are in one commit of the payment.
func (h *harness) sameCommit(pid string, types ...string) {
	h.t.Helper()
	bySeq := map[uint64]map[string]bool{}
	for _, e := range h.dateEventsOfPayment(pid) {
		if bySeq[e.Sequence] == nil {
			bySeq[e.Sequence] = map[string]bool{}
		}
		bySeq[e.Sequence][e.Type] = true
	}
	for _, got := range bySeq {
		all := true
		for _, typ := range types {
			all = all && got[typ]
		}
		if all {
			return
		}
	}
	h.t.Fatalf("no commit of payment %s holds all of %v: %v", pid, types, bySeq)
}

// commitsOf counts the commits of the harness's date that hold events of the payment.
func (h *harness) commitsOf(pid string) int {
	h.t.Helper()
	seqs := map[uint64]bool{}
	for _, e := range h.dateEventsOfPayment(pid) {
		seqs[e.Sequence] = true
	}
	return len(seqs)
}
