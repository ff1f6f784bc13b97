package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// The crash test runs `booking serve` as a child process under hold, pay and charge load,
// kills it with SIGKILL at random moments and restarts it on the same data dir. What a client
// was told with a 2xx must still be true afterwards; what was in flight must have been
// finished or reversed by recovery; and `booking verify` must pass on the log at rest.

const (
	crashAdmin = "crash-admin"
	crashPrice = 100
	crashSeats = 4000
	// crashWorkers is how many clients load the server at once, each as its own user.
	crashWorkers = 8
)

// TestCrashRecoveryUnderLoad kills the server 3 times (12 with BOOKING_LONG_TESTS=1) at random
// moments of a hold/pay/charge load. BOOKING_CRASH_SEED repeats a run's kill moments and
// choices (the goroutines' interleaving is the scheduler's).
func TestCrashRecoveryUnderLoad(t *testing.T) {
	if runAsChild() {
		return
	}
	if testing.Short() {
		t.Skip("crash test: starts and kills server processes")
	}
	kills := 3
	if os.Getenv("BOOKING_LONG_TESTS") == "1" {
		kills = 12
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("BOOKING_CRASH_SEED"); s != "" {
		var err error
		if seed, err = strconv.ParseUint(s, 10, 64); err != nil {
			t.Fatalf("BOOKING_CRASH_SEED: %v", err)
		}
	}
	t.Logf("seed %d (repeat with BOOKING_CRASH_SEED=%d), %d kills", seed, seed, kills)
	rng := rand.New(rand.NewPCG(seed, 0x5eed))

	dir := t.TempDir()
	args := []string{"serve", "--data-dir", dir, "--http-addr", "127.0.0.1:0", "--log-format", "json",
		"--fsync", "always", "--queue-batch", "0", "--user-rate-limit", "0", "--no-demo",
		"--admin-token", crashAdmin, "--hold-ttl", "1h",
		// A few fans hold many seats each: the per-user limit is not what this test is about.
		"--max-seats-per-user", "0"}
	led := newCrashLedger()

	for round := 0; ; round++ {
		started := time.Now()
		p := startBookingProc(t, args...)
		if round > 0 && rng.IntN(3) == 0 {
			// Kill it again while it catches up and recovers: recovery must survive a crash too.
			p.kill()
			t.Logf("restart %d: killed again while starting (before ready)", round)
			started = time.Now()
			p = startBookingProc(t, args...)
		}
		p.waitReady(90 * time.Second)
		c := newAPIClient(t, p.url, crashAdmin, 30*time.Second)
		if round > 0 {
			t.Logf("restart %d: ready %s after the process started", round, time.Since(started).Round(time.Millisecond))
			if err := led.retryInFlight(c); err != nil {
				t.Fatalf("restart %d: %v\nserver log:\n%s", round, err, p.tail(80))
			}
			took := pollUntil(t, 30*time.Second, fmt.Sprintf("after kill %d, the acknowledged state", round), func() error { return led.check(c) })
			t.Logf("restart %d: every acknowledged answer reflected, in-flight work settled (%s after ready; %d payments recovered)",
				round, took.Round(time.Millisecond), countLogs(p, "recovered payment"))
		}
		if round == kills {
			p.stop(60 * time.Second)
			if races := p.raceReports(); len(races) > 0 {
				t.Fatalf("the server reported data races:\n%s", p.tail(200))
			}
			break
		}
		concert := fmt.Sprintf("crash%d", round)
		c.createConcert(t, concert, crashSeats, crashPrice)
		led.addConcert(concert)

		killAfter := time.Duration(50+rng.IntN(1450)) * time.Millisecond
		stop := make(chan struct{})
		wg := led.startWorkers(t, c, concert, func(w int) *rand.Rand { return rand.New(rand.NewPCG(rng.Uint64(), uint64(w))) }, stop)
		time.Sleep(killAfter) // the kill moment is the point of the test, not a wait for a state
		p.kill()
		close(stop)
		wg.Wait()
		if races := p.raceReports(); len(races) > 0 {
			t.Fatalf("the server reported data races:\n%s", strings.Join(races, "\n"))
		}
		if t.Failed() {
			t.Fatalf("load round %d failed; server log:\n%s", round, p.tail(60))
		}
		t.Logf("kill %d after %s of load: %s", round+1, killAfter, led.summary())
	}

	code, out := runBookingTool(t, 2*time.Minute, "verify", "--data-dir", dir)
	if code != 0 {
		t.Fatalf("booking verify exited %d after the crashes:\n%s", code, out)
	}
	t.Logf("booking verify after %d kills:\n%s", kills, strings.TrimSuffix(strings.TrimSpace(out), "PASS"))
	t.Logf("totals: %s; 503 answers (outcome unknown, retried): %d", led.summary(), unavailableAnswers.Load())
}

// countLogs counts the log lines of p with the message msg.
func countLogs(p *bookingProc, msg string) int {
	n := 0
	for _, l := range p.logLines() {
		if strings.Contains(l, `"msg":"`+msg+`"`) {
			n++
		}
	}
	return n
}

// crashLedger is what the clients sent and what they were told, across every run of the
// server. Requests whose answer a kill cut off are "in flight": either outcome is allowed, but
// the outcome must be whole.
type crashLedger struct {
	mu       sync.Mutex
	concerts []string
	users    map[string]*crashUser
	seq      int64 // makes every charge's amount unique, so the history tells which went through
	acks     struct {
		holds, pays, charges          int // acknowledged with 2xx during the load
		holdsCut, paysCut, chargesCut int // cut off by a kill
		retried                       int // cut off, repeated after the restart, 2xx then
		holdAnswerLost, payAnswerLost int // cut off, repeated, and found done but unanswered
	}
}

type crashUser struct {
	id          string
	charges     map[int64]bool          // amount → acknowledged (false: answer cut off)
	holds       map[string]crashHold    // reservationId → acknowledged hold
	holdsCut    map[string]crashRequest // "concert/seat" → hold whose answer was cut off
	holdRetried map[string]bool         // "concert/seat" of cut-off holds already retried
	paid        map[string]string       // reservationId → paymentId acknowledged with 201
	payCut      map[string]crashRequest // reservationId → payment whose answer was cut off
	payRetried  map[string]bool         // reservationIds of cut-off payments already retried
}

type crashHold struct {
	concert string
	seats   []int // ascending; every other hold takes two seats in one reservation
}

// crashRequest is a request whose answer a kill cut off, kept to be repeated as it was.
type crashRequest struct {
	concert string
	seats   []int
	key     string
	token   string
}

func newCrashLedger() *crashLedger {
	l := &crashLedger{users: map[string]*crashUser{}}
	return l
}

func (l *crashLedger) addConcert(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.concerts = append(l.concerts, id)
}

func (l *crashLedger) user(id string) *crashUser {
	l.mu.Lock()
	defer l.mu.Unlock()
	u, ok := l.users[id]
	if !ok {
		u = &crashUser{id: id, charges: map[int64]bool{}, holds: map[string]crashHold{},
			holdsCut: map[string]crashRequest{}, holdRetried: map[string]bool{},
			paid: map[string]string{}, payCut: map[string]crashRequest{}, payRetried: map[string]bool{}}
		l.users[id] = u
	}
	return u
}

func (l *crashLedger) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	a := l.acks
	return fmt.Sprintf("acknowledged %d holds, %d payments, %d charges; cut off by kills: %d holds, %d payments, %d charges; "+
		"of those, on retry with the same Idempotency-Key: %d answered 2xx, %d holds found their seat taken by the first attempt (409), %d payments found done by recovery (401/409)",
		a.holds, a.pays, a.charges, a.holdsCut, a.paysCut, a.chargesCut, a.retried, a.holdAnswerLost, a.payAnswerLost)
}

