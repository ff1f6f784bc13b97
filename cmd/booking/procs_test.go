package main

import (
	"io"
	"log/slog"
	"runtime"
	"testing"
)

func TestServeChoosesItsGoProcessors(t *testing.T) {
	def := runtime.GOMAXPROCS(0)
	t.Cleanup(func() { runtime.GOMAXPROCS(def) })
	cases := []struct {
		name     string
		flag     int
		env      string
		embedded bool
		want     int
		wantErr  bool
	}{
		{"the embedded server gets one processor more than the CPUs", 0, "", true, def + 1, false},
		{"an external NATS server leaves the Go default", 0, "", false, def, false},
		{"a GOMAXPROCS in the environment is left as it is", 0, "5", true, def, false},
		{"the flag wins over everything", 7, "5", true, 7, false},
		{"a negative flag is refused", -1, "", true, def, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			runtime.GOMAXPROCS(def)
			t.Setenv("GOMAXPROCS", tc.env)
			err := setProcs(tc.flag, tc.embedded, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if (err != nil) != tc.wantErr {
				t.Fatalf("setProcs: err %v, want an error: %v", err, tc.wantErr)
			}
			if got := runtime.GOMAXPROCS(0); got != tc.want {
				t.Fatalf("GOMAXPROCS %d, want %d", got, tc.want)
			}
		})
	}
}
