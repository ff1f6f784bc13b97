package app

import (
	"container/heap"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// queueIndex is the in-memory view of the waiting queue: the tokens that may still matter
// with their positions, the latest token of each user, and the admission history. It is fed
// by a follow-mode replay of the QUEUE stream (so every instance sees every token) and, for
// read-your-writes, by this process's own appends as they happen; applying an event twice
// changes nothing.
//
// It forgets what can no longer change an answer, so that it is bounded by the tokens that
// are waiting, active or recently ended rather than by every token ever issued (the soak
// issues ~200 a second, ~100 bytes each). A token that can never be WAITING or ACTIVE again
// (revoked, superseded by a newer token of its user, or past its active TTL) is dropped
// queueRetention after that became true; a signed token at or below the horizon (the highest
// position dropped) that the index does not know was dropped, and reads EXPIRED (statusOf).
// Tokens at or below the watermark are only a count, and admissions older than the admission
// window are dropped. Pruning goes by the times of the events applied, not by a clock, so
// every instance, and a replay of the log, forgets the same tokens at the same point of the
// stream, give or take what its own appends applied first.
type queueIndex struct {
	policy aggregates.QueuePolicy
	window time.Duration // --queue-interval: how far back admittedSince is asked to look

	mu     sync.RWMutex
	tokens map[string]*tokenRec
	latest map[string]string // user → latest token ID, while that token is in tokens
	// waiting holds the tokens above the watermark in ascending position, dropped ones too
	// (their records no longer in tokens): they still count for ahead and for the next
	// admission. counted is how many tokens are at or below it (every token with AdmitAll).
	waiting   []*tokenRec
	counted   int
	admission aggregates.Admission
	admitted  []admittedStep // how many tokens each advance admitted, within the window
	drops     dropQueue      // tokens that ended, by when they may be dropped
	// horizon is the highest position dropped. It never passes the positions of the commit at
	// seq: every token of a commit at or below seq has been applied, so one of them that is
	// not in tokens was dropped, not yet to come.
	horizon uint64
	clock   time.Time // the latest time of an event applied: what pruning goes by
	// seq and eventID are the last QUEUE event the follower applied in order; everything up to
	// it is in the index (own appends may have put later events in too). See queuesnapshot.go.
	seq     uint64
	eventID string
	moved   chan struct{} // closed when seq moves, for waitApplied; nil while nobody waits
}

// queueRetention is how long the index keeps a token after it ended. A dropped token answers
// the same from its claims, so the figure is not what makes the answers right; it is the
// JetStream duplicate window the rest of the engine uses, a margin for instances whose clocks
// or followers differ by seconds.
const queueRetention = eventstore.DuplicateWindow

type tokenRec struct {
	id, user   string
	position   uint64
	issuedAt   time.Time
	revoked    bool
	superseded bool  // a newer token of the same user was issued
	dropAt     int64 // Unix nanoseconds when it may be dropped; 0: not ended (not in drops)
	slot       int   // its index in drops
}

type admittedStep struct {
	At    time.Time // exported for the snapshot's encoding
	Count int
}

func newQueueIndex(p aggregates.QueuePolicy, window time.Duration) *queueIndex {
	return &queueIndex{policy: p, window: window, tokens: map[string]*tokenRec{}, latest: map[string]string{}}
}

func (q *queueIndex) apply(env eventstore.Envelope) {
	ev, err := aggregates.DecodeKnown(env.Decoded, env.Type, env.Data)
	if err != nil {
		return
	}
	q.applyEvent(ev, env.Sequence, env.Index)
}

// applyEvent applies an event stored at index of its commit at seq: what apply does once it
// has decoded, and what this process does with the events it has just appended.
func (q *queueIndex) applyEvent(ev aggregates.Event, seq uint64, index int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	switch e := ev.(type) {
	case aggregates.QueueTokenIssued:
		if index >= 1<<positionIndexBits {
			// No commit of this code holds that many events (see positionIndexBits): a
			// position of it would collide with the next commit's.
			return
		}
		q.tick(e.IssuedAt)
		q.issued(e, queuePosition(seq, index))
	case aggregates.QueueTokenRevoked:
		q.tick(e.RevokedAt)
		if t, ok := q.tokens[e.TokenID]; ok {
			t.revoked = true
			at := e.RevokedAt
			if at.IsZero() { // not from DecideRevoke, which always sets it
				at = q.clock
			}
			q.endAt(t, at)
		}
	case aggregates.QueueAdvanced:
		q.tick(e.At)
		q.advanced(e)
	}
	q.prune()
}

// tick moves the index's clock to an event's time; it never goes back.
func (q *queueIndex) tick(at time.Time) {
	if at.After(q.clock) {
		q.clock = at
	}
}

func (q *queueIndex) issued(e aggregates.QueueTokenIssued, position uint64) {
	if _, ok := q.tokens[e.TokenID]; ok {
		return
	}
	t := &tokenRec{id: e.TokenID, user: e.UserID, position: position, issuedAt: e.IssuedAt}
	q.tokens[e.TokenID] = t
	// The older of the two tokens of a user is superseded for good, even once the newer one
	// is dropped and latest forgets the user.
	if cur, ok := q.tokens[q.latest[e.UserID]]; !ok || cur.position < position {
		q.latest[e.UserID] = e.TokenID
		if ok {
			q.supersede(cur, e.IssuedAt)
		}
	} else {
		q.supersede(t, e.IssuedAt)
	}
	if q.policy.AdmitAll || position <= q.admission.Watermark() {
		// Admitted as it came (or admitted by a watermark that reached past it before this
		// instance saw it): a count, and an end at its active TTL.
		q.counted++
		q.activated(t)
		return
	}
	i := sort.Search(len(q.waiting), func(i int) bool { return q.waiting[i].position >= position })
	q.waiting = slices.Insert(q.waiting, i, t)
}

func (q *queueIndex) supersede(t *tokenRec, at time.Time) {
	t.superseded = true
	q.endAt(t, at)
}

// activated schedules the drop of an admitted token for after its active TTL.
func (q *queueIndex) activated(t *tokenRec) {
	if _, _, expiresAt := q.admission.StatusOf(q.policy, t.position, t.issuedAt, false, t.issuedAt); !expiresAt.IsZero() {
		q.endAt(t, expiresAt)
	}
}

// endAt records that t can be neither WAITING nor ACTIVE from at on (or earlier, if it already
// knew so): it may be dropped queueRetention later.
func (q *queueIndex) endAt(t *tokenRec, at time.Time) {
	q.dropAfter(t, at.Add(queueRetention).UnixNano())
}

// dropAfter schedules the drop of t at dropAt (Unix nanoseconds), unless it is due earlier.
func (q *queueIndex) dropAfter(t *tokenRec, dropAt int64) {
	switch {
	case t.dropAt == 0:
		t.dropAt = dropAt
		heap.Push(&q.drops, t)
	case dropAt < t.dropAt:
		t.dropAt = dropAt
		heap.Fix(&q.drops, t.slot)
	}
}

// prune drops the tokens whose time came, in the order of that time: O(log n) for each
// token dropped, nothing for those kept. A token the follower has not applied in order yet
// waits, so that the horizon never passes a token still to come.
func (q *queueIndex) prune() {
	now := q.clock.UnixNano()
	for len(q.drops) > 0 {
		t := q.drops[0]
		if t.dropAt > now || positionSeq(t.position) > q.seq {
			return
		}
		heap.Pop(&q.drops)
		delete(q.tokens, t.id)
		if q.latest[t.user] == t.id {
			delete(q.latest, t.user)
		}
		q.horizon = max(q.horizon, t.position)
	}
}

func (q *queueIndex) advanced(e aggregates.QueueAdvanced) {
	if e.Watermark <= q.admission.Watermark() {
		return
	}
	q.admission = q.admission.Apply(e)
	n := sort.Search(len(q.waiting), func(i int) bool { return q.waiting[i].position > e.Watermark })
	for _, t := range q.waiting[:n] {
		if q.tokens[t.id] == t {
			q.activated(t)
		}
	}
	clear(q.waiting[:n]) // the array's head must not keep dropped records alive
	q.waiting = q.waiting[n:]
	q.counted += n
	// Only the advances within the window still count for admittedSince.
	old := sort.Search(len(q.admitted), func(i int) bool { return q.admitted[i].At.After(e.At.Add(-q.window)) })
	q.admitted = append(q.admitted[old:], admittedStep{At: e.At, Count: n})
}

// latestOf returns the user's latest token while the index holds it ("" once it was dropped
// as ended, or for a user without one), and whether it was revoked.
func (q *queueIndex) latestOf(user string) (tokenID string, revoked bool) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	t, ok := q.tokens[q.latest[user]]
	if !ok {
		return "", false
	}
	return t.id, t.revoked
}

