package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/booking-engine/booking/app"
	"github.com/booking-engine/booking/eventstore"
	"github.com/booking-engine/booking/loadgen"
	"github.com/booking-engine/booking/projections"
)

func init() { benchRebuilder = newBenchRebuilder }

// newBenchRebuilder fills dataDir with real bookings (queue token, charge, hold, pay: eleven
// events each, through the service, so the log is what production writes, queue included)
// until it holds about events events, and returns what `bench rebuild` times on it. With events
// 0 it fills nothing and times the log dataDir already holds.
func newBenchRebuilder(ctx context.Context, dataDir string, events int, fsync string) (loadgen.Rebuilder, func(), error) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	store, err := eventstore.Open(ctx, eventstore.Options{DataDir: dataDir, SyncAlways: fsync == "always", Logger: quiet})
	if err != nil {
		return nil, nil, err
	}
	stop := func() { store.Close() }
	if events == 0 {
		return benchRebuild{store: store, dir: projections.Dir(dataDir)}, stop, nil
	}
	svc := app.New(store, app.Config{HoldTTL: time.Hour, QueueActiveTTL: time.Hour, TokenSecret: []byte("bench")}, app.Options{Logger: quiet, SingleWriter: true})
	const seatsPerDate = 10_000
	bookings := int64(events/11 + 1)
	dates := int(bookings)/seatsPerDate + 1
	nc := app.NewConcert{ConcertID: "rebuild-bench", Title: "Rebuild bench"}
	for d := range dates {
		nc.Dates = append(nc.Dates, app.NewDate{DateID: fmt.Sprintf("d%d", d), StartsAt: time.Date(2027, 1, 1, 20, 0, 0, 0, time.UTC), SeatCount: seatsPerDate, Price: 100})
	}
	if _, err := svc.CreateConcert(ctx, app.Meta{}, nc); err != nil {
		stop()
		return nil, nil, err
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, 1)
	fmt.Fprintf(os.Stderr, "filling %s with about %d events (%d bookings)...\n", dataDir, events, bookings)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				n := next.Add(1)
				if n > bookings || ctx.Err() != nil {
					return
				}
				user := fmt.Sprintf("u%d", n)
				seat := int(n-1)%seatsPerDate + 1
				date := fmt.Sprintf("d%d", (n-1)/seatsPerDate)
				_, _, err := svc.IssueToken(ctx, app.Meta{}, user)
				if err == nil {
					_, err = svc.Charge(ctx, app.Meta{}, user, 100)
				}
				if err == nil {
					var r app.Reservation
					if r, err = svc.Hold(ctx, app.Meta{}, app.HoldRequest{UserID: user, ConcertID: "rebuild-bench", DateID: date, SeatNo: seat}); err == nil {
						_, err = svc.Pay(ctx, app.Meta{}, r.ReservationID, user)
					}
				}
				if err != nil {
					select {
					case errs <- err:
					default:
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errs:
		stop()
		return nil, nil, fmt.Errorf("fill the log: %w", err)
	default:
	}
	return benchRebuild{store: store, dir: projections.Dir(dataDir)}, stop, nil
}

// benchRebuild times the offline rebuild of every read model against a raw replay of the
// same streams, in the same process and run.
type benchRebuild struct {
	store *eventstore.JetStreamStore
	dir   string
}

func (b benchRebuild) Rebuild(ctx context.Context) (int, time.Duration, error) {
	st, err := projections.RebuildOffline(ctx, b.dir, b.store, nil, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	return int(st.Events), st.Elapsed, err
}

func (b benchRebuild) RawReplay(ctx context.Context) (int, time.Duration, error) {
	n, d, err := projections.ReplayOnly(ctx, b.store)
	return int(n), d, err
}
