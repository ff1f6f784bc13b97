package api

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
	"github.com/booking-engine/booking/projections"
)

// Defaults of the seat-map streams; SeatFeedConfig overrides them.
const (
	// defaultMaxStreams bounds the open seat-map streams of one process when the operator
	// gives no --max-streams; more are answered 503.
	defaultMaxStreams = 10_000
	// defaultHeartbeat is the interval of the ": ping" comment that keeps proxies from
	// closing an idle stream and lets the server notice a client that went away.
	defaultHeartbeat = 15 * time.Second
	// defaultBacklog is how many frames a stream may fall behind before it is sent a fresh
	// snapshot instead of the frames it missed.
	defaultBacklog = 32
	// defaultMinFrameInterval is the frame interval of a small crowd.
	defaultMinFrameInterval = 100 * time.Millisecond
	// maxFrameInterval is the frame interval of a very large crowd: a change still reaches
	// every stream within about a second and a half.
	maxFrameInterval = time.Second
	// frameCostPerStream is the crowd rule's price of one stream per frame: the interval is
	// streams × frameCostPerStream, between the minimum and maxFrameInterval. Writing a frame to
	// a stream costs a goroutine wake-up and a write(2): about 15–17 µs of the server's CPU
	// on loopback on this 2-core machine, the receiving side's TCP work included
	// (docs/BENCHMARKS.md). At 20 µs per stream the frames of a busy date take at most about
	// 0.85 of a core until the interval reaches its ceiling (50,000 streams), and a small crowd
	// (up to 5,000 streams) gets 100 ms frames.
	frameCostPerStream = 20 * time.Microsecond
	// seatPollInterval is how often a date's feed re-reads the seat map when nothing publishes
	// changes (Deps.SeatFeed nil).
	seatPollInterval = 500 * time.Millisecond
)

// Seat event types the feed turns into seat changes.
var (
	typeSeatHeld     = aggregates.SeatHeld{}.EventType()
	typeSeatReleased = aggregates.SeatReleased{}.EventType()
	typeSeatSold     = aggregates.SeatSold{}.EventType()
)

// SeatFeedConfig sizes a SeatFeed; zero fields take the defaults.
type SeatFeedConfig struct {
	// MaxStreams bounds the open streams of the process (--max-streams); beyond it a stream
	// request is answered 503 with Retry-After. 0: 10,000.
	MaxStreams int
	// Heartbeat is the interval of the ": ping" comment, and how long a write to a client that
	// does not read may block before the stream is ended. 0: 15 s.
	Heartbeat time.Duration
	// Backlog is how many frames a stream may fall behind before it gets a fresh snapshot
	// instead. 0: 32.
	Backlog int
	// MinFrameInterval is the frame interval of a small crowd. 0: 100 ms.
	MinFrameInterval time.Duration
}

// SeatFeed fans the seat changes the read side applies out to the open seat-map streams
// (GET .../seats/stream). Wire Publish to projections.Engine.Subscribe: it is called after
// each committed batch of the seats projection, so a map read after a change has the change.
//
// The streams of one date share one dateFeed: one copy of the seat map, one encoded snapshot
// and a ring of the last Backlog encoded frames. Changes are coalesced per date and sent as a
// frame every frame interval (a seat that changed twice in between is sent once, with its
// last status); a stream holds only its position in the ring. A stream that fell behind the
// ring gets the current snapshot instead of the frames it missed, so a slow client costs no
// memory that grows.
type SeatFeed struct {
	cfg     SeatFeedConfig
	polling bool // nothing calls Publish: each date's feed re-reads its seat map

	open      atomic.Int64  // streams admitted and not yet ended
	frames    atomic.Uint64 // frames and snapshots written to streams
	snapshots atomic.Uint64 // snapshots written to streams that had fallen behind

	mu    sync.RWMutex
	dates map[string]*dateFeed // "concert.date" → the feed of the date's streams
}

