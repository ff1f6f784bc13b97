package api_test

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/api"
	"github.com/booking-engine/booking/api/apitest"
	"github.com/booking-engine/booking/app"
	"github.com/booking-engine/booking/projections"

	"github.com/booking-engine/booking/internal/testclock"
)

// t0 is the fake clock's start: 2026-03-15 10:00 UTC.
var t0 = time.Date(2026, 3, 15, 10, 0, 0, 0, time.UTC)

// Queue tokens of the fake: "active:<user>", "waiting:<user>", "expired:<user>"; anything
// else is forged.
func activeToken(user string) string { return "active:" + user }

// fakeCommands is an in-memory Commands that records every state-changing call. Its
// behaviour is just enough to check what the API does with answers and errors: fail makes a
// method return an error; gate makes Hold wait.
type fakeCommands struct {
	mu       sync.Mutex
	calls    []string         // state-changing calls, in order
	failures map[string]error // method → error to return
	revoked  map[string]bool  // users whose token was revoked by a payment
	issued   map[string]bool  // users who hold a token
	balances map[string]int64 // user → points
	concerts map[string]bool  // created concert IDs
	holds    map[string]app.HoldRequest
	metas    []app.Meta
	seq      int
	clock    *testclock.Clock
	// holdGate, when set, makes Hold wait for it to close (concurrency tests).
	holdGate chan struct{}
	inHold   int
}

func newFakeCommands(clock *testclock.Clock) *fakeCommands {
	return &fakeCommands{
		failures: map[string]error{}, revoked: map[string]bool{}, issued: map[string]bool{},
		balances: map[string]int64{}, concerts: map[string]bool{}, holds: map[string]app.HoldRequest{},
		clock: clock,
	}
}

func (f *fakeCommands) fail(method string, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failures[method] = err
}

func (f *fakeCommands) record(method string, meta app.Meta, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprint(append([]any{method}, args...)...))
	f.metas = append(f.metas, meta)
	return f.failures[method]
}

// Calls returns the state-changing calls so far.
func (f *fakeCommands) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeCommands) count(method string) int {
	n := 0
	for _, c := range f.Calls() {
		if c == method || strings.HasPrefix(c, method+" ") {
			n++
		}
	}
	return n
}

func (f *fakeCommands) nextID(prefix string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.seq++
	return fmt.Sprintf("%s%d", prefix, f.seq)
}

func (f *fakeCommands) CreateConcert(_ context.Context, meta app.Meta, c app.NewConcert) (aggregates.ConcertCreated, error) {
	if err := f.record("CreateConcert", meta, " ", c.ConcertID); err != nil {
		return aggregates.ConcertCreated{}, err
	}
	if c.ConcertID == "" {
		c.ConcertID = f.nextID("c")
	}
	f.mu.Lock()
	exists := f.concerts[c.ConcertID]
	f.concerts[c.ConcertID] = true
	f.mu.Unlock()
	if exists {
		return aggregates.ConcertCreated{}, fmt.Errorf("create concert %s: %w", c.ConcertID, aggregates.ErrConcertExists)
	}
	ev := aggregates.ConcertCreated{ConcertID: c.ConcertID, Title: c.Title, SalesOpenedAt: f.clock.Now()}
	for _, d := range c.Dates {
		if d.DateID == "" {
			d.DateID = f.nextID("d")
		}
		spec := aggregates.DateSpec{DateID: d.DateID, StartsAt: d.StartsAt, SeatCount: d.SeatCount, Price: d.Price}
		for _, sp := range d.SeatPrices {
			spec.SeatPrices = append(spec.SeatPrices, aggregates.PriceRange{From: sp.From, To: sp.To, Price: sp.Price})
		}
		ev.Dates = append(ev.Dates, spec)
	}
	return ev, nil
}

func (f *fakeCommands) IssueToken(_ context.Context, meta app.Meta, userID string) (app.Token, bool, error) {
	if err := f.record("IssueToken", meta, " ", userID); err != nil {
		return app.Token{}, false, err
	}
	f.mu.Lock()
	created := !f.issued[userID]
	f.issued[userID] = true
	f.mu.Unlock()
	now := f.clock.Now()
	exp := now.Add(10 * time.Minute)
	return app.Token{Token: activeToken(userID), UserID: userID, Position: 1, Status: "ACTIVE", ActiveAt: &now, ExpiresAt: &exp}, created, nil
}

