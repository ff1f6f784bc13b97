package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const testAdminToken = "bench-admin"

func testConfig(url string) Config {
	return Config{
		Target:      url,
		AdminToken:  testAdminToken,
		Rate:        1000,
		Duration:    200 * time.Millisecond,
		MaxInflight: 8,
		Timeout:     5 * time.Second,
		Clock:       newFakeClock(),
		RunID:       "t1",
	}
}

func TestRace(t *testing.T) {
	tests := []struct {
		name        string
		svc         fakeKnobs
		winners     int64
		conflicts   int64
		rateLimited int64
		checkOK     bool
	}{
		{name: "exactly one of the users wins the seat and the others get 409", winners: 1, conflicts: 39, checkOK: true},
		{name: "a service that sells one seat twice fails the check", svc: fakeKnobs{acceptEveryHold: true}, winners: 40, checkOK: false},
		{name: "a rate-limited service shows as 429s, not as winners", svc: fakeKnobs{rateLimitHolds: true}, rateLimited: 40, checkOK: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newFakeService(t, tt.svc)
			res, err := Race(context.Background(), testConfig(srv.URL), RaceOptions{Users: 40})
			if err != nil {
				t.Fatal(err)
			}
			if res.Accepted != tt.winners || res.Conflicts409 != tt.conflicts || res.RateLimited429 != tt.rateLimited || res.Requests != 40 {
				t.Errorf("winners %d, 409s %d, 429s %d, requests %d; want %d, %d, %d, 40",
					res.Accepted, res.Conflicts409, res.RateLimited429, res.Requests, tt.winners, tt.conflicts, tt.rateLimited)
			}
			if ok := len(res.Failed()) == 0; ok != tt.checkOK {
				t.Errorf("checks %+v, want all ok = %v", res.Checks, tt.checkOK)
			}
			if tt.rateLimited > 0 && !strings.Contains(strings.Join(res.Warnings, "\n"), "--user-rate-limit 0") {
				t.Errorf("warnings %q do not tell how to turn the rate limit off", res.Warnings)
			}
			// 40 users through 8 slots: the cap must have held most of them back.
			if res.InflightCapHits == 0 {
				t.Error("no in-flight cap hits reported for 40 users through 8 slots")
			}
		})
	}
}

func TestRaceOnAGivenSeatNeedsNoAdminToken(t *testing.T) {
	_, srv := newFakeService(t, fakeKnobs{})
	cfg := testConfig(srv.URL)
	createTestConcert(t, srv.URL, "given", 3)
	cfg.AdminToken = ""
	res, err := Race(context.Background(), cfg, RaceOptions{Users: 10, ConcertID: "given", DateID: "d1", SeatNo: 3})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 1 || res.Conflicts409 != 9 {
		t.Errorf("winners %d, 409s %d; want 1, 9", res.Accepted, res.Conflicts409)
	}
}

