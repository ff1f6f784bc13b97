package main

import (
	"fmt"
	"testing"
	"time"
)

// The admission test runs the waiting queue's admission ticker in a `booking serve` child
// process with --queue-batch 2 --queue-interval 1s, and watches six users go from WAITING to
// ACTIVE through GET /api/v1/queue/tokens/current.

const (
	admissionBatch    = 2
	admissionInterval = time.Second
	// admissionSlack is how late the ticker (a tenth of the interval, at least 100 ms) may
	// admit the next batch on a loaded machine: CI shares two cores with the race detector and
	// other test processes, so a whole interval; a ticker that stopped would never admit.
	admissionSlack = admissionInterval
	// indexLag bounds how long after an advance's moment the queue index shows it.
	indexLag = 500 * time.Millisecond
)

// tokenSeen is one answer of the token status endpoint, with when it was asked and answered.
type tokenSeen struct {
	sent, got time.Time
	status    string
	ahead     int
	activeAt  time.Time
}

// TestQueueAdmitsTwoUsersPerIntervalInOrderOfPosition issues six tokens at once and polls
// their status: every token is admitted in order of position, no interval admits more than
// --queue-batch, the ticker admits the next ones as soon as the interval allows, and a waiting
// token's "ahead" counts the waiting tokens before it.
func TestQueueAdmitsTwoUsersPerIntervalInOrderOfPosition(t *testing.T) {
	if runAsChild() {
		return
	}
	if testing.Short() {
		t.Skip("starts a server process")
	}
	p := startBookingProc(t, "serve", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--log-format", "json",
		"--queue-batch", fmt.Sprint(admissionBatch), "--queue-interval", admissionInterval.String(),
		"--user-rate-limit", "0", "--no-demo")
	p.waitReady(60 * time.Second)
	c := newAPIClient(t, p.url, "", 10*time.Second)

	const users = 6
	tokens := make([]string, users)
	var lastPos int64
	for i := range users {
		r := c.mustCall(t, 201, "POST", "/api/v1/queue/tokens", map[string]any{"userId": fmt.Sprintf("fan%d", i+1)})
		if pos := r.int("position"); pos <= lastPos {
			t.Fatalf("token %d has position %d after %d: positions must increase in arrival order", i+1, pos, lastPos)
		}
		lastPos = r.int("position")
		tokens[i] = r.str("token")
	}

	seen := make([][]tokenSeen, users)
	pollUntil(t, 10*time.Second, "every token ACTIVE", func() error {
		waiting := 0
		for i, tok := range tokens {
			sent := time.Now()
			r, err := c.call("GET", "/api/v1/queue/tokens/current", nil, "Queue-Token", tok)
			if err != nil {
				return err
			}
			if r.status != 200 {
				t.Fatalf("status of token %d: %s", i+1, r)
			}
			s := tokenSeen{sent: sent, got: time.Now(), status: r.str("status"), ahead: int(r.int("ahead"))}
			if s.status == "ACTIVE" {
				if s.activeAt, err = time.Parse(time.RFC3339Nano, r.str("activeAt")); err != nil {
					t.Fatalf("activeAt of token %d: %s", i+1, r)
				}
			} else {
				waiting++
			}
			seen[i] = append(seen[i], s)
		}
		if waiting > 0 {
			return fmt.Errorf("%d tokens still waiting", waiting)
		}
		return nil
	})

	activeAt := make([]time.Time, users)
	for i := range users {
		activeAt[i] = seen[i][len(seen[i])-1].activeAt
	}
	for i := 1; i < users; i++ {
		if activeAt[i].Before(activeAt[i-1]) {
			t.Errorf("token %d became ACTIVE at %s, before token %d at %s: admission must follow positions",
				i+1, activeAt[i].Format(time.StampMilli), i, activeAt[i-1].Format(time.StampMilli))
		}
	}
	for i := 0; i+admissionBatch < users; i++ {
		gap := activeAt[i+admissionBatch].Sub(activeAt[i])
		if gap < admissionInterval {
			t.Errorf("tokens %d to %d became ACTIVE within %s: more than --queue-batch %d in one --queue-interval %s",
				i+1, i+1+admissionBatch, gap, admissionBatch, admissionInterval)
		}
		if gap > admissionInterval+admissionSlack {
			t.Errorf("token %d became ACTIVE %s after token %d: the ticker should admit it once the interval %s has passed",
				i+1+admissionBatch, gap.Round(time.Millisecond), i+1, admissionInterval)
		}
	}
	// admitted returns how many tokens had become ACTIVE by at, by their final activeAt.
	admitted := func(at time.Time) int {
		n := 0
		for _, a := range activeAt {
			if !a.After(at) {
				n++
			}
		}
		return n
	}
	for i, obs := range seen {
		waited := false
		for _, s := range obs {
			if s.status != "WAITING" {
				continue
			}
			waited = true
			// While token i+1 waits, the tokens ahead of it are the i before it minus those
			// admitted when the server answered (between sent and got, give or take indexLag).
			most, least := i-admitted(s.sent.Add(-indexLag)), i-admitted(s.got)
			if s.ahead < least || s.ahead > most {
				t.Errorf("token %d WAITING with %d ahead between %s and %s; want %d to %d",
					i+1, s.ahead, s.sent.Format(time.StampMilli), s.got.Format(time.StampMilli), least, most)
			}
		}
		if !waited && i >= admissionBatch {
			t.Errorf("token %d was never seen WAITING: only %d tokens may be ACTIVE in the first interval", i+1, admissionBatch)
		}
	}
	for i, a := range activeAt {
		t.Logf("token %d ACTIVE at +%s", i+1, a.Sub(activeAt[0]).Round(time.Millisecond))
	}
}
