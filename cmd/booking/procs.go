package main

import (
	"fmt"
	"log/slog"
	"os"
	"runtime"
)

// spareProcsEmbedded is how many Go processors (Ps) `booking serve` runs beyond the CPUs it may
// use when the NATS server is embedded in it. That server fsyncs every commit, and the read
// models write their pages, in system calls that block their thread; a P whose thread waits on
// the disk runs no Go code until the runtime's monitor hands it to another thread, so with one
// P per CPU a core sat idle while requests queued. Measured on 2 cores, the service in its own
// process beside the load generator (docs/BENCHMARKS.md, session 8): 3 Ps served a flash sale
// ~10% faster than 2 with a third of the p99, and the booking flow ~15% faster; 4 were as fast
// with fasthttp's client but took so much CPU from a net/http generator that its flash sale
// fell 18% below 2; 8 were slower than 2.
const spareProcsEmbedded = 1

// setProcs sets GOMAXPROCS for `booking serve`: flag when it is above 0; otherwise, unless the
// GOMAXPROCS environment variable chose already, the runtime's own choice (the CPUs this
// process may use, container limits included) plus spareProcsEmbedded with the embedded NATS
// server, and the runtime's own choice with an external one (not measured: its fsyncs happen
// in another process).
func setProcs(flag int, embedded bool, log *slog.Logger) error {
	switch {
	case flag < 0:
		return fmt.Errorf("--gomaxprocs must be 0 (automatic) or more, not %d", flag)
	case flag > 0:
		runtime.GOMAXPROCS(flag)
	case os.Getenv("GOMAXPROCS") != "" || !embedded:
		return nil
	default:
		runtime.GOMAXPROCS(runtime.GOMAXPROCS(0) + spareProcsEmbedded)
	}
	log.Info("Go processors set", "gomaxprocs", runtime.GOMAXPROCS(0), "cpus", runtime.NumCPU())
	return nil
}
