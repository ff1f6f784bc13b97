package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// ScenarioWatch is the live seat-map scenario.
const ScenarioWatch = "watch"

// WatchOptions configures the watch scenario.
type WatchOptions struct {
	// Streams is how many seat-map streams to open on the watched date.
	Streams int
	// Seats is the size of the watched date (1–10,000); default 1000.
	Seats int
	// Probes is how many holds on the watched date are timed until every stream saw them;
	// default 20, one every ProbeEvery.
	Probes int
	// ProbeEvery is the pause between probe holds; default 500 ms.
	ProbeEvery time.Duration
	// SaleRate, when positive, runs a flash sale at this many holds per second on a second
	// concert while the probes run (Config.Rate is ignored).
	SaleRate float64
	// PerSource is how many streams share one 127.0.0.x source address: one source runs out
	// of ephemeral ports near 28,000. Default 20,000.
	PerSource int
	// OpenConcurrency is how many streams are being opened at once; default 256.
	OpenConcurrency int
	// Settle is how long the open streams sit idle before the memory is read (the server's
	// pools idle out, a GC runs); idle CPU is measured over a third of it after that. Default 15 s.
	Settle time.Duration
}

// WatchResult holds the figures of the watch scenario.
type WatchResult struct {
	Streams       int     `json:"streams"`
	StreamsFailed int     `json:"streamsFailed"`
	OpenSec       float64 `json:"openSec"`
	// ServerRSS*: the target's resident memory (process_resident_memory_bytes) before the
	// streams were opened and once they were all open and idle.
	ServerRSSBeforeMB float64 `json:"serverRssBeforeMB"`
	ServerRSSOpenMB   float64 `json:"serverRssOpenMB"`
	RSSPerStreamKB    float64 `json:"rssPerStreamKB"`
	// SeenP50Ms…: from a probe hold's 201 to a stream seeing it, over every (probe, stream).
	SeenP50Ms float64 `json:"seenP50Ms"`
	SeenP99Ms float64 `json:"seenP99Ms"`
	SeenMaxMs float64 `json:"seenMaxMs"`
	// LastSeenP50Ms, LastSeenP99Ms: from a probe's 201 to the last stream seeing it, over probes.
	LastSeenP50Ms float64 `json:"lastSeenP50Ms"`
	LastSeenP99Ms float64 `json:"lastSeenP99Ms"`
	Missed        int64   `json:"missed"`
	// ServerCPU*: the target's CPU use (cores) while the streams sat idle and while the probes
	// (and the sale) ran.
	ServerCPUIdle    float64 `json:"serverCpuIdle"`
	ServerCPUProbing float64 `json:"serverCpuProbing"`
	// FramesSent is the number of frames the target wrote to streams while probing, and
	// CPUPerFrameUs the target's CPU time per frame then (sale included, if any).
	FramesSent    float64 `json:"framesSent"`
	CPUPerFrameUs float64 `json:"cpuPerFrameUs"`
	// SaleHoldsPerSec is the accepted holds per second of the sale, when one ran.
	SaleHoldsPerSec float64 `json:"saleHoldsPerSec,omitempty"`
}