// NewSeatFeed returns a feed with no streams, fed by Publish.
func NewSeatFeed(cfg SeatFeedConfig) *SeatFeed {
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = defaultMaxStreams
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = defaultHeartbeat
	}
	if cfg.Backlog <= 0 {
		cfg.Backlog = defaultBacklog
	}
	if cfg.MinFrameInterval <= 0 {
		cfg.MinFrameInterval = defaultMinFrameInterval
	}
	return &SeatFeed{cfg: cfg, dates: map[string]*dateFeed{}}
}

// newPollingSeatFeed returns a feed whose dates follow the read model by re-reading it, for
// an API wired without a feed.
func newPollingSeatFeed() *SeatFeed {
	f := NewSeatFeed(SeatFeedConfig{MinFrameInterval: seatPollInterval})
	f.polling = true
	return f
}

// Streams is the number of open seat-map streams.
func (f *SeatFeed) Streams() int { return int(f.open.Load()) }

// FramesSent counts the frames (and snapshots) written to streams since the start.
func (f *SeatFeed) FramesSent() uint64 { return f.frames.Load() }

// SnapshotsResent counts the snapshots sent to streams that had fallen behind the backlog.
func (f *SeatFeed) SnapshotsResent() uint64 { return f.snapshots.Load() }

// FrameInterval is the current frame interval, which grows with the number of streams.
func (f *SeatFeed) FrameInterval() time.Duration {
	return frameInterval(f.Streams(), f.cfg.MinFrameInterval)
}

// frameInterval is the crowd rule: streams × frameCostPerStream, between min and
// maxFrameInterval (never below min).
func frameInterval(streams int, min time.Duration) time.Duration {
	d := time.Duration(streams) * frameCostPerStream
	if d > maxFrameInterval {
		d = maxFrameInterval
	}
	if d < min {
		d = min
	}
	return d
}

// seatChange is a seat's new status. Prices never change once a concert is created, so the
// date's feed adds the price from its map.
type seatChange struct {
	seatNo int
	status aggregates.SeatStatus
}

func dateKey(concertID, dateID string) string { return concertID + "." + dateID }

// Publish hands one applied event to the streams of its date. Events other than a seat's
// SeatHeld, SeatReleased and SeatSold are ignored, and so are dates nobody watches. It never
// blocks on a stream. Safe for concurrent use.
func (f *SeatFeed) Publish(env eventstore.Envelope) {
	if f.open.Load() == 0 || env.AggregateType != eventstore.TypeSeat {
		return
	}
	var status aggregates.SeatStatus
	switch env.Type {
	case typeSeatHeld:
		status = aggregates.SeatStatusHeld
	case typeSeatReleased:
		status = aggregates.SeatStatusAvailable
	case typeSeatSold:
		status = aggregates.SeatStatusSold
	default:
		return
	}
	concertID, dateID, seatNo, ok := aggregates.ParseSeatID(env.AggregateID)
	if !ok {
		return
	}
	f.mu.RLock()
	d := f.dates[dateKey(concertID, dateID)]
	f.mu.RUnlock()
	if d != nil {
		d.publish(seatChange{seatNo: seatNo, status: status})
	}
}

// errTooManyStreams refuses a stream beyond SeatFeedConfig.MaxStreams.
var errTooManyStreams = errors.New("too many seat-map streams are open")

// seatReader reads a date's seat map; Queries.Seats.
type seatReader func(ctx context.Context, concertID, dateID string) ([]projections.SeatView, error)

// join admits one stream to a date and returns the date's feed, loaded. The first stream of
// a date loads the map; the others wait for it. Each successful join must be matched by one
// leave.
func (f *SeatFeed) join(ctx context.Context, concertID, dateID string, read seatReader) (*dateFeed, error) {
	if f.open.Add(1) > int64(f.cfg.MaxStreams) {
		f.open.Add(-1)
		return nil, errTooManyStreams
	}
	key := dateKey(concertID, dateID)
	f.mu.Lock()
	d := f.dates[key]
	first := d == nil
	if first {
		d = newDateFeed(f, concertID, dateID, read)
		f.dates[key] = d
	}
	d.streams++
	f.mu.Unlock()
	if first {
		// Registered before the read: a change published meanwhile is pending, and applying
		// it again after the read is harmless (a status is absolute), whereas a change missed
		// in between would leave the map wrong.
		d.load(ctx)
	}
	select {
	case <-d.ready:
	case <-ctx.Done():
		f.leave(d)
		return nil, ctx.Err()
	}
	if d.loadErr != nil {
		f.leave(d)
		return nil, d.loadErr
	}
	return d, nil
}

