package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
	"github.com/booking-engine/booking/projections"
)

func seatEnv(typ, concertID, dateID string, seatNo int) eventstore.Envelope {
	return eventstore.Envelope{Type: typ, AggregateType: eventstore.TypeSeat, AggregateID: fmt.Sprintf("%s.%s.%d", concertID, dateID, seatNo)}
}

func change(seatNo int, status aggregates.SeatStatus) seatChange {
	return seatChange{seatNo: seatNo, status: status}
}

func TestPendingChangesCoalesce(t *testing.T) {
	const (
		av   = aggregates.SeatStatusAvailable
		held = aggregates.SeatStatusHeld
		sold = aggregates.SeatStatusSold
	)
	tests := []struct {
		name string
		add  []seatChange
		want []seatChange
	}{
		{name: "nothing published makes no changes"},
		{name: "one change is kept as it is", add: []seatChange{change(4, held)}, want: []seatChange{change(4, held)}},
		{name: "a seat that changed twice is kept once with its last status", add: []seatChange{change(4, held), change(4, sold)}, want: []seatChange{change(4, sold)}},
		{name: "a seat held and released is kept as available", add: []seatChange{change(4, held), change(4, av)}, want: []seatChange{change(4, av)}},
		{name: "seats keep the order in which they first changed", add: []seatChange{change(9, held), change(2, held), change(9, sold), change(5, held)},
			want: []seatChange{change(9, sold), change(2, held), change(5, held)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p pendingChanges
			for _, ch := range tt.add {
				p.add(ch)
			}
			if got := p.take(); fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("took %v, want %v", got, tt.want)
			}
			if again := p.take(); len(again) != 0 {
				t.Fatalf("a second take returned %v, want nothing", again)
			}
		})
	}
}

// loadedFeed returns the feed of c1/d1 with the given seats, loaded, with no frame loop
// running: the test makes frames with tick.
func loadedFeed(t *testing.T, cfg SeatFeedConfig, seats ...projections.SeatView) (*SeatFeed, *dateFeed) {
	t.Helper()
	f := NewSeatFeed(cfg)
	read := func(context.Context, string, string) ([]projections.SeatView, error) {
		return append([]projections.SeatView(nil), seats...), nil
	}
	f.open.Add(1)
	d := newDateFeed(f, "c1", "d1", read)
	d.streams = 1
	f.dates[d.key] = d
	close(d.stop) // the loop load starts returns at once
	d.load(context.Background())
	if d.loadErr != nil {
		t.Fatal(d.loadErr)
	}
	return f, d
}

func seatsOf(n int) []projections.SeatView {
	var out []projections.SeatView
	for i := 1; i <= n; i++ {
		out = append(out, projections.SeatView{SeatNo: i, Price: int64(10 * i), Status: aggregates.SeatStatusAvailable})
	}
	return out
}

func TestSeatFeedPublish(t *testing.T) {
	tests := []struct {
		name string
		env  eventstore.Envelope
		want string // the frame's data; "" for no frame
	}{
		{name: "a held seat is framed as HELD", env: seatEnv(typeSeatHeld, "c1", "d1", 4), want: `{"seats":[{"seatNo":4,"price":40,"status":"HELD"}]}`},
		{name: "a sold seat is framed as SOLD", env: seatEnv(typeSeatSold, "c1", "d1", 4), want: `{"seats":[{"seatNo":4,"price":40,"status":"SOLD"}]}`},
		{name: "a released seat that was available makes no frame", env: seatEnv(typeSeatReleased, "c1", "d1", 4)},
		{name: "a seat the map does not have makes no frame", env: seatEnv(typeSeatHeld, "c1", "d1", 99)},
		{name: "a seat of another date makes no frame", env: seatEnv(typeSeatHeld, "c1", "d2", 4)},
		{name: "a seat of another concert makes no frame", env: seatEnv(typeSeatHeld, "c2", "d1", 4)},
		{name: "an event that is not a seat's is ignored", env: eventstore.Envelope{Type: typeSeatHeld, AggregateType: eventstore.TypeReservation, AggregateID: "c1.d1.4"}},
		{name: "another seat event type is ignored", env: seatEnv("SeatRenamed", "c1", "d1", 4)},
		{name: "a malformed seat ID is ignored", env: eventstore.Envelope{Type: typeSeatHeld, AggregateType: eventstore.TypeSeat, AggregateID: "c1.d1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, d := loadedFeed(t, SeatFeedConfig{}, seatsOf(5)...)
			f.Publish(tt.env)
			d.tick(false)
			state := d.state.Load()
			if tt.want == "" {
				if state.seq != 0 {
					t.Fatalf("frame %d made, want none", state.seq)
				}
				return
			}
			if got := string(state.frame(1)); got != string(sseChunk("seats", []byte(tt.want))) {
				t.Fatalf("frame %q, want data %s", got, tt.want)
			}
		})
	}
}

