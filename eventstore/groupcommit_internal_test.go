package eventstore

import (
	"testing"
	"time"
)

// TestStreamCommitterNext covers how the flusher splits a stream's queue: given the single
// publishes in flight and the queue, when the flusher asks for its next round, then it gets a
// batch, appends to publish alone, or nothing.
func TestStreamCommitterNext(t *testing.T) {
	cases := []struct {
		name      string
		solo      int
		queued    int
		wantLen   int
		wantSolo  int // c.solo after the round
		wantEnded bool
	}{
		{"an empty queue ends the flusher", 0, 0, 0, 0, true},
		{"a queue of a batch's worth goes as one batch", soloLimit, minBatch, minBatch, soloLimit, false},
		{"a batch never exceeds maxBatch", soloLimit, maxBatch + 5, maxBatch, soloLimit, false},
		{"a short queue goes alone as far as single publishes are free", soloLimit - 2, 5, 2, soloLimit, false},
		{"a short queue with every single publish free goes alone whole", 0, 3, 3, 3, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newStreamCommitter()
			c.solo, c.flushing = tc.solo, true
			for range tc.queued {
				c.queue = append(c.queue, &pendingAppend{})
			}
			got := c.next()
			if len(got) != tc.wantLen || c.solo != tc.wantSolo || c.flushing == tc.wantEnded {
				t.Fatalf("next() = %d appends, solo %d, flushing %v; want %d, %d, %v", len(got), c.solo, c.flushing, tc.wantLen, tc.wantSolo, !tc.wantEnded)
			}
			if len(c.queue) != tc.queued-tc.wantLen {
				t.Fatalf("%d left queued, want %d", len(c.queue), tc.queued-tc.wantLen)
			}
		})
	}
}

// TestStreamCommitterNextWaitsForAFreeSinglePublish: with every single publish busy and a
// queue too short for a batch, the flusher waits until a publish ends, then sends one alone.
func TestStreamCommitterNextWaitsForAFreeSinglePublish(t *testing.T) {
	c := newStreamCommitter()
	c.solo, c.flushing = soloLimit, true
	c.queue = []*pendingAppend{{}, {}}
	got := make(chan int)
	go func() { got <- len(c.next()) }()
	select {
	case n := <-got:
		t.Fatalf("next() returned %d appends while every single publish was busy", n)
	case <-time.After(20 * time.Millisecond):
		// Still waiting, as it should: proving a negative needs a bounded look.
	}
	c.leave()
	select {
	case n := <-got:
		if n != 1 {
			t.Fatalf("next() = %d appends after one publish ended, want 1", n)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("next() still waiting after a single publish ended")
	}
}

// TestStreamCommitterEnter: an append goes alone while single publishes are free and nothing
// queues; otherwise it queues, and the first to queue starts the flusher.
func TestStreamCommitterEnter(t *testing.T) {
	c := newStreamCommitter()
	for i := range soloLimit {
		if queued, _ := c.enter(pendingAppend{}); queued != nil {
			t.Fatalf("append %d queued with %d single publishes in flight", i, i)
		}
	}
	if queued, start := c.enter(pendingAppend{}); queued == nil || queued.done == nil || !start {
		t.Fatalf("first append beyond soloLimit: queued %v, start flusher %v; want queued with an answer channel, and started", queued, start)
	}
	c.leave()
	if queued, start := c.enter(pendingAppend{}); queued == nil || start {
		t.Fatalf("append behind a queue: queued %v, start flusher %v; want queued behind it", queued, start)
	}
}
