package app

import (
	"fmt"
	"testing"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// A queue group forgets a user aggregates.EndedRetention after the user's latest token was
// issued or revoked (aggregates.QueueUsers.Compact), paid for or not; the queue index answers
// for the tokens of the users it forgot. The group's time moves with its own commits, so these
// tests move the fake clock and then commit a token of another user of the same group.

// groupKnows returns the token the user's queue group holds for the user ("" if forgotten).
func groupKnows(t *testing.T, svc *Service, user string) string {
	t.Helper()
	qs, _, ok := svc.queueUsers.repo.Cached(eventstore.QueueGroupOf(user).ID)
	if !ok {
		t.Fatalf("the group of %s is not cached", user)
	}
	return qs.User(user).TokenID()
}

// tokenID returns the token ID a signed token names.
func tokenID(t *testing.T, svc *Service, tok Token) string {
	t.Helper()
	c, err := svc.parseToken(tok.Token)
	if err != nil {
		t.Fatal(err)
	}
	return c.tokenID
}

// forget moves the clock past the retention and has another user of user's group take a
// token, so that the group forgets user; it fails the test if the group did not.
func forget(t *testing.T, h *harness, user, other string) {
	t.Helper()
	h.clock.Advance(aggregates.EndedRetention + time.Second)
	if _, created, err := h.svc.IssueToken(h.ctx, Meta{}, other); err != nil || !created {
		t.Fatalf("token of %s: created=%v %v", other, created, err)
	}
	if got := groupKnows(t, h.svc, user); got != "" {
		t.Fatalf("the group still holds %s's token %s past the retention", user, got)
	}
}

func TestAUserForgottenByTheQueueGroupKeepsALiveToken(t *testing.T) {
	users := usersSharing(2, eventstore.QueueGroupOf)
	user, other := users[0], users[1]
	tests := []struct {
		name string
		cfg  Config
		want aggregates.TokenStatus
	}{
		// A batch of one within an hour: the first token of another group takes the batch, so
		// the user's token waits.
		{name: "a user forgotten while WAITING asking again gets the same token",
			cfg: Config{QueueBatch: 1, QueueInterval: time.Hour}, want: aggregates.TokenWaiting},
		{name: "a user forgotten while ACTIVE asking again gets the same token",
			cfg: Config{}, want: aggregates.TokenActive},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, eventstore.NewMemStore(), tt.cfg)
			if tt.cfg.QueueBatch > 0 {
				if _, _, err := h.svc.IssueToken(h.ctx, Meta{}, "first"); err != nil {
					t.Fatal(err)
				}
			}
			first, _, err := h.svc.IssueToken(h.ctx, Meta{}, user)
			if err != nil || first.Status != string(tt.want) {
				t.Fatalf("first token: %+v, %v; want %s", first, err, tt.want)
			}
			forget(t, h, user, other)
			again, created, err := h.svc.IssueToken(h.ctx, Meta{}, user)
			if err != nil || created || again.Token != first.Token || again.Position != first.Position || again.Status != string(tt.want) {
				t.Fatalf("asking again: %+v created=%v %v; want the same %s token %+v", again, created, err, tt.want, first)
			}
			if got := groupKnows(t, h.svc, user); got != "" {
				t.Fatalf("a refused issue made the group remember %s's token %s", user, got)
			}
		})
	}

	t.Run("a user forgotten after the token expired gets a new one", func(t *testing.T) {
		h := newHarness(t, eventstore.NewMemStore(), Config{QueueActiveTTL: 2 * time.Minute})
		first, _, err := h.svc.IssueToken(h.ctx, Meta{}, user)
		if err != nil {
			t.Fatal(err)
		}
		forget(t, h, user, other)
		if _, err := h.svc.CheckToken(h.ctx, first.Token); !isErr(err, ErrTokenExpired) {
			t.Fatalf("check of the old token past its TTL: %v", err)
		}
		again, created, err := h.svc.IssueToken(h.ctx, Meta{}, user)
		if err != nil || !created || again.Token == first.Token || again.Status != string(aggregates.TokenActive) {
			t.Fatalf("asking again: %+v created=%v %v; want a new ACTIVE token", again, created, err)
		}
		if got := groupKnows(t, h.svc, user); got != tokenID(t, h.svc, again) {
			t.Fatalf("the group holds %q for %s, want the new token", got, user)
		}
	})

	t.Run("a payment after the group forgot the payer revokes the payer's token", func(t *testing.T) {
		h := newHarness(t, eventstore.NewMemStore(), Config{})
		h.concert(5, 100)
		tok, _, err := h.svc.IssueToken(h.ctx, Meta{}, user)
		if err != nil {
			t.Fatal(err)
		}
		forget(t, h, user, other)
		h.charge(user, 1000)
		res := h.hold(user, 1)
		if _, err := h.svc.Pay(h.ctx, Meta{}, res, user); err != nil {
			t.Fatal(err)
		}
		if _, err := h.svc.CheckToken(h.ctx, tok.Token); !isErr(err, ErrTokenExpired) {
			t.Fatalf("check after payment: %v", err)
		}
		if st, _ := h.svc.TokenStatus(h.ctx, tok.Token); st.Status != string(aggregates.TokenExpired) {
			t.Fatalf("status after payment: %s", st.Status)
		}
		if got := groupKnows(t, h.svc, user); got != "" {
			t.Fatalf("the revocation made the group remember %s's token %s", user, got)
		}
		again, created, err := h.svc.IssueToken(h.ctx, Meta{}, user)
		if err != nil || !created || again.Token == tok.Token || again.Status != string(aggregates.TokenActive) {
			t.Fatalf("asking after payment: %+v created=%v %v; want a new ACTIVE token", again, created, err)
		}
	})
}

func TestTheQueueGroupsStayBoundedWhileManyUsersTakeTokensOverALongTime(t *testing.T) {
	h := newHarness(t, eventstore.NewMemStore(), Config{})
	const users, every = 10_000, 100 * time.Millisecond
	window := int(aggregates.EndedRetention / every) // tokens issued within one retention
	groups := map[string]bool{}
	size := func() int {
		n := 0
		for g := range groups {
			if qs, _, ok := h.svc.queueUsers.repo.Cached(g); ok {
				n += qs.Len()
			}
		}
		return n
	}
	most := 0
	for i := range users {
		user := fmt.Sprintf("buyer%d", i)
		groups[eventstore.QueueGroupOf(user).ID] = true
		if _, created, err := h.svc.IssueToken(h.ctx, Meta{}, user); err != nil || !created {
			t.Fatalf("token of %s: created=%v %v", user, created, err)
		}
		if i%7 == 0 { // some pay
			if err := h.svc.revokeToken(h.ctx, Meta{}, user, "pay-"+user); err != nil {
				t.Fatal(err)
			}
		}
		h.clock.Advance(every)
		if i%100 == 99 {
			most = max(most, size())
		}
	}
	// Each group forgets at its own commits, a few seconds apart at most here: a margin of a
	// few tokens a group over the retention's.
	if limit := window + 4*eventstore.QueueGroups; most > limit {
		t.Fatalf("the groups remembered up to %d users, want at most %d (%d tokens a retention)", most, limit, window)
	}
	if most < window/2 {
		t.Fatalf("the groups remembered at most %d users: fewer than the retention's %d, so the test measured nothing", most, window)
	}
	t.Logf("%d users over %s: the groups remembered at most %d", users, time.Duration(users)*every, most)
}
