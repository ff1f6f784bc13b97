package loadgen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// FlashSaleOptions configures the flash-sale scenario.
type FlashSaleOptions struct {
	// Seats is how many seats are on sale (1–1,000,000), over dates of at most 10,000 seats
	// each: 100,000 seats are ten dates of one concert.
	Seats int
	// Users is how many distinct users send the holds, round robin; default
	// defaultFlashSaleUsers(Seats).
	Users int
	// SeatsPerHold is how many seats of one date each hold asks for (1–8, the contract's
	// bound on seatNos); 0 is 1. With more than one, a hold sends seatNos: a block of
	// consecutive seats this run has not won, or, once a date has no such block left, the
	// free seats nearest to one (fewer than SeatsPerHold when the date has fewer left).
	SeatsPerHold int
}

// maxSeatsPerHold is the contract's bound on the seats of one hold.
const maxSeatsPerHold = 8

// contractSeatsPerUser is the contract's default --max-seats-per-user: the seats one user
// may hold or own of one date.
const contractSeatsPerUser = 8

// defaultFlashSaleUsers is min(seats, 1000), but at least half the seats of the largest
// date, so that the users' wins on a date average at most 2 seats and stay well below a
// target's per-user limit (contractSeatsPerUser by default), which would otherwise stop a
// large date from selling out.
func defaultFlashSaleUsers(seats int) int {
	return max(min(seats, 1000), (min(seats, maxSeatsPerDate)+1)/2)
}

// seatPicker hands out the seats of the next hold, random seats not yet won in this run,
// and counts the wins. Seats are numbered across the run's dates (10,001 is seat 1 of the
// second), and the seats of one hold are always of one date.
type seatPicker struct {
	mu      sync.Mutex
	seats   int
	perHold int
	free    []int // seat numbers not won yet, in any order
	pos     []int // pos[seat] is the seat's index in free, -1 once won
	wins    int   // seats won
	holds   int   // holds won
	doubles int
	rnd     *rand.Rand
}

func newSeatPicker(seats, perHold int, seed uint64) *seatPicker {
	p := &seatPicker{seats: seats, perHold: perHold, free: make([]int, seats), pos: make([]int, seats+1), rnd: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
	for i := range p.free {
		p.free[i] = i + 1
		p.pos[i+1] = i
	}
	return p
}

// dateOf returns the first and last seat of the date that seat is on.
func (p *seatPicker) dateOf(seat int) (first, last int) {
	first = (seat-1)/maxSeatsPerDate*maxSeatsPerDate + 1
	return first, min(first+maxSeatsPerDate-1, p.seats)
}

// pick returns the seats of the next hold, ascending: a random seat this run has not won,
// with a block of free seats around it when a hold takes several. Once all are won, any
// seats, so that the sold-out answers are measured too.
func (p *seatPicker) pick() []int {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.free) == 0 {
		if p.perHold == 1 {
			return []int{1 + p.rnd.IntN(p.seats)}
		}
		first, last := p.dateOf(1 + p.rnd.IntN(p.seats))
		n := min(p.perHold, last-first+1)
		return block(first+p.rnd.IntN(last-first+2-n), n)
	}
	seat := p.free[p.rnd.IntN(len(p.free))]
	if p.perHold == 1 {
		return []int{seat}
	}
	first, last := p.dateOf(seat)
	n := p.perHold
	// The blocks of n seats that contain seat, tried from a random one on, so that the
	// blocks of a run do not all line up on multiples of n.
	off := p.rnd.IntN(n)
	for k := range n {
		start := seat - (off+k)%n
		if start >= first && start+n-1 <= last && p.allFree(start, n) {
			return block(start, n)
		}
	}
	return p.nearestFree(seat, first, last, n)
}

func block(start, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = start + i
	}
	return out
}

func (p *seatPicker) allFree(start, n int) bool {
	for s := start; s < start+n; s++ {
		if p.pos[s] < 0 {
			return false
		}
	}
	return true
}

// nearestFree returns up to n free seats of [first, last] nearest to seat (which is free),
// ascending: what is left of a date whose free seats no longer make a block.
func (p *seatPicker) nearestFree(seat, first, last, n int) []int {
	out := []int{seat}
	for d := 1; len(out) < n && (seat-d >= first || seat+d <= last); d++ {
		for _, s := range [2]int{seat + d, seat - d} {
			if len(out) < n && s >= first && s <= last && p.pos[s] >= 0 {
				out = append(out, s)
			}
		}
	}
	slices.Sort(out)
	return out
}

// won records that the seats of one hold were held by this run and reports whether that
// sold the last seat. A seat won twice is a double sale and is counted, not hidden.
func (p *seatPicker) won(seats []int) (soldOut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holds++
	for _, seat := range seats {
		i := p.pos[seat]
		if i < 0 {
			p.doubles++
			continue
		}
		last := len(p.free) - 1
		p.free[i] = p.free[last]
		p.pos[p.free[i]] = i
		p.free = p.free[:last]
		p.pos[seat] = -1
		p.wins++
		soldOut = len(p.free) == 0
	}
	return soldOut
}

func (p *seatPicker) counts() (wins, holds, doubles int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.wins, p.holds, p.doubles
}

