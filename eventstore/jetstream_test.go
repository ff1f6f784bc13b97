package eventstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/booking-engine/booking/eventstore"
)

var (
	concert = eventstore.AggregateRef{Type: eventstore.TypeConcert, ID: "c1"}
	meta    = eventstore.Metadata{OccurredAt: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC), CorrelationID: "corr"}
)

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// openSynced opens (or reopens) a store with its embedded server on dir, fsyncing every
// commit.
func openSynced(t *testing.T, dir string) *eventstore.JetStreamStore {
	t.Helper()
	s, err := eventstore.Open(testCtx(t), eventstore.Options{DataDir: dir, SyncAlways: true, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	return s
}

func event(name string) eventstore.Event {
	return eventstore.Event{Type: "A", Data: json.RawMessage(fmt.Sprintf(`{"name":%q}`, name))}
}

func TestEventsSurviveARestartOfTheEmbeddedServer(t *testing.T) {
	dir := t.TempDir()
	open := func() *eventstore.JetStreamStore { return openSynced(t, dir) }
	s := open()
	var v uint64
	for i := range 3 {
		var err error
		if v, err = s.Append(testCtx(t), concert, v, []eventstore.Event{event(fmt.Sprint(i))}, fmt.Sprint("d", i), meta); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = open()
	defer s.Close()
	envs, err := s.Load(testCtx(t), concert, 0)
	if err != nil || len(envs) != 3 || envs[2].Sequence != v {
		t.Fatalf("after the restart: %d events, %v; want 3 ending at %d", len(envs), err, v)
	}
	if h, err := s.Head(testCtx(t), "CATALOG"); err != nil || h != v {
		t.Errorf("head after the restart: %d, %v; want %d", h, err, v)
	}
	if _, err := s.Append(testCtx(t), concert, v-1, []eventstore.Event{event("stale")}, "stale", meta); !errors.Is(err, eventstore.ErrConcurrency) {
		t.Errorf("a stale append after the restart: %v", err)
	}
	if _, err := s.Append(testCtx(t), concert, v, []eventstore.Event{event("3")}, "d3", meta); err != nil {
		t.Errorf("an append at the version after the restart: %v", err)
	}
	// A dedup ID from before the restart is still recognised.
	if again, err := s.Append(testCtx(t), concert, 0, []eventstore.Event{event("0")}, "d0", meta); err != nil || again != envs[0].Sequence {
		t.Errorf("a repeat of the first append after the restart: %d, %v; want %d", again, err, envs[0].Sequence)
	}
}

func TestStreamsAreConfiguredAsAnEventLog(t *testing.T) {
	s := openEmbedded(t, false)
	// Running it again, as every instance does at start-up, changes nothing and fails nothing.
	for range 2 {
		if err := s.EnsureStreams(testCtx(t), 1); err != nil {
			t.Fatalf("ensure streams again: %v", err)
		}
	}
	for _, spec := range eventstore.Layout() {
		st, err := s.JetStream().Stream(testCtx(t), spec.Name)
		if err != nil {
			t.Fatalf("%s: %v", spec.Name, err)
		}
		c := st.CachedInfo().Config
		if len(c.Subjects) != 1 || c.Subjects[0] != spec.Subject || c.Storage != jetstream.FileStorage || c.Replicas != 1 ||
			!c.AllowDirect || !c.DenyDelete || !c.DenyPurge || c.Duplicates != 2*time.Minute ||
			c.MaxAge != 0 || c.MaxMsgs != -1 || c.MaxBytes != -1 || c.MaxMsgsPerSubject != -1 {
			t.Errorf("%s is configured %+v", spec.Name, c)
		}
	}
	v, err := s.Append(testCtx(t), concert, 0, []eventstore.Event{event("0")}, "d0", meta)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := s.JetStream().Stream(testCtx(t), "CATALOG")
	if err := st.DeleteMsg(testCtx(t), v); err == nil {
		t.Error("a message of the event log could be deleted")
	}
	if err := st.Purge(testCtx(t)); err == nil {
		t.Error("the event log could be purged")
	}
}

func TestAToolAttachesToTheEmbeddedServerAndLosesItFast(t *testing.T) {
	embedded, err := eventstore.Open(testCtx(t), eventstore.Options{DataDir: t.TempDir(), ListenAddr: "127.0.0.1:0", Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer embedded.Close()
	if embedded.URL() == "" {
		t.Fatal("a listening embedded server has no URL")
	}
	tool, err := eventstore.Open(testCtx(t), eventstore.Options{NATSURLs: []string{embedded.URL()}, Logger: quietLogger()})
	if err != nil {
		t.Fatalf("attach: %v", err)
	}
	defer tool.Close()

	v, err := tool.Append(testCtx(t), concert, 0, []eventstore.Event{event("from the tool")}, "t1", meta)
	if err != nil {
		t.Fatal(err)
	}
	if envs, err := embedded.Load(testCtx(t), concert, 0); err != nil || len(envs) != 1 || envs[0].Sequence != v {
		t.Fatalf("the embedded store loads %d events, %v", len(envs), err)
	}

	if err := embedded.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := tool.Append(ctx, concert, v, []eventstore.Event{event("lost")}, "t2", meta); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("append without a server: %v, want ErrUnavailable", err)
	}
	if _, err := tool.Load(ctx, concert, 0); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("load without a server: %v, want ErrUnavailable", err)
	}
	if _, err := tool.Head(ctx, "CATALOG"); !errors.Is(err, eventstore.ErrUnavailable) {
		t.Errorf("head without a server: %v, want ErrUnavailable", err)
	}
}

func TestOpeningAnUnreachableServerGivesUpAfterTheBoundedAttempts(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "nats://" + l.Addr().String()
	l.Close() // nothing listens there now
	_, err = eventstore.Open(testCtx(t), eventstore.Options{NATSURLs: []string{url}, ConnectAttempts: 2, ConnectWait: time.Millisecond, Logger: quietLogger()})
	if !errors.Is(err, eventstore.ErrUnavailable) {
		t.Fatalf("open: %v, want ErrUnavailable", err)
	}
}

func TestAMessageOfAnotherSchemaIsRefusedNotMisread(t *testing.T) {
	_, concertSubject, _ := eventstore.Place(concert)
	// A schema-1 message: one bare envelope per event, as the first format stored them.
	v1, _ := json.Marshal(eventstore.Envelope{EventID: "x", Type: "A", AggregateType: concert.Type, AggregateID: concert.ID, SchemaVersion: 1, Data: event("1").Data})
	// A schema-3 commit: a wallet on a subject of its own, before wallets were grouped.
	v3 := []byte(`{"schemaVersion":3,"events":[{"eventId":"y","type":"PointsCharged","data":{"amount":5,"reference":"r"}}]}`)
	// A schema-4 commit: a queue user on a subject of its own, its token's position the
	// message's sequence, before queue users were grouped.
	v4 := []byte(`{"schemaVersion":4,"events":[{"eventId":"z","type":"QueueTokenIssued","aggregateType":"queueuser","aggregateId":"u1","data":{"tokenId":"t","userId":"u1"}}]}`)
	group := eventstore.WalletGroupOf("u1")
	groupStream, _, _ := eventstore.Place(group)
	logs := []struct {
		name, subject, stream string
		body                  []byte
		load                  eventstore.AggregateRef // an aggregate whose subject holds the message
	}{
		{"a schema-1 message", concertSubject, "CATALOG", v1, concert},
		{"a schema-3 wallet commit", strings.Replace(groupStream, "WALLETS_", "wallets.", 1) + ".wallet.u1", groupStream, v3, eventstore.AggregateRef{}},
		{"a schema-4 queue user commit", "queue.queueuser.u1", "QUEUE", v4, eventstore.AggregateRef{}},
	}
	for _, l := range logs {
		dir := t.TempDir()
		s, err := eventstore.Open(testCtx(t), eventstore.Options{DataDir: dir, Logger: quietLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Close() })
		if _, err := s.JetStream().Publish(testCtx(t), l.subject, l.body); err != nil {
			t.Fatal(err)
		}
		type read struct {
			name string
			read func() error
		}
		var reads []read
		if l.load != (eventstore.AggregateRef{}) {
			reads = append(reads, read{"a load of its aggregate", func() error { _, err := s.Load(testCtx(t), l.load, 0); return err }})
		}
		reads = append(reads, []read{
			{"a replay of its stream", func() error {
				return s.Replay(testCtx(t), l.stream, 0, false, func([]eventstore.Envelope) error { return nil })
			}},
			{"opening its data dir again", func() error {
				_ = s.Close()
				again, err := eventstore.Open(testCtx(t), eventstore.Options{DataDir: dir, Logger: quietLogger()})
				if err == nil {
					_ = again.Close()
				}
				return err
			}},
		}...)
		for _, tt := range reads {
			t.Run(l.name+": "+tt.name+" fails with ErrSchema and says what to do", func(t *testing.T) {
				err := tt.read()
				if !errors.Is(err, eventstore.ErrSchema) || !strings.Contains(err.Error(), "empty data dir") {
					t.Fatalf("%v, want ErrSchema naming the way out", err)
				}
			})
		}
	}
}

func TestAReplayStepsOverGapsInTheStream(t *testing.T) {
	s := openEmbedded(t, false)
	// The layout's streams deny deletes, so make a stream with gaps for the occasion.
	st, err := s.JetStream().CreateStream(testCtx(t), jetstream.StreamConfig{Name: "GAPS", Subjects: []string{"gaps.>"}, Storage: jetstream.MemoryStorage})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 6 {
		body := fmt.Appendf(nil, `{"schemaVersion":%d,"events":[{"eventId":"%d","type":"A","data":{}}]}`, eventstore.SchemaVersion, i)
		if _, err := s.JetStream().Publish(testCtx(t), "gaps.x", body); err != nil {
			t.Fatal(err)
		}
	}
	for _, seq := range []uint64{2, 3, 6} { // 6: the head itself is gone
		if err := st.DeleteMsg(testCtx(t), seq); err != nil {
			t.Fatal(err)
		}
	}
	var got []uint64
	err = s.Replay(testCtx(t), "GAPS", 0, false, func(b []eventstore.Envelope) error {
		for _, e := range b {
			got = append(got, e.Sequence)
		}
		return nil
	})
	if err != nil || fmt.Sprint(got) != "[1 4 5]" {
		t.Fatalf("replayed %v, %v; want [1 4 5]", got, err)
	}
}

func TestAFollowingReplayEndsWhenTheStoreCloses(t *testing.T) {
	s, err := eventstore.Open(testCtx(t), eventstore.Options{DataDir: t.TempDir(), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Append(testCtx(t), concert, 0, []eventstore.Event{event("0")}, "d0", meta); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- s.Replay(context.Background(), "CATALOG", 0, true, func([]eventstore.Envelope) error {
			close(started)
			return nil
		})
	}()
	<-started
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, eventstore.ErrUnavailable) {
			t.Errorf("replay ended with %v, want ErrUnavailable", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the replay went on after the store closed")
	}
}

// The commits a store appends are read back from what it encoded, not decoded (the commit
// cache): after a restart, reading them decodes the stored bytes, and must give the same.
func TestACommitReadsTheSameFromItsWriterAndAfterARestart(t *testing.T) {
	dir := t.TempDir()
	open := func() *eventstore.JetStreamStore { return openSynced(t, dir) }
	seat := eventstore.AggregateRef{Type: eventstore.TypeSeat, ID: "c1.d1.7"}
	date := eventstore.AggregateRef{Type: eventstore.TypeDate, ID: "c1.d1"}
	stream, _, err := eventstore.Place(date)
	if err != nil {
		t.Fatal(err)
	}
	read := func(s *eventstore.JetStreamStore) []eventstore.Envelope {
		var all []eventstore.Envelope
		err := s.Replay(testCtx(t), stream, 0, false, func(batch []eventstore.Envelope) error {
			all = append(all, batch...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return all
	}
	s := open()
	own := eventstore.Metadata{OccurredAt: time.Date(2026, 12, 7, 9, 0, 0, 1, time.FixedZone("KST", 9*3600)), CausationID: "own"}
	commits := [][]eventstore.Event{
		{{Type: "SeatHeld", Data: json.RawMessage(`{"seatNo":7}`), Ref: &seat, Meta: &own}, {Type: "ReservationHeld", Data: json.RawMessage(`{"a":[1, 2]}`)}},
		{{Type: "Empty"}},
		{{Type: "SeatReleased", Data: json.RawMessage(`{"seatNo":7}`), Ref: &seat}},
	}
	var v uint64
	for i, evs := range commits {
		var err error
		if v, err = s.Append(testCtx(t), date, v, evs, fmt.Sprint("c", i), eventstore.Metadata{CorrelationID: "é\"<>"}); err != nil {
			t.Fatal(err)
		}
	}
	written := read(s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open()
	defer s.Close()
	stored := read(s)
	if len(written) != 4 || !reflect.DeepEqual(written, stored) {
		t.Errorf("the writer read\n%+v\nafter a restart\n%+v", written, stored)
	}
}
