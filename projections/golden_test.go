package projections

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
)

var update = flag.Bool("update", false, "rewrite the golden event logs and read models in testdata/golden")

// goldenCases are scripted histories. With -update each is played through the deciders against
// a live engine (whose sell-out hook appends DateSoldOut like the app), and the log and the
// read models are written to testdata/golden; without it the recorded log is replayed into
// fresh read models that must match the recorded ones.
var goldenCases = []struct {
	name   string
	script func(w *world, settle func())
}{
	{"holds_expiries_and_cancellations", func(w *world, settle func()) {
		w.must(w.createConcert("c1", "Aurora Live", date("d1", 6, 1000, aggregates.PriceRange{From: 1, To: 2, Price: 1500})))
		w.tick(time.Second)
		w.must(w.hold("r1", "alice", "c1", "d1", 1, 5*time.Minute))
		w.tick(time.Second)
		w.must(w.hold("r2", "alice", "c1", "d1", 2, 5*time.Minute))
		w.tick(time.Second)
		w.must(w.hold("r3", "bob", "c1", "d1", 3, 5*time.Minute))
		if err := w.hold("r4", "carol", "c1", "d1", 3, 5*time.Minute); !errors.Is(err, aggregates.ErrSeatUnavailable) {
			w.t.Fatalf("second hold of a seat: %v", err)
		}
		w.tick(time.Second)
		w.must(w.cancel("r2", "alice"))
		w.tick(6 * time.Minute)
		w.must(w.expire("r1"))
		w.must(w.expire("r3"))
		w.tick(time.Second)
		w.must(w.hold("r5", "carol", "c1", "d1", 1, 5*time.Minute)) // a seat freed by an expiry is held again
		w.must(w.hold("r6", "carol", "c1", "d1", 6, 5*time.Minute))
	}},
	{"payments_failures_and_refunds", func(w *world, settle func()) {
		w.must(w.createConcert("c2", "Night Choir", date("d1", 10, 2000), date("d2", 4, 500)))
		w.must(w.charge("alice", 5000, "top-up-1"))
		w.must(w.charge("bob", 100, "top-up-2"))
		w.tick(time.Second)
		w.must(w.hold("r1", "alice", "c2", "d1", 1, 5*time.Minute))
		w.must(w.pay("p1", "r1", "alice"))
		w.tick(time.Second)
		w.must(w.hold("r2", "bob", "c2", "d1", 2, 5*time.Minute))
		if err := w.pay("p2", "r2", "bob"); !errors.Is(err, aggregates.ErrInsufficientPoints) {
			w.t.Fatalf("pay without points: %v", err)
		}
		w.tick(time.Second)
		w.must(w.hold("r3", "alice", "c2", "d2", 1, 5*time.Minute))
		w.tick(6 * time.Minute)
		if err := w.pay("p3", "r3", "alice"); !errors.Is(err, aggregates.ErrReservationNotPayable) {
			w.t.Fatalf("pay of a lapsed hold: %v", err)
		}
		w.must(w.expire("r3"))
		w.must(w.refund("p1"))
		w.tick(time.Second)
		// A payment whose debit is reversed because the hold lapsed between debit and confirm.
		w.must(w.hold("r4", "alice", "c2", "d2", 2, 5*time.Minute))
		w.payDelay = 6 * time.Minute
		if err := w.pay("p4", "r4", "alice"); !errors.Is(err, aggregates.ErrReservationNotPayable) {
			w.t.Fatalf("pay of a hold lapsing during the payment: %v", err)
		}
		w.payDelay = 0
		w.must(w.expire("r4"))
		// A payment and a refund interrupted by a crash: recovery's work.
		w.tick(time.Second)
		w.must(w.hold("r5", "alice", "c2", "d1", 5, 5*time.Minute))
		w.startPaymentOnly("p5", "r5", "alice")
		w.must(w.hold("r6", "alice", "c2", "d1", 6, 5*time.Minute))
		w.must(w.pay("p6", "r6", "alice"))
		w.startRefundOnly("p6")
	}},
	{"sell_out_and_re_sell_out", func(w *world, settle func()) {
		w.must(w.createConcert("c3", "Fast Sellers", date("d1", 3, 100), date("d2", 2, 100), date("d3", 2, 100)))
		w.must(w.charge("alice", 10_000, "top-up"))
		w.must(w.charge("bob", 10_000, "top-up"))
		buy := func(res, pay, user, d string, n int) {
			w.tick(10 * time.Second)
			w.must(w.hold(res, user, "c3", d, n, 5*time.Minute))
			w.must(w.pay(pay, res, user))
		}
		// d2 sells out 30s after sales opened, d1 after 50s: d2 ranks first.
		buy("r1", "p1", "alice", "d1", 1)
		buy("r2", "p2", "bob", "d2", 1)
		buy("r3", "p3", "alice", "d2", 2)
		settle()
		buy("r4", "p4", "bob", "d1", 2)
		buy("r5", "p5", "alice", "d1", 3)
		settle()
		// A refund makes d1 available again; selling it again does not move its ranking.
		w.tick(time.Minute)
		w.must(w.refund("p4"))
		settle()
		buy("r6", "p6", "alice", "d1", 2)
		settle()
		// d3 sells out the next day (UTC).
		w.tick(20 * time.Hour)
		buy("r7", "p7", "bob", "d3", 1)
		buy("r8", "p8", "bob", "d3", 2)
		settle()
	}},
}

