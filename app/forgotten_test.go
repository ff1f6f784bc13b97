package app

import (
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// forget lets the date's ended records age past the retention and commits a hold of seat n
// by a bystander, whose commit makes the date forget them.
func (h *harness) forget(n int) {
	h.t.Helper()
	h.clock.Advance(aggregates.EndedRetention + time.Second)
	h.hold("bystander", n)
	compacted := false
	if err := h.svc.dates.Read(h.ctx, "c1.d1", func(d aggregates.Date) { compacted = d.Compacted() }); err != nil {
		h.t.Fatal(err)
	}
	if !compacted {
		h.t.Fatal("the date forgot nothing after the retention")
	}
}

// TestCommandsAboutForgottenRecords: a date forgets the reservations and payments that ended
// long ago; a late command about one is answered from the read models as the date would have
// answered it, and never takes effect a second time.
func TestCommandsAboutForgottenRecords(t *testing.T) {
	key := func(k string) Meta { return Meta{RequestKey: k} }
	holdOf := func(user string, n int) HoldRequest {
		return HoldRequest{UserID: user, ConcertID: "c1", DateID: "d1", SeatNo: n}
	}
	cases := []struct {
		name string
		run  func(t *testing.T, h *harness)
	}{
		{"a keyed hold repeated after its cancelled reservation was forgotten answers that reservation and holds nothing", func(t *testing.T, h *harness) {
			r, err := h.svc.Hold(h.ctx, key("hold-1"), holdOf("u1", 1))
			if err != nil {
				t.Fatal(err)
			}
			if _, err := h.svc.Cancel(h.ctx, Meta{}, r.ReservationID, "u1"); err != nil {
				t.Fatal(err)
			}
			h.forget(9)
			again, err := h.svc.Hold(h.ctx, key("hold-1"), holdOf("u1", 1))
			if err != nil || again.ReservationID != r.ReservationID || again.Status != aggregates.ReservationStatusCancelled {
				t.Fatalf("repeated hold = %+v, %v; want reservation %s CANCELLED", again, err, r.ReservationID)
			}
			if st := h.seat(1).Status(); st != aggregates.SeatStatusAvailable {
				t.Fatalf("seat 1 is %s after the repeat, want AVAILABLE", st)
			}
			if n := h.countEvents(eventstore.AggregateRef{Type: eventstore.TypeReservation, ID: r.ReservationID}, "ReservationHeld"); n != 1 {
				t.Fatalf("reservation %s was opened %d times", r.ReservationID, n)
			}
			replay, err := h.svc.Hold(h.ctx, Meta{RequestKey: "hold-1", ReplayOnly: true}, holdOf("u1", 1))
			if err != nil || replay.ReservationID != r.ReservationID {
				t.Fatalf("replay-only hold = %+v, %v; want reservation %s", replay, err, r.ReservationID)
			}
		}},
		{"a keyed hold of a key never used holds on a date that forgot records", func(t *testing.T, h *harness) {
			r := h.hold("u1", 1)
			if _, err := h.svc.Cancel(h.ctx, Meta{}, r, "u1"); err != nil {
				t.Fatal(err)
			}
			h.forget(9)
			got, err := h.svc.Hold(h.ctx, key("hold-2"), holdOf("u2", 1))
			if err != nil || got.Status != aggregates.ReservationStatusHeld {
				t.Fatalf("hold = %+v, %v; want it HELD", got, err)
			}
		}},
		{"a payment of a reservation forgotten since it expired is not payable, and another user's is forbidden", func(t *testing.T, h *harness) {
			r := h.hold("u1", 1)
			h.charge("u1", 500)
			h.clock.Advance(h.svc.cfg.HoldTTL + time.Second)
			h.svc.ExpireDue(h.ctx)
			h.forget(9)
			if _, err := h.svc.Pay(h.ctx, Meta{}, r, "u1"); !isErr(err, aggregates.ErrReservationNotPayable) {
				t.Fatalf("pay = %v, want ErrReservationNotPayable", err)
			}
			if _, err := h.svc.Pay(h.ctx, Meta{}, r, "u2"); !isErr(err, aggregates.ErrForbidden) {
				t.Fatalf("pay by another user = %v, want ErrForbidden", err)
			}
			if b := h.wallet("u1").Balance(); b != 500 {
				t.Fatalf("balance %d, want the 500 charged", b)
			}
		}},
		{"a cancel of a forgotten cancelled reservation is not cancellable, and its keyed repeat answers it cancelled", func(t *testing.T, h *harness) {
			r := h.hold("u1", 1)
			if _, err := h.svc.Cancel(h.ctx, key("cancel-1"), r, "u1"); err != nil {
				t.Fatal(err)
			}
			h.forget(9)
			if _, err := h.svc.Cancel(h.ctx, Meta{}, r, "u1"); !isErr(err, aggregates.ErrReservationNotCancellable) {
				t.Fatalf("cancel = %v, want ErrReservationNotCancellable", err)
			}
			if _, err := h.svc.Cancel(h.ctx, key("cancel-1"), r, "u2"); !isErr(err, aggregates.ErrForbidden) {
				t.Fatalf("cancel by another user = %v, want ErrForbidden", err)
			}
			got, err := h.svc.Cancel(h.ctx, key("cancel-1"), r, "u1")
			if err != nil || got.Status != aggregates.ReservationStatusCancelled {
				t.Fatalf("keyed repeat = %+v, %v; want it CANCELLED", got, err)
			}
		}},
		{"a keyed payment repeated after it failed and was forgotten answers its failure and debits nothing", func(t *testing.T, h *harness) {
			r := h.hold("u1", 1)
			h.charge("u1", 50)
			if _, err := h.svc.Pay(h.ctx, key("pay-1"), r, "u1"); !isErr(err, aggregates.ErrInsufficientPoints) {
				t.Fatalf("pay = %v, want ErrInsufficientPoints", err)
			}
			h.clock.Advance(time.Minute) // the hold (5 minutes) outlives its failed payment's retention
			h.forget(9)
			h.charge("u1", 500)
			if _, err := h.svc.Pay(h.ctx, key("pay-1"), r, "u1"); !isErr(err, aggregates.ErrInsufficientPoints) {
				t.Fatalf("repeated pay = %v, want its failure ErrInsufficientPoints", err)
			}
			if b := h.wallet("u1").Balance(); b != 550 {
				t.Fatalf("balance %d, want 550: the repeat must not debit", b)
			}
			pid := idFor(key("pay-1"), "payment")
			if n := h.countEvents(eventstore.AggregateRef{Type: eventstore.TypePayment, ID: pid}, "PaymentStarted"); n != 1 {
				t.Fatalf("payment %s started %d times", pid, n)
			}
			// The reservation is still held: a payment with another key pays it.
			if p, err := h.svc.Pay(h.ctx, key("pay-2"), r, "u1"); err != nil || p.Status != aggregates.PaymentStatusCompleted {
				t.Fatalf("payment with another key = %+v, %v", p, err)
			}
		}},
		{"a refund of a payment forgotten since it was refunded is not refundable, and its keyed repeat answers it refunded", func(t *testing.T, h *harness) {
			r := h.hold("u1", 1)
			h.charge("u1", 500)
			p, err := h.svc.Pay(h.ctx, Meta{}, r, "u1")
			if err != nil {
				t.Fatal(err)
			}
			if _, err := h.svc.Refund(h.ctx, key("refund-1"), p.PaymentID); err != nil {
				t.Fatal(err)
			}
			h.forget(9)
			if _, err := h.svc.Refund(h.ctx, Meta{}, p.PaymentID); !isErr(err, aggregates.ErrPaymentNotRefundable) {
				t.Fatalf("refund = %v, want ErrPaymentNotRefundable", err)
			}
			got, err := h.svc.Refund(h.ctx, key("refund-1"), p.PaymentID)
			if err != nil || got.Status != aggregates.PaymentStatusRefunded {
				t.Fatalf("keyed repeat = %+v, %v; want it REFUNDED", got, err)
			}
			if b := h.wallet("u1").Balance(); b != 500 {
				t.Fatalf("balance %d, want 500: one refund", b)
			}
		}},
		{"a reservation that never existed is not found on a date that forgot records", func(t *testing.T, h *harness) {
			r := h.hold("u1", 1)
			if _, err := h.svc.Cancel(h.ctx, Meta{}, r, "u1"); err != nil {
				t.Fatal(err)
			}
			h.forget(9)
			h.svc.resDates.put("0190e6d4-0000-7000-8000-000000000001", dateRef{"c1", "d1"}, 0)
			if _, err := h.svc.Cancel(h.ctx, Meta{}, "0190e6d4-0000-7000-8000-000000000001", "u1"); !isErr(err, aggregates.ErrReservationNotFound) {
				t.Fatalf("cancel = %v, want ErrReservationNotFound", err)
			}
		}},
	}
	for _, kind := range withSoleWriter(stores) {
		for _, tc := range cases {
			t.Run(kind.name+"/"+tc.name, func(t *testing.T) {
				h := newHarness(t, kind.open(t), Config{}, kind.sole)
				h.concert(10, 100)
				tc.run(t, h)
			})
		}
	}
}
