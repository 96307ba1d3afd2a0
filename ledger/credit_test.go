package ledger

import "testing"

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
