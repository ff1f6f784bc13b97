package app

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/booking-engine/booking/eventstore"
)

// storeModes are the event stores the sagas are measured on: fsync on with group commit (the
// default), fsync on with every append alone, and fsync off.
var storeModes = []struct {
	name          string
	sync, noGroup bool
}{{"fsync=true", true, false}, {"fsync=true/alone", true, true}, {"fsync=false", false, false}}

func benchStore(b *testing.B, syncAlways, noGroupCommit bool) EventLog {
	s, err := eventstore.Open(context.Background(), eventstore.Options{DataDir: b.TempDir(), SyncAlways: syncAlways, NoGroupCommit: noGroupCommit, Logger: quietLogger()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	return s
}

func benchService(b *testing.B, log EventLog, seats int) *Service {
	svc := New(log, Config{HoldTTL: time.Hour, QueueActiveTTL: time.Hour, TokenSecret: []byte("x")}, Options{Logger: quietLogger()})
	_, err := svc.CreateConcert(context.Background(), Meta{}, NewConcert{ConcertID: "c1", Title: "Bench", Dates: []NewDate{{DateID: "d1", StartsAt: t0, SeatCount: seats, Price: 100}}})
	if err != nil {
		b.Fatal(err)
	}
	return svc
}

// BenchmarkHold measures the hold saga (two decide+append steps: seat, reservation) on
// embedded JetStream, from 1, 64 and 512 goroutines (requests in flight), in each store mode.
func BenchmarkHold(b *testing.B) {
	for _, m := range storeModes {
		for _, goroutines := range []int{1, 64, 512} {
			b.Run(fmt.Sprintf("%s/goroutines=%d", m.name, goroutines), func(b *testing.B) {
				svc := benchService(b, benchStore(b, m.sync, m.noGroup), 10_000)
				ctx := context.Background()
				var next atomic.Int64
				hold := func() {
					n := int(next.Add(1))
					if n > 10_000 {
						b.Fatal("out of seats")
					}
					if _, err := svc.Hold(ctx, Meta{}, HoldRequest{UserID: "u" + itoa(n), ConcertID: "c1", DateID: "d1", SeatNo: n}); err != nil {
						b.Fatal(err)
					}
				}
				b.ResetTimer()
				if goroutines > 1 {
					b.SetParallelism(goroutines / 2) // GOMAXPROCS is 2 here
					b.RunParallel(func(pb *testing.PB) {
						for pb.Next() {
							hold()
						}
					})
				} else {
					for b.Loop() {
						hold()
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "holds/s")
			})
		}
	}
}

// BenchmarkPay measures a booking: charge, hold, then the payment saga (seven appends over
// five aggregates), from 64 goroutines, in each store mode.
func BenchmarkPay(b *testing.B) {
	for _, m := range storeModes {
		b.Run(m.name, func(b *testing.B) {
			svc := benchService(b, benchStore(b, m.sync, m.noGroup), 10_000)
			ctx := context.Background()
			var next atomic.Int64
			b.SetParallelism(32)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					n := int(next.Add(1))
					user := "u" + itoa(n)
					if _, err := svc.Charge(ctx, Meta{}, user, 100); err != nil {
						b.Fatal(err)
					}
					r, err := svc.Hold(ctx, Meta{}, HoldRequest{UserID: user, ConcertID: "c1", DateID: "d1", SeatNo: n})
					if err != nil {
						b.Fatal(err)
					}
					if _, err := svc.Pay(ctx, Meta{}, r.ReservationID, user); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "bookings/s")
		})
	}
}

// BenchmarkChargeOneWallet measures concurrent charges of one user's wallet, the case where
// commands of one aggregate queue behind each other and share commits.
func BenchmarkChargeOneWallet(b *testing.B) {
	for _, m := range storeModes[:1] {
		b.Run(m.name, func(b *testing.B) {
			svc := benchService(b, benchStore(b, m.sync, m.noGroup), 10)
			ctx := context.Background()
			b.SetParallelism(32) // 64 goroutines with GOMAXPROCS 2
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := svc.Charge(ctx, Meta{}, "u1", 1); err != nil {
						b.Fatal(err)
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "charges/s")
		})
	}
}