// createTestConcert creates a concert with one date (d1) of seats on the fake, as an operator
// would before pointing the benchmark at it.
func createTestConcert(t *testing.T, url, concert string, seats int) {
	t.Helper()
	cfg := testConfig(url)
	cfg.RunID = "setup"
	s, err := newSession(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.createConcert(context.Background(), concert, seatDates(seats, 100)); err != nil {
		t.Fatal(err)
	}
}

func TestFlashSaleSellsEverySeatExactlyOnce(t *testing.T) {
	_, srv := newFakeService(t, fakeKnobs{})
	res, err := FlashSale(context.Background(), testConfig(srv.URL), FlashSaleOptions{Seats: 20, Users: 5})
	if err != nil {
		t.Fatal(err)
	}
	if !res.SoldOut || res.Accepted != 20 {
		t.Fatalf("sold out %v, accepted %d; want true, 20", res.SoldOut, res.Accepted)
	}
	if res.Requests != 200 || res.Conflicts409 != 180 {
		t.Errorf("requests %d, 409s %d; want 200 (1000/s for 200ms), 180", res.Requests, res.Conflicts409)
	}
	if f := res.Failed(); len(f) != 0 || len(res.Checks) != 3 {
		t.Errorf("checks %+v, want three, all ok", res.Checks)
	}
	if res.Errors4xx != 0 || res.Errors5xx != 0 || res.TransportErrors != 0 {
		t.Errorf("unexpected errors: 4xx %d, 5xx %d, transport %d", res.Errors4xx, res.Errors5xx, res.TransportErrors)
	}
	if res.Rate != 1000 || res.Seats != 20 || res.DurationSec <= 0 {
		t.Errorf("rate %g, seats %d, duration %g", res.Rate, res.Seats, res.DurationSec)
	}
}

func TestFlashSaleSpreadsSeatsBeyondOneDateOverSeveralDates(t *testing.T) {
	_, srv := newFakeService(t, fakeKnobs{})
	// Two dates of 10,000: a seat number past the first date's would be a 404 there.
	res, err := FlashSale(context.Background(), testConfig(srv.URL), FlashSaleOptions{Seats: 20_000, Users: 5})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != res.Requests || res.Errors4xx != 0 {
		t.Fatalf("accepted %d of %d holds on free seats, 4xx %d; want every hold accepted", res.Accepted, res.Requests, res.Errors4xx)
	}
}

func TestFlashSaleWithSeveralSeatsPerHold(t *testing.T) {
	tests := []struct {
		name         string
		seats        int
		holds        int64 // accepted holds
		smallestHold int   // seats of the smallest hold asked for
	}{
		{name: "holds of four sell twenty seats in five holds", seats: 20, holds: 5, smallestHold: 4},
		{name: "the last seats of a date are held by a smaller hold", seats: 10, holds: 3, smallestHold: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, srv := newFakeService(t, fakeKnobs{})
			res, err := FlashSale(context.Background(), testConfig(srv.URL), FlashSaleOptions{Seats: tt.seats, Users: 5, SeatsPerHold: 4})
			if err != nil {
				t.Fatal(err)
			}
			if !res.SoldOut || res.Accepted != tt.holds || res.SeatsHeld != int64(tt.seats) || res.SeatsPerHold != 4 {
				t.Fatalf("sold out %v, %d holds holding %d seats (%d per hold); want true, %d holding %d (4)", res.SoldOut, res.Accepted, res.SeatsHeld, res.SeatsPerHold, tt.holds, tt.seats)
			}
			if f := res.Failed(); len(f) != 0 || len(res.Checks) != 3 {
				t.Errorf("checks %+v, want three, all ok", res.Checks)
			}
			if res.Errors4xx != 0 || res.Errors5xx != 0 || res.Conflicts409 != res.Requests-tt.holds {
				t.Errorf("4xx %d, 5xx %d, 409 %d of %d requests; want every hold but the %d accepted refused as taken", res.Errors4xx, res.Errors5xx, res.Conflicts409, res.Requests, tt.holds)
			}
			smallest := 4
			for _, h := range f.holdsAsked() {
				if !h.list || len(h.seats) > 4 {
					t.Fatalf("a hold asked for %v (as seatNos: %v); want seatNos of at most 4 seats", h.seats, h.list)
				}
				smallest = min(smallest, len(h.seats))
			}
			if smallest != tt.smallestHold {
				t.Errorf("the smallest hold asked for %d seats, want %d", smallest, tt.smallestHold)
			}
			var out strings.Builder
			if err := res.WriteTable(&out); err != nil {
				t.Fatal(err)
			}
			held := regexp.MustCompile(fmt.Sprintf(`(?m)^seats held +%d `, tt.seats))
			if !held.MatchString(out.String()) || !strings.Contains(out.String(), "(4 seats per hold)") {
				t.Errorf("the table does not say %d seats held and the seats per hold:\n%s", tt.seats, out.String())
			}
		})
	}
}

func TestFlashSaleOfSingleSeatsSendsSeatNo(t *testing.T) {
	f, srv := newFakeService(t, fakeKnobs{})
	if _, err := FlashSale(context.Background(), testConfig(srv.URL), FlashSaleOptions{Seats: 5}); err != nil {
		t.Fatal(err)
	}
	for _, h := range f.holdsAsked() {
		if h.list || len(h.seats) != 1 {
			t.Fatalf("a single-seat hold asked for %v as seatNos: %v; want seatNo, as clients before seatNos send", h.seats, h.list)
		}
	}
}

