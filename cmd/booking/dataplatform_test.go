package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// The data-platform test runs the relay inside `booking serve` against the mock platform,
// `booking dataplatform`, each a child process: facts arrive once in effect; with the platform
// down they become dead letters and an alert goes to the webhook; a redrive delivers them once
// the platform is back.

const platformAdmin = "platform-admin"

// TestFactsReachThePlatformAndDeadLettersAreRedrivenOnceItIsBack books a seat with the platform
// up, then cancels a hold with the platform down and redrives its dead letters after it is back.
func TestFactsReachThePlatformAndDeadLettersAreRedrivenOnceItIsBack(t *testing.T) {
	if runAsChild() {
		return
	}
	if testing.Short() {
		t.Skip("starts the service and the mock data platform as processes")
	}
	addr := fmt.Sprintf("127.0.0.1:%d", freeLoopbackPort(t))
	platform := startDataPlatformProc(t, addr)
	hook := newAlertHook(t)
	const attempts = 3
	p := startBookingProc(t, "serve", "--data-dir", t.TempDir(), "--http-addr", "127.0.0.1:0", "--log-format", "json",
		"--queue-batch", "0", "--user-rate-limit", "0", "--no-demo", "--admin-token", platformAdmin,
		"--data-platform-url", platform.url, "--alert-webhook-url", hook.url,
		"--delivery-max-attempts", fmt.Sprint(attempts), "--delivery-backoff", "100ms", "--delivery-backoff-max", "200ms")
	p.waitReady(60 * time.Second)
	c := newAPIClient(t, p.url, platformAdmin, 10*time.Second)
	c.createConcert(t, "facts", 4, 100)

	t.Run("a booking's facts arrive at the platform once each", func(t *testing.T) {
		c.mustCall(t, 200, "POST", "/api/v1/users/dora/points/charge", map[string]any{"amount": 1000})
		h := holdFor(t, c, "dora", "facts", 1)
		tok, err := c.token("dora")
		if err != nil {
			t.Fatal(err)
		}
		pay := c.mustCall(t, 201, "POST", "/api/v1/payments", map[string]any{"reservationId": h.reservationID, "userId": "dora"}, "Queue-Token", tok)
		want := []string{"PaymentCompleted", "ReservationConfirmed", "ReservationHeld"}
		pollUntil(t, 10*time.Second, "the booking's facts at the platform", func() error {
			return receivedExactly(platform.url, want)
		})
		facts, _ := platformFacts(platform.url)
		for _, f := range facts {
			if f.Data["reservationId"] != h.reservationID && f.Data["paymentId"] != pay.str("paymentId") {
				t.Errorf("fact %s %s is not of reservation %s nor payment %s: %v", f.Type, f.EventID, h.reservationID, pay.str("paymentId"), f.Data)
			}
		}
	})

	var dead []deadLetter
	t.Run("with the platform down the facts become dead letters and an alert reaches the webhook", func(t *testing.T) {
		platform.stop(10 * time.Second)
		h := holdFor(t, c, "emil", "facts", 2)
		tok, err := c.token("emil")
		if err != nil {
			t.Fatal(err)
		}
		c.mustCall(t, 200, "DELETE", "/api/v1/reservations/"+h.reservationID, nil, "Queue-Token", tok)
		pollUntil(t, 10*time.Second, "the hold's two facts listed as dead letters", func() error {
			var err error
			if dead, err = listDeadLetters(c); err != nil {
				return err
			}
			var types []string
			for _, d := range dead {
				types = append(types, d.EventType)
			}
			slices.Sort(types)
			if !slices.Equal(types, []string{"ReservationCancelled", "ReservationHeld"}) {
				return fmt.Errorf("dead letters %+v", dead)
			}
			return nil
		})
		for _, d := range dead {
			if d.Attempts != attempts {
				t.Errorf("dead letter %+v after %d attempts, want --delivery-max-attempts %d", d, d.Attempts, attempts)
			}
		}
		pollUntil(t, 10*time.Second, "an alert at the webhook", func() error {
			for _, text := range hook.texts() {
				for _, d := range dead {
					if strings.Contains(text, d.EventID) {
						return nil
					}
				}
			}
			return fmt.Errorf("alerts so far: %q", hook.texts())
		})
	})
	if t.Failed() {
		t.FailNow()
	}

	platform = startDataPlatformProc(t, addr) // a fresh platform: it has received nothing yet
	t.Run("a redrive delivers the dead letters once the platform is back", func(t *testing.T) {
		for _, d := range dead {
			c.mustCall(t, 202, "POST", "/api/v1/admin/dead-letters/"+d.ID+"/redrive", nil, "Authorization", "Bearer "+platformAdmin)
		}
		pollUntil(t, 10*time.Second, "the redriven facts at the platform", func() error {
			return receivedExactly(platform.url, []string{"ReservationCancelled", "ReservationHeld"})
		})
		pollUntil(t, 10*time.Second, "an empty dead-letter list", func() error {
			left, err := listDeadLetters(c)
			if err != nil {
				return err
			}
			if len(left) != 0 {
				return fmt.Errorf("dead letters left: %+v", left)
			}
			return nil
		})
	})
	p.stop(30 * time.Second)
	platform.stop(10 * time.Second)
}

