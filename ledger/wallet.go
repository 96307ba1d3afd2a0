package ledger

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"fmt"
	"io"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/ring"
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
	From   AccountID
	Lane   int // the sender account's lane in its shard (engine tests only)
	Key    ed25519.PrivateKey
	To     AccountID
	Amount uint64
	// Balance is what the operation spends from: for a payment the sender's
	// available balance after its earlier operations (which the wallet
	// tracks); for an apply (To == From) the pending balance at Height.
	Balance uint64
	// Height: for an apply the height Balance was read at; for a payment a
	// recent height (it expires DefaultWindow heights later).
	Height uint64
	// Prev is the ID of the account's last accepted operation (zero for
	// none) whose resulting available balance this one spends from.
	Prev [32]byte

	Nonce uint64

	// Payees makes the payment a pay-many: one debit of the sum, one credit
	// per payee (2 to MaxPayees of them, distinct, not the sender). To and
	// Amount are then unused.
	Payees []Payee

	// Lending (lending.go). Kind OpCheck: a decision-only score check "my
	// score at Height is at least Min" addressed to the lender To under
	// Policy; Balance is then the owner's score at Height and Amount is
	// unused. Kind OpFund: a loan of Amount to To with installments due at
	// Due, answering the borrower's application Loan, which must have
	// proved at least Min under Policy (0 and zero for a consent's). Kind OpRepay: a
	// repayment of Amount on loan Loan to its lender To.
	Kind   OpKind
	Min    uint64
	Policy [32]byte
	Due    []uint64
	Loan   [32]byte
}

// ErrBelowMinimum is returned by the wallet before anything is sent: the
// owner's score is below the lender's minimum, so a check could only fail
// (and a failed check would publish how far below it is).
var ErrBelowMinimum = fmt.Errorf("ledger: score below the lender's minimum")

// ErrScoreRange: the score exceeds the minimum by 2^32 or more, more than a
// check can prove; ask with a higher minimum.
var ErrScoreRange = fmt.Errorf("ledger: score too far above the minimum for one check")

// Payee is one payee of a pay-many and its amount.
type Payee struct {
	To     AccountID
	Amount uint64
}

// Total is what the operation debits: Amount, or the sum of a pay-many's.
func (s TransferSpec) Total() uint64 {
	if len(s.Payees) == 0 {
		return s.Amount
	}
	var t uint64
	for _, p := range s.Payees {
		t += p.Amount
	}
	return t
}

// ManyValues returns the slot values of a pay-many (ValuesFor(len(amounts))):
// the payer's lane (row 0 zero: validators write the total there; row 1 the
// new balance's bits) then one lane per payee (row 0 its amount's bits,
// row 1 zero).
func ManyValues(amounts []uint64, newBalance uint64) []uint64 {
	v := make([]uint64, ValuesFor(len(amounts)))
	copy(v, TransferValues(0, newBalance))
	for i, a := range amounts {
		copy(v[(i+1)*SlotValues:], TransferValues(a, 0))
	}
	return v
}

// Dealer builds a wallet's uploads: sealed shares of each transfer's slot
// values, one box per validator (sealed.go). A wallet never encrypts under
// the collective key and needs no homomorphic keys to send.
type Dealer struct {
	p     *Params
	sh    *Sharing
	keys  []*ecdh.PublicKey
	chain string
	rnd   io.Reader
}

// NewDealer returns a wallet-side transfer builder for a chain whose
// committee has the given sharing layout and validators' sealing keys
// (SealPublicKey of each validator's consensus key, in validator order).
func NewDealer(p *Params, sh *Sharing, sealKeys []*ecdh.PublicKey, chain string) (*Dealer, error) {
	if sh == nil || len(sealKeys) != sh.N {
		return nil, fmt.Errorf("%w: sealing keys do not match the committee", ErrParams)
	}
	return &Dealer{p: p, sh: sh, keys: sealKeys, chain: chain, rnd: rand.Reader}, nil
}

// ErrInsufficientFunds is returned by the wallet before anything is sent: an
// honest wallet never uploads a transfer it knows would be rejected.
var ErrInsufficientFunds = fmt.Errorf("ledger: insufficient funds")

// EncodeLanes writes each transfer's amount bits (row 0) and new-balance bits
// (row 1) into its lane as y_j = 2^j * bit_j: the slot layout the circuit
// reads (TransferValues is one lane's values in that layout).
func (p *Params) EncodeLanes(vals []uint64, lane int, amount, newBalance uint64) {
	for j := 0; j < p.Bits; j++ {
		vals[p.Slot(0, j, lane)] = (amount >> j & 1) << j
		vals[p.Slot(1, j, lane)] = (newBalance >> j & 1) << j
	}
}

