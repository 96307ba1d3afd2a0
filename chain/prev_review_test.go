package chain

import (
	"testing"

	"github.com/zkbank/zkbank/ledger"
)

// A restarted validator computes the same expectedPrev as the others: a
// pipeline of three payments runs across restarts of two validators at
// different points and every book stays identical.
func TestRestartMidPipelineAgreesOnPrev(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	p1 := n.transfer("alice", "bob", 13, 100)
	p2 := n.transfer("alice", "bob", 21, 87)
	p3 := n.transfer("alice", "bob", 5, 66)
	n.submitAll([]*Upload{p1, p2, p3})
	n.step(1)
	n.step(2) // p1 ordered
	n.restart(1)
	n.step(3) // p2 ordered: proposer, restarted 1 must agree
	n.restart(2)
	n.restart(1)
	for i, r := range n.runUntil([]*Upload{p1, p2, p3}, 16) {
		if r != ledger.Accepted {
			t.Fatalf("payment %d decided %v", i+1, r)
		}
	}
	n.settle()
	n.assertBooksIdentical()
	n.assertHolds("alice", 100-13-21-5, 0)
}

// A byzantine proposer orders two operations of one wallet built on the
// same Prev (a wallet that rebuilt an operation it thought lost): only one
// can execute, and the next block must be built on the one that did, so a
// block holding two operations of one account is invalid.
func TestAttack_TwoOperationsOfOneAccountInABlockAreRefused(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	a1 := n.transfer("alice", "bob", 13, 100)
	n.users["alice"].last = nil // the wallet rebuilds from the last accepted one
	a2 := n.transfer("alice", "bob", 7, 100)
	n.submitAll([]*Upload{a1, a2})
	n.step(1) // acks
	n.syncPieces(2)
	n.vals[2].app.faults.TamperProposal = func(bl *Block) {
		for _, s := range bl.Subs {
			if id := s.Envelopes[0].ID(); id == idOf(a1) || id == idOf(a2) {
				other := a2
				if id == idOf(a2) {
					other = a1
				}
				bl.Subs = append(bl.Subs, SubRef{CTHash: other.Hash, Envelopes: other.Envs})
				return
			}
		}
	}
	value, err := n.vals[2].app.BuildProposal(n.height+1, n.last)
	n.vals[2].app.faults.TamperProposal = nil
	if err != nil {
		t.Fatal(err)
	}
	blk, err := DecodeBlock(value)
	if err != nil || len(blk.Subs) != 2 {
		t.Fatalf("tampered proposal: %v, %d operations", err, len(blk.Subs))
	}
	n.assertRefused(n.height+1, value, "a block with two operations of one account")
}
