package eventstore_test

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"github.com/booking-engine/booking/eventstore"
	"github.com/booking-engine/booking/eventstore/eventstoretest"
)

func TestMemStoreConformance(t *testing.T) {
	eventstoretest.Run(t, func(*testing.T) eventstore.Store { return eventstore.NewMemStore() })
}

func TestJetStreamStoreConformance(t *testing.T) {
	for _, tt := range []struct {
		name string
		sync bool
	}{
		{"with fsync on every message", true},
		{"with the default fsync interval", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			eventstoretest.Run(t, func(t *testing.T) eventstore.Store { return openEmbedded(t, tt.sync) })
		})
	}
}

// openEmbedded opens a store on a fresh embedded server in a temp dir, closed with the test.
func openEmbedded(t testing.TB, syncAlways bool) *eventstore.JetStreamStore {
	t.Helper()
	return openEmbeddedWith(t, eventstore.Options{SyncAlways: syncAlways})
}

// openEmbeddedWith opens an embedded store in a temp dir with opts (DataDir and Logger set).
func openEmbeddedWith(t testing.TB, opts eventstore.Options) *eventstore.JetStreamStore {
	t.Helper()
	opts.DataDir, opts.Logger = t.TempDir(), quietLogger()
	s, err := eventstore.Open(context.Background(), opts)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
