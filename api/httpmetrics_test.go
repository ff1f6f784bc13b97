package api_test

import (
	"maps"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/booking-engine/booking/api"
	"github.com/booking-engine/booking/api/apitest"
)

// series finds one series of a family by its labels and returns its value: a counter's
// value, or a histogram's sample count.
func series(t *testing.T, g prometheus.Gatherer, name string, labels map[string]string) (float64, bool) {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			got := map[string]string{}
			for _, l := range m.GetLabel() {
				got[l.GetName()] = l.GetValue()
			}
			if !maps.Equal(got, labels) {
				continue
			}
			if h := m.GetHistogram(); h != nil {
				return float64(h.GetSampleCount()), true
			}
			return m.GetCounter().GetValue(), true
		}
	}
	return 0, false
}

// routeLabels lists every route label value of the requests counter.
func routeLabels(t *testing.T, g prometheus.Gatherer) []string {
	t.Helper()
	fams, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	var out []string
	for _, f := range fams {
		if f.GetName() != api.MetricHTTPRequests {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "route" {
					out = append(out, l.GetValue())
				}
			}
		}
	}
	return out
}

func TestHTTPMetrics(t *testing.T) {
	tests := []struct {
		name     string
		opts     []func(*api.Deps, *api.Config)
		requests []apitest.Request
		route    string
		method   string
		timed    bool // whether the latency histogram sees the request
		socket   bool // send over a real socket: in-process Test cannot read a 413
	}{
		{
			name:     "a request is labelled with its route pattern, not its path",
			requests: []apitest.Request{get("/api/v1/concerts/c1/dates")},
			route:    "/api/v1/concerts/:concertId/dates", method: http.MethodGet, timed: true,
		},
		{
			name:     "requests for different resources of one route share one series",
			requests: []apitest.Request{get("/api/v1/reservations/r1"), get("/api/v1/reservations/r2"), get("/api/v1/reservations/r3")},
			route:    "/api/v1/reservations/:reservationId", method: http.MethodGet, timed: true,
		},
		{
			name:     "a request rejected by the admin check keeps its route",
			requests: []apitest.Request{post("/api/v1/admin/concerts", concertBody)},
			route:    "/api/v1/admin/concerts", method: http.MethodPost, timed: true,
		},
		{
			name:     "a failing command is counted with its 5xx status",
			opts:     []func(*api.Deps, *api.Config){func(d *api.Deps, _ *api.Config) { d.Commands = panickyCommands{d.Commands} }},
			requests: []apitest.Request{post("/api/v1/users/u1/points/charge", map[string]any{"amount": 10})},
			route:    "/api/v1/users/:userId/points/charge", method: http.MethodPost, timed: true,
		},
		{
			name:     "unknown paths all map to the unmatched route",
			requests: []apitest.Request{get("/no/such/path"), get("/wp-admin/x.php"), get("/api/v1/whatever")},
			route:    api.UnmatchedRoute, method: http.MethodGet, timed: true,
		},
		{
			name:     "a wrong method on a known path is unmatched",
			requests: []apitest.Request{{Method: http.MethodPatch, Path: "/api/v1/reservations/r1"}},
			route:    api.UnmatchedRoute, method: http.MethodPatch, timed: true,
		},
		{
			name:     "an invented method is unmatched and labelled OTHER",
			requests: []apitest.Request{{Method: "BREW", Path: "/api/v1/concerts"}, {Method: "FROB", Path: "/x"}},
			route:    api.UnmatchedRoute, method: "OTHER",
		},
		{
			name:     "a body over the limit, refused before routing, is counted as unmatched",
			requests: []apitest.Request{post("/api/v1/users/u1/points/charge", `{"amount":1,"x":"`+strings.Repeat("a", api.BodyLimit)+`"}`)},
			route:    api.UnmatchedRoute, method: http.MethodPost, socket: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := prometheus.NewRegistry()
			e := newEnv(t, append([]func(*api.Deps, *api.Config){func(d *api.Deps, _ *api.Config) { d.Registerer = reg }}, tt.opts...)...)
			send := e.Do
			if tt.socket {
				send = socketSender(t, apitest.Serve(t, e.App))
			}
			byStatus := map[string]float64{}
			for _, r := range tt.requests {
				byStatus[strconv.Itoa(send(r).Status)]++
			}
			for status, want := range byStatus {
				got, ok := series(t, reg, api.MetricHTTPRequests, map[string]string{"route": tt.route, "method": tt.method, "status": status})
				if !ok || got != want {
					t.Errorf("%s{route=%q,method=%q,status=%s} = %v (present %v), want %v; routes seen %q",
						api.MetricHTTPRequests, tt.route, tt.method, status, got, ok, want, routeLabels(t, reg))
				}
			}
			got, ok := series(t, reg, api.MetricHTTPDuration, map[string]string{"route": tt.route, "method": tt.method})
			switch {
			case tt.timed && (!ok || got != float64(len(tt.requests))):
				t.Errorf("latency histogram of %s %s has %v samples, want %d", tt.method, tt.route, got, len(tt.requests))
			case !tt.timed && ok:
				t.Errorf("latency histogram has %v samples of requests refused before routing", got)
			}
			for _, r := range routeLabels(t, reg) {
				if r != tt.route {
					t.Errorf("a series has route %q; want only %q", r, tt.route)
				}
			}
		})
	}
}