func TestSeatFeedFramesCarryEverySeatChangedSinceTheLastFrameOnce(t *testing.T) {
	f, d := loadedFeed(t, SeatFeedConfig{}, seatsOf(5)...)
	for _, e := range []eventstore.Envelope{
		seatEnv(typeSeatHeld, "c1", "d1", 2), seatEnv(typeSeatSold, "c1", "d1", 2),
		seatEnv(typeSeatHeld, "c1", "d1", 4), seatEnv(typeSeatReleased, "c1", "d1", 4), // back as it was
		seatEnv(typeSeatHeld, "c1", "d1", 5),
	} {
		f.Publish(e)
	}
	d.tick(false)
	want := `{"seats":[{"seatNo":2,"price":20,"status":"SOLD"},{"seatNo":5,"price":50,"status":"HELD"}]}`
	if got := string(d.state.Load().frame(1)); got != string(sseChunk("seats", []byte(want))) {
		t.Fatalf("frame %q, want data %s", got, want)
	}
	d.tick(false)
	if seq := d.state.Load().seq; seq != 1 {
		t.Fatalf("a tick without changes made frame %d", seq)
	}
}

// recordingConn is a connection that records what is written to it.
type recordingConn struct {
	net.Conn
	written bytes.Buffer
}

func (c *recordingConn) Write(p []byte) (int, error)      { return c.written.Write(p) }
func (c *recordingConn) SetWriteDeadline(time.Time) error { return nil }

// events decodes the chunked event stream written so far, and empties the buffer.
func (c *recordingConn) events(t *testing.T) []sseEvent {
	t.Helper()
	var body bytes.Buffer
	r := bufio.NewReader(&c.written)
	for {
		var n int
		if _, err := fmt.Fscanf(r, "%x\r\n", &n); err != nil {
			break
		}
		chunk := make([]byte, n+2)
		if _, err := io.ReadFull(r, chunk); err != nil {
			t.Fatalf("a chunk cut short: %v", err)
		}
		body.Write(chunk[:n])
	}
	var out []sseEvent
	for ev := range readEvents(t, &body) {
		out = append(out, ev)
	}
	return out
}

