package relay

import (
	"encoding/json"
	"net/http"
	"reflect"
	"strconv"
	"testing"
	"time"

	"github.com/booking-engine/booking/eventstore"
)

func TestBackoff(t *testing.T) {
	const first, ceiling = time.Second, time.Minute
	tests := []struct {
		name       string
		failures   int
		jitter     float64
		retryAfter time.Duration
		want       time.Duration
	}{
		{name: "the first retry waits the first delay", failures: 1, jitter: 0.5, want: time.Second},
		{name: "each further failure doubles the wait", failures: 3, jitter: 0.5, want: 4 * time.Second},
		{name: "jitter spreads a wait by a quarter either way", failures: 3, jitter: 0, want: 3 * time.Second},
		{name: "jitter never shortens a wait below the first delay", failures: 1, jitter: 0, want: time.Second},
		{name: "the wait stops growing at the maximum", failures: 7, jitter: 0.5, want: time.Minute},
		{name: "jitter never lengthens a wait beyond the maximum", failures: 7, jitter: 0.999, want: time.Minute},
		{name: "jitter still spreads waits at the maximum", failures: 9, jitter: 0, want: 45 * time.Second},
		{name: "a huge attempt count does not overflow", failures: 10_000, jitter: 0.5, want: time.Minute},
		{name: "a Retry-After lengthens the wait", failures: 1, jitter: 0.5, retryAfter: 30 * time.Second, want: 30 * time.Second},
		{name: "a Retry-After never lengthens the wait beyond the maximum", failures: 1, jitter: 0.5, retryAfter: time.Hour, want: time.Minute},
		{name: "a short Retry-After does not shorten the wait", failures: 4, jitter: 0.5, retryAfter: time.Second, want: 8 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := backoff(tt.failures, first, ceiling, tt.retryAfter, func() float64 { return tt.jitter })
			if got != tt.want {
				t.Errorf("backoff(%d) = %s, want %s", tt.failures, got, tt.want)
			}
		})
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		name   string
		status int
		want   outcome
	}{
		{name: "a 200 is delivered", status: 200, want: delivered},
		{name: "a 201 is delivered", status: 201, want: delivered},
		{name: "a 204 is delivered", status: 204, want: delivered},
		{name: "a 500 is retried", status: 500, want: retryable},
		{name: "a 503 is retried", status: 503, want: retryable},
		{name: "a 408 is retried", status: 408, want: retryable},
		{name: "a 429 is retried", status: 429, want: retryable},
		{name: "a 400 is not retried", status: 400, want: permanent},
		{name: "a 404 is not retried", status: 404, want: permanent},
		{name: "a 409 is not retried", status: 409, want: permanent},
		{name: "a 422 is not retried", status: 422, want: permanent},
		{name: "an unfollowed redirect is not retried", status: 304, want: permanent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := classify(tt.status); got != tt.want {
				t.Errorf("classify(%d) = %d, want %d", tt.status, got, tt.want)
			}
		})
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		name   string
		header string
		want   time.Duration
	}{
		{name: "no header means no hint", header: "", want: 0},
		{name: "seconds are honoured", header: "7", want: 7 * time.Second},
		{name: "an HTTP date is ignored", header: "Wed, 21 Oct 2026 07:28:00 GMT", want: 0},
		{name: "a negative value is ignored", header: "-3", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.header != "" {
				h.Set("Retry-After", tt.header)
			}
			if got := retryAfter(h); got != tt.want {
				t.Errorf("retryAfter(%q) = %s, want %s", tt.header, got, tt.want)
			}
		})
	}
}

func TestIsFact(t *testing.T) {
	for _, typ := range []string{"ReservationHeld", "ReservationConfirmed", "ReservationExpired", "ReservationCancelled", "PaymentCompleted", "PaymentRefunded"} {
		if !IsFact(typ) {
			t.Errorf("%s is a contract fact but IsFact says no", typ)
		}
	}
	for _, typ := range []string{"ReservationPaymentStarted", "ReservationPaymentAborted", "PaymentStarted", "PaymentFailed", "PaymentRefundStarted", "SeatHeld", "PointsDebited", ""} {
		if IsFact(typ) {
			t.Errorf("%s is not a contract fact but IsFact says yes", typ)
		}
	}
}

