package ledger

import (
	"testing"
)

func TestHonestTransferCommitsAndOwnersDecrypt(t *testing.T) {
	nw := testNet(t, 4, 3)
	p := nw.p
	alice, bob := newAccount(t, p, 3), newAccount(t, p, 200)
	state, err := nw.eng.GenesisState(nw.keys.PK, map[int]uint64{alice.lane: 10_000, bob.lane: 500})
	if err != nil {
		t.Fatal(err)
	}
	b := newBuilder(p, nw.keys.PK, "test")
	sub, err := b.Build(TransferSpec{From: alice.id, Lane: alice.lane, Key: alice.key, To: bob.id, Amount: 2_500, Balance: 10_000, Height: 0, Nonce: 1})
	if err != nil {
		t.Fatal(err)
	}
	ev, v := nw.verdicts(t, state, []Item{{CT: nw.upload(t, sub), Lanes: []int{alice.lane}}}, []int{0, 1, 2})
	if v[alice.lane] != Accepted {
		t.Fatalf("honest transfer: %v", v[alice.lane])
	}
	d, err := nw.eng.Apply(ev, v, []Credit{b.credit(t, alice.lane, 0, bob.lane, 2_500)})
	if err != nil {
		t.Fatal(err)
	}
	if state, err = nw.eng.ApplyDelta(state, d.Debit, -1); err != nil {
		t.Fatal(err)
	}
	if state, err = nw.eng.ApplyDelta(state, d.Credits[0], +1); err != nil {
		t.Fatal(err)
	}
	if got := nw.balance(t, state, alice); got != 7_500 {
		t.Errorf("alice = %d, want 7500", got)
	}
	if got := nw.balance(t, state, bob); got != 3_000 {
		t.Errorf("bob = %d, want 3000", got)
	}
}
