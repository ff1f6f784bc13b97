// The raw direct-get client: batched direct gets over one shared inbox subscription.

package eventstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// directMsg is one message of a direct get.
type directMsg struct {
	seq    uint64
	data   []byte
	Header nats.Header
}

// directGetOne returns the first message of subject with a sequence of at least from, or
// jetstream.ErrMsgNotFound.
func (s *JetStreamStore) directGetOne(ctx context.Context, stream string, from uint64, subject string) (directMsg, error) {
	var got directMsg
	_, _, _, err := s.gets.batch(ctx, stream, from, subject, 0, func(m directMsg) error {
		got = m
		return nil
	})
	if err != nil {
		return directMsg{}, err
	}
	if got.seq == 0 {
		return directMsg{}, jetstream.ErrMsgNotFound
	}
	return got, nil
}

// replyMux receives the answers to direct gets on one wildcard inbox subscription, because a
// batched direct get answers with many messages, which nats.Conn's request helpers do not
// collect, and a subscription per request would cost a round of SUB/UNSUB each.
type replyMux struct {
	nc     *nats.Conn
	once   sync.Once
	subErr error
	prefix string

	mu    sync.Mutex
	next  uint64
	chans map[string]chan *nats.Msg
}

func (r *replyMux) start() error {
	r.once.Do(func() {
		r.prefix = r.nc.NewRespInbox()
		r.chans = make(map[string]chan *nats.Msg)
		_, r.subErr = r.nc.Subscribe(r.prefix+".*", func(m *nats.Msg) {
			token := m.Subject[len(r.prefix)+1:]
			r.mu.Lock()
			ch := r.chans[token]
			r.mu.Unlock()
			if ch == nil {
				return // an answer that arrived after its request gave up
			}
			select {
			case ch <- m:
			default:
				// Never block the shared subscription: the channel holds a whole answer, so
				// this is a misbehaving server; the request times out.
			}
		})
	})
	return r.subErr
}

// open registers a new request and returns its reply token and the channel its answers
// arrive on, which holds size messages.
func (r *replyMux) open(size int) (string, chan *nats.Msg) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	token := strconv.FormatUint(r.next, 36)
	ch := make(chan *nats.Msg, size)
	r.chans[token] = ch
	return token, ch
}

// close forgets a request: answers that arrive later are dropped.
func (r *replyMux) close(token string) {
	r.mu.Lock()
	delete(r.chans, token)
	r.mu.Unlock()
}

// Direct get status codes in the answers' Status header, and the header of batched answers.
const (
	numPendingHeader = "Nats-Num-Pending"
	statusNotFound   = "404"
	statusEOB        = "204"
)

// batch sends one direct get for the messages of subject from sequence from on (batch 0: a
// single message) and calls fn with each. It returns the sequence of the last message, how
// many matching messages the server still had past it, and whether the server answered as a
// batch (servers before 2.11 answer a batch request with one plain message).
func (r *replyMux) batch(ctx context.Context, stream string, from uint64, subject string, batch int, fn func(directMsg) error) (last, pending uint64, batched bool, err error) {
	if err := r.start(); err != nil {
		return 0, 0, false, err
	}
	token, ch := r.open(batch + 2)
	defer r.close(token)

	req := fmt.Sprintf(`{"seq":%d,"next_by_subj":%q`, from, subject)
	if batch > 0 {
		req += `,"batch":` + strconv.Itoa(batch)
	}
	req += "}"
	if err := r.nc.PublishRequest("$JS.API.DIRECT.GET."+stream, r.prefix+"."+token, []byte(req)); err != nil {
		return 0, 0, false, err
	}
	for {
		var m *nats.Msg
		select {
		case <-ctx.Done():
			return 0, 0, false, ctx.Err()
		case m = <-ch:
		}
		if len(m.Data) == 0 && m.Header.Get("Status") != "" {
			switch st := m.Header.Get("Status"); st {
			case statusNotFound:
				return last, 0, batch > 0, nil
			case statusEOB:
				p, _ := strconv.ParseUint(m.Header.Get(numPendingHeader), 10, 64)
				return last, p, true, nil
			case "503":
				return 0, 0, false, nats.ErrNoResponders
			default:
				return 0, 0, false, fmt.Errorf("eventstore: direct get from %s: %s %s", stream, st, m.Header.Get("Description"))
			}
		}
		seq, perr := strconv.ParseUint(m.Header.Get(jetstream.SequenceHeader), 10, 64)
		if perr != nil {
			return 0, 0, false, fmt.Errorf("eventstore: direct get from %s: bad sequence header: %w", stream, perr)
		}
		if err := fn(directMsg{seq: seq, data: m.Data, Header: m.Header}); err != nil {
			return 0, 0, false, err
		}
		last = seq
		if batch == 0 {
			return last, 0, false, nil
		}
		if m.Header.Get(numPendingHeader) == "" {
			return last, 0, false, nil
		}
	}
}

