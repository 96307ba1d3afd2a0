package chain

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/zkbank/zkbank/consensus"
	"github.com/zkbank/zkbank/internal/wire"
	"github.com/zkbank/zkbank/ledger"
)

// ErrBlock reports a block value that does not decode or is inconsistent.
var ErrBlock = errors.New("chain: bad block")

// Block is the value consensus orders at each height. It carries no
// ciphertexts: transfers are referenced by the hash of their sealed upload,
// which validators hold from the mempool (or fetch from a peer). The signed
// precommits of the previous height, with their extensions, fix which piece
// ciphertexts make up the previous block's batches and which decryption
// shares decide the block before it; the proposer chooses which to carry
// but cannot forge or alter one.
type Block struct {
	Height     uint64
	TimeMs     uint64 // proposer's wall clock, informational only
	LastCommit []Precommit
	Subs       []SubRef
	Opens      []Open
	// Consents are owners' signed score consents and revocations
	// (ledger.Consent), recorded in the order given.
	Consents []ledger.Consent
	// StateRoot is the root of the state snapshot of height Height-1 when
	// that is a snapshot height (chain/snapshot.go), zero otherwise. A
	// validator refuses a block whose root is not the one it computed, so
	// a decided block certifies the snapshot.
	StateRoot [32]byte
	// SetChange is a validator-set change (an encoded genesis.Change, opaque
	// to this package: Config.VerifyChange checks it), nil if none. The
	// committee it names decides from SwitchDelay heights on.
	SetChange []byte
}

// Precommit is a validator's signed precommit for the previous block: the
// round it was cast in, its extension (digest and decryption shares) and its
// signature over both (consensus.VoteSignBytes). Strictly increasing by
// validator within a block.
type Precommit struct {
	Validator int
	Round     consensus.Round
	Ext       []byte
	Signature []byte
	// Attested: signed as a consensus.Attestation (an extension for the
	// decided block from a validator whose precommit the certificate
	// lacks), not as a precommit. It counts toward no quorum.
	Attested bool
}

// Vote is the precommit (or attestation) as consensus signed it, for block
// id at height.
func (p Precommit) Vote(height uint64, id consensus.BlockID) *consensus.Vote {
	t := consensus.Precommit
	if p.Attested {
		t = consensus.Attestation
	}
	return &consensus.Vote{Type: t, Height: height, Round: p.Round, BlockID: id,
		Validator: p.Validator, Extension: p.Ext, Signature: p.Signature}
}

// SubRef references one upload: the hash of its sealed shares and its
// envelope (exactly one).
type SubRef struct {
	CTHash    [32]byte
	Envelopes []ledger.Envelope
}

// blockVersion 7 carries attestations among the precommits (Precommit.Attested); 6 carries a validator-set change (Block.SetChange); 5 carries a state root (Block.StateRoot); 4 carries score consents (and version-5 envelopes); version
// 3 referenced sealed uploads and carried version-2 extensions (pieces and
// acks); version 2 referenced client ciphertexts, version 1 carried bare
// extensions a proposer could forge.
const blockVersion = 7

// Limits on what one block may carry.
const (
	MaxBlockSubs      = 256
	MaxBlockTransfers = 1024
	MaxBlockOpens     = 64
	MaxBlockConsents  = 64
	// MaxSetChangeBytes bounds a block's validator-set change.
	MaxSetChangeBytes = 64 << 10
)

// Encode returns the canonical encoding.
func (b *Block) Encode() []byte {
	var e wire.Writer
	e.U8(blockVersion)
	e.U64(b.Height)
	e.U64(b.TimeMs)
	e.U32(uint32(len(b.LastCommit)))
	for _, x := range b.LastCommit {
		e.U32(uint32(x.Validator))
		e.U32(uint32(x.Round))
		e.Bytes(x.Ext)
		e.Bytes(x.Signature)
		e.Bool(x.Attested)
	}
	e.U32(uint32(len(b.Subs)))
	for _, s := range b.Subs {
		e.B = append(e.B, s.CTHash[:]...)
		e.U32(uint32(len(s.Envelopes)))
		for i := range s.Envelopes {
			eb, _ := s.Envelopes[i].MarshalBinary()
			e.Bytes(eb)
		}
	}
	e.U32(uint32(len(b.Opens)))
	for _, o := range b.Opens {
		e.Bytes(o.SignPub)
		e.U8(uint8(o.Kind))
		e.Bytes(o.Sig)
	}
	e.U32(uint32(len(b.Consents)))
	for i := range b.Consents {
		cb, _ := b.Consents[i].MarshalBinary()
		e.Bytes(cb)
	}
	e.Fixed(b.StateRoot[:])
	e.Bytes(b.SetChange)
	return e.B
}

