package node

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/zkbank/zkbank/ledger"
)

// ErrBlock reports a block value that does not decode or is inconsistent.
var ErrBlock = errors.New("node: bad block")

// Block is the value consensus orders at each height. It carries no
// ciphertexts: transfers are referenced by the hash of their upload, which
// validators hold from the mempool (or fetch from a peer). The precommit
// extensions of the previous height, chosen by the proposer, fix which
// decryption shares decide the previous height's transfers.
type Block struct {
	Height  uint64
	TimeMs  uint64 // proposer's wall clock, informational only
	LastExt []ValidatorExt
	Subs    []SubRef
	Opens   []OpenOp
}

// ValidatorExt is one validator's precommit extension.
type ValidatorExt struct {
	Validator int
	Ext       []byte
}

// SubRef references one upload: the ciphertext hash and its envelopes.
type SubRef struct {
	CTHash    [32]byte
	Envelopes []ledger.Envelope
}

// OpenOp opens an account (signed by the account's key).
type OpenOp struct {
	SignPub []byte
	Kind    ledger.AccountKind
	Sig     []byte
}

const blockVersion = 1

// Limits on what one block may carry.
const (
	MaxBlockSubs      = 256
	MaxBlockTransfers = 1024
	MaxBlockOpens     = 64
)

type enc struct{ b []byte }

func (e *enc) u8(v uint8)   { e.b = append(e.b, v) }
func (e *enc) u32(v uint32) { e.b = binary.BigEndian.AppendUint32(e.b, v) }
func (e *enc) u64(v uint64) { e.b = binary.BigEndian.AppendUint64(e.b, v) }
func (e *enc) bytes(p []byte) {
	e.u32(uint32(len(p)))
	e.b = append(e.b, p...)
}

type dec struct {
	b   []byte
	err error
}

func (d *dec) take(n int) []byte {
	if d.err != nil || n < 0 || len(d.b) < n {
		if d.err == nil {
			d.err = fmt.Errorf("%w: truncated", ErrBlock)
		}
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}
func (d *dec) u8() uint8 {
	if p := d.take(1); p != nil {
		return p[0]
	}
	return 0
}
func (d *dec) u32() uint32 {
	if p := d.take(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}
func (d *dec) u64() uint64 {
	if p := d.take(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}
func (d *dec) bytes(max int) []byte {
	n := d.u32()
	if d.err == nil && int(n) > max {
		d.err = fmt.Errorf("%w: field of %d bytes exceeds %d", ErrBlock, n, max)
		return nil
	}
	return d.take(int(n))
}
func (d *dec) count(max int) int {
	n := d.u32()
	if d.err == nil && int(n) > max {
		d.err = fmt.Errorf("%w: %d items exceed %d", ErrBlock, n, max)
		return 0
	}
	return int(n)
}

// Encode returns the canonical encoding.
func (b *Block) Encode() []byte {
	var e enc
	e.u8(blockVersion)
	e.u64(b.Height)
	e.u64(b.TimeMs)
	e.u32(uint32(len(b.LastExt)))
	for _, x := range b.LastExt {
		e.u32(uint32(x.Validator))
		e.bytes(x.Ext)
	}
	e.u32(uint32(len(b.Subs)))
	for _, s := range b.Subs {
		e.b = append(e.b, s.CTHash[:]...)
		e.u32(uint32(len(s.Envelopes)))
		for i := range s.Envelopes {
			eb, _ := s.Envelopes[i].MarshalBinary()
			e.bytes(eb)
		}
	}
	e.u32(uint32(len(b.Opens)))
	for _, o := range b.Opens {
		e.bytes(o.SignPub)
		e.u8(uint8(o.Kind))
		e.bytes(o.Sig)
	}
	return e.b
}

// DecodeBlock decodes a block value.
func DecodeBlock(p []byte) (*Block, error) {
	d := dec{b: p}
	if v := d.u8(); d.err == nil && v != blockVersion {
		return nil, fmt.Errorf("%w: version %d", ErrBlock, v)
	}
	b := &Block{Height: d.u64(), TimeMs: d.u64()}
	n := d.count(64)
	for i := 0; i < n && d.err == nil; i++ {
		b.LastExt = append(b.LastExt, ValidatorExt{Validator: int(d.u32()), Ext: d.bytes(64 << 20)})
	}
	n = d.count(MaxBlockSubs)
	total := 0
	for i := 0; i < n && d.err == nil; i++ {
		var s SubRef
		copy(s.CTHash[:], d.take(32))
		m := d.count(ledger.MaxEnvelopes)
		total += m
		if total > MaxBlockTransfers {
			return nil, fmt.Errorf("%w: more than %d transfers", ErrBlock, MaxBlockTransfers)
		}
		for j := 0; j < m && d.err == nil; j++ {
			var env ledger.Envelope
			eb := d.bytes(1 << 12)
			if d.err != nil {
				break
			}
			if err := env.UnmarshalBinary(eb); err != nil {
				return nil, fmt.Errorf("%w: envelope: %w", ErrBlock, err)
			}
			s.Envelopes = append(s.Envelopes, env)
		}
		b.Subs = append(b.Subs, s)
	}
	n = d.count(MaxBlockOpens)
	for i := 0; i < n && d.err == nil; i++ {
		b.Opens = append(b.Opens, OpenOp{SignPub: d.bytes(64), Kind: ledger.AccountKind(d.u8()), Sig: d.bytes(128)})
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrBlock, len(d.b))
	}
	return b, nil
}

// Hash is the hash consensus uses for the value.
func Hash(value []byte) [32]byte { return sha256.Sum256(value) }

// Ext is a validator's precommit extension for a block: the digest of its
// check ciphertexts (its proof of homomorphic work) and its decryption
// shares of every batch's checks.
type Ext struct {
	Height uint64
	Block  [32]byte
	Digest [32]byte
	Shares [][2][]byte // per batch: encoded booleanness share, equation share
}

// Encode returns the canonical encoding.
func (x *Ext) Encode() []byte {
	var e enc
	e.u8(1)
	e.u64(x.Height)
	e.b = append(e.b, x.Block[:]...)
	e.b = append(e.b, x.Digest[:]...)
	e.u32(uint32(len(x.Shares)))
	for _, s := range x.Shares {
		e.bytes(s[0])
		e.bytes(s[1])
	}
	return e.b
}

// DecodeExt decodes an extension.
func DecodeExt(p []byte) (*Ext, error) {
	d := dec{b: p}
	if v := d.u8(); d.err == nil && v != 1 {
		return nil, fmt.Errorf("%w: extension version %d", ErrBlock, v)
	}
	x := &Ext{Height: d.u64()}
	copy(x.Block[:], d.take(32))
	copy(x.Digest[:], d.take(32))
	n := d.count(4 * MaxBlockSubs)
	for i := 0; i < n && d.err == nil; i++ {
		x.Shares = append(x.Shares, [2][]byte{d.bytes(1 << 20), d.bytes(1 << 20)})
	}
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: trailing bytes in extension", ErrBlock)
	}
	return x, nil
}
