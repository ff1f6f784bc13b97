package loadgen

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ScenarioSoak is the soak scenario's name.
const ScenarioSoak = "soak"

// SoakOptions configures the soak scenario.
type SoakOptions struct {
	// SampleEvery is how often every target's /metrics is sampled (default 10 s).
	SampleEvery time.Duration
	// HoldTTL is the targets' --hold-ttl when known (0: unknown); with it the run warns when
	// no abandoned hold expired although the run outlasted it.
	HoldTTL time.Duration
	// Threshold is how far a series' fitted line may climb over the judged window, relative
	// to its mean there, before it counts as trending upward (default DefaultTrendThreshold).
	Threshold float64
	// Users is the population the arrivals are drawn from, round robin (default
	// DefaultSoakUsers): users come back, as they do to a real service, so that what the
	// service keeps per user reaches its steady state within the run.
	Users int
}

// DefaultSoakUsers is the soak's default population. At 600 arrivals/s a user comes back
// about every 30 s, after the hold they left has expired (the embedded service's --hold-ttl
// is 15 s), so returning users meet neither their own holds nor the per-user seat limit.
const DefaultSoakUsers = 10_000

// defaultSoakHoldTTL is what the soak assumes of a target whose --hold-ttl it is not told:
// the service's default.
const defaultSoakHoldTTL = 5 * time.Minute

// DefaultTrendThreshold: a series whose least-squares line climbs by more than 10% of its
// mean over the second half of the run trends upward. Less would flag the saw-tooth of the
// garbage collector on a run of minutes; a leak of any consequence climbs far more.
const DefaultTrendThreshold = 0.10

// minTrendSamples is the fewest samples in the judged window for a verdict: fewer cannot tell
// a slope from noise, so a short run (the CI smoke run) only warns.
const minTrendSamples = 5

// SoakSample is one sample of one target during a soak.
type SoakSample struct {
	// AtSec is the time since the measured phase began.
	AtSec float64 `json:"atSec"`
	// Instance is the target's index in Config.Target.
	Instance int     `json:"instance"`
	RSSMB    float64 `json:"rssMB"`
	// RSSAnonMB and RSSFileMB split RSSMB (booking_process_resident_anon_bytes and _file_bytes,
	// Linux): the memory the process holds itself, and the pages of the files it maps (the
	// read models' bbolt files, which grow with the data they keep).
	RSSAnonMB float64 `json:"rssAnonMB"`
	RSSFileMB float64 `json:"rssFileMB"`
	// HeapMB is the Go heap in use (go_memstats_heap_inuse_bytes): what the service's own
	// state and garbage take, without what the runtime has not returned to the OS yet.
	HeapMB     float64 `json:"heapMB"`
	Goroutines float64 `json:"goroutines"`
	OpenFDs    float64 `json:"openFds"`
	// HTTPConns is booking_http_open_connections: the HTTP connections open, each one of
	// OpenFDs. The load client's keep-alive connections are most of them, and it opens more
	// whenever latency rises for a moment and keeps them; so the files the service itself
	// keeps open are judged without them (0 from a target without the series).
	HTTPConns float64 `json:"httpConns"`
	// LagEvents is booking_projection_lag_events summed over the read models.
	LagEvents float64 `json:"lagEvents"`
	// P99Ms is the client-side p99 of every request answered since the previous sample (the
	// same for every instance's row: the generator does not split it).
	P99Ms float64 `json:"p99Ms"`
}

// Trend is the verdict on one series over the judged window (the run's second half).
type Trend struct {
	Series string `json:"series"`
	// Mean and Slope (per minute) are of the window; Rise is the fitted line's climb across
	// the window relative to Mean; Floor is the absolute climb below which no series counts
	// as rising (noise at small values).
	Mean        float64 `json:"mean"`
	SlopePerMin float64 `json:"slopePerMin"`
	Rise        float64 `json:"rise"`
	Floor       float64 `json:"floor"`
	Rising      bool    `json:"rising"`
	Samples     int     `json:"samples"`
	// The fitted line runs from (FromSec, FitFrom) to (ToSec, FitTo), the window's first and
	// last sample: the charts draw it over the series, so a reader sees what was judged.
	FromSec float64 `json:"fromSec"`
	ToSec   float64 `json:"toSec"`
	FitFrom float64 `json:"fitFrom"`
	FitTo   float64 `json:"fitTo"`
}

