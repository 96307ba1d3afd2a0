package ledger

import (
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/schemes/bgv"
)

// Units and limits. Amounts and balances are integer minor units (cents).
const (
	// AmountBits is the width of every amount and every balance.
	AmountBits = 32
	// MaxAmount is the largest amount or balance the ledger can represent.
	MaxAmount = 1<<AmountBits - 1
	// MaxSupply bounds the sum of all balances. Soundness of the overdraft
	// check needs every balance below 2^32 (see docs/PROTOCOL.md), which the
	// ledger guarantees by capping total supply at genesis: transfers conserve it.
	MaxSupply = MaxAmount
)

// Ciphertext levels used by the validation circuit (see docs/PROTOCOL.md §Levels).
const (
	LevelUpload  = 4 // wallet uploads: isolation mask, then rescale
	LevelChecked = 3 // isolated batch: booleanness, credit baby steps
	LevelState   = 2 // shard state and the balance equation
	LevelDecrypt = 1 // everything threshold-decrypted or re-encrypted
)

// ParamSet is a named, reviewed parameter set. Only named sets are accepted on
// the wire, so two parties can never silently disagree on parameters.
type ParamSet struct {
	Name              string
	LogN              int
	LogQ              []int
	LogP              []int
	PlaintextModulus  uint64
	SecurityLogQPMax  int // HE-standard bound on log2(QP) for 128-bit security at this LogN (ternary secret)
	SmudgingLogLambda int // statistical security of noise flooding, in bits
}

// ZKB128 is the default parameter set: N = 2^14, logQP = 414 <= 438 (128-bit
// security by the HE standard for ternary secrets), t ~ 2^40 prime with
// t = 1 mod 2^15 so every one of the 16384 slots is an independent Z_t lane.
var ZKB128 = ParamSet{
	Name:              "zkb128",
	LogN:              14,
	LogQ:              []int{60, 60, 58, 58, 58},
	LogP:              []int{60, 60},
	PlaintextModulus:  1099512938497,
	SecurityLogQPMax:  438,
	SmudgingLogLambda: 40,
}

// ErrParams is returned for unknown or unsafe parameter sets.
var ErrParams = errors.New("ledger: bad parameters")

// ParamSetByName returns a named parameter set.
func ParamSetByName(name string) (ParamSet, error) {
	switch name {
	case ZKB128.Name:
		return ZKB128, nil
	}
	return ParamSet{}, fmt.Errorf("%w: unknown parameter set %q", ErrParams, name)
}

// Params is an instantiated parameter set plus the slot layout derived from it.
type Params struct {
	Set   ParamSet
	BGV   bgv.Parameters
	Slots int // total slots (N)
	Rows  int // BGV has 2 rows of N/2 slots
	Lanes int // lanes per shard = accounts per shard = transfers per batch
	Bits  int // slots per lane per row = AmountBits

	shapeOnce  sync.Once
	shapeCache *shapes
	pieceTools sync.Pool // *pieceTools: an encoder and a basis extender for EncryptPieceBatch
}

// NewParams instantiates a parameter set, checking the security bound and the
// plaintext-modulus conditions the checks rely on.
func NewParams(set ParamSet) (*Params, error) {
	lit := bgv.ParametersLiteral{
		LogN:             set.LogN,
		LogQ:             set.LogQ,
		LogP:             set.LogP,
		PlaintextModulus: set.PlaintextModulus,
	}
	p, err := bgv.NewParametersFromLiteral(lit)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrParams, set.Name, err)
	}
	if lq := p.LogQP(); lq > float64(set.SecurityLogQPMax) {
		return nil, fmt.Errorf("%w: %s: logQP %.1f exceeds the 128-bit bound %d", ErrParams, set.Name, lq, set.SecurityLogQPMax)
	}
	// Soundness of the range argument: a recomposed 32-bit value plus another
	// minus a balance lies in (-2^32, 2^33); it is 0 mod t only if it is 0.
	if t := set.PlaintextModulus; t <= 1<<(AmountBits+1) {
		return nil, fmt.Errorf("%w: %s: plaintext modulus %d must exceed 2^%d", ErrParams, set.Name, t, AmountBits+1)
	}
	if p.MaxLevel() < LevelUpload {
		return nil, fmt.Errorf("%w: %s: needs %d levels", ErrParams, set.Name, LevelUpload+1)
	}
	n := p.MaxSlots()
	if n != 1<<set.LogN {
		return nil, fmt.Errorf("%w: %s: plaintext modulus does not split fully (slots %d)", ErrParams, set.Name, n)
	}
	pr := &Params{Set: set, BGV: p, Slots: n, Rows: 2, Bits: AmountBits}
	pr.Lanes = n / (pr.Rows * pr.Bits)
	return pr, nil
}

// MustParams is NewParams for the compiled-in sets; it panics on a bug.
func MustParams(set ParamSet) *Params {
	p, err := NewParams(set)
	if err != nil {
		panic(err)
	}
	return p
}

// SecurityBits is a coarse reading of the HE-standard table for N=2^14
// ternary secrets; tests assert the configured set stays within it.
func (p *Params) LogQP() float64 { return p.BGV.LogQP() }

// Slot returns the slot index of (row, bit j, lane). Rotating left by Lanes
// moves bit j+1 onto bit j in every lane at once, which is what makes
// recomposition a log-depth rotation sum shared by all lanes.
func (p *Params) Slot(row, j, lane int) int {
	return row*(p.Slots/2) + j*p.Lanes + lane
}

// RowLen is the number of slots in one BGV row.
func (p *Params) RowLen() int { return p.Slots / 2 }

// log2 returns log2 of a power of two.
func log2(x int) int { return int(math.Round(math.Log2(float64(x)))) }

// galoisRotations lists the column rotations (left, in slots) the circuit
// needs: recomposition (Lanes * 2^m). The row swap is added separately.
// (Credits need none: validators place them in the receivers' lanes
// before encrypting, credit.go.)
func (p *Params) galoisRotations() []int {
	var r []int
	for m := 0; (1 << m) < p.Bits; m++ {
		r = append(r, p.Lanes<<m)
	}
	return r
}

// GaloisElements returns every Galois element whose key the ceremony must
// produce, in a fixed order.
func (p *Params) GaloisElements() []uint64 {
	var els []uint64
	for _, k := range p.galoisRotations() {
		els = append(els, p.BGV.GaloisElementForColRotation(k))
	}
	els = append(els, p.BGV.GaloisElementForRowRotation())
	return els
}

// evkParams are the levels evaluation keys are generated at: nothing rotates
// or relinearizes above LevelChecked, so keys stop there (smaller keys).
func (p *Params) evkParams() rlwe.EvaluationKeyParameters {
	lq, lp := LevelChecked, p.BGV.MaxLevelP()
	return rlwe.EvaluationKeyParameters{LevelQ: &lq, LevelP: &lp}
}