// Watch opens Streams seat-map streams on one new date, measures the target's memory per
// stream, then makes Probes holds on that date and measures how long each took to reach every
// stream, optionally while a flash sale runs on another concert. The target's memory and CPU
// come from its /metrics, so run it as its own process (--target) for figures of the server
// alone.
func Watch(ctx context.Context, cfg Config, opts WatchOptions) (Result, error) {
	res := Result{Scenario: ScenarioWatch, Target: cfg.Target, Rate: opts.SaleRate}
	if opts.Seats == 0 {
		opts.Seats = 1000
	}
	if opts.Probes == 0 {
		opts.Probes = 20
	}
	if opts.ProbeEvery == 0 {
		opts.ProbeEvery = 500 * time.Millisecond
	}
	if opts.PerSource == 0 {
		opts.PerSource = 20_000
	}
	if opts.OpenConcurrency == 0 {
		opts.OpenConcurrency = 256
	}
	if opts.Settle == 0 {
		opts.Settle = 15 * time.Second
	}
	if opts.Streams < 1 || opts.Seats < opts.Probes || opts.Seats > maxSeatsPerDate {
		return res, fmt.Errorf("%w: streams %d must be positive and seats %d between probes %d and %d", ErrBadConfig, opts.Streams, opts.Seats, opts.Probes, maxSeatsPerDate)
	}
	res.Seats = opts.Seats
	s, err := newSession(ctx, cfg)
	if err != nil {
		return res, err
	}
	if len(s.targets) > 1 {
		// The streams and the memory figures belong to one server.
		return res, fmt.Errorf("%w: watch measures one instance; give one --target", ErrBadConfig)
	}
	concert := s.id("watch", 0)
	dates, err := s.createConcert(ctx, concert, seatDates(opts.Seats, 100))
	if err != nil {
		return res, err
	}
	users := make([]string, opts.Probes)
	for i := range users {
		users[i] = s.id("watch-u", i)
	}
	tokens, err := s.prepareTokens(ctx, users)
	if err != nil {
		return res, err
	}
	var w WatchResult
	before, err := scrape(ctx, s)
	if err != nil {
		return res, err
	}
	w.ServerRSSBeforeMB = before.rss / (1 << 20)

	// Open the streams.
	target, err := url.Parse(s.targets[0])
	if err != nil {
		return res, fmt.Errorf("target: %w", err)
	}
	path := "/api/v1/concerts/" + concert + "/dates/" + dates[0] + "/seats/stream"
	probeSeats := make([]int, opts.Probes)
	for i := range probeSeats {
		probeSeats[i] = 1 + i*(opts.Seats/opts.Probes)
	}
	seen := make([][]atomic.Int64, opts.Probes) // seen[p][stream]: unix ns the stream saw probe p
	for p := range seen {
		seen[p] = make([]atomic.Int64, opts.Streams)
	}
	streamCtx, stopStreams := context.WithCancel(ctx)
	defer stopStreams()
	var failed atomic.Int64
	var open sync.WaitGroup
	var conns sync.WaitGroup
	slots := make(chan struct{}, opts.OpenConcurrency)
	openStart := time.Now()
	for i := range opts.Streams {
		slots <- struct{}{}
		open.Add(1)
		conns.Add(1)
		go func() {
			defer conns.Done()
			source := net.IPv4(127, 0, 0, byte(1+i/opts.PerSource))
			err := watchStream(streamCtx, source, target.Host, path, probeSeats, func(p int) {
				seen[p][i].CompareAndSwap(0, time.Now().UnixNano())
			}, func() { <-slots; open.Done() })
			if err != nil && streamCtx.Err() == nil {
				if failed.Add(1) <= 3 {
					s.log.Warn("a stream failed", "stream", i, "err", err)
				}
			}
		}()
	}
	open.Wait()
	w.OpenSec = time.Since(openStart).Seconds()
	w.Streams, w.StreamsFailed = opts.Streams, int(failed.Load())
	s.log.Info("streams open", "streams", opts.Streams, "failed", w.StreamsFailed, "seconds", w.OpenSec)

	// Let the server settle (its pools idle out, a GC runs), then measure idle memory and CPU.
	idleStart, err := scrapeAfter(ctx, s, opts.Settle)
	if err != nil {
		return res, err
	}
	idleEnd, err := scrapeAfter(ctx, s, opts.Settle/3)
	if err != nil {
		return res, err
	}
	w.ServerRSSOpenMB = idleEnd.rss / (1 << 20)
	w.RSSPerStreamKB = (idleEnd.rss - before.rss) / 1024 / float64(opts.Streams)
	w.ServerCPUIdle = (idleEnd.cpu - idleStart.cpu) / idleEnd.at.Sub(idleStart.at).Seconds()

	// The sale, if any, on its own concert, prepared before the probes start.
	saleDone := make(chan struct{})
	var saleAccepted atomic.Int64
	var saleSec float64
	if opts.SaleRate > 0 {
		saleDuration := time.Duration(opts.Probes+2) * opts.ProbeEvery
		sale, err := prepareSale(ctx, s, opts.SaleRate, saleDuration)
		if err != nil {
			return res, err
		}
		go func() {
			defer close(saleDone)
			saleSec = sale(ctx, &saleAccepted)
		}()
	} else {
		close(saleDone)
	}

	// The probes.
	probeStart, err := scrape(ctx, s)
	if err != nil {
		return res, err
	}
	held := make([]time.Time, opts.Probes)
	rec := NewRecorder("hold")
	for p, seat := range probeSeats {
		if p > 0 {
			select {
			case <-ctx.Done():
				return res, ctx.Err()
			case <-time.After(opts.ProbeEvery):
			}
		}
		start := time.Now()
		r, err := s.hold(ctx, s.c, tokens[p], HoldRequest{UserID: users[p], ConcertID: concert, DateID: dates[0], SeatNo: seat}, nil)
		held[p] = time.Now()
		rec.Record("hold", held[p].Sub(start), Classify(r, err), r.Code)
		if err != nil || !r.OK() {
			return res, fmt.Errorf("probe hold of seat %d: %d %s %v", seat, r.Status, r.Code, err)
		}
	}
	// Wait until every stream saw every probe, or 30 s after the last.
	deadline := time.Now().Add(30 * time.Second)
	for !allSeen(seen, &failed) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond) // polling with a deadline
	}
	<-saleDone
	probeEnd, err := scrape(ctx, s)
	if err != nil {
		return res, err
	}
	w.ServerCPUProbing = (probeEnd.cpu - probeStart.cpu) / probeEnd.at.Sub(probeStart.at).Seconds()
	w.FramesSent = probeEnd.frames - probeStart.frames
	if w.FramesSent > 0 {
		w.CPUPerFrameUs = (probeEnd.cpu - probeStart.cpu) / w.FramesSent * 1e6
	}
	if saleSec > 0 {
		w.SaleHoldsPerSec = float64(saleAccepted.Load()) / saleSec
	}

	all := newHistogram()
	var lasts []float64
	for p := range seen {
		var last time.Duration
		for i := range seen[p] {
			at := seen[p][i].Load()
			if at == 0 {
				w.Missed++
				continue
			}
			d := max(time.Unix(0, at).Sub(held[p]), 0) // a stream may see the hold before its 201 arrives
			_ = all.RecordValue(d.Microseconds())
			last = max(last, d)
		}
		lasts = append(lasts, float64(last.Microseconds())/1000)
	}
	ms := func(q float64) float64 { return float64(all.ValueAtQuantile(q)) / 1000 }
	w.SeenP50Ms, w.SeenP99Ms, w.SeenMaxMs = ms(50), ms(99), float64(all.Max())/1000
	slices.Sort(lasts)
	w.LastSeenP50Ms, w.LastSeenP99Ms = quantile(lasts, 0.50), quantile(lasts, 0.99)
	stopStreams()
	conns.Wait()

	res.Watch = &w
	res.Steps = rec.Steps()
	res.headline(res.Steps[0])
	res.Checks = append(res.Checks,
		Check{Name: "every stream opened", OK: w.StreamsFailed == 0, Detail: fmt.Sprintf("%d of %d streams failed", w.StreamsFailed, opts.Streams)},
		Check{Name: "every stream saw every probe", OK: w.Missed == 0, Detail: fmt.Sprintf("%d (probe, stream) pairs missed within 30 s", w.Missed)},
	)
	res.diagnose()
	return res, nil
}

