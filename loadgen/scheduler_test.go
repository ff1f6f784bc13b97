package loadgen

import (
	"bytes"
	"context"
	"errors"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"
)

func TestRunOpenLaunchesEveryCallAtItsScheduledTime(t *testing.T) {
	clk := newFakeClock()
	start := clk.Now()
	var (
		mu  sync.Mutex
		got = make(map[int]time.Time)
	)
	st, err := RunOpen(context.Background(), clk, Schedule{Rate: 400, Count: 50, MaxInflight: 50}, func(_ context.Context, i int, at time.Time) {
		mu.Lock()
		defer mu.Unlock()
		got[i] = at
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Launched != 50 || len(got) != 50 {
		t.Fatalf("launched %d, ran %d calls; want 50", st.Launched, len(got))
	}
	for i := range 50 {
		if want := start.Add(time.Duration(i) * 2500 * time.Microsecond); !got[i].Equal(want) {
			t.Errorf("call %d scheduled at +%s, want +%s", i, got[i].Sub(start), want.Sub(start))
		}
	}
	if st.CapHits != 0 || st.MaxLag != 0 {
		t.Errorf("cap hits %d, max lag %s; want none on a virtual clock", st.CapHits, st.MaxLag)
	}
}

func TestRunOpenDoesNotWaitForEarlierCalls(t *testing.T) {
	// Every call blocks until all have started: a closed-loop generator would deadlock here.
	const n = 20
	var started sync.WaitGroup
	started.Add(n)
	st, err := RunOpen(context.Background(), newFakeClock(), Schedule{Rate: 1000, Count: n, MaxInflight: n}, func(context.Context, int, time.Time) {
		started.Done()
		started.Wait()
	})
	if err != nil || st.Launched != n {
		t.Fatalf("launched %d, err %v; want %d, nil", st.Launched, err, n)
	}
}

func TestRunOpenCountsLaunchesHeldBackByTheInflightCap(t *testing.T) {
	clk := newFakeClock()
	entered := make(chan int, 3)
	release := make(chan struct{})
	lat := make(chan time.Duration, 3)
	done := make(chan ScheduleStats)
	capWait := make(chan struct{})
	testHookCapWait = func() { close(capWait) }
	t.Cleanup(func() { testHookCapWait = func() {} })
	go func() {
		st, err := RunOpen(context.Background(), clk, Schedule{Rate: 100, Count: 3, MaxInflight: 2}, func(_ context.Context, i int, at time.Time) {
			entered <- i
			<-release
			lat <- clk.Now().Sub(at)
		})
		if err != nil {
			t.Error(err)
		}
		done <- st
	}()
	// Two calls occupy the cap; the third must wait for one of them.
	<-entered
	<-entered
	<-capWait
	clk.Advance(time.Second)
	close(release)
	st := <-done
	if st.CapHits != 1 {
		t.Errorf("cap hits %d, want 1", st.CapHits)
	}
	if st.Launched != 3 {
		t.Errorf("launched %d, want 3", st.Launched)
	}
	// The third call was scheduled at +20ms and launched once the clock had moved a second on.
	if want := time.Second; st.MaxLag != want {
		t.Errorf("max lag %s, want %s", st.MaxLag, want)
	}
	close(lat)
	var longest time.Duration
	for d := range lat {
		longest = max(longest, d)
	}
	if longest < st.MaxLag {
		t.Errorf("longest latency %s is shorter than the launch delay %s: the wait was not measured", longest, st.MaxLag)
	}
}

func TestRunOpenStopsLaunchingWhenTheContextEnds(t *testing.T) {
	clk := newFakeClock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	fourth := clk.Now().Add(3 * 10 * time.Millisecond)
	clk.onSleep = func(at time.Time) {
		if !at.Before(fourth) {
			cancel()
		}
	}
	var mu sync.Mutex
	calls := 0
	st, err := RunOpen(ctx, clk, Schedule{Rate: 100, Count: 10, MaxInflight: 4}, func(context.Context, int, time.Time) {
		mu.Lock()
		calls++
		mu.Unlock()
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", err)
	}
	if st.Launched != 3 || calls != 3 {
		t.Errorf("launched %d, ran %d; want 3 (every call before the cancel, none after)", st.Launched, calls)
	}
}

func TestRunOpenRejectsSchedulesItCannotRun(t *testing.T) {
	tests := []struct {
		name string
		s    Schedule
	}{
		{name: "a zero rate is refused", s: Schedule{Rate: 0, Count: 1, MaxInflight: 1}},
		{name: "a negative count is refused", s: Schedule{Rate: 1, Count: -1, MaxInflight: 1}},
		{name: "a zero in-flight cap is refused", s: Schedule{Rate: 1, Count: 1, MaxInflight: 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := RunOpen(context.Background(), newFakeClock(), tt.s, func(context.Context, int, time.Time) { t.Error("called") })
			if !errors.Is(err, ErrBadSchedule) {
				t.Errorf("err %v, want ErrBadSchedule", err)
			}
		})
	}
}

func TestCountFor(t *testing.T) {
	tests := []struct {
		name string
		rate float64
		d    time.Duration
		want int
	}{
		{name: "a whole number of launches is exact", rate: 1000, d: 2 * time.Second, want: 2000},
		{name: "a fractional count rounds to the nearest launch", rate: 3, d: 500 * time.Millisecond, want: 2},
		{name: "a run shorter than one period still launches nothing extra", rate: 1, d: 100 * time.Millisecond, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := CountFor(tt.rate, tt.d); got != tt.want {
				t.Errorf("CountFor(%g, %s) = %d, want %d", tt.rate, tt.d, got, tt.want)
			}
		})
	}
}

func TestRealClockSleepUntilReturnsWhenTheContextEnds(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := (RealClock{}).SleepUntil(ctx, time.Now().Add(time.Hour)); !errors.Is(err, context.Canceled) {
		t.Errorf("err %v, want context.Canceled", err)
	}
	if err := (RealClock{}).SleepUntil(context.Background(), time.Now().Add(-time.Second)); err != nil {
		t.Errorf("a time in the past: err %v, want nil", err)
	}
}

func TestRunOpenRunsEveryCallOnceAndNeverMoreThanTheCapAtOnce(t *testing.T) {
	cases := []struct {
		name            string
		count, inflight int
	}{
		{"one call at a time runs them all one after another", 200, 1},
		{"a few at a time reuse a few workers", 2000, 3},
		{"a cap above the count starts no more workers than calls", 300, 1000},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var (
				mu        sync.Mutex
				running   int
				most      int
				seen      = make([]int, c.count)
				goroutine = map[uint64]bool{}
			)
			_, err := RunOpen(context.Background(), RealClock{}, Schedule{Rate: 1e9, Count: c.count, MaxInflight: c.inflight}, func(_ context.Context, i int, _ time.Time) {
				mu.Lock()
				running++
				most = max(most, running)
				seen[i]++
				goroutine[goid()] = true
				mu.Unlock()
				runtime.Gosched()
				mu.Lock()
				running--
				mu.Unlock()
			})
			if err != nil {
				t.Fatal(err)
			}
			for i, n := range seen {
				if n != 1 {
					t.Fatalf("call %d ran %d times", i, n)
				}
			}
			if most > c.inflight {
				t.Fatalf("%d calls ran at once, cap %d", most, c.inflight)
			}
			if len(goroutine) > min(c.inflight, c.count) {
				t.Fatalf("%d goroutines ran the calls, more than the cap %d", len(goroutine), c.inflight)
			}
		})
	}
}

// goid returns the running goroutine's ID, read from its stack header.
func goid() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b = bytes.TrimPrefix(b, []byte("goroutine "))
	id, _ := strconv.ParseUint(string(b[:bytes.IndexByte(b, ' ')]), 10, 64)
	return id
}