func TestGolden(t *testing.T) {
	for _, tc := range goldenCases {
		t.Run(tc.name, func(t *testing.T) {
			logPath := filepath.Join("testdata", "golden", tc.name+".jsonl")
			wantPath := filepath.Join("testdata", "golden", tc.name+".want.json")
			if *update {
				recordGolden(t, tc.script, logPath, wantPath)
			}
			want, err := os.ReadFile(wantPath)
			if err != nil {
				t.Fatal(err)
			}

			t.Run("replayed into fresh read models", func(t *testing.T) {
				store := loadLog(t, logPath)
				var calls atomic.Int64
				e := openEngine(t, t.TempDir(), splitStore{store, 1}, func(context.Context, string, string, time.Time) error {
					calls.Add(1)
					return nil
				})
				start(t, e)
				settle(t, e)
				snap := takeSnapshot(t, e, store)
				snap.checkSeatsJSON(t)
				if got := snap.json(t); !bytes.Equal(got, want) {
					t.Fatalf("read models differ from %s:\n%s", wantPath, diffLines(want, got))
				}
				if n := calls.Load(); n != 0 {
					t.Fatalf("a replay of a log that records its sell-outs called the hook %d times", n)
				}
			})

			t.Run("rebuilt offline", func(t *testing.T) {
				store := loadLog(t, logPath)
				dir := t.TempDir()
				stats, err := RebuildOffline(context.Background(), dir, store, nil, nil, nil)
				if err != nil {
					t.Fatal(err)
				}
				if stats.Events == 0 {
					t.Fatal("rebuild read no events")
				}
				e := openEngine(t, dir, store, nil)
				start(t, e)
				if got := takeSnapshot(t, e, store).json(t); !bytes.Equal(got, want) {
					t.Fatalf("read models differ from %s:\n%s", wantPath, diffLines(want, got))
				}
			})
		})
	}
}

func recordGolden(t *testing.T, script func(*world, func()), logPath, wantPath string) {
	w := newWorld(t)
	e := openEngine(t, t.TempDir(), w.store, w.soldOut)
	start(t, e)
	script(w, func() { settle(t, e) })
	settle(t, e)
	live := takeSnapshot(t, e, w.store)
	if err := os.MkdirAll(filepath.Dir(logPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeLog(logPath, w.order); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(wantPath, live.json(t), 0o644); err != nil {
		t.Fatal(err)
	}
}

// diffLines shows the first lines where two texts differ.
func diffLines(want, got []byte) string {
	wl, gl := bytes.Split(want, []byte("\n")), bytes.Split(got, []byte("\n"))
	var out bytes.Buffer
	shown := 0
	for i := 0; i < max(len(wl), len(gl)) && shown < 20; i++ {
		var a, b []byte
		if i < len(wl) {
			a = wl[i]
		}
		if i < len(gl) {
			b = gl[i]
		}
		if !bytes.Equal(a, b) {
			out.WriteString("line " + strconv.Itoa(i+1) + ":\n  want " + string(a) + "\n  got  " + string(b) + "\n")
			shown++
		}
	}
	return out.String()
}
