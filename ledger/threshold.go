package ledger

import (
	"errors"
	"fmt"
	"github.com/zkbank/zkbank/internal/wire"
	"math"
	"math/big"
	"sort"
	"sync"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring"
)

// Threshold decryption with subset-independent shares.
//
// Lattigo's Combiner turns a Shamir share into an additive share for one
// agreed set of t parties, which a BFT protocol cannot know in advance. We
// instead let every validator publish c1*sh_i + e_i with its raw Shamir share
// sh_i; any t of them combine with integer Lagrange coefficients D*lambda_i
// (D clears every denominator for the committee size), giving D*(c0 + c1*s)
// plus noise. Multiplying by D^-1 mod t recovers the plaintext. Because the
// shares do not depend on who else answers, more than t shares can be
// cross-checked (two disjoint-enough subsets must agree).

// ErrShare is returned for a malformed, unknown or inconsistent share.
var ErrShare = errors.New("ledger: bad decryption share")

// Committee describes a t-of-N validator committee. Validator i (0-based)
// holds the Shamir share evaluated at point i+1.
type Committee struct {
	N, T  int
	Delta *big.Int // clears the denominators of all Lagrange coefficients at 0
}

// NewCommittee validates N and T and precomputes D.
func NewCommittee(n, t int) (*Committee, error) {
	if n < 1 || t < 1 || t > n || n > 16 {
		return nil, fmt.Errorf("%w: committee %d-of-%d", ErrParams, t, n)
	}
	c := &Committee{N: n, T: t, Delta: big.NewInt(1)}
	// D is the lcm of the reduced denominators of lambda_i over every t-subset.
	d := big.NewInt(1)
	c.forEachSubset(func(idx []int) {
		for a, i := range idx {
			r := new(big.Rat).SetInt64(1)
			for b, j := range idx {
				if a != b {
					r.Mul(r, big.NewRat(int64(j+1), int64(j-i)))
				}
			}
			d = lcm(d, r.Denom())
		}
	})
	c.Delta = d
	return c, nil
}

// forEachSubset calls f with every t-subset of validator indices, ascending.
func (c *Committee) forEachSubset(f func(idx []int)) { Subsets(c.N, c.T, f) }

// Subsets calls f with every k-subset of 0..n-1 in lexicographic order. f
// must not keep the slice.
func Subsets(n, k int, f func(idx []int)) {
	if k < 0 || k > n {
		return
	}
	idx := make([]int, k)
	var rec func(start, d int)
	rec = func(start, d int) {
		if d == k {
			f(idx)
			return
		}
		for i := start; i < n; i++ {
			idx[d] = i
			rec(i+1, d+1)
		}
	}
	rec(0, 0)
}

func lcm(a, b *big.Int) *big.Int {
	g := new(big.Int).GCD(nil, nil, a, b)
	return new(big.Int).Mul(new(big.Int).Div(a, g), b)
}

// Point is the Shamir evaluation point of validator index i.
func Point(i int) mhe.ShamirPublicPoint { return mhe.ShamirPublicPoint(i + 1) }

// coefficients returns D*lambda_i for the given distinct validator indices.
func (c *Committee) coefficients(idx []int) ([]*big.Int, error) {
	out := make([]*big.Int, len(idx))
	for a, i := range idx {
		num := new(big.Rat).SetInt64(1)
		xi := int64(i + 1)
		for b, j := range idx {
			if a == b {
				continue
			}
			xj := int64(j + 1)
			num.Mul(num, big.NewRat(xj, xj-xi))
		}
		num.Mul(num, new(big.Rat).SetInt(c.Delta))
		if !num.IsInt() {
			return nil, fmt.Errorf("%w: Lagrange denominator not cleared for %v", ErrParams, idx)
		}
		out[a] = new(big.Int).Set(num.Num())
	}
	return out, nil
}

