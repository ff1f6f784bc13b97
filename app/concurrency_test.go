package app

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

func TestConcurrency(t *testing.T) {
	for _, sk := range withSoleWriter(stores) {
		t.Run(sk.name, func(t *testing.T) {
			t.Run("of 1,000 concurrent holds on one seat exactly one succeeds", func(t *testing.T) {
				h := newHarness(t, sk.open(t), Config{}, sk.sole)
				h.concert(10, 100)
				var won, lost atomic.Int64
				var wg sync.WaitGroup
				for i := range 1000 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						_, err := h.svc.Hold(h.ctx, Meta{}, HoldRequest{UserID: userN(i), ConcertID: "c1", DateID: "d1", SeatNo: 1})
						switch {
						case err == nil:
							won.Add(1)
						case isErr(err, aggregates.ErrSeatUnavailable):
							lost.Add(1)
						default:
							t.Errorf("hold: %v", err)
						}
					}()
				}
				wg.Wait()
				if won.Load() != 1 || lost.Load() != 999 {
					t.Fatalf("won %d, lost %d; want 1 and 999", won.Load(), lost.Load())
				}
				if n := h.countEvents(eventstore.AggregateRef{Type: eventstore.TypeSeat, ID: aggregates.SeatID("c1", "d1", 1)}, "SeatHeld"); n != 1 {
					t.Fatalf("%d SeatHeld events, want 1", n)
				}
			})

			t.Run("300 concurrent charges all count", func(t *testing.T) {
				h := newHarness(t, sk.open(t), Config{}, sk.sole)
				var wg sync.WaitGroup
				for range 300 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if _, err := h.svc.Charge(h.ctx, Meta{}, "u1", 10); err != nil {
							t.Errorf("charge: %v", err)
						}
					}()
				}
				wg.Wait()
				if b := h.wallet("u1").Balance(); b != 3000 {
					t.Fatalf("balance %d, want 3000", b)
				}
			})

			t.Run("300 concurrent charges of one wallet are stamped in the order they are appended", func(t *testing.T) {
				h := newHarness(t, sk.open(t), Config{}, sk.sole)
				h.clock.Tick(time.Microsecond)
				var wg sync.WaitGroup
				for range 300 {
					wg.Go(func() {
						if _, err := h.svc.Charge(h.ctx, Meta{}, "u1", 10); err != nil {
							t.Errorf("charge: %v", err)
						}
					})
				}
				wg.Wait()
				envs, err := h.log.Load(h.ctx, eventstore.WalletGroupOf("u1"), 0) // the harness's only user
				if err != nil {
					t.Fatal(err)
				}
				if len(envs) != 300 {
					t.Fatalf("%d events, want 300", len(envs))
				}
				for i := 1; i < len(envs); i++ {
					if !envs[i].OccurredAt.After(envs[i-1].OccurredAt) {
						t.Fatalf("event %d (seq %d) occurred at %s, not after event %d (seq %d) at %s", i, envs[i].Sequence,
							envs[i].OccurredAt.Format(time.RFC3339Nano), i-1, envs[i-1].Sequence, envs[i-1].OccurredAt.Format(time.RFC3339Nano))
					}
				}
			})

			t.Run("10 concurrent payments of one reservation debit once", func(t *testing.T) {
				h := newHarness(t, sk.open(t), Config{}, sk.sole)
				h.concert(10, 100)
				h.charge("u1", 1000)
				res := h.hold("u1", 1)
				var paid, refused atomic.Int64
				var wg sync.WaitGroup
				for range 10 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						_, err := h.svc.Pay(h.ctx, Meta{}, res, "u1")
						switch {
						case err == nil:
							paid.Add(1)
						case isErr(err, aggregates.ErrReservationNotPayable):
							refused.Add(1)
						default:
							t.Errorf("pay: %v", err)
						}
					}()
				}
				wg.Wait()
				if paid.Load() != 1 || refused.Load() != 9 {
					t.Fatalf("paid %d, refused %d; want 1 and 9", paid.Load(), refused.Load())
				}
				if b := h.wallet("u1").Balance(); b != 900 {
					t.Fatalf("balance %d, want 900", b)
				}
				if n := h.countEvents(eventstore.AggregateRef{Type: eventstore.TypeWallet, ID: "u1"}, "PointsDebited"); n != 1 {
					t.Fatalf("%d debits, want 1", n)
				}
				// The refused payments were refused in their start's decision: none left a record.
				started := 0
				if err := (logReads{h.log}).each(h.ctx, eventstore.TypePayment, func(_ string, ev aggregates.Event) {
					if _, ok := ev.(aggregates.PaymentStarted); ok {
						started++
					}
				}); err != nil || started != 1 {
					t.Fatalf("%d payments started (%v), want 1", started, err)
				}
			})

			t.Run("10 holds paid concurrently with money for 5 confirm exactly 5", func(t *testing.T) {
				h := newHarness(t, sk.open(t), Config{}, sk.sole)
				h.concert(10, 100)
				h.charge("u1", 500)
				var ids []string
				for seat := 1; seat <= 10; seat++ {
					ids = append(ids, h.hold("u1", seat))
				}
				var paid, poor atomic.Int64
				var wg sync.WaitGroup
				for _, id := range ids {
					wg.Add(1)
					go func() {
						defer wg.Done()
						_, err := h.svc.Pay(h.ctx, Meta{}, id, "u1")
						switch {
						case err == nil:
							paid.Add(1)
						case isErr(err, aggregates.ErrInsufficientPoints):
							poor.Add(1)
						default:
							t.Errorf("pay: %v", err)
						}
					}()
				}
				wg.Wait()
				if paid.Load() != 5 || poor.Load() != 5 {
					t.Fatalf("paid %d, insufficient %d; want 5 and 5", paid.Load(), poor.Load())
				}
				if b := h.wallet("u1").Balance(); b != 0 {
					t.Fatalf("balance %d, want 0", b)
				}
				confirmed, held := 0, 0
				for _, id := range ids {
					switch h.reservation(id).Status() {
					case aggregates.ReservationStatusConfirmed:
						confirmed++
					case aggregates.ReservationStatusHeld:
						held++
					}
				}
				if confirmed != 5 || held != 5 {
					t.Fatalf("%d confirmed and %d held, want 5 and 5", confirmed, held)
				}
			})
		})
	}
}

func userN(i int) string { return "user-" + itoa(i) }

func itoa(i int) string {
	const digits = "0123456789"
	if i == 0 {
		return "0"
	}
	var b []byte
	for ; i > 0; i /= 10 {
		b = append([]byte{digits[i%10]}, b...)
	}
	return string(b)
}
