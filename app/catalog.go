package app

import (
	"context"
	"fmt"
	"time"

	"github.com/booking-engine/booking/aggregates"
)

// CreateConcert adds a concert; empty concert and date IDs are generated.
func (s *Service) CreateConcert(ctx context.Context, meta Meta, c NewConcert) (aggregates.ConcertCreated, error) {
	if c.ConcertID == "" {
		c.ConcertID = idFor(meta, "concert")
	}
	dates := make([]aggregates.DateSpec, len(c.Dates))
	for i, d := range c.Dates {
		if d.DateID == "" {
			d.DateID = fmt.Sprintf("d%d", i+1)
		}
		ranges := make([]aggregates.PriceRange, len(d.SeatPrices))
		for j, r := range d.SeatPrices {
			ranges[j] = aggregates.PriceRange{From: r.From, To: r.To, Price: r.Price}
		}
		dates[i] = aggregates.DateSpec{DateID: d.DateID, StartsAt: d.StartsAt.UTC(), SeatCount: d.SeatCount, Price: d.Price, SeatPrices: ranges}
	}
	cmd := aggregates.CreateConcert{ConcertID: c.ConcertID, Title: c.Title, Dates: dates, Now: s.clock.Now(), RequestID: requestID(meta, "concert")}
	if !aggregates.ValidID(c.ConcertID) {
		// Checked before the store sees the ID: it becomes part of a subject.
		_, err := aggregates.Concert{}.DecideCreate(cmd)
		return aggregates.ConcertCreated{}, err
	}
	st, err := s.concerts.Do(ctx, c.ConcertID, meta.step("create/"+c.ConcertID),
		func(st aggregates.Concert) ([]aggregates.Event, error) { return st.DecideCreate(cmd) })
	if err != nil {
		return aggregates.ConcertCreated{}, fmt.Errorf("create concert %s: %w", c.ConcertID, err)
	}
	return st.Created(), nil
}

// RecordSellOut records the first sell-out of a date. The seats projection calls it when it
// sees a date's last seat sold; later calls (replays, re-sell-outs) change nothing.
func (s *Service) RecordSellOut(ctx context.Context, concertID, dateID string, soldOutAt time.Time) error {
	c, err := s.concert(ctx, concertID)
	if err != nil {
		return err
	}
	id := concertID + "." + dateID
	cmd := aggregates.RecordSellOut{ConcertID: concertID, DateID: dateID, SoldOutAt: soldOutAt, SalesOpenedAt: c.Created().SalesOpenedAt}
	// A sell-out is no request's doing: the step is its own correlation.
	_, err = s.sellouts.Do(ctx, id, Meta{CorrelationID: "sellout/" + id}.step("sellout/"+id),
		func(st aggregates.SellOut) ([]aggregates.Event, error) { return st.DecideRecord(cmd) })
	if err != nil {
		return fmt.Errorf("record sell-out of %s: %w", id, err)
	}
	return nil
}
