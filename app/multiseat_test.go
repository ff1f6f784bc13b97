package app

import (
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

func TestMultiSeatHolds(t *testing.T) {
	for _, sk := range withSoleWriter(stores) {
		t.Run(sk.name, func(t *testing.T) {
			t.Run("150 users each holding 4 random seats of 40 at once never share a seat, and every winner holds its 4", func(t *testing.T) {
				h := newHarness(t, sk.open(t), Config{MaxSeatsPerUser: 8}, sk.sole)
				h.concert(40, 100)
				type win struct {
					res   string
					seats []int
				}
				var mu sync.Mutex
				var wins []win
				var wg sync.WaitGroup
				for i := range 150 {
					seats := rand.Perm(40)[:4]
					for j := range seats {
						seats[j]++
					}
					wg.Go(func() {
						r, err := h.svc.Hold(h.ctx, Meta{}, HoldRequest{UserID: userN(i), ConcertID: "c1", DateID: "d1", SeatNos: seats})
						switch {
						case err == nil:
							mu.Lock()
							wins = append(wins, win{r.ReservationID, r.SeatNos})
							mu.Unlock()
						case !isErr(err, aggregates.ErrSeatUnavailable):
							t.Errorf("hold %v: %v", seats, err)
						}
					})
				}
				wg.Wait()
				if len(wins) == 0 {
					t.Fatal("no hold won")
				}
				owner := map[int]string{}
				for _, w := range wins {
					if len(w.seats) != 4 {
						t.Fatalf("reservation %s holds %v, want 4 seats", w.res, w.seats)
					}
					for _, n := range w.seats {
						if other, taken := owner[n]; taken {
							t.Fatalf("seat %d is in reservations %s and %s", n, other, w.res)
						}
						owner[n] = w.res
						if s := h.seat(n); s.Status() != aggregates.SeatStatusHeld || s.Reservation() != w.res {
							t.Fatalf("seat %d is %s for %q, want HELD for %s", n, s.Status(), s.Reservation(), w.res)
						}
					}
				}
				for n := 1; n <= 40; n++ {
					if _, held := owner[n]; !held && h.seat(n).Status() != aggregates.SeatStatusAvailable {
						t.Fatalf("seat %d is %s but no winning hold took it (a half-done hold)", n, h.seat(n).Status())
					}
				}
			})

			t.Run("one user's 20 concurrent single-seat holds on free seats win exactly 8", func(t *testing.T) {
				h := newHarness(t, sk.open(t), Config{MaxSeatsPerUser: 8}, sk.sole)
				h.concert(40, 100)
				var mu sync.Mutex
				won, limited := 0, 0
				var wg sync.WaitGroup
				for n := 1; n <= 20; n++ {
					wg.Go(func() {
						_, err := h.svc.Hold(h.ctx, Meta{}, HoldRequest{UserID: "u1", ConcertID: "c1", DateID: "d1", SeatNo: n})
						mu.Lock()
						defer mu.Unlock()
						switch {
						case err == nil:
							won++
						case isErr(err, aggregates.ErrSeatLimitReached):
							limited++
						default:
							t.Errorf("hold seat %d: %v", n, err)
						}
					})
				}
				wg.Wait()
				if won != 8 || limited != 12 {
					t.Fatalf("won %d, refused for the limit %d; want 8 and 12", won, limited)
				}
			})

			t.Run("a multi-seat hold is paid, cancelled and expired as one reservation", func(t *testing.T) {
				h := newHarness(t, sk.open(t), Config{}, sk.sole)
				h.concert(10, 100)
				h.charge("u1", 1000)
				paid, err := h.svc.Hold(h.ctx, Meta{}, HoldRequest{UserID: "u1", ConcertID: "c1", DateID: "d1", SeatNos: []int{3, 1, 2}})
				if err != nil {
					t.Fatal(err)
				}
				if paid.Price != 300 || !slices.Equal(paid.SeatNos, []int{1, 2, 3}) || paid.SeatNo != 1 {
					t.Fatalf("hold answered seats %v (seatNo %d) at %d, want [1 2 3] (1) at 300", paid.SeatNos, paid.SeatNo, paid.Price)
				}
				p, err := h.svc.Pay(h.ctx, Meta{}, paid.ReservationID, "u1")
				if err != nil || p.Amount != 300 {
					t.Fatalf("pay: %+v, %v", p, err)
				}
				envs, err := h.log.Load(h.ctx, eventstore.AggregateRef{Type: eventstore.TypeDate, ID: "c1.d1"}, 0)
				if err != nil {
					t.Fatal(err)
				}
				named := false
				for _, e := range envs {
					named = named || e.Type == "PaymentCompleted" && e.AggregateType == eventstore.TypePayment && e.AggregateID == p.PaymentID &&
						strings.Contains(string(e.Data), `"seatNos":[1,2,3]`)
				}
				if !named {
					t.Fatalf("no PaymentCompleted naming the seats [1 2 3] among %d payment events", len(envs))
				}
				cancelled, err := h.svc.Hold(h.ctx, Meta{}, HoldRequest{UserID: "u1", ConcertID: "c1", DateID: "d1", SeatNos: []int{4, 5}})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := h.svc.Cancel(h.ctx, Meta{}, cancelled.ReservationID, "u1"); err != nil {
					t.Fatal(err)
				}
				expired, err := h.svc.Hold(h.ctx, Meta{}, HoldRequest{UserID: "u1", ConcertID: "c1", DateID: "d1", SeatNos: []int{6, 7}})
				if err != nil {
					t.Fatal(err)
				}
				h.clock.Advance(6 * time.Minute)
				h.svc.ExpireDue(h.ctx)
				want := map[int]aggregates.SeatStatus{1: aggregates.SeatStatusSold, 2: aggregates.SeatStatusSold, 3: aggregates.SeatStatusSold,
					4: aggregates.SeatStatusAvailable, 5: aggregates.SeatStatusAvailable, 6: aggregates.SeatStatusAvailable, 7: aggregates.SeatStatusAvailable}
				for n, st := range want {
					if got := h.seat(n).Status(); got != st {
						t.Errorf("seat %d is %s, want %s", n, got, st)
					}
				}
				if st := h.reservation(expired.ReservationID).Status(); st != aggregates.ReservationStatusExpired {
					t.Errorf("the lapsed hold is %s, want EXPIRED", st)
				}
				if _, err := h.svc.Refund(h.ctx, Meta{}, p.PaymentID); err != nil {
					t.Fatal(err)
				}
				for n := 1; n <= 3; n++ {
					if got := h.seat(n).Status(); got != aggregates.SeatStatusAvailable {
						t.Errorf("seat %d is %s after the refund, want AVAILABLE", n, got)
					}
				}
				if b := h.wallet("u1").Balance(); b != 1000 {
					t.Errorf("balance %d after the refund, want 1000", b)
				}
			})
		})
	}

	t.Run("one user's holds through two instances on one log never pass the limit together", func(t *testing.T) {
		log := stores[0].open(t)
		a := newHarness(t, log, Config{MaxSeatsPerUser: 8})
		b := newHarness(t, log, Config{MaxSeatsPerUser: 8})
		a.concert(40, 100)
		var mu sync.Mutex
		won := 0
		var wg sync.WaitGroup
		for n := 1; n <= 20; n++ {
			h := a
			if n%2 == 0 {
				h = b
			}
			wg.Go(func() {
				_, err := h.svc.Hold(h.ctx, Meta{}, HoldRequest{UserID: "u1", ConcertID: "c1", DateID: "d1", SeatNos: []int{n, n + 20}})
				switch {
				case err == nil:
					mu.Lock()
					won++
					mu.Unlock()
				case !isErr(err, aggregates.ErrSeatLimitReached):
					t.Errorf("hold seats %d and %d: %v", n, n+20, err)
				}
			})
		}
		wg.Wait()
		if won != 4 {
			t.Fatalf("%d two-seat holds won, want 4 (8 seats)", won)
		}
	})
}
