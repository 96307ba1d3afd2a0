package node

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// Spam control: accounts are free and uploads cost the sender nothing on
// chain, so what a client or peer may ask of a validator is rate limited
// where it arrives. golang.org/x/time/rate provides the token buckets (a
// well-kept library for a solved problem); this file only keys and bounds
// them.

// Limits of what one client (by IP) or peer may ask of a validator.
var (
	// Account openings: 1 every 2 s, bursts of 20, per client IP and per peer.
	openRate, openBurst = rate.Every(2 * time.Second), 20
	// A validator may ask this node for pieces of 200 uploads a second
	// (bursts of 1,000: a block's worth of bad boxes); a transfer's recovery
	// is attempted at most twice at once, then once every 2 s.
	pieceRequestRate, pieceRequestBurst = rate.Limit(200), 1000
	recoverRetry                        = rate.Every(2 * time.Second)
	// maxPendingPerAccount bounds the uploads one account may have waiting
	// in the mempool (an account debits at most once per block anyway).
	maxPendingPerAccount = 8
)

// limiter holds one token bucket per key (a client IP, a peer id). Buckets
// idle for longer than idle are dropped when the set grows past max, so a
// flood of new keys cannot grow it without bound: past max with nothing
// idle, the least recently seen bucket is dropped (refusing new keys
// instead would let a churn of fresh identities lock every newcomer out).
type limiter struct {
	mu      sync.Mutex
	every   rate.Limit
	burst   int
	max     int
	idle    time.Duration
	buckets map[string]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(every rate.Limit, burst int) *limiter {
	return &limiter{every: every, burst: burst, max: 1 << 14, idle: time.Minute, buckets: map[string]*bucket{}}
}

// allow takes one token from key's bucket.
func (l *limiter) allow(key string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= l.max {
			for k, old := range l.buckets {
				if now.Sub(old.seen) > l.idle {
					delete(l.buckets, k)
				}
			}
			if len(l.buckets) >= l.max {
				var lru string
				var oldest time.Time
				for k, old := range l.buckets {
					if lru == "" || old.seen.Before(oldest) {
						lru, oldest = k, old.seen
					}
				}
				delete(l.buckets, lru)
			}
		}
		b = &bucket{lim: rate.NewLimiter(l.every, l.burst)}
		l.buckets[key] = b
	}
	b.seen = now
	return b.lim.AllowN(now, 1)
}