// tokenState is a token's record and where it stands at a moment.
type tokenState struct {
	rec                 tokenRec
	status              aggregates.TokenStatus
	activeAt, expiresAt time.Time
	ahead               uint64
}

// status returns a token's state at now; ok is false for a token the index does not know.
func (q *queueIndex) status(tokenID string, now time.Time) (ts tokenState, ok bool) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	return q.statusLocked(tokenID, now)
}

// statusOf is status for a signed token: one the index dropped (at or below the horizon, not
// in tokens) is EXPIRED with the times it had (its claims carry position and issue time), as
// it read before it was dropped. ok is false only for a token above the horizon that the
// index does not know (yet).
func (q *queueIndex) statusOf(c tokenClaims, now time.Time) (ts tokenState, ok bool) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if ts, ok = q.statusLocked(c.tokenID, now); ok || c.position > q.horizon {
		return ts, ok
	}
	ts.rec = tokenRec{id: c.tokenID, user: c.userID, position: c.position, issuedAt: c.issuedAt}
	ts.status, ts.activeAt, ts.expiresAt = q.admission.StatusOf(q.policy, c.position, c.issuedAt, true, now)
	return ts, true
}

func (q *queueIndex) statusLocked(tokenID string, now time.Time) (ts tokenState, ok bool) {
	t, ok := q.tokens[tokenID]
	if !ok {
		return tokenState{}, false
	}
	revoked := t.revoked || t.superseded || q.latest[t.user] != t.id
	ts.rec = *t
	ts.status, ts.activeAt, ts.expiresAt = q.admission.StatusOf(q.policy, t.position, t.issuedAt, revoked, now)
	if ts.status == aggregates.TokenWaiting {
		ts.ahead = uint64(sort.Search(len(q.waiting), func(i int) bool { return q.waiting[i].position >= t.position }))
	}
	return ts, true
}

