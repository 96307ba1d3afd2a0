package chain

import (
	"testing"
	"time"

	"github.com/zkbank/zkbank/ledger"
)

// Attacks on a wallet's pipeline of operations found by review. Ordering a
// wallet's third payment in place of its first would get it rejected and
// the first two replayed (the whole pipeline thrown away), and its
// rejection would have decrypted the skipped amounts for anyone to read (rho
// is public). An operation names the one it was built on (Prev), and a block
// that orders one not built on its account's operation in the previous block
// (or its last accepted one) is invalid.
func TestAttack_ProposerSkippingAWalletsOperationsIsRefused(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	p1, p2, p3 := threePayments(n)
	n.step(1) // acks
	value := n.tamperedProposal(2, func(b *Block) {
		for i := range b.Subs {
			if b.Subs[i].Envelopes[0].ID() == idOf(p1) {
				b.Subs[i] = SubRef{CTHash: p3.Hash, Envelopes: p3.Envs}
			}
		}
	})
	n.assertRefused(n.height+1, value, "a block ordering a wallet's third payment first")
	for i, r := range n.runUntil([]*Upload{p1, p2, p3}, 16) {
		if r != ledger.Accepted {
			t.Fatalf("payment %d decided %v", i+1, r)
		}
	}
	n.settle()
	n.assertHolds("alice", 100-13-21-5, 0)
}

// A wallet submits an account's operations to one node. If that node relays
// the second payment but withholds the first, honest proposers never order
// the second before it: it waits, and both commit once the first arrives.
func TestAttack_WithheldPredecessorDoesNotBreakTheWalletsPipeline(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	p1 := n.transfer("alice", "bob", 13, 100) // withheld by alice's entry node
	p2 := n.transfer("alice", "bob", 21, 87)
	old := time.Unix(1700000000, 0).Add(-time.Minute) // the harness clock: p2 has waited long
	p2 = n.vals[0].open.NewUpload(p2.Raw, p2.Envs, old)
	n.submitAll([]*Upload{p2})
	for k := 0; k < 4; k++ {
		n.step(int(n.height+1) % len(n.vals))
	}
	if r, ok := n.verdict(0, p2); ok {
		t.Fatalf("the second payment was ordered before the first: %v", r)
	}
	n.submitAll([]*Upload{p1}) // the entry node finally relays p1
	for i, r := range n.runUntil([]*Upload{p1, p2}, 12) {
		if r != ledger.Accepted {
			t.Fatalf("payment %d decided %v", i+1, r)
		}
	}
}

// Two operations of one wallet naming the same Prev (here two forged
// overdrafts, each built on the balance as if the other had not been sent):
// the proposer orders the lower nonce first even when the higher one arrived
// first, so both are judged (ordering the higher first would have made the
// lower a replay, never ordered).
func TestTwoOperationsOnOnePrevAreOrderedByNonce(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	first := n.transfer("alice", "bob", 500, 500) // overdrafts: alice holds 100
	n.users["alice"].last = nil
	second := n.transfer("alice", "bob", 400, 400)
	early := time.Now().Add(-time.Minute)
	second = n.vals[0].open.NewUpload(second.Raw, second.Envs, early) // arrived first
	n.submitAll([]*Upload{second, first})
	for i, r := range n.runUntil([]*Upload{first, second}, 16) {
		if r == ledger.Accepted {
			t.Fatalf("overdraft %d accepted", i+1)
		}
	}
	n.settle()
	n.assertHolds("alice", 100, 0)
}

// A restarted validator computes the same expectedPrev as the others: a
// pipeline of three payments runs across restarts of two validators at
// different points and every book stays identical.
func TestRestartMidPipelineAgreesOnPrev(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	p1, p2, p3 := threePayments(n)
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
	value := n.tamperedProposal(2, func(bl *Block) {
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
	})
	blk, err := DecodeBlock(value)
	if err != nil || len(blk.Subs) != 2 {
		t.Fatalf("tampered proposal: %v, %d operations", err, len(blk.Subs))
	}
	n.assertRefused(n.height+1, value, "a block with two operations of one account")
}

// threePayments submits alice's pipeline of three payments to bob (13, 21
// and 5, each built on the one before), for 39 in all.
func threePayments(n *chainNet) (p1, p2, p3 *Upload) {
	p1 = n.transfer("alice", "bob", 13, 100)
	p2 = n.transfer("alice", "bob", 21, 87)
	p3 = n.transfer("alice", "bob", 5, 66)
	n.submitAll([]*Upload{p1, p2, p3})
	return p1, p2, p3
}