// heldSeats is the part of a hold's answer that says which seats it holds.
type heldSeats struct {
	SeatNo  int   `json:"seatNo"`
	SeatNos []int `json:"seatNos"`
}

// whole reports whether the answer holds exactly the seats asked for, nos ascending.
func (h heldSeats) whole(nos []int) bool {
	got := h.SeatNos
	if len(got) == 0 {
		got = []int{h.SeatNo} // an answer from before seatNos
	}
	got = slices.Clone(got)
	slices.Sort(got)
	return slices.Equal(got, nos)
}

// maxFlashSaleSeats bounds a flash sale: a hundred dates of 10,000 seats.
const maxFlashSaleSeats = 100 * maxSeatsPerDate

// FlashSale puts Seats seats on sale (one concert, as many dates of at most 10,000 as they
// need) and, at Config.Rate for Config.Duration, holds random seats this run has not won
// yet, SeatsPerHold of one date per hold. Tokens are prepared first and not timed. Once
// every seat is won it keeps firing at random seats, so the figures also show how fast the
// service says "sold out". It checks that the accepted holds hold exactly Seats seats, each
// hold the seats it asked for, and no seat twice.
func FlashSale(ctx context.Context, cfg Config, opts FlashSaleOptions) (Result, error) {
	res := Result{Scenario: ScenarioFlashSale, Target: cfg.Target, Rate: cfg.Rate, Seats: opts.Seats}
	if opts.Seats < 1 || opts.Seats > maxFlashSaleSeats {
		return res, fmt.Errorf("%w: seats %d must be 1–%d", ErrBadConfig, opts.Seats, maxFlashSaleSeats)
	}
	if opts.SeatsPerHold == 0 {
		opts.SeatsPerHold = 1
	}
	if opts.SeatsPerHold < 1 || opts.SeatsPerHold > maxSeatsPerHold {
		return res, fmt.Errorf("%w: seats per hold %d must be 1–%d", ErrBadConfig, opts.SeatsPerHold, maxSeatsPerHold)
	}
	res.SeatsPerHold = opts.SeatsPerHold
	if opts.Users == 0 {
		opts.Users = defaultFlashSaleUsers(opts.Seats)
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
	picker := newSeatPicker(opts.Seats, opts.SeatsPerHold, uint64(s.clk.Now().UnixNano()))
	rec := NewRecorder("hold")
	var (
		soldOutMu sync.Mutex
		soldOutAt time.Duration
		partial   atomic.Int64 // accepted holds whose answer did not hold the seats asked for
	)
	start := s.clk.Now()
	rec.StartTimeline(s.clk, start)
	sched := Schedule{Rate: s.cfg.Rate, Count: CountFor(s.cfg.Rate, s.cfg.Duration), MaxInflight: s.cfg.MaxInflight}
	st, err := RunOpen(ctx, s.clk, sched, func(ctx context.Context, i int, at time.Time) {
		u := i % len(users)
		seats := picker.pick()
		h := HoldRequest{UserID: users[u], ConcertID: concert, DateID: dates[(seats[0]-1)/maxSeatsPerDate]}
		nos := make([]int, len(seats))
		for k, seat := range seats {
			nos[k] = (seat-1)%maxSeatsPerDate + 1
		}
		if opts.SeatsPerHold == 1 {
			h.SeatNo = nos[0] // the request of a single-seat client, as before seatNos
		} else {
			h.SeatNos = nos
		}
		var held heldSeats
		r, err := s.hold(ctx, s.on(u), tokens[u], h, &held)
		rec.Record("hold", s.elapsed(at), Classify(r, err), r.Code)
		if err != nil || !r.OK() {
			return
		}
		if !held.whole(nos) {
			partial.Add(1)
		}
		if picker.won(seats) {
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
	wins, holds, doubles := picker.counts()
	res.SeatsHeld = int64(wins + doubles)
	res.SoldOut = wins == opts.Seats
	active := res.DurationSec
	if res.SoldOut {
		res.SelloutSec = soldOutAt.Seconds()
		active = res.SelloutSec
	}
	res.AcceptedPerSec = perSec(res.Accepted, active)
	res.SeatsHeldPerSec = perSec(res.SeatsHeld, active)
	res.ConflictsPerSec = perSec(res.Conflicts409, res.DurationSec)
	if res.SoldOut {
		res.Checks = append(res.Checks, Check{
			Name:   "seats held == seats",
			OK:     res.SeatsHeld == int64(opts.Seats),
			Detail: fmt.Sprintf("%d holds accepted holding %d seats, for %d seats", holds, res.SeatsHeld, opts.Seats),
		})
	} else {
		res.Warnings = append(res.Warnings, fmt.Sprintf("not sold out: %d of %d seats won, so seats held == seats was not checked; raise --rate or --duration", wins, opts.Seats))
	}
	res.Checks = append(res.Checks, Check{
		Name:   "every hold whole",
		OK:     partial.Load() == 0,
		Detail: fmt.Sprintf("%d accepted holds did not hold exactly the seats they asked for", partial.Load()),
	}, Check{
		Name:   "no seat held twice",
		OK:     doubles == 0,
		Detail: fmt.Sprintf("%d seats were accepted for a second holder", doubles),
	})
	res.diagnose()
	return res, nil
}