// leave ends one stream of d; the last stream of a date stops its feed.
func (f *SeatFeed) leave(d *dateFeed) {
	f.mu.Lock()
	d.streams--
	if d.streams == 0 {
		if f.dates[d.key] == d {
			delete(f.dates, d.key)
		}
		close(d.stop)
	}
	f.mu.Unlock()
	f.open.Add(-1)
}

// frameState is what the streams of a date read at a wake-up: immutable once published, so
// that a hundred thousand streams read it without a lock.
type frameState struct {
	seq    uint64   // the last frame's number; a stream at seq is up to date
	frames [][]byte // frames[seq%len] is frame seq, chunk-encoded, for the last len frames
	beat   uint64   // heartbeat count: a stream that saw an older one sends a ping
	wake   chan struct{}
}

// frame returns frame n, chunk-encoded, or nil when it has left the ring.
func (s *frameState) frame(n uint64) []byte {
	if n == 0 || n > s.seq || s.seq-n >= uint64(len(s.frames)) {
		return nil
	}
	return s.frames[n%uint64(len(s.frames))]
}

// dateFeed is the shared state of one date's streams.
type dateFeed struct {
	feed              *SeatFeed
	key               string
	concertID, dateID string
	read              seatReader
	streams           int // guarded by feed.mu

	ready   chan struct{} // closed once the map is loaded (or failed to)
	loadErr error
	stop    chan struct{} // closed when the last stream leaves

	state atomic.Pointer[frameState]

	mu      sync.Mutex
	pending pendingChanges // published since the last frame
	seats   []projections.SeatView
	index   map[int]int // seat number → position in seats
	ring    [][]byte
	seq     uint64
	beat    uint64
	snap    []byte // the snapshot event of frame snapSeq, chunk-encoded
	snapSeq uint64
}

func newDateFeed(f *SeatFeed, concertID, dateID string, read seatReader) *dateFeed {
	d := &dateFeed{feed: f, key: dateKey(concertID, dateID), concertID: concertID, dateID: dateID, read: read,
		ready: make(chan struct{}), stop: make(chan struct{}), ring: make([][]byte, f.cfg.Backlog)}
	d.state.Store(&frameState{frames: d.ring, wake: make(chan struct{})})
	return d
}

// load reads the map, applies what was published meanwhile and starts the frame loop.
func (d *dateFeed) load(ctx context.Context) {
	defer close(d.ready)
	seats, err := d.read(ctx, d.concertID, d.dateID)
	if err != nil {
		d.loadErr = err
		return
	}
	d.mu.Lock()
	d.seats = nonNil(seats)
	d.index = make(map[int]int, len(seats))
	for i, v := range seats {
		d.index[v.SeatNo] = i
	}
	d.applyLocked(d.pending.take())
	d.mu.Unlock()
	go d.loop()
}

func (d *dateFeed) publish(ch seatChange) {
	d.mu.Lock()
	d.pending.add(ch)
	d.mu.Unlock()
}

// loop makes a frame of the pending changes every frame interval, and a heartbeat every
// heartbeat, until the last stream leaves.
func (d *dateFeed) loop() {
	t := time.NewTimer(d.feed.FrameInterval())
	defer t.Stop()
	lastBeat := time.Now()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		}
		if d.feed.polling {
			d.poll()
		}
		beat := time.Since(lastBeat) >= d.feed.cfg.Heartbeat
		if beat {
			lastBeat = time.Now()
		}
		d.tick(beat)
		t.Reset(d.feed.FrameInterval())
	}
}

// tick makes a frame of the pending changes, counts a heartbeat when beat is set, and wakes
// the streams when either happened.
func (d *dateFeed) tick(beat bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	framed := d.frameLocked()
	if beat {
		d.beat++
	}
	if framed || beat {
		d.publishStateLocked()
	}
}