// coefficientL1 is sum |D*lambda_i| for the worst subset: the factor by which
// smudging noise grows in a combination, used to check correctness bounds.
func (c *Committee) coefficientL1() float64 {
	f, _ := new(big.Float).SetInt(c.coefficientL1Int()).Float64()
	return f
}

// coefficientL1Int is coefficientL1, exactly.
func (c *Committee) coefficientL1Int() *big.Int {
	worst := new(big.Int)
	c.forEachSubset(func(idx []int) {
		co, err := c.coefficients(idx)
		if err != nil {
			return
		}
		s := new(big.Int)
		for _, v := range co {
			s.Add(s, new(big.Int).Abs(v))
		}
		if s.Cmp(worst) > 0 {
			worst = s
		}
	})
	return worst
}

// checkNoiseBound bounds the noise (infinity norm, in the MSB domain) of the
// ciphertexts the committee decrypts or re-encrypts while the states they
// read are fresh: all of them were rescaled to LevelDecrypt right before,
// leaving rounding noise ~2^6 standard deviation (measured: see
// TestNoiseOfDecryptedChecks). It is the least a committee's flooding must
// cover: NewDecryptor refuses a committee whose flooding.NoiseBound is
// smaller. An accepted committee's flooding covers far more, which is what
// lets states age (noise.go, MaxStateOps).
const checkNoiseBound = 1 << 12

// maxFloodLogB caps B: the sampler reads at most 16 bytes per coefficient.
const maxFloodLogB = 126

// flooding is the noise-flooding (smudging) distribution of decryption and
// re-encryption shares: every coefficient of the flooding term e is an
// integer uniform in [-B, B), B = 2^LogB, sampled exactly across the RNS
// primes (smudge.go). It floods ciphertext noise of infinity norm up to
// NoiseBound, in the MSB domain.
//
// Convention: B >= 2^lambda * sqrt(n) * NoiseBound for a committee of n
// parties and lambda = SmudgingLogLambda: the ratio the Gaussian smudging
// had between sigma and the noise bound. The sqrt(n) is for combinations: k
// shares combined with integer coefficients D*lambda_i (sum lambda_i = 1)
// have ||D*lambda||_2 >= D/sqrt(k) (Cauchy-Schwarz), and all n shares are
// public (they ride on precommits), so k is n, not t; the combined flooding
// has standard deviation at least D*B/sqrt(3n) = 2^lambda/sqrt(3) times the
// D-scaled noise bound. The margin is per coefficient: a uniform flood on 2B
// values shifted by delta is at statistical distance exactly |delta|/(2B)
// from itself, at most 2^-(lambda+1) for |delta| <= B/2^lambda (a Gaussian
// of sigma = B: about 0.4*2^-lambda). Unlike the Gaussian's, these
// distances add up linearly over a share's N ring coefficients (to
// N*2^-(lambda+1), where the Gaussian's compose to about
// sqrt(N)*2^-(lambda+1)). The uniform flood is bounded, |e| <= B, with no
// tail cut, and it need not fit one prime: only the correctness inequality
// of Committee.smudging limits it.
type flooding struct {
	LogB       int
	NoiseBound float64 // floor(B / (2^lambda * sqrt(n)))
}

// B returns the half-width 2^LogB as a float64.
func (f flooding) B() float64 { return math.Ldexp(1, f.LogB) }

// gaussian is the widest flooding Gaussian lattigo samples correctly for
// p: sigma at most B/sqrt(3) (the flood's), 2^53 and q_min/12 at
// LevelDecrypt, bound 6 sigma. (Wider, its sampler either wraps samples
// past a prime or, once sigma exceeds float64 precision, takes an
// arbitrary-precision path that panics on samples below 2^53.) Shares never
// use it: it only parametrises the mhe.KeySwitchProtocol Decryptor keeps for
// allocating shares, and the lattigo baselines of BenchmarkSmudgedShare.
func (f flooding) gaussian(p *Params) ring.DiscreteGaussian {
	sigma := math.Min(f.B()/math.Sqrt(3), 1<<53)
	for _, q := range p.BGV.Q()[:LevelDecrypt+1] {
		sigma = math.Min(sigma, float64(q)/12)
	}
	return ring.DiscreteGaussian{Sigma: sigma, Bound: 6 * sigma}
}