func TestFlashSaleChecksFailOnABrokenMultiSeatHold(t *testing.T) {
	tests := []struct {
		name  string
		knobs fakeKnobs
		check string
	}{
		{name: "a hold that holds only some of its seats fails every hold whole", knobs: fakeKnobs{holdFirstSeatOnly: true}, check: "every hold whole"},
		{name: "holds accepted on held seats fail no seat held twice", knobs: fakeKnobs{acceptEveryHold: true}, check: "no seat held twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newFakeService(t, tt.knobs)
			res, err := FlashSale(context.Background(), testConfig(srv.URL), FlashSaleOptions{Seats: 8, Users: 2, SeatsPerHold: 4})
			if err != nil {
				t.Fatal(err)
			}
			failed := res.Failed()
			if !slices.ContainsFunc(failed, func(c Check) bool { return c.Name == tt.check }) {
				t.Errorf("failed checks %+v lack %q", failed, tt.check)
			}
		})
	}
}

func TestFlashSaleWarnsWhenUsersReachTheirSeatLimit(t *testing.T) {
	_, srv := newFakeService(t, fakeKnobs{seatsPerUser: 8})
	res, err := FlashSale(context.Background(), testConfig(srv.URL), FlashSaleOptions{Seats: 40, Users: 1, SeatsPerHold: 4})
	if err != nil {
		t.Fatal(err)
	}
	if res.SeatsHeld != 8 || res.SoldOut {
		t.Errorf("one user holds %d seats (sold out %v), want its limit of 8", res.SeatsHeld, res.SoldOut)
	}
	if !strings.Contains(strings.Join(res.Warnings, "\n"), "SEAT_LIMIT_REACHED") {
		t.Errorf("warnings %q do not name SEAT_LIMIT_REACHED", res.Warnings)
	}
}

func TestDefaultFlashSaleUsersKeepWinsPerUserBelowTheSeatLimit(t *testing.T) {
	tests := []struct {
		name         string
		seats, users int
	}{
		{name: "a small sale has a user per seat", seats: 200, users: 200},
		{name: "a sale of 1000 seats has 1000 users", seats: 1000, users: 1000},
		{name: "a date of 10000 seats has 5000 users", seats: 10_000, users: 5000},
		{name: "ten dates of 10000 seats have 5000 users, two seats of each date apiece", seats: 100_000, users: 5000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := defaultFlashSaleUsers(tt.seats); got != tt.users {
				t.Errorf("%d users, want %d", got, tt.users)
			}
		})
	}
}

func TestSeatPickerHandsOutWholeHoldsOfOneDate(t *testing.T) {
	tests := []struct {
		name           string
		seats, perHold int
		holds          int
	}{
		{name: "blocks of four sell a date of twenty in five holds", seats: 20, perHold: 4, holds: 5},
		{name: "single seats sell five seats in five holds", seats: 5, perHold: 1, holds: 5},
		{name: "no hold spans two dates, and the two seats of the last date go in one", seats: 10_002, perHold: 4, holds: 2501},
		{name: "eight seats per hold leave a smaller last hold of a date", seats: 12, perHold: 8, holds: 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newSeatPicker(tt.seats, tt.perHold, 7)
			holds := 0
			for soldOut := false; !soldOut; {
				seats := p.pick()
				if len(seats) == 0 || len(seats) > tt.perHold || !slices.IsSorted(seats) || len(slices.Compact(slices.Clone(seats))) != len(seats) {
					t.Fatalf("pick %v: want 1 to %d distinct seats, ascending", seats, tt.perHold)
				}
				if first, _ := p.dateOf(seats[0]); seats[len(seats)-1] >= first+maxSeatsPerDate {
					t.Fatalf("pick %v spans two dates", seats)
				}
				soldOut = p.won(seats)
				if holds++; holds > tt.seats {
					t.Fatal("never sold out")
				}
			}
			wins, won, doubles := p.counts()
			if wins != tt.seats || won != tt.holds || holds != tt.holds || doubles != 0 {
				t.Errorf("%d seats in %d holds (%d doubles), want %d in %d", wins, won, doubles, tt.seats, tt.holds)
			}
			if after := p.pick(); len(after) < 1 || len(after) > tt.perHold {
				t.Errorf("after the sell-out a hold asks for %v, want 1 to %d seats", after, tt.perHold)
			}
		})
	}
}

func TestFlashSaleFailsItsCheckWhenASeatIsSoldTwice(t *testing.T) {
	_, srv := newFakeService(t, fakeKnobs{acceptEveryHold: true})
	res, err := FlashSale(context.Background(), testConfig(srv.URL), FlashSaleOptions{Seats: 5, Users: 5})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failed()) == 0 {
		t.Errorf("checks %+v all pass although every hold on a held seat was accepted", res.Checks)
	}
}

