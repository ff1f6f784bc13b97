package main

import (
	"fmt"
	"testing"
	"time"
)

// The expiry test runs the real hold-expiry timer: `booking serve` as a child process with a
// short --hold-ttl, killed with SIGKILL and restarted on the same data dir around heldUntil.
// The contract: a hold not paid by heldUntil becomes EXPIRED and its seat AVAILABLE within one
// second of heldUntil, also across restarts of the server.

const expiryAdmin = "expiry-admin"

// expiryGrace is the contract's bound between heldUntil (or, for a hold that lapsed while the
// server was down, the server being back) and the hold showing EXPIRED with its seat AVAILABLE.
const expiryGrace = time.Second

// TestHoldsExpireWithinASecondOfHeldUntilAcrossKills holds a seat and watches it expire three
// times on one data dir: with the server running throughout, with the server killed before
// heldUntil and back only after it, and with the server killed and back before heldUntil.
func TestHoldsExpireWithinASecondOfHeldUntilAcrossKills(t *testing.T) {
	if runAsChild() {
		return
	}
	if testing.Short() {
		t.Skip("starts and kills server processes")
	}
	dir := t.TempDir()
	serve := func(ttl time.Duration) (*bookingProc, *apiClient, time.Time) {
		t.Helper()
		started := time.Now()
		p := startBookingProc(t, "serve", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--log-format", "json",
			"--queue-batch", "0", "--user-rate-limit", "0", "--no-demo", "--admin-token", expiryAdmin,
			"--hold-ttl", ttl.String())
		p.waitReady(60 * time.Second)
		t.Logf("server ready %s after its start", time.Since(started).Round(time.Millisecond))
		return p, newAPIClient(t, p.url, expiryAdmin, 10*time.Second), time.Now()
	}

	p, c, _ := serve(2 * time.Second)
	c.createConcert(t, "lapse", 3, 100)

	t.Run("a hold expires within a second of heldUntil while the server runs", func(t *testing.T) {
		r := holdFor(t, c, "ana", "lapse", 1)
		watchExpiry(t, c, r, r.heldUntil)
	})

	t.Run("a hold whose heldUntil passed while the server was killed expires as soon as it is back", func(t *testing.T) {
		r := holdFor(t, c, "ben", "lapse", 2)
		p.kill()
		time.Sleep(time.Until(r.heldUntil)) // heldUntil passing while the server is down is the point of the case
		var back time.Time
		p, c, back = serve(5 * time.Second)
		if !back.After(r.heldUntil) {
			t.Fatalf("the server was back at %s, before heldUntil %s", back.Format(time.StampMilli), r.heldUntil.Format(time.StampMilli))
		}
		watchExpiry(t, c, r, back)
	})

	t.Run("a hold that outlives a kill and a restart expires within a second of heldUntil", func(t *testing.T) {
		r := holdFor(t, c, "cat", "lapse", 3)
		p.kill()
		var back time.Time
		p, c, back = serve(5 * time.Second)
		if !back.Before(r.heldUntil) {
			t.Fatalf("the restart took too long for this case: back at %s, after heldUntil %s (raise the server's --hold-ttl)",
				back.Format(time.StampMilli), r.heldUntil.Format(time.StampMilli))
		}
		watchExpiry(t, c, r, r.heldUntil)
	})
	p.stop(30 * time.Second)
}

// heldSeat is a hold acknowledged with 201.
type heldSeat struct {
	reservationID, concert string
	seat                   int
	heldUntil              time.Time
}

// holdFor holds seat of concert for user (a new token each time) and returns the hold.
func holdFor(t *testing.T, c *apiClient, user, concert string, seat int) heldSeat {
	t.Helper()
	tok, err := c.token(user)
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.hold(user, tok, concert, seat)
	if err != nil || r.status != 201 {
		t.Fatalf("hold of seat %d by %s: %v %v", seat, user, r, err)
	}
	until, err := time.Parse(time.RFC3339Nano, r.str("heldUntil"))
	if err != nil {
		t.Fatalf("heldUntil of %s: %v", r, err)
	}
	return heldSeat{reservationID: r.str("reservationId"), concert: concert, seat: seat, heldUntil: until}
}

// watchExpiry polls the hold until its reservation is EXPIRED and its seat AVAILABLE, and fails
// the test if that shows before heldUntil or more than expiryGrace after due (heldUntil, or the
// moment the server was back when the hold lapsed while it was down).
func watchExpiry(t *testing.T, c *apiClient, h heldSeat, due time.Time) {
	t.Helper()
	var seen time.Time
	pollUntil(t, time.Until(due)+expiryGrace+2*time.Second, "hold "+h.reservationID+" expired", func() error {
		r, err := c.call("GET", "/api/v1/reservations/"+h.reservationID, nil)
		if err != nil {
			return err
		}
		seats, err := c.seatStatuses(h.concert)
		if err != nil {
			return err
		}
		now := time.Now()
		if r.str("status") != "EXPIRED" || seats[h.seat] != "AVAILABLE" {
			return fmt.Errorf("at %s (heldUntil %s): reservation %s, seat %s", now.Format(time.StampMilli),
				h.heldUntil.Format(time.StampMilli), r, seats[h.seat])
		}
		seen = now
		return nil
	})
	if seen.Before(h.heldUntil) {
		t.Fatalf("the hold expired early: seen EXPIRED at %s, heldUntil %s", seen.Format(time.StampMilli), h.heldUntil.Format(time.StampMilli))
	}
	if late := seen.Sub(due); late > expiryGrace {
		t.Fatalf("the hold showed EXPIRED and its seat AVAILABLE %s after %s; the contract allows %s",
			late.Round(time.Millisecond), due.Format(time.StampMilli), expiryGrace)
	}
	t.Logf("EXPIRED and seat AVAILABLE %s after heldUntil", seen.Sub(h.heldUntil).Round(time.Millisecond))
}
