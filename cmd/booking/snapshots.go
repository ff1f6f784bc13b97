package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
)

// fileSnapshots keeps the waiting queue's snapshot in one file of the data dir
// (app.SnapshotStore). The snapshot is a cache of the log: losing it only costs a longer start.
type fileSnapshots struct{ path string }

// Load implements app.SnapshotStore.
func (f fileSnapshots) Load() ([]byte, error) {
	b, err := os.ReadFile(f.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", f.path, err)
	}
	return b, nil
}

// Save implements app.SnapshotStore: written aside, synced, then renamed over the old one,
// so a crash leaves one whole snapshot or the other.
func (f fileSnapshots) Save(data []byte) error {
	tmp := f.path + ".tmp"
	if err := writeSynced(tmp, data); err != nil {
		_ = os.Remove(tmp)
		return err
	}
	if err := os.Rename(tmp, f.path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("replace %s: %w", f.path, err)
	}
	return nil
}

func writeSynced(path string, data []byte) error {
	file, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = file.Write(data)
	if err == nil {
		err = file.Sync()
	}
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