// quantile returns the q-quantile of sorted values (nearest rank).
func quantile(sorted []float64, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func allSeen(seen [][]atomic.Int64, failed *atomic.Int64) bool {
	missing := int64(0)
	for p := range seen {
		for i := range seen[p] {
			if seen[p][i].Load() == 0 {
				missing++
			}
		}
	}
	return missing <= failed.Load()*int64(len(seen))
}

// prepareSale creates a concert with enough seats for a sale at rate for d, and its users'
// tokens, and returns the sale: it holds each seat once, at rate for d, counts the accepted
// holds and returns how long it ran.
func prepareSale(ctx context.Context, s *session, rate float64, d time.Duration) (func(context.Context, *atomic.Int64) float64, error) {
	seats := int(rate*d.Seconds()*1.2) + 1
	concert := s.id("watch-sale", 0)
	dates, err := s.createConcert(ctx, concert, seatDates(seats, 100))
	if err != nil {
		return nil, err
	}
	users := make([]string, 1000)
	for i := range users {
		users[i] = s.id("watch-sale-u", i)
	}
	tokens, err := s.prepareTokens(ctx, users)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, accepted *atomic.Int64) float64 {
		var next atomic.Int64
		start := time.Now()
		sched := Schedule{Rate: rate, Count: CountFor(rate, d), MaxInflight: s.cfg.MaxInflight}
		_, _ = RunOpen(ctx, s.clk, sched, func(ctx context.Context, i int, _ time.Time) {
			n := int(next.Add(1)) - 1 // each seat once: every hold should be accepted
			u := i % len(users)
			r, err := s.hold(ctx, s.on(u), tokens[u], HoldRequest{UserID: users[u], ConcertID: concert, DateID: dates[n/maxSeatsPerDate], SeatNo: 1 + n%maxSeatsPerDate}, nil)
			if err == nil && r.OK() {
				accepted.Add(1)
			}
		})
		return time.Since(start).Seconds()
	}, nil
}

