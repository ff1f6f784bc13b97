// Package eventstoretest is the conformance suite every eventstore implementation runs, so
// that the in-memory double and the JetStream store cannot drift apart.
package eventstoretest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/booking-engine/booking/eventstore"
)

// opTimeout bounds every call of the suite, so that a hung store fails the test instead of
// hanging the run.
const opTimeout = 20 * time.Second

// Run runs the suite against stores made by newStore, a fresh and empty one for each case.
// Cases for Reader and Tracker run when the store implements them.
func Run(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	t.Run("Append", func(t *testing.T) { runAppend(t, newStore) })
	t.Run("Dedup", func(t *testing.T) { runDedup(t, newStore) })
	t.Run("Load", func(t *testing.T) { runLoad(t, newStore) })
	t.Run("Concurrency", func(t *testing.T) { runConcurrency(t, newStore) })
	t.Run("Layout", func(t *testing.T) { runLayout(t, newStore) })
	t.Run("Reader", func(t *testing.T) { runReader(t, newStore) })
	t.Run("Tracker", func(t *testing.T) { runTracker(t, newStore) })
}

func ctxFor(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	t.Cleanup(cancel)
	return ctx
}

var (
	concert = eventstore.AggregateRef{Type: eventstore.TypeConcert, ID: "c1"}
	other   = eventstore.AggregateRef{Type: eventstore.TypeConcert, ID: "c2"}
	seat    = eventstore.AggregateRef{Type: eventstore.TypeDate, ID: "c1.d7"}
	meta    = eventstore.Metadata{
		OccurredAt:    time.Date(2025, 3, 1, 12, 30, 0, 123456789, time.UTC),
		CorrelationID: "corr-1",
		CausationID:   "cause-1",
	}
)

// ev returns an event whose payload names it, so a test can tell every event apart.
func ev(typ, name string) eventstore.Event {
	return eventstore.Event{Type: typ, Data: json.RawMessage(fmt.Sprintf(`{"name":%q}`, name))}
}

func nameOf(t *testing.T, env eventstore.Envelope) string {
	t.Helper()
	var p struct{ Name string }
	if err := json.Unmarshal(env.Data, &p); err != nil {
		t.Fatalf("payload of #%d: %v", env.Sequence, err)
	}
	return p.Name
}

func names(t *testing.T, envs []eventstore.Envelope) []string {
	t.Helper()
	out := make([]string, len(envs))
	for i, e := range envs {
		out[i] = nameOf(t, e)
	}
	return out
}

func mustAppend(t *testing.T, s eventstore.Store, agg eventstore.AggregateRef, expected uint64, dedupID string, events ...eventstore.Event) uint64 {
	t.Helper()
	v, err := s.Append(ctxFor(t), agg, expected, events, dedupID, meta)
	if err != nil {
		t.Fatalf("append to %s at %d: %v", agg, expected, err)
	}
	return v
}

