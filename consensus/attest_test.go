package consensus

import (
	"errors"
	"fmt"
	"testing"
)

// sentAttestations returns the attestations this validator sent, in order.
func (h *harness) sentAttestations() []*Vote {
	var out []*Vote
	for _, e := range h.sent {
		if v, ok := e.Msg.(*Vote); ok && v.Type == Attestation && v.Validator == h.self {
			out = append(out, v)
		}
	}
	return out
}

// rebroadcastAttests fires a rebroadcast and checks how many attestations
// this validator has sent in all.
func (h *harness) rebroadcastAttests(want int, what string) {
	h.t.Helper()
	h.fire(TimeoutRebroadcast, 0)
	if n := len(h.sentAttestations()); n != want {
		h.t.Fatalf("%s: %d attestations sent, want %d", what, n, want)
	}
}

func (h *harness) attestation(from int, height uint64, r Round, value []byte) *Vote {
	v := &Vote{Type: Attestation, Height: height, Round: r, Validator: from, BlockID: HashValue(value), Extension: testExt(from, value)}
	SignVote(testChain, NewEd25519Signer(h.keys[from]), v)
	return v
}

// A validator that precommitted nil (the proposal reached it too late) and
// then saw the block decided without it signs an attestation of its
// extension for that block and broadcasts it: a byzantine proposer that
// leaves an honest validator out of the certificate cannot keep its
// extension out of the next block. The attestation joins our own last
// certificate (so our next proposal carries it), the certificate still
// verifies without counting it, and it is re-sent while the next height is
// late.
func TestAttack_ValidatorLeftOutOfTheCertificateAttests(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.fire(TimeoutPropose, 0) // no proposal: prevote nil
	h.votes(Prevote, 0, valX, 0, 1, 2)
	h.fire(TimeoutPrevote, 0) // precommit nil
	if v := h.lastVote(Precommit, 0); !v.BlockID.IsNil() {
		t.Fatalf("precommitted %s without the proposal", v.BlockID)
	}
	h.votes(Precommit, 0, valX, 0, 1, 2)
	h.mustStep(h.proposal(0, 0, NoRound, valX)) // now decided, without us
	if len(h.commits) != 1 {
		t.Fatalf("decided %d heights, want 1", len(h.commits))
	}
	atts := h.sentAttestations()
	if len(atts) != 1 {
		t.Fatalf("sent %d attestations, want 1", len(atts))
	}
	a := atts[0]
	if a.Height != 1 || a.Round != AttestationRound || a.BlockID != HashValue(valX) || string(a.Extension) != string(testExt(3, valX)) {
		t.Fatalf("attestation %+v", a)
	}
	if !verifyVote(Ed25519Verifier{}, testChain, h.vals, a) {
		t.Fatal("attestation not validly signed")
	}
	// A signed attestation is not a precommit: it cannot pass for one.
	pc := *a
	pc.Type = Precommit
	if verifyVote(Ed25519Verifier{}, testChain, h.vals, &pc) {
		t.Fatal("an attestation's signature verifies as a precommit")
	}
	c := h.m.LastCommit().Cert
	if len(c.Sigs) != 3 || len(c.Attested) != 1 || c.Attested[0].Validator != 3 {
		t.Fatalf("last certificate: %d precommits, attested %+v", len(c.Sigs), c.Attested)
	}
	if err := VerifyCommit(testChain, h.vals, c); err != nil {
		t.Fatalf("certificate with an attestation: %v", err)
	}
	// Rebroadcast re-sends it only once the next height is late.
	h.rebroadcastAttests(1, "re-sent at round 0 of the next height")
	h.nextRound(0, 1, 2)
	h.rebroadcastAttests(2, "not re-sent when the next height is late")
	h.rebroadcastAttests(2, "re-sent twice in one round")
}

