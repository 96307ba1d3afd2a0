package chain

import (
	"bytes"
	"errors"
	"testing"

	"github.com/zkbank/zkbank/ledger"
)

// FuzzDecodeExt: whatever bytes a precommit carries as its extension,
// decoding is an error or a value that re-encodes to the same bytes, and
// nothing that reads extensions (piece wants, ack sets) panics on it.
func FuzzDecodeExt(f *testing.F) {
	good := (&Ext{Height: 3, Block: [32]byte{1}, Acks: [][32]byte{{2}},
		Pieces: []PieceAttest{{Group: 0, Piece: 1, Hash: [32]byte{3}}, {Group: 1, Piece: 0, Hash: [32]byte{4}}},
		Digest: [32]byte{5}, Shares: [][2][]byte{{{6}, {7}}}}).Encode()
	f.Add(good)
	f.Add([]byte{extVersion})
	f.Add(append([]byte{1}, good[1:]...))
	sh, _ := ledger.NewSharing(4, 1)
	f.Fuzz(func(t *testing.T, p []byte) {
		x, err := DecodeExt(p)
		if err != nil {
			if !errors.Is(err, ErrBlock) {
				t.Fatalf("error not ErrBlock: %v", err)
			}
			return
		}
		if !bytes.Equal(x.Encode(), p) {
			t.Fatal("decode/encode is not the identity")
		}
		carried := []Precommit{{Validator: 1, Ext: p}, {Validator: 70, Ext: p}}
		_ = WantedPieces(&Block{LastCommit: carried}, sh)
		_ = ackSets(carried)
	})
}

// FuzzDecodeBlock: a block value from the network decodes to an error or to
// a block that re-encodes to the same bytes.
func FuzzDecodeBlock(f *testing.F) {
	env := ledger.Envelope{Chain: "c", Sig: make([]byte, 64)}
	good := (&Block{Height: 2, LastCommit: []Precommit{{Validator: 0, Ext: []byte{extVersion}, Signature: make([]byte, 64)}},
		Subs: []SubRef{{CTHash: [32]byte{1}, Envelopes: []ledger.Envelope{env}}}, Opens: []Open{{SignPub: make([]byte, 32), Sig: make([]byte, 64)}}}).Encode()
	f.Add(good)
	f.Add([]byte{blockVersion})
	f.Fuzz(func(t *testing.T, p []byte) {
		b, err := DecodeBlock(p)
		if err != nil {
			return
		}
		if !bytes.Equal(b.Encode(), p) {
			t.Fatal("decode/encode is not the identity")
		}
		_ = checkUnique(b)
	})
}
