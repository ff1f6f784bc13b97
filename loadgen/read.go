package loadgen

import (
	"context"
	"fmt"
	"net/url"
	"time"
)

// ReadOptions configures the read scenario.
type ReadOptions struct {
	// ConcertID and DateID name the date whose seat map is read; when ConcertID is empty the
	// first concert the service lists is used (and, if there is none, one is created).
	ConcertID string
	DateID    string
	// Plain asks for uncompressed answers; by default the reads send Accept-Encoding: gzip,
	// as browsers do (the service then sends seat maps gzipped, about a tenth of the bytes).
	Plain bool
}

// The two reads of the read scenario.
const (
	stepSeats = "seats"
	stepDates = "dates"
)

// Read offers GETs of one date's seat map and of its concert's dates, alternately, at
// Config.Rate for Config.Duration.
func Read(ctx context.Context, cfg Config, opts ReadOptions) (Result, error) {
	res := Result{Scenario: ScenarioRead, Target: cfg.Target, Rate: cfg.Rate}
	s, err := newTimedSession(ctx, cfg)
	if err != nil {
		return res, err
	}
	concert, date, err := s.readTarget(ctx, opts)
	if err != nil {
		return res, err
	}
	datesPath := "/api/v1/concerts/" + url.PathEscape(concert) + "/dates"
	seatsPath := datesPath + "/" + url.PathEscape(date) + "/seats"

	if res.WarmupSec, err = s.warmUp(ctx); err != nil {
		return res, err
	}
	var headers []Header
	if !opts.Plain {
		headers = []Header{{Name: "Accept-Encoding", Value: "gzip"}}
	}
	rec := NewRecorder(stepSeats, stepDates)
	start := s.clk.Now()
	rec.StartTimeline(s.clk, start)
	sched := Schedule{Rate: s.cfg.Rate, Count: CountFor(s.cfg.Rate, s.cfg.Duration), MaxInflight: s.cfg.MaxInflight}
	st, err := RunOpen(ctx, s.clk, sched, func(ctx context.Context, i int, at time.Time) {
		step, path := stepSeats, seatsPath
		if i%2 == 1 {
			step, path = stepDates, datesPath
		}
		r, err := s.on(i).Do(ctx, "GET", path, headers, nil, nil)
		rec.Record(step, s.elapsed(at), Classify(r, err), r.Code)
	})
	elapsed := s.elapsed(start)
	if err != nil {
		if ctx.Err() == nil {
			return res, fmt.Errorf("read: %w", err)
		}
		res.Warnings = append(res.Warnings, interruptedWarning(st, sched))
	}
	res.Steps = rec.Steps()
	res.pictures(rec)
	res.headline(rec.Merged("all"))
	res.schedule(st)
	res.DurationSec = elapsed.Seconds()
	res.AcceptedPerSec = perSec(res.Accepted, res.DurationSec)
	res.ConflictsPerSec = perSec(res.Conflicts409, res.DurationSec)
	res.diagnose()
	return res, nil
}

// readTarget finds the date to read.
func (s *session) readTarget(ctx context.Context, opts ReadOptions) (concert, date string, err error) {
	concert, date = opts.ConcertID, opts.DateID
	if concert == "" {
		var list struct {
			Concerts []struct {
				ConcertID string `json:"concertId"`
			} `json:"concerts"`
		}
		r, err := s.c.Do(ctx, "GET", "/api/v1/concerts", nil, nil, &list)
		if err != nil {
			return "", "", fmt.Errorf("list concerts: %w", err)
		}
		if !r.OK() {
			return "", "", statusError("list concerts", r)
		}
		if len(list.Concerts) == 0 {
			concert = s.id("read", 0)
			dates, err := s.createConcert(ctx, concert, seatDates(1000, 100))
			if err != nil {
				return "", "", fmt.Errorf("no concert to read: %w", err)
			}
			return concert, dates[0], nil
		}
		concert = list.Concerts[0].ConcertID
	}
	if date == "" {
		var list struct {
			Dates []struct {
				DateID string `json:"dateId"`
			} `json:"dates"`
		}
		r, err := s.c.Do(ctx, "GET", "/api/v1/concerts/"+url.PathEscape(concert)+"/dates", nil, nil, &list)
		if err != nil {
			return "", "", fmt.Errorf("list dates of %s: %w", concert, err)
		}
		if !r.OK() {
			return "", "", statusError("list dates of "+concert, r)
		}
		if len(list.Dates) == 0 {
			return "", "", fmt.Errorf("%w: concert %s has no dates", ErrBadConfig, concert)
		}
		date = list.Dates[0].DateID
	}
	return concert, date, nil
}
