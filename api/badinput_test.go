package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/booking-engine/booking/api/apitest"
)

// badInput is a malformed request that must be refused with a 4xx problem and change nothing.
type badInput struct {
	name   string
	method string
	path   string
	header map[string]string
	body   string
	code   string // expected problem code
}

func adminH() map[string]string { return map[string]string{"Authorization": adminBearer} }
func tokenH() map[string]string { return map[string]string{"Queue-Token": "active:u1"} }

func badInputs() []badInput {
	const (
		tokens   = "/api/v1/queue/tokens"
		charge   = "/api/v1/users/u1/points/charge"
		holds    = "/api/v1/reservations"
		payments = "/api/v1/payments"
		concerts = "/api/v1/admin/concerts"
	)
	post := http.MethodPost
	date := func(fields string) string {
		return `{"concertId":"c9","title":"T","dates":[{` + fields + `}]}`
	}
	okDate := `"startsAt":"2026-12-24T19:00:00Z","seatCount":5,"price":100`
	return []badInput{
		// token issue
		{"an empty body", post, tokens, nil, ``, "INVALID_REQUEST"},
		{"white space only", post, tokens, nil, "  \n\t ", "INVALID_REQUEST"},
		{"a JSON null", post, tokens, nil, `null`, "INVALID_REQUEST"},
		{"a JSON array", post, tokens, nil, `[{"userId":"u1"}]`, "INVALID_REQUEST"},
		{"a JSON string", post, tokens, nil, `"u1"`, "INVALID_REQUEST"},
		{"a truncated object", post, tokens, nil, `{"userId":"u1"`, "INVALID_REQUEST"},
		{"a trailing comma", post, tokens, nil, `{"userId":"u1",}`, "INVALID_REQUEST"},
		{"two JSON values", post, tokens, nil, `{"userId":"u1"}{"userId":"u2"}`, "INVALID_REQUEST"},
		{"trailing garbage", post, tokens, nil, `{"userId":"u1"} x`, "INVALID_REQUEST"},
		{"single quotes", post, tokens, nil, `{'userId':'u1'}`, "INVALID_REQUEST"},
		{"a missing userId", post, tokens, nil, `{}`, "INVALID_REQUEST"},
		{"a null userId", post, tokens, nil, `{"userId":null}`, "INVALID_REQUEST"},
		{"a numeric userId", post, tokens, nil, `{"userId":42}`, "INVALID_REQUEST"},
		{"an object userId", post, tokens, nil, `{"userId":{"id":"u1"}}`, "INVALID_REQUEST"},
		{"an empty userId", post, tokens, nil, `{"userId":""}`, "VALIDATION_FAILED"},
		{"a userId with a space", post, tokens, nil, `{"userId":"u 1"}`, "VALIDATION_FAILED"},
		{"a userId with a dot", post, tokens, nil, `{"userId":"u.1"}`, "VALIDATION_FAILED"},
		{"a userId of 65 characters", post, tokens, nil, `{"userId":"` + strings.Repeat("u", 65) + `"}`, "VALIDATION_FAILED"},
		{"a userId with non-ASCII letters", post, tokens, nil, `{"userId":"사용자"}`, "VALIDATION_FAILED"},
		{"an unknown field", post, tokens, nil, `{"userId":"u1","admin":true}`, "INVALID_REQUEST"},
		{"an unknown field of the wrong type", post, tokens, nil, `{"userId":"u1","position":"first"}`, "INVALID_REQUEST"},
		{"a field name in another case", post, tokens, nil, `{"UserID":"u1"}`, "INVALID_REQUEST"},
		{"a repeated field", post, tokens, nil, `{"userId":"u1","userId":"u2"}`, "INVALID_REQUEST"},
		{"invalid UTF-8 bytes", post, tokens, nil, "{\"userId\":\"\xff\xfe\"}", "VALIDATION_FAILED"},
		{"a deeply nested unknown value", post, tokens, nil, `{"x":` + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + `}`, "INVALID_REQUEST"},
		{"an oversized Idempotency-Key", post, tokens, map[string]string{"Idempotency-Key": strings.Repeat("k", 200)}, `{"userId":"u1"}`, "INVALID_IDEMPOTENCY_KEY"},

		// charge
		{"a negative amount", post, charge, nil, `{"amount":-5}`, "INVALID_AMOUNT"},
		{"an amount beyond int64", post, charge, nil, `{"amount":99999999999999999999}`, "INVALID_AMOUNT"},
		{"an amount in exponent form", post, charge, nil, `{"amount":1e3}`, "INVALID_AMOUNT"},
		{"a boolean amount", post, charge, nil, `{"amount":true}`, "INVALID_AMOUNT"},
		{"a null amount", post, charge, nil, `{"amount":null}`, "INVALID_AMOUNT"},
		{"an amount with a userId beside it", post, charge, nil, `{"amount":5,"userId":"u1"}`, "INVALID_REQUEST"},
		{"a bad userId in the path", post, "/api/v1/users/bad$user/points/charge", nil, `{"amount":5}`, "VALIDATION_FAILED"},
		{"an over-long userId in the path", post, "/api/v1/users/" + strings.Repeat("u", 65) + "/points/charge", nil, `{"amount":5}`, "VALIDATION_FAILED"},

		// holds
		{"a hold without seatNo", post, holds, tokenH(), `{"userId":"u1","concertId":"c1","dateId":"d1"}`, "INVALID_REQUEST"},
		{"a hold of seat 0", post, holds, tokenH(), `{"userId":"u1","concertId":"c1","dateId":"d1","seatNo":0}`, "VALIDATION_FAILED"},
		{"a hold of a negative seat", post, holds, tokenH(), `{"userId":"u1","concertId":"c1","dateId":"d1","seatNo":-1}`, "VALIDATION_FAILED"},
		{"a hold of a fractional seat", post, holds, tokenH(), `{"userId":"u1","concertId":"c1","dateId":"d1","seatNo":1.5}`, "INVALID_REQUEST"},
		{"a hold of a seat given as a string", post, holds, tokenH(), `{"userId":"u1","concertId":"c1","dateId":"d1","seatNo":"1"}`, "INVALID_REQUEST"},
		{"a hold of a huge seat number", post, holds, tokenH(), `{"userId":"u1","concertId":"c1","dateId":"d1","seatNo":4294967296}`, "VALIDATION_FAILED"},
		{"a hold with a bad concertId", post, holds, tokenH(), `{"userId":"u1","concertId":"c/1","dateId":"d1","seatNo":1}`, "VALIDATION_FAILED"},
		{"a hold with a bad dateId", post, holds, tokenH(), `{"userId":"u1","concertId":"c1","dateId":"","seatNo":1}`, "VALIDATION_FAILED"},
		{"a hold with an extra price field", post, holds, tokenH(), `{"userId":"u1","concertId":"c1","dateId":"d1","seatNo":1,"price":0}`, "INVALID_REQUEST"},

		// payments
		{"a payment without reservationId", post, payments, tokenH(), `{"userId":"u1"}`, "INVALID_REQUEST"},
		{"a payment with a numeric reservationId", post, payments, tokenH(), `{"reservationId":7,"userId":"u1"}`, "INVALID_REQUEST"},
		{"a payment with an over-long reservationId", post, payments, tokenH(), `{"reservationId":"` + strings.Repeat("r", 65) + `","userId":"u1"}`, "VALIDATION_FAILED"},
		{"a payment with an amount", post, payments, tokenH(), `{"reservationId":"r1","userId":"u1","amount":1}`, "INVALID_REQUEST"},

		// concerts
		{"a concert without a title", post, concerts, adminH(), `{"dates":[{` + okDate + `}]}`, "INVALID_REQUEST"},
		{"a concert with an empty title", post, concerts, adminH(), `{"title":"","dates":[{` + okDate + `}]}`, "VALIDATION_FAILED"},
		{"a concert with a 201-character title", post, concerts, adminH(), `{"title":"` + strings.Repeat("t", 201) + `","dates":[{` + okDate + `}]}`, "VALIDATION_FAILED"},
		{"a concert without dates", post, concerts, adminH(), `{"title":"T"}`, "INVALID_REQUEST"},
		{"a concert with no dates", post, concerts, adminH(), `{"title":"T","dates":[]}`, "VALIDATION_FAILED"},
		{"a concert whose dates are an object", post, concerts, adminH(), `{"title":"T","dates":{}}`, "INVALID_REQUEST"},
		{"a date that is a string", post, concerts, adminH(), `{"title":"T","dates":["2026-12-24"]}`, "INVALID_REQUEST"},
		{"a date without startsAt", post, concerts, adminH(), date(`"seatCount":5,"price":100`), "INVALID_REQUEST"},
		{"a date with a non-RFC 3339 startsAt", post, concerts, adminH(), date(`"startsAt":"24/12/2026 19:00","seatCount":5,"price":100`), "VALIDATION_FAILED"},
		{"a date without a zone", post, concerts, adminH(), date(`"startsAt":"2026-12-24T19:00:00","seatCount":5,"price":100`), "VALIDATION_FAILED"},
		{"a date with 0 seats", post, concerts, adminH(), date(`"startsAt":"2026-12-24T19:00:00Z","seatCount":0,"price":100`), "VALIDATION_FAILED"},
		{"a date with 10,001 seats", post, concerts, adminH(), date(`"startsAt":"2026-12-24T19:00:00Z","seatCount":10001,"price":100`), "VALIDATION_FAILED"},
		{"a negative price", post, concerts, adminH(), date(`"startsAt":"2026-12-24T19:00:00Z","seatCount":5,"price":-1`), "VALIDATION_FAILED"},
		{"a price over 100,000,000", post, concerts, adminH(), date(`"startsAt":"2026-12-24T19:00:00Z","seatCount":5,"price":100000001`), "VALIDATION_FAILED"},
		{"a seat price range past the seat count", post, concerts, adminH(), date(okDate + `,"seatPrices":[{"from":1,"to":6,"price":5}]`), "VALIDATION_FAILED"},
		{"a seat price range backwards", post, concerts, adminH(), date(okDate + `,"seatPrices":[{"from":3,"to":2,"price":5}]`), "VALIDATION_FAILED"},
		{"a seat price range with an unknown field", post, concerts, adminH(), date(okDate + `,"seatPrices":[{"from":1,"to":2,"price":5,"tier":"vip"}]`), "INVALID_REQUEST"},
		{"repeated dateIds", post, concerts, adminH(), `{"title":"T","dates":[{"dateId":"d1",` + okDate + `},{"dateId":"d1",` + okDate + `}]}`, "VALIDATION_FAILED"},
		{"a bad concertId", post, concerts, adminH(), `{"concertId":"c 9","title":"T","dates":[{` + okDate + `}]}`, "VALIDATION_FAILED"},
		{"101 dates", post, concerts, adminH(), `{"title":"T","dates":[` + strings.TrimSuffix(strings.Repeat(`{`+okDate+`},`, 101), ",") + `]}`, "VALIDATION_FAILED"},

		// path parameters and bodies of body-less POSTs
		{"a refund with a body", post, "/api/v1/payments/p1/refund", adminH(), `{"reason":"asked"}`, "INVALID_REQUEST"},
		{"a refund of a bad paymentId", post, "/api/v1/payments/p!1/refund", adminH(), ``, "VALIDATION_FAILED"},
		{"a redrive with a body that is not JSON", post, "/api/v1/admin/dead-letters/dl-1/redrive", adminH(), `please`, "INVALID_REQUEST"},
		{"a rebuild of a bad name", post, "/api/v1/admin/projections/a%20b/rebuild", adminH(), ``, "VALIDATION_FAILED"},
		{"a cancel of a bad reservationId", http.MethodDelete, "/api/v1/reservations/r$1", tokenH(), ``, "VALIDATION_FAILED"},
		{"a seat map of a bad dateId", http.MethodGet, "/api/v1/concerts/c1/dates/d%201/seats", nil, ``, "VALIDATION_FAILED"},
		{"a ranking of a bad date", http.MethodGet, "/api/v1/rankings/daily?date=yesterday", nil, ``, "INVALID_DATE"},

		// routing
		{"a POST to a read-only route", post, "/api/v1/concerts", nil, `{}`, "METHOD_NOT_ALLOWED"},
		{"a PATCH of a reservation", http.MethodPatch, "/api/v1/reservations/r1", tokenH(), `{"status":"CONFIRMED"}`, "METHOD_NOT_ALLOWED"},
		{"a DELETE of a payment", http.MethodDelete, "/api/v1/payments/p1", tokenH(), ``, "METHOD_NOT_ALLOWED"},
		{"an unknown API version", post, "/api/v2/reservations", tokenH(), `{}`, "NOT_FOUND"},
		{"a route in upper case", post, "/API/V1/RESERVATIONS", tokenH(), `{}`, "NOT_FOUND"},
	}
}

func TestBadInputIsRefusedAndChangesNothing(t *testing.T) {
	cases := badInputs()
	if len(cases) < 50 {
		t.Fatalf("the sweep has %d cases, want at least 50", len(cases))
	}
	e := newEnv(t)
	for _, tt := range cases {
		t.Run(tt.name, func(t *testing.T) {
			req := apitest.Request{Method: tt.method, Path: tt.path, Header: tt.header}
			if tt.body != "" {
				req.Body = tt.body
			}
			r := e.Do(req)
			if r.Status < 400 || r.Status >= 500 {
				t.Fatalf("status %d, want a 4xx; body %s", r.Status, r.Body)
			}
			if p := r.Problem(t); p.Code != tt.code {
				t.Fatalf("code %s, want %s (%s)", p.Code, tt.code, p.Detail)
			}
		})
	}
	if calls := e.cmds.Calls(); len(calls) != 0 {
		t.Fatalf("bad input reached the commands: %v", calls)
	}
}