func (f *fakeCommands) tokenUser(token string) (string, error) {
	kind, user, ok := strings.Cut(token, ":")
	if !ok || !aggregates.ValidID(user) {
		return "", fmt.Errorf("parse token: %w", app.ErrTokenInvalid)
	}
	f.mu.Lock()
	revoked := f.revoked[user]
	f.mu.Unlock()
	switch {
	case kind == "active" && revoked, kind == "expired":
		return user, app.ErrTokenExpired
	case kind == "active":
		return user, nil
	case kind == "waiting":
		return user, app.ErrTokenNotActive
	}
	return "", app.ErrTokenInvalid
}

func (f *fakeCommands) TokenStatus(_ context.Context, token string) (app.Token, error) {
	user, err := f.tokenUser(token)
	status := "ACTIVE"
	switch {
	case err == app.ErrTokenExpired:
		status = "EXPIRED"
	case err == app.ErrTokenNotActive:
		status = "WAITING"
	case err != nil:
		return app.Token{}, err
	}
	return app.Token{Token: token, UserID: user, Position: 7, Status: status, Ahead: 0}, nil
}

func (f *fakeCommands) CheckToken(_ context.Context, token string) (string, error) {
	f.mu.Lock()
	err := f.failures["CheckToken"]
	f.mu.Unlock()
	if err != nil {
		return "", err
	}
	user, err := f.tokenUser(token)
	if err != nil {
		return "", err
	}
	return user, nil
}

func (f *fakeCommands) Charge(_ context.Context, meta app.Meta, userID string, amount int64) (app.Wallet, error) {
	if err := f.record("Charge", meta, " ", userID, " ", amount); err != nil {
		return app.Wallet{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.balances[userID] += amount
	return app.Wallet{UserID: userID, Balance: f.balances[userID]}, nil
}

func (f *fakeCommands) Hold(_ context.Context, meta app.Meta, req app.HoldRequest) (app.Reservation, error) {
	if meta.ReplayOnly {
		// The fake keeps no request keys: a replay-only call finds nothing done.
		return app.Reservation{}, app.ErrTokenExpired
	}
	var seats any = req.SeatNo
	if len(req.SeatNos) > 0 {
		seats = req.SeatNos
	}
	if err := f.record("Hold", meta, " ", req.UserID, " ", seats); err != nil {
		return app.Reservation{}, err
	}
	f.mu.Lock()
	gate := f.holdGate
	f.inHold++
	f.mu.Unlock()
	if gate != nil {
		<-gate
	}
	id := f.nextID("r")
	f.mu.Lock()
	f.holds[id] = req
	f.inHold--
	f.mu.Unlock()
	now := f.clock.Now()
	return app.Reservation{ReservationID: id, UserID: req.UserID, ConcertID: req.ConcertID, DateID: req.DateID,
		SeatNo: req.SeatNo, Price: 1000, Status: aggregates.ReservationStatusHeld, HeldAt: now, HeldUntil: now.Add(5 * time.Minute)}, nil
}

func (f *fakeCommands) holdsInProgress() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.inHold
}

func (f *fakeCommands) Cancel(_ context.Context, meta app.Meta, reservationID, userID string) (app.Reservation, error) {
	if meta.ReplayOnly {
		// The fake keeps no request keys: a replay-only call finds nothing done.
		return app.Reservation{}, app.ErrTokenExpired
	}
	if err := f.record("Cancel", meta, " ", reservationID, " ", userID); err != nil {
		return app.Reservation{}, err
	}
	f.mu.Lock()
	req, ok := f.holds[reservationID]
	f.mu.Unlock()
	if !ok {
		return app.Reservation{}, aggregates.ErrReservationNotFound
	}
	if req.UserID != userID {
		return app.Reservation{}, fmt.Errorf("cancel %s: %w", reservationID, aggregates.ErrForbidden)
	}
	return app.Reservation{ReservationID: reservationID, UserID: userID, ConcertID: req.ConcertID, DateID: req.DateID,
		SeatNo: req.SeatNo, Price: 1000, Status: aggregates.ReservationStatusCancelled}, nil
}

func (f *fakeCommands) Pay(_ context.Context, meta app.Meta, reservationID, userID string) (app.Payment, error) {
	if meta.ReplayOnly {
		// The fake keeps no request keys: a replay-only call finds nothing done.
		return app.Payment{}, app.ErrTokenExpired
	}
	if err := f.record("Pay", meta, " ", reservationID, " ", userID); err != nil {
		return app.Payment{}, err
	}
	f.mu.Lock()
	f.revoked[userID] = true // a payment revokes the payer's token
	f.mu.Unlock()
	now := f.clock.Now()
	return app.Payment{PaymentID: f.nextID("p"), ReservationID: reservationID, UserID: userID, Amount: 1000,
		Status: aggregates.PaymentStatusCompleted, CompletedAt: &now}, nil
}

func (f *fakeCommands) Refund(_ context.Context, meta app.Meta, paymentID string) (app.Payment, error) {
	if err := f.record("Refund", meta, " ", paymentID); err != nil {
		return app.Payment{}, err
	}
	now := f.clock.Now()
	return app.Payment{PaymentID: paymentID, ReservationID: "r1", UserID: "u1", Amount: 1000,
		Status: aggregates.PaymentStatusRefunded, CompletedAt: &now, RefundedAt: &now}, nil
}

// fakeQueries answers from fixed data: concert c1 with date d1 of 3 seats, reservation r1 and
// payment p1 of user u1, a wallet and a ranking.
type fakeQueries struct {
	mu   sync.Mutex
	err  error // when set, every query fails with it
	days []time.Time
}

func (q *fakeQueries) fail() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.err
}

