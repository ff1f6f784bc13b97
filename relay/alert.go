package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// alerter posts {"text": "..."} to the alert webhook for dead letters, at most once per
// interval: the first dead letter after a quiet interval is announced at once, later ones are
// counted and summarised in one alert when the interval has passed, so an outage that
// dead-letters thousands of facts sends a handful of alerts, not thousands.
type alerter struct {
	url      string
	client   *http.Client
	timeout  time.Duration
	interval time.Duration
	now      func() time.Time
	log      *slog.Logger

	mu       sync.Mutex
	lastSent time.Time
	pending  int
	latest   DeadLetter
	timer    *time.Timer
	closed   bool
	sends    sync.WaitGroup
}

// notify records one dead letter and sends an alert if the interval allows.
func (a *alerter) notify(dl DeadLetter) {
	if a.url == "" {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return
	}
	a.pending++
	a.latest = dl
	now := a.now()
	if a.lastSent.IsZero() || now.Sub(a.lastSent) >= a.interval {
		a.sendLocked(now)
		return
	}
	if a.timer == nil {
		a.timer = time.AfterFunc(a.lastSent.Add(a.interval).Sub(now), a.flush)
	}
}

// flush sends the summary of the dead letters counted since the last alert, if any.
func (a *alerter) flush() {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.timer = nil
	if a.pending > 0 && !a.closed {
		a.sendLocked(a.now())
	}
}

// sendLocked sends the pending summary in the background; the caller holds mu.
func (a *alerter) sendLocked(now time.Time) {
	text := alertText(a.pending, a.latest)
	a.pending, a.lastSent = 0, now
	if a.timer != nil {
		a.timer.Stop()
		a.timer = nil
	}
	a.sends.Add(1)
	go func() {
		defer a.sends.Done()
		if err := a.post(text); err != nil {
			// Alerts are best effort: the dead letters themselves are stored and listed.
			a.log.Warn("relay: alert webhook failed", "err", err)
		}
	}()
}

func alertText(n int, latest DeadLetter) string {
	if n == 1 {
		return fmt.Sprintf("booking relay: fact %s %s was dead-lettered after %d attempt(s): %s. See GET /api/v1/admin/dead-letters.",
			latest.EventType, latest.EventID, latest.Attempts, latest.LastError)
	}
	return fmt.Sprintf("booking relay: %d facts were dead-lettered since the last alert (latest: %s %s after %d attempt(s): %s). See GET /api/v1/admin/dead-letters.",
		n, latest.EventType, latest.EventID, latest.Attempts, latest.LastError)
}

func (a *alerter) post(text string) error {
	body, err := json.Marshal(map[string]string{"text": text})
	if err != nil {
		return fmt.Errorf("encode alert: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), a.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, a.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("alert request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := a.client.Do(req)
	if err != nil {
		return fmt.Errorf("post alert: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("post alert: status %d", resp.StatusCode)
	}
	return nil
}

// close sends what is still pending, then waits for the alerts in flight.
func (a *alerter) close() {
	a.mu.Lock()
	if !a.closed {
		if a.pending > 0 && a.url != "" {
			a.sendLocked(a.now())
		}
		if a.timer != nil {
			a.timer.Stop()
			a.timer = nil
		}
		a.closed = true
	}
	a.mu.Unlock()
	a.sends.Wait()
}