// Build makes the upload of one transfer, refusing what an honest wallet
// knows would be rejected.
func (d *Dealer) Build(s TransferSpec) (*Submission, error) {
	if s.Kind == OpCheck {
		if s.Balance < s.Min {
			return nil, fmt.Errorf("%w: score %d, minimum %d", ErrBelowMinimum, s.Balance, s.Min)
		}
		if s.Balance-s.Min > MaxAmount {
			return nil, ErrScoreRange
		}
		vals, err := AtLeastValues(s.Balance, s.Min)
		if err != nil {
			return nil, err
		}
		return d.BuildValues(s, vals)
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	if len(s.Payees) > 0 {
		amounts := make([]uint64, len(s.Payees))
		for i, p := range s.Payees {
			amounts[i] = p.Amount
		}
		return d.BuildValues(s, ManyValues(amounts, s.Balance-s.Total()))
	}
	return d.BuildValues(s, TransferValues(s.Amount, s.Balance-s.Amount))
}

// check refuses a transfer an honest wallet knows would be rejected.
func (s TransferSpec) check() error {
	if len(s.Payees) > 0 {
		if len(s.Payees) < 2 || len(s.Payees) > MaxPayees {
			return fmt.Errorf("%w: a pay-many has 2 to %d payees, not %d", ErrMalformed, MaxPayees, len(s.Payees))
		}
		seen := map[AccountID]bool{s.From: true}
		for _, p := range s.Payees {
			if seen[p.To] {
				return fmt.Errorf("%w: payee %s repeated or the payer itself", ErrMalformed, p.To.Short())
			}
			seen[p.To] = true
			if p.Amount > MaxAmount {
				return fmt.Errorf("%w: amount %d exceeds %d", ErrMalformed, p.Amount, uint64(MaxAmount))
			}
		}
		if t := s.Total(); t > s.Balance {
			return fmt.Errorf("%w: balance %d, total %d", ErrInsufficientFunds, s.Balance, t)
		}
		return nil
	}
	if s.Amount > MaxAmount {
		return fmt.Errorf("%w: amount %d exceeds %d", ErrMalformed, s.Amount, uint64(MaxAmount))
	}
	if s.Amount > s.Balance {
		return fmt.Errorf("%w: balance %d, amount %d", ErrInsufficientFunds, s.Balance, s.Amount)
	}
	return nil
}

// BuildValues deals arbitrary slot values (SlotValues of them) for a
// transfer: what tools and tests use to build deliberately invalid
// transfers, which the validators' checks must reject.
func (d *Dealer) BuildValues(s TransferSpec, values []uint64) (*Submission, error) {
	e := Envelope{Chain: d.chain, From: s.From, To: s.To, Nonce: s.Nonce, Prev: s.Prev, Height: s.Height,
		Kind: s.Kind, Min: s.Min, Policy: s.Policy, Due: append([]uint64(nil), s.Due...), Loan: s.Loan}
	if len(e.Due) == 0 {
		e.Due = nil
	}
	if len(s.Payees) > 0 {
		e.To = s.Payees[0].To
		for _, p := range s.Payees[1:] {
			e.More = append(e.More, p.To)
		}
	}
	if !e.kindWellFormed() {
		return nil, fmt.Errorf("%w: %s operation fields (a check, a loan or a repayment names one other account; a loan's installments are strictly increasing, after its height)", ErrMalformed, s.Kind)
	}
	bind := SealBinding{Chain: d.chain, From: s.From, Nonce: s.Nonce, Values: e.ValueCount()}
	st, err := d.p.Deal(d.sh, d.keys, bind, values, d.rnd)
	if err != nil {
		return nil, err
	}
	raw, err := st.MarshalBinary()
	if err != nil {
		return nil, err
	}
	e.CTHash = sha256.Sum256(raw)
	e.Sig = ed25519.Sign(s.Key, e.SigningBytes())
	return &Submission{Envelopes: []Envelope{e}, Sealed: raw}, nil
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

// DecryptBalances decrypts a re-encrypted two-balance ciphertext
// (Engine.BalancesFromRecomposed) with the owner's secret key: the available
// and the pending balance.
func (p *Params) DecryptBalances(owner *OwnerKeys, ct *rlwe.Ciphertext, lane int) (avail, pending uint64, err error) {
	dec := rlwe.NewDecryptor(p.BGV, owner.SK)
	pt := dec.DecryptNew(ct)
	vals := make([]uint64, p.Slots)
	if err := newEncoder(p).Decode(pt, vals); err != nil {
		return 0, 0, fmt.Errorf("ledger: decode balance: %w", err)
	}
	return vals[p.Slot(0, 0, lane)], vals[p.Slot(0, 1, lane)], nil
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
