package app

import (
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// record appends events to an aggregate without its deciders, as another writer of the log
// would (an older version, an import, a hand repair): the only way to give a saga a state its
// own steps never produce, such as a payment record without a payment ID.
func (h *harness) record(typ, id string, evs ...aggregates.Event) {
	h.t.Helper()
	ref := eventstore.AggregateRef{Type: typ, ID: id}
	envs, err := h.log.Load(h.ctx, ref, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	var ver uint64
	if len(envs) > 0 {
		ver = envs[len(envs)-1].Sequence
	}
	out := make([]eventstore.Event, len(evs))
	for i, ev := range evs {
		data, err := aggregates.Encode(ev)
		if err != nil {
			h.t.Fatal(err)
		}
		out[i] = eventstore.Event{Type: ev.EventType(), Data: data}
		if typ == eventstore.TypeDate {
			out[i].Ref = DateEventRef(id, ev)
		}
	}
	if _, err := h.log.Append(h.ctx, ref, ver, out, "", eventstore.Metadata{OccurredAt: h.clock.Now()}); err != nil {
		h.t.Fatal(err)
	}
}

// TestARefusalEndsThePaymentSaga: whatever step of the payment saga after its start a decider
// refuses, the payment ends FAILED with its debit reversed and its reservation unlocked (or
// un-confirmed). A refusal is final, so a payment left STARTED would be retried by recovery
// every 30 s for ever; the cases with a recorded payment go through recovery, the others
// through Pay. (A refused start leaves no payment: TestARefusalEndsTheOtherSagas.)
func TestARefusalEndsThePaymentSaga(t *testing.T) {
	type given struct {
		h       *harness
		res     string // reservation of u1 holding seat 1 (price 100); u1 was charged 1,000
		payment string // set by when: the payment the saga ran
	}
	// started records a payment in its date the way Pay would have opened it, but with the
	// given fields and without the reservation's lock.
	started := func(g *given, p aggregates.PaymentStarted) {
		g.h.record(eventstore.TypeDate, "c1.d1", p)
		g.payment = p.PaymentID
	}
	// crashBefore pays the reservation with a crash right before step: the payment is left
	// STARTED for recovery.
	crashBefore := func(t *testing.T, g *given, step string) {
		g.h.fault.arm(step)
		if _, err := g.h.svc.Pay(g.h.ctx, Meta{}, g.res, "u1"); !isErr(err, eventstore.ErrUnavailable) {
			t.Fatalf("pay with a crash before %s: %v", step, err)
		}
		g.payment = g.h.pendingPayment()
	}
	recoverIt := func(t *testing.T, g *given) error { return g.h.svc.RecoverPayment(g.h.ctx, g.payment) }
	tests := []struct {
		name string
		// given brings the log to the state the refusal comes from.
		given func(t *testing.T, g *given)
		// when runs the saga: Pay, or recovery of a recorded payment.
		when func(t *testing.T, g *given) error
		// refusal is what the saga's decider answered; Pay returns it (recovery settles it).
		refusal error
		reason  string // the payment's recorded failure reason
		debited bool   // the debit landed before the refusal, in given, so it must be reversed
		// debitedInWhen: the saga debited, in when, before the refusal, so it must be reversed.
		debitedInWhen bool
		// confirmed: the reservation was confirmed before the refusal and is cancelled by it.
		confirmed bool
	}{
		{
			name: "a payment recorded without its reservation's lock is refused at the completion and its debit reversed",
			given: func(t *testing.T, g *given) {
				started(g, aggregates.PaymentStarted{PaymentID: "p-unlocked", ReservationID: g.res, UserID: "u1", Amount: 100, StartedAt: t0})
			},
			when: recoverIt, refusal: aggregates.ErrReservationNotPayable, reason: aggregates.FailNotPayable, debitedInWhen: true,
		},
		{
			name: "a payment recorded with a negative amount is refused at the debit and fails",
			given: func(t *testing.T, g *given) {
				started(g, aggregates.PaymentStarted{PaymentID: "p-negative", ReservationID: g.res, UserID: "u1", Amount: -100, StartedAt: t0})
			},
			when: recoverIt, refusal: aggregates.ErrInvalidAmount, reason: aggregates.FailNotPayable,
		},
		{
			name: "a payment without enough points is refused at the debit and fails",
			given: func(t *testing.T, g *given) {
				g.h.charge("u3", 50)
				g.res = g.h.hold("u3", 2)
			},
			when: func(t *testing.T, g *given) error {
				_, err := g.h.svc.Pay(g.h.ctx, Meta{}, g.res, "u3")
				g.payment = g.h.paymentOf(g.res)
				return err
			},
			refusal: aggregates.ErrInsufficientPoints, reason: aggregates.FailInsufficientPoints,
		},
		{
			name: "a payment whose hold lapsed after its debit is refused at the confirmation and its debit reversed",
			given: func(t *testing.T, g *given) {
				crashBefore(t, g, "/complete")
				g.h.clock.Advance(5 * time.Minute)
			},
			when: recoverIt, refusal: aggregates.ErrReservationNotPayable, reason: aggregates.FailNotPayable, debited: true,
		},
		{
			name: "a payment whose seat was taken from its reservation is refused at the confirmation and its debit reversed",
			given: func(t *testing.T, g *given) {
				crashBefore(t, g, "/complete")
				g.h.record(eventstore.TypeDate, "c1.d1", aggregates.SeatReleased{ReservationID: g.res, Reason: aggregates.ReleaseExpired, SeatNo: 1})
			},
			when: recoverIt, refusal: aggregates.ErrSeatNotHeld, reason: aggregates.FailNotPayable, debited: true,
		},
	}
	for _, sk := range stores {
		for _, tt := range tests {
			t.Run(sk.name+": "+tt.name, func(t *testing.T) {
				h := newHarness(t, sk.open(t), Config{})
				h.concert(5, 100)
				h.charge("u1", 1000)
				g := &given{h: h, res: h.hold("u1", 1)}
				tt.given(t, g)
				before := map[string]int64{"u1": h.wallet("u1").Balance(), "u2": h.wallet("u2").Balance(), "u3": h.wallet("u3").Balance()}
				if tt.debited {
					before["u1"] += 100 // the debit happened in given
				}

				err := tt.when(t, g)

				if err != nil && !isErr(err, tt.refusal) {
					t.Fatalf("saga answered %v, want the refusal %v (or nil from recovery)", err, tt.refusal)
				}
				p := h.payment(g.payment)
				if p.Status() != aggregates.PaymentStatusFailed {
					t.Fatalf("payment %s is %s after a refusal, want FAILED: recovery would retry it for ever", g.payment, p.Status())
				}
				if p.FailureReason() != tt.reason {
					t.Errorf("failure reason %q, want %q", p.FailureReason(), tt.reason)
				}
				if pending, _ := (logReads{h.log}).PendingPayments(h.ctx); len(pending) != 0 {
					t.Fatalf("payments still pending: %v", pending)
				}
				for user, want := range before {
					if got := h.wallet(user).Balance(); got != want {
						t.Errorf("balance of %s is %d, want %d (debit not reversed)", user, got, want)
					}
				}
				refunds := h.countEvents(eventstore.AggregateRef{Type: eventstore.TypeWallet, ID: p.Started().UserID}, "PointsRefunded")
				if want := map[bool]int{true: 1, false: 0}[tt.debited || tt.debitedInWhen]; refunds != want {
					t.Errorf("%d reversals of the debit, want %d", refunds, want)
				}
				if r := h.reservation(g.res); r.PayingWith() == g.payment || r.Status() == aggregates.ReservationStatusConfirmed {
					t.Errorf("reservation %s still locked or confirmed by the failed payment (paying %q)", r.Status(), r.PayingWith())
				} else if tt.confirmed && r.Status() != aggregates.ReservationStatusCancelled {
					t.Errorf("reservation %s, want CANCELLED: its confirmation was reversed", r.Status())
				}

				// Recovery finds nothing left to do, and a second pass changes nothing.
				if err := h.svc.Recover(h.ctx, logReads{h.log}); err != nil {
					t.Fatalf("recovery after the refusal: %v", err)
				}
				if n := h.countEvents(eventstore.AggregateRef{Type: eventstore.TypeWallet, ID: p.Started().UserID}, "PointsRefunded"); n != refunds {
					t.Fatalf("recovery reversed the debit again: %d reversals", n)
				}
			})
		}
	}
}

// TestARefusalEndsTheOtherSagas: the hold, cancel, refund and charge commands refuse before
// they change anything, so a refusal leaves no half-done saga behind: nothing is pending
// for recovery and the refused resource is as it was.
func TestARefusalEndsTheOtherSagas(t *testing.T) {
	tests := []struct {
		name    string
		when    func(h *harness) error
		refusal error
		then    func(t *testing.T, h *harness)
	}{
		{"a hold of a seat held by another reservation is refused and the seat keeps its holder", func(h *harness) error {
			_, err := h.svc.Hold(h.ctx, Meta{}, HoldRequest{UserID: "u2", ConcertID: "c1", DateID: "d1", SeatNo: 1})
			return err
		}, aggregates.ErrSeatUnavailable, func(t *testing.T, h *harness) {
			if r := h.seat(1).Reservation(); r != h.reservationsOf("u1")[0] {
				t.Fatalf("seat 1 held by %q", r)
			}
		}},
		{"a hold for a malformed user is refused as invalid and holds nothing", func(h *harness) error {
			_, err := h.svc.Hold(h.ctx, Meta{}, HoldRequest{UserID: "bad user", ConcertID: "c1", DateID: "d1", SeatNo: 2})
			return err
		}, aggregates.ErrInvalid, func(t *testing.T, h *harness) {
			if st := h.seat(2).Status(); st != aggregates.SeatStatusAvailable {
				t.Fatalf("seat 2 %s", st)
			}
		}},
		{"a cancel by another user is refused and the hold stays", func(h *harness) error {
			_, err := h.svc.Cancel(h.ctx, Meta{}, h.reservationsOf("u1")[0], "u2")
			return err
		}, aggregates.ErrForbidden, func(t *testing.T, h *harness) {
			if st := h.reservation(h.reservationsOf("u1")[0]).Status(); st != aggregates.ReservationStatusHeld {
				t.Fatalf("reservation %s", st)
			}
		}},
		{"a cancel of an unknown reservation is refused", func(h *harness) error {
			_, err := h.svc.Cancel(h.ctx, Meta{}, "r-ghost", "u1")
			return err
		}, aggregates.ErrReservationNotFound, nil},
		{"a cancel of a lapsed hold is refused and the hold expires instead", func(h *harness) error {
			h.clock.Advance(5 * time.Minute)
			_, err := h.svc.Cancel(h.ctx, Meta{}, h.reservationsOf("u1")[0], "u1")
			return err
		}, aggregates.ErrReservationNotCancellable, func(t *testing.T, h *harness) {
			h.svc.ExpireDue(h.ctx)
			if st := h.reservation(h.reservationsOf("u1")[0]).Status(); st != aggregates.ReservationStatusExpired {
				t.Fatalf("reservation %s", st)
			}
		}},
		{"a payment of a hold that lapsed before the sweeper saw it is refused and leaves no payment", func(h *harness) error {
			h.charge("u1", 1000)
			h.clock.Advance(5 * time.Minute)
			_, err := h.svc.Pay(h.ctx, Meta{}, h.reservationsOf("u1")[0], "u1")
			return err
		}, aggregates.ErrReservationNotPayable, func(t *testing.T, h *harness) {
			if n := h.countEvents(eventstore.AggregateRef{Type: eventstore.TypeWallet, ID: "u1"}, "PointsDebited"); n != 0 {
				t.Fatalf("%d debits", n)
			}
			err := logReads{h.log}.each(h.ctx, eventstore.TypePayment, func(pid string, ev aggregates.Event) {
				t.Errorf("payment %s has %s", pid, ev.EventType())
			})
			if err != nil {
				t.Fatal(err)
			}
		}},
		{"a refund of an unknown payment is refused", func(h *harness) error {
			_, err := h.svc.Refund(h.ctx, Meta{}, "p-ghost")
			return err
		}, aggregates.ErrPaymentNotFound, nil},
		{"a refund of a failed payment is refused and the payment stays FAILED", func(h *harness) error {
			h.charge("u3", 10)
			res := h.hold("u3", 3)
			if _, err := h.svc.Pay(h.ctx, Meta{}, res, "u3"); !isErr(err, aggregates.ErrInsufficientPoints) {
				return err
			}
			_, err := h.svc.Refund(h.ctx, Meta{}, h.paymentOf(res))
			return err
		}, aggregates.ErrPaymentNotRefundable, func(t *testing.T, h *harness) {
			if st := h.payment(h.paymentOf(h.reservationsOf("u3")[0])).Status(); st != aggregates.PaymentStatusFailed {
				t.Fatalf("payment %s", st)
			}
		}},
		{"a charge above the limit is refused and the balance is unchanged", func(h *harness) error {
			_, err := h.svc.Charge(h.ctx, Meta{}, "u1", aggregates.MaxCharge+1)
			return err
		}, aggregates.ErrInvalidAmount, func(t *testing.T, h *harness) {
			if b := h.wallet("u1").Balance(); b != 0 {
				t.Fatalf("balance %d", b)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, eventstore.NewMemStore(), Config{})
			h.concert(5, 100)
			h.hold("u1", 1)

			err := tt.when(h)

			if !isErr(err, tt.refusal) || !aggregates.IsRefusal(err) {
				t.Fatalf("answered %v, want the refusal %v", err, tt.refusal)
			}
			if tt.then != nil {
				tt.then(t, h)
			}
			if pending, _ := (logReads{h.log}).PendingPayments(h.ctx); len(pending) != 0 {
				t.Fatalf("payments left pending: %v", pending)
			}
		})
	}
}

// paymentOf finds the payment the log shows for a reservation (the latest, if several).
func (h *harness) paymentOf(resID string) string {
	h.t.Helper()
	var id string
	err := logReads{h.log}.each(h.ctx, eventstore.TypePayment, func(pid string, ev aggregates.Event) {
		if s, ok := ev.(aggregates.PaymentStarted); ok && s.ReservationID == resID {
			id = pid
		}
	})
	if err != nil || id == "" {
		h.t.Fatalf("no payment of reservation %s (%v)", resID, err)
	}
	return id
}

// reservationsOf lists a user's reservations, oldest first.
func (h *harness) reservationsOf(user string) []string {
	h.t.Helper()
	var ids []string
	err := logReads{h.log}.each(h.ctx, eventstore.TypeReservation, func(id string, ev aggregates.Event) {
		if r, ok := ev.(aggregates.ReservationHeld); ok && r.UserID == user {
			ids = append(ids, id)
		}
	})
	if err != nil {
		h.t.Fatal(err)
	}
	return ids
}
