package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
)

// TestMultiSeatHoldsThroughHTTP runs contract v1.1's holds of several seats and its per-user
// limit through a real server, with real concurrency.
func TestMultiSeatHoldsThroughHTTP(t *testing.T) {
	e := startE2E(t, "--queue-batch=0", "--user-rate-limit=0")

	t.Run("150 users each holding 4 random seats of 40 at once never share a seat, and every winner holds its 4", func(t *testing.T) {
		e.concert("family", 40, 100)
		const users = 150
		tokens := make([]string, users)
		for i := range tokens {
			tokens[i] = e.token(fmt.Sprintf("family-%d", i))
		}
		answers := make([]answer, users)
		asked := make([][]int, users)
		var wg sync.WaitGroup
		for i := range users {
			seats := rand.Perm(40)[:4]
			for j := range seats {
				seats[j]++
			}
			asked[i] = seats
			wg.Go(func() {
				answers[i] = e.do("POST", "/api/v1/reservations",
					map[string]any{"userId": fmt.Sprintf("family-%d", i), "concertId": "family", "dateId": "d1", "seatNos": seats},
					"Queue-Token", tokens[i])
			})
		}
		wg.Wait()
		owner := map[int]string{}
		won := 0
		for i, a := range answers {
			switch {
			case a.status == 201:
				won++
				var r struct {
					ReservationID string `json:"reservationId"`
					SeatNos       []int  `json:"seatNos"`
					Price         int64  `json:"price"`
				}
				if err := json.Unmarshal(a.raw, &r); err != nil {
					t.Fatal(err)
				}
				want := slices.Clone(asked[i])
				slices.Sort(want)
				if !slices.Equal(r.SeatNos, want) || r.Price != 400 {
					t.Fatalf("user %d asked for %v and got %v at %d", i, asked[i], r.SeatNos, r.Price)
				}
				for _, n := range r.SeatNos {
					if other, taken := owner[n]; taken {
						t.Fatalf("seat %d is in reservations %s and %s", n, other, r.ReservationID)
					}
					owner[n] = r.ReservationID
				}
			case a.status == 409 && a.str("code") == "SEAT_UNAVAILABLE":
				var p struct {
					UnavailableSeats []int `json:"unavailableSeats"`
				}
				if err := json.Unmarshal(a.raw, &p); err != nil || len(p.UnavailableSeats) == 0 {
					t.Fatalf("a refused hold does not name the seats it found taken: %s", a.raw)
				}
				for _, n := range p.UnavailableSeats {
					if !slices.Contains(asked[i], n) {
						t.Fatalf("user %d asked for %v and was told seat %d was taken", i, asked[i], n)
					}
				}
			default:
				t.Fatalf("hold of %v: %d %s", asked[i], a.status, a.raw)
			}
		}
		if won == 0 {
			t.Fatal("no hold won")
		}
		var m struct {
			Seats []struct {
				SeatNo int    `json:"seatNo"`
				Status string `json:"status"`
			} `json:"seats"`
		}
		if err := json.Unmarshal(e.must(200, e.do("GET", "/api/v1/concerts/family/dates/d1/seats", nil)).raw, &m); err != nil {
			t.Fatal(err)
		}
		for _, s := range m.Seats {
			_, held := owner[s.SeatNo]
			if held != (s.Status == "HELD") {
				t.Fatalf("seat %d is %s, taken by a winning hold: %v (a half-done hold, or a winner's seat not held)", s.SeatNo, s.Status, held)
			}
		}
		t.Logf("%d of %d four-seat holds won, %d seats held", won, users, len(owner))
	})

	t.Run("one user's 20 concurrent single-seat holds on free seats win exactly 8", func(t *testing.T) {
		e.concert("scalper", 40, 100)
		tok := e.token("scalper")
		statuses := make([]answer, 20)
		var wg sync.WaitGroup
		for i := range statuses {
			wg.Go(func() {
				statuses[i] = e.do("POST", "/api/v1/reservations",
					map[string]any{"userId": "scalper", "concertId": "scalper", "dateId": "d1", "seatNo": i + 1}, "Queue-Token", tok)
			})
		}
		wg.Wait()
		won, limited := 0, 0
		for i, a := range statuses {
			switch {
			case a.status == 201:
				won++
			case a.status == 409 && a.str("code") == "SEAT_LIMIT_REACHED":
				limited++
			default:
				t.Fatalf("hold of seat %d: %d %s", i+1, a.status, a.raw)
			}
		}
		if won != 8 || limited != 12 {
			t.Fatalf("won %d, refused for the limit %d; want 8 and 12", won, limited)
		}
	})
}