// serverFigures are the target's series the scenario reads.
type serverFigures struct {
	at     time.Time
	rss    float64 // bytes
	cpu    float64 // seconds
	frames float64
}

// scrapeAfter waits d, then scrapes.
func scrapeAfter(ctx context.Context, s *session, d time.Duration) (serverFigures, error) {
	select {
	case <-ctx.Done():
		return serverFigures{}, ctx.Err()
	case <-time.After(d):
	}
	return scrape(ctx, s)
}

// scrape reads the target's resident memory, CPU time and frames sent from its /metrics.
func scrape(ctx context.Context, s *session) (serverFigures, error) {
	m, err := scrapeMetrics(ctx, s.targets[0])
	if err != nil {
		return serverFigures{}, err
	}
	f := serverFigures{at: time.Now(), rss: m["process_resident_memory_bytes"], cpu: m["process_cpu_seconds_total"], frames: m["booking_seat_stream_frames_total"]}
	if f.rss == 0 {
		return f, errors.New("GET /metrics: no process_resident_memory_bytes (is the target a booking service on Linux?)")
	}
	return f, nil
}

// parseMetrics reads the Prometheus text format, each series summed over its labels.
func parseMetrics(r io.Reader) (map[string]float64, error) {
	body, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("read /metrics: %w", err)
	}
	m := make(map[string]float64)
	for _, line := range bytes.Split(body, []byte("\n")) {
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		i := bytes.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(string(line[i+1:]), 64)
		if err != nil {
			continue
		}
		name := line[:i]
		if j := bytes.IndexByte(name, '{'); j >= 0 {
			name = name[:j]
		}
		m[string(name)] += v
	}
	return m, nil
}

// watchStream opens one seat-map stream from source and reads it until ctx ends, calling
// seen(p) whenever an event shows probe seat p HELD and opened once the snapshot arrived (or
// the stream failed). It speaks HTTP/1.1 by hand: a hundred thousand net/http clients would
// cost the generator more than the server.
func watchStream(ctx context.Context, source net.IP, host, path string, probes []int, seen func(p int), opened func()) (err error) {
	once := sync.Once{}
	defer func() { once.Do(opened) }()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: source}, Timeout: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return err
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()
	if _, err := io.WriteString(conn, "GET "+path+" HTTP/1.1\r\nHost: "+host+"\r\nAccept: text/event-stream\r\n\r\n"); err != nil {
		return err
	}
	br := bufio.NewReaderSize(conn, 512)
	status, err := br.ReadString('\n')
	if err != nil {
		return err
	}
	if len(status) < 12 || status[9:12] != "200" {
		return fmt.Errorf("stream answered %q", status)
	}
	for { // headers
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
	}
	patterns := make([][]byte, len(probes))
	for p, seat := range probes {
		patterns[p] = []byte(`{"seatNo":` + strconv.Itoa(seat) + `,`)
	}
	for {
		size, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		n, err := strconv.ParseInt(string(bytes.TrimSpace([]byte(size))), 16, 64)
		if err != nil {
			return fmt.Errorf("chunk size %q: %w", size, err)
		}
		if n == 0 {
			return nil
		}
		buf := chunkPool.Get().(*[]byte)
		if cap(*buf) < int(n)+2 {
			*buf = make([]byte, n+2)
		}
		b := (*buf)[:n+2]
		if _, err := io.ReadFull(br, b); err != nil {
			chunkPool.Put(buf)
			return err
		}
		isSnapshot := bytes.HasPrefix(b, []byte("event: snapshot"))
		for p, pat := range patterns {
			if i := bytes.Index(b, pat); i >= 0 {
				end := bytes.IndexByte(b[i:], '}')
				if end > 0 && bytes.Contains(b[i:i+end], []byte(`"HELD"`)) {
					seen(p)
				}
			}
		}
		chunkPool.Put(buf)
		if isSnapshot {
			once.Do(opened)
		}
	}
}

// chunkPool holds the read buffers of the streams' chunks: only the streams reading at the
// moment need one.
var chunkPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}