// SoakResult holds the soak's own figures.
type SoakResult struct {
	Samples   []SoakSample `json:"samples"`
	Trends    []Trend      `json:"trends,omitempty"`
	Threshold float64      `json:"threshold"`
	// HoldsExpired and PaymentsCompleted are the first target's counters' growth over the
	// run (every instance counts every instance's events).
	HoldsExpired      float64 `json:"holdsExpired"`
	PaymentsCompleted float64 `json:"paymentsCompleted"`
}

// trendFloors are the smallest climbs across the window that count, per series: below them a
// climb is noise whatever the mean (a lag of 0 that becomes 3, two goroutines more).
var trendFloors = map[string]float64{"rss MB": 5, "rss anon MB": 5, "rss file MB": 5, "heap MB": 5, "goroutines": 20, "goroutines but http": 20, "open fds": 10, "files but http": 10, "lag events": 100, "p99 ms": 2}

// judgeTrend fits a least-squares line to the samples (t in seconds, v) with t at or after
// from and says whether it climbs across that window by more than threshold × its mean and
// more than floor. With fewer than minTrendSamples in the window there is no verdict (ok false).
func judgeTrend(series string, t, v []float64, from, threshold, floor float64) (tr Trend, ok bool) {
	var xs, ys []float64
	for i := range t {
		if t[i] >= from {
			xs, ys = append(xs, t[i]), append(ys, v[i])
		}
	}
	tr = Trend{Series: series, Floor: floor, Samples: len(xs)}
	if len(xs) < minTrendSamples {
		return tr, false
	}
	n := float64(len(xs))
	var sx, sy float64
	for i := range xs {
		sx, sy = sx+xs[i], sy+ys[i]
	}
	mx, my := sx/n, sy/n
	var sxy, sxx float64
	for i := range xs {
		sxy += (xs[i] - mx) * (ys[i] - my)
		sxx += (xs[i] - mx) * (xs[i] - mx)
	}
	slope := 0.0
	if sxx > 0 {
		slope = sxy / sxx
	}
	climb := slope * (xs[len(xs)-1] - xs[0])
	tr.Mean, tr.SlopePerMin = my, slope*60
	tr.FromSec, tr.ToSec = xs[0], xs[len(xs)-1]
	tr.FitFrom, tr.FitTo = my+slope*(tr.FromSec-mx), my+slope*(tr.ToSec-mx)
	if my != 0 {
		tr.Rise = climb / math.Abs(my)
	} else if climb > 0 {
		tr.Rise = math.Inf(1)
	}
	tr.Rising = climb > floor && climb > threshold*math.Abs(my)
	return tr, true
}

// The soak's requests, beside the booking steps.
const (
	stepAbandon = "hold-left" // a hold nobody pays: it must expire
	stepRefund  = "refund"    // a booking's payment refunded, which gives its seat back
	stepRead    = "seats"
)

