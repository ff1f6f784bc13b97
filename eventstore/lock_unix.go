//go:build unix

package eventstore

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// lockDataDir takes an exclusive, non-blocking lock on the data dir's JetStream files:
// nats-server does not lock them itself, and two embedded servers over one store dir would
// corrupt it. The lock dies with the process, so a SIGKILL never leaves it behind.
func lockDataDir(storeDir string) (release func(), err error) {
	if err := os.MkdirAll(storeDir, 0o755); err != nil {
		return nil, fmt.Errorf("eventstore: store dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(storeDir, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("eventstore: lock file: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("eventstore: %s: %w", storeDir, ErrDataDirInUse)
		}
		return nil, fmt.Errorf("eventstore: lock %s: %w", storeDir, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
