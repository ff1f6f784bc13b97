package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
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

// received drains what sub has buffered.
func received(sub *seatSub) []seatChange {
	var out []seatChange
	for {
		select {
		case ch := <-sub.changes:
			out = append(out, ch)
		default:
			return out
		}
	}
}

func TestSeatFeedPublish(t *testing.T) {
	tests := []struct {
		name string
		env  eventstore.Envelope
		want []seatChange
	}{
		{name: "a held seat is pushed as HELD", env: seatEnv(typeSeatHeld, "c1", "d1", 4), want: []seatChange{{4, aggregates.SeatHeldS}}},
		{name: "a released seat is pushed as AVAILABLE", env: seatEnv(typeSeatReleased, "c1", "d1", 4), want: []seatChange{{4, aggregates.SeatAvailable}}},
		{name: "a sold seat is pushed as SOLD", env: seatEnv(typeSeatSold, "c1", "d1", 4), want: []seatChange{{4, aggregates.SeatSoldS}}},
		{name: "a seat of another date is not pushed", env: seatEnv(typeSeatHeld, "c1", "d2", 4)},
		{name: "a seat of another concert is not pushed", env: seatEnv(typeSeatHeld, "c2", "d1", 4)},
		{name: "an event that is not a seat's is ignored", env: eventstore.Envelope{Type: typeSeatHeld, AggregateType: eventstore.TypeReservation, AggregateID: "c1.d1.4"}},
		{name: "another seat event type is ignored", env: seatEnv("SeatRenamed", "c1", "d1", 4)},
		{name: "a malformed seat ID is ignored", env: eventstore.Envelope{Type: typeSeatHeld, AggregateType: eventstore.TypeSeat, AggregateID: "c1.d1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewSeatFeed()
			sub, ok := f.subscribe("c1", "d1")
			if !ok {
				t.Fatal("subscribe refused")
			}
			defer f.unsubscribe(sub)
			f.Publish(tt.env)
			got := received(sub)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestSeatFeedNeverBlocksOnASlowSubscriber(t *testing.T) {
	f := NewSeatFeed()
	f.buffer = 2
	slow, _ := f.subscribe("c1", "d1")
	fast, _ := f.subscribe("c1", "d1")
	done := make(chan struct{})
	go func() {
		defer close(done)
		for n := 1; n <= 10; n++ {
			f.Publish(seatEnv(typeSeatHeld, "c1", "d1", n))
			if n == 2 {
				received(fast) // fast keeps up with the first two
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Publish blocked on a full subscriber")
	}
	if got := received(slow); len(got) != 2 || got[0].seatNo != 1 || got[1].seatNo != 2 {
		t.Fatalf("slow subscriber kept %v, want seats 1 and 2", got)
	}
	for _, sub := range []*seatSub{slow, fast} {
		select {
		case <-sub.lagged:
		default:
			t.Fatal("a subscriber that lost changes was not told to resynchronise")
		}
	}
}

func TestSeatFeedUnsubscribeForgetsTheSubscriber(t *testing.T) {
	f := NewSeatFeed()
	a, _ := f.subscribe("c1", "d1")
	b, _ := f.subscribe("c1", "d1")
	f.unsubscribe(a)
	f.unsubscribe(a) // twice is harmless
	if n := f.active.Load(); n != 1 {
		t.Fatalf("%d active, want 1", n)
	}
	f.Publish(seatEnv(typeSeatSold, "c1", "d1", 1))
	if len(received(a)) != 0 || len(received(b)) != 1 {
		t.Fatal("a change reached an ended subscription or missed a live one")
	}
	f.unsubscribe(b)
	if len(f.dates) != 0 || f.active.Load() != 0 {
		t.Fatalf("dates %v, active %d after every subscription ended", f.dates, f.active.Load())
	}
}

func TestSeatFeedRefusesSubscribersBeyondTheLimit(t *testing.T) {
	f := NewSeatFeed()
	f.active.Store(maxSeatSubscribers)
	if _, ok := f.subscribe("c1", "d1"); ok {
		t.Fatal("a subscription beyond the limit was accepted")
	}
	if f.active.Load() != maxSeatSubscribers {
		t.Fatal("a refused subscription was counted")
	}
}

func TestSeatFeedConcurrentPublishAndSubscribe(t *testing.T) {
	f := NewSeatFeed()
	f.buffer = 8
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
				f.Publish(seatEnv(typeSeatHeld, "c1", "d1", p*1000+i%1000))
			}
		}()
	}
	var subs sync.WaitGroup
	for range 8 {
		subs.Add(1)
		go func() {
			defer subs.Done()
			for range 200 {
				sub, ok := f.subscribe("c1", "d1")
				if !ok {
					t.Error("subscribe refused")
					return
				}
				received(sub)
				f.unsubscribe(sub)
			}
		}()
	}
	subs.Wait()
	close(stop)
	wg.Wait()
	if f.active.Load() != 0 || len(f.dates) != 0 {
		t.Fatalf("active %d, dates %v after every subscription ended", f.active.Load(), f.dates)
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

func (q *mapQueries) set(seatNo int, status aggregates.SeatStatus) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.seats[seatNo-1].Status = status
}

// TestSeatStreamerResynchronisesALaggingClient drives one stream whose subscription lost
// changes: it must send a fresh snapshot, after which the client's map is the read model's.
func TestSeatStreamerResynchronisesALaggingClient(t *testing.T) {
	q := &mapQueries{seats: []projections.SeatView{{SeatNo: 1, Price: 10, Status: aggregates.SeatAvailable}, {SeatNo: 2, Price: 20, Status: aggregates.SeatAvailable}}}
	f := NewSeatFeed()
	f.buffer = 1
	sub, _ := f.subscribe("c1", "d1")
	s := &server{deps: Deps{Queries: q}, log: slog.New(slog.DiscardHandler)}
	st := &seatStreamer{s: s, feed: f, sub: sub, concertID: "c1", dateID: "d1", heartbeat: time.Hour}
	first, _ := q.Seats(context.Background(), "c1", "d1")
	st.remember(first)
	snapshot, err := st.snapshotEvent(first)
	if err != nil {
		t.Fatal(err)
	}

	// While nobody reads: seat 1 is held then sold, seat 2 held; the buffer keeps only the
	// first change, which is stale by now.
	q.set(1, aggregates.SeatHeldS)
	f.Publish(seatEnv(typeSeatHeld, "c1", "d1", 1))
	q.set(1, aggregates.SeatSoldS)
	f.Publish(seatEnv(typeSeatSold, "c1", "d1", 1))
	q.set(2, aggregates.SeatHeldS)
	f.Publish(seatEnv(typeSeatHeld, "c1", "d1", 2))

	pr, pw := io.Pipe()
	done := make(chan struct{})
	st.done = done
	st.w = bufio.NewWriter(pw)
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		defer f.unsubscribe(sub)
		st.run(snapshot)
		_ = pw.Close()
	}()
	defer func() {
		close(done)
		go func() { _, _ = io.Copy(io.Discard, pr) }()
		<-finished
	}()

	client := map[int]string{}
	events := readEvents(t, pr)
	want := map[int]string{1: "SOLD", 2: "HELD"}
	snapshots := 0
	deadline := time.After(10 * time.Second)
	for {
		var ev sseEvent
		select {
		case e, ok := <-events:
			if !ok {
				t.Fatalf("stream ended with map %v after %d snapshots", client, snapshots)
			}
			ev = e
		case <-deadline:
			t.Fatalf("map %v after %d snapshots, want %v after a second snapshot", client, snapshots, want)
		}
		switch ev.name {
		case "snapshot":
			snapshots++
			var body struct{ Seats []projections.SeatView }
			decode(t, ev.data, &body)
			for _, v := range body.Seats {
				client[v.SeatNo] = string(v.Status)
			}
		case "seat":
			var v projections.SeatView
			decode(t, ev.data, &v)
			client[v.SeatNo] = string(v.Status)
		}
		if snapshots >= 2 && fmt.Sprint(client) == fmt.Sprint(want) {
			return
		}
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
		name       string
		subscribed string // the date the subscribers watch; "" for none
		subs       int
	}{
		{name: "nobody watches", subs: 0},
		{name: "100 streams watch another date", subscribed: "d2", subs: 100},
		{name: "100 streams watch this date", subscribed: "d1", subs: 100},
	}
	env := seatEnv(typeSeatHeld, "c1", "d1", 7)
	for _, bc := range cases {
		b.Run(bc.name, func(b *testing.B) {
			f := NewSeatFeed()
			f.buffer = 1 // full after the first change: measures the lagging path, which never blocks
			for range bc.subs {
				f.subscribe("c1", bc.subscribed)
			}
			b.ReportAllocs()
			for b.Loop() {
				f.Publish(env)
			}
		})
	}
}