// Soak offers a steady mix at Config.Rate arrivals per second for Config.Duration, of every
// four arrivals: one user's whole booking (token, charge, hold, pay) refunded at once by the
// admin API, one user's hold left unpaid to expire, and two seat-map reads of a date on sale.
// Each user's requests go to one target (see session.on). Every SampleEvery it samples every
// target's resident memory, Go heap, goroutines, open files and read-model lag from its
// /metrics, beside the client-side p99 since the previous sample, and at the end it judges
// whether any of them trends upward over the second half of the run (the first half is
// warm-up: caches fill, pools grow).
//
// The load is a steady state, not a growing sale: users come from a fixed population
// (SoakOptions.Users) and seats from a fixed set that refunds and expiries give back (see
// seatPool). A run of new users buying ever more seats would grow the service's data, and
// the state it keeps for the dates on sale, by design; a trend in that run could not tell a
// leak from the data. Its growth per booking is measured apart (docs/BENCHMARKS.md).
func Soak(ctx context.Context, cfg Config, opts SoakOptions) (Result, error) {
	res := Result{Scenario: ScenarioSoak, Target: cfg.Target, Rate: cfg.Rate}
	if opts.SampleEvery == 0 {
		opts.SampleEvery = 10 * time.Second
	}
	if opts.Threshold == 0 {
		opts.Threshold = DefaultTrendThreshold
	}
	if opts.SampleEvery < 0 || opts.Threshold < 0 {
		return res, fmt.Errorf("%w: sample interval %s and threshold %g must be positive", ErrBadConfig, opts.SampleEvery, opts.Threshold)
	}
	s, err := newTimedSession(ctx, cfg)
	if err != nil {
		return res, err
	}
	if opts.Users == 0 {
		opts.Users = DefaultSoakUsers
	}
	if opts.Users < 0 {
		return res, fmt.Errorf("%w: --users %d must be positive", ErrBadConfig, opts.Users)
	}
	count := CountFor(s.cfg.Rate, s.cfg.Duration)
	holdTTL := opts.HoldTTL
	if holdTTL <= 0 {
		holdTTL = defaultSoakHoldTTL
	}
	seats := soakSeats(s.cfg.Rate, holdTTL, count)
	if seats > maxFlashSaleSeats {
		return res, fmt.Errorf("%w: rate × hold TTL needs %d seats, more than %d", ErrBadConfig, seats, maxFlashSaleSeats)
	}
	res.Seats, res.Users = seats, opts.Users
	pool := newSeatPool(seats)
	concert := s.id("soak", 0)
	dates, err := s.createConcert(ctx, concert, seatDates(seats, bookingPrice))
	if err != nil {
		return res, err
	}
	if res.WarmupSec, err = s.warmUp(ctx); err != nil {
		return res, err
	}

	rec := NewRecorder(stepToken, stepCharge, stepHold, stepPay, stepRefund, stepE2E, stepAbandon, stepRead)
	var (
		intervalMu sync.Mutex
		interval   = newHistogram()
		dry        atomic.Int64 // arrivals that found no free seat
	)
	record := func(step string, d time.Duration, o Outcome, code string) {
		rec.Record(step, d, o, code)
		if step == stepE2E {
			return // its time is already in its steps'
		}
		intervalMu.Lock()
		_ = interval.RecordValue(min(max(d.Microseconds(), histMinMicros), histMaxMicros))
		intervalMu.Unlock()
	}
	timed := func(step string, call func() (Response, error)) (Outcome, string) {
		t := s.clk.Now()
		r, err := call()
		o := Classify(r, err)
		record(step, s.elapsed(t), o, r.Code)
		return o, r.Code
	}
	// Arrivals 0 and 1 of every four are users' (a booking, an abandoned hold), two users
	// apart: were they one user, the booking's payment would revoke the token the abandoned
	// hold is using. Consecutive users alternate the two roles as they come back.
	seat := func(i, n int) HoldRequest {
		u := (i/4*2 + i%4) % opts.Users
		return HoldRequest{UserID: s.id("soak-u", u), ConcertID: concert, DateID: dates[n/maxSeatsPerDate], SeatNo: n%maxSeatsPerDate + 1}
	}
	readPath := func(i int) string {
		d := dates[(i/4)%len(dates)]
		return "/api/v1/concerts/" + url.PathEscape(concert) + "/dates/" + url.PathEscape(d) + "/seats"
	}
	// An abandoned hold's seat comes back once the hold has lapsed and the sweeper has
	// released it: within a second of heldUntil when the service keeps up, later when it is
	// overloaded (its expiries queue behind the holds).
	expiredBy := holdTTL + soakExpirySlack
	// giveBack returns a seat after a hold answered: a refusal because the seat is taken
	// means an earlier hold of it has not been swept yet, so it is tried again a hold TTL
	// later instead of being lost to the pool; after any other failure the seat's state is
	// unknown and it stays out.
	giveBack := func(n int, o Outcome, code string) {
		if o == OutcomeConflict && code == codeSeatUnavailable {
			pool.putAt(n, s.clk.Now().Add(expiredBy))
		}
	}
	gzip := []Header{{Name: "Accept-Encoding", Value: "gzip"}}

	sampler := newSoakSampler(s)
	first, err := sampler.sample(ctx, 0, 0)
	if err != nil {
		return res, err
	}
	start := s.clk.Now()
	rec.StartTimeline(s.clk, start)
	sampleCtx, stopSampling := context.WithCancel(ctx)
	samplingDone := make(chan error, 1)
	go func() {
		tick := time.NewTicker(opts.SampleEvery)
		defer tick.Stop()
		for {
			select {
			case <-sampleCtx.Done():
				samplingDone <- nil
				return
			case <-tick.C:
			}
			intervalMu.Lock()
			p99 := float64(interval.ValueAtPercentile(99)) / 1000
			interval.Reset()
			intervalMu.Unlock()
			if _, err := sampler.sample(sampleCtx, s.elapsed(start).Seconds(), p99); err != nil && sampleCtx.Err() == nil {
				samplingDone <- err
				return
			}
		}
	}()
	sched := Schedule{Rate: s.cfg.Rate, Count: count, MaxInflight: s.cfg.MaxInflight}
	st, err := RunOpen(ctx, s.clk, sched, func(ctx context.Context, i int, at time.Time) {
		c := s.on(i)
		switch i % 4 {
		case 0, 1:
			n, ok := pool.take(s.clk.Now())
			if !ok {
				dry.Add(1)
				return
			}
			h := seat(i, n)
			if i%4 == 1 {
				var tok tokenAnswer
				if o, _ := timed(stepToken, func() (Response, error) {
					t, r, err := s.issueToken(ctx, c, h.UserID)
					tok = t
					return r, err
				}); o != OutcomeOK {
					pool.put(n) // nothing was held
					return
				}
				o, code := timed(stepAbandon, func() (Response, error) { return s.hold(ctx, c, tok.Token, h, nil) })
				if o == OutcomeOK {
					pool.putAt(n, s.clk.Now().Add(expiredBy))
				}
				giveBack(n, o, code)
				return
			}
			o, code, pid := s.bookPaid(ctx, c, record, h)
			giveBack(n, o, code)
			if o == OutcomeOK {
				o, code = timed(stepRefund, func() (Response, error) {
					return c.Do(ctx, "POST", "/api/v1/payments/"+url.PathEscape(pid)+"/refund", c.adminHeaders(), nil, nil)
				})
				if o == OutcomeOK {
					pool.put(n)
				}
			}
			// A seat whose flow failed part way stays out of the pool: its state is unknown.
			record(stepE2E, s.elapsed(at), o, code)
		default:
			timed(stepRead, func() (Response, error) { return c.Do(ctx, "GET", readPath(i), gzip, nil, nil) })
		}
	})
	elapsed := s.elapsed(start)
	stopSampling()
	samplingErr := <-samplingDone
	if err != nil {
		if ctx.Err() == nil {
			return res, fmt.Errorf("soak: %w", err)
		}
		res.Warnings = append(res.Warnings, interruptedWarning(st, sched))
	}
	if samplingErr != nil {
		return res, fmt.Errorf("soak: sample: %w", samplingErr)
	}
	last, err := sampler.scrapeFirst(context.WithoutCancel(ctx))
	if err != nil {
		return res, fmt.Errorf("soak: %w", err)
	}

	res.Steps = rec.Steps()
	res.headline(rec.Merged("all", stepToken, stepCharge, stepHold, stepPay, stepRefund, stepAbandon, stepRead))
	res.pictures(rec, stepToken, stepCharge, stepHold, stepPay, stepRefund, stepAbandon, stepRead)
	if n := dry.Load(); n > 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("%d arrivals found no free seat among %d and were skipped: seats came back slower than the hold TTL (%s) says", n, seats, holdTTL))
	}
	res.schedule(st)
	res.DurationSec = elapsed.Seconds()
	res.AcceptedPerSec = perSec(res.Accepted, res.DurationSec)
	res.ConflictsPerSec = perSec(res.Conflicts409, res.DurationSec)
	soak := &SoakResult{Samples: sampler.samples, Threshold: opts.Threshold,
		HoldsExpired:      last["booking_holds_expired_total"] - first["booking_holds_expired_total"],
		PaymentsCompleted: last["booking_payments_completed_total"] - first["booking_payments_completed_total"]}
	res.Soak = soak
	soak.Trends = judgeSoak(&res, soak.Samples, len(s.targets), s.cfg.Duration.Seconds()/2, opts.Threshold)
	if opts.HoldTTL > 0 && elapsed > 2*opts.HoldTTL+30*time.Second && soak.HoldsExpired == 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("no hold expired in %.0fs with --hold-ttl %s: is the expiry loop running?", res.DurationSec, opts.HoldTTL))
	}
	res.diagnose()
	return res, nil
}

