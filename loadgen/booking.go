package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// BookingOptions configures the booking scenario.
type BookingOptions struct {
	// Users is how many users arrive, at Config.Rate per second; each books one seat.
	Users int
}

// bookingPrice is the price of every benchmark seat and the amount each user charges.
const bookingPrice = 100

// The steps of one booking, in order, and the whole flow.
const (
	stepToken  = "token"
	stepCharge = "charge"
	stepHold   = "hold"
	stepPay    = "pay"
	stepE2E    = "e2e"
)

// Booking runs the whole flow of a new user per arrival: queue token → charge points → hold a
// seat → pay. Users arrive at Config.Rate; each gets a seat of its own on a concert created
// for the run (as many dates as the seat count needs), so the flows do not contend and the
// figures show the cost of the flow itself. Each step's latency is measured from that step's
// start; the end-to-end latency from the user's scheduled arrival.
func Booking(ctx context.Context, cfg Config, opts BookingOptions) (Result, error) {
	res := Result{Scenario: ScenarioBooking, Target: cfg.Target, Rate: cfg.Rate, Users: opts.Users, Seats: opts.Users}
	if opts.Users < 1 {
		return res, fmt.Errorf("%w: users %d must be at least 1", ErrBadConfig, opts.Users)
	}
	s, err := newSession(ctx, cfg)
	if err != nil {
		return res, err
	}
	if err := s.requireRate(); err != nil {
		return res, err
	}
	concert := s.id("book", 0)
	dates, err := s.createConcert(ctx, concert, seatDates(opts.Users, bookingPrice))
	if err != nil {
		return res, err
	}

	if res.WarmupSec, err = s.warmUp(ctx); err != nil {
		return res, err
	}
	rec := NewRecorder(stepToken, stepCharge, stepHold, stepPay, stepE2E)
	start := s.clk.Now()
	rec.StartTimeline(s.clk, start)
	sched := Schedule{Rate: s.cfg.Rate, Count: opts.Users, MaxInflight: s.cfg.MaxInflight}
	st, err := RunOpen(ctx, s.clk, sched, func(ctx context.Context, i int, at time.Time) {
		seat := HoldRequest{
			UserID:    s.id("book-u", i),
			ConcertID: concert,
			DateID:    dates[i/maxSeatsPerDate],
			SeatNo:    i%maxSeatsPerDate + 1,
		}
		o, code := s.book(ctx, s.on(i), rec, seat)
		rec.Record(stepE2E, s.elapsed(at), o, code)
	})
	elapsed := s.elapsed(start)
	if err != nil {
		if ctx.Err() == nil {
			return res, fmt.Errorf("booking: %w", err)
		}
		res.Warnings = append(res.Warnings, interruptedWarning(st, sched))
	}

	res.Steps = rec.Steps()
	res.pictures(rec, stepE2E)
	for _, step := range res.Steps {
		if step.Name == stepE2E {
			res.headline(step)
		}
	}
	res.schedule(st)
	res.DurationSec = elapsed.Seconds()
	res.AcceptedPerSec = perSec(res.Accepted, res.DurationSec)
	res.ConflictsPerSec = perSec(res.Conflicts409, res.DurationSec)
	res.Checks = append(res.Checks, Check{
		Name:   "every user booked",
		OK:     res.Accepted == int64(opts.Users),
		Detail: fmt.Sprintf("%d of %d flows ended with a completed payment", res.Accepted, opts.Users),
	})
	res.diagnose()
	return res, nil
}

// book runs one user's flow through c, recording every step, and returns the flow's outcome:
// that of the first step that failed, or OK.
func (s *session) book(ctx context.Context, c *Client, rec *Recorder, seat HoldRequest) (Outcome, string) {
	o, code, _ := s.bookPaid(ctx, c, rec.Record, seat)
	return o, code
}

// bookPaid is book that also returns the payment's ID when the payment was answered 2xx. It
// hands every step's answer to record (the soak also counts them in its interval's p99).
func (s *session) bookPaid(ctx context.Context, c *Client, record func(step string, d time.Duration, o Outcome, code string), seat HoldRequest) (Outcome, string, string) {
	step := func(name string, call func() (Response, error)) (Outcome, string) {
		t := s.clk.Now()
		r, err := call()
		o := Classify(r, err)
		record(name, s.elapsed(t), o, r.Code)
		return o, r.Code
	}
	var tok tokenAnswer
	o, code := step(stepToken, func() (Response, error) {
		t, r, err := s.issueToken(ctx, c, seat.UserID)
		tok = t
		if err == nil && r.OK() && t.Status != "ACTIVE" {
			// The call worked, but the queue has not admitted the user: count it as what the
			// hold would have answered, so it is reported with the queue hint.
			return Response{Status: 403, Code: codeTokenNotActive}, nil
		}
		return r, err
	})
	if o != OutcomeOK {
		return o, code, ""
	}
	o, code = step(stepCharge, func() (Response, error) {
		body, err := json.Marshal(struct {
			Amount int64 `json:"amount"`
		}{bookingPrice})
		if err != nil {
			return Response{}, err
		}
		return c.Do(ctx, "POST", "/api/v1/users/"+seat.UserID+"/points/charge", nil, body, nil)
	})
	if o != OutcomeOK {
		return o, code, ""
	}
	var held struct {
		ReservationID string `json:"reservationId"`
	}
	o, code = step(stepHold, func() (Response, error) { return s.hold(ctx, c, tok.Token, seat, &held) })
	if o != OutcomeOK {
		return o, code, ""
	}
	var paid struct {
		PaymentID string `json:"paymentId"`
	}
	o, code = step(stepPay, func() (Response, error) {
		body, err := json.Marshal(struct {
			ReservationID string `json:"reservationId"`
			UserID        string `json:"userId"`
		}{held.ReservationID, seat.UserID})
		if err != nil {
			return Response{}, err
		}
		return c.Do(ctx, "POST", "/api/v1/payments", tokenHeaders(tok.Token), body, &paid)
	})
	return o, code, paid.PaymentID
}
