package eventstore

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
)

func TestASecondEmbeddedServerOnOneDataDirIsRefused(t *testing.T) {
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	first, err := Open(context.Background(), Options{DataDir: dir, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(context.Background(), Options{DataDir: dir, Logger: log}); !errors.Is(err, ErrDataDirInUse) {
		t.Fatalf("second open: %v, want ErrDataDirInUse", err)
	}
	if err := first.Close(); err != nil {
		t.Fatal(err)
	}
	again, err := Open(context.Background(), Options{DataDir: dir, Logger: log})
	if err != nil {
		t.Fatalf("open after close: %v", err)
	}
	again.Close()
}