// work is one client: it charges points, holds seats of concert one after the other and pays
// for about half of them, until stop closes or the server stops answering. Every request
// carries an Idempotency-Key, so that one cut off can be retried after the restart. A worker
// has one request out at a time, so a kill cuts off at most one of its requests.
// startWorkers starts crashWorkers clients (users fan-0…) holding and paying on concert until
// stop is closed; the WaitGroup ends when they have. seed gives worker w its random source.
func (l *crashLedger) startWorkers(t *testing.T, c *apiClient, concert string, seed func(w int) *rand.Rand, stop <-chan struct{}) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range crashWorkers {
		wg.Add(1)
		go func(rng *rand.Rand) {
			defer wg.Done()
			l.work(t, c, fmt.Sprintf("fan-%d", w), concert, rng, stop)
		}(seed(w))
	}
	return &wg
}

func (l *crashLedger) work(t *testing.T, c *apiClient, userID, concert string, rng *rand.Rand, stop <-chan struct{}) {
	u := l.user(userID)
	token := "" // fetched afresh: recovery may have completed a payment that revoked the last one
	next := 0
	var unpaid []string
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		if token == "" {
			r, err := c.call("POST", "/api/v1/queue/tokens", map[string]any{"userId": userID})
			if err != nil {
				return
			}
			if r.status != 201 && r.status != 200 {
				t.Errorf("token for %s: %s", userID, r)
				return
			}
			token = r.str("token")
		}
		key := fmt.Sprintf("%s-%s-%d", userID, concert, n)
		switch {
		case n == 0 || rng.IntN(10) == 0:
			l.mu.Lock()
			l.seq++
			amount := 1_000_000 + l.seq
			u.charges[amount] = false
			l.mu.Unlock()
			r, err := c.call("POST", "/api/v1/users/"+userID+"/points/charge", map[string]any{"amount": amount}, "Idempotency-Key", key)
			if err != nil || unknownOutcome(r) {
				l.count(func() { l.acks.chargesCut++ })
				return
			}
			if r.status != 200 {
				t.Errorf("charge %d for %s: %s", amount, userID, r)
				return
			}
			l.count(func() { u.charges[amount] = true; l.acks.charges++ })
		case len(unpaid) > 0 && rng.IntN(2) == 0:
			rid := unpaid[0]
			unpaid = unpaid[1:]
			r, err := c.call("POST", "/api/v1/payments", map[string]any{"reservationId": rid, "userId": userID},
				"Queue-Token", token, "Idempotency-Key", key)
			if err != nil || unknownOutcome(r) {
				l.count(func() { u.payCut[rid] = crashRequest{key: key, token: token}; l.acks.paysCut++ })
				return
			}
			if r.status != 201 || r.str("status") != "COMPLETED" {
				t.Errorf("payment of %s by %s: %s", rid, userID, r)
				return
			}
			l.count(func() { u.paid[rid] = r.str("paymentId"); l.acks.pays++ })
			token = "" // a completed payment revokes the token
		default:
			next++
			seats := []int{seatFor(userID, next)}
			if next%2 == 0 && seatFor(userID, next+1) <= crashSeats {
				// Two seats in one reservation: a kill must never leave one of them behind.
				next++
				seats = append(seats, seatFor(userID, next))
			}
			if seats[0] > crashSeats {
				return
			}
			req := crashRequest{concert: concert, seats: seats, key: key, token: token}
			r, err := c.holdSeats(userID, token, concert, seats, "Idempotency-Key", key)
			if err != nil || unknownOutcome(r) {
				l.count(func() { u.holdsCut[holdKey(concert, seats[0])] = req; l.acks.holdsCut++ })
				return
			}
			if r.status != 201 || r.str("reservationId") == "" {
				t.Errorf("hold of seats %v by %s: %s", seats, userID, r)
				return
			}
			rid := r.str("reservationId")
			l.count(func() { u.holds[rid] = crashHold{concert: concert, seats: seats}; l.acks.holds++ })
			unpaid = append(unpaid, rid)
		}
	}
}

