package ledger

import (
	"testing"
)

// Attacks on pending and available balances found by review.

// A wallet pipelines payments: each is built on the available balance its
// predecessors leave. If a predecessor never executes (a byzantine proposer
// orders the successor first, or the predecessor is rejected), evaluating
// the successor would decrypt a + b' - available = -(amounts of the missing
// predecessors) for anyone to read (rho is derived from the public block
// hash). The successor names its predecessor (Prev), so it is rejected in
// plaintext and nothing about it is evaluated or decrypted.
func TestAttack_PaymentOnAnUnexecutedPredecessorIsNeverEvaluated(t *testing.T) {
	w := genesis3(t)
	p1 := w.spec("alice", "bob", 37, 100) // signed and uploaded, never ordered
	s1, err := w.b.Build(p1)
	if err != nil {
		t.Fatal(err)
	}
	p2 := w.spec("alice", "carol", 20, 100-37)
	p2.Nonce, p2.Prev = p1.Nonce+1, s1.Envelopes[0].ID()
	assertNeverEvaluated(t, w, p2)
}

// Same through an apply: a wallet applies its pending balance and pays from
// it in the next block; if the apply never executes, the payment would have
// revealed the applied amount (the account's pending balance).
func TestAttack_PaymentOnAnUnexecutedApplyIsNeverEvaluated(t *testing.T) {
	w := genesis3(t)
	pay, _ := w.b.Build(w.spec("bob", "alice", 29, 50)) // alice receives 29 (confidential)
	if r := reason(t, w.block(t, pay), pay); r != Accepted {
		t.Fatal(r)
	}
	ap := w.applySpec("alice", 29, 29) // never ordered
	sa, err := w.b.Build(ap)
	if err != nil {
		t.Fatal(err)
	}
	spend := w.spec("alice", "carol", 5, 100+29)
	spend.Nonce, spend.Prev = ap.Nonce+1, sa.Envelopes[0].ID()
	assertNeverEvaluated(t, w, spend)
}

// assertNeverEvaluated plans an operation and checks it is rejected as built
// on a predecessor that did not execute, before any batch exists.
func assertNeverEvaluated(t *testing.T, w *world, spec TransferSpec) {
	t.Helper()
	sub, err := w.b.Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := w.nw.p.DecodeUpload(sub.Ciphertext)
	if err != nil {
		t.Fatal(err)
	}
	env := &sub.Envelopes[0]
	batches, early := w.book.Plan([]Pending{{Env: env, CT: ct}})
	if len(batches) != 0 || early[env.ID()] != RejectPredecessor {
		t.Fatalf("an operation on an unexecuted predecessor: %d batches, early %v", len(batches), early)
	}
}

// A payment names the height it was made at and expires a window later: a
// signed payment the wallet gave up on (never ordered, e.g. censored) cannot
// be included long after by a proposer colluding with its payee.
func TestAttack_AbandonedPaymentExpires(t *testing.T) {
	w := genesis3(t)
	old, err := w.b.Build(w.spec("alice", "bob", 30, 100)) // height 0, nonce 1: given up on
	if err != nil {
		t.Fatal(err)
	}
	for h := uint64(1); h <= 3*DefaultWindow; h++ {
		if err := w.book.Skip(h); err != nil {
			t.Fatal(err)
		}
	}
	if r := reason(t, w.block(t, old), old); r != RejectStaleHeight {
		t.Fatalf("a payment signed %d heights ago (3 windows) was accepted", 3*DefaultWindow+1)
	}
}

// An apply may name the oldest height of
// the window, whose pending state was pruned down to the newest one at or
// below the window's start; one height older is stale.
func TestApplyAtTheWindowEdgeReadsThePrunedPendingState(t *testing.T) {
	w := genesis3(t)
	pay, _ := w.b.Build(w.spec("alice", "bob", 30, 100)) // bob's pending: 30 from height 1
	if r := reason(t, w.block(t, pay), pay); r != Accepted {
		t.Fatal(r)
	}
	for h := w.book.Height() + 1; h <= StateWindow+10; h++ {
		if err := w.book.Skip(h); err != nil {
			t.Fatal(err)
		}
	}
	floor := w.book.Height() + 1 - StateWindow + 1 // the next block evaluates at Height(); Check: h+window > height
	tooOld := w.applySpec("bob", 30, 30)
	tooOld.Height = floor - 2
	s0, _ := w.b.Build(tooOld)
	if r := reason(t, w.block(t, s0), s0); r != RejectStaleHeight {
		t.Fatalf("apply naming a height out of the window: %v", r)
	}
	edge := w.applySpec("bob", 30, 30)
	edge.Height = w.book.Height() - StateWindow + 1
	s1, _ := w.b.Build(edge)
	if r := reason(t, w.block(t, s1), s1); r != Accepted {
		t.Fatalf("apply naming the window's oldest height: %v", r)
	}
	if a, p := w.balances(t, "bob"); a != 80 || p != 0 {
		t.Fatalf("bob holds %d available, %d pending; want 80, 0", a, p)
	}
}