func TestSeatStreamerCatchUp(t *testing.T) {
	tests := []struct {
		name    string
		behind  int // frames made since the stream's position
		backlog int
		want    []string // the events the stream writes
	}{
		{name: "a stream one frame behind gets that frame", behind: 1, backlog: 4, want: []string{"seats"}},
		{name: "a stream several frames behind gets each of them, in order", behind: 3, backlog: 4, want: []string{"seats", "seats", "seats"}},
		{name: "a stream as far behind as the backlog still gets the frames", behind: 4, backlog: 4, want: []string{"seats", "seats", "seats", "seats"}},
		{name: "a stream further behind than the backlog gets a fresh snapshot instead", behind: 5, backlog: 4, want: []string{"snapshot"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, d := loadedFeed(t, SeatFeedConfig{Backlog: tt.backlog}, seatsOf(10)...)
			conn := &recordingConn{}
			st := &seatStreamer{d: d, conn: conn}
			for n := 1; n <= tt.behind; n++ {
				f.Publish(seatEnv(typeSeatHeld, "c1", "d1", n))
				d.tick(false)
			}
			if err := st.catchUp(d.state.Load()); err != nil {
				t.Fatal(err)
			}
			evs := conn.events(t)
			var names []string
			client := map[int]string{}
			for _, ev := range evs {
				names = append(names, ev.name)
				var body struct{ Seats []projections.SeatView }
				decode(t, ev.data, &body)
				for _, v := range body.Seats {
					client[v.SeatNo] = string(v.Status)
				}
			}
			if fmt.Sprint(names) != fmt.Sprint(tt.want) {
				t.Fatalf("wrote %v, want %v", names, tt.want)
			}
			for n := 1; n <= tt.behind; n++ {
				if client[n] != "HELD" {
					t.Fatalf("the client has seat %d %q, want HELD", n, client[n])
				}
			}
			if st.seq != uint64(tt.behind) {
				t.Fatalf("the stream is at frame %d, want %d", st.seq, tt.behind)
			}
			if got := f.FramesSent(); got != 1 {
				t.Fatalf("%d messages counted, want 1: a stream catches up in one write", got)
			}
		})
	}
}

func TestFrameIntervalGrowsWithTheCrowd(t *testing.T) {
	tests := []struct {
		name    string
		streams int
		want    time.Duration
	}{
		{name: "no stream gets the minimum", streams: 0, want: 100 * time.Millisecond},
		{name: "a few streams get the minimum", streams: 50, want: 100 * time.Millisecond},
		{name: "five thousand streams still get the minimum", streams: 5_000, want: 100 * time.Millisecond},
		{name: "twenty thousand streams get 400 ms", streams: 20_000, want: 400 * time.Millisecond},
		{name: "fifty thousand streams get a second", streams: 50_000, want: time.Second},
		{name: "a hundred thousand streams still get a second", streams: 100_000, want: time.Second},
		{name: "a million streams still get a second", streams: 1_000_000, want: time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := frameInterval(tt.streams, 100*time.Millisecond); got != tt.want {
				t.Fatalf("%s, want %s", got, tt.want)
			}
		})
	}
}

// mapQueries serves one mutable seat map for c1/d1; nothing else is asked of it.
type mapQueries struct {
	projections.Queries
	mu    sync.Mutex
	seats []projections.SeatView
}

func (q *mapQueries) Seats(_ context.Context, concertID, dateID string) ([]projections.SeatView, error) {
	if concertID != "c1" || dateID != "d1" {
		return nil, aggregates.ErrDateNotFound
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]projections.SeatView(nil), q.seats...), nil
}

func TestSeatFeedJoin(t *testing.T) {
	q := &mapQueries{seats: seatsOf(3)}
	tests := []struct {
		name    string
		date    string
		open    int // streams already open
		err     error
		streams int // open after the join
	}{
		{name: "a stream of a known date is admitted", date: "d1", streams: 1},
		{name: "a stream of an unknown date is refused with the read's error and not counted", date: "d9", err: aggregates.ErrDateNotFound},
		{name: "a stream beyond the limit is refused and not counted", date: "d1", open: 2, err: errTooManyStreams, streams: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewSeatFeed(SeatFeedConfig{MaxStreams: 2})
			f.open.Store(int64(tt.open))
			d, err := f.join(context.Background(), "c1", tt.date, q.Seats)
			if !errors.Is(err, tt.err) {
				t.Fatalf("join: %v, want %v", err, tt.err)
			}
			if f.Streams() != tt.streams {
				t.Fatalf("%d streams open, want %d", f.Streams(), tt.streams)
			}
			if d != nil {
				f.leave(d)
			}
			if tt.open == 0 && (f.Streams() != 0 || len(f.dates) != 0) {
				t.Fatalf("%d streams, dates %v after the stream left", f.Streams(), f.dates)
			}
		})
	}
}

