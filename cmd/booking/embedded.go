package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"github.com/spf13/pflag"
)

// startEmbedded runs `booking serve` in this process on dataDir, listening on a free loopback
// port, with the serve flags given in extraArgs (e.g. "--queue-batch=0"), and waits until it
// is ready. It returns the base URL, the admin token in force, and how to stop it.
func startEmbedded(ctx context.Context, dataDir string, extraArgs ...string) (baseURL, adminToken string, stop func(), err error) {
	var f serveFlags
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	addServeFlags(fs, &f)
	args := append([]string{"--data-dir=" + dataDir, "--http-addr=127.0.0.1:0", "--no-demo"}, extraArgs...)
	if err := fs.Parse(args); err != nil {
		return "", "", nil, err
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv, err := startServer(ctx, f, log)
	if err != nil {
		return "", "", nil, err
	}
	stop = func() { _ = srv.shutdown() }
	if err := waitReady(ctx, srv.url, 60*time.Second); err != nil {
		stop()
		return "", "", nil, err
	}
	return srv.url, f.adminToken, stop, nil
}

// waitReady polls GET /readyz until it answers 200 or the deadline passes.
func waitReady(ctx context.Context, baseURL string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, baseURL+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %s", baseURL, within)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