// ErrMultiGetUnsupported reports a server that cannot answer one direct get for the last
// messages of many subjects (nats-server before 2.11).
var ErrMultiGetUnsupported = errors.New("eventstore: the server has no multi-subject direct get")

// maxMultiLast bounds the subjects of one multi-subject direct get: the server refuses a
// request whose subjects hold more than 1024 messages with 413.
const maxMultiLast = 256

// DirectGetter reads the last messages of many subjects of a stream with one direct get,
// over one inbox subscription of its connection. It is safe for concurrent use. The stream
// must allow direct gets.
type DirectGetter struct {
	mux replyMux
}

// NewDirectGetter returns a getter on nc. Its inbox subscription is made on first use and
// lives as long as nc.
func NewDirectGetter(nc *nats.Conn) *DirectGetter {
	return &DirectGetter{mux: replyMux{nc: nc}}
}

// MaxSubjects is the most subjects LastFor takes at once.
func (g *DirectGetter) MaxSubjects() int { return maxMultiLast }

// LastFor sends one direct get for the last message of each of subjects (at most
// MaxSubjects, literal) and calls fn with each message found; subjects without a message are
// not reported. It returns ErrMultiGetUnsupported from a server that cannot, and
// nats.ErrNoResponders when the stream has no server answering.
func (g *DirectGetter) LastFor(ctx context.Context, stream string, subjects []string, fn func(subject string, h nats.Header, data []byte)) error {
	if len(subjects) == 0 {
		return nil
	}
	if len(subjects) > maxMultiLast {
		return fmt.Errorf("eventstore: direct get of %d subjects: at most %d", len(subjects), maxMultiLast)
	}
	r := &g.mux
	if err := r.start(); err != nil {
		return err
	}
	req, err := json.Marshal(struct {
		MultiLast []string `json:"multi_last"`
	}{subjects})
	if err != nil {
		return err
	}
	token, ch := r.open(len(subjects) + 2)
	defer r.close(token)
	if err := r.nc.PublishRequest("$JS.API.DIRECT.GET."+stream, r.prefix+"."+token, req); err != nil {
		return err
	}
	for {
		var m *nats.Msg
		select {
		case <-ctx.Done():
			return ctx.Err()
		case m = <-ch:
		}
		if len(m.Data) == 0 && m.Header.Get("Status") != "" {
			switch st := m.Header.Get("Status"); st {
			case statusNotFound, statusEOB:
				return nil
			case "503":
				return nats.ErrNoResponders
			case "408":
				// An older server reads none of the request's fields and finds it empty.
				return fmt.Errorf("%w: %s", ErrMultiGetUnsupported, m.Header.Get("Description"))
			default:
				return fmt.Errorf("eventstore: direct get from %s: %s %s", stream, st, m.Header.Get("Description"))
			}
		}
		fn(m.Header.Get(jetstream.SubjectHeader), m.Header, m.Data)
	}
}