// platformFact is a fact as the mock platform lists it.
type platformFact struct {
	EventID    string         `json:"eventId"`
	Type       string         `json:"type"`
	Data       map[string]any `json:"data"`
	Deliveries int            `json:"deliveries"`
}

// platformFacts returns the unique facts the mock platform at base accepted.
func platformFacts(base string) ([]platformFact, error) {
	resp, err := http.Get(base + "/events")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var body struct {
		Count  int            `json:"count"`
		Events []platformFact `json:"events"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, err
	}
	return body.Events, nil
}

// receivedExactly says whether the platform at base accepted facts of exactly the types want
// (sorted), each type as often as it appears there, and nothing else.
func receivedExactly(base string, want []string) error {
	facts, err := platformFacts(base)
	if err != nil {
		return err
	}
	var got []string
	for _, f := range facts {
		got = append(got, f.Type)
	}
	slices.Sort(got)
	if !slices.Equal(got, want) {
		return fmt.Errorf("platform has %v, want %v", got, want)
	}
	return nil
}

// deadLetter is an entry of GET /api/v1/admin/dead-letters.
type deadLetter struct {
	ID        string `json:"id"`
	EventID   string `json:"eventId"`
	EventType string `json:"eventType"`
	Attempts  int    `json:"attempts"`
	LastError string `json:"lastError"`
}

// listDeadLetters lists the dead letters through the admin endpoint.
func listDeadLetters(c *apiClient) ([]deadLetter, error) {
	r, err := c.call("GET", "/api/v1/admin/dead-letters", nil, "Authorization", "Bearer "+c.admin)
	if err != nil {
		return nil, err
	}
	if r.status != http.StatusOK {
		return nil, fmt.Errorf("dead letters: %s", r)
	}
	var body struct {
		DeadLetters []deadLetter `json:"deadLetters"`
	}
	if err := json.Unmarshal(r.raw, &body); err != nil {
		return nil, err
	}
	return body.DeadLetters, nil
}

// alertHook is the Slack-style webhook of --alert-webhook-url: it keeps the text of every
// alert posted to it.
type alertHook struct {
	url string
	mu  sync.Mutex
	got []string
}

func newAlertHook(t *testing.T) *alertHook {
	t.Helper()
	h := &alertHook{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		raw, _ := io.ReadAll(r.Body)
		var body struct {
			Text string `json:"text"`
		}
		if r.Method != http.MethodPost || json.Unmarshal(raw, &body) != nil || body.Text == "" {
			http.Error(w, "want POST {\"text\": ...}", http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.got = append(h.got, body.Text)
		h.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	h.url = srv.URL
	return h
}

func (h *alertHook) texts() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.got)
}
