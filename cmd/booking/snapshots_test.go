package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFileSnapshots(t *testing.T) {
	cases := []struct {
		name  string
		saves [][]byte
		want  []byte
	}{
		{"a data dir without a snapshot loads none", nil, nil},
		{"a saved snapshot loads as saved", [][]byte{[]byte("one")}, []byte("one")},
		{"a second save replaces the first whole", [][]byte{[]byte("a longer first snapshot"), []byte("two")}, []byte("two")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			f := fileSnapshots{path: filepath.Join(dir, "queue-snapshot")}
			for _, s := range tc.saves {
				if err := f.Save(s); err != nil {
					t.Fatal(err)
				}
			}
			got, err := f.Load()
			if err != nil || !bytes.Equal(got, tc.want) {
				t.Fatalf("Load() = %q, %v; want %q", got, err, tc.want)
			}
			if _, err := os.Stat(f.path + ".tmp"); !os.IsNotExist(err) {
				t.Fatalf("temporary file left behind: %v", err)
			}
		})
	}
}

func TestAGracefulShutdownLeavesAQueueSnapshotThatTheNextStartUses(t *testing.T) {
	dir := t.TempDir()
	args := []string{"--queue-batch=1", "--queue-interval=1h"}
	o := startObserved(t, dir, args...)
	tokens := map[string]string{o.token("alice"): "ACTIVE", o.token("bob"): "WAITING"}
	if err := o.srv.shutdown(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "queue-snapshot")); err != nil {
		t.Fatalf("no queue snapshot after a graceful shutdown: %v", err)
	}
	again := startObserved(t, dir, args...)
	if !strings.Contains(again.logs.String(), "queue snapshot loaded") {
		t.Fatalf("the restart did not load the snapshot:\n%s", again.logs)
	}
	// Bob is still waiting: the snapshot kept this hour's admission, so the restart does not
	// admit him early.
	for tok, want := range tokens {
		a, _ := again.send("GET", "/api/v1/queue/tokens/current", nil, "Queue-Token", tok)
		if a.status != 200 || a.str("status") != want {
			t.Fatalf("token after the restart: %d %s, want %s", a.status, a.raw, want)
		}
	}
}
