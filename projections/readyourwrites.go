// Read-your-writes: waiting for a projection to apply the streams up to a mark or the heads.

package projections

import (
	"context"
	"fmt"
)

// streamSet is a set of a projection's streams, by their index in its streams.
type streamSet uint32

// all is the set of every stream of p.
func (p *proj) all() streamSet { return 1<<len(p.streams) - 1 }

// only is the set of stream alone (empty when p does not read it).
func (p *proj) only(stream string) streamSet {
	for i, s := range p.streams {
		if s == stream {
			return 1 << i
		}
	}
	return 0
}

func (p *proj) changed() <-chan struct{} {
	p.notifyMu.Lock()
	defer p.notifyMu.Unlock()
	return p.notify
}

func (p *proj) broadcast() {
	p.notifyMu.Lock()
	close(p.notify)
	p.notify = make(chan struct{})
	p.notifyMu.Unlock()
}

// waitFor gives read-your-writes: it waits until p has applied everything this process had
// appended to the streams of set (eventstore.Tracker) when it was called, or ctx ends. When
// nothing of those streams is pending it returns after two atomic loads per stream, without
// locking or allocating: seat-map reads run at tens of thousands a second. Otherwise it waits
// for the marks seen on entry, not for appends made meanwhile, so a read under a steady
// stream of writes waits for about one commit, not for a quiet moment.
func (e *Engine) waitFor(ctx context.Context, p *proj, set streamSet) error {
	g := p.current()
	for i, m := range p.marks {
		if set&(1<<i) != 0 && g.cpList[i].Load() < m.Load() {
			return e.waitBehind(ctx, p, set)
		}
	}
	return nil
}

// waitForHeads waits until p has applied every stream of its up to the head the log reports
// now, appended by whichever process: a read that finds nothing may have run ahead of another
// instance's write. It costs a request per stream, so it is for misses only.
func (e *Engine) waitForHeads(ctx context.Context, p *proj) error {
	targets := make([]uint64, len(p.streams))
	for i, s := range p.streams {
		h, err := e.store.Head(ctx, s)
		if err != nil {
			return fmt.Errorf("projections: head of %s: %w", s, err)
		}
		targets[i] = h
	}
	return waitUntil(ctx, p, p.all(), targets)
}

// waitBehind is waitFor once a stream was found behind.
func (e *Engine) waitBehind(ctx context.Context, p *proj, set streamSet) error {
	targets := make([]uint64, len(p.marks))
	for i, m := range p.marks {
		targets[i] = m.Load()
	}
	return waitUntil(ctx, p, set, targets)
}

// waitUntil waits until p has applied each stream of set up to its target sequence. While it
// waits, p's group commit does not linger for more batches (see groupCommit).
func waitUntil(ctx context.Context, p *proj, set streamSet, targets []uint64) error {
	p.waiting.Add(1)
	defer p.waiting.Add(-1)
	select {
	case p.hurry <- struct{}{}:
	default:
	}
	for {
		ch := p.changed()
		g := p.current()
		behind := -1
		for i, target := range targets {
			if set&(1<<i) != 0 && g.cpList[i].Load() < target {
				behind = i
				break
			}
		}
		if behind < 0 {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("projections: %s waiting for %s to reach %d: %w", p.name, p.streams[behind], targets[behind], ctx.Err())
		}
	}
}
