package app

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/booking-engine/booking/aggregates"
	"github.com/booking-engine/booking/eventstore"
)

// queueIndex is the in-memory view of the waiting queue: every token with its position, the
// latest token of each user, and the admission history. It is fed by a follow-mode replay of
// the QUEUE stream (so every instance sees every token) and, for read-your-writes, by this
// process's own appends as they happen; applying an event twice changes nothing.
type queueIndex struct {
	policy aggregates.QueuePolicy

	mu        sync.RWMutex
	tokens    map[string]*tokenRec
	latest    map[string]string // user → latest token ID
	positions []uint64          // positions of all tokens, ascending
	admission aggregates.Admission
	admitted  []admittedStep // how many tokens each advance admitted, for the rate window
	// seq and eventID are the last QUEUE event the follower applied in order; everything up to
	// it is in the index (own appends may have put later events in too). See queuesnapshot.go.
	seq     uint64
	eventID string
	moved   chan struct{} // closed when seq moves, for waitApplied; nil while nobody waits
}

type tokenRec struct {
	id, user string
	position uint64
	issuedAt time.Time
	revoked  bool
}

type admittedStep struct {
	At    time.Time // exported for the snapshot's encoding
	Count int
}

func newQueueIndex(p aggregates.QueuePolicy) *queueIndex {
	return &queueIndex{policy: p, tokens: map[string]*tokenRec{}, latest: map[string]string{}}
}

