package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestEveryReadAfterOwnWriteSeesItThroughHTTP runs users side by side through charge → hold →
// pay, and after each acknowledged write reads everything it changed from the same server:
// wallet, history, seat map (plain and gzipped), dates, reservation, the user's reservations,
// payment. Each read must show the write, and the seat map and dates every hold acknowledged
// to anybody before the read began.
func TestEveryReadAfterOwnWriteSeesItThroughHTTP(t *testing.T) {
	e := startE2E(t, "--queue-batch=0", "--user-rate-limit=0", "--max-seats-per-user=0")
	const users, flowsPerUser, price = 8, 25, 10
	const seats = users * flowsPerUser
	e.concert("ryw", seats, price)
	if got := e.must(200, e.do("GET", "/api/v1/concerts", nil)); !bytes.Contains(got.raw, []byte(`"ryw"`)) {
		t.Fatalf("concert list right after creating it: %s", got.raw)
	}
	var acked atomic.Int64 // holds acknowledged so far, to anybody
	errs := make(chan error, users)
	var wg sync.WaitGroup
	for u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			user := fmt.Sprintf("reader-%d", u)
			for f := range flowsPerUser {
				if err := e.readYourWritesFlow(user, f, 1+u*flowsPerUser+f, price, &acked); err != nil {
					errs <- fmt.Errorf("%s, flow %d: %w", user, f, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// readYourWritesFlow is flow number f of one user: charge the seat's price, hold seatNo, pay.
// Every flow leaves the balance at 0 and adds two ledger entries.
func (e *e2e) readYourWritesFlow(user string, f, seatNo int, price int64, acked *atomic.Int64) error {
	charged, err := e.try(200, "POST", "/api/v1/users/"+user+"/points/charge", map[string]any{"amount": price})
	if err != nil {
		return err
	}
	if err := e.expectWallet(user, price, 2*f+1); err != nil {
		return fmt.Errorf("after charge %s: %w", charged.raw, err)
	}
	t := e.do("POST", "/api/v1/queue/tokens", map[string]any{"userId": user})
	if t.status != 200 && t.status != 201 {
		return fmt.Errorf("token: %d %s", t.status, t.raw)
	}
	tok := t.str("token")
	hold, err := e.try(201, "POST", "/api/v1/reservations", map[string]any{"userId": user, "concertId": "ryw", "dateId": "d1", "seatNo": seatNo}, "Queue-Token", tok)
	if err != nil {
		return err
	}
	acked.Add(1)
	resID := hold.str("reservationId")
	if err := e.expectSeat(seatNo, "HELD", acked.Load()); err != nil {
		return fmt.Errorf("after hold: %w", err)
	}
	if got, err := e.try(200, "GET", "/api/v1/reservations/"+resID, nil); err != nil || got.str("status") != "HELD" {
		return fmt.Errorf("reservation after hold: %s %w", got.raw, err)
	}
	if got, err := e.try(200, "GET", "/api/v1/users/"+user+"/reservations", nil); err != nil || !firstIs(got, "reservations", "reservationId", resID) {
		return fmt.Errorf("user's reservations after hold: %s %w", got.raw, err)
	}
	pay, err := e.try(201, "POST", "/api/v1/payments", map[string]any{"reservationId": resID, "userId": user}, "Queue-Token", tok)
	if err != nil {
		return err
	}
	if got, err := e.try(200, "GET", "/api/v1/payments/"+pay.str("paymentId"), nil); err != nil || got.str("status") != "COMPLETED" {
		return fmt.Errorf("payment after paying: %s %w", got.raw, err)
	}
	if got, err := e.try(200, "GET", "/api/v1/reservations/"+resID, nil); err != nil || got.str("status") != "CONFIRMED" {
		return fmt.Errorf("reservation after paying: %s %w", got.raw, err)
	}
	if err := e.expectWallet(user, 0, 2*f+2); err != nil {
		return fmt.Errorf("after paying: %w", err)
	}
	if err := e.expectSeat(seatNo, "SOLD", acked.Load()); err != nil {
		return fmt.Errorf("after paying: %w", err)
	}
	return nil
}

// expectWallet checks a user's balance and the length of their history.
func (e *e2e) expectWallet(user string, balance int64, entries int) error {
	w, err := e.try(200, "GET", "/api/v1/users/"+user+"/points", nil)
	if err != nil {
		return err
	}
	if got, _ := w.body["balance"].(float64); int64(got) != balance {
		return fmt.Errorf("balance %s, want %d", w.raw, balance)
	}
	h, err := e.try(200, "GET", "/api/v1/users/"+user+"/points/history", nil)
	if err != nil {
		return err
	}
	if got, _ := h.body["entries"].([]any); len(got) != entries {
		return fmt.Errorf("history has %d entries, want %d: %s", len(got), entries, h.raw)
	}
	return nil
}

// expectSeat checks that the seat map, plain and gzipped, shows seatNo in status and at least
// taken seats not AVAILABLE, and that the dates count them.
func (e *e2e) expectSeat(seatNo int, status string, taken int64) error {
	for _, enc := range []string{"identity", "gzip"} {
		a, err := e.try(200, "GET", "/api/v1/concerts/ryw/dates/d1/seats", nil, "Accept-Encoding", enc)
		if err != nil {
			return err
		}
		raw := a.raw
		if enc == "gzip" {
			if raw, err = gunzip(raw); err != nil {
				return fmt.Errorf("gzipped seat map: %w", err)
			}
		}
		var m struct {
			Seats []struct {
				SeatNo int    `json:"seatNo"`
				Status string `json:"status"`
			} `json:"seats"`
		}
		if err := json.Unmarshal(raw, &m); err != nil || len(m.Seats) < seatNo {
			return fmt.Errorf("seat map (%s): %q %v", enc, raw, err)
		}
		if got := m.Seats[seatNo-1].Status; got != status {
			return fmt.Errorf("seat map (%s) shows seat %d %s, want %s", enc, seatNo, got, status)
		}
		notAvailable := int64(0)
		for _, s := range m.Seats {
			if s.Status != "AVAILABLE" {
				notAvailable++
			}
		}
		if notAvailable < taken {
			return fmt.Errorf("seat map (%s) shows %d seats taken, want at least %d", enc, notAvailable, taken)
		}
	}
	d, err := e.try(200, "GET", "/api/v1/concerts/ryw/dates", nil)
	if err != nil {
		return err
	}
	dates, _ := d.body["dates"].([]any)
	if len(dates) != 1 {
		return fmt.Errorf("dates: %s", d.raw)
	}
	date, _ := dates[0].(map[string]any)
	total, _ := date["totalSeats"].(float64)
	avail, _ := date["availableSeats"].(float64)
	if int64(total-avail) < taken {
		return fmt.Errorf("dates show %v of %v seats available, want at most %d: %s", avail, total, int64(total)-taken, d.raw)
	}
	return nil
}

// try is do for a goroutine other than the test's: it returns an error instead of failing.
func (e *e2e) try(want int, method, path string, body any, headers ...string) (answer, error) {
	a := e.do(method, path, body, headers...)
	if a.status != want {
		return a, fmt.Errorf("%s %s: status %d, want %d: %s", method, path, a.status, want, a.raw)
	}
	return a, nil
}

// firstIs reports whether the first element of the list under key has field equal to want.
func firstIs(a answer, key, field, want string) bool {
	list, _ := a.body[key].([]any)
	if len(list) == 0 {
		return false
	}
	first, _ := list[0].(map[string]any)
	got, _ := first[field].(string)
	return got == want
}

func gunzip(b []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

// TestConcurrentChargesOfOneUserListInTimeOrderThroughHTTP charges one wallet from many
// clients at once: the history, oldest first, must go forward in time and add up entry by entry.
func TestConcurrentChargesOfOneUserListInTimeOrderThroughHTTP(t *testing.T) {
	e := startE2E(t, "--user-rate-limit=0")
	const n = 300
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.try(200, "POST", "/api/v1/users/spender/points/charge", map[string]any{"amount": 1 + i}); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var h struct {
		Entries []struct {
			Amount       int64     `json:"amount"`
			BalanceAfter int64     `json:"balanceAfter"`
			At           time.Time `json:"at"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(e.must(200, e.do("GET", "/api/v1/users/spender/points/history", nil)).raw, &h); err != nil {
		t.Fatal(err)
	}
	if len(h.Entries) != n {
		t.Fatalf("history has %d entries, want %d", len(h.Entries), n)
	}
	var problems []error
	balance := int64(0)
	for i, en := range h.Entries {
		balance += en.Amount
		if en.BalanceAfter != balance {
			problems = append(problems, fmt.Errorf("entry %d: balance after %d, want %d", i, en.BalanceAfter, balance))
		}
		if i > 0 && en.At.Before(h.Entries[i-1].At) {
			problems = append(problems, fmt.Errorf("entry %d at %s is earlier than entry %d at %s", i, en.At.Format(time.RFC3339Nano), i-1, h.Entries[i-1].At.Format(time.RFC3339Nano)))
		}
	}
	if err := errors.Join(problems...); err != nil {
		t.Fatal(err)
	}
}
