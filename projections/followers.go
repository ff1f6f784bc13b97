// The followers of a projection, one goroutine per stream, and the group commit of what they read.

package projections

import (
	"context"
	"sync"
	"time"

	"github.com/booking-engine/booking/eventstore"
)

type runner struct {
	cancel context.CancelFunc
	done   chan struct{}
}

func (r *runner) stop() {
	r.cancel()
	<-r.done
}

// startRunner follows every stream of p into g, one goroutine per stream, and commits what
// they read together (group commit): a projection reads up to nine streams, and one fsync'd
// commit for all of them instead of one each is what keeps it abreast of the log under load.
func (e *Engine) startRunner(p *proj, g *generation) *runner {
	ctx, cancel := context.WithCancel(e.ctx)
	r := &runner{cancel: cancel, done: make(chan struct{})}
	subs := make(chan submission)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		groupCommit(ctx, p, g, subs, e.opts.Linger)
	}()
	for _, s := range p.streams {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.follow(ctx, p, g, s, subs)
		}()
	}
	go func() {
		wg.Wait()
		close(r.done)
	}()
	return r
}

// submission is one stream's batch waiting to be committed.
type submission struct {
	stream string
	batch  []eventstore.Envelope
	done   chan submitted
}

type submitted struct {
	before uint64
	err    error
}

// groupCommit applies every submission waiting when it is free in one transaction, and answers
// each. It answers every submission it took, so a submitter waits for its answer unconditionally
// (and its batch is not reused while it is applied).
//
// Once live, when no read is waiting for p (read-your-writes), it lingers up to linger after
// the first submission for others to join: at light load each commit of the log would
// otherwise cost every read model that follows it a bbolt transaction of its own (a 4 KB meta
// page, the nodes on the way to each key, a write of each dirty page), which was most of the
// service's CPU at 1,000 holds/s. Nobody waits on the delay: a command's answer does not
// depend on the read models, and a read that starts waiting ends the linger at once. Under
// load the submissions are already there and nothing lingers.
func groupCommit(ctx context.Context, p *proj, g *generation, subs <-chan submission, linger time.Duration) {
	const most = 8 * 1000
	var taken []submission
	var items []streamBatch
	var n int // events taken
	take := func(s submission) {
		taken, items = append(taken, s), append(items, streamBatch{s.stream, s.batch})
		n += len(s.batch)
	}
	// A stream's follower waits for its submission's answer, so once every stream has one
	// here nothing more can come.
	lingering := func() bool { return n < most && len(taken) < len(p.streams) && p.waiting.Load() == 0 }
	var timer *time.Timer
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-subs:
			taken, items, n = taken[:0], items[:0], 0
			take(s)
		more:
			for n < most {
				select {
				case s := <-subs:
					take(s)
				default:
					break more
				}
			}
			if linger > 0 && g.live.Load() && lingering() {
				if timer == nil {
					timer = time.NewTimer(linger)
				} else {
					timer.Reset(linger)
				}
				select {
				case <-p.hurry: // stale from an earlier wait, or a read waiting now
				default:
				}
			wait:
				for lingering() {
					select {
					case s := <-subs:
						take(s)
					case <-p.hurry:
						break wait
					case <-timer.C:
						break wait
					case <-ctx.Done():
						break wait
					}
				}
				timer.Stop()
			}
			befores, err := g.applyMany(items)
			for i, s := range taken {
				if err != nil {
					s.done <- submitted{err: err}
				} else {
					s.done <- submitted{before: befores[i]}
				}
			}
		}
	}
}

func (e *Engine) follow(ctx context.Context, p *proj, g *generation, stream string, subs chan<- submission) {
	const first, most = 100 * time.Millisecond, 5 * time.Second
	delay := first
	emit := e.emitter[stream] == p
	done := make(chan submitted, 1)
	for {
		err := e.store.Replay(ctx, stream, g.checkpoint(stream), true, func(batch []eventstore.Envelope) error {
			select {
			case subs <- submission{stream, batch, done}:
			case <-ctx.Done():
				return ctx.Err()
			}
			res := <-done
			if res.err != nil {
				return res.err
			}
			delay = first
			p.broadcast()
			if emit {
				e.publish(batch, res.before)
			}
			e.progressed(p, g)
			return nil
		})
		if ctx.Err() != nil {
			return
		}
		e.log.Warn("projection stopped following a stream; retrying", "projection", p.name, "stream", stream, "err", err, "retryIn", delay)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
		delay = min(delay*2, most)
	}
}

// publish hands the events after seq `after` to the subscribers.
func (e *Engine) publish(batch []eventstore.Envelope, after uint64) {
	e.subMu.RLock()
	subs := e.subs
	e.subMu.RUnlock()
	if len(subs) == 0 {
		return
	}
	for _, env := range batch {
		// after is fixed for the batch: the events of one commit share a sequence.
		if env.Sequence <= after {
			continue
		}
		for _, fn := range subs {
			fn(env)
		}
	}
}

// progressed notes that p (in its live generation g) may have caught up with the start heads.
func (e *Engine) progressed(p *proj, g *generation) {
	if p.caughtUp.Load() || e.startHeads == nil {
		return
	}
	for _, s := range p.streams {
		if g.checkpoint(s) < e.startHeads[s] {
			return
		}
	}
	if !p.caughtUp.CompareAndSwap(false, true) {
		return
	}
	if err := g.goLive(); err != nil {
		e.log.Error("projection could not finish catching up", "projection", p.name, "err", err)
	}
	for _, q := range e.projs {
		if !q.caughtUp.Load() {
			return
		}
	}
	e.readyOnce.Do(func() { close(e.readyCh) })
}
