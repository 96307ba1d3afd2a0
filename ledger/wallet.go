package ledger

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/schemes/bgv"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"
)

// OwnerKeys are an account owner's homomorphic key pair: validators re-encrypt
// the owner's balance to PK; only SK (kept on the owner's machine) decrypts it.
type OwnerKeys struct {
	SK *rlwe.SecretKey
	PK *rlwe.PublicKey
}

// NewOwnerKeys generates a fresh owner key pair.
func NewOwnerKeys(p *Params) *OwnerKeys {
	sk, pk := rlwe.NewKeyGenerator(p.BGV).GenKeyPairNew()
	return &OwnerKeys{SK: sk, PK: pk}
}

// OwnerKeysFromSeed derives an owner key pair from a secret seed (a wallet's
// ed25519 seed): the secret key is sampled, from Lattigo's own secret-key
// distribution, with a PRNG keyed by SHA-256 of a domain string and the seed,
// so a wallet stores 32 bytes instead of 3.6 MiB of keys. The public key is
// a fresh encryption of zero under that secret (any one serves: validators
// re-encrypt to the key a signed request names).
func OwnerKeysFromSeed(p *Params, seed []byte) (*OwnerKeys, error) {
	h := sha256.New()
	h.Write([]byte("zkbank/owner-key/v1\x00"))
	h.Write(seed)
	prng, err := sampling.NewKeyedPRNG(h.Sum(nil))
	if err != nil {
		return nil, fmt.Errorf("ledger: owner key PRNG: %w", err)
	}
	xs, err := ring.NewSampler(prng, p.BGV.RingQ(), p.BGV.Xs(), false)
	if err != nil {
		return nil, fmt.Errorf("ledger: owner key sampler: %w", err)
	}
	// As rlwe.KeyGenerator.GenSecretKey, with our sampler.
	sk := rlwe.NewSecretKey(p.BGV)
	rqp := p.BGV.RingQP().AtLevel(sk.LevelQ(), sk.LevelP())
	xs.AtLevel(sk.LevelQ()).Read(sk.Value.Q)
	if levelP := sk.LevelP(); levelP > -1 {
		rqp.ExtendBasisSmallNormAndCenter(sk.Value.Q, levelP, sk.Value.Q, sk.Value.P)
	}
	rqp.NTT(sk.Value, sk.Value)
	rqp.MForm(sk.Value, sk.Value)
	return &OwnerKeys{SK: sk, PK: rlwe.NewKeyGenerator(p.BGV).GenPublicKeyNew(sk)}, nil
}

// TransferSpec describes one transfer a wallet wants to make.
type TransferSpec struct {
	From    AccountID
	Lane    int // the sender account's lane in its shard
	Key     ed25519.PrivateKey
	To      AccountID
	Amount  uint64
	Balance uint64 // the sender's balance at Height, as the wallet decrypted it
	Height  uint64
	Nonce   uint64
}

// Builder builds uploads under the collective public key.
type Builder struct {
	p     *Params
	pk    *rlwe.PublicKey
	chain string
}

// NewBuilder returns a wallet-side transfer builder for a chain.
func NewBuilder(p *Params, collective *rlwe.PublicKey, chain string) *Builder {
	return &Builder{p: p, pk: collective, chain: chain}
}

// ErrInsufficientFunds is returned by the wallet before anything is sent: an
// honest wallet never uploads a transfer it knows would be rejected.
var ErrInsufficientFunds = fmt.Errorf("ledger: insufficient funds")

// EncodeLanes writes each transfer's amount bits (row 0) and new-balance bits
// (row 1) into its lane as y_j = 2^j * bit_j. Exported for tests and tools
// that need to build deliberately malformed uploads.
func (p *Params) EncodeLanes(vals []uint64, lane int, amount, newBalance uint64) {
	for j := 0; j < p.Bits; j++ {
		vals[p.Slot(0, j, lane)] = (amount >> j & 1) << j
		vals[p.Slot(1, j, lane)] = (newBalance >> j & 1) << j
	}
}

// EncryptSlots encrypts a slot vector at LevelUpload under the collective key.
func (b *Builder) EncryptSlots(vals []uint64) ([]byte, error) {
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

// Build makes one submission carrying every spec (a single transfer, or a
// bundle whose senders are distinct accounts of one shard held by this wallet).
func (b *Builder) Build(specs ...TransferSpec) (*Submission, error) {
	if len(specs) == 0 || len(specs) > b.p.Lanes {
		return nil, fmt.Errorf("%w: %d transfers in one upload", ErrMalformed, len(specs))
	}
	vals := make([]uint64, b.p.Slots)
	used := map[int]bool{}
	for _, s := range specs {
		if s.Amount > MaxAmount {
			return nil, fmt.Errorf("%w: amount %d exceeds %d", ErrMalformed, s.Amount, uint64(MaxAmount))
		}
		if s.Amount > s.Balance {
			return nil, fmt.Errorf("%w: balance %d, amount %d", ErrInsufficientFunds, s.Balance, s.Amount)
		}
		if s.From == s.To {
			return nil, &RejectError{Reason: RejectSelfTransfer}
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
func (b *Builder) Seal(ctb []byte, specs ...TransferSpec) *Submission {
	h := sha256.Sum256(ctb)
	sub := &Submission{Ciphertext: ctb}
	for _, s := range specs {
		e := Envelope{Chain: b.chain, From: s.From, To: s.To, Nonce: s.Nonce, Height: s.Height, CTHash: h}
		e.Sig = ed25519.Sign(s.Key, e.SigningBytes())
		sub.Envelopes = append(sub.Envelopes, e)
	}
	return sub
}

// DecryptBalance decrypts a re-encrypted balance ciphertext with the owner's
// secret key, on the owner's machine.
func (p *Params) DecryptBalance(owner *OwnerKeys, ct *rlwe.Ciphertext, lane int) (uint64, error) {
	dec := rlwe.NewDecryptor(p.BGV, owner.SK)
	pt := dec.DecryptNew(ct)
	vals := make([]uint64, p.Slots)
	if err := newEncoder(p).Decode(pt, vals); err != nil {
		return 0, fmt.Errorf("ledger: decode balance: %w", err)
	}
	return vals[p.Slot(0, 0, lane)], nil
}

// GenesisState encrypts a shard's initial balances (lane -> balance) at the
// state level and scale. Genesis balances are public; what stays confidential
// is every change after them. (A Book starts from trivialState instead, which
// every validator derives identically without exchanging ciphertexts.)
func (e *Engine) GenesisState(pk *rlwe.PublicKey, balances map[int]uint64) (*rlwe.Ciphertext, error) {
	pt, err := e.statePlaintext(balances)
	if err != nil {
		return nil, err
	}
	return rlwe.NewEncryptor(e.p.BGV, pk).EncryptNew(pt)
}