// An attestation names no round (AttestationRound), so it joins a
// certificate of the block from any round: validators may decide the same
// block in different rounds, and a late precommit joins only its own
// round's certificate. A validator whose own certificate holds its
// precommit attests too once the next height has lost two rounds, for those
// who decided in another round without it (not after one: a proposer that
// is down costs a round, and N attestations then would be for nothing).
func TestAttack_AttestationJoinsACertificateOfAnotherRound(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.nextRound(0, 1, 2) // round 0 fails
	h.lockOn(valX, 0, 1, 2)
	h.votes(Precommit, 1, valX, 0, 1) // decided in round 1 by 0, 1 and self
	if len(h.commits) != 1 || h.m.LastCommit().Cert.Round != 1 {
		t.Fatal("not decided in round 1")
	}
	round0 := &Vote{Type: Precommit, Height: 1, Round: 0, Validator: 2, BlockID: HashValue(valX), Extension: testExt(2, valX)}
	SignVote(testChain, NewEd25519Signer(h.keys[2]), round0)
	_ = h.step(round0)
	if c := h.m.LastCommit().Cert; len(c.Sigs) != 3 || len(c.Attested) != 0 {
		t.Fatal("a precommit of another round joined the certificate")
	}
	h.mustStep(h.attestation(2, 1, AttestationRound, valX))
	if c := h.m.LastCommit().Cert; len(c.Attested) != 1 || c.Attested[0].Validator != 2 {
		t.Fatalf("attestation did not join a round-1 certificate: %+v", c.Attested)
	}
	if n := len(h.sentAttestations()); n != 0 {
		t.Fatalf("attested at once although in the certificate (%d)", n)
	}
	h.rebroadcastAttests(0, "attested in round 0 of the next height")
	h.nextRound(0, 1, 2)
	h.rebroadcastAttests(0, "attested in round 1 of the next height")
	h.nextRound(0, 1, 2)
	h.fire(TimeoutRebroadcast, 0)
	if atts := h.sentAttestations(); len(atts) != 1 || atts[0].Height != 1 || atts[0].Round != AttestationRound {
		t.Fatalf("round 2 of the next height: %d attestations", len(atts))
	}
	h.nextRound(0, 1, 2)
	h.rebroadcastAttests(1, "re-sent in round 3")
	h.nextRound(0, 1, 2)
	h.rebroadcastAttests(2, "not re-sent in round 4")
}

// Attestations of others join the last certificate only if they are for
// the decided block (naming AttestationRound), validly signed, with an extension the
// application accepts, and from a validator whose precommit it lacks; a late
// precommit replaces the same validator's attestation. An attestation never
// makes us serve its sender (it is not behind), and one for a height we
// have not decided is ignored without blaming its sender.
func TestAttack_AttestationsJoinTheLastCertificateOnlyIfValid(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.lockOn(valX, 0, 1, 2)
	h.votes(Precommit, 0, valX, 0, 1) // decided by 0, 1 and self
	if len(h.commits) != 1 {
		t.Fatal("not decided")
	}
	if n := len(h.sentAttestations()); n != 0 {
		t.Fatalf("attested a block whose certificate holds our precommit (%d)", n)
	}
	sent := len(h.sent)
	forged := h.attestation(2, 1, 0, valX)
	forged.Signature[0] ^= 1
	badExt := h.attestation(2, 1, 0, valX)
	badExt.Extension = testExt(1, valX)
	SignVote(testChain, NewEd25519Signer(h.keys[2]), badExt)
	otherRound := h.attestation(2, 1, 1, valX)
	otherBlock := h.attestation(2, 1, 0, []byte("another value"))
	inCert := h.attestation(1, 1, 0, valX)
	for name, v := range map[string]*Vote{"forged": forged, "bad extension": badExt, "other round": otherRound, "other block": otherBlock, "of a precommitter": inCert} {
		_ = h.step(v)
		if c := h.m.LastCommit().Cert; len(c.Attested) != 0 {
			t.Fatalf("%s attestation joined the certificate", name)
		}
	}
	h.mustStep(h.attestation(2, 1, 0, valX))
	h.mustStep(h.attestation(2, 1, 0, valX)) // a duplicate changes nothing
	c := h.m.LastCommit().Cert
	if len(c.Attested) != 1 || c.Attested[0].Validator != 2 || len(c.Sigs) != 3 {
		t.Fatalf("certificate: %d precommits, attested %+v", len(c.Sigs), c.Attested)
	}
	for _, e := range h.sent[sent:] {
		if _, ok := e.Msg.(*Commit); ok {
			t.Fatal("an attestation made us serve its sender the last commit")
		}
	}
	// Validator 2's precommit arrives after all: it replaces the attestation.
	late := &Vote{Type: Precommit, Height: 1, Round: 0, Validator: 2, BlockID: HashValue(valX), Extension: testExt(2, valX)}
	SignVote(testChain, NewEd25519Signer(h.keys[2]), late)
	_ = h.step(late)
	c = h.m.LastCommit().Cert
	if len(c.Sigs) != 4 || len(c.Attested) != 0 {
		t.Fatalf("late precommit after an attestation: %d precommits, attested %+v", len(c.Sigs), c.Attested)
	}
	if err := h.step(h.attestation(0, 2, 0, []byte("value of height 2"))); err != nil {
		t.Fatalf("an attestation for the current height was blamed: %v", err)
	}
}

