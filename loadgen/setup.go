package loadgen

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// The scenario names, as used by `booking bench` and in the JSON results.
const (
	ScenarioRace      = "race"
	ScenarioFlashSale = "flash-sale"
	ScenarioBooking   = "booking"
	ScenarioRead      = "read"
	ScenarioRebuild   = "rebuild"
)

// Errors that explain why a scenario could not start.
var (
	// ErrAdminTokenRequired: the scenario creates its own concert, which needs the admin API.
	ErrAdminTokenRequired = errors.New("admin token required (--admin-token) to create the benchmark's concert")
	// ErrTokensNotActive: the target's waiting queue did not admit the benchmark's users.
	ErrTokensNotActive = errors.New("queue tokens not active: run the target with --queue-batch 0")
	// ErrRateLimited: the target's per-user rate limit refused the benchmark's set-up calls.
	ErrRateLimited = errors.New("rate limited (429): run the target with --user-rate-limit 0")
	// ErrNotReady: the target does not answer /readyz with 200.
	ErrNotReady = errors.New("target not ready")
	// ErrBadConfig: a scenario parameter is out of range.
	ErrBadConfig = errors.New("bad benchmark configuration")
)

// Config is what every HTTP scenario shares.
type Config struct {
	// Target is the service's base URL, e.g. http://127.0.0.1:8080, or the comma-separated
	// base URLs of several instances of one service, to spread the load over them. The set-up
	// (concerts) goes to the first; every user's requests go to one instance, users round
	// robin (see session.on).
	Target string
	// AdminToken authorises the admin calls that create the benchmark's concerts.
	AdminToken string
	// Rate is the arrival rate per second of the open-model scenarios.
	Rate float64
	// Duration is how long flash-sale and read offer load.
	Duration time.Duration
	// MaxInflight caps requests in flight (and connections); default 1024.
	MaxInflight int
	// Timeout bounds every request; default 10s.
	Timeout time.Duration
	// Warmup, when positive, offers GET /healthz at Rate for this long before the measured
	// phase, unmeasured, so the generator's connections are open when it starts: opening
	// hundreds of connections at once otherwise shows up as a burst of latency at the start
	// that says more about the generator than the service (wrk2 calibrates for 10 s alike).
	Warmup time.Duration
	// Clock is the time source; nil means the wall clock.
	Clock Clock
	// RunID makes this run's concert and user IDs unique; random when empty.
	RunID string
	// Log receives progress messages; nil discards them.
	Log *slog.Logger
	// Client is the HTTP client library; "" is ClientFastHTTP.
	Client ClientKind
	// IdempotencyKeys puts a unique Idempotency-Key on every POST.
	IdempotencyKeys bool
}

// maxSeatsPerDate is the contract's limit on seatCount.
const maxSeatsPerDate = 10_000

// session is one scenario run's clients and settings.
type session struct {
	cfg Config
	// c is the client of the first target, which the set-up calls use.
	c *Client
	// cs has one client per target, cs[0] == c.
	cs []*Client
	// targets are the base URLs of cs.
	targets []string
	clk     Clock
	log     *slog.Logger
}

