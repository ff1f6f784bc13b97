package aggregates

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestIsRefusal(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"a refusal as a decider returns it is a refusal", ErrInsufficientPoints, true},
		{"a refusal wrapped with context by a saga is still a refusal", fmt.Errorf("debit u1: %w", ErrInsufficientPoints), true},
		{"a refusal wrapped twice is still a refusal", fmt.Errorf("payment p1: %w", fmt.Errorf("lock r1: %w", ErrInvalid)), true},
		{"a validation message built on ErrInvalid is a refusal", fmt.Errorf("%w: debit without a payment", ErrInvalid), true},
		{"a refusal joined with another error is a refusal", errors.Join(errors.New("x"), ErrSeatNotHeld), true},
		{"no error is no refusal", nil, false},
		{"an infrastructure failure is not a refusal", errors.New("nats: connection closed"), false},
		{"a deadline is not a refusal", fmt.Errorf("append: %w", context.DeadlineExceeded), false},
		{"an unknown event type in the log is not a refusal", fmt.Errorf("load: %w", ErrUnknownEvent), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := IsRefusal(tt.err); got != tt.want {
				t.Fatalf("IsRefusal(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}

func TestRefusalsAreDistinct(t *testing.T) {
	all := []error{ErrInvalid, ErrConcertExists, ErrConcertNotFound, ErrDateNotFound, ErrSeatNotFound,
		ErrSeatUnavailable, ErrSeatNotHeld, ErrReservationExists, ErrReservationNotFound,
		ErrReservationNotPayable, ErrReservationNotCancellable, ErrForbidden, ErrPaymentNotFound,
		ErrPaymentNotRefundable, ErrInvalidAmount, ErrInsufficientPoints, ErrTokenStillValid}
	for i, a := range all {
		for j, b := range all {
			if i != j && errors.Is(a, b) {
				t.Fatalf("%v is %v: the API could not tell them apart", a, b)
			}
		}
	}
}