// nextWatermark returns the watermark that admits up to n more waiting tokens.
func (q *queueIndex) nextWatermark(n int) uint64 {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if len(q.waiting) == 0 || n <= 0 {
		return q.admission.Watermark()
	}
	return q.waiting[min(n, len(q.waiting))-1].position
}

// admittedSince counts the tokens admitted by advances after t.
func (q *queueIndex) admittedSince(t time.Time) int {
	q.mu.RLock()
	defer q.mu.RUnlock()
	n := 0
	for i := len(q.admitted) - 1; i >= 0 && q.admitted[i].At.After(t); i-- {
		n += q.admitted[i].Count
	}
	return n
}

// dropQueue is a min-heap of ended tokens by dropAt (then position, so that every instance
// drops ties in one order); each token is in it once, at its slot.
type dropQueue []*tokenRec

func (d dropQueue) Len() int { return len(d) }
func (d dropQueue) Less(i, j int) bool {
	if d[i].dropAt != d[j].dropAt {
		return d[i].dropAt < d[j].dropAt
	}
	return d[i].position < d[j].position
}
func (d dropQueue) Swap(i, j int) {
	d[i], d[j] = d[j], d[i]
	d[i].slot, d[j].slot = i, j
}
func (d *dropQueue) Push(x any) {
	t := x.(*tokenRec)
	t.slot = len(*d)
	*d = append(*d, t)
}
func (d *dropQueue) Pop() any {
	old := *d
	t := old[len(old)-1]
	old[len(old)-1] = nil
	*d = old[:len(old)-1]
	return t
}