// floodNoiseBound is floor(2^(logB-lambda) / sqrt(n)): the largest noise a
// flood of half-width 2^logB hides with the convention above.
func floodNoiseBound(logB, lambda, n int) *big.Int {
	k := logB - lambda
	if k < 0 || n < 1 {
		return new(big.Int)
	}
	x := new(big.Int).Lsh(big.NewInt(1), uint(2*k))
	x.Quo(x, big.NewInt(int64(n)))
	return x.Sqrt(x) // floor(sqrt(floor(y))) = floor(sqrt(y))
}

// smudging derives the committee's flooding: the largest power of two B for
// which every t-subset still decrypts exactly,
//
//	t * (D*(e + 1) + L1*B) < Q_1/2,  e = NoiseBound = floor(B / (2^lambda * sqrt(n))),
//
// where Q_1 is the modulus at LevelDecrypt, L1 = coefficientL1 (the combined
// flooding is at most L1*B), D*e the D-scaled ciphertext noise and D*1 the
// plaintext itself (|[m]_t| < t). It fails if the noise bound that fits is
// below checkNoiseBound: the committee cannot flood even a fresh state.
func (c *Committee) smudging(p *Params) (flooding, error) {
	lambda := p.Set.SmudgingLogLambda
	fits, logQ1 := c.exactness(p)
	for logB := min(int(logQ1)+1, maxFloodLogB); logB >= 0; logB-- {
		e := floodNoiseBound(logB, lambda, c.N)
		if !fits(logB, e) {
			continue
		}
		if e.Cmp(big.NewInt(checkNoiseBound)) < 0 {
			return flooding{}, fmt.Errorf("%w: committee %d-of-%d: the widest flooding that decrypts exactly in Q_%d = 2^%.1f (B = 2^%d, L1 = 2^%.1f) hides noise up to %v, below the 2^%.0f of a fresh state",
				ErrParams, c.T, c.N, LevelDecrypt, logQ1, logB, math.Log2(c.coefficientL1()), e, math.Log2(checkNoiseBound))
		}
		nb, _ := new(big.Float).SetInt(e).Float64()
		return flooding{LogB: logB, NoiseBound: nb}, nil
	}
	return flooding{}, fmt.Errorf("%w: committee %d-of-%d: no flooding fits Q_%d = 2^%.1f", ErrParams, c.T, c.N, LevelDecrypt, logQ1)
}

// exactness returns the correctness predicate of smudging,
// t * (D*(e + 1) + L1*2^logB) < Q_1/2, evaluated exactly, and log2(Q_1).
func (c *Committee) exactness(p *Params) (fits func(logB int, e *big.Int) bool, logQ1 float64) {
	q1 := big.NewInt(1)
	for _, q := range p.BGV.Q()[:LevelDecrypt+1] {
		q1.Mul(q1, new(big.Int).SetUint64(q))
		logQ1 += math.Log2(float64(q))
	}
	t := new(big.Int).SetUint64(p.BGV.PlaintextModulus())
	l1 := c.coefficientL1Int()
	one := big.NewInt(1)
	fits = func(logB int, e *big.Int) bool {
		x := new(big.Int).Add(e, one)
		x.Mul(x, c.Delta)
		x.Add(x, new(big.Int).Lsh(l1, uint(logB)))
		x.Mul(x, t)
		return x.Lsh(x, 1).Cmp(q1) < 0
	}
	return fits, logQ1
}

// DecShare is one validator's decryption share of one ciphertext.
type DecShare struct {
	Validator int
	Share     mhe.KeySwitchShare
}