// unknownOutcome tells a 503 SERVICE_UNAVAILABLE: the request may or may not have taken effect
// (e.g. it ran past the request timeout on a machine starved of CPU), exactly as when a kill
// cuts the answer off, and a client retries it with its key.
func unknownOutcome(r apiReply) bool {
	if r.status == 503 && r.str("code") == "SERVICE_UNAVAILABLE" {
		unavailableAnswers.Add(1)
		return true
	}
	return false
}

// unavailableAnswers counts the 503s the crash test's clients got, for its summary.
var unavailableAnswers atomic.Int64

// holdKey names a hold by its concert and first seat.
func holdKey(concert string, seat int) string { return concert + "/" + strconv.Itoa(seat) }

// seatFor spreads the workers over distinct seats: worker w takes w+1, w+1+W, ...
func seatFor(userID string, n int) int {
	w, _ := strconv.Atoi(strings.TrimPrefix(userID, "fan-"))
	return w + 1 + (n-1)*crashWorkers
}

func (l *crashLedger) count(f func()) {
	l.mu.Lock()
	defer l.mu.Unlock()
	f()
}

// retryInFlight repeats, as it was (same body, Queue-Token and Idempotency-Key), every hold
// and payment whose answer a kill cut off, as a client would. The first attempt may or may not
// have taken effect, so the retry may succeed or find the work done; it must never make things
// worse (a second seat, a second debit), which check verifies afterwards.
func (l *crashLedger) retryInFlight(c *apiClient) error {
	for _, u := range l.sortedUsers() {
		for _, k := range sortedKeys(u.holdsCut) {
			if u.holdRetried[k] {
				continue
			}
			u.holdRetried[k] = true
			req := u.holdsCut[k]
			r, err := retryWhileUnavailable(func() (apiReply, error) {
				return c.holdSeats(u.id, req.token, req.concert, req.seats, "Idempotency-Key", req.key)
			})
			if err != nil {
				return fmt.Errorf("retry of the hold of %s: %w", k, err)
			}
			switch {
			case r.status == 201:
				l.count(func() {
					u.holds[r.str("reservationId")] = crashHold{concert: req.concert, seats: req.seats}
					l.acks.retried++
				})
			case r.status == 409 && r.str("code") == "SEAT_UNAVAILABLE":
				// The first attempt held the seat, but its answer died with the process: the
				// idempotent answer is stored only after the command, so the retry ran again.
				l.count(func() { l.acks.holdAnswerLost++ })
			default:
				return fmt.Errorf("retry of the hold of %s by %s: %s", k, u.id, r)
			}
		}
		for _, rid := range sortedKeys(u.payCut) {
			if u.payRetried[rid] {
				continue
			}
			u.payRetried[rid] = true
			req := u.payCut[rid]
			r, err := retryWhileUnavailable(func() (apiReply, error) {
				return c.call("POST", "/api/v1/payments", map[string]any{"reservationId": rid, "userId": u.id},
					"Queue-Token", req.token, "Idempotency-Key", req.key)
			})
			if err != nil {
				return fmt.Errorf("retry of the payment of %s: %w", rid, err)
			}
			switch {
			case r.status == 201:
				l.count(func() { u.paid[rid] = r.str("paymentId"); l.acks.retried++ })
			case r.status == 409 && r.str("code") == "RESERVATION_NOT_PAYABLE",
				r.status == 401 && r.str("code") == "TOKEN_EXPIRED":
				// Recovery completed the first attempt, whose answer died with the process.
				l.count(func() { l.acks.payAnswerLost++ })
			default:
				return fmt.Errorf("retry of the payment of %s by %s (key %s): %s", rid, u.id, req.key, r)
			}
		}
	}
	return nil
}

