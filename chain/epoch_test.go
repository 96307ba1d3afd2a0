package chain

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/zkbank/zkbank/consensus"
	"github.com/zkbank/zkbank/ledger"
)

// epochNet is a chain whose validators take one change: the bytes good
// (standing for a change a quorum signed; genesis.Change.Verify is tested
// in package genesis).
func epochNet(t *testing.T) (*chainNet, []byte) {
	n := newChainNet(t)
	return n, takeChanges(n)
}

// takeChanges makes n's validators take one change and returns its bytes.
func takeChanges(n *chainNet) []byte {
	good := []byte(`{"epoch":1,"signed":"by a quorum"}`)
	verify := func(raw []byte) error {
		if !bytes.Equal(raw, good) {
			return errors.New("not signed by a quorum of the committee")
		}
		return nil
	}
	for _, v := range n.vals {
		v.app.verifyChange, v.cfg.VerifyChange = verify, verify
	}
	return good
}

// A committed change makes the next two heights quiet and ends the
// committee's epoch at the third: the transfer in the change's own block is
// decided by the last quiet height, a transfer proposed in a quiet height is
// refused, and no block of the next epoch can be built or accepted by the
// old committee. A restarted validator resumes with the pending change.
func TestEpoch_ChangeOpensTwoQuietHeightsThenEndsTheEpoch(t *testing.T) {
	n, good := epochNet(t)
	n.step(0)
	u := n.transfer("alice", "bob", 10, 100)
	n.submit(u)
	n.step(1) // acked
	n.vals[2].app.proposeChange = func() []byte { return good }
	value := n.step(2)
	n.vals[2].app.proposeChange = nil
	b, err := DecodeBlock(value)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b.SetChange, good) || len(b.Subs) != 1 {
		t.Fatalf("the change's block carries change %q and %d transfers", b.SetChange, len(b.Subs))
	}
	carrier := n.height
	for i, v := range n.vals {
		p := v.app.Pending()
		if p == nil || p.Start != carrier+SwitchDelay || p.Height != carrier || !bytes.Equal(p.Raw, good) {
			t.Fatalf("validator %d: pending %+v after height %d", i, p, carrier)
		}
	}

	// Quiet: a waiting transfer is not proposed; one slipped in is refused.
	w := n.transfer("carol", "bob", 5, 50)
	n.submit(w)
	quiet, err := DecodeBlock(n.propose(3))
	if err != nil {
		t.Fatal(err)
	}
	if len(quiet.Subs) != 0 || len(quiet.Opens) != 0 || quiet.SetChange != nil {
		t.Fatalf("a quiet height's proposal carries %d transfers", len(quiet.Subs))
	}
	withSub := *quiet
	withSub.Subs = []SubRef{{CTHash: w.Hash, Envelopes: w.Envs}}
	n.assertRefused(carrier+1, withSub.Encode(), "a transfer in a quiet height")
	withChange := *quiet
	withChange.SetChange = good
	n.assertRefused(carrier+1, withChange.Encode(), "a second change while one is pending")
	n.step(3)
	n.step(0)
	if v := n.vals[1].obs.views[len(n.vals[1].obs.views)-1]; len(v.Outcomes) != 1 || v.Outcomes[0].ID != idOf(u) || v.Outcomes[0].Reason != ledger.Accepted {
		t.Fatalf("the change block's transfer is not decided by the last quiet height: %+v", v.Outcomes)
	}

	// The epoch has ended: nothing at the new committee's first height.
	start := carrier + SwitchDelay
	if n.height != start-1 {
		t.Fatalf("at height %d, the epoch ends at %d", n.height, start-1)
	}
	for i, v := range n.vals {
		if _, err := v.app.BuildProposal(start, n.last); !errors.Is(err, ErrEpochEnded) {
			t.Fatalf("validator %d builds height %d of the next epoch: %v", i, start, err)
		}
		if err := v.app.ValidateProposal(start, (&Block{Height: start, LastCommit: n.carried()}).Encode()); !errors.Is(err, ErrEpochEnded) {
			t.Fatalf("validator %d accepts height %d of the next epoch: %v", i, start, err)
		}
	}
	app := n.restart(3)
	if p := app.Pending(); p == nil || p.Start != start {
		t.Fatalf("restarted validator: pending %+v", p)
	}
	if v := app.View(); v.Pending == nil || v.Height+1 != v.Pending.Start {
		t.Fatal("the restarted validator's view does not say its epoch ends")
	}
}

