package chain

import (
	"crypto/rand"
	"testing"

	"github.com/zkbank/zkbank/ledger"
)

// badBox re-seals u with validator v's box replaced by garbage and re-signs
// the envelope (the dealer is the sender: it can do this to its own upload).
func (n *chainNet) badBox(u *Upload, name string, v int) *Upload {
	n.t.Helper()
	var st ledger.SealedTransfer
	if err := st.UnmarshalBinary(u.Raw); err != nil {
		n.t.Fatal(err)
	}
	st.Boxes[v] = make([]byte, len(st.Boxes[v]))
	rand.Read(st.Boxes[v])
	raw, _ := st.MarshalBinary()
	return n.resign(raw, u.Envs[0], name, false)
}

// A lone client with two accounts in one shard seals a bad box to validator
// 0 in one upload and to validator 1 in the other. Both are acked by three
// validators and ordered. Had the shard's transfers been encrypted as one
// batch, validators 0 and 1 would both have abstained on it and one piece
// would have had a single holder: the whole shard failed closed, every
// block, for free. Grouped by ack set, each upload is a group of its own,
// decided by its three holders; the honest transfer beside them commits.
func TestAttack_BadBoxesToTwoValidatorsSpoilOnlyTheDealersGroup(t *testing.T) {
	t.Parallel()
	n := newChainNetGenesis(t, testCommittee(t), []genesisUser{{"alice", 100}, {"bob", 0}, {"carol", 50}, {"mallory", 40}, {"trudy", 40}})
	n.step(0)
	honest := n.transfer("alice", "bob", 30, 100)
	m1 := n.badBox(n.transfer("mallory", "bob", 5, 40), "mallory", 0)
	m2 := n.badBox(n.transfer("trudy", "bob", 7, 40), "trudy", 1)
	n.submitAll([]*Upload{honest, m1, m2})
	got := n.settle()
	for name, u := range map[string]*Upload{"honest": honest, "mallory": m1, "trudy": m2} {
		if got[idOf(u)] != ledger.Accepted {
			t.Fatalf("%s's transfer decided %v", name, got[idOf(u)])
		}
	}
	n.assertNobodyNamed()
	n.assertBalances(map[string]uint64{"alice": 70, "bob": 42, "carol": 50, "mallory": 35, "trudy": 33})
	n.assertBooksIdentical()
}

// An account opening's signature names no height, so anyone can replay it.
// A block that opens an account that exists, or one account twice, is
// invalid (a restarted validator lays the previous block out without the
// accounts the last block opened, which must be exactly the new ones), and
// an honest proposer never proposes one.
func TestAttack_ReplayedAccountOpeningIsRefused(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	o := newOpen(t, n, true)
	for _, v := range n.vals {
		v.mem.opens[string(o.SignPub)] = o
	}
	if b, _ := DecodeBlock(n.step(0)); len(b.Opens) != 1 {
		t.Fatalf("block 1 opens %d accounts, want 1", len(b.Opens))
	}
	// The replay, back in a pool after the account opened.
	for _, v := range n.vals {
		v.mem.opens[string(o.SignPub)] = o
	}
	if b, _ := DecodeBlock(n.propose(1)); len(b.Opens) != 0 {
		t.Fatalf("an honest proposer proposed a replayed opening: %d opens", len(b.Opens))
	}
	for name, tamper := range map[string]func(b *Block){
		"replayed": func(b *Block) { b.Opens = append(b.Opens, o) },
		"twice": func(b *Block) {
			o2 := newOpen(t, n, true)
			b.Opens = append(b.Opens, o2, o2)
		},
	} {
		n.vals[1].app.faults.TamperProposal = tamper
		value := n.propose(1)
		n.vals[1].app.faults.TamperProposal = nil
		n.assertRefused(n.height+1, value, name)
	}
}

// A proposer referencing an acked upload under an envelope whose signature
// does not verify (same transfer id: the id does not cover the signature)
// makes its block invalid, rather than getting the genuine transfer
// rejected as badly signed and evicted from every pool.
func TestAttack_ForgedSignatureOnAnAckedTransferIsRefused(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	u := n.transfer("alice", "bob", 30, 100)
	n.submit(u)
	n.step(1) // acks
	n.vals[2].app.faults.TamperProposal = func(b *Block) {
		for i := range b.Subs {
			// A copy: the block shares its envelopes with the pool's upload.
			b.Subs[i].Envelopes = append([]ledger.Envelope(nil), b.Subs[i].Envelopes...)
			env := &b.Subs[i].Envelopes[0]
			env.Sig = append([]byte(nil), env.Sig...)
			env.Sig[0] ^= 1
		}
	}
	value := n.propose(2)
	n.vals[2].app.faults.TamperProposal = nil
	if b, _ := DecodeBlock(value); len(b.Subs) != 1 {
		t.Fatalf("the proposal orders %d uploads, want 1", len(b.Subs))
	}
	n.assertRefused(n.height+1, value, "a forged signature")
	if got := n.settle(); got[idOf(u)] != ledger.Accepted {
		t.Fatalf("the genuine transfer decided %v", got[idOf(u)])
	}
}

// A byzantine validator that withholds its acks and its piece attestations
// (as if no box ever opened for it) leaves an honest transfer in a group not
// acked by everyone. A proposer that then carries a quorum without one of
// the honest holders (late, or left out on purpose) must not get that
// transfer failed closed: the missing holder acked the group and may decide
// the piece, so the block is refused, and the next proposal, carrying every
// precommit, decides it.
func TestAttack_WithheldAckCannotGetAnHonestTransferFailedClosed(t *testing.T) {
	t.Parallel()
	n := newChainNet(t, Faults{}, Faults{}, Faults{}, Faults{WithholdWork: true})
	n.step(0)
	u := n.transfer("alice", "bob", 30, 100)
	n.submit(u)
	n.step(1) // acks from 0, 1, 2
	if b, _ := DecodeBlock(n.step(2)); len(b.Subs) != 1 {
		t.Fatalf("block 3 orders %d uploads, want 1", len(b.Subs))
	}
	short := &Block{Height: n.height + 1, LastCommit: n.carried(0, 1, 3)}
	n.assertRefused(n.height+1, short.Encode(), "a quorum missing an acking holder")
	if got := n.settle(); got[idOf(u)] != ledger.Accepted {
		t.Fatalf("the honest transfer decided %v", got[idOf(u)])
	}
	n.assertBalances(map[string]uint64{"alice": 70, "bob": 30, "carol": 50})
}
