package loadgen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// FlashSaleOptions configures the flash-sale scenario.
type FlashSaleOptions struct {
	// Seats is how many seats are on sale (1–1,000,000), over dates of at most 10,000 seats
	// each: 100,000 seats are ten dates of one concert.
	Seats int
	// Users is how many distinct users send the holds, round robin; default min(Seats, 1000).
	Users int
}

// seatPicker hands out random seats not yet won in this run, and counts the wins.
type seatPicker struct {
	mu      sync.Mutex
	seats   int
	free    []int // seat numbers not won yet, in any order
	pos     []int // pos[seat] is the seat's index in free, -1 once won
	wins    int
	doubles int
	rnd     *rand.Rand
}

func newSeatPicker(seats int, seed uint64) *seatPicker {
	p := &seatPicker{seats: seats, free: make([]int, seats), pos: make([]int, seats+1), rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	for i := range p.free {
		p.free[i] = i + 1
		p.pos[i+1] = i
	}
	return p
}

// pick returns a random seat this run has not won; once all are won, any seat, so that the
// sold-out answers are measured too.
func (p *seatPicker) pick() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) == 0 {
		return 1 + p.rnd.IntN(p.seats)
	}
	return p.free[p.rnd.IntN(len(p.free))]
}

// won records that seat was held by this run and reports whether that sold the last seat.
// A seat won twice is a double sale and is counted, not hidden.
func (p *seatPicker) won(seat int) (soldOut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := p.pos[seat]
	if i < 0 {
		p.doubles++
		return false
	}
	last := len(p.free) - 1
	p.free[i] = p.free[last]
	p.pos[p.free[i]] = i
	p.free = p.free[:last]
	p.pos[seat] = -1
	p.wins++
	return len(p.free) == 0
}

func (p *seatPicker) counts() (wins, doubles int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.wins, p.doubles
}

// maxFlashSaleSeats bounds a flash sale: a hundred dates of 10,000 seats.
const maxFlashSaleSeats = 100 * maxSeatsPerDate

// FlashSale puts Seats seats on sale (one concert, as many dates of at most 10,000 as they
// need) and, at Config.Rate for Config.Duration,
// holds random seats this run has not won yet. Tokens are prepared first and not timed. Once
// every seat is won it keeps firing at random seats, so the figures also show how fast the
// service says "sold out". It checks that exactly Seats holds were accepted and no seat twice.
func FlashSale(ctx context.Context, cfg Config, opts FlashSaleOptions) (Result, error) {
	res := Result{Scenario: ScenarioFlashSale, Target: cfg.Target, Rate: cfg.Rate, Seats: opts.Seats}
	if opts.Seats < 1 || opts.Seats > maxFlashSaleSeats {
		return res, fmt.Errorf("%w: seats %d must be 1–%d", ErrBadConfig, opts.Seats, maxFlashSaleSeats)
	}
	if opts.Users == 0 {
		opts.Users = min(opts.Seats, 1000)
	}
	if opts.Users < 1 {
		return res, fmt.Errorf("%w: users %d must be at least 1", ErrBadConfig, opts.Users)
	}
	res.Users = opts.Users
	s, err := newTimedSession(ctx, cfg)
	if err != nil {
		return res, err
	}
	concert := s.id("flash", 0)
	dates, err := s.createConcert(ctx, concert, seatDates(opts.Seats, 100))
	if err != nil {
		return res, err
	}
	users := make([]string, opts.Users)
	for i := range users {
		users[i] = s.id("flash-u", i)
	}
	tokens, err := s.prepareTokens(ctx, users)
	if err != nil {
		return res, err
	}

	if res.WarmupSec, err = s.warmUp(ctx); err != nil {
		return res, err
	}
	picker := newSeatPicker(opts.Seats, uint64(s.clk.Now().UnixNano()))
	rec := NewRecorder("hold")
	var (
		soldOutMu sync.Mutex
		soldOutAt time.Duration
	)
	start := s.clk.Now()
	rec.StartTimeline(s.clk, start)
	sched := Schedule{Rate: s.cfg.Rate, Count: CountFor(s.cfg.Rate, s.cfg.Duration), MaxInflight: s.cfg.MaxInflight}
	st, err := RunOpen(ctx, s.clk, sched, func(ctx context.Context, i int, at time.Time) {
		u := i % len(users)
		seat := picker.pick()
		// The run's seats are numbered across its dates: 10,001 is seat 1 of the second.
		date, no := dates[(seat-1)/maxSeatsPerDate], (seat-1)%maxSeatsPerDate+1
		r, err := s.hold(ctx, s.on(u), tokens[u], holdRequest{UserID: users[u], ConcertID: concert, DateID: date, SeatNo: no}, nil)
		rec.Record("hold", s.elapsed(at), Classify(r, err), r.Code)
		if err == nil && r.OK() && picker.won(seat) {
			soldOutMu.Lock()
			soldOutAt = s.elapsed(start)
			soldOutMu.Unlock()
		}
	})
	elapsed := s.elapsed(start)
	if err != nil {
		if ctx.Err() == nil {
			return res, fmt.Errorf("flash sale: %w", err)
		}
		res.Warnings = append(res.Warnings, interruptedWarning(st, sched))
	}

	res.Steps = rec.Steps()
	res.pictures(rec, "hold")
	res.headline(res.Steps[0])
	res.schedule(st)
	res.DurationSec = elapsed.Seconds()
	wins, doubles := picker.counts()
	res.SoldOut = wins == opts.Seats
	active := res.DurationSec
	if res.SoldOut {
		res.SelloutSec = soldOutAt.Seconds()
		active = res.SelloutSec
	}
	res.AcceptedPerSec = perSec(res.Accepted, active)
	res.ConflictsPerSec = perSec(res.Conflicts409, res.DurationSec)
	if res.SoldOut {
		res.Checks = append(res.Checks, Check{
			Name:   "accepted == seats",
			OK:     res.Accepted == int64(opts.Seats),
			Detail: fmt.Sprintf("%d holds accepted for %d seats", res.Accepted, opts.Seats),
		})
	} else {
		res.Warnings = append(res.Warnings, fmt.Sprintf("not sold out: %d of %d seats won, so accepted == seats was not checked; raise --rate or --duration", wins, opts.Seats))
	}
	res.Checks = append(res.Checks, Check{
		Name:   "no seat held twice",
		OK:     doubles == 0,
		Detail: fmt.Sprintf("%d seats were accepted for a second holder", doubles),
	})
	res.diagnose()
	return res, nil
}
