package node

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zkbank/zkbank/chain"
)

// faults is fault injection for tests of byzantine and partitioned
// validators. Nothing outside _test.go files registers any, so a shipped
// node never has one.
type faults struct {
	corruptShares bool        // send well-formed but wrong decryption shares
	partitioned   atomic.Bool // drop every consensus message in and out
	noRelay       atomic.Bool // keep client uploads to itself (peers must fetch them)
	forgeCarried  bool        // as proposer, alter one carried extension (a forged verdict)
	holdRelays    atomic.Bool // queue relays of client uploads until releaseReversed
	// delayProposals holds every proposal received for this long before
	// the machine sees it: a validator on a slow link, which precommits nil
	// while the others decide without it.
	delayProposals time.Duration
	// failFinalizeAt makes Finalize of the first height at or above it
	// fail, once (a failing disk write).
	failFinalizeAt uint64
	finalizeFailed atomic.Bool

	heldMu sync.Mutex
	held   []func()
}

// holding queues relay while holdRelays is set, and reports whether it did.
func (f *faults) holding(relay func()) bool {
	if f == nil || !f.holdRelays.Load() {
		return false
	}
	f.heldMu.Lock()
	defer f.heldMu.Unlock()
	f.held = append(f.held, relay)
	return true
}

// releaseReversed stops holding and runs the held relays newest first, as
// concurrent sends may deliver them. Sends are asynchronous, so each waits
// a second after the one before it, long enough to be delivered first.
func (f *faults) releaseReversed() {
	f.holdRelays.Store(false)
	f.heldMu.Lock()
	held := f.held
	f.held = nil
	f.heldMu.Unlock()
	for i := len(held) - 1; i >= 0; i-- {
		held[i]()
		if i > 0 {
			time.Sleep(time.Second)
		}
	}
}

var (
	faultsMu     sync.Mutex
	faultsByHome = map[string]*faults{}
)

func faultsFor(home string) *faults {
	faultsMu.Lock()
	defer faultsMu.Unlock()
	return faultsByHome[home]
}

// chain is the part of the faults the chain application injects.
func (f *faults) chain() chain.Faults {
	if f == nil {
		return chain.Faults{}
	}
	c := chain.Faults{CorruptShares: f.corruptShares}
	if f.failFinalizeAt > 0 {
		c.FailFinalize = func(h uint64) error {
			if h >= f.failFinalizeAt && f.finalizeFailed.CompareAndSwap(false, true) {
				return fmt.Errorf("injected: writing height %d failed", h)
			}
			return nil
		}
	}
	if f.forgeCarried {
		c.TamperProposal = func(b *chain.Block) {
			if len(b.LastCommit) > 0 {
				x := &b.LastCommit[0]
				x.Ext = append([]byte(nil), x.Ext...)
				x.Ext[len(x.Ext)-1] ^= 1 // a share byte: well formed, not what was signed
			}
		}
	}
	return c
}

func (f *faults) isPartitioned() bool { return f != nil && f.partitioned.Load() }

func (f *faults) relays() bool { return f == nil || !f.noRelay.Load() }