// A decision learnt from a Commit (catching up) is attested at the next
// rebroadcast if we are still at the next height, not at once: a node
// catching up many heights does not extend every one of them. A failing
// ExtendVote is an application error, nothing is sent, and the next
// rebroadcast tries again.
func TestAttestation_AfterCatchUpWaitsForTheRebroadcast(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	cert := &CommitCertificate{Height: 1, Round: 0, BlockID: HashValue(valX)}
	for _, i := range []int{0, 1, 2} {
		v := h.vote(Precommit, i, 0, valX)
		cert.Sigs = append(cert.Sigs, CommitSig{Validator: i, Extension: v.Extension, Signature: v.Signature})
	}
	h.mustStep(&Commit{Cert: cert, Value: valX})
	if len(h.commits) != 1 || len(h.sentAttestations()) != 0 {
		t.Fatalf("commits %d, attestations %d right after catching up", len(h.commits), len(h.sentAttestations()))
	}
	h.app.extendErr = errors.New("shares unavailable")
	if err := h.step(TimeoutEvent{Kind: TimeoutRebroadcast, Height: 2}); !errors.Is(err, ErrApplication) {
		t.Fatalf("failing ExtendVote at the attestation: %v", err)
	}
	if len(h.sentAttestations()) != 0 {
		t.Fatal("attested without an extension")
	}
	h.app.extendErr = nil
	h.rebroadcastAttests(1, "a failed attestation was not retried")
	h.rebroadcastAttests(1, "attested twice")

	// An application that has no attestation to make for a decision (the
	// previous validator set's block) is not asked again, and it is no
	// error.
	n := newHarness(t, 4, 3)
	n.start(2, &Commit{Cert: cert, Value: valX}, nil)
	n.app.extendErr = fmt.Errorf("previous committee: %w", ErrNoAttestation)
	if err := n.step(TimeoutEvent{Kind: TimeoutRebroadcast, Height: 2}); err != nil {
		t.Fatalf("no attestation to make: %v", err)
	}
	n.nextRound(0, 1, 2)
	n.nextRound(0, 1, 2)
	n.app.extendErr = nil
	n.rebroadcastAttests(0, "asked again after ErrNoAttestation")

	// After a restart at height 2, the attestation is due again.
	r := newHarness(t, 4, 3)
	r.start(2, &Commit{Cert: cert, Value: valX}, nil)
	if len(r.sentAttestations()) != 0 {
		t.Fatal("attested inside Start")
	}
	r.fire(TimeoutRebroadcast, 0)
	if atts := r.sentAttestations(); len(atts) != 1 || atts[0].Height != 1 {
		t.Fatalf("after a restart: %d attestations", len(atts))
	}
}
