package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeService mimics enough of the contract for the scenarios to run against it: the admin
// catalog, the queue, points, holds with exactly-one-winner seats, and payments. Its knobs
// make it misbehave the way a misconfigured or broken target would.
type fakeService struct {
	fakeKnobs

	mu           sync.Mutex
	concerts     []string
	dates        map[string][]fakeDate // concertId → dates
	seats        map[string]string     // concert/date/seat → reservationId
	tokens       map[string]string     // token → userId
	balances     map[string]int64
	reservations map[string]fakeReservation
	paid         int
	healthz      int // GET /healthz answered (the warm-up)
	// asked has the seats of every hold request, in the order they arrived.
	asked []fakeHold
	// keys counts the POSTs by Idempotency-Key ("" for none).
	keys map[string]int
	// handler serves every instance of the fake (see instance); perInstance counts the
	// requests each instance received, by method and path pattern's first segments.
	handler     http.Handler
	perInstance map[string]map[string]int
}

// fakeKnobs make the fake misbehave the way a misconfigured or broken target would.
type fakeKnobs struct {
	// waiting issues every queue token WAITING (a target with a batched queue).
	waiting bool
	// rateLimitHolds answers every hold 429 (a target with a per-user rate limit).
	rateLimitHolds bool
	// acceptEveryHold accepts holds on seats that are already held (a double-selling bug).
	acceptEveryHold bool
	// failPayments answers every payment 500.
	failPayments bool
	// holdFirstSeatOnly holds only the first seat of a multi-seat hold and answers 201 with
	// it (a half-done hold).
	holdFirstSeatOnly bool
	// seatsPerUser, when positive, answers 409 SEAT_LIMIT_REACHED to a hold that would give
	// a user more seats of a date.
	seatsPerUser int
}

// fakeHold is what one hold request asked for.
type fakeHold struct {
	concert, date string
	seats         []int
	// list says the seats came as seatNos, not seatNo.
	list bool
}

type fakeDate struct {
	DateID    string `json:"dateId"`
	StartsAt  string `json:"startsAt"`
	SeatCount int    `json:"seatCount"`
	Price     int64  `json:"price"`
}

type fakeReservation struct {
	user          string
	price         int64
	paid          bool
	concert, date string
	seats         int
}

func newFakeService(t testing.TB, knobs fakeKnobs) (*fakeService, *httptest.Server) {
	t.Helper()
	f := &fakeService{fakeKnobs: knobs}
	f.dates = make(map[string][]fakeDate)
	f.seats = make(map[string]string)
	f.tokens = make(map[string]string)
	f.balances = make(map[string]int64)
	f.reservations = make(map[string]fakeReservation)
	f.keys = make(map[string]int)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) { reply(w, 200, map[string]string{"status": "ok"}) })
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		f.mu.Lock()
		f.healthz++
		f.mu.Unlock()
		reply(w, 200, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("POST /api/v1/admin/concerts", f.createConcert)
	mux.HandleFunc("GET /api/v1/concerts", f.listConcerts)
	mux.HandleFunc("GET /api/v1/concerts/{c}/dates", f.listDates)
	mux.HandleFunc("GET /api/v1/concerts/{c}/dates/{d}/seats", f.seatMap)
	mux.HandleFunc("POST /api/v1/queue/tokens", f.issueToken)
	mux.HandleFunc("POST /api/v1/users/{u}/points/charge", f.charge)
	mux.HandleFunc("POST /api/v1/reservations", f.hold)
	mux.HandleFunc("POST /api/v1/payments", f.pay)
	f.perInstance = make(map[string]map[string]int)
	f.handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			f.mu.Lock()
			f.keys[r.Header.Get("Idempotency-Key")]++
			f.mu.Unlock()
		}
		mux.ServeHTTP(w, r)
	})
	return f, f.instance(t)
}

// instance starts one more server in front of the same state, as a second instance of one
// service on a shared log, and counts the requests it receives.
func (f *fakeService) instance(t testing.TB) *httptest.Server {
	t.Helper()
	var srv *httptest.Server
	srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		n := f.perInstance[srv.URL]
		if n == nil {
			n = make(map[string]int)
			f.perInstance[srv.URL] = n
		}
		n[r.Method+" "+r.URL.Path]++
		f.mu.Unlock()
		f.handler.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// received returns how many requests the instance at url received whose method and path
// start with prefix (e.g. "POST /api/v1/reservations").
func (f *fakeService) received(url, prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	total := 0
	for k, n := range f.perInstance[url] {
		if strings.HasPrefix(k, prefix) {
			total += n
		}
	}
	return total
}

// postKeys returns how many POSTs carried no Idempotency-Key, and how many keys were sent
// more than once.
func (f *fakeService) postKeys() (unkeyed, repeated int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, n := range f.keys {
		switch {
		case k == "":
			unkeyed = n
		case n > 1:
			repeated++
		}
	}
	return unkeyed, repeated
}

// payments returns how many payments completed.
func (f *fakeService) payments() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.paid
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func problem(w http.ResponseWriter, status int, code string) {
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": code, "status": status, "code": code})
}

// decode is strict, as the real API is, so that a scenario sending a wrong shape fails here.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	d := json.NewDecoder(r.Body)
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		problem(w, 400, "INVALID_REQUEST")
		return false
	}
	return true
}