// IssueToken puts the user in the waiting queue, or returns the user's token if it is still
// waiting or active (created == false). The position is made of the QUEUE sequence of the
// commit that holds the QueueTokenIssued event and the event's index in it (queuePosition),
// so positions increase strictly in arrival order across instances.
func (s *Service) IssueToken(ctx context.Context, meta Meta, userID string) (Token, bool, error) {
	if err := s.queueLoaded(); err != nil {
		return Token{}, false, err
	}
	if !aggregates.ValidID(userID) {
		return Token{}, false, fmt.Errorf("user %q: %w", userID, aggregates.ErrInvalid)
	}
	tokenID := newID()
	var existing string
	ver, evs, first, err := s.queueUsers.Do(ctx, userID, meta.step("token/"+tokenID), func(q aggregates.QueueUser) ([]aggregates.Event, error) {
		// A latest token the index dropped has ended: no status, which DecideIssue takes as
		// EXPIRED, as it took the EXPIRED the index said before dropping it.
		existing = q.TokenID()
		var indexTok string
		if existing == "" {
			// The group forgets a user some minutes after the latest token was issued, while it
			// may still wait or be active: the index, which applied that token long ago, knows.
			indexTok, _ = s.queue.latestOf(userID)
			existing = indexTok
		}
		cur, _ := s.queue.status(existing, s.clock.Now())
		// The token's claims carry its issue time in milliseconds: issuing at a whole
		// millisecond lets a token the index dropped answer from its claims the very times
		// the index gave.
		now := s.clock.Now().Truncate(time.Millisecond)
		return q.DecideIssue(aggregates.IssueToken{TokenID: tokenID, UserID: userID, Now: now, CurrentTokenID: indexTok, CurrentStatus: cur.status})
	})
	if errors.Is(err, aggregates.ErrTokenStillValid) {
		tok, err := s.tokenView(existing, s.clock.Now())
		return tok, false, err
	}
	if err != nil {
		return Token{}, false, fmt.Errorf("issue token for %s: %w", userID, err)
	}
	issued := evs[0].(aggregates.QueueTokenIssued)
	s.queue.applyEvent(issued, ver, first)
	if err := s.admit(ctx); err != nil {
		s.slog.Warn("queue admission failed; the next tick retries", "err", err)
	}
	tok, err := s.tokenView(tokenID, s.clock.Now())
	return tok, true, err
}

// admit lets waiting tokens in while the last --queue-interval admitted fewer than
// --queue-batch of them. Two instances admitting at once may together exceed the batch in
// one window; the gate's version keeps the watermark itself consistent.
func (s *Service) admit(ctx context.Context) error {
	if s.cfg.QueueBatch <= 0 {
		return nil
	}
	now := s.clock.Now()
	budget := s.cfg.QueueBatch - s.queue.admittedSince(now.Add(-s.cfg.QueueInterval))
	if budget <= 0 {
		return nil
	}
	wm := s.queue.nextWatermark(budget)
	// Every advance is a new decision on the watermark, never a repeat: no dedup ID.
	advance := step{meta: eventstore.Metadata{CorrelationID: "admission", CausationID: "admission"}}
	_, ver, evs, err := s.gate.Update(ctx, "main", advance, func(a aggregates.Admission) ([]aggregates.Event, error) {
		return a.DecideAdvance(aggregates.Advance{Watermark: wm, Now: now})
	})
	if err != nil {
		return fmt.Errorf("advance queue to %d: %w", wm, err)
	}
	for _, ev := range evs {
		s.queue.applyEvent(ev, ver, 0)
	}
	return nil
}