// judgeSoak judges every series of every instance (p99 once) from the second half on, adds a
// check per verdict to res, and warns when the run was too short for one.
func judgeSoak(res *Result, samples []SoakSample, instances int, from, threshold float64) []Trend {
	var trends []Trend
	short := 0
	judge := func(m soakMetric, inst int) {
		var t, v []float64
		for _, sm := range samples {
			if sm.Instance == inst {
				t, v = append(t, sm.AtSec), append(v, m.get(sm))
			}
		}
		series := trendSeries(m.name, inst, instances)
		tr, ok := judgeTrend(series, t, v, from, threshold, trendFloors[m.name])
		if !ok {
			short = tr.Samples
			return
		}
		trends = append(trends, tr)
		if m.unjudged != "" {
			res.Warnings = append(res.Warnings, fmt.Sprintf("%s is reported, not judged (%s): mean %.1f, slope %+.2f/min, fitted climb over the second half %+.1f%% of the mean",
				series, m.unjudged, tr.Mean, tr.SlopePerMin, 100*tr.Rise))
			return
		}
		res.Checks = append(res.Checks, Check{
			Name: series + " does not trend upward after warm-up",
			OK:   !tr.Rising,
			Detail: fmt.Sprintf("mean %.1f, slope %+.2f/min, fitted climb over the second half %+.1f%% of the mean (limit %.0f%%, floor %g)",
				tr.Mean, tr.SlopePerMin, 100*tr.Rise, 100*threshold, tr.Floor),
		})
	}
	for inst := range instances {
		for _, m := range soakMetrics {
			if !m.client {
				judge(m, inst)
			}
		}
	}
	for _, m := range soakMetrics {
		if m.client {
			judge(m, 0) // the same client-side figure on every instance's row
		}
	}
	if len(trends) == 0 {
		res.Warnings = append(res.Warnings, fmt.Sprintf("too short to judge trends: %d samples in the second half, %d needed (lengthen --duration or shorten --sample-every)", short, minTrendSamples))
	}
	return trends
}