func (q *fakeQueries) Concerts(context.Context) ([]projections.ConcertSummary, error) {
	if err := q.fail(); err != nil {
		return nil, err
	}
	return []projections.ConcertSummary{{ConcertID: "c1", Title: "Aurora Live", DateCount: 1}}, nil
}

func (q *fakeQueries) Concert(_ context.Context, id string) (aggregates.ConcertCreated, error) {
	if id != "c1" {
		return aggregates.ConcertCreated{}, aggregates.ErrConcertNotFound
	}
	return aggregates.ConcertCreated{ConcertID: "c1", Title: "Aurora Live"}, nil
}

func (q *fakeQueries) Dates(_ context.Context, id string) ([]projections.DateView, error) {
	if err := q.fail(); err != nil {
		return nil, err
	}
	if id != "c1" {
		return nil, fmt.Errorf("dates of %s: %w", id, projections.ErrNotFound) // bare: the API must refine it
	}
	return []projections.DateView{{DateID: "d1", StartsAt: t0.Add(240 * time.Hour), TotalSeats: 3, AvailableSeats: 2}}, nil
}

func (q *fakeQueries) Seats(_ context.Context, concertID, dateID string) ([]projections.SeatView, error) {
	if err := q.fail(); err != nil {
		return nil, err
	}
	if concertID != "c1" {
		return nil, aggregates.ErrConcertNotFound
	}
	if dateID != "d1" {
		return nil, aggregates.ErrDateNotFound
	}
	return []projections.SeatView{
		{SeatNo: 1, Price: 1000, Status: aggregates.SeatStatusAvailable},
		{SeatNo: 2, Price: 1000, Status: aggregates.SeatStatusHeld},
		{SeatNo: 3, Price: 1500, Status: aggregates.SeatStatusSold},
	}, nil
}

func (q *fakeQueries) Reservation(_ context.Context, id string) (projections.ReservationView, error) {
	if err := q.fail(); err != nil {
		return projections.ReservationView{}, err
	}
	if id != "r1" {
		return projections.ReservationView{}, fmt.Errorf("reservation %s: %w", id, aggregates.ErrReservationNotFound)
	}
	return projections.ReservationView{ReservationID: "r1", UserID: "u1", ConcertID: "c1", DateID: "d1", SeatNo: 1, Price: 1000,
		Status: aggregates.ReservationStatusConfirmed, HeldAt: t0, HeldUntil: t0.Add(5 * time.Minute), PaymentID: "p1"}, nil
}

func (q *fakeQueries) UserReservations(_ context.Context, user string) ([]projections.ReservationView, error) {
	if err := q.fail(); err != nil {
		return nil, err
	}
	if user != "u1" {
		return nil, nil
	}
	r, _ := q.Reservation(context.Background(), "r1")
	return []projections.ReservationView{r}, nil
}

func (q *fakeQueries) Payment(_ context.Context, id string) (projections.PaymentView, error) {
	if err := q.fail(); err != nil {
		return projections.PaymentView{}, err
	}
	if id != "p1" {
		return projections.PaymentView{}, projections.ErrNotFound // bare: the API must refine it
	}
	done := t0.Add(time.Minute)
	return projections.PaymentView{PaymentID: "p1", ReservationID: "r1", UserID: "u1", Amount: 1000, Status: aggregates.PaymentStatusCompleted, CompletedAt: &done}, nil
}

func (q *fakeQueries) Wallet(_ context.Context, user string) (projections.WalletView, error) {
	if err := q.fail(); err != nil {
		return projections.WalletView{}, err
	}
	if user != "u1" {
		return projections.WalletView{}, projections.ErrNotFound
	}
	return projections.WalletView{UserID: "u1", Balance: 4000}, nil
}

