package node

import (
	"github.com/zkbank/zkbank/ledger"
)

// ceremonyFaults is fault injection for tests of a byzantine ceremony
// party, keyed by the node's peer id (the ceremony does not know its home).
// Nothing outside _test.go files registers any, so a shipped node never has
// one.
type ceremonyFaults struct {
	// corruptDeal may replace each of this node's deals before it signs them.
	corruptDeal func(p *ledger.Params, d *ledger.ShamirDeal) *ledger.ShamirDeal
	// tamperCheck may alter this node's check message before it is sent.
	tamperCheck func(p *ledger.Params, c *ledger.CeremonyCheck)
}

var ceremonyFaultsByPeer peerFaults[ceremonyFaults]