// TokenStatus returns a token's current state, EXPIRED included.
func (s *Service) TokenStatus(ctx context.Context, token string) (Token, error) {
	if err := s.queueLoaded(); err != nil {
		return Token{}, err
	}
	c, err := s.parseToken(token)
	if err != nil {
		return Token{}, err
	}
	ts, ok := s.queue.statusOf(c, s.clock.Now())
	return s.view(c.tokenID, ts, ok)
}

// CheckToken admits an ACTIVE token and returns its user.
func (s *Service) CheckToken(ctx context.Context, token string) (string, error) {
	if err := s.queueLoaded(); err != nil {
		return "", err
	}
	c, err := s.parseToken(token)
	if err != nil {
		return "", err
	}
	ts, ok := s.queue.statusOf(c, s.clock.Now())
	if (!ok || ts.status == aggregates.TokenWaiting) && s.queueShared.Load() {
		// Another instance may have issued or admitted it a moment ago, which this instance's
		// index has not applied yet: a client whose token another instance shows ACTIVE must
		// not be told it waits. Catch the index up with the stream's head and look again.
		if err := s.catchUpQueue(ctx); err != nil {
			return "", err
		}
		ts, ok = s.queue.statusOf(c, s.clock.Now())
	}
	if !ok {
		// Signed by us but in no index, and above the horizon of what the index dropped (a
		// dropped one reads EXPIRED above): judge it by its claims alone.
		var a aggregates.Admission
		ts.status, _, _ = a.StatusOf(s.queue.policy, c.position, c.issuedAt, false, s.clock.Now())
	}
	switch ts.status {
	case aggregates.TokenActive:
		return c.userID, nil
	case aggregates.TokenWaiting:
		return "", ErrTokenNotActive
	default:
		return "", ErrTokenExpired
	}
}

// catchUpQueue waits until this instance's queue index has applied the QUEUE stream up to the
// head it has now, for at most queueCatchUp.
func (s *Service) catchUpQueue(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, queueCatchUp)
	defer cancel()
	head, err := s.log.Head(ctx, eventstore.StreamsOf(eventstore.TypeQueueUser)[0])
	if err != nil {
		return fmt.Errorf("queue head: %w", err)
	}
	if err := s.queue.waitApplied(ctx, head); err != nil {
		return fmt.Errorf("waiting queue behind the log: %w: %w", eventstore.ErrUnavailable, err)
	}
	return nil
}

// queueCatchUp bounds how long a token check waits for the queue index to catch up with the
// log; the follower is milliseconds behind unless the store is in trouble.
const queueCatchUp = 2 * time.Second

// queueLoaded refuses queue commands while Start is still replaying the queue.
func (s *Service) queueLoaded() error {
	if s.queueLoading.Load() {
		return fmt.Errorf("waiting queue still loading: %w", eventstore.ErrUnavailable)
	}
	return nil
}

func (s *Service) revokeToken(ctx context.Context, meta Meta, userID, paymentID string) error {
	ver, evs, first, err := s.queueUsers.Do(ctx, userID, meta.step(paymentID+"/revoke"), func(q aggregates.QueueUser) ([]aggregates.Event, error) {
		tok := q.TokenID()
		if tok == "" {
			// Forgotten by the group (QueueUsers.Compact): the payer's token is the user's latest
			// in the index, unless the index has it revoked already or has dropped it as ended.
			if latest, revoked := s.queue.latestOf(userID); !revoked {
				tok = latest
			}
		}
		return q.DecideRevoke(aggregates.RevokeToken{TokenID: tok, Reason: "PAID", Now: s.clock.Now()})
	})
	if err != nil {
		return fmt.Errorf("revoke queue token of %s: %w", userID, err)
	}
	for i, ev := range evs {
		s.queue.applyEvent(ev, ver, first+i)
	}
	return nil
}

