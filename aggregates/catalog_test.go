package aggregates

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestConcert(t *testing.T) {
	startsAt := time.Date(2026, 12, 31, 19, 0, 0, 0, time.UTC)
	date := func(id string) DateSpec {
		return DateSpec{DateID: id, StartsAt: startsAt, SeatCount: 50, Price: 120000}
	}
	valid := CreateConcert{ConcertID: "c1", Title: "Aurora Live", Dates: []DateSpec{date("d1"), date("d2")}, Now: t0}
	created := ConcertCreated{ConcertID: "c1", Title: "Aurora Live", Dates: []DateSpec{date("d1"), date("d2")}, SalesOpenedAt: t0}
	// with returns the valid command changed by f, on copies of its slices.
	with := func(f func(*CreateConcert)) CreateConcert {
		cmd := valid
		cmd.Dates = []DateSpec{date("d1"), date("d2")}
		f(&cmd)
		return cmd
	}
	create := func(cmd CreateConcert) func(Concert) ([]Event, error) {
		return func(c Concert) ([]Event, error) { return c.DecideCreate(cmd) }
	}
	withDate := func(f func(*DateSpec)) func(Concert) ([]Event, error) {
		return create(with(func(c *CreateConcert) { f(&c.Dates[0]) }))
	}
	ranges := func(rs ...PriceRange) func(*DateSpec) { return func(d *DateSpec) { d.SeatPrices = rs } }
	created2 := func(f func(*DateSpec)) []Event {
		e := created
		e.Dates = []DateSpec{date("d1"), date("d2")}
		f(&e.Dates[0])
		return []Event{e}
	}

	run(t, Concert.Apply, []spec[Concert]{
		{name: "a valid concert is created and its sales open at creation", when: create(valid), then: []Event{created}, after: func(t *testing.T, c Concert) {
			if !c.Exists() || !c.Created().SalesOpenedAt.Equal(t0) {
				t.Fatalf("concert = %#v", c.Created())
			}
			if d, ok := c.Date("d2"); !ok || d.DateID != "d2" {
				t.Fatalf("Date(d2) = %#v, %v", d, ok)
			}
			if _, ok := c.Date("d9"); ok {
				t.Fatal("Date(d9) found on a concert without it")
			}
		}},
		{name: "an existing concert cannot be created again", given: []Event{created}, when: create(valid), err: ErrConcertExists},
		{name: "the request that created a concert may repeat itself", given: []Event{withRequest(created, "req-1")},
			when: create(withRequestCmd(valid, "req-1"))},
		{name: "another request cannot create an existing concert", given: []Event{withRequest(created, "req-1")},
			when: create(withRequestCmd(valid, "req-2")), err: ErrConcertExists},
		{name: "a concert needs an ID", when: create(with(func(c *CreateConcert) { c.ConcertID = "" })), err: ErrInvalid},
		{name: "a concert ID of 64 characters is accepted", when: create(with(func(c *CreateConcert) { c.ConcertID = strings.Repeat("a", 64) })), then: []Event{func() Event {
			e := created
			e.ConcertID = strings.Repeat("a", 64)
			return e
		}()}},
		{name: "a concert ID of 65 characters is invalid", when: create(with(func(c *CreateConcert) { c.ConcertID = strings.Repeat("a", 65) })), err: ErrInvalid},
		{name: "a concert ID with a slash is invalid", when: create(with(func(c *CreateConcert) { c.ConcertID = "c/1" })), err: ErrInvalid},
		{name: "a concert ID with a dot is invalid", when: create(with(func(c *CreateConcert) { c.ConcertID = "c.1" })), err: ErrInvalid},
		{name: "a concert needs a title", when: create(with(func(c *CreateConcert) { c.Title = "" })), err: ErrInvalid},
		{name: "a blank title is invalid", when: create(with(func(c *CreateConcert) { c.Title = " \t " })), err: ErrInvalid},
		{name: "a title of 201 characters is invalid", when: create(with(func(c *CreateConcert) { c.Title = strings.Repeat("x", 201) })), err: ErrInvalid},
		{name: "a title of 200 Korean characters is accepted though it is 600 bytes", when: create(with(func(c *CreateConcert) { c.Title = strings.Repeat("공", 200) })), then: []Event{func() Event {
			e := created
			e.Title = strings.Repeat("공", 200)
			return e
		}()}},
		{name: "a title that is not UTF-8 is invalid", when: create(with(func(c *CreateConcert) { c.Title = "Aurora \xff" })), err: ErrInvalid},
		{name: "a concert needs a date", when: create(with(func(c *CreateConcert) { c.Dates = nil })), err: ErrInvalid},
		{name: "a concert has at most MaxDates dates", when: create(with(func(c *CreateConcert) {
			c.Dates = nil
			for i := range MaxDates + 1 {
				c.Dates = append(c.Dates, date(fmt.Sprintf("d%d", i)))
			}
		})), err: ErrInvalid},
		{name: "a date needs an ID", when: withDate(func(d *DateSpec) { d.DateID = "" }), err: ErrInvalid},
		{name: "a date ID with a space is invalid", when: withDate(func(d *DateSpec) { d.DateID = "d 1" }), err: ErrInvalid},
		{name: "a repeated date ID is invalid", when: create(with(func(c *CreateConcert) { c.Dates[1].DateID = "d1" })), err: ErrInvalid},
		{name: "a date needs a start time", when: withDate(func(d *DateSpec) { d.StartsAt = time.Time{} }), err: ErrInvalid},
		{name: "a date of 1 seat is accepted", when: withDate(func(d *DateSpec) { d.SeatCount = 1 }), then: created2(func(d *DateSpec) { d.SeatCount = 1 })},
		{name: "a date of 10,000 seats is accepted", when: withDate(func(d *DateSpec) { d.SeatCount = 10000 }), then: created2(func(d *DateSpec) { d.SeatCount = 10000 })},
		{name: "a date of 0 seats is invalid", when: withDate(func(d *DateSpec) { d.SeatCount = 0 }), err: ErrInvalid},
		{name: "a date of 10,001 seats is invalid", when: withDate(func(d *DateSpec) { d.SeatCount = 10001 }), err: ErrInvalid},
		{name: "a price of 0 is accepted", when: withDate(func(d *DateSpec) { d.Price = 0 }), then: created2(func(d *DateSpec) { d.Price = 0 })},
		{name: "a price of 100,000,000 is accepted", when: withDate(func(d *DateSpec) { d.Price = 100_000_000 }), then: created2(func(d *DateSpec) { d.Price = 100_000_000 })},
		{name: "a negative price is invalid", when: withDate(func(d *DateSpec) { d.Price = -1 }), err: ErrInvalid},
		{name: "a price of 100,000,001 is invalid", when: withDate(func(d *DateSpec) { d.Price = 100_000_001 }), err: ErrInvalid},
		{name: "a seat price range inside the date is accepted", when: withDate(ranges(PriceRange{From: 1, To: 50, Price: 150000})), then: created2(ranges(PriceRange{From: 1, To: 50, Price: 150000}))},
		{name: "a seat price range of one seat is accepted", when: withDate(ranges(PriceRange{From: 7, To: 7, Price: 0})), then: created2(ranges(PriceRange{From: 7, To: 7, Price: 0}))},
		{name: "a seat price range starting at 0 is invalid", when: withDate(ranges(PriceRange{From: 0, To: 10, Price: 1})), err: ErrInvalid},
		{name: "a seat price range ending before it starts is invalid", when: withDate(ranges(PriceRange{From: 10, To: 9, Price: 1})), err: ErrInvalid},
		{name: "a seat price range beyond the last seat is invalid", when: withDate(ranges(PriceRange{From: 1, To: 51, Price: 1})), err: ErrInvalid},
		{name: "a negative seat price is invalid", when: withDate(ranges(PriceRange{From: 1, To: 10, Price: -1})), err: ErrInvalid},
		{name: "a seat price above the maximum is invalid", when: withDate(ranges(PriceRange{From: 1, To: 10, Price: MaxPrice + 1})), err: ErrInvalid},
		{name: "an invalid second date is caught", when: create(with(func(c *CreateConcert) { c.Dates[1].SeatCount = 0 })), err: ErrInvalid},
	})
}

