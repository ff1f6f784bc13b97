package projections

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"sort"
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// splitStore hands out replay batches of random small sizes, so that tests exercise many
// commits per stream and batch boundaries anywhere between two of the store's commits.
type splitStore struct {
	fullStore
	seed uint64
}

func (s splitStore) Replay(ctx context.Context, stream string, after uint64, follow bool, fn func([]eventstore.Envelope) error) error {
	rng := rand.New(rand.NewPCG(s.seed, after))
	return s.fullStore.Replay(ctx, stream, after, follow, func(batch []eventstore.Envelope) error {
		for len(batch) > 0 {
			n := min(len(batch), 1+rng.IntN(7))
			for n < len(batch) && batch[n].Sequence == batch[n-1].Sequence {
				n++ // a batch holds whole commits
			}
			if err := fn(batch[:n]); err != nil {
				return err
			}
			batch = batch[n:]
		}
		return nil
	})
}

func openEngine(t testing.TB, dir string, store Store, hook SoldOutHook) *Engine {
	t.Helper()
	e, err := Open(dir, store, Options{SoldOut: hook})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close() })
	return e
}

func start(t testing.TB, e *Engine) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := e.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
}

// settle waits until every projection has applied the whole log and no sell-out waits to be
// recorded, polling with a deadline.
func settle(t testing.TB, e *Engine) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	lag := func() uint64 {
		st, err := e.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		n := uint64(0)
		for _, s := range st {
			n += s.Lag
		}
		return n
	}
	for {
		// Caught up, then nothing pending (every detection of the events applied so far is
		// in the file), then caught up again (with a sell-out recorded in between).
		if lag() == 0 {
			p := e.byName[Seats]
			g := p.acquire()
			marks, err := g.model.(*seatsModel).marks()
			p.release(g)
			if err != nil {
				t.Fatal(err)
			}
			if (len(marks) == 0 || e.opts.SoldOut == nil) && lag() == 0 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("read models did not settle")
		}
		time.Sleep(time.Millisecond)
	}
}

// snapshot is everything the queries answer about one log, for comparisons.
type snapshot struct {
	Concerts     []ConcertSummary           `json:"concerts"`
	Dates        map[string][]DateView      `json:"dates"`
	Seats        map[string][]SeatView      `json:"seats"`
	Reservations map[string]any             `json:"reservations"`
	UserRes      map[string][]string        `json:"userReservations"`
	Payments     map[string]any             `json:"payments"`
	Wallets      map[string]WalletView      `json:"wallets"`
	Histories    map[string][]LedgerEntry   `json:"histories"`
	Rankings     map[string][]RankingEntry  `json:"rankings"`
	Held         []HeldSeat                 `json:"held"`
	Pending      []PendingPayment           `json:"pending"`
	SeatsJSON    map[string]json.RawMessage `json:"-"`
}

