package ledger

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/schemes/bgv"
)

// builder encrypts transfers directly under the collective key: what a
// validator's summed piece ciphertexts amount to, used by engine-level tests
// to drive the circuit with arbitrary (including hostile) slot values. No
// shipped code lets a client submit a ciphertext.
type builder struct {
	p     *Params
	pk    *rlwe.PublicKey
	chain string
}

func newBuilder(p *Params, collective *rlwe.PublicKey, chain string) *builder {
	return &builder{p: p, pk: collective, chain: chain}
}

// testSub is a test upload: a ciphertext and the envelopes that sign it.
type testSub struct {
	Envelopes  []Envelope
	Ciphertext []byte
}

// EncryptSlots encrypts a slot vector at LevelUpload under the collective key.
func (b *builder) EncryptSlots(vals []uint64) ([]byte, error) {
	pt := bgv.NewPlaintext(b.p.BGV, LevelUpload)
	pt.Scale = b.p.BGV.NewScale(1)
	if err := newEncoder(b.p).Encode(vals, pt); err != nil {
		return nil, fmt.Errorf("ledger: encode: %w", err)
	}
	ct, err := rlwe.NewEncryptor(b.p.BGV, b.pk).EncryptNew(pt)
	if err != nil {
		return nil, fmt.Errorf("ledger: encrypt: %w", err)
	}
	return ct.MarshalBinary()
}

// Build packs every spec into one ciphertext.
func (b *builder) Build(specs ...TransferSpec) (*testSub, error) {
	if len(specs) == 0 || len(specs) > b.p.Lanes {
		return nil, fmt.Errorf("%w: %d transfers in one upload", ErrMalformed, len(specs))
	}
	vals := make([]uint64, b.p.Slots)
	used := map[int]bool{}
	for _, s := range specs {
		if err := s.check(); err != nil {
			return nil, err
		}
		if s.Lane < 0 || s.Lane >= b.p.Lanes || used[s.Lane] {
			return nil, fmt.Errorf("%w: lane %d", ErrMalformed, s.Lane)
		}
		used[s.Lane] = true
		b.p.EncodeLanes(vals, s.Lane, s.Amount, s.Balance-s.Amount)
	}
	ctb, err := b.EncryptSlots(vals)
	if err != nil {
		return nil, err
	}
	return b.Seal(ctb, specs...), nil
}

// Seal signs envelopes for an already-encrypted ciphertext.
func (b *builder) Seal(ctb []byte, specs ...TransferSpec) *testSub {
	h := sha256.Sum256(ctb)
	sub := &testSub{Ciphertext: ctb}
	for _, s := range specs {
		e := Envelope{Chain: b.chain, From: s.From, To: s.To, Nonce: s.Nonce, Prev: s.Prev, Height: s.Height, CTHash: h}
		e.Sig = ed25519.Sign(s.Key, e.SigningBytes())
		sub.Envelopes = append(sub.Envelopes, e)
	}
	return sub
}

// credit builds the decided credit of a payment of amount from lane source
// to (shard, lane): the amount at row-0 slot 0 of the receiver's lane, one
// fresh encryption at LevelUpload, as validators' credit pieces sum to.
func (b *builder) credit(t testing.TB, source int, shard uint32, lane int, amount uint64) Credit {
	t.Helper()
	ct := b.creditCT(t, map[int]uint64{b.p.Slot(0, 0, lane): amount})
	return Credit{SourceLane: source, TargetShard: shard, CT: ct, Slot: b.p.Slot(0, 0, lane)}
}

// creditCT encrypts credit values by slot at LevelUpload.
func (b *builder) creditCT(t testing.TB, at map[int]uint64) *rlwe.Ciphertext {
	t.Helper()
	vals := make([]uint64, b.p.Slots)
	for s, v := range at {
		vals[s] = v
	}
	raw, err := b.EncryptSlots(vals)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := b.p.DecodeUpload(raw)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}
