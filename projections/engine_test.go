package projections

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// rebuiltSnapshot is what a full rebuild of the log answers.
func rebuiltSnapshot(t *testing.T, store fullStore) []byte {
	t.Helper()
	e := openEngine(t, t.TempDir(), store, nil)
	start(t, e)
	return takeSnapshot(t, e, store).json(t)
}

// TestCrashBetweenCommitAndNextBatch kills a process right after a bbolt commit (before the
// in-memory checkpoint, subscribers or anything else) and checks that the next process applies
// nothing twice.
func TestCrashBetweenCommitAndNextBatch(t *testing.T) {
	if os.Getenv("PROJECTIONS_CRASH_DIR") != "" {
		crashChild(t)
		return
	}
	w := newWorld(t)
	randomHistory(w, rand.New(rand.NewPCG(7, 7)), 150)
	logPath := filepath.Join(t.TempDir(), "log.jsonl")
	if err := writeLog(logPath, w.order); err != nil {
		t.Fatal(err)
	}
	want := rebuiltSnapshot(t, w.store)
	for _, after := range []int{1, 9, 40} {
		t.Run(fmt.Sprintf("a kill after commit %d applies nothing twice", after), func(t *testing.T) {
			dir := t.TempDir()
			cmd := exec.Command(os.Args[0], "-test.run=^TestCrashBetweenCommitAndNextBatch$")
			cmd.Env = append(os.Environ(), "PROJECTIONS_CRASH_DIR="+dir, "PROJECTIONS_CRASH_LOG="+logPath, "PROJECTIONS_CRASH_AFTER="+strconv.Itoa(after))
			out, err := cmd.CombinedOutput()
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 3 {
				t.Fatalf("the child did not die after commit %d: %v\n%s", after, err, out)
			}
			store := loadLog(t, logPath)
			e := openEngine(t, dir, splitStore{store, 3}, nil)
			start(t, e)
			if got := takeSnapshot(t, e, store).json(t); !bytes.Equal(got, want) {
				t.Fatalf("read models after the crash differ from a rebuild:\n%s", diffLines(want, got))
			}
		})
	}
}