// soakSampler scrapes every target's /metrics and keeps the samples.
type soakSampler struct {
	s       *session
	mu      sync.Mutex
	samples []SoakSample
}

func newSoakSampler(s *session) *soakSampler { return &soakSampler{s: s} }

// sample scrapes every target, keeps one sample each, and returns the first target's series.
func (p *soakSampler) sample(ctx context.Context, at, p99 float64) (map[string]float64, error) {
	var first map[string]float64
	for i, t := range p.s.targets {
		m, err := scrapeMetrics(ctx, t)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			first = m
		}
		p.mu.Lock()
		p.samples = append(p.samples, SoakSample{AtSec: at, Instance: i, RSSMB: m["process_resident_memory_bytes"] / (1 << 20),
			RSSAnonMB: m["booking_process_resident_anon_bytes"] / (1 << 20), RSSFileMB: m["booking_process_resident_file_bytes"] / (1 << 20), HeapMB: m["go_memstats_heap_inuse_bytes"] / (1 << 20),
			Goroutines: m["go_goroutines"], OpenFDs: m["process_open_fds"], HTTPConns: m["booking_http_open_connections"], LagEvents: m["booking_projection_lag_events"], P99Ms: p99})
		p.mu.Unlock()
	}
	return first, nil
}

// scrapeFirst reads the first target's series without keeping a sample.
func (p *soakSampler) scrapeFirst(ctx context.Context) (map[string]float64, error) {
	return scrapeMetrics(ctx, p.s.targets[0])
}

// scrapeMetrics reads a target's /metrics, each series summed over its labels.
func scrapeMetrics(ctx context.Context, target string) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(target, "/")+"/metrics", nil)
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: %s", target, resp.Status)
	}
	return parseMetrics(resp.Body)
}

// soakHeader and soakRows lay out the samples for the table and the report.
var soakHeader = []string{"t s", "instance", "rss MB", "anon MB", "file MB", "heap MB", "goroutines", "open fds", "http conns", "lag events", "p99 ms"}

func soakRows(samples []SoakSample) [][]string {
	rows := make([][]string, 0, len(samples))
	for _, sm := range samples {
		rows = append(rows, []string{fmt.Sprintf("%.0f", sm.AtSec), fmt.Sprint(sm.Instance + 1), fmt.Sprintf("%.1f", sm.RSSMB), fmt.Sprintf("%.1f", sm.RSSAnonMB), fmt.Sprintf("%.1f", sm.RSSFileMB), fmt.Sprintf("%.1f", sm.HeapMB),
			fmt.Sprintf("%.0f", sm.Goroutines), fmt.Sprintf("%.0f", sm.OpenFDs), fmt.Sprintf("%.0f", sm.HTTPConns), fmt.Sprintf("%.0f", sm.LagEvents), fmt.Sprintf("%.2f", sm.P99Ms)})
	}
	return rows
}

