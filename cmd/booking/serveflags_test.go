package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestServeRefusesFlagsOutOfRange: a value no setting can mean stops the start with the flag's
// name, before anything is opened.
func TestServeRefusesFlagsOutOfRange(t *testing.T) {
	cases := []struct {
		name string
		set  func(*serveFlags)
		want string
	}{
		{"an fsync mode other than always or interval is refused", func(f *serveFlags) { f.fsync = "sometimes" }, "--fsync"},
		{"a negative seat limit is refused", func(f *serveFlags) { f.maxSeatsPerUser = -1 }, "--max-seats-per-user"},
		{"a negative read-model linger is refused", func(f *serveFlags) { f.readModelLinger = -time.Millisecond }, "--read-model-linger"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := serveFlags{fsync: "always", timezone: "UTC", dataDir: t.TempDir()}
			tc.set(&f)
			s, err := startServer(context.Background(), f, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err == nil {
				_ = s.shutdown()
				t.Fatalf("started; want a refusal naming %s", tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("refused with %q; want it to name %s", err, tc.want)
			}
		})
	}
}