func takeSnapshot(t testing.TB, e *Engine, store eventstore.Reader) snapshot {
	t.Helper()
	ctx := context.Background()
	concerts, users, reservations, payments := map[string]bool{}, map[string]bool{}, map[string]bool{}, map[string]bool{}
	days := map[string]time.Time{}
	for _, s := range store.Streams() {
		err := store.Replay(ctx, s, 0, false, func(batch []eventstore.Envelope) error {
			for _, env := range batch {
				switch env.AggregateType {
				case eventstore.TypeConcert:
					concerts[env.AggregateID] = true
				case eventstore.TypeReservation:
					reservations[env.AggregateID] = true
				case eventstore.TypePayment:
					payments[env.AggregateID] = true
				case eventstore.TypeWallet:
					users[env.AggregateID] = true
				case eventstore.TypeSellOut:
					ev, _ := aggregates.Decode(env.Type, env.Data)
					at := ev.(aggregates.DateSoldOut).SoldOutAt
					days[at.Format(time.DateOnly)] = at
				}
				if env.Type == "ReservationHeld" {
					ev, _ := aggregates.Decode(env.Type, env.Data)
					users[ev.(aggregates.ReservationHeld).UserID] = true
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	snap := snapshot{Dates: map[string][]DateView{}, Seats: map[string][]SeatView{}, Reservations: map[string]any{},
		UserRes: map[string][]string{}, Payments: map[string]any{}, Wallets: map[string]WalletView{}, Histories: map[string][]LedgerEntry{},
		Rankings: map[string][]RankingEntry{}, SeatsJSON: map[string]json.RawMessage{}}
	var err error
	snap.Concerts, err = e.Concerts(ctx)
	must(err)
	for c := range concerts {
		dates, err := e.Dates(ctx, c)
		must(err)
		snap.Dates[c] = dates
		for _, d := range dates {
			seats, err := e.Seats(ctx, c, d.DateID)
			must(err)
			snap.Seats[c+"/"+d.DateID] = seats
			raw, err := e.SeatsJSON(ctx, c, d.DateID)
			must(err)
			snap.SeatsJSON[c+"/"+d.DateID] = raw
			gz, err := e.SeatsJSONGzip(ctx, c, d.DateID)
			must(err)
			zr, err := gzip.NewReader(bytes.NewReader(gz))
			must(err)
			unzipped, err := io.ReadAll(zr)
			must(err)
			if !bytes.Equal(unzipped, raw) {
				t.Fatalf("seat map %s/%s: gzipped %s, plain %s", c, d.DateID, unzipped, raw)
			}
		}
	}
	for id := range reservations {
		r, err := e.Reservation(ctx, id)
		if err != nil {
			snap.Reservations[id] = err.Error()
		} else {
			snap.Reservations[id] = r
		}
	}
	for id := range payments {
		p, err := e.Payment(ctx, id)
		if err != nil {
			snap.Payments[id] = err.Error()
		} else {
			snap.Payments[id] = p
		}
	}
	for u := range users {
		w, err := e.Wallet(ctx, u)
		must(err)
		snap.Wallets[u] = w
		h, err := e.History(ctx, u)
		must(err)
		snap.Histories[u] = h
		rs, err := e.UserReservations(ctx, u)
		must(err)
		ids := []string{}
		for _, r := range rs {
			ids = append(ids, r.ReservationID)
		}
		snap.UserRes[u] = ids
	}
	for day, at := range days {
		r, err := e.DailyRanking(ctx, at)
		must(err)
		snap.Rankings[day] = r
	}
	snap.Held, err = e.HeldSeats(ctx)
	must(err)
	snap.Pending, err = e.PendingPayments(ctx)
	must(err)
	sort.Slice(snap.Pending, func(i, j int) bool { return snap.Pending[i].PaymentID < snap.Pending[j].PaymentID })
	return snap
}

func (s snapshot) json(t testing.TB) []byte {
	t.Helper()
	b, err := json.MarshalIndent(s, "", " ")
	if err != nil {
		t.Fatal(err)
	}
	return append(b, '\n')
}

// checkSeatsJSON checks that the pre-encoded seat maps say what Seats says.
func (s snapshot) checkSeatsJSON(t testing.TB) {
	t.Helper()
	for k, raw := range s.SeatsJSON {
		var got struct {
			Seats []SeatView `json:"seats"`
		}
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatalf("seat map %s is not JSON: %v", k, err)
		}
		if a, b := fmt.Sprint(got.Seats), fmt.Sprint(s.Seats[k]); a != b {
			t.Fatalf("seat map %s: encoded %s, Seats %s", k, a, b)
		}
	}
}

// checkReservationSeats checks that the seat maps agree with the reservations: every seat of a
// HELD reservation shows HELD and every seat of a CONFIRMED one SOLD, however many it has.
// (The seats of an ended reservation may be held again by another.)
func (s snapshot) checkReservationSeats(t testing.TB) {
	t.Helper()
	for id, r := range s.Reservations {
		v, ok := r.(ReservationView)
		if !ok {
			continue
		}
		want := map[aggregates.ReservationStatus]aggregates.SeatStatus{
			aggregates.ReservationStatusHeld: aggregates.SeatStatusHeld, aggregates.ReservationStatusConfirmed: aggregates.SeatStatusSold}[v.Status]
		if want == "" {
			continue
		}
		seats := s.Seats[v.ConcertID+"/"+v.DateID]
		for _, n := range v.SeatNos {
			if n < 1 || n > len(seats) || seats[n-1].Status != want {
				t.Fatalf("reservation %s is %s, but its seat %d of %v is not %s in the seat map %v", id, v.Status, n, v.SeatNos, want, seats)
			}
		}
	}
}
