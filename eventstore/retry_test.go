package eventstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/booking-engine/booking/eventstore"
)

// TestRetryUnavailable: given a start's JetStream setup that fails, when it is run with a
// bound of three attempts, then it is tried again only while the store is unavailable and
// within the bound.
func TestRetryUnavailable(t *testing.T) {
	unavailable := fmt.Errorf("create bucket: %w: context deadline exceeded", eventstore.ErrUnavailable)
	refused := errors.New("create bucket: invalid configuration")
	tests := []struct {
		name      string
		failures  []error // what the attempts return before one succeeds
		wantCalls int
		wantErr   error
	}{
		{"a setup that succeeds at once is run once", nil, 1, nil},
		{"an unavailable store is tried again until the setup succeeds", []error{unavailable, unavailable}, 3, nil},
		{"an error of another kind ends the start at once", []error{refused, unavailable}, 1, refused},
		{"an unavailable store past the bound ends the start", []error{unavailable, unavailable, unavailable, unavailable}, 3, eventstore.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			calls := 0
			err := eventstore.RetryUnavailable(context.Background(), slog.New(slog.NewTextHandler(io.Discard, nil)), "cannot set up the bucket yet", 3, time.Millisecond,
				func(context.Context) error {
					calls++
					if calls <= len(tt.failures) {
						return tt.failures[calls-1]
					}
					return nil
				})
			if calls != tt.wantCalls {
				t.Errorf("calls %d, want %d", calls, tt.wantCalls)
			}
			if tt.wantErr == nil && err != nil || tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("err %v, want %v", err, tt.wantErr)
			}
		})
	}
}

// TestRetryUnavailableStopsWaitingWhenTheStartIsCancelled: a start cancelled between two
// attempts ends with the cancellation and the last failure, without a further attempt.
func TestRetryUnavailableStopsWaitingWhenTheStartIsCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := eventstore.RetryUnavailable(ctx, slog.New(slog.NewTextHandler(io.Discard, nil)), "cannot set up the bucket yet", 10, time.Hour, func(context.Context) error {
		calls++
		cancel()
		return fmt.Errorf("create bucket: %w", eventstore.ErrUnavailable)
	})
	if calls != 1 || !errors.Is(err, context.Canceled) || !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("calls %d, err %v: want one call and an error that is both the cancellation and the failure", calls, err)
	}
}

func TestClassifySetup(t *testing.T) {
	tests := []struct {
		name        string
		err         error
		unavailable bool
	}{
		{"no suitable peers (a cluster still forming) is tried again",
			&jetstream.APIError{Code: 500, ErrorCode: 10005, Description: "no suitable peers for placement"}, true},
		{"a timeout is tried again", fmt.Errorf("create: %w", context.DeadlineExceeded), true},
		{"a server that answers 503 is tried again", &jetstream.APIError{Code: 503, Description: "JetStream system temporarily unavailable"}, true},
		{"a configuration the server refuses fails at once",
			&jetstream.APIError{Code: 500, ErrorCode: 10052, Description: "stream configuration update can not change storage type"}, false},
		{"subjects another stream holds fail at once",
			&jetstream.APIError{Code: 400, ErrorCode: 10065, Description: "subjects overlap with an existing stream"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := eventstore.ClassifySetup("ensure stream X", tt.err)
			if got := errors.Is(err, eventstore.ErrUnavailable); got != tt.unavailable {
				t.Errorf("%v: unavailable %v, want %v", err, got, tt.unavailable)
			}
			if !errors.Is(err, tt.err) {
				t.Errorf("%v does not wrap %v", err, tt.err)
			}
		})
	}
}
