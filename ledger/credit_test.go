package ledger

import (
	"errors"
	"strings"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
)

// Credits ride in the group's batch ciphertext (layer 0) in lanes no sender
// of the group occupies; credits to a sender's lane, and the 33rd to one
// lane, need separate credit ciphertexts (layers 1, 2, ...).
func TestCreditLayoutUsesFreeLanesOfTheBatch(t *testing.T) {
	p := MustParams(ZKB128)
	senders := []int{3, 4}
	lanes := []int{7, 7, 3}
	for i := 0; i <= p.Bits; i++ {
		lanes = append(lanes, 9)
	}
	layer, index, extra := p.CreditLayout(lanes, senders)
	want := [][2]int{{0, 0}, {0, 1}, {1, 0}}
	for i, w := range want {
		if layer[i] != w[0] || index[i] != w[1] {
			t.Fatalf("credit %d to lane %d: layer %d index %d, want %v", i, lanes[i], layer[i], index[i], w)
		}
	}
	if last := len(lanes) - 1; layer[last] != 1 || index[last] != 0 {
		t.Fatalf("the 33rd credit to a free lane: layer %d index %d, want 1, 0", layer[last], index[last])
	}
	if extra != 1 {
		t.Fatalf("%d separate credit ciphertexts, want 1", extra)
	}
	if _, _, extra := p.CreditLayout([]int{7, 8}, senders); extra != 0 {
		t.Fatalf("credits to free lanes need %d separate ciphertexts, want 0", extra)
	}
	// A credit may not sit in a sender's lane of the batch ciphertext.
	pc := &Piece{Values: TransferValues(5, 0)}
	if _, err := p.EncryptPieceBatchWithCredits(nil, []LanePiece{{Lane: 3, Piece: pc}}, []LaneCredit{{Lane: 3, Index: 0, Piece: pc}}, [32]byte{}); err == nil {
		t.Fatal("a credit in a sender's lane of the batch was accepted")
	}
}

// A payment planned without a decided credit ciphertext (or with a credit
// index outside a lane) is rejected before evaluation: nothing is debited
// that is not credited.
func TestAttack_PaymentWithoutACreditIsNeverDebited(t *testing.T) {
	w := genesis3(t)
	sub, err := w.b.Build(w.spec("alice", "bob", 30, 100))
	if err != nil {
		t.Fatal(err)
	}
	ct := w.nw.upload(t, sub)
	env := &sub.Envelopes[0]
	for _, pd := range []Pending{
		{Env: env, CT: ct},
		{Env: env, CT: ct, Credits: []CreditRef{{CT: ct, Index: w.nw.p.Bits}}},
	} {
		batches, early := w.book.Plan([]Pending{pd})
		if len(batches) != 0 || early[env.ID()] != RejectUndecided {
			t.Fatalf("credits %v: %d batches, early %v", pd.Credits, len(batches), early)
		}
	}
	if r := reason(t, w.block(t, sub), sub); r != Accepted {
		t.Fatalf("with its credit: %v", r)
	}
	w.expectBalances(t, map[string]uint64{"alice": 70, "bob": 80, "carol": 7})
}

// A genesis made for the rotation-routed credits (22 Galois keys) is
// refused with an error that says to start a new chain.
func TestEngineRefusesAnOlderGenesisKeySet(t *testing.T) {
	nw := testNet(t, 4, 3)
	keys := *nw.keys
	keys.GKs = append(append([]*rlwe.GaloisKey(nil), keys.GKs...), keys.GKs...)
	if _, err := NewEngine(nw.p, &keys); !errors.Is(err, ErrParams) || !strings.Contains(err.Error(), "start a new chain") {
		t.Fatalf("NewEngine with %d Galois keys: %v", len(keys.GKs), err)
	}
}