func mustLoad(t *testing.T, s eventstore.Store, agg eventstore.AggregateRef, after uint64) []eventstore.Envelope {
	t.Helper()
	envs, err := s.Load(ctxFor(t), agg, after)
	if err != nil {
		t.Fatalf("load %s after %d: %v", agg, after, err)
	}
	return envs
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func runAppend(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	t.Run("a repeated append is noted as a duplicate, at the version before its first attempt or the newest; a new one is not", func(t *testing.T) {
		s := newStore(t)
		var first eventstore.AppendNote
		v1, err := s.Append(eventstore.WithAppendNote(ctxFor(t), &first), concert, 0, []eventstore.Event{ev("A", "1")}, "noted", meta)
		if err != nil || first.Duplicate {
			t.Fatalf("first append: version %d, %v, duplicate %v", v1, err, first.Duplicate)
		}
		v2 := mustAppend(t, s, concert, v1, "later", ev("A", "2"))
		// The version a repeat was decided on: the one before its first attempt, or the newest.
		for _, expected := range []uint64{0, v2} {
			var again eventstore.AppendNote
			v, err := s.Append(eventstore.WithAppendNote(ctxFor(t), &again), concert, expected, []eventstore.Event{ev("A", "1")}, "noted", meta)
			if err != nil || v != v1 || !again.Duplicate {
				t.Fatalf("repeat at version %d: version %d (first %d), %v, duplicate %v", expected, v, v1, err, again.Duplicate)
			}
		}
	})

	t.Run("events naming their own aggregate are stored in the commit's subject under that aggregate", func(t *testing.T) {
		s := newStore(t)
		seatRef := eventstore.AggregateRef{Type: eventstore.TypeSeat, ID: seat.ID + ".12"}
		resRef := eventstore.AggregateRef{Type: eventstore.TypeReservation, ID: "r1"}
		held := ev("SeatHeld", "a")
		held.Ref = &seatRef
		opened := ev("ReservationHeld", "b")
		opened.Ref = &resRef
		v := mustAppend(t, s, seat, 0, "own-refs", held, opened)
		envs := mustLoad(t, s, seat, 0)
		if len(envs) != 2 {
			t.Fatalf("loaded %d events, want 2", len(envs))
		}
		for i, want := range []eventstore.AggregateRef{seatRef, resRef} {
			got := eventstore.AggregateRef{Type: envs[i].AggregateType, ID: envs[i].AggregateID}
			if got != want || envs[i].Sequence != v || envs[i].Index != i {
				t.Errorf("event %d is %v at %d/%d, want %v at %d/%d", i, got, envs[i].Sequence, envs[i].Index, want, v, i)
			}
		}
		if _, _, err := eventstore.Place(seatRef); err == nil {
			t.Error("a seat has a subject of its own")
		}
	})

	t.Run("an append to a fresh aggregate at version 0 stores the event with every envelope field", func(t *testing.T) {
		s := newStore(t)
		v := mustAppend(t, s, seat, 0, "d1", ev("SeatHeld", "a"))
		if v == 0 {
			t.Fatal("version 0 after an append")
		}
		envs := mustLoad(t, s, seat, 0)
		if len(envs) != 1 {
			t.Fatalf("loaded %d events, want 1", len(envs))
		}
		e := envs[0]
		stream, _, _ := eventstore.Place(seat)
		id, err := uuid.Parse(e.EventID)
		if err != nil || id.Version() != 7 {
			t.Errorf("event ID %q is not a UUIDv7 (%v)", e.EventID, err)
		}
		checks := []struct {
			field     string
			got, want any
		}{
			{"Type", e.Type, "SeatHeld"},
			{"AggregateType", e.AggregateType, seat.Type},
			{"AggregateID", e.AggregateID, seat.ID},
			{"OccurredAt", e.OccurredAt.UTC(), meta.OccurredAt},
			{"CorrelationID", e.CorrelationID, meta.CorrelationID},
			{"CausationID", e.CausationID, meta.CausationID},
			{"SchemaVersion", e.SchemaVersion, eventstore.SchemaVersion},
			{"Stream", e.Stream, stream},
			{"Sequence", e.Sequence, v},
			{"payload", nameOf(t, e), "a"},
		}
		for _, c := range checks {
			if c.got != c.want {
				t.Errorf("%s = %v, want %v", c.field, c.got, c.want)
			}
		}
	})

	t.Run("several events of one append are one commit: in order, at the version returned, each with its position", func(t *testing.T) {
		s := newStore(t)
		v0 := mustAppend(t, s, concert, 0, "d0", ev("A", "0"))
		v := mustAppend(t, s, concert, v0, "d1", ev("A", "1"), ev("B", "2"), ev("C", "3"))
		envs := mustLoad(t, s, concert, v0)
		if got := names(t, envs); !equal(got, []string{"1", "2", "3"}) {
			t.Fatalf("loaded %v", got)
		}
		for i, e := range envs {
			if e.Sequence != v || e.Index != i {
				t.Errorf("event %d stored at sequence %d index %d; want %d, %d", i, e.Sequence, e.Index, v, i)
			}
		}
		if envs[0].EventID == envs[1].EventID || envs[1].EventID == envs[2].EventID {
			t.Errorf("the events of one commit share an event ID: %s %s %s", envs[0].EventID, envs[1].EventID, envs[2].EventID)
		}
		// The next append sees the whole commit as one version.
		if _, err := s.Append(ctxFor(t), concert, v, []eventstore.Event{ev("A", "4")}, "d2", meta); err != nil {
			t.Fatalf("append after the commit at its version: %v", err)
		}
	})

	tests := []struct {
		name     string
		expected func(v uint64) uint64
	}{
		{"an append with a stale version fails with ErrConcurrency and writes nothing", func(v uint64) uint64 { return v - 1 }},
		{"an append at version 0 to an aggregate that has events fails with ErrConcurrency", func(uint64) uint64 { return 0 }},
		{"an append at a version the aggregate has not reached fails with ErrConcurrency", func(v uint64) uint64 { return v + 5 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			v1 := mustAppend(t, s, concert, 0, "d1", ev("A", "1"))
			v2 := mustAppend(t, s, concert, v1, "d2", ev("A", "2"))
			_, err := s.Append(ctxFor(t), concert, tt.expected(v2), []eventstore.Event{ev("A", "3")}, "d3", meta)
			if !errors.Is(err, eventstore.ErrConcurrency) {
				t.Fatalf("append at %d with the aggregate at %d: %v, want ErrConcurrency", tt.expected(v2), v2, err)
			}
			if got := names(t, mustLoad(t, s, concert, 0)); !equal(got, []string{"1", "2"}) {
				t.Errorf("after the failed append the aggregate holds %v", got)
			}
		})
	}

	invalid := []struct {
		name   string
		agg    eventstore.AggregateRef
		events []eventstore.Event
	}{
		{"an append to an unknown aggregate type fails without ErrConcurrency", eventstore.AggregateRef{Type: "nope", ID: "x"}, []eventstore.Event{ev("A", "1")}},
		{"an append to an ID with a wildcard fails without ErrConcurrency", eventstore.AggregateRef{Type: eventstore.TypeConcert, ID: "c.>"}, []eventstore.Event{ev("A", "1")}},
		{"an append of no events fails", concert, nil},
		{"an append of an event that is not JSON fails", concert, []eventstore.Event{{Type: "A", Data: json.RawMessage(`{nope`)}}},
	}
	for _, tt := range invalid {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			_, err := s.Append(ctxFor(t), tt.agg, 0, tt.events, "d1", meta)
			if err == nil || errors.Is(err, eventstore.ErrConcurrency) || errors.Is(err, eventstore.ErrUnavailable) {
				t.Fatalf("append: %v, want a plain error", err)
			}
			if tt.agg == concert {
				if envs := mustLoad(t, s, concert, 0); len(envs) != 0 {
					t.Errorf("the failed append wrote %d events", len(envs))
				}
			}
		})
	}

	t.Run("an append with a cancelled context fails with ErrUnavailable", func(t *testing.T) {
		s := newStore(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := s.Append(ctx, concert, 0, []eventstore.Event{ev("A", "1")}, "d1", meta)
		if !errors.Is(err, eventstore.ErrUnavailable) {
			t.Fatalf("append: %v, want ErrUnavailable", err)
		}
	})
}