func TestFlashSaleRefusesToStart(t *testing.T) {
	tests := []struct {
		name string
		svc  fakeKnobs
		cfg  func(*Config)
		opts FlashSaleOptions
		want error
	}{
		{name: "a batched waiting queue is reported as such", svc: fakeKnobs{waiting: true}, opts: FlashSaleOptions{Seats: 5}, want: ErrTokensNotActive},
		{name: "without an admin token the concert cannot be created", cfg: func(c *Config) { c.AdminToken = "" }, opts: FlashSaleOptions{Seats: 5}, want: ErrAdminTokenRequired},
		{name: "a wrong admin token is the service's 401", cfg: func(c *Config) { c.AdminToken = "wrong" }, opts: FlashSaleOptions{Seats: 5}, want: ErrUnexpectedStatus},
		{name: "more seats than a hundred dates can have are refused", opts: FlashSaleOptions{Seats: 1_000_001}, want: ErrBadConfig},
		{name: "a hold of more seats than the contract allows is refused", opts: FlashSaleOptions{Seats: 20, SeatsPerHold: 9}, want: ErrBadConfig},
		{name: "a negative number of seats per hold is refused", opts: FlashSaleOptions{Seats: 20, SeatsPerHold: -1}, want: ErrBadConfig},
		{name: "a zero rate is refused", cfg: func(c *Config) { c.Rate = 0 }, opts: FlashSaleOptions{Seats: 5}, want: ErrBadConfig},
		{name: "a zero duration is refused", cfg: func(c *Config) { c.Duration = 0 }, opts: FlashSaleOptions{Seats: 5}, want: ErrBadConfig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newFakeService(t, tt.svc)
			cfg := testConfig(srv.URL)
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			if _, err := FlashSale(context.Background(), cfg, tt.opts); !errors.Is(err, tt.want) {
				t.Errorf("err %v, want %v", err, tt.want)
			}
		})
	}
}

func TestFlashSaleReportsRateLimitedHoldsWithAHint(t *testing.T) {
	_, srv := newFakeService(t, fakeKnobs{rateLimitHolds: true})
	res, err := FlashSale(context.Background(), testConfig(srv.URL), FlashSaleOptions{Seats: 5})
	if err != nil {
		t.Fatal(err)
	}
	if res.RateLimited429 != 200 || res.Errors4xx != 200 || res.Accepted != 0 {
		t.Errorf("429s %d, 4xx %d, accepted %d; want 200, 200, 0", res.RateLimited429, res.Errors4xx, res.Accepted)
	}
	var b bytes.Buffer
	if err := res.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--user-rate-limit 0", "not sold out", "RATE_LIMITED=200"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("table does not mention %q:\n%s", want, b.String())
		}
	}
}

func TestBookingCompletesEveryUsersFlow(t *testing.T) {
	svc, srv := newFakeService(t, fakeKnobs{})
	res, err := Booking(context.Background(), testConfig(srv.URL), BookingOptions{Users: 30})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 30 || svc.payments() != 30 {
		t.Errorf("bookings %d, payments on the service %d; want 30 and 30", res.Accepted, svc.payments())
	}
	want := []string{stepToken, stepCharge, stepHold, stepPay, stepE2E}
	if len(res.Steps) != len(want) {
		t.Fatalf("steps %+v, want %v", res.Steps, want)
	}
	for i, s := range res.Steps {
		if s.Name != want[i] || s.Count != 30 || s.OK != 30 {
			t.Errorf("step %d: %s count %d ok %d, want %s 30 30", i, s.Name, s.Count, s.OK, want[i])
		}
	}
	if f := res.Failed(); len(f) != 0 {
		t.Errorf("failed checks %+v", f)
	}
}