// poll re-reads the map and queues the seats whose status differs from the feed's map.
func (d *dateFeed) poll() {
	ctx, cancel := context.WithTimeout(context.Background(), seatPollInterval)
	defer cancel()
	seats, err := d.read(ctx, d.concertID, d.dateID)
	if err != nil {
		return // the next poll tries again
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, v := range seats {
		if i, ok := d.index[v.SeatNo]; ok && d.seats[i].Status != v.Status {
			d.pending.add(seatChange{seatNo: v.SeatNo, status: v.Status})
		}
	}
}

// frameLocked applies the pending changes to the map and, when a seat's status changed,
// adds a frame of those seats to the ring. It reports whether it did.
func (d *dateFeed) frameLocked() bool {
	changed := d.applyLocked(d.pending.take())
	if len(changed) == 0 {
		return false
	}
	body, err := json.Marshal(fiber.Map{"seats": changed})
	if err != nil {
		return false // a SeatView always encodes
	}
	d.seq++
	d.ring[d.seq%uint64(len(d.ring))] = sseChunk("seats", body)
	return true
}

// applyLocked applies changes to the map and returns the seats whose status they changed,
// with their new state. A seat the map does not have (which a concert that never changes
// cannot produce) is ignored.
func (d *dateFeed) applyLocked(changes []seatChange) []projections.SeatView {
	var changed []projections.SeatView
	for _, ch := range changes {
		i, ok := d.index[ch.seatNo]
		if !ok || d.seats[i].Status == ch.status {
			continue
		}
		d.seats[i].Status = ch.status
		changed = append(changed, d.seats[i])
	}
	return changed
}

// publishStateLocked hands the streams a new frameState and wakes them.
func (d *dateFeed) publishStateLocked() {
	frames := make([][]byte, len(d.ring))
	copy(frames, d.ring)
	old := d.state.Swap(&frameState{seq: d.seq, frames: frames, beat: d.beat, wake: make(chan struct{})})
	close(old.wake)
}

// snapshot returns the snapshot event of the map as of the last frame, chunk-encoded, and
// that frame's number. It is encoded once per frame, for whichever stream asks first.
func (d *dateFeed) snapshot() ([]byte, uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.snap == nil || d.snapSeq != d.seq {
		body, err := json.Marshal(fiber.Map{"seats": d.seats})
		if err != nil {
			return nil, 0, err
		}
		d.snap, d.snapSeq = sseChunk("snapshot", body), d.seq
	}
	return d.snap, d.seq, nil
}

// pendingChanges are the changes published since the last frame, coalesced: a seat appears
// once, with its last status, in the order seats first changed. It holds at most one entry
// per seat of the date, however fast changes come.
type pendingChanges struct {
	list  []seatChange
	index map[int]int // seat number → position in list
}

func (p *pendingChanges) add(ch seatChange) {
	if i, ok := p.index[ch.seatNo]; ok {
		p.list[i].status = ch.status
		return
	}
	if p.index == nil {
		p.index = map[int]int{}
	}
	p.index[ch.seatNo] = len(p.list)
	p.list = append(p.list, ch)
}

// take returns the coalesced changes and empties p.
func (p *pendingChanges) take() []seatChange {
	list := p.list
	p.list = nil
	clear(p.index)
	return list
}

// sseChunk encodes one server-sent event as one HTTP/1.1 chunk, ready to be written as it is
// to every stream: the encoding is done once per frame, not once per stream.
func sseChunk(event string, data []byte) []byte {
	n := len("event: ") + len(event) + len("\ndata: ") + len(data) + len("\n\n")
	b := make([]byte, 0, n+20)
	b = strconv.AppendInt(b, int64(n), 16)
	b = append(b, "\r\n"...)
	b = append(b, "event: "...)
	b = append(b, event...)
	b = append(b, "\ndata: "...)
	b = append(b, data...)
	b = append(b, "\n\n\r\n"...)
	return b
}

// sseRawChunk encodes raw SSE text (a comment, a retry field) as one HTTP/1.1 chunk.
func sseRawChunk(s string) []byte {
	b := strconv.AppendInt(nil, int64(len(s)), 16)
	b = append(b, "\r\n"...)
	b = append(b, s...)
	return append(b, "\r\n"...)
}
