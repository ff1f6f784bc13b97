package main

import (
	"fmt"
	"syscall"
)

// streamFileReserve is how many open files the rest of the process may need besides the
// seat-map streams: JetStream's files and connections, the read models, ordinary requests.
const streamFileReserve = 2048

// raiseOpenFileLimit lifts the process's soft RLIMIT_NOFILE to its hard limit, since every
// open connection is a file, and returns the limits in force afterwards.
func raiseOpenFileLimit() (soft, hard uint64, err error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, 0, fmt.Errorf("read the open-file limit: %w", err)
	}
	if l.Cur < l.Max {
		raised := l
		raised.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err != nil {
			return l.Cur, l.Max, fmt.Errorf("raise the open-file limit to %d: %w", l.Max, err)
		}
		l = raised
	}
	return l.Cur, l.Max, nil
}

// defaultMaxStreams sizes --max-streams from the open-file limit: every stream is a socket,
// and the rest of the process keeps streamFileReserve files (half the limit when it is small).
func defaultMaxStreams(nofile uint64) int {
	n := nofile / 2
	if nofile > 2*streamFileReserve {
		n = nofile - streamFileReserve
	}
	return int(n)
}
