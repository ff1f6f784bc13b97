package aggregates

import (
	"reflect"
	"testing"
	"time"
)

func TestPayment(t *testing.T) {
	started := PaymentStarted{PaymentID: "p1", ReservationID: "r1", UserID: "alice", Amount: 120000, StartedAt: t0}
	completed := PaymentCompleted{PaymentID: "p1", CompletedAt: at(time.Second)}
	failed := PaymentFailed{PaymentID: "p1", Reason: FailInsufficientPoints, FailedAt: at(time.Second)}
	refundStarted := PaymentRefundStarted{PaymentID: "p1", StartedAt: at(time.Hour)}
	refunded := PaymentRefunded{PaymentID: "p1", RefundedAt: at(time.Hour + time.Second)}
	now := at(2 * time.Hour)

	start := func(cmd PaymentStarted) func(Payment) ([]Event, error) {
		return func(p Payment) ([]Event, error) { return p.DecideStart(cmd) }
	}
	complete := func(p Payment) ([]Event, error) { return p.DecideComplete(now) }
	fail := func(p Payment) ([]Event, error) { return p.DecideFail(FailNotPayable, now) }
	refund := func(p Payment) ([]Event, error) { return p.DecideRefund(now) }
	finishRefund := func(p Payment) ([]Event, error) { return p.DecideFinishRefund(now) }
	is := func(want PaymentStatus) func(*testing.T, Payment) {
		return func(t *testing.T, p Payment) {
			t.Helper()
			if p.Status() != want {
				t.Fatalf("status = %s, want %s", p.Status(), want)
			}
		}
	}
	with := func(f func(*PaymentStarted)) PaymentStarted {
		cmd := started
		f(&cmd)
		return cmd
	}

	run(t, Payment.Apply, []spec[Payment]{
		{name: "a refund request records its ID on the refund gate", given: []Event{started, completed},
			when: func(p Payment) ([]Event, error) { return p.DecideRefundRequest(at(time.Minute), "req-1") },
			then: []Event{PaymentRefundStarted{PaymentID: "p1", StartedAt: at(time.Minute), RequestID: "req-1"}}},
		{name: "the request that started a refund may repeat it to finish it", given: []Event{started, completed, PaymentRefundStarted{PaymentID: "p1", StartedAt: at(time.Minute), RequestID: "req-1"}},
			when: func(p Payment) ([]Event, error) { return p.DecideRefundRequest(at(2*time.Minute), "req-1") }},
		{name: "another request cannot refund a refunding payment", given: []Event{started, completed, PaymentRefundStarted{PaymentID: "p1", StartedAt: at(time.Minute), RequestID: "req-1"}},
			when: func(p Payment) ([]Event, error) { return p.DecideRefundRequest(at(2*time.Minute), "req-2") }, err: ErrPaymentNotRefundable},
		{name: "a payment starts", when: start(started), then: []Event{started}, after: func(t *testing.T, p Payment) {
			is(PaymentStatusStarted)(t, p)
			if !p.Exists() || !reflect.DeepEqual(p.Started(), started) {
				t.Fatalf("started = %#v, want %#v", p.Started(), started)
			}
		}},
		{name: "a payment of zero points starts", when: start(with(func(c *PaymentStarted) { c.Amount = 0 })), then: []Event{with(func(c *PaymentStarted) { c.Amount = 0 })}},
		{name: "a payment of a negative amount is refused", when: start(with(func(c *PaymentStarted) { c.Amount = -1 })), err: ErrInvalidAmount},
		{name: "a payment without an ID is refused", when: start(with(func(c *PaymentStarted) { c.PaymentID = "" })), err: ErrInvalid},
		{name: "a payment without a reservation is refused", when: start(with(func(c *PaymentStarted) { c.ReservationID = "" })), err: ErrInvalid},
		{name: "a payment without a user is refused", when: start(with(func(c *PaymentStarted) { c.UserID = "" })), err: ErrInvalid},
		{name: "a repeated start is a no-op", given: []Event{started}, when: start(started), after: is(PaymentStatusStarted)},
		{name: "a start of a completed payment is a no-op", given: []Event{started, completed}, when: start(started), after: is(PaymentStatusCompleted)},

		{name: "the completion of a payment names the seats it was started for",
			given: []Event{with(func(c *PaymentStarted) { c.SeatNos = []int{3, 4} })},
			when:  complete, then: []Event{PaymentCompleted{PaymentID: "p1", CompletedAt: now, SeatNos: []int{3, 4}}}},
		{name: "the refund of a payment names the seats it was started for",
			given: []Event{with(func(c *PaymentStarted) { c.SeatNos = []int{3, 4} }), completed, refundStarted},
			when:  finishRefund, then: []Event{PaymentRefunded{PaymentID: "p1", RefundedAt: now, SeatNos: []int{3, 4}}}},
		{name: "a started payment completes", given: []Event{started}, when: complete, then: []Event{PaymentCompleted{PaymentID: "p1", CompletedAt: now}}, after: func(t *testing.T, p Payment) {
			is(PaymentStatusCompleted)(t, p)
			if !p.CompletedAt().Equal(now) || !p.RefundedAt().IsZero() {
				t.Fatalf("completedAt %v, refundedAt %v; want %v, zero", p.CompletedAt(), p.RefundedAt(), now)
			}
		}},
		{name: "a repeated completion is a no-op", given: []Event{started, completed}, when: complete, after: is(PaymentStatusCompleted)},
		{name: "completion of a refunding payment is a no-op", given: []Event{started, completed, refundStarted}, when: complete, after: is(PaymentStatusRefunding)},
		{name: "completion of a refunded payment is a no-op", given: []Event{started, completed, refundStarted, refunded}, when: complete, after: is(PaymentStatusRefunded)},
		{name: "a failed payment cannot complete", given: []Event{started, failed}, when: complete, err: ErrReservationNotPayable},
		{name: "an unknown payment cannot complete", when: complete, err: ErrPaymentNotFound},

		{name: "a started payment fails", given: []Event{started}, when: fail, then: []Event{PaymentFailed{PaymentID: "p1", Reason: FailNotPayable, FailedAt: now}}, after: func(t *testing.T, p Payment) {
			is(PaymentStatusFailed)(t, p)
			if p.FailureReason() != FailNotPayable {
				t.Fatalf("failure reason = %q, want %q", p.FailureReason(), FailNotPayable)
			}
		}},
		{name: "a repeated failure is a no-op that keeps the first reason", given: []Event{started, failed}, when: fail, after: func(t *testing.T, p Payment) {
			if p.FailureReason() != FailInsufficientPoints {
				t.Fatalf("failure reason = %q, want %q", p.FailureReason(), FailInsufficientPoints)
			}
		}},
		{name: "a completed payment cannot fail", given: []Event{started, completed}, when: fail, after: is(PaymentStatusCompleted)},
		{name: "a refunded payment cannot fail", given: []Event{started, completed, refundStarted, refunded}, when: fail, after: is(PaymentStatusRefunded)},
		{name: "failing an unknown payment changes nothing", when: fail},

		{name: "a completed payment can be refunded", given: []Event{started, completed}, when: refund, then: []Event{PaymentRefundStarted{PaymentID: "p1", StartedAt: now}}, after: is(PaymentStatusRefunding)},
		{name: "a second refund is refused while the first is under way", given: []Event{started, completed, refundStarted}, when: refund, err: ErrPaymentNotRefundable},
		{name: "a second refund is refused after the first finished", given: []Event{started, completed, refundStarted, refunded}, when: refund, err: ErrPaymentNotRefundable},
		{name: "a started payment is not refundable", given: []Event{started}, when: refund, err: ErrPaymentNotRefundable},
		{name: "a failed payment is not refundable", given: []Event{started, failed}, when: refund, err: ErrPaymentNotRefundable},
		{name: "an unknown payment cannot be refunded", when: refund, err: ErrPaymentNotFound},

		{name: "a refunding payment finishes its refund", given: []Event{started, completed, refundStarted}, when: finishRefund, then: []Event{PaymentRefunded{PaymentID: "p1", RefundedAt: now}}, after: func(t *testing.T, p Payment) {
			is(PaymentStatusRefunded)(t, p)
			if !p.RefundedAt().Equal(now) || !p.CompletedAt().Equal(completed.CompletedAt) {
				t.Fatalf("refundedAt %v, completedAt %v; want %v, %v", p.RefundedAt(), p.CompletedAt(), now, completed.CompletedAt)
			}
		}},
		{name: "a repeated finish of a refund is a no-op", given: []Event{started, completed, refundStarted, refunded}, when: finishRefund, after: is(PaymentStatusRefunded)},
		{name: "a completed payment cannot finish a refund it never started", given: []Event{started, completed}, when: finishRefund, err: ErrPaymentNotRefundable},
		{name: "a failed payment cannot finish a refund", given: []Event{started, failed}, when: finishRefund, err: ErrPaymentNotRefundable},
		{name: "an unknown payment cannot finish a refund", when: finishRefund, err: ErrPaymentNotRefundable},
	})
}