// retryWhileUnavailable repeats a request while it is answered 503, for up to 30 s.
func retryWhileUnavailable(send func() (apiReply, error)) (apiReply, error) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := send()
		if err != nil || !unknownOutcome(r) || time.Now().After(deadline) {
			return r, err
		}
		time.Sleep(time.Second) // the Retry-After of a 503
	}
}

func (l *crashLedger) sortedUsers() []*crashUser {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]*crashUser, 0, len(l.users))
	for _, u := range l.users {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].id < out[j].id })
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

type crashReservation struct {
	ReservationID string `json:"reservationId"`
	ConcertID     string `json:"concertId"`
	SeatNo        int    `json:"seatNo"`
	SeatNos       []int  `json:"seatNos"`
	Price         int64  `json:"price"`
	Status        string `json:"status"`
	PaymentID     string `json:"paymentId"`
}

type crashEntry struct {
	Type      string `json:"type"`
	Amount    int64  `json:"amount"`
	Reference string `json:"reference"`
}

// check compares what the server shows with what the clients were told. It returns the first
// disagreement, so that the caller can poll while read models and recovery catch up.
func (l *crashLedger) check(c *apiClient) error {
	l.mu.Lock()
	concerts := append([]string(nil), l.concerts...)
	l.mu.Unlock()
	seats := map[string]map[int]string{}
	for _, cid := range concerts {
		m, err := c.seatStatuses(cid)
		if err != nil {
			return err
		}
		seats[cid] = m
	}
	owner := map[string]string{} // "concert/seat" → reservation holding or owning it
	for _, u := range l.sortedUsers() {
		if err := l.checkUser(c, u, seats, owner); err != nil {
			return err
		}
	}
	// No seat is HELD or SOLD without a live reservation of a hold that was sent. (A hold cut
	// off between its two events leaves a seat held without a reservation until heldUntil:
	// only seats of cut-off holds may be in that state.)
	for _, cid := range concerts {
		for seat, st := range seats[cid] {
			k := cid + "/" + strconv.Itoa(seat)
			if st == "AVAILABLE" || owner[k] != "" {
				continue
			}
			if !l.cutHold(k) {
				return fmt.Errorf("seat %s is %s, but no reservation of any client holds it", k, st)
			}
		}
	}
	return nil
}

