package projections

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/app"
	"github.com/booking-engine/booking/eventstore"
)

// benchLog writes about n events (a commit more at most) of a booking-shaped mix (hold, pay,
// sell, charge) to an embedded JetStream store, published asynchronously in the commits the
// app writes: a hold, a payment's lock and its confirmation with the sale are commits of the
// seat's date.
func benchLog(b *testing.B, n int) *eventstore.JetStreamStore {
	b.Helper()
	ctx := context.Background()
	store, err := eventstore.Open(ctx, eventstore.Options{DataDir: b.TempDir(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = store.Close() })
	js := store.JetStream()
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	count := 0
	// pub publishes one commit of events to agg; a date's events name their seat or
	// reservation, as the app's commits do.
	pub := func(typ, id string, evs ...aggregates.Event) {
		if count >= n {
			return
		}
		count += len(evs)
		agg := eventstore.AggregateRef{Type: typ, ID: id}
		_, subject, err := eventstore.Place(agg)
		if err != nil {
			b.Fatal(err)
		}
		batch := make([]eventstore.Event, len(evs))
		for i, ev := range evs {
			data, _ := aggregates.Encode(ev)
			batch[i] = eventstore.Event{Type: ev.EventType(), Data: data, Ref: app.EventRef(agg, ev)}
		}
		env, err := eventstore.EncodeCommit(agg, batch, eventstore.Metadata{OccurredAt: at})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := js.PublishAsync(subject, env); err != nil {
			b.Fatal(err)
		}
	}
	const concerts, dates, seats = 50, 10, 500
	for c := range concerts {
		var ds []aggregates.DateSpec
		for d := range dates {
			ds = append(ds, aggregates.DateSpec{DateID: fmt.Sprintf("d%d", d), StartsAt: at, SeatCount: seats, Price: 100})
		}
		id := fmt.Sprintf("c%d", c)
		pub(eventstore.TypeConcert, id, aggregates.ConcertCreated{ConcertID: id, Title: id, Dates: ds, SalesOpenedAt: at})
	}
	for i := 0; count < n; i++ {
		at = at.Add(time.Millisecond)
		c, d, s := i%concerts, (i/concerts)%dates, 1+(i/(concerts*dates))%seats
		dk := fmt.Sprintf("c%d.d%d", c, d)
		// Reservation and payment IDs are UUIDv7, as the app makes them.
		res, pay, user := uuid.Must(uuid.NewV7()).String(), uuid.Must(uuid.NewV7()).String(), fmt.Sprintf("u%d", i%5000)
		wallet := eventstore.WalletGroupOf(user).ID
		pub(eventstore.TypeWalletGroup, wallet, aggregates.PointsCharged{Amount: 100, Reference: res, UserID: user})
		pub(eventstore.TypeDate, dk, aggregates.SeatHeld{ReservationID: res, UserID: user, HeldUntil: at.Add(5 * time.Minute), SeatNo: s},
			aggregates.ReservationHeld{ReservationID: res, UserID: user, ConcertID: fmt.Sprintf("c%d", c),
				DateID: fmt.Sprintf("d%d", d), SeatNo: s, SeatNos: []int{s}, Price: 100, HeldAt: at, HeldUntil: at.Add(5 * time.Minute)})
		pub(eventstore.TypeDate, dk, aggregates.PaymentStarted{PaymentID: pay, ReservationID: res, UserID: user, Amount: 100, StartedAt: at},
			aggregates.ReservationPaymentStarted{ReservationID: res, PaymentID: pay})
		pub(eventstore.TypeWalletGroup, wallet, aggregates.PointsDebited{Amount: 100, PaymentID: pay, UserID: user})
		pub(eventstore.TypeDate, dk, aggregates.ReservationConfirmed{ReservationID: res, PaymentID: pay, ConfirmedAt: at},
			aggregates.SeatSold{ReservationID: res, PaymentID: pay, SeatNo: s}, aggregates.PaymentCompleted{PaymentID: pay, CompletedAt: at})
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(5 * time.Minute):
		b.Fatal("publishing the benchmark log did not finish")
	}
	return store
}

// BenchmarkRebuild compares an offline rebuild of every projection with a raw replay of the
// same embedded JetStream store in the same run. PROJECTIONS_BENCH_EVENTS sets the log size
// (default 1,000,000).
func BenchmarkRebuild(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("PROJECTIONS_BENCH_EVENTS")); err == nil && v > 0 {
		n = v
	}
	store := benchLog(b, n)
	b.ResetTimer()
	// Each iteration measures both three times, alternating, and keeps the best of each: the
	// machine is shared, and the best run is the one least disturbed.
	var raw, rebuilt float64
	for i := 0; i < b.N; i++ {
		for range 3 {
			events, took, err := ReplayOnly(context.Background(), store)
			if err != nil {
				b.Fatal(err)
			}
			raw = max(raw, float64(events)/took.Seconds())
			stats, err := RebuildOffline(context.Background(), b.TempDir(), store, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
			if err != nil {
				b.Fatal(err)
			}
			rebuilt = max(rebuilt, stats.EventsPerSecond())
			if stats.Events != events {
				b.Fatalf("rebuild read %d events, raw replay %d", stats.Events, events)
			}
		}
	}
	b.ReportMetric(raw, "raw_events/s")
	b.ReportMetric(rebuilt, "rebuild_events/s")
	b.ReportMetric(100*rebuilt/raw, "%_of_raw")
}

// BenchmarkSeatMapRead reads a 500-seat map in parallel while another goroutine holds and
// releases seats of the same date (reads then wait for the holds of this process to be
// applied), or with nothing pending (quiet: the cost of checking that nothing is).
func BenchmarkSeatMapRead(b *testing.B) {
	encoded := func(e *Engine) error { _, err := e.SeatsJSON(context.Background(), "c1", "d1"); return err }
	for _, tc := range []struct {
		name  string
		read  func(e *Engine) error
		quiet bool
	}{
		{"encoded", encoded, false},
		{"views", func(e *Engine) error { _, err := e.Seats(context.Background(), "c1", "d1"); return err }, false},
		{"encoded-quiet", encoded, true},
	} {
		b.Run(tc.name, func(b *testing.B) {
			w := newWorld(b)
			e := openEngine(b, b.TempDir(), w.store, nil)
			w.must(w.createConcert("c1", "Aurora", date("d1", 500, 100)))
			start(b, e)
			settle(b, e)
			stop := make(chan struct{})
			done := make(chan struct{})
			go func() {
				defer close(done)
				if tc.quiet {
					<-stop
					return
				}
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					id := fmt.Sprintf("r%d", i)
					if err := w.hold(id, "u", "c1", "d1", 1+i%500, time.Hour); err == nil {
						w.must(w.cancel(id, "u"))
					}
				}
			}()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := tc.read(e); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.StopTimer()
			close(stop)
			<-done
		})
	}
}

