package api_test

import (
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"testing"
	"time"

	"github.com/booking-engine/booking/api"
	"github.com/booking-engine/booking/api/apitest"
	"github.com/booking-engine/booking/app"
	"github.com/booking-engine/booking/eventstore"
	"github.com/booking-engine/booking/projections"
	"github.com/booking-engine/booking/relay"
)

// realStack is the API over the real application service, read models and relay on an
// embedded JetStream in a temp dir, as `booking serve` wires them: the fakes answer "not
// found" the way the API expects, so only the real collaborators show how a missing
// resource really comes back (a key-value "key not found", a relay that is switched off).
type realStack struct {
	client *apitest.Client
	svc    *app.Service
	token  string // an ACTIVE queue token of u1
}

// rebuildAdmin is the admin view of the read models that cmd/booking serves.
type rebuildAdmin struct{ e *projections.Engine }

func (a rebuildAdmin) Status(ctx context.Context) ([]projections.Status, error) {
	return a.e.Status(ctx)
}
func (a rebuildAdmin) Rebuild(_ context.Context, name string) error { return a.e.RebuildAsync(name) }

func newRealStack(t *testing.T, relayOpts relay.Options) *realStack {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	dir := t.TempDir()
	quiet := slog.New(slog.DiscardHandler)
	store, err := eventstore.Open(ctx, eventstore.Options{DataDir: dir, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = store.Close() })
	svc := app.New(store, app.Config{HoldTTL: 5 * time.Minute, QueueActiveTTL: 10 * time.Minute, TokenSecret: []byte("secret")},
		app.Options{Logger: quiet})
	engine, err := projections.Open(projections.Dir(dir), store, projections.Options{SoldOut: svc.RecordSellOut, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = engine.Close() })
	engine.Subscribe(svc.OnEvent)
	if err := engine.Start(ctx); err != nil {
		t.Fatal(err)
	}
	relayOpts.Logger = quiet
	rl, err := relay.New(store.JetStream(), relayOpts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rl.Close)
	if _, err := svc.CreateConcert(ctx, app.Meta{}, app.NewConcert{ConcertID: "c1", Title: "Aurora Live",
		Dates: []app.NewDate{{DateID: "d1", StartsAt: time.Now().Add(720 * time.Hour), SeatCount: 5, Price: 100}}}); err != nil {
		t.Fatal(err)
	}
	tok, _, err := svc.IssueToken(ctx, app.Meta{}, "u1")
	if err != nil {
		t.Fatal(err)
	}
	client := apitest.New(t, api.Deps{
		Commands: svc, Queries: engine, Projections: rebuildAdmin{engine}, DeadLetters: api.RelayDeadLetters(rl),
		Idempotency: apitest.OpenIdempotency(t, filepath.Join(dir, "idempotency.db"), nil),
	}, api.Config{AdminToken: adminToken, RequestTimeout: 5 * time.Second})
	return &realStack{client: client, svc: svc, token: tok.Token}
}

