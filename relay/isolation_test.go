package relay

import (
	"context"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/booking-engine/booking/eventstore"
	"github.com/booking-engine/booking/internal/testpoll"
	"github.com/booking-engine/booking/relay/mockplatform"
)

// The relay is outside the request path by construction: the packages a request runs through
// to commit an event never import it, so nothing they do can wait for it. (api imports relay
// only for the admin dead-letter endpoints; cmd wires it.)
func TestTheRequestPathNeverImportsTheRelay(t *testing.T) {
	const self = "github.com/booking-engine/booking/relay"
	for _, dir := range []string{"../app", "../eventstore", "../aggregates", "../projections"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil {
			t.Fatal(err)
		}
		if len(files) == 0 {
			t.Fatalf("no Go files in %s: the check would prove nothing", dir)
		}
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), file, nil, parser.ImportsOnly)
			if err != nil {
				t.Fatalf("parse %s: %v", file, err)
			}
			for _, imp := range f.Imports {
				if path, _ := strconv.Unquote(imp.Path.Value); path == self || strings.HasPrefix(path, self+"/") {
					t.Errorf("%s imports %s: the request path must not depend on the relay", file, path)
				}
			}
		}
	}
}

// With the platform taking 10 s per answer and every delivery slot taken, appends still
// complete: the relay holds requests at the platform, never the event log.
func TestAppendsCompleteWhileThePlatformTakesTenSecondsPerAnswer(t *testing.T) {
	h := newJetStream(t)
	platform := startMock(t, mockplatform.Options{Latency: 10 * time.Second})
	r := startRelay(t, h, Options{URL: platform.URL(), Concurrency: 2, Timeout: time.Minute})
	appendBookings(t, h, 2)
	testpoll.Eventually(t, 30*time.Second, "the relay waiting on the platform with every slot", func() bool {
		return platform.InFlight() == 2 && len(r.slots) == 2
	})

	facts := appendBookings(t, h, 50)
	if len(facts) != 150 {
		t.Fatalf("appended %d facts, want 150", len(facts))
	}
	if n, s := platform.InFlight(), platform.Stats(); n != 2 || s.Unique != 0 {
		t.Fatalf("platform: %d in flight, %+v; the appends were meant to run while it stalled", n, s)
	}
}

// BenchmarkAppend compares appends with no relay against appends while the relay is stuck on
// a platform that answers in 10 s; the figures should be the same within noise.
func BenchmarkAppend(b *testing.B) {
	for _, bc := range []struct {
		name    string
		latency time.Duration
		relay   bool
	}{
		{name: "no relay"},
		{name: "relay on a platform answering in 10s", latency: 10 * time.Second, relay: true},
	} {
		b.Run(bc.name, func(b *testing.B) {
			h := newJetStream(b)
			if bc.relay {
				platform := startMock(b, mockplatform.Options{Latency: bc.latency})
				r, err := New(h.js, Options{URL: platform.URL(), Concurrency: 4, Timeout: time.Minute})
				if err != nil {
					b.Fatal(err)
				}
				if err := r.Start(context.Background()); err != nil {
					b.Fatal(err)
				}
				b.Cleanup(r.Close)
			}
			if bc.relay {
				// Prime the relay so it is stuck at the platform before the clock starts.
				appendBookings(b, h, 4)
			}
			ctx := context.Background()
			seat, held := []byte(`{"reservationId":"r","seatNo":1}`), []byte(`{"reservationId":"r","seatNos":[1]}`)
			for i := 0; b.Loop(); i++ {
				// One append as a hold makes it: the first commit of a date, at version 0, with
				// the seat's and the reservation's event.
				agg := eventstore.AggregateRef{Type: eventstore.TypeDate, ID: "c1.d" + strconv.Itoa(i)}
				events := []eventstore.Event{
					{Type: "SeatHeld", Data: seat, Ref: &eventstore.AggregateRef{Type: eventstore.TypeSeat, ID: agg.ID + ".1"}},
					{Type: "ReservationHeld", Data: held, Ref: &eventstore.AggregateRef{Type: eventstore.TypeReservation, ID: "r" + strconv.Itoa(i)}},
				}
				if _, err := h.store.Append(ctx, agg, 0, events, agg.ID, eventstore.Metadata{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRelayThroughput measures facts delivered per second to an in-process mock platform
// that answers at once, from a backlog (one op = one fact; non-facts of the same bookings are
// acknowledged along the way).
func BenchmarkRelayThroughput(b *testing.B) {
	for _, concurrency := range []int{4, 16, 64} {
		b.Run("concurrency "+strconv.Itoa(concurrency), func(b *testing.B) {
			h := newJetStream(b)
			platform := startMock(b, mockplatform.Options{})
			facts := appendBookings(b, h, (b.N+2)/3)
			r, err := New(h.js, Options{URL: platform.URL(), Concurrency: concurrency})
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			if err := r.Start(context.Background()); err != nil {
				b.Fatal(err)
			}
			testpoll.Eventually(b, 10*time.Minute, "the backlog delivered", func() bool { return platform.Stats().Unique == len(facts) })
			b.StopTimer()
			r.Close()
			b.ReportMetric(float64(len(facts))/b.Elapsed().Seconds(), "facts/s")
		})
	}
}
