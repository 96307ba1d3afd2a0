package node

import (
	"sync"
	"sync/atomic"

	"github.com/zkbank/zkbank/ledger"
)

// faults is fault injection for tests of byzantine and partitioned
// validators. Nothing outside _test.go files registers any, so a shipped
// node never has one.
type faults struct {
	corruptShares bool        // send well-formed but wrong decryption shares
	partitioned   atomic.Bool // drop every consensus message in and out
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

// corrupt turns shares into wrong ones: one coefficient is altered, so the
// share is still well-formed and correctly attributed but decrypts wrongly.
func corrupt(bs, es *ledger.DecShare) {
	bs.Share.Value.Coeffs[0][0] ^= 0x5a5a
	es.Share.Value.Coeffs[0][0] ^= 0x5a5a
}