func crashChild(t *testing.T) {
	store := loadLog(t, os.Getenv("PROJECTIONS_CRASH_LOG"))
	after, _ := strconv.Atoi(os.Getenv("PROJECTIONS_CRASH_AFTER"))
	e, err := Open(os.Getenv("PROJECTIONS_CRASH_DIR"), splitStore{store, 5}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var commits atomic.Int64
	for _, p := range e.projs {
		p.gen.afterCommit = func(string) error {
			if commits.Add(1) >= int64(after) {
				os.Exit(3)
			}
			return nil
		}
	}
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = e.WaitReady(ctx)
	t.Fatal("the log was applied without reaching the crash point")
}

// TestRedeliveredBatchesAreSkipped fails every stream's first commit after the fact, so that
// the follower replays from its stale in-memory checkpoint and gets the committed batch again.
func TestRedeliveredBatchesAreSkipped(t *testing.T) {
	w := newWorld(t)
	randomHistory(w, rand.New(rand.NewPCG(11, 11)), 120)
	want := rebuiltSnapshot(t, w.store)
	e := openEngine(t, t.TempDir(), splitStore{w.store, 9}, nil)
	var failed sync.Map
	for _, p := range e.projs {
		name := p.name
		p.gen.afterCommit = func(stream string) error {
			if _, done := failed.LoadOrStore(name+"/"+stream, true); !done {
				return errors.New("crash after commit")
			}
			return nil
		}
	}
	start(t, e)
	if got := takeSnapshot(t, e, w.store).json(t); !bytes.Equal(got, want) {
		t.Fatalf("read models differ from a rebuild:\n%s", diffLines(want, got))
	}
}

// liveWorld returns a world followed by a started engine, and a context for the test's
// queries.
func liveWorld(t *testing.T) (*world, *Engine, context.Context) {
	t.Helper()
	w := newWorld(t)
	e := openEngine(t, t.TempDir(), w.store, nil)
	start(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return w, e, ctx
}

// TestReadYourWrites checks that a lookup right after an append sees it.
func TestReadYourWrites(t *testing.T) {
	for _, tc := range []struct {
		name   string
		linger time.Duration
	}{
		{"read models that commit at once", 0},
		// A read that waits ends the linger at once (groupCommit); were it not so, every
		// read here would wait an hour.
		{"read models that linger an hour for more of the log", time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) { checkReadYourWrites(t, tc.linger) })
	}
}

func checkReadYourWrites(t *testing.T, linger time.Duration) {
	w := newWorld(t)
	e, err := Open(t.TempDir(), w.store, Options{Linger: linger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	start(t, e)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w.must(w.createConcert("c1", "Aurora", date("d1", 200, 10)))
	for i := range 100 {
		w.tick(time.Millisecond)
		user := fmt.Sprintf("u%d", i%7)
		before, err := e.Wallet(ctx, user)
		w.must(err)
		w.must(w.charge(user, 5, fmt.Sprintf("c%d", i)))
		after, err := e.Wallet(ctx, user)
		w.must(err)
		if after.Balance != before.Balance+5 {
			t.Fatalf("charge %d not visible at once: %d then %d", i, before.Balance, after.Balance)
		}
		id := fmt.Sprintf("r%d", i)
		w.must(w.hold(id, user, "c1", "d1", i+1, time.Minute))
		r, err := e.Reservation(ctx, id)
		w.must(err)
		if r.Status != aggregates.ReservationStatusHeld || r.SeatNo != i+1 {
			t.Fatalf("hold %d: got %+v", i, r)
		}
		list, err := e.UserReservations(ctx, user)
		w.must(err)
		if len(list) == 0 || list[0].ReservationID != id {
			t.Fatalf("hold %d is not the newest of %s: %+v", i, user, list)
		}
		seats, err := e.Seats(ctx, "c1", "d1")
		w.must(err)
		if seats[i].Status != aggregates.SeatStatusHeld {
			t.Fatalf("hold %d: the seat map shows seat %d %s", i, i+1, seats[i].Status)
		}
		held := fmt.Sprintf(`{"seatNo":%d,"price":10,"status":"HELD"}`, i+1)
		plain, err := e.SeatsJSON(ctx, "c1", "d1")
		w.must(err)
		gz, err := e.SeatsJSONGzip(ctx, "c1", "d1")
		w.must(err)
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		w.must(err)
		unzipped, err := io.ReadAll(zr)
		w.must(err)
		if !bytes.Contains(plain, []byte(held)) || !bytes.Contains(unzipped, []byte(held)) {
			t.Fatalf("hold %d: the encoded seat maps miss %s", i, held)
		}
		dates, err := e.Dates(ctx, "c1")
		w.must(err)
		if dates[0].AvailableSeats != 200-(i+1) {
			t.Fatalf("hold %d: %d seats available, want %d", i, dates[0].AvailableSeats, 200-(i+1))
		}
	}
	p := e.byName[Seats]
	if n := testing.AllocsPerRun(100, func() { w.must(e.waitFor(ctx, p, p.all())) }); n != 0 {
		t.Fatalf("a read with nothing pending allocates %v times to check so", n)
	}
	if _, err := e.Reservation(ctx, "nope"); !errors.Is(err, aggregates.ErrReservationNotFound) {
		t.Fatalf("unknown reservation: %v", err)
	}
	if _, err := e.Payment(ctx, "nope"); !errors.Is(err, aggregates.ErrPaymentNotFound) {
		t.Fatalf("unknown payment: %v", err)
	}
	if _, err := e.Seats(ctx, "nope", "d1"); !errors.Is(err, aggregates.ErrConcertNotFound) {
		t.Fatalf("unknown concert: %v", err)
	}
	if _, err := e.Seats(ctx, "c1", "nope"); !errors.Is(err, aggregates.ErrDateNotFound) {
		t.Fatalf("unknown date: %v", err)
	}
	if wv, err := e.Wallet(ctx, "stranger"); err != nil || wv.Balance != 0 {
		t.Fatalf("unknown user's wallet: %+v %v", wv, err)
	}
	if h, err := e.History(ctx, "stranger"); err != nil || len(h) != 0 {
		t.Fatalf("unknown user's history: %+v %v", h, err)
	}
}

// TestOnlineRebuildNeverShowsAHalfBuiltModel rebuilds projections over and over while the log
// grows and readers read: balances only grow (seats are free) and sold seats only accumulate,
// so any reader seeing less than before has seen a half-built model.
func TestOnlineRebuildNeverShowsAHalfBuiltModel(t *testing.T) {
	w := newWorld(t)
	e := openEngine(t, t.TempDir(), splitStore{w.store, 2}, nil)
	w.must(w.createConcert("c1", "Aurora", date("d1", 400, 0)))
	for i := range 300 {
		w.must(w.charge(fmt.Sprintf("u%d", i%3), 10, fmt.Sprintf("c%d", i)))
	}
	start(t, e)
	ctx, cancel := context.WithCancel(context.Background())
	var readers sync.WaitGroup
	errs := make(chan error, 4)
	for r := range 3 {
		readers.Add(1)
		go func() {
			defer readers.Done()
			var balance int64
			sold := 0
			for ctx.Err() == nil {
				wv, err := e.Wallet(ctx, "u0")
				if err != nil {
					if ctx.Err() == nil {
						errs <- err
					}
					return
				}
				if wv.Balance < balance {
					errs <- fmt.Errorf("reader %d: balance went from %d to %d", r, balance, wv.Balance)
					return
				}
				balance = wv.Balance
				seats, err := e.Seats(ctx, "c1", "d1")
				if err != nil {
					if ctx.Err() == nil { // the seat map too waits for the writes, until the end
						errs <- err
					}
					return
				}
				n := 0
				for _, s := range seats {
					if s.Status == aggregates.SeatStatusSold {
						n++
					}
				}
				if n < sold {
					errs <- fmt.Errorf("reader %d: sold seats went from %d to %d", r, sold, n)
					return
				}
				sold = n
			}
		}()
	}
	for i := range 40 {
		w.must(w.charge("u0", 10, fmt.Sprintf("c%d", i)))
		w.must(w.hold(fmt.Sprintf("r%d", i), "u0", "c1", "d1", i+1, time.Hour))
		w.must(w.pay(fmt.Sprintf("p%d", i), fmt.Sprintf("r%d", i), "u0"))
		if i%10 == 0 {
			for _, name := range []string{Wallets, Seats} {
				if err := e.Rebuild(context.Background(), name); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	cancel()
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	settle(t, e)
	if got, want := takeSnapshot(t, e, w.store).json(t), rebuiltSnapshot(t, w.store); !bytes.Equal(got, want) {
		t.Fatalf("after online rebuilds the read models differ from a rebuild:\n%s", diffLines(want, got))
	}
	if err := e.Rebuild(context.Background(), "nope"); !errors.Is(err, ErrUnknownProjection) {
		t.Fatalf("rebuild of an unknown projection: %v", err)
	}
}

// TestSubscribersGetEveryEventOnce checks delivery across an online rebuild of the
// projections that feed the subscribers.
func TestSubscribersGetEveryEventOnce(t *testing.T) {
	w := newWorld(t)
	e := openEngine(t, t.TempDir(), splitStore{w.store, 4}, nil)
	var mu sync.Mutex
	seen := map[string]int{}
	type position struct {
		seq   uint64
		index int
	}
	last := map[string]position{}
	var order []string
	e.Subscribe(func(env eventstore.Envelope) {
		mu.Lock()
		defer mu.Unlock()
		seen[env.EventID]++
		// The events of one commit share its sequence and come in their commit's order.
		at, prev := position{env.Sequence, env.Index}, last[env.Stream]
		if prev != (position{}) && (at.seq < prev.seq || at.seq == prev.seq && at.index <= prev.index) {
			order = append(order, fmt.Sprintf("%s: %v after %v", env.Stream, at, prev))
		}
		last[env.Stream] = at
	})
	randomHistory(w, rand.New(rand.NewPCG(5, 5)), 60)
	start(t, e)
	for round, name := range []string{Seats, Reservations, Catalog} {
		if err := e.Rebuild(context.Background(), name); err != nil {
			t.Fatal(err)
		}
		c := fmt.Sprintf("later%d", round)
		w.must(w.createConcert(c, "Later", date("d1", 10, 0)))
		for i := range 10 {
			w.must(w.hold(fmt.Sprintf("%s-r%d", c, i), "u9", c, "d1", i+1, time.Minute))
		}
	}
	settle(t, e)
	want := 0
	for _, env := range w.order {
		if env.AggregateType != eventstore.TypeQueueUser && env.AggregateType != eventstore.TypeQueueGate {
			want++
		}
	}
	// A batch reaches the subscribers just after its checkpoint moves: wait for the last ones.
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(seen)
		mu.Unlock()
		if n >= want || time.Now().After(deadline) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, env := range w.order {
		if env.AggregateType != eventstore.TypeQueueUser && env.AggregateType != eventstore.TypeQueueGate {
			if seen[env.EventID] != 1 {
				t.Errorf("%s %s delivered %d times", env.Type, env.EventID, seen[env.EventID])
			}
		}
	}
	if len(seen) != want {
		t.Errorf("delivered %d events, want %d", len(seen), want)
	}
	if len(order) > 0 {
		t.Errorf("out of order: %v", order)
	}
}

// TestSellOutHookFailuresAreRetried checks that a detection survives hook errors and a restart.
func TestSellOutHookFailuresAreRetried(t *testing.T) {
	w := newWorld(t)
	dir := t.TempDir()
	var calls atomic.Int64
	failing := func(context.Context, string, string, time.Time) error {
		calls.Add(1)
		return errors.New("store down")
	}
	e := openEngine(t, dir, w.store, failing)
	start(t, e)
	w.must(w.createConcert("c1", "Aurora", date("d1", 2, 1)))
	w.must(w.charge("u", 10, "c"))
	for i := range 2 {
		w.must(w.hold(fmt.Sprintf("r%d", i), "u", "c1", "d1", i+1, time.Hour))
		w.must(w.pay(fmt.Sprintf("p%d", i), fmt.Sprintf("r%d", i), "u"))
	}
	deadline := time.Now().Add(20 * time.Second)
	for calls.Load() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("the hook was called %d times, want retries", calls.Load())
		}
		time.Sleep(time.Millisecond)
	}
	w.must(e.Close())

	e2 := openEngine(t, dir, w.store, w.soldOut)
	start(t, e2)
	settle(t, e2)
	ranking, err := e2.DailyRanking(context.Background(), epoch)
	w.must(err)
	if len(ranking) != 1 || ranking[0].DateID != "d1" || ranking[0].Rank != 1 || ranking[0].Title != "Aurora" {
		t.Fatalf("ranking after a restart: %+v", ranking)
	}
}

// TestDailyRankingDayBoundary checks that days run midnight to midnight in the day's location.
func TestDailyRankingDayBoundary(t *testing.T) {
	w := newWorld(t)
	w.now = time.Date(2026, 5, 1, 14, 0, 0, 0, time.UTC) // 23:00 in Seoul
	e := openEngine(t, t.TempDir(), w.store, w.soldOut)
	start(t, e)
	w.must(w.createConcert("c1", "Aurora", date("late", 1, 1), date("early", 1, 1)))
	w.must(w.charge("u", 10, "c"))
	w.tick(30 * time.Minute) // 23:30 in Seoul
	w.must(w.hold("r1", "u", "c1", "late", 1, time.Hour))
	w.must(w.pay("p1", "r1", "u"))
	settle(t, e)
	w.tick(time.Hour) // 00:30 the next day in Seoul, still May 1st in UTC
	w.must(w.hold("r2", "u", "c1", "early", 1, time.Hour))
	w.must(w.pay("p2", "r2", "u"))
	settle(t, e)
	seoul := time.FixedZone("KST", 9*3600)
	tests := []struct {
		name string
		day  time.Time
		want []string
	}{
		{"a UTC day holds both sell-outs, the faster first", time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC), []string{"late", "early"}},
		{"the Seoul day of May 1st holds the one before its midnight", time.Date(2026, 5, 1, 12, 0, 0, 0, seoul), []string{"late"}},
		{"the Seoul day of May 2nd holds the one after its midnight", time.Date(2026, 5, 2, 0, 0, 0, 0, seoul), []string{"early"}},
		{"a day without sell-outs is empty", time.Date(2026, 5, 3, 0, 0, 0, 0, time.UTC), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := e.DailyRanking(context.Background(), tt.day)
			w.must(err)
			var ids []string
			for i, r := range got {
				ids = append(ids, r.DateID)
				if r.Rank != i+1 {
					t.Errorf("rank %d at position %d", r.Rank, i)
				}
			}
			if fmt.Sprint(ids) != fmt.Sprint(tt.want) {
				t.Fatalf("got %v, want %v", ids, tt.want)
			}
		})
	}
}

func TestStatusReportsLag(t *testing.T) {
	w := newWorld(t)
	randomHistory(w, rand.New(rand.NewPCG(1, 2)), 40)
	e := openEngine(t, t.TempDir(), w.store, nil)
	st, err := e.Status(context.Background())
	w.must(err)
	if len(st) != len(e.Names()) || st[0].Lag == 0 || st[0].Lag != st[0].Head-st[0].Checkpoint {
		t.Fatalf("status before start: %+v", st)
	}
	if e.Ready() {
		t.Fatal("ready before start")
	}
	start(t, e)
	st, err = e.Status(context.Background())
	w.must(err)
	for _, s := range st {
		if s.Lag != 0 || s.Checkpoint != s.Head {
			t.Fatalf("status once ready: %+v", st)
		}
	}
}

// TestMultiSeatReservationMovesItsSeatsTogether follows reservations of several seats through
// hold, payment, refund, expiry and cancellation on a live engine: the reservation's view
// lists all its seats, and each of them shows HELD, SOLD or AVAILABLE in the seat map as the
// reservation moves, while a neighbour's seat stays as it was.
func TestMultiSeatReservationMovesItsSeatsTogether(t *testing.T) {
	w, e, ctx := liveWorld(t)
	w.must(w.createConcert("c1", "Aurora", date("d1", 8, 100, aggregates.PriceRange{From: 1, To: 2, Price: 300})))
	w.must(w.charge("alice", 10_000, "top-up"))
	w.must(w.hold("neighbour", "bob", "c1", "d1", 8, time.Hour))
	tests := []struct {
		name    string
		do      func() error
		wantErr error
		res     string
		status  aggregates.ReservationStatus
		nos     []int
		price   int64
		seats   string // seats 1 to 8: Available, Held, Sold
	}{
		{"a hold of seats 5, 2 and 3 holds all three in one reservation",
			func() error { return w.holdSeats("r1", "alice", "c1", "d1", 5*time.Minute, 5, 2, 3) }, nil,
			"r1", aggregates.ReservationStatusHeld, []int{2, 3, 5}, 300 + 100 + 100, "AHHAHAAH"},
		{"a hold of one of its seats and a free one is refused and holds neither",
			func() error { return w.holdSeats("r2", "carol", "c1", "d1", 5*time.Minute, 4, 5) }, aggregates.ErrSeatUnavailable,
			"r1", aggregates.ReservationStatusHeld, []int{2, 3, 5}, 500, "AHHAHAAH"},
		{"paying for it sells all three seats",
			func() error { return w.pay("p1", "r1", "alice") }, nil,
			"r1", aggregates.ReservationStatusConfirmed, []int{2, 3, 5}, 500, "ASSASAAH"},
		{"refunding it makes all three seats available",
			func() error { return w.refund("p1") }, nil,
			"r1", aggregates.ReservationStatusCancelled, []int{2, 3, 5}, 500, "AAAAAAAH"},
		{"a hold of seats 4 and 1 holds both",
			func() error { return w.holdSeats("r3", "alice", "c1", "d1", 5*time.Minute, 4, 1) }, nil,
			"r3", aggregates.ReservationStatusHeld, []int{1, 4}, 400, "HAAHAAAH"},
		{"its expiry makes both seats available",
			func() error { w.tick(6 * time.Minute); return w.expire("r3") }, nil,
			"r3", aggregates.ReservationStatusExpired, []int{1, 4}, 400, "AAAAAAAH"},
		{"a hold of seats 6 and 7 holds both",
			func() error { return w.holdSeats("r4", "alice", "c1", "d1", 5*time.Minute, 6, 7) }, nil,
			"r4", aggregates.ReservationStatusHeld, []int{6, 7}, 200, "AAAAAHHH"},
		{"its cancellation makes both seats available",
			func() error { return w.cancel("r4", "alice") }, nil,
			"r4", aggregates.ReservationStatusCancelled, []int{6, 7}, 200, "AAAAAAAH"},
	}
	letter := map[aggregates.SeatStatus]byte{aggregates.SeatStatusAvailable: 'A', aggregates.SeatStatusHeld: 'H', aggregates.SeatStatusSold: 'S'}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.do(); !errors.Is(err, tt.wantErr) {
				t.Fatalf("got %v, want %v", err, tt.wantErr)
			}
			r, err := e.Reservation(ctx, tt.res)
			w.must(err)
			if r.Status != tt.status || fmt.Sprint(r.SeatNos) != fmt.Sprint(tt.nos) || r.SeatNo != tt.nos[0] || r.Price != tt.price {
				t.Fatalf("reservation %s: %+v, want %s of seats %v (first %d) for %d", tt.res, r, tt.status, tt.nos, tt.nos[0], tt.price)
			}
			mine, err := e.UserReservations(ctx, "alice")
			w.must(err)
			if len(mine) == 0 || mine[0].ReservationID != tt.res || fmt.Sprint(mine[0].SeatNos) != fmt.Sprint(tt.nos) {
				t.Fatalf("alice's reservations, newest first: %+v", mine)
			}
			seats, err := e.Seats(ctx, "c1", "d1")
			w.must(err)
			got := make([]byte, len(seats))
			for i, s := range seats {
				got[i] = letter[s.Status]
			}
			if string(got) != tt.seats {
				t.Fatalf("seat map %s, want %s", got, tt.seats)
			}
			held, err := e.HeldSeats(ctx)
			w.must(err)
			var heldNos []int
			for _, h := range held {
				if h.ReservationID == tt.res {
					heldNos = append(heldNos, h.SeatNo)
					if !h.HeldUntil.Equal(r.HeldUntil) {
						t.Fatalf("seat %d of %s held until %v for the expiry sweeper, the reservation until %v", h.SeatNo, tt.res, h.HeldUntil, r.HeldUntil)
					}
				}
			}
			sort.Ints(heldNos)
			if tt.status == aggregates.ReservationStatusHeld && fmt.Sprint(heldNos) != fmt.Sprint(tt.nos) || tt.status != aggregates.ReservationStatusHeld && len(heldNos) > 0 {
				t.Fatalf("held seats of %s (for the expiry sweeper): %v", tt.res, heldNos)
			}
			dates, err := e.Dates(ctx, "c1")
			w.must(err)
			if want := strings.Count(tt.seats, "A"); dates[0].AvailableSeats != want {
				t.Fatalf("%d seats available, want %d", dates[0].AvailableSeats, want)
			}
			snap := takeSnapshot(t, e, w.store)
			snap.checkSeatsJSON(t)
			snap.checkReservationSeats(t)
		})
	}
	if got, want := takeSnapshot(t, e, w.store).json(t), rebuiltSnapshot(t, w.store); !bytes.Equal(got, want) {
		t.Fatalf("the live read models differ from a rebuild:\n%s", diffLines(want, got))
	}
}