func (q *fakeQueries) History(_ context.Context, user string) ([]projections.LedgerEntry, error) {
	if err := q.fail(); err != nil {
		return nil, err
	}
	if user != "u1" {
		return nil, nil
	}
	return []projections.LedgerEntry{
		{Type: "CHARGE", Amount: 5000, BalanceAfter: 5000, At: t0, Reference: "charge-1"},
		{Type: "PAYMENT", Amount: 1000, BalanceAfter: 4000, At: t0.Add(time.Minute), Reference: "p1"},
	}, nil
}

func (q *fakeQueries) DailyRanking(_ context.Context, day time.Time) ([]projections.RankingEntry, error) {
	if err := q.fail(); err != nil {
		return nil, err
	}
	q.mu.Lock()
	q.days = append(q.days, day)
	q.mu.Unlock()
	return []projections.RankingEntry{{Rank: 1, ConcertID: "c1", DateID: "d1", Title: "Aurora Live", SoldOutAt: day.Add(time.Hour), SecondsToSellOut: 42}}, nil
}

func (q *fakeQueries) lastDay() time.Time {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.days) == 0 {
		return time.Time{}
	}
	return q.days[len(q.days)-1]
}

// fakeProjections knows the projections "seats" and "wallets".
type fakeProjections struct {
	mu       sync.Mutex
	rebuilds []string
}

func (p *fakeProjections) Status(context.Context) ([]projections.Status, error) {
	return []projections.Status{{Name: "seats", Checkpoint: 10, Head: 12, Lag: 2}, {Name: "wallets", Checkpoint: 5, Head: 5}}, nil
}

func (p *fakeProjections) Rebuild(_ context.Context, name string) error {
	if name != "seats" && name != "wallets" {
		return fmt.Errorf("rebuild %s: %w", name, projections.ErrNotFound)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rebuilds = append(p.rebuilds, name)
	return nil
}

// fakeDeadLetters holds one dead letter, "dl-1".
type fakeDeadLetters struct {
	mu       sync.Mutex
	redriven []string
}

func (d *fakeDeadLetters) List(context.Context) ([]api.DeadLetter, error) {
	return []api.DeadLetter{{ID: "dl-1", EventID: "e1", EventType: "ReservationHeld", Attempts: 8, LastError: "503 Service Unavailable", FailedAt: t0}}, nil
}

func (d *fakeDeadLetters) Redrive(_ context.Context, id string) error {
	if id != "dl-1" {
		return api.ErrNotFound
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	d.redriven = append(d.redriven, id)
	return nil
}

// fakeAuth accepts "Bearer jwt-<user>".
type fakeAuth struct{}

func (fakeAuth) Authenticate(header string) (string, error) {
	user, ok := strings.CutPrefix(header, "Bearer jwt-")
	if !ok || user == "" {
		return "", fmt.Errorf("verify: %w", api.ErrUnauthenticated)
	}
	return user, nil
}

// env is one API under test with its fakes.
type env struct {
	*apitest.Client
	cmds  *fakeCommands
	qs    *fakeQueries
	projs *fakeProjections
	dls   *fakeDeadLetters
	clock *testclock.Clock
	deps  api.Deps
	cfg   api.Config
}

const adminToken = "s3cret-admin"

// newEnv builds the API on fakes; opts adjust deps and config before it is built.
func newEnv(t testing.TB, opts ...func(*api.Deps, *api.Config)) *env {
	t.Helper()
	clock := testclock.New(t0)
	e := &env{cmds: newFakeCommands(clock), qs: &fakeQueries{}, projs: &fakeProjections{}, dls: &fakeDeadLetters{}, clock: clock}
	e.deps = api.Deps{Commands: e.cmds, Queries: e.qs, Projections: e.projs, DeadLetters: e.dls, Clock: clock,
		Idempotency: apitest.OpenIdempotency(t, filepath.Join(t.TempDir(), "idempotency.db"), clock)}
	e.cfg = api.Config{AdminToken: adminToken, RequestTimeout: 5 * time.Second}
	for _, o := range opts {
		o(&e.deps, &e.cfg)
	}
	e.Client = apitest.New(t, e.deps, e.cfg)
	return e
}

func withJWT(d *api.Deps, _ *api.Config) { d.UserAuth = fakeAuth{} }

func withRateLimit(perSecond float64) func(*api.Deps, *api.Config) {
	return func(_ *api.Deps, c *api.Config) { c.UserRateLimit = perSecond }
}

func adminHeader() map[string]string {
	return map[string]string{"Authorization": "Bearer " + adminToken}
}
