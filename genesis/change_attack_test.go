package genesis

import (
	"testing"
)

// Long-range fork: once a committee has been replaced, a quorum of its
// departed members (no longer bound by anything) can sign another change
// for the same epoch and extend it with committees of their own. Such a run
// verifies from genesis on its own; Conflict finds where it departs from
// the committed one, so a client that sees both refuses to choose
// (client.Current; TestAttack_ClientRefusesConflictingCommitteeHistories).
func TestAttack_DepartedCommitteeForkIsFoundAsAConflict(t *testing.T) {
	vals, keys := committee(t, 4, 0)
	g := testGenesis(t, vals)
	b, _ := committee(t, 4, 10)
	real := &Change{ChainID: g.ChainID, Epoch: 1, Validators: b, Threshold: DefaultThreshold(4), Reason: "migrate"}
	for i := 0; i < 3; i++ {
		real.Sign(i, keys[i])
	}
	committed := []Epoch{{Change: real, Start: 20}}
	cv, ck := committee(t, 4, 20)
	fork1 := &Change{ChainID: g.ChainID, Epoch: 1, Validators: cv, Threshold: DefaultThreshold(4), Reason: "migrate"}
	for i := 0; i < 3; i++ {
		fork1.Sign(i, keys[i])
	}
	dv, _ := committee(t, 4, 30)
	fork2 := &Change{ChainID: g.ChainID, Epoch: 2, Validators: dv, Threshold: DefaultThreshold(4)}
	for i := 0; i < 3; i++ {
		fork2.Sign(i, ck[i])
	}
	forged := []Epoch{{Change: fork1, Start: 20}, {Change: fork2, Start: 30}}
	if err := g.VerifyChain(forged); err != nil {
		t.Fatalf("the fork should verify on its own (that is the attack): %v", err)
	}
	if e, ok := Conflict(committed, forged); !ok || e != 1 {
		t.Fatalf("Conflict = %d, %v; want epoch 1", e, ok)
	}
	if _, ok := Conflict(committed, committed); ok {
		t.Fatal("a history conflicts with itself")
	}
	if _, ok := Conflict(committed, forged[:0]); ok {
		t.Fatal("a shorter prefix (a node that withholds) is not a conflict")
	}
}

// The bytes a block carries are not canonical: a byzantine proposer may
// carry any JSON that decodes to a signed change (extra fields, other key
// order, whitespace). Every node keeps the same raw bytes (the block hash
// covers them), and every node re-encodes before signing-byte checks, so
// this is defended; the test pins that the re-decoded change is identical.
func TestAttack_NonCanonicalChangeBytesDecodeToTheSignedChange(t *testing.T) {
	vals, keys := committee(t, 4, 0)
	g := testGenesis(t, vals)
	c, _ := addOne(t, g, keys, 0, 1, 2)
	enc := c.Encode()
	raw := append([]byte(`{"junk":1,  "EPOCH":1, `), enc[1:]...)
	d, err := DecodeChange(raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Verify(g, g.Validators, 0); err != nil {
		t.Fatalf("non-canonical carrying of a signed change: %v", err)
	}
	if string(d.Encode()) != string(enc) {
		t.Fatal("a non-canonical carrying decodes to another change")
	}
}