// socketSender sends requests to the app served at base over raw connections (sendRaw), so
// that a request the server refuses mid-body still yields the server's answer.
func socketSender(t *testing.T, base string) func(apitest.Request) apitest.Response {
	addr := strings.TrimPrefix(base, "http://")
	return func(r apitest.Request) apitest.Response {
		t.Helper()
		req, err := apitest.NewHTTPRequest(r, base)
		if err != nil {
			t.Fatal(err)
		}
		var raw strings.Builder
		if err := req.Write(&raw); err != nil {
			t.Fatal(err)
		}
		return sendRaw(t, addr, raw.String())
	}
}

func TestHTTPMetricsAreOffWithoutARegisterer(t *testing.T) {
	e := newEnv(t)
	if r := e.Do(get("/api/v1/concerts")); r.Status != http.StatusOK {
		t.Fatalf("GET /api/v1/concerts without metrics: %d", r.Status)
	}
}

func TestTwoAppsOnOneRegistryShareTheHTTPSeries(t *testing.T) {
	reg := prometheus.NewRegistry()
	withReg := func(d *api.Deps, _ *api.Config) { d.Registerer = reg }
	a, b := newEnv(t, withReg), newEnv(t, withReg)
	a.Do(get("/healthz"))
	b.Do(get("/healthz"))
	if got, _ := series(t, reg, api.MetricHTTPRequests, map[string]string{"route": "/healthz", "method": "GET", "status": "200"}); got != 2 {
		t.Fatalf("requests to /healthz over both apps = %v, want 2", got)
	}
}

func TestHTTPMetricsRefuseACollidingCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: api.MetricHTTPRequests, Help: "not ours"}))
	defer func() {
		if recover() == nil {
			t.Fatal("api.New accepted a registry whose booking_http_requests_total is somebody else's")
		}
	}()
	newEnv(t, func(d *api.Deps, _ *api.Config) { d.Registerer = reg })
}

func BenchmarkHTTPMetricsMiddleware(b *testing.B) {
	for _, on := range []bool{false, true} {
		b.Run("metrics="+strconv.FormatBool(on), func(b *testing.B) {
			e := newEnv(b, func(d *api.Deps, _ *api.Config) {
				if on {
					d.Registerer = prometheus.NewRegistry()
				}
			})
			req := get("/healthz")
			b.ResetTimer()
			for b.Loop() {
				if _, err := e.TryDo(req); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