// MarshalBinary encodes the share.
func (s *DecShare) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	w.U32(uint32(s.Validator))
	if err := marshalInto(&w, &s.Share); err != nil {
		return nil, err
	}
	return w.B, nil
}

// DecodeDecShare decodes a decryption share received from the network,
// accepting only the exact shape of a LevelDecrypt share.
func (p *Params) DecodeDecShare(b []byte) (*DecShare, error) {
	r := wire.NewReader(b, ErrMalformed)
	s := &DecShare{Validator: int(r.U32())}
	body := r.Bytes(maxField)
	if err := r.Done(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrShare, err)
	}
	if err := p.shapes().dec.check(body); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrShare, err)
	}
	if err := safeUnmarshal(&s.Share, body); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrShare, err)
	}
	return s, nil
}

// KeyShare is the secret a validator keeps after the ceremony: its Shamir
// share of the collective secret key. It never leaves the node.
type KeyShare struct {
	Index int
	N, T  int
	Share mhe.ShamirSecretShare
}

// secretKey wraps the Shamir share as an rlwe secret key (same NTT/Montgomery
// representation, so key-switch protocols accept it).
func (k *KeyShare) secretKey() *rlwe.SecretKey {
	return &rlwe.SecretKey{Value: k.Share.Poly}
}

// MarshalBinary encodes the key share (for the node's 0600 key file).
func (k *KeyShare) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	w.U32(uint32(k.Index))
	w.U32(uint32(k.N))
	w.U32(uint32(k.T))
	if err := marshalInto(&w, &k.Share); err != nil {
		return nil, err
	}
	return w.B, nil
}

// UnmarshalBinary decodes a key share.
func (k *KeyShare) UnmarshalBinary(p []byte) error {
	r := wire.NewReader(p, ErrMalformed)
	k.Index, k.N, k.T = int(r.U32()), int(r.U32()), int(r.U32())
	unmarshalFrom(r, &k.Share, "key share")
	if err := r.Done(); err != nil {
		return err
	}
	if k.N < 1 || k.T < 1 || k.T > k.N || k.Index < 0 || k.Index >= k.N {
		return fmt.Errorf("%w: key share %d of %d-of-%d", ErrMalformed, k.Index, k.T, k.N)
	}
	return nil
}

// Decryptor produces and combines threshold decryption shares. It is safe
// for concurrent use.
type Decryptor struct {
	p     *Params
	com   *Committee
	cks   mhe.KeySwitchProtocol // not used for shares (see smudge.go); kept for tests that build a Decryptor literal
	flood flooding
	sm    *smudger
	keys  sync.Map // *KeyShare -> smudgeKey
}

// NewDecryptor prepares share generation/combination for a committee.
func NewDecryptor(p *Params, com *Committee) (*Decryptor, error) {
	fl, err := com.smudging(p)
	if err != nil {
		return nil, err
	}
	cks, err := mhe.NewKeySwitchProtocol(p.BGV, fl.gaussian(p))
	if err != nil {
		return nil, fmt.Errorf("ledger: key-switch protocol: %w", err)
	}
	return &Decryptor{p: p, com: com, cks: cks, flood: fl, sm: newSmudger(p, fl)}, nil
}

// Share computes this validator's smudged decryption share of ct. Callers must
// only share ciphertexts they computed themselves (see docs/PROTOCOL.md: a
// validator that decrypts what it is handed is a decryption oracle).
//
// The share is a deterministic function of the key share, the level and c1
// (smudge.go): sharing the same ciphertext twice, after a restart or on
// another Decryptor, returns the same bytes and releases no new noise sample.
func (d *Decryptor) Share(ks *KeyShare, ct *rlwe.Ciphertext) (*DecShare, error) {
	if ct.Level() != LevelDecrypt {
		return nil, fmt.Errorf("%w: ciphertext at level %d, want %d", ErrShare, ct.Level(), LevelDecrypt)
	}
	key, err := d.smudgeKeyFor(ks)
	if err != nil {
		return nil, err
	}
	v, err := d.cksShare(&key, ks, ct, ct.Level())
	if err != nil {
		return nil, err
	}
	return &DecShare{Validator: ks.Index, Share: mhe.KeySwitchShare{Value: v}}, nil
}