// BenchmarkSeatsApply applies hold/release pairs, one event per batch, to the seats model of a
// date whose seat map is cached: the cost per hold must not grow with the size of the date.
func BenchmarkSeatsApply(b *testing.B) {
	for _, seats := range []int{500, 10_000} {
		b.Run(fmt.Sprintf("seats=%d", seats), func(b *testing.B) {
			w := newWorld(b)
			e := openEngine(b, b.TempDir(), w.store, nil)
			w.must(w.createConcert("c1", "Aurora", date("d1", seats, 100)))
			start(b, e)
			settle(b, e)
			if _, err := e.SeatsJSON(context.Background(), "c1", "d1"); err != nil {
				b.Fatal(err)
			}
			g := e.byName[Seats].current()
			g.db.NoSync = true // measure the work, not the disk
			at := time.Now()
			env := func(seq uint64, n int, ev aggregates.Event) []eventstore.Envelope {
				data, _ := aggregates.Encode(ev)
				return []eventstore.Envelope{{Type: ev.EventType(), AggregateType: eventstore.TypeSeat, AggregateID: fmt.Sprintf("c1.d1.%d", n),
					OccurredAt: at, Data: data, Sequence: seq}}
			}
			seq := uint64(1_000_000)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				n := 1 + i%seats
				seq++
				if _, err := g.apply("SEATS_0", env(seq, n, aggregates.SeatHeld{ReservationID: "r", UserID: "u", HeldUntil: at, SeatNo: n})); err != nil {
					b.Fatal(err)
				}
				seq++
				if _, err := g.apply("SEATS_0", env(seq, n, aggregates.SeatReleased{ReservationID: "r", Reason: aggregates.ReleaseCancelled, SeatNo: n})); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkSeatMapGzipAfterChange gzips a 10,000-seat map after every change, as reads of a
// date on sale do when a hold lands between any two of them.
func BenchmarkSeatMapGzipAfterChange(b *testing.B) {
	const seats = 10_000
	s := &seatMap{status: make([]aggregates.SeatStatus, seats), prices: make([]int64, seats)}
	for i := range s.status {
		s.status[i], s.prices[i] = aggregates.SeatStatusAvailable, 100
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		st := aggregates.SeatStatusHeld
		if i%2 == 1 {
			st = aggregates.SeatStatusAvailable
		}
		s.set(1+i%seats, st)
		if _, err := s.encodedGzip(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSeatsApplyFlashSale applies holds of random seats of a 10,000-seat date, 100 to a
// transaction, as a flash sale's commits reach the seats model: every hold lands on a page of
// its own, so this measures what a random-key insert costs the model's buckets.
func BenchmarkSeatsApplyFlashSale(b *testing.B) {
	const seats, perTx = 10_000, 100
	w := newWorld(b)
	e := openEngine(b, b.TempDir(), w.store, nil)
	w.must(w.createConcert("c1", "Aurora", date("d1", seats, 100)))
	start(b, e)
	settle(b, e)
	g := e.byName[Seats].current()
	g.db.NoSync = true // measure the work, not the disk
	at := time.Now()
	order := rand.New(rand.NewPCG(1, 2)).Perm(seats)
	seq := uint64(1_000_000)
	batch := make([]eventstore.Envelope, 0, perTx)
	held := 0
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		batch = batch[:0]
		for range perTx {
			n := 1 + order[held%seats]
			held++
			seq++
			var ev aggregates.Event = aggregates.SeatHeld{ReservationID: fmt.Sprintf("r%d", held), UserID: "u", HeldUntil: at.Add(time.Duration(held) * time.Millisecond), SeatNo: n}
			if held > seats { // the sale is over: release and hold again, in the same order
				ev = aggregates.SeatReleased{ReservationID: fmt.Sprintf("r%d", held-seats), Reason: aggregates.ReleaseExpired, SeatNo: n}
			}
			data, _ := aggregates.Encode(ev)
			batch = append(batch, eventstore.Envelope{Type: ev.EventType(), AggregateType: eventstore.TypeSeat, AggregateID: fmt.Sprintf("c1.d1.%d", n),
				OccurredAt: at, Data: data, Sequence: seq})
			if held >= 2*seats {
				held = 0
			}
		}
		if _, err := g.apply("SEATS_0", batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*perTx), "ns/event")
}