// soakMetric is one sampled series: its name in the table, the checks and the trends, its
// part of an image file's name, its chart's title, and whether it is the client's own figure
// (the same on every instance's row) rather than a server's.
type soakMetric struct {
	name, file, title string
	client            bool
	get               func(SoakSample) float64
	// unjudged, when set, says why the series is reported with its trend but fails no run.
	unjudged string
}

// Resident memory is judged by its anonymous part: the file-backed part is the read models'
// files, which bbolt maps and reads through the map, so it grows with the reservations,
// payments and wallet entries they keep for good, as the files on disk do. The kernel takes
// those clean pages back under memory pressure; a leak shows in the anonymous part.
const (
	withMappedFiles = "it counts the read models' files mapped by bbolt, which grow with the data they keep; a leak shows in rss anon MB"
	mappedFiles     = "the read models' files mapped by bbolt, which grow with the data they keep; a leak shows in rss anon MB"
)

// Open files are judged without the HTTP connections: the load client opens connections
// when latency rises for a moment (a garbage collection, another process on the machine) and
// keeps them alive to the end of the run, so their count climbs in steps that are the
// client's, not a leak of the service's.
const withConnections = "it counts the load client's HTTP keep-alive connections, which it opens when latency rises and keeps; a leak shows in files but http"

// Goroutines are judged without the HTTP connections likewise: the server reads each open
// connection, idle or not, on a goroutine of its own.
const goroutinesWithConnections = "one serves each of the load client's HTTP keep-alive connections, which it opens when latency rises and keeps; a leak shows in goroutines but http"

// soakMetrics are the sampled series in the order of the checks, the report and the images.
var soakMetrics = []soakMetric{
	{name: "rss MB", file: "rss", title: "Resident memory", get: func(s SoakSample) float64 { return s.RSSMB }, unjudged: withMappedFiles},
	{name: "rss anon MB", file: "rss-anon", title: "Resident memory, anonymous (the process's own)", get: func(s SoakSample) float64 { return s.RSSAnonMB }},
	{name: "rss file MB", file: "rss-file", title: "Resident memory, file-backed (mapped read models)", get: func(s SoakSample) float64 { return s.RSSFileMB }, unjudged: mappedFiles},
	{name: "heap MB", file: "heap", title: "Go heap in use", get: func(s SoakSample) float64 { return s.HeapMB }},
	{name: "goroutines", file: "goroutines", title: "Goroutines", get: func(s SoakSample) float64 { return s.Goroutines }, unjudged: goroutinesWithConnections},
	{name: "goroutines but http", file: "goroutines-but-http", title: "Goroutines other than the HTTP connections' own", get: func(s SoakSample) float64 { return s.Goroutines - s.HTTPConns }},
	{name: "open fds", file: "open-fds", title: "Open files", get: func(s SoakSample) float64 { return s.OpenFDs }, unjudged: withConnections},
	{name: "files but http", file: "files", title: "Open files other than HTTP connections", get: func(s SoakSample) float64 { return s.OpenFDs - s.HTTPConns }},
	{name: "lag events", file: "lag", title: "Read-model lag", get: func(s SoakSample) float64 { return s.LagEvents }},
	{name: "p99 ms", file: "p99", title: "Client p99 per sample interval", client: true, get: func(s SoakSample) float64 { return s.P99Ms }},
}

// trendSeries names a metric's trend (and check) on an instance: the metric's name alone
// when one instance was sampled.
func trendSeries(name string, inst, instances int) string {
	if instances > 1 {
		return fmt.Sprintf("%s @%d", name, inst+1)
	}
	return name
}

// soakSection is the report's soak part: one chart per sampled series, one line per
// instance, and the samples' table.
func soakSection(r *SoakResult) extraSection {
	return extraSection{Title: "Soak samples", Header: soakHeader, Rows: soakRows(r.Samples), Charts: soakCharts([]soakRun{{soak: r}})}
}

// soakRun is one run's soak figures under its label ("" on the run's own page).
type soakRun struct {
	label string
	soak  *SoakResult
}

