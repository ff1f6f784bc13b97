package main

import (
	"context"
	"strings"
	"testing"
)

func TestBenchRebuildRefusesADataDirItCannotTime(t *testing.T) {
	empty := t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"a data dir to reuse that holds no log is refused", []string{"--reuse-data-dir", empty}, "holds no log"},
		{"reusing and keeping a data dir at once is refused", []string{"--reuse-data-dir", empty, "--keep-data-dir", t.TempDir() + "/new"}, "exclude each other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := runCmd(context.Background(), t, append([]string{"bench", "rebuild", "--fsync", "interval"}, tt.args...)...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v; want one saying %q", err, tt.want)
			}
		})
	}
}