func TestConcertCreatedDoesNotShareTheCommandsSlices(t *testing.T) {
	cmd := CreateConcert{ConcertID: "c1", Title: "Aurora Live", Now: t0, Dates: []DateSpec{{
		DateID: "d1", StartsAt: t0, SeatCount: 10, Price: 100, SeatPrices: []PriceRange{{From: 1, To: 2, Price: 200}},
	}}}
	events, err := Concert{}.DecideCreate(cmd)
	if err != nil {
		t.Fatal(err)
	}
	cmd.Dates[0].SeatCount = 9999
	cmd.Dates[0].SeatPrices[0].Price = 1
	got := events[0].(ConcertCreated).Dates[0]
	if got.SeatCount != 10 || got.SeatPrices[0].Price != 200 {
		t.Fatalf("a change to the command rewrote the event: %#v", got)
	}
}

func TestPriceOf(t *testing.T) {
	d := DateSpec{DateID: "d1", StartsAt: t0, SeatCount: 50, Price: 1000, SeatPrices: []PriceRange{
		{From: 1, To: 10, Price: 5000},
		{From: 8, To: 12, Price: 3000}, // overlaps the first range: later ranges win
	}}
	tests := []struct {
		name   string
		seat   int
		price  int64
		exists bool
	}{
		{name: "a seat in the first range has its price", seat: 1, price: 5000, exists: true},
		{name: "a seat in two ranges has the later range's price", seat: 8, price: 3000, exists: true},
		{name: "the last seat of a range has the range's price", seat: 12, price: 3000, exists: true},
		{name: "a seat outside every range has the date's price", seat: 13, price: 1000, exists: true},
		{name: "the last seat exists", seat: 50, price: 1000, exists: true},
		{name: "seat 0 does not exist", seat: 0, exists: false},
		{name: "a negative seat does not exist", seat: -1, exists: false},
		{name: "a seat beyond the count does not exist", seat: 51, exists: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			price, ok := d.PriceOf(tt.seat)
			if price != tt.price || ok != tt.exists {
				t.Fatalf("PriceOf(%d) = %d, %v; want %d, %v", tt.seat, price, ok, tt.price, tt.exists)
			}
		})
	}
}

