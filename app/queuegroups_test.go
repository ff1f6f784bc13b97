package app

import (
	"cmp"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
	"github.com/booking-engine/booking/internal/testclock"
)

func TestConcurrentTokensOfManyUsersShareQueueCommits(t *testing.T) {
	tests := []struct {
		name  string
		batch int // --queue-batch: 0 admits every token as it is issued
	}{
		{name: "every token is admitted as it is issued", batch: 0},
		{name: "the lowest positions are admitted, the others wait in position order", batch: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			t.Cleanup(cancel)
			g := newGatedStore()
			cfg := Config{HoldTTL: 5 * time.Minute, QueueBatch: tt.batch, QueueInterval: time.Hour,
				QueueActiveTTL: 10 * time.Minute, TokenSecret: []byte("test-secret")}
			// Not started: without the follower, svc's index holds only what its own commits
			// told it, so the positions it answers are the ones it derives from them.
			svc := New(g, cfg, Options{Clock: testclock.New(t0), Logger: quietLogger()})
			// One group's first token is held at the gate while the other users of the group
			// (real goroutines) queue behind it; a second group's users come at once too.
			users := append(usersSharing(30, eventstore.QueueGroupOf), "other-1", "other-2", "other-3")
			group := eventstore.QueueGroupOf(users[0]).ID
			type answer struct {
				tok Token
				err error
			}
			answers := make([]chan answer, len(users))
			issue := func(i int) {
				answers[i] = make(chan answer, 1)
				go func() {
					tok, _, err := svc.IssueToken(ctx, Meta{}, users[i])
					answers[i] <- answer{tok, err}
				}()
			}
			issue(0)
			<-g.entered
			for i := 1; i < 30; i++ {
				issue(i)
			}
			waitFor(t, "29 tokens to queue behind the first", func() bool { return svc.queueUsers.repo.queued(group) == 29 })
			for i := 30; i < len(users); i++ {
				issue(i)
			}
			close(g.gate)
			tokens := make([]Token, len(users))
			for i := range users {
				a := <-answers[i]
				if a.err != nil || a.tok.UserID != users[i] {
					t.Fatalf("token of %s: %+v, %v", users[i], a.tok, a.err)
				}
				tokens[i] = a.tok
			}

			// Fewer QUEUE messages than tokens, and each token's position is its commit's
			// sequence and its index in the commit, increasing in the stream's order.
			var positions []uint64
			messages := map[uint64]bool{}
			byUser := map[string]uint64{}
			err := g.Replay(ctx, eventstore.StreamsOf(eventstore.TypeQueueUser)[0], 0, false, func(batch []eventstore.Envelope) error {
				for _, env := range batch {
					if env.Type != "QueueTokenIssued" {
						continue
					}
					if env.AggregateType != eventstore.TypeQueueUser {
						t.Errorf("%s at %d is on %s/%s, want a queueuser", env.Type, env.Sequence, env.AggregateType, env.AggregateID)
					}
					messages[env.Sequence] = true
					positions = append(positions, queuePosition(env.Sequence, env.Index))
					byUser[env.AggregateID] = queuePosition(env.Sequence, env.Index)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(positions) != len(users) || len(messages) >= len(users) {
				t.Fatalf("%d tokens in %d QUEUE messages, want %d tokens in fewer messages", len(positions), len(messages), len(users))
			}
			if !slices.IsSorted(positions) || len(slices.Compact(slices.Clone(positions))) != len(positions) {
				t.Fatalf("positions in the stream's order %v: want strictly increasing", positions)
			}
			for i, tok := range tokens {
				if tok.Position != byUser[users[i]] {
					t.Errorf("%s answered position %d, the log says %d", users[i], tok.Position, byUser[users[i]])
				}
			}

			// What the index answers: with a batch, the lowest positions are ACTIVE and the rest
			// WAITING, each behind the waiting tokens of lower positions.
			if err := svc.admit(ctx); err != nil {
				t.Fatal(err)
			}
			sorted := slices.Clone(tokens)
			slices.SortFunc(sorted, func(a, b Token) int { return cmp.Compare(a.Position, b.Position) })
			admitted := 0
			for i, tok := range sorted {
				st, err := svc.TokenStatus(ctx, tok.Token)
				if err != nil || st.Position != tok.Position || st.UserID != tok.UserID {
					t.Fatalf("status of %s: %+v, %v", tok.UserID, st, err)
				}
				user, checkErr := svc.CheckToken(ctx, tok.Token)
				switch st.Status {
				case string(aggregates.TokenActive):
					if admitted != i {
						t.Fatalf("%s (rank %d) is ACTIVE after a WAITING token of a lower position", tok.UserID, i)
					}
					admitted++
					if checkErr != nil || user != tok.UserID {
						t.Errorf("check of active %s: %q, %v", tok.UserID, user, checkErr)
					}
				case string(aggregates.TokenWaiting):
					if st.Ahead != uint64(i-admitted) {
						t.Errorf("%s (rank %d) has %d ahead, want %d", tok.UserID, i, st.Ahead, i-admitted)
					}
					if checkErr == nil {
						t.Errorf("check of waiting %s admitted it", tok.UserID)
					}
				default:
					t.Errorf("%s is %s", tok.UserID, st.Status)
				}
			}
			if tt.batch == 0 && admitted != len(tokens) || tt.batch > 0 && admitted < tt.batch {
				t.Errorf("%d of %d tokens admitted with batch %d", admitted, len(tokens), tt.batch)
			}

			// Another instance's follower derives the same positions from the log.
			other := New(g, cfg, Options{Clock: testclock.New(t0), Logger: quietLogger()})
			if err := other.Start(ctx, logReads{g}); err != nil {
				t.Fatal(err)
			}
			for _, tok := range tokens {
				if st, err := other.TokenStatus(ctx, tok.Token); err != nil || st.Position != tok.Position {
					t.Errorf("%s on another instance: %+v, %v; want position %d", tok.UserID, st, err, tok.Position)
				}
			}

			// Revocations of users of one group, at once, end each its own user's token.
			done := make(chan error, len(users))
			for _, u := range users {
				go func() { done <- svc.revokeToken(ctx, Meta{}, u, "pay-"+u) }()
			}
			for range users {
				if err := <-done; err != nil {
					t.Fatal(err)
				}
			}
			for _, tok := range tokens {
				if st, err := svc.TokenStatus(ctx, tok.Token); err != nil || st.Status != string(aggregates.TokenExpired) {
					t.Errorf("status of %s after its revocation: %+v, %v", tok.UserID, st, err)
				}
			}
		})
	}
}
