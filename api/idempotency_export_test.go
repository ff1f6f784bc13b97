package api

import (
	"context"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/booking-engine/booking/app"
)

// OpenSharedIdempotencyStoreInBucket is OpenSharedIdempotencyStore on a bucket named by the
// test, so that the tests of one JetStream server keep their keys apart.
func OpenSharedIdempotencyStoreInBucket(ctx context.Context, js jetstream.JetStream, bucket string, clock app.Clock) (*IdempotencyStore, error) {
	b, err := openKVAnswers(ctx, js, bucket, 1, clock)
	if err != nil {
		return nil, err
	}
	return newIdempotencyStore(b, clock), nil
}
