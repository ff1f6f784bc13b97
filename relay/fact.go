package relay

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// Fact is one event as the data platform receives it: the body of POST {url}/events.
//
// Data is the event's payload plus the aggregate's ID ("reservationId" or "paymentId") and
// "version", the stream sequence of the event's commit (increasing per aggregate). A fact about
// a reservation also carries "seatNos", the seats it is about (see seatNosOf), because only
// ReservationHeld names them in its payload and the platform should not have to join facts to
// know which seats were sold or freed. Deliveries run in parallel and are retried, so facts of
// one reservation may arrive out of order; the version orders them per aggregate, occurredAt
// orders them in time, and eventId dedups them.
type Fact struct {
	EventID    string          `json:"eventId"`
	Type       string          `json:"type"`
	OccurredAt time.Time       `json:"occurredAt"`
	Data       json.RawMessage `json:"data"`
}

// factTypes are the event types the contract sends to the data platform. The names come from
// the aggregates so that a renamed event breaks the build instead of silently going quiet.
var factTypes = map[string]bool{
	aggregates.ReservationHeld{}.EventType():      true,
	aggregates.ReservationConfirmed{}.EventType(): true,
	aggregates.ReservationExpired{}.EventType():   true,
	aggregates.ReservationCancelled{}.EventType(): true,
	aggregates.PaymentCompleted{}.EventType():     true,
	aggregates.PaymentRefunded{}.EventType():      true,
}

// IsFact reports whether events of this type are sent to the data platform.
func IsFact(eventType string) bool { return factTypes[eventType] }

// idKeys names the aggregate ID inside "data", per aggregate type.
var idKeys = map[string]string{
	eventstore.TypeReservation: "reservationId",
	eventstore.TypePayment:     "paymentId",
}

// factOf builds the outbound fact of a stored event. The payload's own fields are kept; the
// aggregate ID and version are written over any field of the same name, so the platform can
// always rely on them. A reservation's fact gets seatNos (never null) unless its payload has
// them already: ReservationHeld's own list is the decision of record.
func factOf(env eventstore.Envelope, seatNos []int) (Fact, error) {
	data := map[string]json.RawMessage{}
	if len(env.Data) > 0 && string(env.Data) != "null" {
		// A payload that is not a JSON object (never written by this code) is kept whole
		// under "payload" rather than dropped.
		if err := json.Unmarshal(env.Data, &data); err != nil {
			data = map[string]json.RawMessage{"payload": env.Data}
		}
	}
	if key, ok := idKeys[env.AggregateType]; ok && env.AggregateID != "" {
		id, err := json.Marshal(env.AggregateID)
		if err != nil {
			return Fact{}, fmt.Errorf("relay: encode aggregate ID of %s: %w", env.EventID, err)
		}
		data[key] = id
	}
	if _, own := data["seatNos"]; env.AggregateType == eventstore.TypeReservation && !own {
		if seatNos == nil {
			seatNos = []int{}
		}
		nos, err := json.Marshal(seatNos)
		if err != nil {
			return Fact{}, fmt.Errorf("relay: encode seats of %s: %w", env.EventID, err)
		}
		data["seatNos"] = nos
	}
	data["version"] = json.RawMessage(strconv.FormatUint(env.Sequence, 10))
	b, err := json.Marshal(data)
	if err != nil {
		return Fact{}, fmt.Errorf("relay: encode data of %s: %w", env.EventID, err)
	}
	return Fact{EventID: env.EventID, Type: env.Type, OccurredAt: env.OccurredAt.UTC(), Data: b}, nil
}

// seatEvent is what the relay reads of a seat event: whose it is and which seat.
type seatEvent struct {
	ReservationID string `json:"reservationId"`
	SeatNo        int    `json:"seatNo"`
}

// seatNosOf returns, per reservation, the seats that the seat events of one commit act on,
// ascending. A reservation's seats change only in the commit of a reservation event that
// changes them (SeatHeld with ReservationHeld, SeatSold with ReservationConfirmed,
// SeatReleased with ReservationExpired or ReservationCancelled), so the commit names the seats
// of each of its reservation facts without the relay keeping any state, and a redelivered
// commit yields the same facts. Seat events are not facts themselves. A seat event that does
// not decode (never written by this code) is left out and reported; the others still count.
func seatNosOf(envs []eventstore.Envelope) (map[string][]int, error) {
	var seats map[string][]int
	var errs []error
	for _, env := range envs {
		if env.AggregateType != eventstore.TypeSeat {
			continue
		}
		var ev seatEvent
		if err := json.Unmarshal(env.Data, &ev); err != nil {
			errs = append(errs, fmt.Errorf("relay: decode seat event %s: %w", env.EventID, err))
			continue
		}
		if seats == nil {
			seats = map[string][]int{}
		}
		seats[ev.ReservationID] = append(seats[ev.ReservationID], ev.SeatNo)
	}
	for _, nos := range seats {
		slices.Sort(nos)
	}
	return seats, errors.Join(errs...)
}