func TestSellOut(t *testing.T) {
	soldOut := DateSoldOut{ConcertID: "c1", DateID: "d1", SoldOutAt: at(time.Hour), SalesOpenedAt: t0}
	record := func(when time.Time) func(SellOut) ([]Event, error) {
		return func(s SellOut) ([]Event, error) {
			return s.DecideRecord(RecordSellOut{ConcertID: "c1", DateID: "d1", SoldOutAt: when, SalesOpenedAt: t0})
		}
	}
	run(t, SellOut.Apply, []spec[SellOut]{
		{name: "the first sell-out of a date is recorded", when: record(at(time.Hour)), then: []Event{soldOut}},
		{name: "a sell-out after a refund keeps the first record", given: []Event{soldOut}, when: record(at(2 * time.Hour))},
		{name: "a replayed sell-out is not recorded twice", given: []Event{soldOut}, when: record(at(time.Hour))},
	})
}

func withRequest(e ConcertCreated, id string) ConcertCreated { e.RequestID = id; return e }

func withRequestCmd(c CreateConcert, id string) CreateConcert { c.RequestID = id; return c }

func TestValidIDAcceptsOnlyTheContractsPattern(t *testing.T) {
	tests := []struct {
		name string
		id   string
		want bool
	}{
		{"letters, digits, dash and underscore are an ID", "Concert_2026-a", true},
		{"one character is an ID", "a", true},
		{"64 characters are an ID", strings.Repeat("x", 64), true},
		{"65 characters are not", strings.Repeat("x", 65), false},
		{"the empty string is not", "", false},
		{"a dot is not allowed (it separates a date's ID parts)", "c1.d1", false},
		{"a space is not allowed", "c 1", false},
		{"a wildcard is not allowed (it would widen a subject)", "c*", false},
		{"non-ASCII letters are not allowed", "café", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ValidID(tt.id); got != tt.want {
				t.Fatalf("ValidID(%q) = %v, want %v", tt.id, got, tt.want)
			}
		})
	}
}