// splitTargets reads Config.Target: one base URL or several, comma-separated.
func splitTargets(target string) []string {
	var out []string
	for _, t := range strings.Split(target, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// on returns the client of user (or request) n's instance.
//
// The load is spread per user rather than per request: a user's token, hold and payment go
// to the same instance, as behind a load balancer with session affinity. Queue tokens are
// signed with the shared --token-secret, so any instance would accept them, and commands load
// their aggregates from the shared log, so per-request spreading would work too; but the
// read-your-writes promise holds per instance only (docs/ARCHITECTURE.md), and a client that
// hops instances between its writes and reads is not what a deployment should be measured
// with. Users are many and numbered, so round robin over them spreads requests evenly.
func (s *session) on(n int) *Client { return s.cs[n%len(s.cs)] }

func newSession(ctx context.Context, cfg Config) (*session, error) {
	if cfg.MaxInflight == 0 {
		cfg.MaxInflight = 1024
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.MaxInflight < 0 {
		return nil, fmt.Errorf("%w: max in flight %d", ErrBadConfig, cfg.MaxInflight)
	}
	if cfg.RunID == "" {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("run id: %w", err)
		}
		cfg.RunID = hex.EncodeToString(b[:])
	}
	s := &session{cfg: cfg, targets: splitTargets(cfg.Target), clk: cfg.Clock, log: cfg.Log}
	if len(s.targets) == 0 {
		return nil, fmt.Errorf("%w: no target", ErrBadConfig)
	}
	if s.clk == nil {
		s.clk = RealClock{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	for _, t := range s.targets {
		// Each instance gets the whole cap: the cap guards the generator, and one slow
		// instance must not starve the others of connections.
		c, err := NewClient(t, ClientOptions{MaxConns: cfg.MaxInflight, Timeout: cfg.Timeout,
			AdminToken: cfg.AdminToken, Kind: cfg.Client, IdempotencyKeys: cfg.IdempotencyKeys})
		if err != nil {
			return nil, err
		}
		r, err := c.Do(ctx, "GET", "/readyz", nil, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrNotReady, t, err)
		}
		if !r.OK() {
			return nil, fmt.Errorf("%w: %s/readyz answered %d", ErrNotReady, t, r.Status)
		}
		s.cs = append(s.cs, c)
	}
	s.c = s.cs[0]
	return s, nil
}

// newTimedSession is newSession for a scenario that offers load at Rate for Duration.
func newTimedSession(ctx context.Context, cfg Config) (*session, error) {
	s, err := newSession(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := s.requireRate(); err != nil {
		return nil, err
	}
	if err := s.requireDuration(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *session) requireRate() error {
	if s.cfg.Rate <= 0 {
		return fmt.Errorf("%w: rate %g must be positive", ErrBadConfig, s.cfg.Rate)
	}
	return nil
}

func (s *session) requireDuration() error {
	if s.cfg.Duration <= 0 {
		return fmt.Errorf("%w: duration %s must be positive", ErrBadConfig, s.cfg.Duration)
	}
	return nil
}

// id makes a run-unique identifier that satisfies the contract's [A-Za-z0-9_-]{1,64}.
func (s *session) id(kind string, n int) string {
	return fmt.Sprintf("bench-%s-%s-%d", s.cfg.RunID, kind, n)
}

type dateSpec struct {
	DateID    string `json:"dateId"`
	StartsAt  string `json:"startsAt"`
	SeatCount int    `json:"seatCount"`
	Price     int64  `json:"price"`
}

// createConcert creates a concert through the admin API and returns its date IDs in order.
func (s *session) createConcert(ctx context.Context, concertID string, dates []dateSpec) ([]string, error) {
	if s.cfg.AdminToken == "" {
		return nil, ErrAdminTokenRequired
	}
	body, err := json.Marshal(struct {
		ConcertID string     `json:"concertId"`
		Title     string     `json:"title"`
		Dates     []dateSpec `json:"dates"`
	}{concertID, "Benchmark " + concertID, dates})
	if err != nil {
		return nil, fmt.Errorf("encode concert: %w", err)
	}
	var out struct {
		Dates []struct {
			DateID string `json:"dateId"`
		} `json:"dates"`
	}
	r, err := s.c.Do(ctx, "POST", "/api/v1/admin/concerts", s.c.adminHeaders(), body, &out)
	if err != nil {
		return nil, fmt.Errorf("create concert %s: %w", concertID, err)
	}
	if !r.OK() {
		return nil, statusError("create concert "+concertID, r)
	}
	if len(out.Dates) != len(dates) {
		return nil, fmt.Errorf("create concert %s: got %d dates back, want %d", concertID, len(out.Dates), len(dates))
	}
	ids := make([]string, len(out.Dates))
	for i, d := range out.Dates {
		ids[i] = d.DateID
	}
	s.log.Info("created benchmark concert", "concertId", concertID, "dates", len(ids))
	return ids, nil
}

// seatDates splits seats over as few dates as the contract's per-date limit allows.
func seatDates(seats int, price int64) []dateSpec {
	n := (seats + maxSeatsPerDate - 1) / maxSeatsPerDate
	specs := make([]dateSpec, n)
	starts := time.Date(2030, 1, 1, 19, 0, 0, 0, time.UTC)
	for i := range specs {
		count := maxSeatsPerDate
		if i == n-1 {
			count = seats - (n-1)*maxSeatsPerDate
		}
		specs[i] = dateSpec{
			DateID:    fmt.Sprintf("d%d", i+1),
			StartsAt:  starts.AddDate(0, 0, i).Format(time.RFC3339),
			SeatCount: count,
			Price:     price,
		}
	}
	return specs
}

// tokenAnswer is the part of a queue token the scenarios need.
type tokenAnswer struct {
	Token  string `json:"token"`
	Status string `json:"status"`
}

// issueToken asks the queue of c's instance for userID's token.
func (s *session) issueToken(ctx context.Context, c *Client, userID string) (tokenAnswer, Response, error) {
	body, err := json.Marshal(struct {
		UserID string `json:"userId"`
	}{userID})
	if err != nil {
		return tokenAnswer{}, Response{}, fmt.Errorf("encode token request: %w", err)
	}
	var t tokenAnswer
	r, err := c.Do(ctx, "POST", "/api/v1/queue/tokens", nil, body, &t)
	return t, r, err
}

// prepareTokens issues a queue token for every user (user i on instance on(i)) before the
// measured part begins, at most
// MaxInflight at a time. Every token must come back ACTIVE: a WAITING one would turn the
// measurement into a measurement of the queue.
func (s *session) prepareTokens(ctx context.Context, users []string) ([]string, error) {
	tokens := make([]string, len(users))
	slots := make(chan struct{}, s.cfg.MaxInflight)
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		firstErr error
		waiting  int
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
		}
	}
	for i, u := range users {
		slots <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			t, r, err := s.issueToken(ctx, s.on(i), u)
			switch {
			case err != nil:
				fail(fmt.Errorf("queue token for %s: %w", u, err))
			case r.Status == 429:
				fail(ErrRateLimited)
			case !r.OK():
				fail(statusError("queue token for "+u, r))
			case t.Status != "ACTIVE":
				mu.Lock()
				waiting++
				mu.Unlock()
			default:
				tokens[i] = t.Token
			}
		}()
	}
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}
	if waiting > 0 {
		return nil, fmt.Errorf("%w (%d of %d tokens came back WAITING)", ErrTokensNotActive, waiting, len(users))
	}
	s.log.Info("queue tokens ready", "users", len(users))
	return tokens, nil
}

// HoldRequest is the body of POST /reservations: one seat (SeatNo) or several (SeatNos).
// Exported so that cmd/ceiling sends exactly what the scenarios send.
type HoldRequest struct {
	UserID    string `json:"userId"`
	ConcertID string `json:"concertId"`
	DateID    string `json:"dateId"`
	SeatNo    int    `json:"seatNo,omitempty"`
	SeatNos   []int  `json:"seatNos,omitempty"`
}

// hold tries to hold the seats of h through c; out, when non-nil, receives the reservation.
func (s *session) hold(ctx context.Context, c *Client, token string, h HoldRequest, out any) (Response, error) {
	body, err := json.Marshal(h)
	if err != nil {
		return Response{}, fmt.Errorf("encode hold: %w", err)
	}
	return c.Do(ctx, "POST", "/api/v1/reservations", tokenHeaders(token), body, out)
}

// elapsed is the time from a scheduled start to now on the session's clock.
func (s *session) elapsed(since time.Time) time.Duration { return s.clk.Now().Sub(since) }

// warmUp offers GET /healthz at Config.Rate for Config.Warmup, unmeasured (see
// Config.Warmup), and returns how long it offered it for, for Result.WarmupSec. The race
// scenario does without: its burst is measured cold.
func (s *session) warmUp(ctx context.Context) (seconds float64, err error) {
	if s.cfg.Warmup <= 0 {
		return 0, nil
	}
	sched := Schedule{Rate: s.cfg.Rate, Count: CountFor(s.cfg.Rate, s.cfg.Warmup), MaxInflight: s.cfg.MaxInflight}
	if _, err := RunOpen(ctx, s.clk, sched, func(ctx context.Context, i int, _ time.Time) {
		_, _ = s.on(i).Do(ctx, "GET", "/healthz", nil, nil, nil)
	}); err != nil {
		return 0, fmt.Errorf("warm-up: %w", err)
	}
	return s.cfg.Warmup.Seconds(), nil
}
