package ledger

import (
	"testing"
)

// Adversarial transfers. Each asserts the specific rejection reason and that
// no balance moved (or, for isolation, that only honest transfers moved money).

func genesis3(t *testing.T) *world {
	return newWorld(t, map[string]uint64{"alice": 100, "bob": 50, "carol": 7}, nil, "alice", "bob", "carol")
}

func TestAttack_Overdraft_WrapAroundNewBalance(t *testing.T) {
	w := genesis3(t)
	s := w.spec("alice", "bob", 150, 100)
	vals := make([]uint64, w.nw.p.Slots)
	// The natural cheat: well-formed bits of (100-150) mod 2^32.
	w.nw.p.EncodeLanes(vals, s.Lane, 150, (100-150)&MaxAmount)
	sub := w.forged(t, vals, s)
	if r := reason(t, w.block(t, sub), sub); r != RejectBalanceMismatch {
		t.Fatalf("reason = %v, want %v", r, RejectBalanceMismatch)
	}
	w.expectBalances(t, map[string]uint64{"alice": 100, "bob": 50})
}

func TestAttack_Overdraft_NegativeNewBalanceSlot(t *testing.T) {
	w := genesis3(t)
	s := w.spec("alice", "bob", 150, 100)
	p := w.nw.p
	vals := make([]uint64, p.Slots)
	p.EncodeLanes(vals, s.Lane, 150, 0)
	vals[p.Slot(1, 0, s.Lane)] = p.BGV.PlaintextModulus() - 50 // "new balance" -50 mod t in one slot
	sub := w.forged(t, vals, s)
	if r := reason(t, w.block(t, sub), sub); r != RejectNewBalanceRange {
		t.Fatalf("reason = %v, want %v", r, RejectNewBalanceRange)
	}
	w.expectBalances(t, map[string]uint64{"alice": 100, "bob": 50})
}

func TestAttack_ForgedAmountBit(t *testing.T) {
	w := genesis3(t)
	s := w.spec("alice", "bob", 10, 100)
	p := w.nw.p
	vals := make([]uint64, p.Slots)
	p.EncodeLanes(vals, s.Lane, 10, 90)
	vals[p.Slot(0, 3, s.Lane)] = 5 // bit slot 3 must hold 0 or 8
	sub := w.forged(t, vals, s)
	if r := reason(t, w.block(t, sub), sub); r != RejectAmountRange {
		t.Fatalf("reason = %v, want %v", r, RejectAmountRange)
	}
	w.expectBalances(t, map[string]uint64{"alice": 100, "bob": 50})
}

func TestAttack_NegativeAmount(t *testing.T) {
	w := genesis3(t)
	s := w.spec("alice", "bob", 0, 100)
	p := w.nw.p
	vals := make([]uint64, p.Slots)
	// amount -60 (mod t) so that the "new balance" 160 has valid bits and the
	// balance equation holds mod t: only the range check can catch it.
	p.EncodeLanes(vals, s.Lane, 0, 160)
	vals[p.Slot(0, 0, s.Lane)] = p.BGV.PlaintextModulus() - 60
	sub := w.forged(t, vals, s)
	if r := reason(t, w.block(t, sub), sub); r != RejectAmountRange {
		t.Fatalf("reason = %v, want %v", r, RejectAmountRange)
	}
	w.expectBalances(t, map[string]uint64{"alice": 100, "bob": 50})
}

func TestAttack_AmountAtLeast2To32(t *testing.T) {
	w := genesis3(t)
	s := w.spec("alice", "bob", 0, 100)
	p := w.nw.p
	vals := make([]uint64, p.Slots)
	p.EncodeLanes(vals, s.Lane, 0, 100)
	vals[p.Slot(0, 31, s.Lane)] = 1 << 32 // a 33rd bit smuggled into bit slot 31
	sub := w.forged(t, vals, s)
	if r := reason(t, w.block(t, sub), sub); r != RejectAmountRange {
		t.Fatalf("reason = %v, want %v", r, RejectAmountRange)
	}
	// And the wallet refuses to build such a transfer at all.
	if _, err := w.b.Build(w.spec("alice", "bob", 1<<32, 1<<33)); err == nil {
		t.Fatal("builder accepted an amount >= 2^32")
	}
	w.expectBalances(t, map[string]uint64{"alice": 100, "bob": 50})
}

func TestAttack_WritesIntoAnotherAccountsLane(t *testing.T) {
	w := genesis3(t)
	p := w.nw.p
	// carol (balance 7) pays alice 5 honestly, in its own lane, while its
	// ciphertext also scribbles over bob's lane and over alice's lane.
	cs := w.spec("carol", "alice", 5, 7)
	vals := make([]uint64, p.Slots)
	p.EncodeLanes(vals, cs.Lane, 5, 2)
	bobLane, aliceLane := w.acct["bob"].lane, w.acct["alice"].lane
	for j := 0; j < p.Bits; j++ {
		vals[p.Slot(0, j, bobLane)] = 12345
		vals[p.Slot(1, j, bobLane)] = 999
		vals[p.Slot(0, j, aliceLane)] = 1 << j // "credit" alice 2^32-1 on the side
	}
	mal := w.forged(t, vals, cs)
	// bob sends honestly in the same batch: its transfer must still go through.
	honest, err := w.b.Build(w.spec("bob", "alice", 20, 50))
	if err != nil {
		t.Fatal(err)
	}
	res := w.block(t, mal, honest)
	if r := reason(t, res, honest); r != Accepted {
		t.Fatalf("honest neighbour rejected: %v", r)
	}
	if r := reason(t, res, mal); r != Accepted {
		t.Fatalf("scribbler's own lane is valid, got %v", r)
	}
	// Writes outside the sender's lane are discarded by the isolation mask.
	w.expectBalances(t, map[string]uint64{"alice": 125, "bob": 30, "carol": 2})
}

func TestAttack_CreditCannotExceedDebit(t *testing.T) {
	w := genesis3(t)
	p := w.nw.p
	// alice debits 1 but tries to hand bob 1000: the receiver's credit is
	// derived from the verified debit, so bob gets exactly 1.
	s := w.spec("alice", "bob", 1, 100)
	vals := make([]uint64, p.Slots)
	p.EncodeLanes(vals, s.Lane, 1, 99)
	vals[p.Slot(0, 0, w.acct["bob"].lane)] = 1000
	sub := w.forged(t, vals, s)
	if r := reason(t, w.block(t, sub), sub); r != Accepted {
		t.Fatalf("reason = %v", r)
	}
	w.expectBalances(t, map[string]uint64{"alice": 99, "bob": 51, "carol": 7})
}

func TestAttack_OneBadTransferDoesNotBlockItsBatch(t *testing.T) {
	w := genesis3(t)
	p := w.nw.p
	good1, _ := w.b.Build(w.spec("bob", "carol", 10, 50))
	good2, _ := w.b.Build(w.spec("carol", "bob", 7, 7))
	s := w.spec("alice", "carol", 500, 100)
	vals := make([]uint64, p.Slots)
	p.EncodeLanes(vals, s.Lane, 500, (100-500)&MaxAmount)
	bad := w.forged(t, vals, s)
	res := w.block(t, good1, bad, good2)
	if reason(t, res, good1) != Accepted || reason(t, res, good2) != Accepted {
		t.Fatalf("honest transfers: %v %v", reason(t, res, good1), reason(t, res, good2))
	}
	if r := reason(t, res, bad); r != RejectBalanceMismatch {
		t.Fatalf("overdraft: %v", r)
	}
	w.expectBalances(t, map[string]uint64{"alice": 100, "bob": 47, "carol": 10})
}