// sortedDistinct validates share origins and returns them in index order.
func (d *Decryptor) sortedDistinct(shares []*DecShare, level int) ([]*DecShare, error) {
	seen := map[int]bool{}
	out := make([]*DecShare, 0, len(shares))
	for _, s := range shares {
		if s == nil {
			continue
		}
		if s.Validator < 0 || s.Validator >= d.com.N {
			return nil, fmt.Errorf("%w: share from non-validator %d", ErrShare, s.Validator)
		}
		if seen[s.Validator] {
			continue
		}
		if s.Share.Value.Level() != level || s.Share.Value.N() != d.p.BGV.N() {
			return nil, fmt.Errorf("%w: share from %d has level %d, want %d", ErrShare, s.Validator, s.Share.Value.Level(), level)
		}
		seen[s.Validator] = true
		out = append(out, s)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Validator < out[b].Validator })
	return out, nil
}

// Combine decrypts ct from the first t valid shares (by validator index) and
// returns the decoded slot values. With more than t shares it also decodes
// with the last t and reports ErrShare if the two disagree: a cheap defence
// against one bad share when more than t arrive.
func (d *Decryptor) Combine(ct *rlwe.Ciphertext, shares []*DecShare) ([]uint64, error) {
	ss, err := d.sortedDistinct(shares, ct.Level())
	if err != nil {
		return nil, err
	}
	if len(ss) < d.com.T {
		return nil, fmt.Errorf("%w: %d shares, need %d", ErrShare, len(ss), d.com.T)
	}
	first, err := d.combine(ct, ss[:d.com.T])
	if err != nil {
		return nil, err
	}
	if len(ss) > d.com.T {
		last, err := d.combine(ct, ss[len(ss)-d.com.T:])
		if err != nil {
			return nil, err
		}
		for i := range first {
			if first[i] != last[i] {
				return nil, fmt.Errorf("%w: subsets disagree (a validator sent a bad share)", ErrShare)
			}
		}
	}
	return first, nil
}

func (d *Decryptor) combine(ct *rlwe.Ciphertext, ss []*DecShare) ([]uint64, error) {
	idx := make([]int, len(ss))
	for i, s := range ss {
		idx[i] = s.Validator
	}
	co, err := d.com.coefficients(idx)
	if err != nil {
		return nil, err
	}
	level := ct.Level()
	rq := d.p.BGV.RingQ().AtLevel(level)
	acc := rq.NewPoly()
	rq.MulScalarBigint(ct.Value[0], d.com.Delta, acc)
	for i, s := range ss {
		rq.MulScalarBigintThenAdd(s.Share.Value, co[i], acc)
	}
	pt := rlwe.NewPlaintext(d.p.BGV, level)
	pt.Value = acc
	pt.MetaData = ct.MetaData.CopyNew()
	pt.Scale = ct.Scale.Mul(d.p.BGV.NewScale(new(big.Int).Mod(d.com.Delta, new(big.Int).SetUint64(d.p.BGV.PlaintextModulus())).Uint64()))
	vals := make([]uint64, d.p.Slots)
	if err := newEncoder(d.p).Decode(pt, vals); err != nil {
		return nil, fmt.Errorf("ledger: decode: %w", err)
	}
	return vals, nil
}

// ReencShare is one validator's share re-encrypting a ciphertext from the
// collective key to an owner's public key (PCKS).
type ReencShare struct {
	Validator int
	Share     mhe.PublicKeySwitchShare
}