func TestSeatFeedConcurrentPublishJoinAndLeave(t *testing.T) {
	q := &mapQueries{seats: seatsOf(1000)}
	f := NewSeatFeed(SeatFeedConfig{MinFrameInterval: time.Millisecond})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for p := range 4 { // one publisher per stream, as the projections engine does
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				f.Publish(seatEnv(typeSeatHeld, "c1", "d1", 1+(p*250+i)%1000))
			}
		}()
	}
	var streams sync.WaitGroup
	for range 8 {
		streams.Add(1)
		go func() {
			defer streams.Done()
			for range 100 {
				d, err := f.join(context.Background(), "c1", "d1", q.Seats)
				if err != nil {
					t.Error(err)
					return
				}
				_ = d.state.Load().frame(d.state.Load().seq)
				if _, _, err := d.snapshot(); err != nil {
					t.Error(err)
				}
				f.leave(d)
			}
		}()
	}
	streams.Wait()
	close(stop)
	wg.Wait()
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.Streams() != 0 || len(f.dates) != 0 {
		t.Fatalf("%d streams, dates %v after every stream left", f.Streams(), f.dates)
	}
}

func decode(t *testing.T, data string, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(data), v); err != nil {
		t.Fatalf("event data %q: %v", data, err)
	}
}

type sseEvent struct{ name, data string }

// readEvents parses an event stream into its events (comments are dropped) until it ends or
// 10 seconds pass.
func readEvents(t *testing.T, r io.Reader) <-chan sseEvent {
	t.Helper()
	out := make(chan sseEvent)
	go func() {
		defer close(out)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.data != "" {
					select {
					case out <- ev:
					case <-time.After(10 * time.Second):
						return
					}
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, "event: "):
				ev.name = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data = strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return out
}

// BenchmarkSeatFeedPublish measures what Publish adds to each applied event on the
// projection goroutines.
func BenchmarkSeatFeedPublish(b *testing.B) {
	cases := []struct {
		name    string
		watched string // the date the streams watch; "" for none
	}{
		{name: "nobody watches"},
		{name: "streams watch another date", watched: "d2"},
		{name: "streams watch this date", watched: "d1"},
	}
	env := seatEnv(typeSeatHeld, "c1", "d1", 7)
	read := func(context.Context, string, string) ([]projections.SeatView, error) { return seatsOf(10), nil }
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			f := NewSeatFeed(SeatFeedConfig{})
			if bc.watched != "" {
				d, err := f.join(context.Background(), "c1", bc.watched, read)
				if err != nil {
					b.Fatal(err)
				}
				defer f.leave(d)
			}
			b.ReportAllocs()
			for b.Loop() {
				f.Publish(env)
			}
		})
	}
}

// BenchmarkStreamFrameWrite measures what writing one frame to one stream costs: a write(2)
// of a small chunk to a loopback TCP connection, the receiving side's kernel work included,
// across many connections as a frame fan-out does. The frame interval rule prices it.
func BenchmarkStreamFrameWrite(b *testing.B) {
	const conns = 256
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	var writers []net.Conn
	for range conns {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		s, err := ln.Accept()
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		go func() { _, _ = io.Copy(io.Discard, c) }()
		writers = append(writers, s)
	}
	frame := sseChunk("seats", []byte(`{"seats":[{"seatNo":17,"price":1000,"status":"HELD"},{"seatNo":18,"price":1000,"status":"SOLD"}]}`))
	b.SetBytes(int64(len(frame)))
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		if _, err := writers[i%conns].Write(frame); err != nil {
			b.Fatal(err)
		}
	}
}