func (f *fakeService) createConcert(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+testAdminToken {
		problem(w, 401, "UNAUTHORIZED")
		return
	}
	var in struct {
		ConcertID string     `json:"concertId"`
		Title     string     `json:"title"`
		Dates     []fakeDate `json:"dates"`
	}
	if !decode(w, r, &in) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := f.dates[in.ConcertID]; ok {
		problem(w, 409, "CONCERT_EXISTS")
		return
	}
	for _, d := range in.Dates {
		if d.SeatCount < 1 || d.SeatCount > 10_000 {
			problem(w, 400, "INVALID_REQUEST")
			return
		}
	}
	f.concerts = append(f.concerts, in.ConcertID)
	f.dates[in.ConcertID] = in.Dates
	reply(w, 201, map[string]any{"concertId": in.ConcertID, "title": in.Title, "dates": in.Dates})
}

func (f *fakeService) listConcerts(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	list := []map[string]any{}
	for _, c := range f.concerts {
		list = append(list, map[string]any{"concertId": c, "title": c, "dateCount": len(f.dates[c])})
	}
	reply(w, 200, map[string]any{"concerts": list})
}

func (f *fakeService) listDates(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	dates, ok := f.dates[r.PathValue("c")]
	if !ok {
		problem(w, 404, "CONCERT_NOT_FOUND")
		return
	}
	reply(w, 200, map[string]any{"dates": dates})
}

func (f *fakeService) seatMap(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.date(r.PathValue("c"), r.PathValue("d"))
	if !ok {
		problem(w, 404, "DATE_NOT_FOUND")
		return
	}
	seats := make([]map[string]any, d.SeatCount)
	for i := range seats {
		status := "AVAILABLE"
		if _, held := f.seats[seatKey(r.PathValue("c"), d.DateID, i+1)]; held {
			status = "HELD"
		}
		seats[i] = map[string]any{"seatNo": i + 1, "price": d.Price, "status": status}
	}
	reply(w, 200, map[string]any{"seats": seats})
}

func (f *fakeService) date(concert, date string) (fakeDate, bool) {
	for _, d := range f.dates[concert] {
		if d.DateID == date {
			return d, true
		}
	}
	return fakeDate{}, false
}

func seatKey(concert, date string, seat int) string {
	return fmt.Sprintf("%s/%s/%d", concert, date, seat)
}

func (f *fakeService) issueToken(w http.ResponseWriter, r *http.Request) {
	var in struct {
		UserID string `json:"userId"`
	}
	if !decode(w, r, &in) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	tok := "tok-" + in.UserID
	f.tokens[tok] = in.UserID
	status := "ACTIVE"
	if f.waiting {
		status = "WAITING"
	}
	reply(w, 201, map[string]any{"token": tok, "userId": in.UserID, "position": len(f.tokens), "status": status})
}

func (f *fakeService) charge(w http.ResponseWriter, r *http.Request) {
	var in struct {
		Amount int64 `json:"amount"`
	}
	if !decode(w, r, &in) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	u := r.PathValue("u")
	f.balances[u] += in.Amount
	reply(w, 200, map[string]any{"userId": u, "balance": f.balances[u]})
}

// authorise checks the queue token the way the contract orders it.
func (f *fakeService) authorise(w http.ResponseWriter, r *http.Request, user string) bool {
	owner, ok := f.tokens[r.Header.Get("Queue-Token")]
	switch {
	case !ok:
		problem(w, 401, "TOKEN_INVALID")
	case f.waiting:
		problem(w, 403, "TOKEN_NOT_ACTIVE")
	case owner != user:
		problem(w, 403, "FORBIDDEN")
	default:
		return true
	}
	return false
}