// TestWhatDoesNotExistIsNotFound: every request for something that does not exist is a 404
// with the code that names what is missing, never a 503 that blames the event store (nor a
// 500). It runs on the real stack, once with a data platform configured and once without.
func TestWhatDoesNotExistIsNotFound(t *testing.T) {
	platform := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusOK) }))
	t.Cleanup(platform.Close)
	relays := []struct {
		name string
		opts relay.Options
	}{
		{"without a data platform", relay.Options{}},
		{"with a data platform", relay.Options{URL: platform.URL}},
	}
	admin := func(s *realStack) map[string]string { return adminHeader() }
	user := func(s *realStack) map[string]string { return map[string]string{"Queue-Token": s.token} }
	tests := []struct {
		name   string
		method string
		path   string
		header func(*realStack) map[string]string
		body   any
		status int
		code   string
	}{
		{"the dates of an unknown concert", http.MethodGet, "/api/v1/concerts/c9/dates", nil, nil, 404, "CONCERT_NOT_FOUND"},
		{"the seats of an unknown concert", http.MethodGet, "/api/v1/concerts/c9/dates/d1/seats", nil, nil, 404, "CONCERT_NOT_FOUND"},
		{"the seats of an unknown date", http.MethodGet, "/api/v1/concerts/c1/dates/d9/seats", nil, nil, 404, "DATE_NOT_FOUND"},
		{"the seat stream of an unknown concert", http.MethodGet, "/api/v1/concerts/c9/dates/d1/seats/stream", nil, nil, 404, "CONCERT_NOT_FOUND"},
		{"the seat stream of an unknown date", http.MethodGet, "/api/v1/concerts/c1/dates/d9/seats/stream", nil, nil, 404, "DATE_NOT_FOUND"},
		{"a hold on an unknown concert", http.MethodPost, "/api/v1/reservations", user,
			map[string]any{"userId": "u1", "concertId": "c9", "dateId": "d1", "seatNo": 1}, 404, "CONCERT_NOT_FOUND"},
		{"a hold on an unknown date", http.MethodPost, "/api/v1/reservations", user,
			map[string]any{"userId": "u1", "concertId": "c1", "dateId": "d9", "seatNo": 1}, 404, "DATE_NOT_FOUND"},
		{"a hold on an unknown seat", http.MethodPost, "/api/v1/reservations", user,
			map[string]any{"userId": "u1", "concertId": "c1", "dateId": "d1", "seatNo": 9}, 404, "SEAT_NOT_FOUND"},
		{"an unknown reservation", http.MethodGet, "/api/v1/reservations/r-ghost", nil, nil, 404, "RESERVATION_NOT_FOUND"},
		{"a cancel of an unknown reservation", http.MethodDelete, "/api/v1/reservations/r-ghost", user, nil, 404, "RESERVATION_NOT_FOUND"},
		{"a payment of an unknown reservation", http.MethodPost, "/api/v1/payments", user,
			map[string]any{"userId": "u1", "reservationId": "r-ghost"}, 404, "RESERVATION_NOT_FOUND"},
		{"an unknown payment", http.MethodGet, "/api/v1/payments/p-ghost", nil, nil, 404, "PAYMENT_NOT_FOUND"},
		{"a refund of an unknown payment", http.MethodPost, "/api/v1/payments/p-ghost/refund", admin, nil, 404, "PAYMENT_NOT_FOUND"},
		{"a rebuild of an unknown projection", http.MethodPost, "/api/v1/admin/projections/ghost/rebuild", admin, nil, 404, "NOT_FOUND"},
		{"a redrive of an unknown dead letter", http.MethodPost, "/api/v1/admin/dead-letters/ghost/redrive", admin, nil, 404, "DEAD_LETTER_NOT_FOUND"},
		{"a redrive of a dead letter whose id cannot be a key", http.MethodPost, "/api/v1/admin/dead-letters/.ghost/redrive", admin, nil, 404, "DEAD_LETTER_NOT_FOUND"},
		{"an unknown route", http.MethodGet, "/api/v1/ghosts", nil, nil, 404, "NOT_FOUND"},
		// An unknown user is a user without history, as the contract says: 200, not 404.
		{"the points of an unknown user", http.MethodGet, "/api/v1/users/u-ghost/points", nil, nil, 200, ""},
		{"the history of an unknown user", http.MethodGet, "/api/v1/users/u-ghost/points/history", nil, nil, 200, ""},
		{"the reservations of an unknown user", http.MethodGet, "/api/v1/users/u-ghost/reservations", nil, nil, 200, ""},
		{"the ranking of a day without sell-outs", http.MethodGet, "/api/v1/rankings/daily?date=2001-01-01", nil, nil, 200, ""},
		{"the dead letters when there are none", http.MethodGet, "/api/v1/admin/dead-letters", admin, nil, 200, ""},
	}
	for _, rl := range relays {
		s := newRealStack(t, rl.opts)
		for _, tt := range tests {
			t.Run(rl.name+": "+tt.name+" is "+statusAndCode(tt.status, tt.code), func(t *testing.T) {
				req := apitest.Request{Method: tt.method, Path: tt.path, Body: tt.body}
				if tt.header != nil {
					req.Header = tt.header(s)
				}
				resp := s.client.Do(req)
				if resp.Status != tt.status {
					t.Fatalf("status %d, want %d; body %s", resp.Status, tt.status, resp.Body)
				}
				if tt.code != "" {
					if p := resp.Problem(t); p.Code != tt.code {
						t.Fatalf("code %s, want %s; body %s", p.Code, tt.code, resp.Body)
					}
				}
			})
		}
	}
}

func statusAndCode(status int, code string) string {
	if code == "" {
		return http.StatusText(status)
	}
	return code
}
