package api

import (
	"strconv"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/app"
)

// maxSeatPrices bounds the price ranges of one date; a 64 KiB body could not hold many more.
const maxSeatPrices = 1000

// decodeNewConcert reads and validates the body of POST /api/v1/admin/concerts with the
// catalog's own limits, so that a bad concert is refused before any command runs.
func decodeNewConcert(body []byte) (app.NewConcert, error) {
	var nc app.NewConcert
	obj, err := decodeObject(body, "", "concertId", "title", "dates")
	if err != nil {
		return nc, err
	}
	if nc.ConcertID, err = obj.optionalID("concertId"); err != nil {
		return nc, err
	}
	if nc.Title, err = obj.requiredStr("title"); err != nil {
		return nc, err
	}
	if nc.Title == "" || len(nc.Title) > aggregates.MaxTitleLen {
		return nc, validationFailed("title must be 1-%d characters", aggregates.MaxTitleLen)
	}
	dates, present, err := obj.array("dates", aggregates.MaxDates)
	if err != nil {
		return nc, err
	}
	if !present {
		return nc, invalidRequest("dates is required")
	}
	if len(dates) == 0 {
		return nc, validationFailed("dates must hold 1-%d dates", aggregates.MaxDates)
	}
	seen := map[string]bool{}
	for i, raw := range dates {
		d, err := decodeNewDate(raw, "dates["+strconv.Itoa(i)+"]")
		if err != nil {
			return nc, err
		}
		if d.DateID != "" {
			if seen[d.DateID] {
				return nc, validationFailed("dates[%d].dateId %q is repeated", i, d.DateID)
			}
			seen[d.DateID] = true
		}
		nc.Dates = append(nc.Dates, d)
	}
	return nc, nil
}

func decodeNewDate(raw []byte, path string) (app.NewDate, error) {
	var d app.NewDate
	obj, err := decodeObject(raw, path, "dateId", "startsAt", "seatCount", "price", "seatPrices")
	if err != nil {
		return d, err
	}
	if d.DateID, err = obj.optionalID("dateId"); err != nil {
		return d, err
	}
	if d.StartsAt, err = obj.requiredTime("startsAt"); err != nil {
		return d, err
	}
	seatCount, err := obj.requiredInt("seatCount", 1, aggregates.MaxSeatsPerDate)
	if err != nil {
		return d, err
	}
	d.SeatCount = clampInt(seatCount)
	if d.Price, err = obj.requiredInt("price", 0, aggregates.MaxPrice); err != nil {
		return d, err
	}
	ranges, _, err := obj.array("seatPrices", maxSeatPrices)
	if err != nil {
		return d, err
	}
	for j, r := range ranges {
		sp, err := decodeSeatPrice(r, path+".seatPrices["+strconv.Itoa(j)+"]", d.SeatCount)
		if err != nil {
			return d, err
		}
		d.SeatPrices = append(d.SeatPrices, sp)
	}
	return d, nil
}

func decodeSeatPrice(raw []byte, path string, seatCount int) (app.SeatPrice, error) {
	var sp app.SeatPrice
	obj, err := decodeObject(raw, path, "from", "to", "price")
	if err != nil {
		return sp, err
	}
	from, err := obj.requiredInt("from", 1, int64(seatCount))
	if err != nil {
		return sp, err
	}
	to, err := obj.requiredInt("to", from, int64(seatCount))
	if err != nil {
		return sp, err
	}
	sp.From, sp.To = clampInt(from), clampInt(to)
	if sp.Price, err = obj.requiredInt("price", 0, aggregates.MaxPrice); err != nil {
		return sp, err
	}
	return sp, nil
}