func TestBookingRunsOnEitherClientWithOrWithoutKeys(t *testing.T) {
	tests := []struct {
		name   string
		client ClientKind
		keys   bool
	}{
		{name: "fasthttp sends no keys unless asked", client: ClientFastHTTP},
		{name: "net/http sends no keys unless asked", client: ClientNetHTTP},
		{name: "fasthttp puts a key of its own on every POST", client: ClientFastHTTP, keys: true},
		{name: "net/http puts a key of its own on every POST", client: ClientNetHTTP, keys: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			svc, srv := newFakeService(t, fakeKnobs{})
			cfg := testConfig(srv.URL)
			cfg.Client, cfg.IdempotencyKeys = tt.client, tt.keys
			res, err := Booking(context.Background(), cfg, BookingOptions{Users: 30})
			if err != nil {
				t.Fatal(err)
			}
			if res.Accepted != 30 || svc.payments() != 30 {
				t.Errorf("bookings %d, payments on the service %d; want 30 and 30", res.Accepted, svc.payments())
			}
			unkeyed, repeated := svc.postKeys()
			if repeated != 0 {
				t.Errorf("%d keys were sent on more than one POST", repeated)
			}
			// The concert, then per user: token, charge, hold, pay.
			if want := 1 + 4*30; tt.keys && unkeyed != 0 || !tt.keys && unkeyed != want {
				t.Errorf("%d POSTs without a key (keys asked: %v, POSTs: %d)", unkeyed, tt.keys, want)
			}
		})
	}
}

func TestAnUnknownClientIsRefused(t *testing.T) {
	if _, err := NewClient("http://127.0.0.1:1", ClientOptions{MaxConns: 1, Timeout: time.Second, Kind: "curl"}); err == nil {
		t.Fatal("client curl was accepted")
	}
}

func TestBookingReportsTheStepThatFailed(t *testing.T) {
	tests := []struct {
		name     string
		svc      fakeKnobs
		step     string
		e2e5xx   int64
		e2eNotOK int64
		hint     string
	}{
		{name: "failing payments show as 5xx at the pay step and end to end", svc: fakeKnobs{failPayments: true}, step: stepPay, e2e5xx: 10},
		{name: "waiting tokens stop the flow at the token step with the queue hint", svc: fakeKnobs{waiting: true}, step: stepToken, e2eNotOK: 10, hint: "--queue-batch 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, srv := newFakeService(t, tt.svc)
			res, err := Booking(context.Background(), testConfig(srv.URL), BookingOptions{Users: 10})
			if err != nil {
				t.Fatal(err)
			}
			if res.Accepted != 0 || res.Errors5xx != tt.e2e5xx || res.TokenNotActive != tt.e2eNotOK {
				t.Errorf("e2e accepted %d, 5xx %d, not active %d; want 0, %d, %d", res.Accepted, res.Errors5xx, res.TokenNotActive, tt.e2e5xx, tt.e2eNotOK)
			}
			for _, s := range res.Steps {
				if s.Name == tt.step && s.OK != 0 {
					t.Errorf("step %s: %d ok, want every call to fail", s.Name, s.OK)
				}
			}
			if len(res.Failed()) != 1 {
				t.Errorf("checks %+v, want the booking check to fail", res.Checks)
			}
			if tt.hint != "" && !strings.Contains(strings.Join(res.Warnings, "\n"), tt.hint) {
				t.Errorf("warnings %q lack %q", res.Warnings, tt.hint)
			}
		})
	}
}

