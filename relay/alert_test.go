package relay

import (
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/booking-engine/booking/internal/testclock"
	"github.com/booking-engine/booking/internal/testpoll"
)

func TestAlertsAreRateLimitedAndSummarised(t *testing.T) {
	sink := newAlertSink(t)
	clock := testclock.New(relayT0)
	a := &alerter{url: sink.srv.URL, client: http.DefaultClient, timeout: 5 * time.Second, interval: time.Minute, now: clock.Now, log: slog.Default()}
	dl := func(id string) DeadLetter {
		return DeadLetter{ID: id, EventID: id, EventType: "ReservationHeld", Attempts: 8, LastError: "status 500"}
	}

	a.notify(dl("e1"))
	testpoll.Eventually(t, 10*time.Second, "the first alert", func() bool { return len(sink.Texts()) == 1 })
	if got := sink.Texts()[0]; !strings.Contains(got, "e1") || !strings.Contains(got, "8 attempt") || !strings.Contains(got, "status 500") {
		t.Errorf("first alert %q does not name the fact, its attempts and its error", got)
	}

	// Within the interval: counted, not sent.
	a.notify(dl("e2"))
	a.notify(dl("e3"))
	a.sends.Wait()
	if n := len(sink.Texts()); n != 1 {
		t.Fatalf("%d alerts within one interval, want 1", n)
	}

	// Once the interval has passed, the next dead letter sends the summary of all three.
	clock.Advance(time.Minute)
	a.notify(dl("e4"))
	testpoll.Eventually(t, 10*time.Second, "the summary alert", func() bool { return len(sink.Texts()) == 2 })
	if got := sink.Texts()[1]; !strings.Contains(got, "3 facts") || !strings.Contains(got, "e4") {
		t.Errorf("summary alert %q does not count 3 facts with e4 the latest", got)
	}

	// What is pending at close goes out as a last summary.
	a.notify(dl("e5"))
	a.close()
	if texts := sink.Texts(); len(texts) != 3 || !strings.Contains(texts[2], "e5") {
		t.Errorf("alerts after close = %q, want a third naming e5", texts)
	}
	a.notify(dl("e6"))
	a.sends.Wait()
	if n := len(sink.Texts()); n != 3 {
		t.Errorf("%d alerts after a notify on a closed alerter, want still 3", n)
	}
}

func TestWithoutAWebhookNoAlertIsSent(t *testing.T) {
	a := &alerter{interval: time.Minute, now: testclock.New(relayT0).Now, log: slog.Default()}
	a.notify(DeadLetter{ID: "e1"})
	a.mu.Lock()
	pending, timer := a.pending, a.timer
	a.mu.Unlock()
	if pending != 0 || timer != nil {
		t.Errorf("alerter without URL kept %d pending (timer %v)", pending, timer)
	}
	a.close()
}