// MarshalBinary encodes the share.
func (s *ReencShare) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	w.U32(uint32(s.Validator))
	if err := marshalInto(&w, &s.Share); err != nil {
		return nil, err
	}
	return w.B, nil
}

// DecodeReencShare decodes a re-encryption share received from the network,
// accepting only the exact shape of a LevelDecrypt share.
func (p *Params) DecodeReencShare(b []byte) (*ReencShare, error) {
	r := wire.NewReader(b, ErrMalformed)
	s := &ReencShare{Validator: int(r.U32())}
	body := r.Bytes(maxField)
	if err := r.Done(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrShare, err)
	}
	if err := p.shapes().reenc.check(body); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrShare, err)
	}
	if err := safeUnmarshal(&s.Share, body); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrShare, err)
	}
	return s, nil
}

// ReencShare computes this validator's share re-encrypting ct to ownerPK.
// Like Share it is deterministic (smudge.go): the flooding noise depends on
// the key share, the level and c1 only, so asking for the same ciphertext
// under many owner keys yields one noise sample; the encryption-of-zero mask
// additionally depends on ownerPK.
func (d *Decryptor) ReencShare(ks *KeyShare, ct *rlwe.Ciphertext, ownerPK *rlwe.PublicKey) (*ReencShare, error) {
	if ct.Level() != LevelDecrypt {
		return nil, fmt.Errorf("%w: ciphertext at level %d, want %d", ErrShare, ct.Level(), LevelDecrypt)
	}
	key, err := d.smudgeKeyFor(ks)
	if err != nil {
		return nil, err
	}
	el, err := d.pcksShare(&key, ks, ct, ownerPK, ct.Level())
	if err != nil {
		return nil, err
	}
	return &ReencShare{Validator: ks.Index, Share: mhe.PublicKeySwitchShare{Element: *el}}, nil
}

// CombineReenc combines t re-encryption shares of ct into a ciphertext under
// the owner's key. The result encrypts D times the value; the owner's
// decryption divides it out via the plaintext scale set here.
func (d *Decryptor) CombineReenc(ct *rlwe.Ciphertext, shares []*ReencShare) (*rlwe.Ciphertext, error) {
	seen := map[int]*ReencShare{}
	for _, s := range shares {
		if s == nil || s.Validator < 0 || s.Validator >= d.com.N {
			return nil, fmt.Errorf("%w: re-encryption share from non-validator", ErrShare)
		}
		if s.Share.Value[0].Level() != ct.Level() || len(s.Share.Value) != 2 || s.Share.Value[1].Level() != ct.Level() {
			return nil, fmt.Errorf("%w: re-encryption share from %d at wrong level", ErrShare, s.Validator)
		}
		seen[s.Validator] = s
	}
	if len(seen) < d.com.T {
		return nil, fmt.Errorf("%w: %d re-encryption shares, need %d", ErrShare, len(seen), d.com.T)
	}
	idx := make([]int, 0, len(seen))
	for i := range seen {
		idx = append(idx, i)
	}
	sort.Ints(idx)
	idx = idx[:d.com.T]
	co, err := d.com.coefficients(idx)
	if err != nil {
		return nil, err
	}
	rq := d.p.BGV.RingQ().AtLevel(ct.Level())
	out := rlwe.NewCiphertext(d.p.BGV, 1, ct.Level())
	rq.MulScalarBigint(ct.Value[0], d.com.Delta, out.Value[0])
	for i, v := range idx {
		rq.MulScalarBigintThenAdd(seen[v].Share.Value[0], co[i], out.Value[0])
		rq.MulScalarBigintThenAdd(seen[v].Share.Value[1], co[i], out.Value[1])
	}
	*out.MetaData = *ct.MetaData
	tmod := new(big.Int).SetUint64(d.p.BGV.PlaintextModulus())
	out.Scale = ct.Scale.Mul(d.p.BGV.NewScale(new(big.Int).Mod(d.com.Delta, tmod).Uint64()))
	return out, nil
}