func TestFactOf(t *testing.T) {
	at := time.Date(2026, 12, 24, 19, 0, 0, 0, time.UTC)
	tests := []struct {
		name  string
		env   eventstore.Envelope
		seats []int
		want  map[string]any
	}{
		{
			name:  "a reservation fact carries its payload, the reservation ID, its seats and the version",
			env:   eventstore.Envelope{AggregateType: eventstore.TypeReservation, AggregateID: "r1", Sequence: 7, Data: json.RawMessage(`{"paymentId":"p1","confirmedAt":"2026-12-24T19:00:00Z"}`)},
			seats: []int{3, 4},
			want:  map[string]any{"paymentId": "p1", "confirmedAt": "2026-12-24T19:00:00Z", "reservationId": "r1", "seatNos": []any{float64(3), float64(4)}, "version": float64(7)},
		},
		{
			name:  "a reservation fact keeps the seats its payload names",
			env:   eventstore.Envelope{AggregateType: eventstore.TypeReservation, AggregateID: "r1", Sequence: 7, Data: json.RawMessage(`{"seatNo":3,"seatNos":[3,4]}`)},
			seats: []int{9},
			want:  map[string]any{"seatNo": float64(3), "seatNos": []any{float64(3), float64(4)}, "reservationId": "r1", "version": float64(7)},
		},
		{
			name: "a reservation fact whose commit names no seats says so with an empty list",
			env:  eventstore.Envelope{AggregateType: eventstore.TypeReservation, AggregateID: "r1", Sequence: 2, Data: json.RawMessage(`{}`)},
			want: map[string]any{"reservationId": "r1", "seatNos": []any{}, "version": float64(2)},
		},
		{
			name:  "a payment fact gets no seats from its commit",
			env:   eventstore.Envelope{AggregateType: eventstore.TypePayment, AggregateID: "p1", Sequence: 3, Data: json.RawMessage(`{}`)},
			seats: []int{3},
			want:  map[string]any{"paymentId": "p1", "version": float64(3)},
		},
		{
			name: "a payment fact carries the seats its payload names (PaymentCompleted, PaymentRefunded)",
			env:  eventstore.Envelope{AggregateType: eventstore.TypePayment, AggregateID: "p1", Sequence: 4, Data: json.RawMessage(`{"completedAt":"2026-12-24T19:00:00Z","seatNos":[3,4]}`)},
			want: map[string]any{"completedAt": "2026-12-24T19:00:00Z", "seatNos": []any{float64(3), float64(4)}, "paymentId": "p1", "version": float64(4)},
		},
		{
			name: "a payment fact carries the payment ID",
			env:  eventstore.Envelope{AggregateType: eventstore.TypePayment, AggregateID: "p1", Sequence: 3, Data: json.RawMessage(`{"completedAt":"2026-12-24T19:00:00Z"}`)},
			want: map[string]any{"completedAt": "2026-12-24T19:00:00Z", "paymentId": "p1", "version": float64(3)},
		},
		{
			name: "the aggregate's own ID wins over a payload field of the same name",
			env:  eventstore.Envelope{AggregateType: eventstore.TypeReservation, AggregateID: "r1", Sequence: 1, Data: json.RawMessage(`{"reservationId":"other"}`)},
			want: map[string]any{"reservationId": "r1", "seatNos": []any{}, "version": float64(1)},
		},
		{
			name: "an empty payload still yields the ID and version",
			env:  eventstore.Envelope{AggregateType: eventstore.TypePayment, AggregateID: "p1", Sequence: 2, Data: json.RawMessage(`null`)},
			want: map[string]any{"paymentId": "p1", "version": float64(2)},
		},
		{
			name: "a payload that is not an object is kept whole",
			env:  eventstore.Envelope{AggregateType: eventstore.TypePayment, AggregateID: "p1", Sequence: 2, Data: json.RawMessage(`[1,2]`)},
			want: map[string]any{"payload": []any{float64(1), float64(2)}, "paymentId": "p1", "version": float64(2)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.env.EventID, tt.env.Type, tt.env.OccurredAt = "e1", "T", at.In(time.FixedZone("KST", 9*3600))
			f, err := factOf(tt.env, tt.seats)
			if err != nil {
				t.Fatal(err)
			}
			var data map[string]any
			if err := json.Unmarshal(f.Data, &data); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(data, tt.want) {
				t.Errorf("data = %v, want %v", data, tt.want)
			}
			body, err := json.Marshal(f)
			if err != nil {
				t.Fatal(err)
			}
			var top map[string]json.RawMessage
			if err := json.Unmarshal(body, &top); err != nil {
				t.Fatal(err)
			}
			if len(top) != 4 || string(top["eventId"]) != `"e1"` || string(top["type"]) != `"T"` || string(top["occurredAt"]) != `"2026-12-24T19:00:00Z"` || top["data"] == nil {
				t.Errorf("body = %s, want exactly eventId, type, occurredAt (UTC) and data", body)
			}
		})
	}
}