// DecodeBlock decodes a block value.
func DecodeBlock(p []byte) (*Block, error) {
	d := wire.NewReader(p, ErrBlock)
	if v := d.U8(); d.Err == nil && v != blockVersion {
		return nil, fmt.Errorf("%w: version %d, this node reads %d (a data directory written by an older zkbank must be reset)", ErrBlock, v, blockVersion)
	}
	b := &Block{Height: d.U64(), TimeMs: d.U64()}
	n := d.Count(64)
	for i := 0; i < n && d.Err == nil; i++ {
		b.LastCommit = append(b.LastCommit, Precommit{Validator: int(d.U32()), Round: consensus.Round(int32(d.U32())), Ext: d.Bytes(64 << 20), Signature: d.Bytes(128), Attested: d.Bool()})
	}
	n = d.Count(MaxBlockSubs)
	total := 0
	for i := 0; i < n && d.Err == nil; i++ {
		var s SubRef
		copy(s.CTHash[:], d.Fixed(32))
		m := d.Count(ledger.MaxEnvelopes)
		total += m
		if total > MaxBlockTransfers {
			return nil, fmt.Errorf("%w: more than %d transfers", ErrBlock, MaxBlockTransfers)
		}
		for j := 0; j < m && d.Err == nil; j++ {
			var env ledger.Envelope
			eb := d.Bytes(1 << 12)
			if d.Err != nil {
				break
			}
			if err := env.UnmarshalBinary(eb); err != nil {
				return nil, fmt.Errorf("%w: envelope: %w", ErrBlock, err)
			}
			s.Envelopes = append(s.Envelopes, env)
		}
		b.Subs = append(b.Subs, s)
	}
	n = d.Count(MaxBlockOpens)
	for i := 0; i < n && d.Err == nil; i++ {
		b.Opens = append(b.Opens, Open{SignPub: d.Bytes(64), Kind: ledger.AccountKind(d.U8()), Sig: d.Bytes(128)})
	}
	n = d.Count(MaxBlockConsents)
	for i := 0; i < n && d.Err == nil; i++ {
		cb := d.Bytes(1 << 10)
		if d.Err != nil {
			break
		}
		var c ledger.Consent
		if err := c.UnmarshalBinary(cb); err != nil {
			return nil, fmt.Errorf("%w: consent: %w", ErrBlock, err)
		}
		b.Consents = append(b.Consents, c)
	}
	copy(b.StateRoot[:], d.Fixed(32))
	if sc := d.Bytes(MaxSetChangeBytes); len(sc) > 0 {
		b.SetChange = append([]byte(nil), sc...)
	}
	if err := d.Done(); err != nil {
		return nil, err
	}
	return b, nil
}

// Hash is the hash consensus uses for the value.
func Hash(value []byte) [32]byte { return sha256.Sum256(value) }

// Ext is a validator's precommit extension for a block. It carries two
// stages of the pipeline (docs/PROTOCOL.md, "Pipeline"):
//
//   - for this block: the hash of every piece ciphertext this validator
//     computed for the block's groups and their credits
//     (ledger.EncryptPieceBatch, ledger.EncryptCreditBatch), and the
//     ids of transfers waiting in its pool whose sealed box it opened (acks:
//     a block may include a transfer only if N-f validators acked it);
//   - for the block before: the digest of its check ciphertexts, evaluated on
//     the pieces this block's carried precommits decided (its proof of
//     homomorphic work), and its decryption shares of every batch's checks.
type Ext struct {
	Height uint64
	Block  [32]byte
	Acks   [][32]byte
	Pieces []PieceAttest // sorted by (group, piece), at most one each
	Digest [32]byte      // checks of block Height-1 (zero if none)
	Shares [][2][]byte   // per batch of block Height-1: booleanness share, equation share
}

// PieceAttest is a holder's hash of its ciphertext of one piece of one part
// of the block, by attestation index (Group): indexes below the number of
// groups are the groups' batches (a shard's transfers with the same ack set:
// chain/app.go layoutOf); the ones after are the payment groups' credit
// ciphertexts (ledger.EncryptCreditBatch), in group order.
type PieceAttest struct {
	Group uint32
	Piece uint32
	Hash  [32]byte
}

// Limits on an extension.
const (
	MaxAcks   = 4096
	maxPieces = 4 * MaxBlockSubs * ledger.MaxPieces
)

const extVersion = 3

// Encode returns the canonical encoding.
func (x *Ext) Encode() []byte {
	var e wire.Writer
	e.U8(extVersion)
	e.U64(x.Height)
	e.Fixed(x.Block[:])
	e.U32(uint32(len(x.Acks)))
	for _, a := range x.Acks {
		e.Fixed(a[:])
	}
	e.U32(uint32(len(x.Pieces)))
	for _, p := range x.Pieces {
		e.U32(p.Group)
		e.U32(p.Piece)
		e.Fixed(p.Hash[:])
	}
	e.Fixed(x.Digest[:])
	e.U32(uint32(len(x.Shares)))
	for _, s := range x.Shares {
		e.Bytes(s[0])
		e.Bytes(s[1])
	}
	return e.B
}

// DecodeExt decodes an extension.
func DecodeExt(p []byte) (*Ext, error) {
	d := wire.NewReader(p, ErrBlock)
	if v := d.U8(); d.Err == nil && v != extVersion {
		return nil, fmt.Errorf("%w: extension version %d", ErrBlock, v)
	}
	x := &Ext{Height: d.U64()}
	copy(x.Block[:], d.Fixed(32))
	n := d.Count(MaxAcks)
	for i := 0; i < n && d.Err == nil; i++ {
		var a [32]byte
		copy(a[:], d.Fixed(32))
		x.Acks = append(x.Acks, a)
	}
	n = d.Count(maxPieces)
	for i := 0; i < n && d.Err == nil; i++ {
		pa := PieceAttest{Group: d.U32(), Piece: d.U32()}
		copy(pa.Hash[:], d.Fixed(32))
		if i > 0 && d.Err == nil {
			if prev := x.Pieces[i-1]; prev.Group > pa.Group || prev.Group == pa.Group && prev.Piece >= pa.Piece {
				return nil, fmt.Errorf("%w: extension pieces out of order", ErrBlock)
			}
		}
		x.Pieces = append(x.Pieces, pa)
	}
	copy(x.Digest[:], d.Fixed(32))
	n = d.Count(4 * MaxBlockSubs)
	for i := 0; i < n && d.Err == nil; i++ {
		x.Shares = append(x.Shares, [2][]byte{d.Bytes(1 << 20), d.Bytes(1 << 20)})
	}
	if err := d.Done(); err != nil {
		return nil, err
	}
	return x, nil
}
