package loadgen

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// RaceOptions configures the race scenario.
type RaceOptions struct {
	// Users is how many users try to hold the one seat at once.
	Users int
	// ConcertID, DateID and SeatNo name an existing AVAILABLE seat to race for; when ConcertID
	// is empty a one-seat concert is created through the admin API.
	ConcertID string
	DateID    string
	SeatNo    int
}

// Race lets Users users hold one seat at the same instant. Queue tokens are fetched first and
// not timed; then every user is released together, at most MaxInflight requests at a time.
// The contract's promise is checked from the outside: exactly one user wins, the rest get 409.
func Race(ctx context.Context, cfg Config, opts RaceOptions) (Result, error) {
	res := Result{Scenario: ScenarioRace, Target: cfg.Target, Users: opts.Users, Seats: 1}
	if opts.Users < 1 {
		return res, fmt.Errorf("%w: users %d must be at least 1", ErrBadConfig, opts.Users)
	}
	if opts.ConcertID != "" && (opts.DateID == "" || opts.SeatNo < 1) {
		return res, fmt.Errorf("%w: a given concert needs its date and seat number", ErrBadConfig)
	}
	s, err := newSession(ctx, cfg)
	if err != nil {
		return res, err
	}
	concert, date, seat := opts.ConcertID, opts.DateID, opts.SeatNo
	if concert == "" {
		concert = s.id("race", 0)
		dates, err := s.createConcert(ctx, concert, seatDates(1, 100))
		if err != nil {
			return res, err
		}
		date, seat = dates[0], 1
	}
	users := make([]string, opts.Users)
	for i := range users {
		users[i] = s.id("race-u", i)
	}
	tokens, err := s.prepareTokens(ctx, users)
	if err != nil {
		return res, err
	}

	rec := NewRecorder("hold")
	slots := make(chan struct{}, s.cfg.MaxInflight)
	var (
		capHits int64
		capMu   sync.Mutex
		ready   sync.WaitGroup
		done    sync.WaitGroup
	)
	start := make(chan struct{})
	var t0 time.Time
	for i := range users {
		ready.Add(1)
		done.Add(1)
		go func() {
			defer done.Done()
			ready.Done()
			<-start
			select {
			case slots <- struct{}{}:
			default:
				capMu.Lock()
				capHits++
				capMu.Unlock()
				slots <- struct{}{}
			}
			defer func() { <-slots }()
			h := HoldRequest{UserID: users[i], ConcertID: concert, DateID: date, SeatNo: seat}
			r, err := s.hold(ctx, s.on(i), tokens[i], h, nil)
			rec.Record("hold", s.elapsed(t0), Classify(r, err), r.Code)
		}()
	}
	// Releasing only once every goroutine waits at the gate makes the burst as tight as the
	// scheduler allows, instead of spreading it over the time it takes to start them.
	ready.Wait()
	t0 = s.clk.Now()
	rec.StartTimeline(s.clk, t0)
	close(start)
	done.Wait()
	burst := s.elapsed(t0)

	res.Steps = rec.Steps()
	res.pictures(rec)
	res.headline(res.Steps[0])
	res.DurationSec = burst.Seconds()
	res.AcceptedPerSec = perSec(res.Accepted, res.DurationSec)
	res.ConflictsPerSec = perSec(res.Conflicts409, res.DurationSec)
	res.InflightCapHits = capHits
	res.Checks = append(res.Checks, Check{
		Name:   "exactly one winner",
		OK:     res.Accepted == 1,
		Detail: fmt.Sprintf("%d of %d users won seat %d of %s/%s, %d got 409", res.Accepted, opts.Users, seat, concert, date, res.Conflicts409),
	})
	res.diagnose()
	return res, nil
}