func runDedup(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	tests := []struct {
		name string
		// repeat appends again after the first append (version v1) and whatever the case
		// wrote after it; it returns the expected version to repeat with.
		between  func(t *testing.T, s eventstore.Store, v1 uint64)
		expected func(v1 uint64) uint64
		want     []string
	}{
		{
			name:     "a repeated dedupID at the version it produced returns that version and writes nothing",
			expected: func(v1 uint64) uint64 { return v1 },
			want:     []string{"1"},
		},
		{
			name:     "a repeated dedupID with the stale version it first carried returns the first version (a retried publish)",
			expected: func(uint64) uint64 { return 0 },
			want:     []string{"1"},
		},
		{
			name: "a repeated dedupID returns the first version even after another append followed it",
			between: func(t *testing.T, s eventstore.Store, v1 uint64) {
				mustAppend(t, s, concert, v1, "other", ev("A", "2"))
			},
			expected: func(uint64) uint64 { return 0 },
			want:     []string{"1", "2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			v1 := mustAppend(t, s, concert, 0, "once", ev("A", "1"))
			if tt.between != nil {
				tt.between(t, s, v1)
			}
			v, err := s.Append(ctxFor(t), concert, tt.expected(v1), []eventstore.Event{ev("A", "repeat")}, "once", meta)
			if err != nil {
				t.Fatalf("repeated append: %v", err)
			}
			if v != v1 {
				t.Errorf("repeated append returned version %d, the first one %d", v, v1)
			}
			if got := names(t, mustLoad(t, s, concert, 0)); !equal(got, tt.want) {
				t.Errorf("aggregate holds %v, want %v", got, tt.want)
			}
		})
	}

	t.Run("a repeated append of several events returns the version of its commit and writes nothing", func(t *testing.T) {
		s := newStore(t)
		v := mustAppend(t, s, concert, 0, "many", ev("A", "1"), ev("A", "2"), ev("A", "3"))
		for _, expected := range []uint64{0, v} {
			again, err := s.Append(ctxFor(t), concert, expected, []eventstore.Event{ev("A", "1"), ev("A", "2"), ev("A", "3")}, "many", meta)
			if err != nil || again != v {
				t.Fatalf("repeat at %d: version %d, %v; want %d", expected, again, err, v)
			}
		}
		if got := names(t, mustLoad(t, s, concert, 0)); !equal(got, []string{"1", "2", "3"}) {
			t.Errorf("aggregate holds %v", got)
		}
	})

	t.Run("another dedupID at a stale version is a conflict, not a repeat", func(t *testing.T) {
		s := newStore(t)
		mustAppend(t, s, concert, 0, "first", ev("A", "1"))
		_, err := s.Append(ctxFor(t), concert, 0, []eventstore.Event{ev("A", "2")}, "second", meta)
		if !errors.Is(err, eventstore.ErrConcurrency) {
			t.Fatalf("append: %v, want ErrConcurrency", err)
		}
	})

	t.Run("a dedupID used on one aggregate does not block another stream", func(t *testing.T) {
		s := newStore(t)
		mustAppend(t, s, concert, 0, "shared", ev("A", "1"))
		mustAppend(t, s, seat, 0, "shared", ev("A", "2"))
		if got := names(t, mustLoad(t, s, seat, 0)); !equal(got, []string{"2"}) {
			t.Errorf("seat holds %v", got)
		}
	})
}

