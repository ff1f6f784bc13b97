package loadgen

import (
	"context"
	"errors"
	"testing"
)

func TestLoadIsSpreadOverEveryTarget(t *testing.T) {
	tests := []struct {
		name string
		// run runs the scenario against cfg and returns its result.
		run func(cfg Config) (Result, error)
		// path is the measured request, counted per instance.
		path string
		// want is how many measured requests the run sends in all.
		want int
	}{
		{
			name: "a booking run sends half of its users' flows to each of two instances",
			run:  func(cfg Config) (Result, error) { return Booking(context.Background(), cfg, BookingOptions{Users: 40}) },
			path: "POST /api/v1/payments", want: 40,
		},
		{
			name: "a flash sale sends half of its holds to each of two instances",
			run: func(cfg Config) (Result, error) {
				return FlashSale(context.Background(), cfg, FlashSaleOptions{Seats: 50, Users: 10})
			},
			path: "POST /api/v1/reservations", want: 200,
		},
		{
			name: "a read run sends half of its GETs to each of two instances",
			run:  func(cfg Config) (Result, error) { return Read(context.Background(), cfg, ReadOptions{}) },
			path: "GET /api/v1/concerts/", want: 200,
		},
		{
			name: "a race sends half of its users to each of two instances and one still wins",
			run:  func(cfg Config) (Result, error) { return Race(context.Background(), cfg, RaceOptions{Users: 40}) },
			path: "POST /api/v1/reservations", want: 40,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, a := newFakeService(t, fakeKnobs{})
			b := f.instance(t)
			res, err := tt.run(testConfig(a.URL + "," + b.URL))
			if err != nil {
				t.Fatal(err)
			}
			if failed := res.Failed(); len(failed) > 0 {
				t.Errorf("checks failed: %+v", failed)
			}
			onA, onB := f.received(a.URL, tt.path), f.received(b.URL, tt.path)
			if onA+onB != tt.want || onA != tt.want/2 || onB != tt.want/2 {
				t.Errorf("%s: %d on the first instance, %d on the second; want %d each", tt.path, onA, onB, tt.want/2)
			}
			if n := f.received(b.URL, "POST /api/v1/admin/"); n != 0 {
				t.Errorf("the second instance received %d admin calls; the set-up belongs on the first", n)
			}
		})
	}
}

func TestAUsersRequestsStayOnOneInstance(t *testing.T) {
	f, a := newFakeService(t, fakeKnobs{})
	b := f.instance(t)
	if _, err := Booking(context.Background(), testConfig(a.URL+","+b.URL), BookingOptions{Users: 2}); err != nil {
		t.Fatal(err)
	}
	// User 0 books through the first instance, user 1 through the second: every step.
	for _, p := range []string{"POST /api/v1/queue/tokens", "POST /api/v1/users/", "POST /api/v1/reservations", "POST /api/v1/payments"} {
		if onA, onB := f.received(a.URL, p), f.received(b.URL, p); onA != 1 || onB != 1 {
			t.Errorf("%s: %d on the first instance, %d on the second; want 1 and 1", p, onA, onB)
		}
	}
	if n := f.received(a.URL, "POST /api/v1/users/bench-t1-book-u-1/"); n != 0 {
		t.Errorf("user 1 charged %d times through the first instance; its flow belongs on the second", n)
	}
}

func TestATargetThatIsNotReadyStopsTheRun(t *testing.T) {
	_, a := newFakeService(t, fakeKnobs{})
	_, err := Read(context.Background(), testConfig(a.URL+",http://127.0.0.1:1"), ReadOptions{})
	if !errors.Is(err, ErrNotReady) {
		t.Fatalf("err = %v, want ErrNotReady for the unreachable second target", err)
	}
}
