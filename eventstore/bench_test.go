package eventstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/booking-engine/booking/eventstore"
)

// benchEvent is about the size of a real SeatHeld event.
var benchEvent = eventstore.Event{Type: "SeatHeld", Data: json.RawMessage(`{"reservationId":"01890a5d-ac96-774b-bcce-b302099a8057","userId":"user-000123","heldUntil":"2025-03-01T12:35:00Z","price":120000,"pad":"` + strings.Repeat("x", 40) + `"}`)}

var fsyncModes = []struct {
	name string
	sync bool
}{{"fsync=always", true}, {"fsync=interval", false}}

// commitModes compare group commit (concurrent appends as atomic batches) with every append
// published alone.
var commitModes = []struct {
	name string
	off  bool
}{{"group", false}, {"alone", true}}

// BenchmarkAppend appends one event with optimistic concurrency to a fresh aggregate per op,
// seats spread over the partition streams as holds are: from one goroutine, and from 64 and
// 512 (a flash sale's requests in flight) with and without group commit.
func BenchmarkAppend(b *testing.B) {
	for _, m := range fsyncModes {
		b.Run(m.name+"/serial", func(b *testing.B) {
			s := openEmbedded(b, m.sync)
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				agg := eventstore.AggregateRef{Type: eventstore.TypeDate, ID: fmt.Sprintf("c1.d%d", i)}
				if _, err := s.Append(ctx, agg, 0, []eventstore.Event{benchEvent}, fmt.Sprint("h", i), meta); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
		})
		for _, g := range []int{64, 512} {
			for _, c := range commitModes {
				name := fmt.Sprintf("%s/parallel%d/%s", m.name, g, c.name)
				if !m.sync {
					if c.off {
						continue // group commit is off without SyncAlways anyway
					}
					name = fmt.Sprintf("%s/parallel%d", m.name, g)
				}
				b.Run(name, func(b *testing.B) {
					s := openEmbeddedWith(b, eventstore.Options{SyncAlways: m.sync, NoGroupCommit: c.off})
					ctx := context.Background()
					var n atomic.Int64
					b.SetParallelism(g / 2) // goroutines on 2 cores: requests in flight, as under load
					b.ResetTimer()
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							i := n.Add(1)
							agg := eventstore.AggregateRef{Type: eventstore.TypeDate, ID: fmt.Sprintf("c1.d%d", i)}
							if _, err := s.Append(ctx, agg, 0, []eventstore.Event{benchEvent}, fmt.Sprint("h", i), meta); err != nil {
								b.Error(err)
								return
							}
						}
					})
					b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
				})
			}
		}
	}
}

// BenchmarkAppendHot appends to one aggregate: serially with the known version, and from 64
// goroutines that reload after each conflict, as concurrent commands on one seat do.
func BenchmarkAppendHot(b *testing.B) {
	for _, m := range fsyncModes {
		b.Run(m.name+"/serial", func(b *testing.B) {
			s := openEmbedded(b, m.sync)
			ctx := context.Background()
			var v uint64
			b.ResetTimer()
			for i := range b.N {
				var err error
				if v, err = s.Append(ctx, concert, v, []eventstore.Event{benchEvent}, fmt.Sprint("h", i), meta); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
		})
		b.Run(m.name+"/parallel64", func(b *testing.B) {
			s := openEmbedded(b, m.sync)
			ctx := context.Background()
			var n, conflicts atomic.Int64
			b.SetParallelism(32)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				var v uint64
				for pb.Next() {
					i := n.Add(1)
					for {
						nv, err := s.Append(ctx, concert, v, []eventstore.Event{benchEvent}, fmt.Sprint("h", i), meta)
						if err == nil {
							v = nv
							break
						}
						if !errors.Is(err, eventstore.ErrConcurrency) {
							b.Error(err)
							return
						}
						conflicts.Add(1)
						envs, err := s.Load(ctx, concert, v)
						if err != nil {
							b.Error(err)
							return
						}
						if len(envs) > 0 {
							v = envs[len(envs)-1].Sequence
						}
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "appends/s")
			b.ReportMetric(float64(conflicts.Load())/float64(b.N), "conflicts/op")
		})
	}
}

// BenchmarkLoad loads an aggregate of 10 events, the common size of a reservation or payment.
func BenchmarkLoad(b *testing.B) {
	stores := []struct {
		name string
		open func(b *testing.B) eventstore.Store
	}{
		{"jetstream", func(b *testing.B) eventstore.Store { return openEmbedded(b, false) }},
		{"memory", func(*testing.B) eventstore.Store { return eventstore.NewMemStore() }},
	}
	for _, st := range stores {
		b.Run(st.name, func(b *testing.B) {
			s := st.open(b)
			ctx := context.Background()
			// Neighbours in the same stream, so the load has something to step over.
			var v uint64
			for i := range 10 {
				var err error
				if v, err = s.Append(ctx, concert, v, []eventstore.Event{benchEvent}, fmt.Sprint("e", i), meta); err != nil {
					b.Fatal(err)
				}
				if _, err := s.Append(ctx, eventstore.AggregateRef{Type: eventstore.TypeConcert, ID: fmt.Sprint("n", i)}, 0, []eventstore.Event{benchEvent}, fmt.Sprint("n", i), meta); err != nil {
					b.Fatal(err)
				}
			}
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					envs, err := s.Load(ctx, concert, 0)
					if err != nil || len(envs) != 10 {
						b.Errorf("load: %d events, %v", len(envs), err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "loads/s")
		})
	}
}

// BenchmarkReplay replays a stream of 50,000 events per op, as a projection rebuild does.
func BenchmarkReplay(b *testing.B) {
	const events = 50_000
	s := openEmbedded(b, false)
	ctx := context.Background()
	var next atomic.Int64
	fill := time.Now()
	errs := make(chan error, 16)
	for range 16 {
		go func() {
			for {
				i := next.Add(1)
				if i > events {
					errs <- nil
					return
				}
				agg := eventstore.AggregateRef{Type: eventstore.TypeConcert, ID: fmt.Sprint("c", i)}
				if _, err := s.Append(ctx, agg, 0, []eventstore.Event{benchEvent}, fmt.Sprint("r", i), meta); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	for range 16 {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("filled %d events in %s", events, time.Since(fill))
	b.ResetTimer()
	total := 0
	for range b.N {
		err := s.Replay(ctx, "CATALOG", 0, false, func(batch []eventstore.Envelope) error {
			total += len(batch)
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	if total != b.N*events {
		b.Fatalf("replayed %d events, want %d", total, b.N*events)
	}
	b.ReportMetric(float64(total)/b.Elapsed().Seconds(), "events/s")
}
