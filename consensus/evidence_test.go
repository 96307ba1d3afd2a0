package consensus

import (
	"errors"
	"testing"
)

func TestDuplicateVoteIsIgnored(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	v := h.vote(Prevote, 0, 0, nil)
	h.mustStep(v)
	h.mustStep(v)
	h.mustStep(h.vote(Prevote, 0, 0, nil)) // same content, re-signed: identical
	h.mustStep(h.vote(Prevote, 1, 0, nil))
	if h.timer(TimeoutPrevote, 0) {
		t.Fatal("a repeated vote counted twice")
	}
	if len(h.m.Evidence()) != 0 {
		t.Fatal("evidence for a duplicate")
	}
}

func TestEquivocatingVotesAreEvidence(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.mustStep(h.vote(Prevote, 1, 0, valX))
	h.mustStep(h.vote(Prevote, 1, 0, valY))
	h.mustStep(h.vote(Prevote, 1, 0, nil)) // a third: evidence kept once
	ev := h.m.Evidence()
	if len(ev) != 1 || ev[0].Kind != DuplicateVote || ev[0].Validator != 1 || ev[0].VoteType != Prevote {
		t.Fatalf("evidence %v", ev)
	}
	if err := ev[0].Verify(testChain, h.vals); err != nil {
		t.Fatal(err)
	}
	bad := ev[0]
	bad.VoteB = bad.VoteA
	if err := bad.Verify(testChain, h.vals); !errors.Is(err, ErrInvalidEvidence) {
		t.Fatalf("identical votes verified as evidence: %v", err)
	}
}

// Two attestations of different blocks at one height are not equivocation
// evidence (an attestation is not a vote): Verify refuses them, signed as
// they are.
func TestAttestationsAreNotEquivocationEvidence(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	e := Evidence{Kind: DuplicateVote, Validator: 1, Height: 1, VoteType: Attestation,
		VoteA: h.attestation(1, 1, AttestationRound, valX), VoteB: h.attestation(1, 1, AttestationRound, valY)}
	if err := e.Verify(testChain, h.vals); !errors.Is(err, ErrInvalidEvidence) {
		t.Fatalf("two attestations verified as evidence: %v", err)
	}
}

func TestEquivocatingProposerIsEvidence(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.mustStep(h.proposal(0, 0, NoRound, valX))
	h.mustStep(h.proposal(0, 0, NoRound, valY))
	ev := h.m.Evidence()
	if len(ev) != 1 || ev[0].Kind != DuplicateProposal || ev[0].Validator != 0 {
		t.Fatalf("evidence %v", ev)
	}
	if ev[0].ProposalA.Value != nil || ev[0].ProposalB.Value != nil {
		t.Fatal("evidence keeps the values")
	}
	if err := ev[0].Verify(testChain, h.vals); err != nil {
		t.Fatal(err)
	}
	// The network may decide Y: the second proposal is kept for line 49.
	h.votes(Precommit, 0, valY, 0, 1, 2)
	if len(h.app.finalized) != 1 || string(h.app.finalized[0].Value) != string(valY) {
		t.Fatal("could not commit the second proposal of an equivocating proposer")
	}
}

func TestRejectsForgedAndMisattributedMessages(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	v := h.vote(Prevote, 1, 0, valX)
	v.Validator = 2 // signed by 1, claims 2
	if err := h.step(v); !errors.Is(err, ErrInvalidSignature) {
		t.Fatalf("impersonation: %v", err)
	}
	if err := h.step(h.proposal(1, 0, NoRound, valX)); !errors.Is(err, ErrNotProposer) {
		t.Fatalf("proposal by a non-proposer: %v", err)
	}
	u := h.vote(Prevote, 1, 0, valX)
	u.Validator = 9
	if err := h.step(u); !errors.Is(err, ErrUnknownValidator) {
		t.Fatalf("unknown validator: %v", err)
	}
	if err := h.m.StepBytes([]byte{1, 2, 3}); !errors.Is(err, ErrMalformed) {
		t.Fatalf("garbage: %v", err)
	}
}

func TestFutureRoundsAreBoundedPerValidator(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	for r := Round(10); r < 1000; r++ {
		h.mustStep(h.vote(Prevote, 1, r, nil))
	}
	if n := len(h.m.hs.rounds); n > 3 {
		t.Fatalf("%d rounds kept for one validator spraying future rounds", n)
	}
	// Its latest rounds are still there for line 55.
	h.mustStep(h.vote(Prevote, 2, 999, nil))
	if h.m.State().Round != 999 {
		t.Fatal("no skip to the round where f+1 are")
	}
}
