package ledger

import (
	"errors"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
)

// atLeast runs a threshold check "name's available balance >= min" dealt
// with vals, the way holders and validators would, and returns the verdict
// and the decrypted check slots (what the committee, and a lender shown
// them, would see).
func (w *payWorld) atLeast(t testing.TB, name string, min uint64, vals []uint64) (Reason, []uint64, []uint64) {
	t.Helper()
	a := w.acct[name]
	acc, _ := w.book.Account(a.id)
	st, _ := w.book.State(acc.Shard, w.book.Height())
	rec, err := w.nw.eng.Recompose(st)
	if err != nil {
		t.Fatal(err)
	}
	return w.atLeastOf(t, name, min, vals, rec)
}

// atLeastOf is atLeast against any recomposed plane (a linear score).
func (w *payWorld) atLeastOf(t testing.TB, name string, min uint64, vals []uint64, rec *rlwe.Ciphertext) (Reason, []uint64, []uint64) {
	t.Helper()
	a := w.acct[name]
	acc, _ := w.book.Account(a.id)
	sub, err := w.dealer.BuildValues(TransferSpec{From: a.id, Key: a.key, To: a.id, Height: w.book.Height(), Nonce: acc.Nonce + 1, Prev: acc.LastOp}, vals)
	if err != nil {
		t.Fatal(err)
	}
	p := w.nw.p
	pcs := w.pieces(t, sub)
	var cts []*rlwe.Ciphertext
	for k, pc := range pcs {
		lps := []LanePiece{{Lane: acc.Lane, Piece: pc, AtLeast: true, Min: min, First: k == 0}}
		ct, err := p.EncryptPieceBatch(w.nw.keys.PK, lps, PieceBatchSeed("test", w.book.Height()+1, 0, k, lps))
		if err != nil {
			t.Fatal(err)
		}
		cts = append(cts, ct)
	}
	sum, err := p.SumPieces(cts)
	if err != nil {
		t.Fatal(err)
	}
	items := []Item{{CT: sum, Lanes: []int{acc.Lane}, Fixed: map[int]bool{acc.Lane: true}}}
	ev, err := w.nw.eng.EvaluateMixed(items, func(int) (*rlwe.Ciphertext, error) { return rec, nil }, []byte("block"))
	if err != nil {
		t.Fatal(err)
	}
	bs, es := w.nw.checkShares(t, ev)
	bits, err := w.nw.dec.Combine(ev.Checks.Bits, bs)
	if err != nil {
		t.Fatal(err)
	}
	eq, err := w.nw.dec.Combine(ev.Checks.Eq, es)
	if err != nil {
		t.Fatal(err)
	}
	vd, err := p.Verdicts(ev.Lanes, ev.Subs, bits, eq)
	if err != nil {
		t.Fatal(err)
	}
	return vd[acc.Lane], bits, eq
}

// An owner at or above the minimum passes, and what the check publishes is
// zeros and the verdict: one bit, no value.
func TestAtLeast_OwnerAtOrAboveTheMinimumPassesAndRevealsOneBit(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"alice": 100, "bob": 0}, "alice", "bob")
	for _, min := range []uint64{0, 60, 100} {
		vals, err := AtLeastValues(100, min)
		if err != nil {
			t.Fatal(err)
		}
		r, bits, eq := w.atLeast(t, "alice", min, vals)
		if r != Accepted {
			t.Fatalf("100 >= %d: %v", min, r)
		}
		for s := range bits {
			if bits[s] != 0 || eq[s] != 0 {
				t.Fatalf("100 >= %d: slot %d decrypts to %d, %d: more than the verdict", min, s, bits[s], eq[s])
			}
		}
	}
	w.expectSplit(t, map[string][2]uint64{"alice": {100, 0}}) // a check moves nothing
}

// Below the minimum there is no valid decomposition: the wallet refuses to
// build one, and every forgery fails a check. The dealer cannot lower the
// minimum through its own row 0: validators write it.
func TestAttack_AtLeastBelowTheMinimumCannotPass(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"alice": 100, "bob": 0}, "alice", "bob")
	if _, err := AtLeastValues(100, 101); !errors.Is(err, ErrBelowMinimum) {
		t.Fatalf("wallet built a failing check: %v", err)
	}
	tm := w.nw.p.BGV.PlaintextModulus()
	wrapped := TransferValues(0, (100-101)&MaxAmount)
	negative := TransferValues(0, 0)
	negative[AmountBits] = tm - 1 // "-1" in the remainder's slot 0
	lowered := TransferValues(tm-41, 40)
	for name, c := range map[string]struct {
		vals []uint64
		want Reason
	}{
		"wrapped remainder bits":        {wrapped, RejectBalanceMismatch},
		"negative remainder":            {negative, RejectNewBalanceRange},
		"dealer's row 0 lowers the min": {lowered, RejectBalanceMismatch},
	} {
		if r, _, _ := w.atLeast(t, "alice", 101, c.vals); r != c.want {
			t.Errorf("%s: %v, want %v", name, r, c.want)
		}
	}
}