func runLoad(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	t.Run("an aggregate without events loads as empty", func(t *testing.T) {
		s := newStore(t)
		if envs := mustLoad(t, s, concert, 0); len(envs) != 0 {
			t.Fatalf("loaded %d events", len(envs))
		}
	})

	t.Run("a load after a version returns only the newer events, oldest first, and none of other aggregates", func(t *testing.T) {
		s := newStore(t)
		var versions []uint64
		var v, o uint64
		for i := range 5 {
			v = mustAppend(t, s, concert, v, fmt.Sprintf("c%d", i), ev("A", fmt.Sprint(i)))
			versions = append(versions, v)
			o = mustAppend(t, s, other, o, fmt.Sprintf("o%d", i), ev("A", "other"))
		}
		tests := []struct {
			after uint64
			want  []string
		}{
			{0, []string{"0", "1", "2", "3", "4"}},
			{versions[0], []string{"1", "2", "3", "4"}},
			{versions[2], []string{"3", "4"}},
			{versions[2] + 1, []string{"3", "4"}}, // a sequence of another aggregate in between
			{versions[4], []string{}},
		}
		for _, tt := range tests {
			envs := mustLoad(t, s, concert, tt.after)
			if got := names(t, envs); !equal(got, tt.want) {
				t.Errorf("after %d: %v, want %v", tt.after, got, tt.want)
			}
			for i, e := range envs {
				if e.AggregateID != concert.ID || (i > 0 && e.Sequence <= envs[i-1].Sequence) || e.Sequence <= tt.after {
					t.Errorf("after %d: event %d is %s #%d", tt.after, i, e.AggregateID, e.Sequence)
				}
			}
		}
	})

	t.Run("an aggregate with a long history loads whole and in order", func(t *testing.T) {
		s := newStore(t)
		const n = 300 // more than one batch of the JetStream store's loads
		var v uint64
		for i := range n {
			v = mustAppend(t, s, concert, v, fmt.Sprintf("d%d", i), ev("A", fmt.Sprint(i)))
		}
		envs := mustLoad(t, s, concert, 0)
		if len(envs) != n {
			t.Fatalf("loaded %d events, want %d", len(envs), n)
		}
		for i, e := range envs {
			if nameOf(t, e) != fmt.Sprint(i) {
				t.Fatalf("event %d is %s", i, nameOf(t, e))
			}
		}
		if envs[n-1].Sequence != v {
			t.Errorf("last sequence %d, version %d", envs[n-1].Sequence, v)
		}
	})
}

