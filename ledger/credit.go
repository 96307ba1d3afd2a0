package ledger

import (
	"encoding/binary"
	"fmt"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
)

// Credits from pieces.
//
// A payment's credit is its amount, landing in the receiver's pending
// balance. The holders of each piece already hold the amount's slot values
// in plaintext (additive pieces mod t), so they place each payment's piece
// of the amount directly in the receiver's lane of a credit ciphertext and
// encrypt it like a piece batch (deterministic randomness keyed by the piece
// seeds, decided by f+1 alike holders). Summed over the pieces, a credit
// slot holds sum_j 2^j a_j = a: exactly the amount the checks verify, so the
// receiver gains what the sender loses by construction, and no rotation is
// needed to move it from the sender's lane to the receiver's.
//
// A balance is the sum of its lane's 32 row-0 slots (sum-encoded), so a
// credit may occupy any of them: the credits of one group to one receiving
// lane take slots 0, 1, ... of that lane (CreditLayout). A lane no sender of
// the group occupies is free in the group's own batch ciphertext (the checks
// and the debit see only the senders' lanes: isolation masks the rest), so
// credits to it ride there, for no extra encryption (layer 0); credits to a
// lane a sender occupies, or beyond 32 to one lane, need a separate credit
// ciphertext (layers 1, 2, ...). Lanes of different shards share a
// ciphertext: applying it masks, per receiving shard, the slots of that
// shard's accepted credits (Engine.CreditDeltas), so a rejected payment's
// credit is dropped slot by slot.

// CreditLayout places the credits of one group whose senders occupy lanes
// senders: credit i goes to receiving lane lanes[i] (of any shard) and gets
// layer[i] and index[i] (its row-0 slot in that lane). Layer 0 is the
// group's batch ciphertext, for lanes no sender occupies; layers 1.. are
// separate credit ciphertexts. Credits to one lane take indexes 0..Bits-1
// in order, then the next layer. extra is the number of separate credit
// ciphertexts the group needs.
func (p *Params) CreditLayout(lanes, senders []int) (layer, index []int, extra int) {
	layer, index = make([]int, len(lanes)), make([]int, len(lanes))
	busy := map[int]bool{}
	for _, l := range senders {
		busy[l] = true
	}
	seen := map[int]int{}
	for i, l := range lanes {
		n := seen[l]
		seen[l] = n + 1
		base := 0
		if busy[l] {
			base = 1
		}
		layer[i], index[i] = base+n/p.Bits, n%p.Bits
		extra = max(extra, layer[i])
	}
	return layer, index, extra
}

// CreditValue is a piece's share of its transfer's credit: the sum of its
// amount slot values mod t. Summed over the transfer's pieces it is the
// amount.
func (p *Params) CreditValue(pc *Piece) uint64 { return p.creditValue(pc, 0) }

// creditValue is a piece's share of one payee's credit: the sum of the
// amount slots (row 0) of lane block part of the piece (0 for a single
// payment; 1+i for payee i of a pay-many).
func (p *Params) creditValue(pc *Piece, part int) uint64 {
	t := p.BGV.PlaintextModulus()
	var s uint64
	base := part * SlotValues
	for j := 0; j < p.Bits && base+j < len(pc.Values); j++ {
		s = (s + pc.Values[base+j]%t) % t
	}
	return s
}

// LaneCredit is one payment's piece placed in a credit ciphertext: at
// row-0 slot Index of the receiver's lane Lane. Part names the lane block of
// the piece the amount comes from: 0 for a single payment, 1+i for payee i
// of a pay-many (placePiece).
type LaneCredit struct {
	Lane  int
	Index int
	Piece *Piece
	Part  int
}

// CreditBatchSeed keys the randomness of piece k's credit ciphertext for
// one part of a block (a group's layer): domain-separated from
// PieceBatchSeed (two ciphertexts sharing randomness would reveal the
// difference of their plaintexts), and keyed by the seeds of every piece
// placed in it, which only holders of piece k know.
func CreditBatchSeed(chain string, height uint64, part uint32, k int, credits []LaneCredit) [32]byte {
	return batchSeed("zkbank/credit-batch/v1\x00", chain, height, part, k, len(credits), func(i int, b []byte) []byte {
		b = binary.BigEndian.AppendUint32(b, uint32(credits[i].Lane))
		b = binary.BigEndian.AppendUint32(b, uint32(credits[i].Index))
		b = binary.BigEndian.AppendUint32(b, uint32(credits[i].Part))
		return append(b, credits[i].Piece.Seed[:]...)
	})
}

// EncryptCreditBatch encrypts one piece of every credit of a group's
// separate layer (each at its receiver's lane and index, zero elsewhere) at
// LevelUpload, with all randomness keyed by seed, exactly as
// EncryptPieceBatch does: two honest holders produce the same bytes, and
// the noise is that of any honest fresh ciphertext.
func (p *Params) EncryptCreditBatch(pk *rlwe.PublicKey, credits []LaneCredit, seed [32]byte) (*rlwe.Ciphertext, error) {
	vals := make([]uint64, p.Slots)
	if err := p.placeCredits(vals, credits, nil); err != nil {
		return nil, err
	}
	return p.encryptSlots(pk, vals, seed)
}

// placeCredits writes each credit's value at its slot; a slot used twice, or
// in a lane of busy, is an error.
func (p *Params) placeCredits(vals []uint64, credits []LaneCredit, busy map[int]bool) error {
	used := map[int]bool{}
	for _, c := range credits {
		if c.Lane < 0 || c.Lane >= p.Lanes || c.Index < 0 || c.Index >= p.Bits || c.Piece == nil || !validCount(len(c.Piece.Values)) ||
			c.Part < 0 || (c.Part+1)*SlotValues > len(c.Piece.Values) || (c.Part == 0) != (len(c.Piece.Values) == SlotValues) || busy[c.Lane] {
			return fmt.Errorf("%w: credit for lane %d index %d", ErrBatch, c.Lane, c.Index)
		}
		slot := p.Slot(0, c.Index, c.Lane)
		if used[slot] {
			return fmt.Errorf("%w: two credits at lane %d index %d", ErrBatch, c.Lane, c.Index)
		}
		used[slot] = true
		vals[slot] = p.creditValue(c.Piece, c.Part)
	}
	return nil
}
