package api_test

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/booking-engine/booking/api"
	"github.com/booking-engine/booking/app"
)

// logRecorder keeps every record logged.
type logRecorder struct {
	mu      sync.Mutex
	records []slog.Record
}

func (l *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (l *logRecorder) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.records = append(l.records, r.Clone())
	return nil
}
func (l *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logRecorder) WithGroup(string) slog.Handler      { return l }

// find returns the attributes of the last record with msg whose attributes include want.
func (l *logRecorder) find(msg string, want map[string]string) (slog.Level, map[string]string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i := len(l.records) - 1; i >= 0; i-- {
		r := l.records[i]
		if r.Message != msg {
			continue
		}
		attrs := map[string]string{}
		r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value.String(); return true })
		match := true
		for k, v := range want {
			if attrs[k] != v {
				match = false
			}
		}
		if match {
			return r.Level, attrs, true
		}
	}
	return 0, nil, false
}

func TestRequestLogging(t *testing.T) {
	rec := &logRecorder{}
	e := newEnv(t, func(d *api.Deps, _ *api.Config) {
		d.Logger = slog.New(rec)
		d.Commands = panickyCommands{d.Commands}
	})
	tests := []struct {
		name  string
		do    func()
		want  map[string]string
		level slog.Level
	}{
		{"a success is logged at debug with its route pattern", func() { e.Do(get("/api/v1/concerts/c1/dates", "X-Request-ID", "rq-1")) },
			map[string]string{"method": "GET", "route": "/api/v1/concerts/:concertId/dates", "status": "200", "request_id": "rq-1"}, slog.LevelDebug},
		{"a client error is logged at info", func() { e.Do(get("/api/v1/reservations/zz", "X-Request-ID", "rq-2")) },
			map[string]string{"status": "404", "request_id": "rq-2"}, slog.LevelInfo},
		{"an unmatched route is logged without a pattern", func() { e.Do(get("/nope", "X-Request-ID", "rq-3")) },
			map[string]string{"route": "-", "status": "404", "request_id": "rq-3"}, slog.LevelInfo},
		{"a server error is logged at warn", func() { e.Do(post("/api/v1/users/u1/points/charge", `{"amount":5}`, "X-Request-ID", "rq-4")) },
			map[string]string{"status": "500", "request_id": "rq-4"}, slog.LevelWarn},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.do()
			level, attrs, ok := rec.find("http request", tt.want)
			if !ok {
				t.Fatalf("no request line with %v", tt.want)
			}
			if level != tt.level {
				t.Fatalf("level %v, want %v", level, tt.level)
			}
			if _, ok := attrs["duration"]; !ok {
				t.Fatal("no duration")
			}
		})
	}
	t.Run("a panic becomes a 500 INTERNAL and its cause is logged, not answered", func(t *testing.T) {
		r := e.Do(post("/api/v1/users/u1/points/charge", `{"amount":5}`, "X-Request-ID", "rq-5"))
		r.Expect(t, 500, "INTERNAL")
		if strings.Contains(string(r.Body), "boom") {
			t.Fatalf("the panic leaked: %s", r.Body)
		}
		if !strings.Contains(r.Problem(t).Detail, "rq-5") {
			t.Fatalf("the detail does not name the request: %s", r.Body)
		}
		if _, attrs, ok := rec.find("panic in handler", map[string]string{"request_id": "rq-5"}); !ok || !strings.Contains(attrs["panic"], "boom") {
			t.Fatalf("the panic was not logged: %v", attrs)
		}
	})
}

// panickyCommands panics in Charge, as a bug would.
type panickyCommands struct{ api.Commands }

func (panickyCommands) Charge(context.Context, app.Meta, string, int64) (app.Wallet, error) {
	panic("boom")
}
