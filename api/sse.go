package api

import (
	"errors"
	"log/slog"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
)

// Chunks every stream writes, encoded once.
var (
	// retry: how long a browser's EventSource waits before reconnecting after a lost stream.
	retryChunk = sseRawChunk("retry: 2000\n\n")
	pingChunk  = sseRawChunk(": ping\n\n")
	// lastChunk ends the chunked body, so a client sees a clean end at shutdown.
	lastChunk = []byte("0\r\n\r\n")
)

// seatStream answers GET /api/v1/concerts/{concertId}/dates/{dateId}/seats/stream with
// Server-Sent Events: a "snapshot" event holding the whole seat map (the body of GET
// .../seats), then a "seats" event per frame ({"seats":[{"seatNo","price","status"}…]}, each
// seat that changed since the last frame once, with its last state), and a ": ping" comment
// every heartbeat. An unknown concert or date is a 404 problem before the stream starts;
// beyond --max-streams the answer is 503 with Retry-After.
//
// Once the headers are decided the connection is taken over from fasthttp (hijacked): the
// stream then costs one goroutine and its socket, not fasthttp's per-connection read and write
// buffers. The stream ends when the client goes away (a failed write, or the connection seen
// closed at a heartbeat), when a write stays blocked for a heartbeat (a client that stopped
// reading), or when the server shuts down.
func (s *server) seatStream(c *fiber.Ctx) error {
	concertID, err := pathID(c, "concertId")
	if err != nil {
		return err
	}
	dateID, err := pathID(c, "dateId")
	if err != nil {
		return err
	}
	d, err := s.seatFeed.join(c.UserContext(), concertID, dateID, s.deps.Queries.Seats)
	if errors.Is(err, errTooManyStreams) {
		return &apiError{status: fiber.StatusServiceUnavailable, code: CodeServiceUnavailable, retryAfter: 5 * time.Second,
			detail: "too many seat-map streams are open; retry later"}
	}
	if err != nil {
		return err
	}
	c.Status(fiber.StatusOK)
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set("X-Accel-Buffering", "no") // a proxy must pass events on as they come
	if c.Method() == fiber.MethodHead {
		s.seatFeed.leave(d)
		return nil
	}
	// The body is chunked, written by the stream itself.
	c.Response().Header.SetContentLength(-1)
	fc := c.Context()
	done := fc.Done() // closed when the server shuts down
	fc.HijackSetNoResponse(true)
	// fasthttp skips the hijack when the connection fails in between; the stream's place is
	// then given back after a while instead of being held for good.
	var started atomic.Bool
	abandon := time.AfterFunc(hijackWait, func() {
		if started.CompareAndSwap(false, true) {
			s.seatFeed.leave(d)
		}
	})
	fc.Hijack(func(net.Conn) {
		if !started.CompareAndSwap(false, true) {
			_ = fc.Conn().Close() // abandoned already (KeepHijackedConns: fasthttp leaves it open)
			return
		}
		abandon.Stop()
		// fasthttp calls this after the handler chain has returned, so the headers are final.
		// The argument reads through fasthttp's pooled reader, released when this returns:
		// the stream keeps the bare connection, and never reads.
		st := &seatStreamer{d: d, conn: fc.Conn(), done: done, log: s.log, beat: d.state.Load().beat}
		head := append([]byte(nil), fc.Response.Header.Header()...)
		go st.run(head)
	})
	return nil
}

// hijackWait bounds the time from a stream's admission to fasthttp handing its connection
// over, which is immediate unless the connection failed.
const hijackWait = 30 * time.Second

// seatStreamer is one open seat-map stream: a connection and a position in its date's
// frames. It keeps no copy of the map and no buffer.
type seatStreamer struct {
	d    *dateFeed
	conn net.Conn
	done <-chan struct{}
	log  *slog.Logger
	seq  uint64 // the last frame the client has
	beat uint64 // the last heartbeat it was sent
}

// run writes the headers and the snapshot, then follows the date's frames until the stream
// ends.
func (st *seatStreamer) run(head []byte) {
	defer st.end()
	snap, seq, err := st.d.snapshot()
	if err != nil {
		return
	}
	st.seq = seq
	if st.write(head, retryChunk, snap) != nil {
		return
	}
	for {
		state := st.d.state.Load()
		var err error
		switch {
		case state.seq > st.seq:
			err = st.catchUp(state)
		case state.beat != st.beat:
			st.beat = state.beat
			if err = st.write(pingChunk); err == nil && peerClosed(st.conn) {
				err = errPeerClosed
			}
		}
		if err != nil {
			st.log.Debug("seat-map stream ended", "concert", st.d.concertID, "date", st.d.dateID, "reason", err)
			return
		}
		select {
		case <-state.wake:
		case <-st.d.stop: // cannot happen while this stream is open; kept for safety
			return
		case <-st.done:
			_ = st.write(lastChunk)
			return
		}
	}
}

// catchUp sends the frames after the client's, in one write, or the snapshot when some of
// them have left the ring.
func (st *seatStreamer) catchUp(state *frameState) error {
	feed := st.d.feed
	st.beat = state.beat // a frame is as good as a ping
	if first := state.frame(st.seq + 1); first != nil {
		if state.seq == st.seq+1 {
			st.seq = state.seq
			feed.frames.Add(1)
			return st.write(first)
		}
		bufs := make([][]byte, 0, state.seq-st.seq)
		for n := st.seq + 1; n <= state.seq; n++ {
			bufs = append(bufs, state.frame(n))
		}
		st.seq = state.seq
		feed.frames.Add(1)
		return st.write(bufs...)
	}
	snap, seq, err := st.d.snapshot()
	if err != nil {
		return err
	}
	st.seq = seq
	feed.frames.Add(1)
	feed.snapshots.Add(1)
	return st.write(snap)
}

// write writes bufs in one system call. A client that does not read for a whole heartbeat
// fails it.
func (st *seatStreamer) write(bufs ...[]byte) error {
	_ = st.conn.SetWriteDeadline(time.Now().Add(st.d.feed.cfg.Heartbeat))
	if len(bufs) == 1 {
		_, err := st.conn.Write(bufs[0])
		return err
	}
	nb := net.Buffers(bufs)
	_, err := nb.WriteTo(st.conn)
	return err
}

func (st *seatStreamer) end() {
	_ = st.conn.Close()
	st.d.feed.leave(st.d)
}

// errPeerClosed ends a stream whose client closed its side of the connection.
var errPeerClosed = errors.New("the client closed the connection")

// peerClosed reports whether the client has closed the connection (or reset it), without
// blocking and without consuming what it may have sent. A client that closes without
// resetting leaves the next writes succeeding; peeking lets the heartbeat notice it at once.
func peerClosed(conn net.Conn) bool {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	closed := false
	var b [1]byte
	_ = raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		closed = (n == 0 && err == nil) || (err != nil && err != syscall.EAGAIN && err != syscall.EINTR)
		return true
	})
	return closed
}
