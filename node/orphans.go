package node

import (
	"sync"
	"time"

	"github.com/zkbank/zkbank/ledger"
)

// Orphans: uploads a peer relayed that are built on an operation this
// validator has not seen yet.
//
// A wallet pipelines its operations (each names the previous one as Prev)
// and sends them to one validator, which relays each to the others. Relays
// run concurrently, so a peer may receive an operation before its
// predecessor. Refusing it there (its Prev is unknown) loses it for good at
// that peer: with two such peers it never gathers the N-f acks a block
// needs, and the wallet waits for a verdict that never comes. So a relayed
// upload whose predecessor is unknown waits here, and is admitted as soon
// as its predecessor is (or, committed meanwhile, is the account's last
// operation). Only relayed uploads wait: a client is told at once
// (predecessor), as before.
//
// Bounds: an orphan's envelope is signed by its account (admission checked
// the signature before holding it), at most maxOrphansPerAccount wait per
// account and maxOrphans in all, and each waits at most orphanTTL.
type orphans struct {
	mu     sync.Mutex
	byPrev map[[32]byte][]orphan
	count  map[ledger.AccountID]int
	n      int
	now    func() time.Time
}

type orphan struct {
	id   [32]byte
	from ledger.AccountID
	prev [32]byte
	body []byte
	at   time.Time
}

const (
	maxOrphans = 1024
	orphanTTL  = time.Minute
)

// maxOrphansPerAccount: as many as one account may have waiting in the pool.
var maxOrphansPerAccount = maxPendingPerAccount

func newOrphans() *orphans {
	return &orphans{byPrev: map[[32]byte][]orphan{}, count: map[ledger.AccountID]int{}, now: time.Now}
}

// hold keeps a relayed upload until its predecessor prev is admitted. It
// reports false if the upload was not kept (already waiting, or a bound).
func (o *orphans) hold(e *ledger.Envelope, body []byte) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.expire()
	id := e.ID()
	for _, x := range o.byPrev[e.Prev] {
		if x.id == id {
			return false
		}
	}
	if o.n >= maxOrphans || o.count[e.From] >= maxOrphansPerAccount {
		return false
	}
	o.byPrev[e.Prev] = append(o.byPrev[e.Prev], orphan{id: id, from: e.From, prev: e.Prev, body: body, at: o.now()})
	o.count[e.From]++
	o.n++
	return true
}

// children removes and returns the uploads waiting for operation id.
func (o *orphans) children(id [32]byte) [][]byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	xs := o.byPrev[id]
	delete(o.byPrev, id)
	var out [][]byte
	for _, x := range xs {
		o.drop(x)
		out = append(out, x.body)
	}
	return out
}

// settled removes and returns the uploads whose predecessor is now their
// account's last accepted operation (lastOp), after a height committed it.
func (o *orphans) settled(lastOp func(ledger.AccountID) ([32]byte, bool)) [][]byte {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.expire()
	var out [][]byte
	o.remove(func(x orphan) bool {
		last, ok := lastOp(x.from)
		if ok && last == x.prev {
			out = append(out, x.body)
			return true
		}
		return false
	})
	return out
}

// len is the number of uploads waiting.
func (o *orphans) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.n
}

// expire drops orphans older than orphanTTL (under mu).
func (o *orphans) expire() {
	cut := o.now().Add(-orphanTTL)
	o.remove(func(x orphan) bool { return x.at.Before(cut) })
}

// remove drops every orphan for which gone is true (under mu).
func (o *orphans) remove(gone func(orphan) bool) {
	for prev, xs := range o.byPrev {
		keep := xs[:0]
		for _, x := range xs {
			if gone(x) {
				o.drop(x)
				continue
			}
			keep = append(keep, x)
		}
		if len(keep) == 0 {
			delete(o.byPrev, prev)
		} else {
			o.byPrev[prev] = keep
		}
	}
}

// drop updates the counts for a removed orphan (under mu).
func (o *orphans) drop(x orphan) {
	o.n--
	if o.count[x.from]--; o.count[x.from] <= 0 {
		delete(o.count, x.from)
	}
}
