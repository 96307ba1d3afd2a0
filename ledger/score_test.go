package ledger

import (
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
)

// score is 600 + 2 x available + 1 x pending for every named account, from
// the book's current planes.
func (w *payWorld) score(t testing.TB, names ...string) *rlwe.Ciphertext {
	t.Helper()
	eng := w.nw.eng
	acc, _ := w.book.Account(w.acct[names[0]].id)
	st, _ := w.book.State(acc.Shard, w.book.Height())
	pst, _ := w.book.PendingState(acc.Shard, w.book.Height())
	avail, err := eng.Recompose(st)
	if err != nil {
		t.Fatal(err)
	}
	pend, err := eng.Recompose(pst)
	if err != nil {
		t.Fatal(err)
	}
	base := map[int]uint64{}
	for _, n := range names {
		a, _ := w.book.Account(w.acct[n].id)
		base[a.Lane] = 600
	}
	s, err := eng.LinearScore([]ScoreTerm{{Plane: avail, Weight: 2}, {Plane: pend, Weight: 1}}, base)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The owner reads its linear score exactly, isolated like a balance (no
// other account's value in what it decrypts).
func TestLinearScore_EachOwnerReadsItsOwnExactly(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"alice": 100, "bob": 50}, "alice", "bob")
	pay := w.build(t, w.spec("bob", "alice", 30, 50))
	if r := w.block(t, paySub{sub: pay})[pay.Envelopes[0].ID()]; r != Accepted {
		t.Fatalf("payment: %v", r)
	}
	s := w.score(t, "alice", "bob")
	for name, want := range map[string]uint64{"alice": 600 + 2*100 + 30, "bob": 600 + 2*20} {
		a, _ := w.book.Account(w.acct[name].id)
		ct, err := w.nw.eng.BalanceFromRecomposed(s, a.Lane)
		if err != nil {
			t.Fatal(err)
		}
		var shares []*DecShare
		for v := 0; v < w.nw.com.T; v++ {
			sh, err := w.nw.dec.Share(w.nw.shares[v], ct)
			if err != nil {
				t.Fatal(err)
			}
			shares = append(shares, sh)
		}
		vals, err := w.nw.dec.Combine(ct, shares)
		if err != nil {
			t.Fatal(err)
		}
		for slot, v := range vals {
			if slot == w.nw.p.Slot(0, 0, a.Lane) {
				if v != want {
					t.Fatalf("%s's score decrypts to %d, want %d", name, v, want)
				}
			} else if v != 0 {
				t.Fatalf("%s's score ciphertext holds %d at slot %d", name, v, slot)
			}
		}
	}
	if _, err := w.nw.eng.LinearScore([]ScoreTerm{{Plane: s, Weight: MaxScoreWeight + 1}}, nil); err == nil {
		t.Fatal("a weight above MaxScoreWeight was accepted")
	}
}

// The decision-only answer against a linear score: 830 >= 800 passes with
// nothing but zeros published; 830 >= 831 has no decomposition, and a
// forged one fails.
func TestAtLeast_AgainstALinearScore(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"alice": 100, "bob": 50}, "alice", "bob")
	pay := w.build(t, w.spec("bob", "alice", 30, 50))
	w.block(t, paySub{sub: pay})
	s := w.score(t, "alice", "bob")
	vals, err := AtLeastValues(830, 800)
	if err != nil {
		t.Fatal(err)
	}
	r, bits, eq := w.atLeastOf(t, "alice", 800, vals, s)
	if r != Accepted {
		t.Fatalf("830 >= 800: %v", r)
	}
	for i := range bits {
		if bits[i] != 0 || eq[i] != 0 {
			t.Fatalf("slot %d decrypts to %d, %d", i, bits[i], eq[i])
		}
	}
	if r, _, _ := w.atLeastOf(t, "alice", 831, TransferValues(0, (830-831)&MaxAmount), s); r != RejectBalanceMismatch {
		t.Fatalf("830 >= 831 forged: %v", r)
	}
}