func TestSeatNosOf(t *testing.T) {
	seat := func(typ, res string, no int) eventstore.Envelope {
		return eventstore.Envelope{Type: typ, AggregateType: eventstore.TypeSeat, AggregateID: "c1.d1." + strconv.Itoa(no), Data: json.RawMessage(`{"reservationId":"` + res + `","seatNo":` + strconv.Itoa(no) + `}`)}
	}
	reservation := func(typ, res string) eventstore.Envelope {
		return eventstore.Envelope{Type: typ, AggregateType: eventstore.TypeReservation, AggregateID: res, Data: json.RawMessage(`{"reservationId":"` + res + `","seatNo":99}`)}
	}
	tests := []struct {
		name    string
		commit  []eventstore.Envelope
		want    map[string][]int
		wantErr bool
	}{
		{
			name:   "a confirmation's commit names every seat it sold, ascending",
			commit: []eventstore.Envelope{reservation("ReservationConfirmed", "r1"), seat("SeatSold", "r1", 7), seat("SeatSold", "r1", 3), seat("SeatSold", "r1", 4)},
			want:   map[string][]int{"r1": {3, 4, 7}},
		},
		{
			name:   "the seats of two reservations in one commit are kept apart",
			commit: []eventstore.Envelope{seat("SeatHeld", "r1", 1), reservation("ReservationHeld", "r1"), seat("SeatReleased", "r2", 2), reservation("ReservationExpired", "r2")},
			want:   map[string][]int{"r1": {1}, "r2": {2}},
		},
		{
			name:   "a reservation event's own seat fields are not taken for seat events",
			commit: []eventstore.Envelope{reservation("ReservationPaymentStarted", "r1")},
			want:   nil,
		},
		{
			name: "a seat event that does not decode is left out and reported",
			commit: []eventstore.Envelope{
				seat("SeatReleased", "r1", 1),
				{Type: "SeatReleased", AggregateType: eventstore.TypeSeat, EventID: "bad", Data: json.RawMessage(`[]`)},
			},
			want:    map[string][]int{"r1": {1}},
			wantErr: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := seatNosOf(tt.commit)
			if (err != nil) != tt.wantErr {
				t.Errorf("seatNosOf error = %v, want an error: %v", err, tt.wantErr)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("seatNosOf = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDeadLetterIDs(t *testing.T) {
	tests := []struct {
		name    string
		eventID string
		same    bool
	}{
		{name: "a UUID event ID is its own dead-letter ID", eventID: "0190f5c2-7b1e-7cc3-9d2a-5f8e3b1c2d4e", same: true},
		{name: "an ID with characters a key cannot hold is hashed", eventID: "a b*c", same: false},
		{name: "an empty ID is hashed", eventID: "", same: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := deadLetterID(tt.eventID)
			if (id == tt.eventID) != tt.same || !validKey(id) {
				t.Errorf("deadLetterID(%q) = %q", tt.eventID, id)
			}
			if deadLetterID(tt.eventID) != id {
				t.Errorf("deadLetterID(%q) is not stable", tt.eventID)
			}
		})
	}
}

func TestOptionsAreValidated(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		ok   bool
	}{
		{name: "zero options take the defaults", opts: Options{}, ok: true},
		{name: "an http URL is accepted", opts: Options{URL: "http://127.0.0.1:9090"}, ok: true},
		{name: "a URL of another scheme is refused", opts: Options{URL: "ftp://x"}, ok: false},
		{name: "a maximum backoff below the first is refused", opts: Options{Backoff: time.Minute, BackoffMax: time.Second}, ok: false},
		{name: "negative attempts are refused", opts: Options{MaxAttempts: -1}, ok: false},
		{name: "a negative timeout is refused", opts: Options{Timeout: -time.Second}, ok: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := tt.opts
			err := o.applyDefaults()
			if (err == nil) != tt.ok {
				t.Fatalf("applyDefaults() = %v, want ok=%v", err, tt.ok)
			}
			if err == nil && (o.MaxAttempts < 1 || o.Backoff <= 0 || o.BackoffMax < o.Backoff || o.AckWait < o.Timeout) {
				t.Errorf("defaults left %+v unusable", o)
			}
		})
	}
	o := Options{}
	if err := o.applyDefaults(); err != nil {
		t.Fatal(err)
	}
	if o.MaxAttempts != 8 || o.Backoff != time.Second || o.BackoffMax != time.Minute {
		t.Errorf("defaults = %d attempts, %s..%s; the contract says 8, 1s..1m", o.MaxAttempts, o.Backoff, o.BackoffMax)
	}
}