func (f *fakeService) hold(w http.ResponseWriter, r *http.Request) {
	var in struct {
		UserID    string `json:"userId"`
		ConcertID string `json:"concertId"`
		DateID    string `json:"dateId"`
		SeatNo    int    `json:"seatNo"`
		SeatNos   []int  `json:"seatNos"`
	}
	if !decode(w, r, &in) {
		return
	}
	seats := in.SeatNos
	if in.SeatNo != 0 {
		seats = []int{in.SeatNo}
	}
	if (in.SeatNo != 0) == (in.SeatNos != nil) || len(seats) < 1 || len(seats) > 8 {
		problem(w, 400, "INVALID_REQUEST")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.asked = append(f.asked, fakeHold{concert: in.ConcertID, date: in.DateID, seats: seats, list: in.SeatNos != nil})
	if f.rateLimitHolds {
		w.Header().Set("Retry-After", "1")
		problem(w, 429, "RATE_LIMITED")
		return
	}
	if !f.authorise(w, r, in.UserID) {
		return
	}
	d, ok := f.date(in.ConcertID, in.DateID)
	if !ok {
		problem(w, 404, "DATE_NOT_FOUND")
		return
	}
	var taken []int
	for i, n := range seats {
		if n < 1 || n > d.SeatCount {
			problem(w, 404, "SEAT_NOT_FOUND")
			return
		}
		if slices.Contains(seats[:i], n) {
			problem(w, 400, "INVALID_REQUEST")
			return
		}
		if _, held := f.seats[seatKey(in.ConcertID, in.DateID, n)]; held && !f.acceptEveryHold {
			taken = append(taken, n)
		}
	}
	if len(taken) > 0 {
		w.Header().Set("Content-Type", "application/problem+json")
		w.WriteHeader(409)
		_ = json.NewEncoder(w).Encode(map[string]any{"type": "about:blank", "title": "Conflict", "status": 409, "code": "SEAT_UNAVAILABLE", "unavailableSeats": taken})
		return
	}
	if f.seatsPerUser > 0 && f.owned(in.UserID, in.ConcertID, in.DateID)+len(seats) > f.seatsPerUser {
		problem(w, 409, "SEAT_LIMIT_REACHED")
		return
	}
	if f.holdFirstSeatOnly {
		seats = seats[:1]
	}
	id := fmt.Sprintf("r%d", len(f.reservations)+1)
	for _, n := range seats {
		f.seats[seatKey(in.ConcertID, in.DateID, n)] = id
	}
	nos := slices.Sorted(slices.Values(seats))
	price := d.Price * int64(len(nos))
	f.reservations[id] = fakeReservation{user: in.UserID, price: price, concert: in.ConcertID, date: in.DateID, seats: len(nos)}
	reply(w, 201, map[string]any{"reservationId": id, "userId": in.UserID, "concertId": in.ConcertID, "dateId": in.DateID,
		"seatNo": nos[0], "seatNos": nos, "price": price, "status": "HELD", "heldUntil": time.Now().Add(5 * time.Minute).Format(time.RFC3339)})
}

// owned counts the seats the user's reservations hold on a date.
func (f *fakeService) owned(user, concert, date string) int {
	n := 0
	for _, res := range f.reservations {
		if res.user == user && res.concert == concert && res.date == date {
			n += res.seats
		}
	}
	return n
}

// holdsAsked returns the seats of every hold request so far.
func (f *fakeService) holdsAsked() []fakeHold {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.asked)
}

func (f *fakeService) pay(w http.ResponseWriter, r *http.Request) {
	var in struct {
		ReservationID string `json:"reservationId"`
		UserID        string `json:"userId"`
	}
	if !decode(w, r, &in) {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.authorise(w, r, in.UserID) {
		return
	}
	if f.failPayments {
		problem(w, 500, "INTERNAL")
		return
	}
	res, ok := f.reservations[in.ReservationID]
	switch {
	case !ok:
		problem(w, 404, "RESERVATION_NOT_FOUND")
	case res.user != in.UserID:
		problem(w, 403, "FORBIDDEN")
	case res.paid:
		problem(w, 409, "RESERVATION_NOT_PAYABLE")
	case f.balances[in.UserID] < res.price:
		problem(w, 409, "INSUFFICIENT_POINTS")
	default:
		f.balances[in.UserID] -= res.price
		res.paid = true
		f.reservations[in.ReservationID] = res
		f.paid++
		reply(w, 201, map[string]any{"paymentId": "p-" + in.ReservationID, "reservationId": in.ReservationID,
			"userId": in.UserID, "amount": res.price, "status": "COMPLETED"})
	}
}

// fakeClock is a virtual clock: sleeping moves it forward at once, so a schedule runs as fast
// as the calls allow and the tests do not depend on the machine's speed.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
	// onSleep, when set, sees every sleep target before the clock moves.
	onSleep func(t time.Time)
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) SleepUntil(ctx context.Context, t time.Time) error {
	if c.onSleep != nil {
		c.onSleep(t)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if t.After(c.now) {
		c.now = t
	}
	return nil
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
