package consensus

import (
	"errors"
	"testing"
)

func TestVoteExtension_InvalidExtensionDoesNotCountForCommit(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.mustStep(h.proposal(0, 0, NoRound, valX))
	bad := h.vote(Precommit, 0, 0, valX)
	bad.Extension = []byte("forged share")
	SignVote(testChain, NewEd25519Signer(h.keys[0]), bad)
	h.mustStep(bad)
	h.votes(Precommit, 0, valX, 1, 2)
	if len(h.app.finalized) != 0 {
		t.Fatal("a precommit with a bad extension completed the commit quorum")
	}
	if !h.timer(TimeoutPrecommit, 0) {
		t.Fatal("it should still count as a precommit of any kind (line 47)")
	}
	h.votes(Prevote, 0, valX, 0, 1, 2) // we lock and precommit X ourselves
	if len(h.app.finalized) != 1 {
		t.Fatal("no commit with 3 good extensions")
	}
	for _, s := range h.app.finalized[0].Cert.Sigs {
		if s.Validator == 0 {
			t.Fatal("the bad extension entered the certificate")
		}
	}
}

func TestVoteExtension_PendingUntilTheValueArrives(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	bad := h.vote(Precommit, 0, 0, valX)
	bad.Extension = []byte("forged")
	SignVote(testChain, NewEd25519Signer(h.keys[0]), bad)
	h.mustStep(bad)
	h.votes(Precommit, 0, valX, 1, 2)
	h.mustStep(h.proposal(0, 0, NoRound, valX)) // verification happens now
	if len(h.app.finalized) != 0 {
		t.Fatal("committed with an unverified extension")
	}
}

func TestVoteExtension_CertificateReachesTheNextProposer(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.lockOn(valX, 0, 1, 2)
	h.votes(Precommit, 0, valX, 0, 1)
	// Height 2, round 0 is proposed by 0; move to round 3 where we propose.
	h.nextRound(0, 1, 2)
	h.nextRound(0, 1, 2)
	h.nextRound(0, 1, 2)
	last := h.app.lastSeen[len(h.app.lastSeen)-1]
	if last == nil || last.Height != 1 || len(last.Sigs) != 3 {
		t.Fatalf("BuildProposal got lastCommit %+v", last)
	}
	for _, s := range last.Sigs {
		if string(s.Extension) != string(testExt(s.Validator, valX)) {
			t.Fatalf("extension of %d lost", s.Validator)
		}
	}
}

func TestVoteExtension_ExtendVoteErrorPrecommitsNil(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.app.extendErr = errors.New("no share")
	h.mustStep(h.proposal(0, 0, NoRound, valX))
	h.votes(Prevote, 0, valX, 0)
	err := h.step(h.vote(Prevote, 1, 0, valX)) // with ours, 2f+1: line 36

	if !errors.Is(err, ErrApplication) {
		t.Fatalf("err %v", err)
	}
	if v := h.lastVote(Precommit, 0); !v.BlockID.IsNil() {
		t.Fatal("precommitted a value without its extension")
	}
	if h.m.State().LockedRound != NoRound {
		t.Fatal("locked without precommitting")
	}
}

func TestVoteExtension_OnlyOnNonNilPrecommits(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	v := h.vote(Prevote, 0, 0, valX)
	v.Extension = []byte("x")
	SignVote(testChain, NewEd25519Signer(h.keys[0]), v)
	if err := h.step(v); !errors.Is(err, ErrMalformed) {
		t.Fatalf("extension on a prevote: %v", err)
	}
	if _, err := DecodeMessage(EncodeMessage(v)); !errors.Is(err, ErrMalformed) {
		t.Fatalf("decoder accepted an extension on a prevote: %v", err)
	}
}

func TestCatchUpByCommit(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	// Another node decided X at height 1; we saw none of it.
	cert := &CommitCertificate{Height: 1, Round: 0, BlockID: HashValue(valX)}
	for i := range 3 {
		v := h.vote(Precommit, i, 0, valX)
		cert.Sigs = append(cert.Sigs, CommitSig{Validator: i, Extension: v.Extension, Signature: v.Signature})
	}
	if err := h.step(&Commit{Cert: cert, Value: valY}); !errors.Is(err, ErrInvalidCommit) {
		t.Fatalf("value not matching the certificate: %v", err)
	}
	short := *cert
	short.Sigs = cert.Sigs[:2]
	if err := h.step(&Commit{Cert: &short, Value: valX}); !errors.Is(err, ErrInvalidCommit) {
		t.Fatalf("2 of 4: %v", err)
	}
	h.mustStep(&Commit{Cert: cert, Value: valX})
	if len(h.app.finalized) != 1 || h.m.State().Height != 2 {
		t.Fatal("did not catch up")
	}
	// A validator still at height 1 gets the commit from us.
	h.mustStep(h.votes2(Prevote, 0, 1))
	found := false
	for _, e := range h.sent {
		if c, ok := e.Msg.(*Commit); ok && e.To == 0 && c.Cert.Height == 1 {
			found = true
		}
	}
	if !found {
		t.Fatal("no Commit sent to the lagging validator")
	}
}

// votes2 builds a nil vote of height 1 by from (the harness is at height 2).
func (h *harness) votes2(t VoteType, from int, height uint64) *Vote {
	v := &Vote{Type: t, Height: height, Round: 0, Validator: from}
	SignVote(testChain, NewEd25519Signer(h.keys[from]), v)
	return v
}
