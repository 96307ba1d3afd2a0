package consensus

import "testing"

// A precommit for the decided block that arrives after the decision joins
// the last certificate (so the next proposer can carry its extension); one
// with a bad extension, for another block, or forged, does not.
func TestLatePrecommitJoinsTheLastCertificate(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.lockOn(valX, 0, 1, 2)
	h.votes(Precommit, 0, valX, 0, 1) // decided with precommits of 0, 1 and self (3)
	if got := len(h.m.LastCommit().Cert.Sigs); got != 3 {
		t.Fatalf("certificate has %d precommits, want 3", got)
	}
	lateVote := func(from int, value []byte) *Vote {
		v := &Vote{Type: Precommit, Height: 1, Round: 0, Validator: from, BlockID: HashValue(value), Extension: testExt(from, value)}
		SignVote(testChain, NewEd25519Signer(h.keys[from]), v)
		return v
	}
	forged := lateVote(2, valX)
	forged.Signature[0] ^= 1
	_ = h.step(forged)
	other := lateVote(2, []byte("another value"))
	_ = h.step(other)
	if got := len(h.m.LastCommit().Cert.Sigs); got != 3 {
		t.Fatalf("a forged or foreign late precommit joined the certificate (%d)", got)
	}
	_ = h.step(lateVote(2, valX))
	c := h.m.LastCommit().Cert
	if len(c.Sigs) != 4 || c.Sigs[2].Validator != 2 || string(c.Sigs[2].Extension) != string(testExt(2, valX)) {
		t.Fatalf("late precommit not added in order: %+v", c.Sigs)
	}
	if err := VerifyCommit(testChain, h.vals, c); err != nil {
		t.Fatalf("certificate no longer verifies: %v", err)
	}
	_ = h.step(lateVote(2, valX)) // a duplicate changes nothing
	if len(h.m.LastCommit().Cert.Sigs) != 4 {
		t.Fatal("duplicate late precommit added twice")
	}
}