func TestReadFindsAConcertAndReadsItAtTheRate(t *testing.T) {
	_, srv := newFakeService(t, fakeKnobs{})
	createTestConcert(t, srv.URL, "demo", 50)
	cfg := testConfig(srv.URL)
	cfg.AdminToken = ""
	res, err := Read(context.Background(), cfg, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 200 || res.Accepted != 200 {
		t.Errorf("requests %d accepted %d, want 200 and 200", res.Requests, res.Accepted)
	}
	if len(res.Steps) != 2 || res.Steps[0].Count != 100 || res.Steps[1].Count != 100 {
		t.Errorf("steps %+v, want 100 seat maps and 100 date lists", res.Steps)
	}
}

func TestAWarmUpOffersHealthChecksAtTheRateAndIsNotMeasured(t *testing.T) {
	f, srv := newFakeService(t, fakeKnobs{})
	createTestConcert(t, srv.URL, "demo", 50)
	cfg := testConfig(srv.URL)
	cfg.Warmup = 100 * time.Millisecond
	res, err := Read(context.Background(), cfg, ReadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	f.mu.Lock()
	healthz := f.healthz
	f.mu.Unlock()
	if healthz != 100 || res.WarmupSec != 0.1 {
		t.Errorf("%d health checks, warmupSec %g; want 100 (1,000/s for 100 ms) and 0.1", healthz, res.WarmupSec)
	}
	if res.Requests != 200 || res.Accepted != 200 {
		t.Errorf("requests %d accepted %d, want the 200 reads alone", res.Requests, res.Accepted)
	}
}

func TestReadOfAMissingConcertCountsClientErrors(t *testing.T) {
	_, srv := newFakeService(t, fakeKnobs{})
	res, err := Read(context.Background(), testConfig(srv.URL), ReadOptions{ConcertID: "nope", DateID: "d1"})
	if err != nil {
		t.Fatal(err)
	}
	if res.Accepted != 0 || res.Errors4xx != 200 {
		t.Errorf("accepted %d, 4xx %d; want 0, 200", res.Accepted, res.Errors4xx)
	}
}

func TestAnUnreachableTargetIsNotReady(t *testing.T) {
	_, srv := newFakeService(t, fakeKnobs{})
	url := srv.URL
	srv.Close()
	if _, err := Race(context.Background(), testConfig(url), RaceOptions{Users: 2}); !errors.Is(err, ErrNotReady) {
		t.Errorf("err %v, want ErrNotReady", err)
	}
}

type fakeRebuilder struct {
	events, raw  int
	dur, rawDur  time.Duration
	err, rawErr  error
	rebuildCalls int
}

func (f *fakeRebuilder) Rebuild(context.Context) (int, time.Duration, error) {
	f.rebuildCalls++
	return f.events, f.dur, f.err
}

func (f *fakeRebuilder) RawReplay(context.Context) (int, time.Duration, error) {
	return f.raw, f.rawDur, f.rawErr
}

func TestRebuildBench(t *testing.T) {
	boom := errors.New("boom")
	tests := []struct {
		name        string
		r           fakeRebuilder
		perSec, raw float64
		err         error
	}{
		{name: "both rates are events over time", r: fakeRebuilder{events: 1000, dur: 2 * time.Second, raw: 1000, rawDur: 500 * time.Millisecond}, perSec: 500, raw: 2000},
		{name: "a failed raw replay is reported", r: fakeRebuilder{rawErr: boom}, err: boom},
		{name: "a failed rebuild is reported", r: fakeRebuilder{raw: 1, rawDur: time.Second, err: boom}, err: boom},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := RebuildBench(context.Background(), &tt.r)
			if !errors.Is(err, tt.err) {
				t.Fatalf("err %v, want %v", err, tt.err)
			}
			if err != nil {
				return
			}
			if res.EventsPerSec != tt.perSec || res.RawEventsPerSec != tt.raw || res.AcceptedPerSec != tt.perSec {
				t.Errorf("events/s %g, raw %g, accepted/s %g; want %g, %g, %g", res.EventsPerSec, res.RawEventsPerSec, res.AcceptedPerSec, tt.perSec, tt.raw, tt.perSec)
			}
		})
	}
}

func TestResultJSONHasTheAgreedFields(t *testing.T) {
	_, srv := newFakeService(t, fakeKnobs{})
	res, err := FlashSale(context.Background(), testConfig(srv.URL), FlashSaleOptions{Seats: 10})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "out.json")
	if err := res.WriteJSONFile(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"scenario", "acceptedPerSec", "p50Ms", "p95Ms", "p99Ms", "p999Ms", "errors5xx", "errors4xx",
		"accepted", "seats", "seatsPerHold", "seatsHeld", "durationSec", "rate", "inflightCapHits", "steps", "checks"} {
		if _, ok := got[k]; !ok {
			t.Errorf("JSON lacks %q", k)
		}
	}
	if got["scenario"] != ScenarioFlashSale || got["accepted"] != float64(10) || got["seats"] != float64(10) {
		t.Errorf("scenario %v accepted %v seats %v", got["scenario"], got["accepted"], got["seats"])
	}
}

func TestAnInterruptedRunStillReportsWhatItMeasured(t *testing.T) {
	_, srv := newFakeService(t, fakeKnobs{})
	cfg := testConfig(srv.URL)
	clk := newFakeClock()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	halfway := clk.Now().Add(cfg.Duration / 2)
	clk.onSleep = func(at time.Time) {
		if !at.Before(halfway) {
			cancel()
		}
	}
	cfg.Clock = clk
	res, err := FlashSale(ctx, cfg, FlashSaleOptions{Seats: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if res.Requests != 100 || res.TransportErrors != 0 {
		t.Errorf("requests %d, transport errors %d; want the 100 launched before the interruption, all answered", res.Requests, res.TransportErrors)
	}
	if !strings.Contains(strings.Join(res.Warnings, "\n"), "interrupted: 100 of 200") {
		t.Errorf("warnings %q do not say the run was interrupted", res.Warnings)
	}
}
