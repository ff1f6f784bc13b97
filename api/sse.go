package api

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/booking-engine/booking/projections"
)

// seatPollInterval is how often a stream re-reads the seat map when no SeatFeed is wired.
const seatPollInterval = 500 * time.Millisecond

// seatStream answers GET /api/v1/concerts/{concertId}/dates/{dateId}/seats/stream with
// Server-Sent Events: a "snapshot" event holding the whole seat map (the body of GET
// .../seats), then a "seat" event per seat change ({"seatNo","price","status"}), and a
// ": ping" comment every heartbeat. Changes come from Deps.SeatFeed; without one the stream
// re-reads the seat map every seatPollInterval and sends what changed. An unknown concert or
// date is a 404 problem before the stream starts. The stream ends when the client goes away
// (a failed write; at the latest one heartbeat later) or when the server shuts down.
func (s *server) seatStream(c *fiber.Ctx) error {
	concertID, err := pathID(c, "concertId")
	if err != nil {
		return err
	}
	dateID, err := pathID(c, "dateId")
	if err != nil {
		return err
	}
	st := &seatStreamer{s: s, feed: s.deps.SeatFeed, concertID: concertID, dateID: dateID, heartbeat: defaultHeartbeat}
	if st.feed != nil {
		st.heartbeat = st.feed.heartbeat
		sub, ok := st.feed.subscribe(concertID, dateID)
		if !ok {
			return &apiError{status: fiber.StatusServiceUnavailable, code: CodeServiceUnavailable, retryAfter: 5 * time.Second,
				detail: "too many seat-map streams are open; retry later"}
		}
		st.sub = sub
	}
	seats, err := s.deps.Queries.Seats(c.UserContext(), concertID, dateID)
	if err != nil {
		st.close()
		return err
	}
	c.Status(fiber.StatusOK)
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set("X-Accel-Buffering", "no")    // a proxy must pass events on as they come
	if c.Method() == fiber.MethodHead { // headers only, should HEAD be routed here
		st.close()
		return nil
	}
	st.remember(seats)
	first, err := st.snapshotEvent(seats)
	if err != nil {
		st.close()
		return err
	}
	// The writer runs after the handler has returned, so it must not touch c: it takes what
	// it needs now. Done is closed when the server shuts down.
	st.done = c.Context().Done()
	st.conn = c.Context().Conn()
	c.Context().SetBodyStreamWriter(func(w *bufio.Writer) {
		defer st.close()
		st.w = w
		st.run(first)
	})
	return nil
}

// seatStreamer is one open seat-map stream.
type seatStreamer struct {
	s                 *server
	feed              *SeatFeed
	sub               *seatSub // nil: polling
	concertID, dateID string
	heartbeat         time.Duration

	done <-chan struct{}
	conn net.Conn
	w    *bufio.Writer

	seats map[int]projections.SeatView // the map as the client has it
}

func (st *seatStreamer) close() {
	if st.sub != nil {
		st.feed.unsubscribe(st.sub)
		st.sub = nil
	}
}

func (st *seatStreamer) remember(seats []projections.SeatView) {
	st.seats = make(map[int]projections.SeatView, len(seats))
	for _, v := range seats {
		st.seats[v.SeatNo] = v
	}
}

func (st *seatStreamer) snapshotEvent(seats []projections.SeatView) ([]byte, error) {
	return json.Marshal(fiber.Map{"seats": nonNil(seats)})
}

// run writes events until the client goes away, the server shuts down or the map cannot
// be read.
func (st *seatStreamer) run(snapshot []byte) {
	// retry: how long a browser's EventSource waits before reconnecting after a lost stream.
	if st.write("retry: 2000\n\n") != nil || st.event("snapshot", snapshot) != nil {
		return
	}
	ping := time.NewTicker(st.heartbeat)
	defer ping.Stop()
	var changes <-chan seatChange
	var lagged <-chan struct{}
	var poll <-chan time.Time
	if st.sub != nil {
		changes, lagged = st.sub.changes, st.sub.lagged
	} else {
		t := time.NewTicker(seatPollInterval)
		defer t.Stop()
		poll = t.C
	}
	for {
		var err error
		select {
		case <-st.done:
			return
		case <-ping.C:
			err = st.write(": ping\n\n")
		case ch := <-changes:
			err = st.change(ch)
		case <-lagged:
			st.sub.drain()
			err = st.resync()
		case <-poll:
			err = st.pollChanges()
		}
		if err != nil {
			st.s.log.Debug("seat-map stream ended", "concert", st.concertID, "date", st.dateID, "reason", err)
			return
		}
	}
}

// change sends one seat's new status; a seat the snapshot did not have (which a concert
// that never changes cannot produce) makes the stream start over from a fresh snapshot.
func (st *seatStreamer) change(ch seatChange) error {
	v, ok := st.seats[ch.seatNo]
	if !ok {
		return st.resync()
	}
	v.Status = ch.status
	st.seats[ch.seatNo] = v
	return st.seatEvent(v)
}

// resync sends a fresh snapshot of the whole map.
func (st *seatStreamer) resync() error {
	seats, err := st.read()
	if err != nil {
		return err
	}
	st.remember(seats)
	body, err := st.snapshotEvent(seats)
	if err != nil {
		return err
	}
	return st.event("snapshot", body)
}

// pollChanges re-reads the map and sends the seats whose status changed.
func (st *seatStreamer) pollChanges() error {
	seats, err := st.read()
	if err != nil {
		return err
	}
	for _, v := range seats {
		if old, ok := st.seats[v.SeatNo]; ok && old == v {
			continue
		}
		st.seats[v.SeatNo] = v
		if err := st.seatEvent(v); err != nil {
			return err
		}
	}
	return nil
}

func (st *seatStreamer) read() ([]projections.SeatView, error) {
	timeout := st.s.cfg.RequestTimeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return st.s.deps.Queries.Seats(ctx, st.concertID, st.dateID)
}

func (st *seatStreamer) seatEvent(v projections.SeatView) error {
	body, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return st.event("seat", body)
}

// event writes one event; data is JSON, which holds no line breaks.
func (st *seatStreamer) event(name string, data []byte) error {
	st.extendDeadline()
	_, _ = st.w.WriteString("event: ")
	_, _ = st.w.WriteString(name)
	_, _ = st.w.WriteString("\ndata: ")
	_, _ = st.w.Write(data)
	_, _ = st.w.WriteString("\n\n")
	return st.w.Flush() // a bufio.Writer keeps the first error, so Flush reports any
}

func (st *seatStreamer) write(s string) error {
	st.extendDeadline()
	_, _ = st.w.WriteString(s)
	return st.w.Flush()
}

// extendDeadline pushes the connection's write deadline past the next heartbeat: the
// server's WriteTimeout bounds a whole response, and a stream is one response that lasts.
func (st *seatStreamer) extendDeadline() {
	if st.conn != nil {
		_ = st.conn.SetWriteDeadline(time.Now().Add(2*st.heartbeat + 30*time.Second))
	}
}
