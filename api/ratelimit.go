package api

import (
	"container/list"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxLimitedUsers bounds the limiter map. The least recently seen user is forgotten first;
// a forgotten user starts again with a full burst, which only matters for a user idle long
// enough for 100,000 others to arrive in between.
const maxLimitedUsers = 100_000

// userLimiter is a token bucket per user (rate per second, burst twice the rate), in a map
// bounded by LRU eviction. Time comes from the caller so that tests can drive it.
type userLimiter struct {
	limit rate.Limit
	burst int
	max   int

	mu    sync.Mutex
	users map[string]*list.Element // of *limitedUser
	lru   *list.List               // front: most recently seen
}

type limitedUser struct {
	id  string
	lim *rate.Limiter
}

func newUserLimiter(perSecond float64, maxUsers int) *userLimiter {
	burst := int(2 * perSecond)
	if burst < 1 {
		burst = 1
	}
	return &userLimiter{
		limit: rate.Limit(perSecond),
		burst: burst,
		max:   maxUsers,
		users: map[string]*list.Element{},
		lru:   list.New(),
	}
}

// allow takes one token of user's bucket at now. When the bucket is empty it takes nothing
// and says how long until a token is back.
func (l *userLimiter) allow(user string, now time.Time) (ok bool, retryAfter time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var lim *rate.Limiter
	if e, found := l.users[user]; found {
		l.lru.MoveToFront(e)
		lim = e.Value.(*limitedUser).lim
	} else {
		lim = rate.NewLimiter(l.limit, l.burst)
		l.users[user] = l.lru.PushFront(&limitedUser{id: user, lim: lim})
		for l.lru.Len() > l.max {
			oldest := l.lru.Back()
			l.lru.Remove(oldest)
			delete(l.users, oldest.Value.(*limitedUser).id)
		}
	}
	r := lim.ReserveN(now, 1)
	if !r.OK() { // cannot happen with burst >= 1
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// size reports how many users are tracked (tests).
func (l *userLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lru.Len()
}