func (q *queueIndex) apply(env eventstore.Envelope) {
	ev, err := aggregates.Decode(env.Type, env.Data)
	if err != nil {
		return
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	switch e := ev.(type) {
	case aggregates.QueueTokenIssued:
		q.issued(e, env.Sequence)
	case aggregates.QueueTokenRevoked:
		if t, ok := q.tokens[e.TokenID]; ok {
			t.revoked = true
		}
	case aggregates.QueueAdvanced:
		q.advanced(e)
	}
}

func (q *queueIndex) issued(e aggregates.QueueTokenIssued, position uint64) {
	if _, ok := q.tokens[e.TokenID]; ok {
		return
	}
	q.tokens[e.TokenID] = &tokenRec{id: e.TokenID, user: e.UserID, position: position, issuedAt: e.IssuedAt}
	if cur, ok := q.tokens[q.latest[e.UserID]]; !ok || cur.position < position {
		q.latest[e.UserID] = e.TokenID
	}
	i := sort.Search(len(q.positions), func(i int) bool { return q.positions[i] >= position })
	q.positions = append(q.positions, 0)
	copy(q.positions[i+1:], q.positions[i:])
	q.positions[i] = position
}

func (q *queueIndex) advanced(e aggregates.QueueAdvanced) {
	before := q.admission.Watermark()
	if e.Watermark <= before {
		return
	}
	q.admission = q.admission.Apply(e)
	q.admitted = append(q.admitted, admittedStep{At: e.At, Count: q.countBetween(before, e.Watermark)})
}

// countBetween counts tokens with a position in (lo, hi].
func (q *queueIndex) countBetween(lo, hi uint64) int {
	i := sort.Search(len(q.positions), func(i int) bool { return q.positions[i] > lo })
	j := sort.Search(len(q.positions), func(i int) bool { return q.positions[i] > hi })
	return j - i
}

// status returns a token's state at now; ok is false for a token the index does not know.
func (q *queueIndex) status(tokenID string, now time.Time) (rec tokenRec, st aggregates.TokenStatus, activeAt, expiresAt time.Time, ahead uint64, ok bool) {
	q.mu.RLock()
	defer q.mu.RUnlock()
	t, ok := q.tokens[tokenID]
	if !ok {
		return tokenRec{}, "", time.Time{}, time.Time{}, 0, false
	}
	revoked := t.revoked || q.latest[t.user] != t.id // a newer token supersedes this one
	st, activeAt, expiresAt = q.admission.StatusOf(q.policy, t.position, t.issuedAt, revoked, now)
	if st == aggregates.TokenWaiting {
		ahead = uint64(q.countBetween(q.admission.Watermark(), t.position) - 1)
	}
	return *t, st, activeAt, expiresAt, ahead, true
}

// nextWatermark returns the watermark that admits up to n more waiting tokens.
func (q *queueIndex) nextWatermark(n int) uint64 {
	q.mu.RLock()
	defer q.mu.RUnlock()
	wm := q.admission.Watermark()
	i := sort.Search(len(q.positions), func(i int) bool { return q.positions[i] > wm })
	if i == len(q.positions) || n <= 0 {
		return wm
	}
	j := i + n - 1
	if j >= len(q.positions) {
		j = len(q.positions) - 1
	}
	return q.positions[j]
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

// IssueToken puts the user in the waiting queue, or returns the user's token if it is still
// waiting or active (created == false). The position is the stream sequence of the
// QueueTokenIssued event, so positions increase strictly in arrival order across instances.
func (s *Service) IssueToken(ctx context.Context, meta Meta, userID string) (Token, bool, error) {
	if err := s.queueLoaded(); err != nil {
		return Token{}, false, err
	}
	if !aggregates.ValidID(userID) {
		return Token{}, false, fmt.Errorf("user %q: %w", userID, aggregates.ErrInvalid)
	}
	tokenID := newID()
	var existing string
	_, pos, evs, err := s.queueUsers.Update(ctx, userID, meta.step("token/"+tokenID), func(q aggregates.QueueUser) ([]aggregates.Event, error) {
		_, st, _, _, _, _ := s.queue.status(q.TokenID(), s.clock.Now())
		existing = q.TokenID()
		return q.DecideIssue(aggregates.IssueToken{TokenID: tokenID, UserID: userID, Now: s.clock.Now(), CurrentStatus: st})
	})
	if errors.Is(err, aggregates.ErrTokenStillValid) {
		tok, err := s.tokenView(existing, s.clock.Now())
		return tok, false, err
	}
	if err != nil {
		return Token{}, false, fmt.Errorf("issue token for %s: %w", userID, err)
	}
	issued := evs[0].(aggregates.QueueTokenIssued)
	s.queue.apply(envelopeOf(issued, pos))
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
		s.queue.apply(envelopeOf(ev, ver))
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
	return s.tokenView(c.tokenID, s.clock.Now())
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
	_, st, _, _, _, ok := s.queue.status(c.tokenID, s.clock.Now())
	if (!ok || st == aggregates.TokenWaiting) && s.queueShared.Load() {
		// Another instance may have issued or admitted it a moment ago, which this instance's
		// index has not applied yet: a client whose token another instance shows ACTIVE must
		// not be told it waits. Catch the index up with the stream's head and look again.
		if err := s.catchUpQueue(ctx); err != nil {
			return "", err
		}
		_, st, _, _, _, ok = s.queue.status(c.tokenID, s.clock.Now())
	}
	if !ok {
		// Signed by us but in no index: judge it by its claims alone.
		var a aggregates.Admission
		st, _, _ = a.StatusOf(s.queue.policy, c.position, c.issuedAt, false, s.clock.Now())
	}
	switch st {
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
	_, ver, evs, err := s.queueUsers.Update(ctx, userID, meta.step(paymentID+"/revoke"), func(q aggregates.QueueUser) ([]aggregates.Event, error) {
		return q.DecideRevoke(aggregates.RevokeToken{TokenID: q.TokenID(), Reason: "PAID", Now: s.clock.Now()})
	})
	if err != nil {
		return fmt.Errorf("revoke queue token of %s: %w", userID, err)
	}
	for _, ev := range evs {
		s.queue.apply(envelopeOf(ev, ver))
	}
	return nil
}

func (s *Service) tokenView(tokenID string, now time.Time) (Token, error) {
	rec, st, activeAt, expiresAt, ahead, ok := s.queue.status(tokenID, now)
	if !ok {
		return Token{}, fmt.Errorf("token %s: %w", tokenID, ErrTokenInvalid)
	}
	return Token{
		Token: s.signToken(rec), UserID: rec.user, Position: rec.position, Status: string(st), Ahead: ahead,
		ActiveAt: timePtr(activeAt), ExpiresAt: timePtr(expiresAt),
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
	m := hmac.New(sha256.New, s.cfg.TokenSecret)
	m.Write([]byte(payload))
	return m.Sum(nil)
}

func (s *Service) parseToken(token string) (tokenClaims, error) {
	invalid := fmt.Errorf("queue token: %w", ErrTokenInvalid)
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
	parts := strings.Split(string(raw), ".")
	if len(parts) != 4 {
		return tokenClaims{}, invalid
	}
	pos, err1 := strconv.ParseUint(parts[2], 10, 64)
	ms, err2 := strconv.ParseInt(parts[3], 10, 64)
	if err1 != nil || err2 != nil {
		return tokenClaims{}, invalid
	}
	return tokenClaims{tokenID: parts[0], userID: parts[1], position: pos, issuedAt: time.UnixMilli(ms).UTC()}, nil
}

// envelopeOf wraps an event this process just appended, for the in-memory indexes.
func envelopeOf(ev aggregates.Event, seq uint64) eventstore.Envelope {
	data, _ := aggregates.Encode(ev)
	return eventstore.Envelope{Type: ev.EventType(), Data: data, Sequence: seq}
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
	wm := q.admission.Watermark()
	waiting := len(q.positions) - q.countBetween(0, wm)
	if q.policy.AdmitAll {
		waiting = 0
	}
	return QueueStats{Issued: len(q.positions), Waiting: waiting, Admitted: len(q.positions) - waiting}
}
