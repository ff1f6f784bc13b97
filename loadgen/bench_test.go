package loadgen

import (
	"context"
	"testing"
	"time"
)

// BenchmarkRecorderRecord is the generator's bookkeeping cost per request, contended.
func BenchmarkRecorderRecord(b *testing.B) {
	rec := NewRecorder("hold")
	b.RunParallel(func(pb *testing.PB) {
		d := time.Duration(0)
		for pb.Next() {
			d += 37 * time.Microsecond
			rec.Record("hold", d%time.Second, OutcomeOK, "")
		}
	})
}

// BenchmarkClientGet is the client's cost per request against an in-process server (the
// server's own cost is included: compare with a net/http client to see the difference).
func BenchmarkClientGet(b *testing.B) {
	_, srv := newFakeService(b, fakeKnobs{})
	c, err := NewClient(srv.URL, ClientOptions{MaxConns: 64, Timeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if r, err := c.Do(ctx, "GET", "/readyz", nil, nil, nil); err != nil || !r.OK() {
				b.Errorf("readyz: %d %v", r.Status, err)
				return
			}
		}
	})
}