func (l *crashLedger) cutHold(k string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, u := range l.users {
		if _, ok := u.holdsCut[k]; ok {
			return true
		}
	}
	return false
}

func (l *crashLedger) checkUser(c *apiClient, u *crashUser, seats map[string]map[int]string, owner map[string]string) error {
	l.mu.Lock()
	holds := map[string]crashHold{}
	for rid, h := range u.holds {
		holds[rid] = h
	}
	cut := map[string]bool{}
	for k := range u.holdsCut {
		cut[k] = true
	}
	paid := map[string]string{}
	for rid, pid := range u.paid {
		paid[rid] = pid
	}
	payCut := map[string]bool{}
	for rid := range u.payCut {
		payCut[rid] = true
	}
	charges := map[int64]bool{}
	for a, acked := range u.charges {
		charges[a] = acked
	}
	l.mu.Unlock()

	r, err := c.call("GET", "/api/v1/users/"+u.id+"/reservations", nil)
	if err != nil || r.status != 200 {
		return fmt.Errorf("reservations of %s: %v %s", u.id, err, r)
	}
	var list struct {
		Reservations []crashReservation `json:"reservations"`
	}
	if err := json.Unmarshal(r.raw, &list); err != nil {
		return err
	}
	shown := map[string]crashReservation{}
	for _, res := range list.Reservations {
		shown[res.ReservationID] = res
	}

	// Every acknowledged hold exists, on its seat; every acknowledged payment confirmed it.
	for rid, h := range holds {
		res, ok := shown[rid]
		if !ok {
			return fmt.Errorf("hold %s of seats %s/%v acknowledged to %s with 201 is lost", rid, h.concert, h.seats, u.id)
		}
		if res.ConcertID != h.concert || !slices.Equal(res.SeatNos, h.seats) {
			return fmt.Errorf("reservation %s shows seats %s/%v, the hold was for %s/%v", rid, res.ConcertID, res.SeatNos, h.concert, h.seats)
		}
		if pid, ok := paid[rid]; ok && (res.Status != "CONFIRMED" || res.PaymentID != pid) {
			return fmt.Errorf("reservation %s paid with 201 by %s is %s (payment %q)", rid, pid, res.Status, res.PaymentID)
		}
		if res.Status == "CONFIRMED" && paid[rid] == "" && !payCut[rid] {
			return fmt.Errorf("reservation %s is CONFIRMED, but nobody paid for it", rid)
		}
		if res.Status != "HELD" && res.Status != "CONFIRMED" {
			return fmt.Errorf("reservation %s acknowledged with 201 is %s (holds last an hour here)", rid, res.Status)
		}
	}
	// Every reservation shown comes from a hold that was sent: acknowledged, or cut off.
	var confirmedSum int64
	confirmedBy := map[string]string{} // paymentId → reservationId
	for rid, res := range shown {
		k := holdKey(res.ConcertID, res.SeatNo)
		if _, ok := holds[rid]; !ok && !cut[k] {
			return fmt.Errorf("reservation %s of %s on seats %s/%v was never asked for", rid, u.id, res.ConcertID, res.SeatNos)
		}
		want := map[string]string{"HELD": "HELD", "CONFIRMED": "SOLD"}[res.Status]
		if want == "" {
			continue
		}
		for _, n := range res.SeatNos {
			sk := holdKey(res.ConcertID, n)
			if prev := owner[sk]; prev != "" {
				return fmt.Errorf("seat %s is taken by two live reservations: %s and %s", sk, prev, rid)
			}
			owner[sk] = rid
			if got := seats[res.ConcertID][n]; got != want {
				return fmt.Errorf("seat %s of reservation %s (%s, seats %v) is %s, want %s", sk, rid, res.Status, res.SeatNos, got, want)
			}
		}
		if res.Status == "CONFIRMED" {
			confirmedSum += res.Price
			confirmedBy[res.PaymentID] = rid
		}
	}

	// The wallet: every acknowledged charge counted once, no unknown charge, every debit
	// either paid for by a confirmed reservation or reversed, and the balance adds up.
	r, err = c.call("GET", "/api/v1/users/"+u.id+"/points/history", nil)
	if err != nil || r.status != 200 {
		return fmt.Errorf("history of %s: %v %s", u.id, err, r)
	}
	var hist struct {
		Entries []crashEntry `json:"entries"`
	}
	if err := json.Unmarshal(r.raw, &hist); err != nil {
		return err
	}
	var charged int64
	seen := map[int64]bool{}
	debits := map[string]int64{}
	refunds := map[string]int64{}
	for _, e := range hist.Entries {
		switch e.Type {
		case "CHARGE":
			if _, sent := charges[e.Amount]; !sent || seen[e.Amount] {
				return fmt.Errorf("%s: charge of %d in the history was not sent, or counted twice", u.id, e.Amount)
			}
			seen[e.Amount] = true
			charged += e.Amount
		case "PAYMENT":
			if debits[e.Reference] != 0 {
				return fmt.Errorf("%s: payment %s debited twice", u.id, e.Reference)
			}
			debits[e.Reference] = e.Amount
		case "REFUND":
			refunds[e.Reference] += e.Amount
		}
	}
	for amount, acked := range charges {
		if acked && !seen[amount] {
			return fmt.Errorf("%s: charge of %d acknowledged with 200 is not in the history", u.id, amount)
		}
	}
	for pid, amount := range debits {
		_, confirmed := confirmedBy[pid]
		reversed := refunds[pid] == amount
		if confirmed == reversed {
			return fmt.Errorf("%s: debit of %d for payment %s is neither paid for nor reversed (confirmed %v, refunded %d): payment still in flight?",
				u.id, amount, pid, confirmed, refunds[pid])
		}
		p, err := c.call("GET", "/api/v1/payments/"+pid, nil)
		if err != nil || p.status != 200 {
			return fmt.Errorf("payment %s: %v %s", pid, err, p)
		}
		if want := map[bool]string{true: "COMPLETED", false: "FAILED"}[confirmed]; p.str("status") != want {
			return fmt.Errorf("payment %s is %s, want %s", pid, p.str("status"), want)
		}
	}
	for pid, rid := range confirmedBy {
		if _, ok := debits[pid]; !ok {
			return fmt.Errorf("reservation %s CONFIRMED by payment %s, which debited nothing", rid, pid)
		}
	}
	r, err = c.call("GET", "/api/v1/users/"+u.id+"/points", nil)
	if err != nil || r.status != 200 {
		return fmt.Errorf("balance of %s: %v %s", u.id, err, r)
	}
	if got, want := r.int("balance"), charged-confirmedSum; got != want {
		return fmt.Errorf("%s: balance %d, want %d (charged %d, confirmed %d)", u.id, got, want, charged, confirmedSum)
	}
	return nil
}