func (s *Service) tokenView(tokenID string, now time.Time) (Token, error) {
	ts, ok := s.queue.status(tokenID, now)
	return s.view(tokenID, ts, ok)
}

// view is a token's state as the service answers it; a token without one is invalid.
func (s *Service) view(tokenID string, ts tokenState, ok bool) (Token, error) {
	if !ok {
		return Token{}, fmt.Errorf("token %s: %w", tokenID, ErrTokenInvalid)
	}
	return Token{
		Token: s.signToken(ts.rec), UserID: ts.rec.user, Position: ts.rec.position, Status: string(ts.status), Ahead: ts.ahead,
		ActiveAt: timePtr(ts.activeAt), ExpiresAt: timePtr(ts.expiresAt),
	}, nil
}

type tokenClaims struct {
	tokenID, userID string
	position        uint64
	issuedAt        time.Time
}

// signToken returns "<payload>.<mac>", both base64url: the payload names the token, its user,
// position and issue time; the HMAC-SHA256 over it with the token secret makes it unforgeable.
func (s *Service) signToken(t tokenRec) string {
	payload := base64.RawURLEncoding.EncodeToString([]byte(strings.Join([]string{
		t.id, t.user, strconv.FormatUint(t.position, 10), strconv.FormatInt(t.issuedAt.UnixMilli(), 10),
	}, ".")))
	return payload + "." + base64.RawURLEncoding.EncodeToString(s.mac(payload))
}

func (s *Service) mac(payload string) []byte {
	// Every request with a token checks its MAC: a pooled HMAC saves the two hashes and the
	// key schedule that hmac.New makes each time.
	m, _ := s.tokenMACs.Get().(hash.Hash)
	if m == nil {
		m = hmac.New(sha256.New, s.cfg.TokenSecret)
	} else {
		m.Reset()
	}
	m.Write([]byte(payload))
	sum := m.Sum(nil)
	s.tokenMACs.Put(m)
	return sum
}

// errTokenMalformed is what parseToken answers for any token it cannot read or whose MAC does
// not match: made once, as the check runs on every request.
var errTokenMalformed = fmt.Errorf("queue token: %w", ErrTokenInvalid)

func (s *Service) parseToken(token string) (tokenClaims, error) {
	invalid := errTokenMalformed
	if len(token) > 512 {
		return tokenClaims{}, invalid
	}
	payload, sig, ok := strings.Cut(token, ".")
	if !ok {
		return tokenClaims{}, invalid
	}
	mac, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(mac, s.mac(payload)) {
		return tokenClaims{}, invalid
	}
	raw, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return tokenClaims{}, invalid
	}
	tokenID, rest, ok1 := strings.Cut(string(raw), ".")
	userID, rest, ok2 := strings.Cut(rest, ".")
	posText, msText, ok3 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || !ok3 || strings.Contains(msText, ".") {
		return tokenClaims{}, invalid
	}
	pos, err1 := strconv.ParseUint(posText, 10, 64)
	ms, err2 := strconv.ParseInt(msText, 10, 64)
	if err1 != nil || err2 != nil {
		return tokenClaims{}, invalid
	}
	return tokenClaims{tokenID: tokenID, userID: userID, position: pos, issuedAt: time.UnixMilli(ms).UTC()}, nil
}

// QueueStats are the waiting queue's counts, for metrics.
type QueueStats struct {
	Issued   int // tokens ever issued
	Waiting  int // tokens not yet admitted
	Admitted int // tokens admitted so far
}

// QueueStats returns the waiting queue's counts as this instance sees them.
func (s *Service) QueueStats() QueueStats {
	q := s.queue
	q.mu.RLock()
	defer q.mu.RUnlock()
	return QueueStats{Issued: q.counted + len(q.waiting), Waiting: len(q.waiting), Admitted: q.counted}
}