// laggingStore reports, once lagging names a stream, a head one past that stream's real one:
// a stream whose newest commits the engine has not applied yet.
type laggingStore struct {
	fullStore
	lagging atomic.Pointer[string]
}

func (s *laggingStore) Head(ctx context.Context, stream string) (uint64, error) {
	h, err := s.fullStore.Head(ctx, stream)
	if l := s.lagging.Load(); l != nil && *l == stream {
		h++
	}
	return h, err
}

// TestSellOutWaitsForItsDateStreamOnly sells a date out while another seat stream is behind:
// the date's seats are all in its own commits, on its own stream, so the sell-out is recorded
// without waiting for the other stream (which, busy with other dates, may never be idle).
func TestSellOutWaitsForItsDateStreamOnly(t *testing.T) {
	w := newWorld(t)
	store := &laggingStore{fullStore: w.store}
	e := openEngine(t, t.TempDir(), store, w.soldOut)
	start(t, e)
	w.must(w.createConcert("c1", "Aurora", date("d1", 2, 1)))
	w.must(w.charge("u", 10, "c"))
	own, _, err := eventstore.Place(ref(eventstore.TypeDate, "c1.d1"))
	w.must(err)
	for _, s := range eventstore.StreamsOf(eventstore.TypeSeat) {
		if s != own {
			store.lagging.Store(&s)
			break
		}
	}
	w.must(w.holdSeats("r1", "u", "c1", "d1", time.Hour, 1, 2))
	w.must(w.pay("p1", "r1", "u"))
	// The ranking does not wait for the log: poll it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		ranking, err := e.DailyRanking(context.Background(), epoch)
		w.must(err)
		if len(ranking) == 1 && ranking[0].DateID == "d1" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sell-out of c1/d1 on %s was not recorded while %s lagged: ranking %+v", own, *store.lagging.Load(), ranking)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestPaymentsAreFoundByTheirIDs: a payment lives in its reservation's date's commits, so its
// ID alone needs the payments read model to find its reservation, with waiting for the log
// (PaymentReservation) or with what is applied (AppliedPaymentReservation).
func TestPaymentsAreFoundByTheirIDs(t *testing.T) {
	w, e, ctx := liveWorld(t)
	w.must(w.createConcert("c1", "Aurora", date("d1", 10, 10)))
	w.must(w.charge("u1", 100, "c1"))
	w.must(w.hold("r1", "u1", "c1", "d1", 1, time.Minute))
	w.must(w.pay("p1", "r1", "u1"))
	settle(t, e)
	lookups := []struct {
		name   string
		lookup func(context.Context, string) (string, error)
	}{
		{"waiting for the log", e.PaymentReservation},
		{"from what is applied", e.AppliedPaymentReservation},
	}
	for _, l := range lookups {
		t.Run("a started payment names its reservation, "+l.name, func(t *testing.T) {
			if r, err := l.lookup(ctx, "p1"); err != nil || r != "r1" {
				t.Fatalf("p1: reservation %q, %v; want r1", r, err)
			}
		})
		t.Run("an unknown payment is not found, "+l.name, func(t *testing.T) {
			if _, err := l.lookup(ctx, "p2"); !errors.Is(err, aggregates.ErrPaymentNotFound) {
				t.Fatalf("p2: %v, want ErrPaymentNotFound", err)
			}
		})
		t.Run("an ID that cannot be a payment's is not found, "+l.name, func(t *testing.T) {
			if _, err := l.lookup(ctx, "no such/id"); !errors.Is(err, aggregates.ErrPaymentNotFound) {
				t.Fatalf("bad ID: %v, want ErrPaymentNotFound", err)
			}
		})
	}
}

func TestDecimalLenSizesTheSeatMapsJSON(t *testing.T) {
	tests := []struct {
		name string
		n    int64
		want int
	}{
		{"zero is one digit", 0, 1},
		{"nine is one digit", 9, 1},
		{"ten is two digits", 10, 2},
		{"a 10,000-seat date's last seat is five digits", 10_000, 5},
		{"a negative number counts its sign", -5, 2},
		{"the largest price fits", 9_223_372_036_854_775_807, 19},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := decimalLen(tt.n); got != tt.want || got != len(strconv.FormatInt(tt.n, 10)) {
				t.Errorf("decimalLen(%d) = %d, want %d", tt.n, got, tt.want)
			}
		})
	}
}
