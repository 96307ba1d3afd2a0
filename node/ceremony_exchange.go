package node

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/zkbank/zkbank/p2p"
)

// The message exchange the key ceremony and the key resharing share: every
// message is one request on the protocol's stream, kind byte first; the
// receiving handler files it in an inbox and wakes whoever waits for it.

// inbox is the part of a ceremony's or a resharing's inbox both share: the
// messages themselves live in the embedding type's maps, guarded by mu;
// notify wakes a waiter when one arrives.
type inbox struct {
	mu     sync.Mutex
	notify chan struct{}
}

func newInbox() inbox { return inbox{notify: make(chan struct{}, 1)} }

func (in *inbox) poke() {
	select {
	case in.notify <- struct{}{}:
	default:
	}
}

// wait blocks until have() (called under mu) reports nothing missing, ctx
// ends, or (with a non-zero limit) limit passes. Its errors read
// "<label> <missing>", wrapping ctx.Err() when ctx ended.
func (in *inbox) wait(ctx context.Context, label string, limit time.Duration, have func() []int) error {
	var deadline <-chan time.Time
	if limit > 0 {
		deadline = time.After(limit)
	}
	for {
		in.mu.Lock()
		miss := have()
		in.mu.Unlock()
		if len(miss) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s %v: %w", label, miss, ctx.Err())
		case <-deadline:
			return fmt.Errorf("%s %v", label, miss)
		case <-in.notify:
		case <-time.After(time.Second):
		}
	}
}

// collect runs f under mu and returns its result.
func collect[T any](mu *sync.Mutex, f func() T) T {
	mu.Lock()
	defer mu.Unlock()
	return f()
}

// keepFirst files v as m[k] under mu unless m already holds a message
// there: the first message of each kind from each sender wins.
func keepFirst[V any](mu *sync.Mutex, m map[int]V, k int, v V) {
	mu.Lock()
	defer mu.Unlock()
	if _, ok := m[k]; !ok {
		m[k] = v
	}
}

// broadcast delivers one message of kind to every peer but peers[self], in
// parallel, and joins the errors (by position in peers).
func broadcast(ctx context.Context, host *p2p.Host, proto protocol.ID, peers []peer.ID, self int, kind byte, body []byte) error {
	var wg sync.WaitGroup
	errs := make([]error, len(peers))
	for j, id := range peers {
		if j == self {
			continue
		}
		wg.Add(1)
		go func(j int, id peer.ID) {
			defer wg.Done()
			errs[j] = requestRetryOn(ctx, host, proto, id, append([]byte{kind}, body...))
		}(j, id)
	}
	wg.Wait()
	return errors.Join(errs...)
}

// requestRetryOn delivers one message on proto, retrying while the peer is
// still starting up.
func requestRetryOn(ctx context.Context, host *p2p.Host, proto protocol.ID, to peer.ID, payload []byte) error {
	backoff := 200 * time.Millisecond
	for {
		c, cancel := context.WithTimeout(ctx, 2*time.Minute)
		_, err := host.Request(c, to, proto, payload)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(backoff):
		}
		if backoff < 5*time.Second {
			backoff *= 2
		}
	}
}

// peerFaults is a registry of fault injections for tests, keyed by the
// node's peer id. Nothing outside _test.go files registers any, so a
// shipped node never has one.
type peerFaults[T any] struct {
	mu     sync.Mutex
	byPeer map[peer.ID]*T
}

// set registers f for id; a nil f removes id's entry.
func (r *peerFaults[T]) set(id peer.ID, f *T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if f == nil {
		delete(r.byPeer, id)
		return
	}
	if r.byPeer == nil {
		r.byPeer = map[peer.ID]*T{}
	}
	r.byPeer[id] = f
}

// get returns id's fault injection, or nil.
func (r *peerFaults[T]) get(id peer.ID) *T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byPeer[id]
}