func runConcurrency(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	t.Run("of many appends racing at one version exactly one wins", func(t *testing.T) {
		s := newStore(t)
		const racers = 32
		for round := range 3 {
			cur := uint64(0)
			if envs := mustLoad(t, s, seat, 0); len(envs) > 0 {
				cur = envs[len(envs)-1].Sequence
			}
			var wg sync.WaitGroup
			var mu sync.Mutex
			wins, conflicts := 0, 0
			var other []error
			start := make(chan struct{})
			for r := range racers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					_, err := s.Append(ctxFor(t), seat, cur, []eventstore.Event{ev("SeatHeld", fmt.Sprint(round, r))}, fmt.Sprint("hold-", round, "-", r), meta)
					mu.Lock()
					defer mu.Unlock()
					switch {
					case err == nil:
						wins++
					case errors.Is(err, eventstore.ErrConcurrency):
						conflicts++
					default:
						other = append(other, err)
					}
				}()
			}
			close(start)
			wg.Wait()
			if wins != 1 || conflicts != racers-1 || len(other) > 0 {
				t.Fatalf("round %d: %d wins, %d conflicts, other errors %v", round, wins, conflicts, other)
			}
		}
		if envs := mustLoad(t, s, seat, 0); len(envs) != 3 {
			t.Errorf("the seat holds %d events after 3 rounds", len(envs))
		}
	})

	t.Run("writers retrying on conflict lose no event and double none", func(t *testing.T) {
		s := newStore(t)
		const writers, each = 4, 10
		var wg sync.WaitGroup
		errs := make(chan error, writers)
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; i < each; {
					envs, err := s.Load(ctxFor(t), concert, 0)
					if err != nil {
						errs <- err
						return
					}
					var v uint64
					if len(envs) > 0 {
						v = envs[len(envs)-1].Sequence
					}
					_, err = s.Append(ctxFor(t), concert, v, []eventstore.Event{ev("A", fmt.Sprintf("%d-%d", w, i))}, fmt.Sprintf("w%d-%d", w, i), meta)
					switch {
					case err == nil:
						i++
					case errors.Is(err, eventstore.ErrConcurrency):
					default:
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		envs := mustLoad(t, s, concert, 0)
		seen := make(map[string]bool)
		for i, e := range envs {
			n := nameOf(t, e)
			if seen[n] {
				t.Errorf("event %s stored twice", n)
			}
			seen[n] = true
			if i > 0 && e.Sequence <= envs[i-1].Sequence {
				t.Errorf("sequence %d after %d", e.Sequence, envs[i-1].Sequence)
			}
		}
		if len(envs) != writers*each {
			t.Errorf("stored %d events, want %d", len(envs), writers*each)
		}
	})
}

func runLayout(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	t.Run("aggregates land in the stream of their context and partition", func(t *testing.T) {
		s := newStore(t)
		refs := []eventstore.AggregateRef{
			concert,
			{Type: eventstore.TypeSellOut, ID: "c1.d1"},
			eventstore.QueueGroupOf("u1"),
			{Type: eventstore.TypeQueueGate, ID: "main"},
			eventstore.WalletGroupOf("u1"),
		}
		for i := range 16 {
			refs = append(refs, eventstore.AggregateRef{Type: eventstore.TypeDate, ID: fmt.Sprintf("c1.d%d", i)})
		}
		streams := make(map[string]bool)
		for _, ref := range refs {
			v := mustAppend(t, s, ref, 0, "d-"+ref.String(), ev("A", ref.String()))
			want, _, _ := eventstore.Place(ref)
			envs := mustLoad(t, s, ref, 0)
			if len(envs) != 1 || envs[0].Stream != want || envs[0].Sequence != v || nameOf(t, envs[0]) != ref.String() {
				t.Fatalf("%s: loaded %+v, want one event in %s at %d", ref, envs, want, v)
			}
			streams[want] = true
		}
		if len(streams) < 6 {
			t.Errorf("the aggregates landed in only %d streams", len(streams))
		}
		r, ok := s.(eventstore.Reader)
		if !ok {
			return
		}
		for stream := range streams {
			var got []eventstore.Envelope
			if err := r.Replay(ctxFor(t), stream, 0, false, func(b []eventstore.Envelope) error {
				got = append(got, b...)
				return nil
			}); err != nil {
				t.Fatalf("replay %s: %v", stream, err)
			}
			for _, e := range got {
				if want, _, _ := eventstore.Place(eventstore.AggregateRef{Type: e.AggregateType, ID: e.AggregateID}); want != stream || e.Stream != stream {
					t.Errorf("stream %s replays %s/%s (placed in %s, envelope says %s)", stream, e.AggregateType, e.AggregateID, want, e.Stream)
				}
			}
		}
	})
}

func runTracker(t *testing.T, newStore func(t *testing.T) eventstore.Store) {
	t.Run("the tracker reports the newest sequence this store appended per stream", func(t *testing.T) {
		s := newStore(t)
		tr, ok := s.(eventstore.Tracker)
		if !ok {
			t.Skip("the store is no Tracker")
		}
		stream, _, _ := eventstore.Place(concert)
		if got := tr.LastAppended(stream); got != 0 {
			t.Fatalf("fresh store: %d", got)
		}
		v1 := mustAppend(t, s, concert, 0, "d1", ev("A", "1"))
		v2 := mustAppend(t, s, other, 0, "d2", ev("A", "2"), ev("A", "3"))
		if got := tr.LastAppended(stream); got != max(v1, v2) {
			t.Errorf("LastAppended = %d, want %d", got, max(v1, v2))
		}
		if got := tr.Mark(stream).Load(); got != max(v1, v2) {
			t.Errorf("Mark.Load = %d, want %d", got, max(v1, v2))
		}
		seatStream, _, _ := eventstore.Place(seat)
		if got := tr.LastAppended(seatStream); got != 0 {
			t.Errorf("LastAppended of an untouched stream = %d", got)
		}
		if got := tr.LastAppended("NOPE"); got != 0 {
			t.Errorf("LastAppended of an unknown stream = %d", got)
		}
		if m := tr.Mark("NOPE"); m != nil || m.Load() != 0 {
			t.Errorf("Mark of an unknown stream = %v", m)
		}
	})
}
