package main

import (
	"context"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/booking-engine/booking/eventstore"
)

// TestInstancesStartingAtOnceOnAFreshClusterAreReadyQuickly opens the event store from three
// instances at the same moment on a fresh 3-node cluster, as instances started together at
// boot do: they create the same streams at once. Each must be ready within a few of the
// store's operation timeouts, not after one timeout per stream (or never: before the fix, two
// instances at once both gave up after a minute, where one alone was ready in 3 s). Then all
// three start again at once on the streams they made.
func TestInstancesStartingAtOnceOnAFreshClusterAreReadyQuickly(t *testing.T) {
	if runAsChild() {
		return
	}
	if testing.Short() {
		t.Skip("starts a 3-node NATS cluster")
	}
	c := startNATSCluster(t, 3)
	t.Run("three instances starting at once on a fresh cluster are ready within three operation timeouts", func(t *testing.T) {
		openAtOnce(t, c, 3)
	})
	t.Run("three instances restarting at once on its streams are ready within three operation timeouts", func(t *testing.T) {
		openAtOnce(t, c, 3)
	})
}

// openAtOnce opens the event store from n instances at the same moment and checks how long
// each took.
func openAtOnce(t *testing.T, c *natsCluster, instances int) {
	var wg sync.WaitGroup
	took := make([]time.Duration, instances)
	errs := make([]error, instances)
	start := make(chan struct{})
	for i := range instances {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			began := time.Now()
			s, err := eventstore.Open(context.Background(), eventstore.Options{
				NATSURLs: strings.Split(c.urls(), ","), Replicas: 3, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
			})
			took[i], errs[i] = time.Since(began), err
			if err == nil {
				_ = s.Close()
			}
		}()
	}
	close(start)
	wg.Wait()
	for i := range instances {
		t.Logf("instance %d: ready after %s (%v)", i, took[i].Round(time.Millisecond), errs[i])
		if errs[i] != nil {
			t.Errorf("instance %d did not start: %v", i, errs[i])
		}
		if limit := 3 * eventstore.DefaultOpTimeout; took[i] > limit {
			t.Errorf("instance %d took %s to create its streams beside another, want at most %s", i, took[i].Round(time.Millisecond), limit)
		}
	}
}