// A byzantine proposer cannot slip a change the committee did not sign into
// a block, nor put one on a chain that takes none.
func TestAttack_ProposerCannotSlipAForgedChangeIntoABlock(t *testing.T) {
	n, _ := epochNet(t)
	n.step(0)
	n.vals[1].app.faults.TamperProposal = func(b *Block) { b.SetChange = []byte(`{"epoch":1,"signed":"by the proposer alone"}`) }
	value := n.propose(1)
	n.vals[1].app.faults.TamperProposal = nil
	for i := range n.vals {
		if i == 1 {
			continue
		}
		if err := n.vals[i].app.ValidateProposal(n.height+1, value); !errors.Is(err, ErrBlock) {
			t.Fatalf("validator %d accepts a forged change: %v", i, err)
		}
	}
	plain := newChainNet(t) // VerifyChange nil
	plain.step(0)
	b := &Block{Height: 2, LastCommit: plain.carried(), SetChange: []byte(`{}`)}
	plain.assertRefused(2, b.Encode(), "a change on a chain that takes none")
	n.step(2)
	if n.vals[0].app.Pending() != nil {
		t.Fatal("a change is pending after the forged block was refused")
	}
}

// The first block of a new epoch carries the previous committee's
// precommits (checked against that committee) and no transfer: its acks are
// the previous committee's.
func TestEpoch_FirstBlockOfAnEpochCarriesNoTransfer(t *testing.T) {
	n, good := epochNet(t)
	n.step(0)
	n.vals[0].app.proposeChange = func() []byte { return good }
	n.step(0)
	n.vals[0].app.proposeChange = nil
	n.step(1)
	lastValue := n.step(2)
	start := n.height + 1
	// The node restarts every validator into the new epoch (here: the same
	// committee, as a change that keeps every member would).
	for i, v := range n.vals {
		v.cfg.EpochStart, v.cfg.PrevValidators = start, n.c.vals
		app := n.restart(i)
		if app.Pending() != nil {
			t.Fatalf("validator %d: the change is still pending in its own epoch", i)
		}
	}
	u := n.transfer("alice", "bob", 10, 100)
	n.submit(u)
	first, err := DecodeBlock(n.propose(1))
	if err != nil {
		t.Fatal(err)
	}
	if len(first.Subs) != 0 || len(first.LastCommit) == 0 {
		t.Fatalf("the epoch's first block carries %d transfers and %d precommits", len(first.Subs), len(first.LastCommit))
	}
	withSub := *first
	withSub.Subs = []SubRef{{CTHash: u.Hash, Envelopes: u.Envs}}
	n.assertRefused(start, withSub.Encode(), "a transfer in an epoch's first block")
	// No attestation for the previous committee's last block: a validator
	// does not make one, and a proposer cannot carry one (validly signed by
	// that committee's member 3, here).
	if _, err := n.vals[3].app.ExtendVote(start-1, n.last.Round, lastValue); !errors.Is(err, ErrEpochEnded) || !errors.Is(err, consensus.ErrNoAttestation) {
		t.Fatalf("attesting the previous committee's last block: %v", err)
	}
	att := &consensus.Vote{Type: consensus.Attestation, Height: start - 1, Round: consensus.AttestationRound, BlockID: consensus.HashValue(lastValue), Validator: 3, Extension: first.LastCommit[3].Ext}
	consensus.SignVote(testChain, n.c.signers[3], att)
	withAtt := *first
	withAtt.LastCommit = slices.Clone(first.LastCommit)
	withAtt.LastCommit[3] = Precommit{Validator: 3, Round: consensus.AttestationRound, Ext: att.Extension, Signature: att.Signature, Attested: true}
	for i, v := range n.vals {
		if err := v.app.ValidateProposal(start, withAtt.Encode()); !errors.Is(err, ErrBlock) || !strings.Contains(err.Error(), "no attestation") {
			t.Fatalf("validator %d: an attestation in an epoch's first block: %v", i, err)
		}
	}
	out := n.settle()
	if out[idOf(u)] != ledger.Accepted {
		t.Fatalf("a transfer after the switch: %v", out[idOf(u)])
	}
}
