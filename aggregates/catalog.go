package aggregates

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of the catalog, from the contract.
const (
	MaxSeatsPerDate = 10000
	MaxPrice        = 100_000_000
	MaxDates        = 100
	MaxTitleLen     = 200
)

// ValidID reports whether s is a valid user, concert or date ID: 1 to 64 characters of
// [A-Za-z0-9_-]. A loop, not a regexp: every command checks several IDs, and the regexp was
// 2% of a flash sale's CPU.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// PriceRange sets the price of seats From..To (inclusive) of a date.
type PriceRange struct {
	From  int   `json:"from"`
	To    int   `json:"to"`
	Price int64 `json:"price"`
}

// DateSpec is one date of a concert: when it starts, how many seats it has and their prices.
type DateSpec struct {
	DateID     string       `json:"dateId"`
	StartsAt   time.Time    `json:"startsAt"`
	SeatCount  int          `json:"seatCount"`
	Price      int64        `json:"price"`
	SeatPrices []PriceRange `json:"seatPrices,omitempty"`
}

// PriceOf returns the price of seat n and whether the date has that seat. Later ranges win
// over earlier ones where they overlap.
func (d DateSpec) PriceOf(n int) (int64, bool) {
	if n < 1 || n > d.SeatCount {
		return 0, false
	}
	price := d.Price
	for _, r := range d.SeatPrices {
		if n >= r.From && n <= r.To {
			price = r.Price
		}
	}
	return price, true
}

// Concert is the state of one concert. A concert is immutable once created, which lets read
// models look it up from the log at any time.
type Concert struct {
	created ConcertCreated
	exists  bool
}

// CreateConcert is the command to add a concert to the catalog.
type CreateConcert struct {
	ConcertID string
	Title     string
	Dates     []DateSpec
	Now       time.Time
	// RequestID names the request; repeating the request that created the concert is a no-op.
	RequestID string
}

// Exists reports whether the concert was created.
func (c Concert) Exists() bool { return c.exists }

// Created returns the event that created the concert.
func (c Concert) Created() ConcertCreated { return c.created }

// Date returns one date of the concert.
func (c Concert) Date(dateID string) (DateSpec, bool) {
	for _, d := range c.created.Dates {
		if d.DateID == dateID {
			return d, true
		}
	}
	return DateSpec{}, false
}

// DecideCreate validates the command and creates the concert.
func (c Concert) DecideCreate(cmd CreateConcert) ([]Event, error) {
	if err := cmd.validate(); err != nil {
		return nil, err
	}
	if c.exists {
		if cmd.RequestID != "" && c.created.RequestID == cmd.RequestID {
			return nil, nil
		}
		return nil, ErrConcertExists
	}
	// The event must not share the caller's slices: a later change to the command would
	// otherwise rewrite a recorded fact. No price ranges is nil, as decoding the event gives
	// it (seatPrices is omitted when empty): this process's readers take the value itself.
	dates := slices.Clone(cmd.Dates)
	for i := range dates {
		dates[i].SeatPrices = slices.Clone(dates[i].SeatPrices)
		if len(dates[i].SeatPrices) == 0 {
			dates[i].SeatPrices = nil
		}
	}
	return []Event{ConcertCreated{ConcertID: cmd.ConcertID, Title: cmd.Title, Dates: dates, SalesOpenedAt: cmd.Now, RequestID: cmd.RequestID}}, nil
}

func (cmd CreateConcert) validate() error {
	invalid := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	if !ValidID(cmd.ConcertID) {
		return invalid("concertId must be 1-64 characters of [A-Za-z0-9_-]")
	}
	// Titles are counted in characters, not bytes: a Korean title of 100 characters is 300 bytes.
	if !utf8.ValidString(cmd.Title) || strings.TrimSpace(cmd.Title) == "" || utf8.RuneCountInString(cmd.Title) > MaxTitleLen {
		return invalid("title must be 1-%d characters", MaxTitleLen)
	}
	if len(cmd.Dates) == 0 || len(cmd.Dates) > MaxDates {
		return invalid("a concert has 1-%d dates", MaxDates)
	}
	seen := map[string]bool{}
	for i, d := range cmd.Dates {
		if !ValidID(d.DateID) {
			return invalid("dates[%d].dateId must be 1-64 characters of [A-Za-z0-9_-]", i)
		}
		if seen[d.DateID] {
			return invalid("dates[%d].dateId %q is repeated", i, d.DateID)
		}
		seen[d.DateID] = true
		if d.StartsAt.IsZero() {
			return invalid("dates[%d].startsAt is required", i)
		}
		if d.SeatCount < 1 || d.SeatCount > MaxSeatsPerDate {
			return invalid("dates[%d].seatCount must be 1-%d", i, MaxSeatsPerDate)
		}
		if d.Price < 0 || d.Price > MaxPrice {
			return invalid("dates[%d].price must be 0-%d", i, MaxPrice)
		}
		for j, r := range d.SeatPrices {
			if r.From < 1 || r.To < r.From || r.To > d.SeatCount {
				return invalid("dates[%d].seatPrices[%d] must satisfy 1 <= from <= to <= seatCount", i, j)
			}
			if r.Price < 0 || r.Price > MaxPrice {
				return invalid("dates[%d].seatPrices[%d].price must be 0-%d", i, j, MaxPrice)
			}
		}
	}
	return nil
}

// Apply returns the state after one event.
func (c Concert) Apply(e Event) Concert {
	if ev, ok := e.(ConcertCreated); ok {
		c.created, c.exists = ev, true
	}
	return c
}

// SellOut is the state of one date's sell-out record.
type SellOut struct{ recorded bool }

// RecordSellOut is the command to record that every seat of a date was sold.
type RecordSellOut struct {
	ConcertID     string
	DateID        string
	SoldOutAt     time.Time
	SalesOpenedAt time.Time
}

// DecideRecord records the first sell-out only; later ones change nothing.
func (s SellOut) DecideRecord(cmd RecordSellOut) ([]Event, error) {
	if s.recorded {
		return nil, nil
	}
	return []Event{DateSoldOut(cmd)}, nil
}

// Apply returns the state after one event.
func (s SellOut) Apply(e Event) SellOut {
	if _, ok := e.(DateSoldOut); ok {
		s.recorded = true
	}
	return s
}