// soakCharts draws one chart per sampled series: a line per run and instance (the client's
// p99 once per run) and, dashed, the line the trend verdict fitted over the second half when
// the result has one. Every chart shares one time axis, long enough for the longest run.
// The instances are those the samples name, so a sample's index cannot make it loop.
func soakCharts(runs []soakRun) []chart {
	xMax := 0.0
	insts := make([][]int, len(runs))
	for i, run := range runs {
		seen := map[int]bool{}
		for _, s := range run.soak.Samples {
			xMax = math.Max(xMax, s.AtSec)
			if s.Instance >= 0 && !seen[s.Instance] {
				seen[s.Instance] = true
				insts[i] = append(insts[i], s.Instance)
			}
		}
		slices.Sort(insts[i])
	}
	xt, xTop := linearAxis(xMax)
	var charts []chart
	for _, m := range soakMetrics {
		var lines []series
		yMax := 0.0
		for i, run := range runs {
			for k, inst := range insts[i] {
				if m.client && k > 0 {
					break
				}
				l := series{name: soakLineName(run.label, m.client, inst, len(insts[i])), color: palette[(i+k*len(runs))%len(palette)]}
				for _, s := range run.soak.Samples {
					if s.Instance == inst {
						l.x, l.y = append(l.x, s.AtSec), append(l.y, m.get(s))
						yMax = math.Max(yMax, m.get(s))
					}
				}
				lines = append(lines, l)
				name := trendSeries(m.name, inst, len(insts[i]))
				for _, tr := range run.soak.Trends {
					if tr.Series == name && tr.ToSec > tr.FromSec {
						lines = append(lines, series{name: l.name + ", fitted", color: l.color, dashed: true,
							x: []float64{tr.FromSec, tr.ToSec}, y: []float64{tr.FitFrom, tr.FitTo}})
						yMax = math.Max(yMax, math.Max(tr.FitFrom, tr.FitTo))
					}
				}
			}
		}
		charts = append(charts, newChart(m.title, "seconds since the measured phase began", m.name, xTop, yMax, xt, lines))
	}
	return charts
}

// soakLineName names a soak chart's line: by instance on the run's own page, by the run's
// label in a comparison (with the instance when the run sampled several).
func soakLineName(label string, client bool, inst, instances int) string {
	switch {
	case label == "" && client:
		return "client p99"
	case label == "":
		return fmt.Sprintf("instance %d", inst+1)
	case instances > 1 && !client:
		return fmt.Sprintf("%s, instance %d", label, inst+1)
	}
	return label
}

// soakExpirySlack is how long after an abandoned hold's TTL the soak gives its seat back.
const soakExpirySlack = 10 * time.Second

// soakSeats sizes the soak's seat set: the seats held at once at a steady state (a quarter
// of the arrivals hold a seat for the hold TTL and a few seconds more until the sweeper gives
// it back; another quarter for the few seconds a booking and its refund take), twice over,
// and never more than the run could use.
func soakSeats(rate float64, holdTTL time.Duration, arrivals int) int {
	inUse := rate / 4 * ((holdTTL + soakExpirySlack).Seconds() + 10)
	return max(1, min(int(math.Ceil(2*inUse)), arrivals/2+1))
}

// seatPool hands out the soak's seats (numbered from 0) and takes them back: at once after a
// refund, or from a given time on after an abandoned hold, when the hold has lapsed. Seats
// given back with a time come back in that order, since every such delay is the same.
type seatPool struct {
	mu      sync.Mutex
	free    []int
	pending []pendingSeat // FIFO, by ready time
}

type pendingSeat struct {
	seat  int
	ready time.Time
}

func newSeatPool(seats int) *seatPool {
	p := &seatPool{free: make([]int, seats)}
	for i := range p.free {
		p.free[i] = seats - 1 - i // taken from the end: seat 0 first
	}
	return p
}

// take returns a free seat, ok false when none is free at now.
func (p *seatPool) take(now time.Time) (int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for len(p.pending) > 0 && !p.pending[0].ready.After(now) {
		p.free = append(p.free, p.pending[0].seat)
		p.pending = p.pending[1:]
	}
	if len(p.free) == 0 {
		return 0, false
	}
	n := p.free[len(p.free)-1]
	p.free = p.free[:len(p.free)-1]
	return n, true
}

func (p *seatPool) put(seat int) {
	p.mu.Lock()
	p.free = append(p.free, seat)
	p.mu.Unlock()
}

func (p *seatPool) putAt(seat int, ready time.Time) {
	p.mu.Lock()
	p.pending = append(p.pending, pendingSeat{seat, ready})
	p.mu.Unlock()
}
