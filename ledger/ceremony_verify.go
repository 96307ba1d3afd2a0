package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/ring/ringqp"
	"github.com/tuneinsight/lattigo/v5/schemes/bgv"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"
)

// The verified ceremony: a dealer that hands out a wrong Shamir deal is
// detected before any key share is kept, and named. See docs/PROTOCOL.md
// ("Verified key ceremony") for the argument; in short:
//
//  1. Signed deals. Every deal carries the dealer's signature (DealSigner)
//     over a domain string, the seed, dealer, recipient and the deal's hash.
//     A recipient accepts one deal per dealer, all N before its Round2.
//  2. A challenge nobody could choose. The transcript (seed, committee, the
//     callers' binding bytes, every Round1 and Round2) is hashed; it includes
//     every honest party's Round2, produced only after that party held its
//     deals, so no dealer knew the challenge when its deals were fixed. From
//     it come small r and e1 and u = a*r + e1, where a is the public-key CRP.
//     For dealer D the anchor c0_D = p0_D*r (p0_D its public-key share
//     -a*s_D + e_D) satisfies c0_D + u*s_D = e_D*r + e1*s_D: small.
//  3. Check values. Recipient i publishes R_i[D] = u*deal_{D->i} + e (e
//     smudging noise, like a decryption share of (c0_D, u)). For every D,
//     Delta*c0_D + sum_{i in S} Delta*lambda_i*R_i[D] must be small for every
//     t-subset S (checked on N-t+1 subsets that span all parity checks): that
//     holds iff the deals lie on one degree-(t-1) polynomial whose value at 0
//     is the secret of D's public-key share.
//  4. Adjudication. For a dealer whose values do not fit, every recipient
//     reveals the deal D signed for it (safe: the ceremony aborts, so no
//     share of the revealed key is ever used). A missing or unsigned reveal,
//     or one that does not match the recipient's own R value, names the
//     recipient; signed deals that do not fit name the dealer.
//  5. Joint test. A public-key encryption of a known message under the
//     collective key, with randomness from the transcript, must decrypt
//     exactly from every party's real decryption share (Decryptor.Share)
//     with every t-subset.
//
// Only after all of that does VerifiedKeyShare hand the key share out.

// CeremonyFault is a failed verified ceremony, naming who is to blame.
// Exactly one of Dealer and Recipient is set (>= 0) when the fault is
// attributable; both are -1 when it is not (a party equivocated and the
// honest parties cannot tell which). It wraps ErrCeremony.
//
// Dealer is the dealer blamed: it signed deals that do not lie on one
// polynomial of degree t-1, or whose secret is not the one behind its
// public-key share, or it signed two different deals for one recipient.
// Recipient is the party blamed as a recipient or verifier: its check
// values do not match the deals it holds, it revealed nothing or an
// unsigned deal, its messages are malformed or missing, or it accuses a
// dealer the agreed check values clear. More lists further, independent
// faults found in the same run.
type CeremonyFault = fault[ceremonyRoles]

// DealSigner signs msg with this party's ceremony signing key.
type DealSigner func(msg []byte) ([]byte, error)

// DealVerifier reports whether sig is party's signature of msg.
type DealVerifier func(party int, msg, sig []byte) bool

// Ed25519DealAuth signs with priv and verifies party i against pubs[i] (a
// node uses its validators' consensus keys from genesis).
func Ed25519DealAuth(priv ed25519.PrivateKey, pubs []ed25519.PublicKey) (DealSigner, DealVerifier) {
	keys := make([]ed25519.PublicKey, len(pubs))
	copy(keys, pubs)
	sign := func(msg []byte) ([]byte, error) {
		if len(priv) != ed25519.PrivateKeySize {
			return nil, fmt.Errorf("%w: no ceremony signing key", ErrCeremony)
		}
		return ed25519.Sign(priv, msg), nil
	}
	verify := func(party int, msg, sig []byte) bool {
		if party < 0 || party >= len(keys) || len(keys[party]) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
			return false
		}
		return ed25519.Verify(keys[party], msg, sig)
	}
	return sign, verify
}

// maxDealSig caps a deal signature on the wire.
const maxDealSig = 256

// SignedDeal is a Shamir deal with its dealer's signature.
type SignedDeal struct {
	Deal *ShamirDeal
	Sig  []byte
}

// DealSigningBytes is what dealer from signs for its deal to recipient to.
func DealSigningBytes(seed []byte, from, to int, deal *ShamirDeal) ([]byte, error) {
	b, err := deal.Share.MarshalBinary()
	if err != nil {
		return nil, err
	}
	h := sha256.Sum256(b)
	var w bytes.Buffer
	w.WriteString("zkbank/ceremony/deal/v1\x00")
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(seed)))
	w.Write(n[:])
	w.Write(seed)
	binary.BigEndian.PutUint32(n[:], uint32(from))
	w.Write(n[:])
	binary.BigEndian.PutUint32(n[:], uint32(to))
	w.Write(n[:])
	w.Write(h[:])
	return w.Bytes(), nil
}

// checkQP reports whether x has the shape of a full-level QP polynomial.
func (p *Params) checkQP(x ringqp.Poly) error {
	n := p.BGV.N()
	if x.Q.N() != n || x.Q.Level() != p.BGV.MaxLevelQ() {
		return fmt.Errorf("Q part: degree %d level %d", x.Q.N(), x.Q.Level())
	}
	if p.BGV.MaxLevelP() >= 0 && (x.P.N() != n || x.P.Level() != p.BGV.MaxLevelP()) {
		return fmt.Errorf("P part: degree %d level %d", x.P.N(), x.P.Level())
	}
	return nil
}

// verifySignedDeal checks sd's shape, addressing and signature.
func verifySignedDeal(p *Params, com *Committee, seed []byte, sd *SignedDeal, dealer, recipient int, verify DealVerifier) error {
	if sd == nil || sd.Deal == nil {
		return fmt.Errorf("no deal")
	}
	d := sd.Deal
	if d.From != dealer || d.To != recipient {
		return fmt.Errorf("deal is addressed %d->%d, want %d->%d", d.From, d.To, dealer, recipient)
	}
	if dealer < 0 || dealer >= com.N || recipient < 0 || recipient >= com.N {
		return fmt.Errorf("deal %d->%d outside the committee", dealer, recipient)
	}
	if err := p.checkQP(d.Share.Poly); err != nil {
		return fmt.Errorf("deal shape: %v", err)
	}
	if len(sd.Sig) == 0 || len(sd.Sig) > maxDealSig {
		return fmt.Errorf("signature of %d bytes", len(sd.Sig))
	}
	msg, err := DealSigningBytes(seed, dealer, recipient, d)
	if err != nil {
		return err
	}
	if verify == nil || !verify(dealer, msg, sd.Sig) {
		return fmt.Errorf("bad signature")
	}
	return nil
}

// SignDeals signs the deals Round1 returned, for sending to their recipients
// (the one addressed to this party included: pass it to AcceptDeal too).
func (pt *Party) SignDeals(deals []*ShamirDeal, sign DealSigner) ([]*SignedDeal, error) {
	if sign == nil {
		return nil, fmt.Errorf("%w: no deal signer", ErrCeremony)
	}
	out := make([]*SignedDeal, 0, len(deals))
	for _, d := range deals {
		if d.From != pt.index {
			return nil, fmt.Errorf("%w: deal from %d is not this party's (%d)", ErrCeremony, d.From, pt.index)
		}
		msg, err := DealSigningBytes(pt.seed, d.From, d.To, d)
		if err != nil {
			return nil, err
		}
		sig, err := sign(msg)
		if err != nil {
			return nil, fmt.Errorf("%w: signing deal to %d: %w", ErrCeremony, d.To, err)
		}
		out = append(out, &SignedDeal{Deal: d, Sig: sig})
	}
	return out, nil
}

// AcceptDeal verifies a signed deal addressed to this party and keeps it.
// Only the first deal of each dealer is kept; a second, different one that
// the dealer also signed is proof of equivocation (a CeremonyFault naming
// the dealer). All N deals (this party's own included) must be accepted
// before Round2, and none after.
func (pt *Party) AcceptDeal(sd *SignedDeal, verify DealVerifier) error {
	if pt.r1 == nil {
		return fmt.Errorf("%w: deal before round 1", ErrCeremony)
	}
	if pt.round2 {
		return fmt.Errorf("%w: deal after round 2", ErrCeremony)
	}
	if sd == nil || sd.Deal == nil {
		return fmt.Errorf("%w: empty deal", ErrCeremony)
	}
	from := sd.Deal.From
	if err := verifySignedDeal(pt.p, pt.com, pt.seed, sd, from, pt.index, verify); err != nil {
		return fmt.Errorf("%w: deal from %d: %v", ErrCeremony, from, err)
	}
	if pt.deals == nil {
		pt.deals = map[int]*SignedDeal{}
	}
	if old, ok := pt.deals[from]; ok {
		if old.Deal.Share.Equal(&sd.Deal.Share.Poly) {
			return nil // a retransmission
		}
		return dealerFault(from, "signed two different deals for validator %d", pt.index)
	}
	pt.deals[from] = sd
	return nil
}

// CeremonyCheck is a party's public check message: its values u*deal + e for
// every dealer's deal, and its decryption share of the joint test ciphertext.
type CeremonyCheck struct {
	From       int
	Transcript [32]byte
	R          []ringqp.Poly // R[D] for dealer D, NTT domain, full QP level
	Final      *DecShare
}

// CeremonyVerifier is the public part of the verified ceremony: everything
// any party (or observer) derives identically from the transcript.
type CeremonyVerifier struct {
	p      *Params
	com    *Committee
	seed   []byte
	verify DealVerifier

	transcript [32]byte
	u          ringqp.Poly   // the challenge, NTT
	c0         []ringqp.Poly // c0_D = p0_D*r per dealer, NTT
	ct         *rlwe.Ciphertext
	want       []uint64
	dec        *Decryptor

	smudge  ring.DiscreteGaussian // noise on check values
	boundNu float64               // honest |c0_D + u*s_D| (24 standard deviations)
	crt     *crtCheck
}

// ceremonyHideBound is the noise the check values hide (like checkNoiseBound
// for decryption shares): an honest |c0_D + u*s_D| (standard deviation
// about 2^8.4) stays below it except with probability < 2^-60.
const ceremonyHideBound = 1 << 12

// CeremonyTranscript hashes the public ceremony messages. bind is any extra
// public context both sides agree on (a node passes its validators'
// signing keys).
func CeremonyTranscript(p *Params, com *Committee, seed, bind []byte, all1 []*Round1, all2 []*Round2) ([32]byte, error) {
	r1s, err := checkComplete(com.N, all1, func(m *Round1) int { return m.From })
	if err != nil {
		return [32]byte{}, err
	}
	r2s, err := checkComplete(com.N, all2, func(m *Round2) int { return m.From })
	if err != nil {
		return [32]byte{}, err
	}
	h := sha256.New()
	field := func(b []byte) { writeField(h, b) }
	field([]byte("zkbank/ceremony/transcript/v1"))
	field([]byte(p.Set.Name))
	field(seed)
	field(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, uint32(com.N)), uint32(com.T)))
	field(bind)
	for _, m := range r1s {
		b, err := m.MarshalBinary()
		if err != nil {
			return [32]byte{}, err
		}
		field(b)
	}
	for _, m := range r2s {
		b, err := m.MarshalBinary()
		if err != nil {
			return [32]byte{}, err
		}
		field(b)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out, nil
}

// NewCeremonyVerifier derives the challenge, the anchors and the joint test
// ciphertext from the complete public transcript.
func NewCeremonyVerifier(p *Params, com *Committee, seed, bind []byte, all1 []*Round1, all2 []*Round2, verify DealVerifier) (*CeremonyVerifier, error) {
	tr, err := CeremonyTranscript(p, com, seed, bind, all1, all2)
	if err != nil {
		return nil, err
	}
	r1s, _ := checkComplete(com.N, all1, func(m *Round1) int { return m.From })
	dec, err := NewDecryptor(p, com)
	if err != nil {
		return nil, err
	}
	v := &CeremonyVerifier{p: p, com: com, seed: append([]byte(nil), seed...), verify: verify, transcript: tr, dec: dec}
	if err := v.bounds(); err != nil {
		return nil, err
	}
	params := p.BGV
	rqp := params.RingQP()
	n := params.N()

	// r, e1 ternary from the transcript; u = a*r + e1.
	prng := transcriptPRNG(tr, "challenge")
	r := v.liftSmall(ternary(prng, n))
	e1 := v.liftSmall(ternary(prng, n))
	crp := mhe.NewPublicKeyGenProtocol(params).SampleCRP(crs(seed, "ckg", 0))
	v.u = rqp.NewPoly()
	rqp.MulCoeffsMontgomery(crp.Value, r, v.u)
	rqp.Add(v.u, e1, v.u)

	v.c0 = make([]ringqp.Poly, com.N)
	for d, m := range r1s {
		if err := p.checkQP(m.CKG.Value); err != nil {
			return nil, dealerFault(d, "public-key share has the wrong shape: %v", err)
		}
		v.c0[d] = rqp.NewPoly()
		rqp.MulCoeffsMontgomery(m.CKG.Value, r, v.c0[d])
	}

	// The joint test: a public-key encryption of a known message m under the
	// collective key with fresh transcript randomness (r', e0 = 0, e1'),
	// (pk0*r' + m, a*r' + e1') at LevelDecrypt. Its c1 differs from u, so
	// no party releases two noise samples for the same c1.
	pk0 := rqp.NewPoly()
	for _, m := range r1s {
		rqp.Add(pk0, m.CKG.Value, pk0)
	}
	if v.ct, v.want, err = jointTestCiphertext(p, tr, prng, pk0, crp.Value); err != nil {
		return nil, err
	}
	return v, nil
}

// jointTestCiphertext builds the joint test ciphertext of a transcript: a
// public-key encryption (pk0*r' + m, a*r' + e1') of a message m drawn from
// the transcript, with r', e1' ternary from prng, at LevelDecrypt. pk0 and a
// are the collective public key (full QP level, NTT).
func jointTestCiphertext(p *Params, tr [32]byte, prng sampling.PRNG, pk0, a ringqp.Poly) (*rlwe.Ciphertext, []uint64, error) {
	params := p.BGV
	rqp := params.RingQP()
	n := params.N()
	r2 := liftSmallQP(p, ternary(prng, n))
	e12 := liftSmallQP(p, ternary(prng, n))
	c0 := rqp.NewPoly()
	rqp.MulCoeffsMontgomery(pk0, r2, c0)
	c1 := rqp.NewPoly()
	rqp.MulCoeffsMontgomery(a, r2, c1)
	rqp.Add(c1, e12, c1)
	want := make([]uint64, p.Slots)
	mprng := transcriptPRNG(tr, "test-message")
	var b [8]byte
	for i := range want {
		mprng.Read(b[:])
		want[i] = binary.BigEndian.Uint64(b[:]) % params.PlaintextModulus()
	}
	pt := bgv.NewPlaintext(params, LevelDecrypt)
	if err := newEncoder(p).Encode(want, pt); err != nil {
		return nil, nil, fmt.Errorf("%w: test message: %w", ErrCeremony, err)
	}
	if !pt.IsNTT {
		return nil, nil, fmt.Errorf("%w: plaintexts are not in the NTT domain", ErrParams)
	}
	rq := params.RingQ().AtLevel(LevelDecrypt)
	ct := rlwe.NewCiphertext(params, 1, LevelDecrypt)
	*ct.MetaData = *pt.MetaData.CopyNew()
	rq.Add(pt.Value, c0.Q, ct.Value[0])
	ct.Value[1].Copy(c1.Q)
	return ct, want, nil
}

// Transcript returns the transcript hash every check message must carry.
func (v *CeremonyVerifier) Transcript() [32]byte { return v.transcript }

// bounds sizes the smudging of check values and the honest noise bounds.
func (v *CeremonyVerifier) bounds() error {
	p, com := v.p, v.com
	xe, ok := p.BGV.Xe().(ring.DiscreteGaussian)
	if !ok {
		return fmt.Errorf("%w: ceremony needs a Gaussian error distribution", ErrParams)
	}
	if _, ok := p.BGV.Xs().(ring.Ternary); !ok {
		return fmt.Errorf("%w: ceremony needs ternary secrets", ErrParams)
	}
	// c0_D + u*s_D = e_D*r + e1*s_D with r, e1 uniform ternary and s_D
	// ternary: every coefficient is a sum of N independent products
	// e_D[j]*r[k-j] (variance sigma^2*2/3, |.| <= Bound(Xe)) and
	// e1[j]*s_D[k-j] (variance 4/9, |.| <= 1). The bound is 24 standard
	// deviations (2^13.0 for ZKB128); by Bernstein's inequality an honest
	// coefficient exceeds it with probability below e^-190. The worst case
	// N*(Bound+1) (2^18.4) would let a dealer use a secret with
	// coefficients in the thousands; this bound keeps them below about 30.
	std := math.Sqrt(float64(p.BGV.N()) * (xe.Sigma*xe.Sigma*2/3 + 4.0/9))
	v.boundNu = 24 * std
	var err error
	if v.smudge, err = checkSmudging(p, com.T, "ceremony"); err != nil {
		return err
	}
	v.crt = newCRTCheck(p)
	// Worst honest combination: Delta*boundNu + L1*smudging bound.
	worst := 0.0
	Subsets(com.N, com.T, func(idx []int) {
		co := ceremonyCoefficients(com, idx)
		worst = math.Max(worst, v.subsetBound(co, v.smudge.Bound))
	})
	if worst >= v.crt.halfQ01/4 {
		return fmt.Errorf("%w: committee %d-of-%d: ceremony check bound 2^%.1f does not fit q0*q1", ErrParams, com.T, com.N, math.Log2(worst))
	}
	return nil
}

// subsetBound is the honest bound of Delta*c0_D + sum co_j*val_j when each
// value carries noise at most perPoint.
func (v *CeremonyVerifier) subsetBound(co []*big.Int, perPoint float64) float64 {
	d, _ := new(big.Float).SetInt(v.com.Delta).Float64()
	b := d * v.boundNu
	for _, c := range co {
		f, _ := new(big.Float).SetInt(new(big.Int).Abs(c)).Float64()
		b += f * perPoint
	}
	return b
}

// ceremonyCoefficients returns Delta*lambda_j (Lagrange at 0) for the given
// distinct validator indices (points j+1).
func ceremonyCoefficients(com *Committee, idx []int) []*big.Int {
	out := make([]*big.Int, len(idx))
	for a, i := range idx {
		r := new(big.Rat).SetInt(com.Delta)
		for b, j := range idx {
			if a != b {
				r.Mul(r, big.NewRat(int64(j+1), int64(j-i)))
			}
		}
		if !r.IsInt() {
			panic("ledger: Delta does not clear a Lagrange denominator")
		}
		out[a] = new(big.Int).Set(r.Num())
	}
	return out
}

// transcriptPRNG is a deterministic PRNG keyed by the transcript.
func transcriptPRNG(tr [32]byte, purpose string) sampling.PRNG {
	h := sha256.New()
	h.Write([]byte("zkbank/ceremony/prng/v1\x00"))
	h.Write(tr[:])
	h.Write([]byte(purpose))
	prng, err := sampling.NewKeyedPRNG(h.Sum(nil))
	if err != nil {
		panic(err)
	}
	return prng
}

// ternary draws n uniform values in {-1, 0, 1}.
func ternary(prng sampling.PRNG, n int) []int64 {
	out := make([]int64, 0, n)
	buf := make([]byte, 1024)
	for len(out) < n {
		if _, err := prng.Read(buf); err != nil {
			panic(err)
		}
		for _, b := range buf {
			if b < 255 && len(out) < n {
				out = append(out, int64(b%3)-1)
			}
		}
	}
	return out
}

// checkSmudging is the flooding noise of check values (and joint-test
// decryption shares) for a threshold-t committee; what names the protocol
// in its errors.
func checkSmudging(p *Params, t int, what string) (ring.DiscreteGaussian, error) {
	sigma := math.Ldexp(math.Sqrt(float64(t))*ceremonyHideBound, p.Set.SmudgingLogLambda)
	smudge := ring.DiscreteGaussian{Sigma: sigma, Bound: 6 * sigma}
	q := p.BGV.Q()
	if len(q) < 2 {
		return smudge, fmt.Errorf("%w: %s checks need two Q primes", ErrParams, what)
	}
	if smudge.Bound >= float64(q[0])/2 {
		return smudge, fmt.Errorf("%w: %s smudging 2^%.1f exceeds q0", ErrParams, what, math.Log2(smudge.Bound))
	}
	return smudge, nil
}

// liftSmall turns small integers (coefficients) into an NTT-domain QP poly.
func (v *CeremonyVerifier) liftSmall(vals []int64) ringqp.Poly { return liftSmallQP(v.p, vals) }

// liftSmallQP turns small integers (coefficients) into an NTT-domain QP poly.
func liftSmallQP(p *Params, vals []int64) ringqp.Poly {
	rqp := p.BGV.RingQP()
	out := rqp.NewPoly()
	set := func(r *ring.Ring, pl ring.Poly) {
		if r == nil {
			return
		}
		for lvl, q := range r.ModuliChain()[:pl.Level()+1] {
			row := pl.Coeffs[lvl]
			for k, x := range vals {
				if x >= 0 {
					row[k] = uint64(x) % q
				} else if m := uint64(-x) % q; m != 0 {
					row[k] = q - m
				} else {
					row[k] = 0
				}
			}
		}
	}
	set(rqp.RingQ, out.Q)
	set(rqp.RingP, out.P)
	rqp.NTT(out, out)
	return out
}

// smudgeNoise samples fresh check-value noise (NTT, QP).
func (v *CeremonyVerifier) smudgeNoise(s ring.Sampler) ringqp.Poly { return smudgeNoiseQP(v.p, s) }

// smudgeNoiseQP reads one level-0 polynomial from s (centered samples) and
// lifts it to an NTT-domain QP poly.
func smudgeNoiseQP(p *Params, s ring.Sampler) ringqp.Poly {
	q0 := p.BGV.Q()[0]
	pl := s.ReadNew()
	vals := make([]int64, len(pl.Coeffs[0]))
	for k, x := range pl.Coeffs[0] {
		if x > q0/2 {
			vals[k] = int64(x) - int64(q0)
		} else {
			vals[k] = int64(x)
		}
	}
	return liftSmallQP(p, vals)
}

// Check publishes this party's check values. It needs every deal accepted
// and Round2 done; it forms the key share (kept inside until the verdict)
// and erases the additive secret.
func (pt *Party) Check(v *CeremonyVerifier) (*CeremonyCheck, error) {
	if pt.check != nil {
		return pt.check, nil
	}
	if !pt.round2 {
		return nil, fmt.Errorf("%w: check before round 2", ErrCeremony)
	}
	if len(pt.deals) != pt.com.N {
		return nil, fmt.Errorf("%w: check with %d of %d deals", ErrCeremony, len(pt.deals), pt.com.N)
	}
	params := pt.p.BGV
	rqp := params.RingQP()
	thr := mhe.NewThresholdizer(params)
	acc := thr.AllocateThresholdSecretShare()
	for d := 0; d < pt.com.N; d++ {
		rqp.Add(acc.Poly, pt.deals[d].Deal.Share.Poly, acc.Poly)
	}
	ks := &KeyShare{Index: pt.index, N: pt.com.N, T: pt.com.T, Share: acc}

	prng, err := sampling.NewPRNG()
	if err != nil {
		return nil, err
	}
	sampler, err := ring.NewSampler(prng, params.RingQ().AtLevel(0), v.smudge, false)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrCeremony, err)
	}
	c := &CeremonyCheck{From: pt.index, Transcript: v.transcript, R: make([]ringqp.Poly, pt.com.N)}
	for d := 0; d < pt.com.N; d++ {
		c.R[d] = rqp.NewPoly()
		rqp.MulCoeffsMontgomery(pt.deals[d].Deal.Share.Poly, v.u, c.R[d])
		rqp.Add(c.R[d], v.smudgeNoise(sampler), c.R[d])
	}
	if c.Final, err = v.dec.Share(ks, v.ct); err != nil {
		return nil, fmt.Errorf("%w: joint test share: %w", ErrCeremony, err)
	}
	pt.sk, pt.ephSk = nil, nil
	pt.share = ks
	pt.check = c
	return c, nil
}

// CheckReport is one party's evaluation of all check messages.
type CheckReport struct {
	// Digest hashes the check messages as this party received them; parties
	// compare it to know they judged the same values.
	Digest [32]byte
	// Failed lists the dealers whose check values do not fit (sorted):
	// every recipient reveals its deal from them.
	Failed []int
	// FinalOK reports that every t-subset decrypted the joint test.
	FinalOK bool
	// Faults are problems attributable without reveals (missing or
	// malformed check messages, transcript mismatches).
	Faults []*CeremonyFault

	checks    []*CeremonyCheck // by sender; nil if missing or unusable
	finalGood map[int]bool     // parties in some t-subset that decrypted the joint test
}

// Accept reports whether this evaluation found nothing wrong.
func (r *CheckReport) Accept() bool {
	return len(r.Failed) == 0 && r.FinalOK && len(r.Faults) == 0
}

func (v *CeremonyVerifier) wellFormed(c *CeremonyCheck) error {
	if len(c.R) != v.com.N {
		return fmt.Errorf("%d check values, want %d", len(c.R), v.com.N)
	}
	for d, r := range c.R {
		if err := v.p.checkQP(r); err != nil {
			return fmt.Errorf("check value for dealer %d: %v", d, err)
		}
	}
	if c.Final == nil || c.Final.Validator != c.From {
		return fmt.Errorf("missing joint test share")
	}
	if s := c.Final.Share.Value; s.N() != v.p.BGV.N() || s.Level() != LevelDecrypt {
		return fmt.Errorf("joint test share at level %d", s.Level())
	}
	return nil
}

// Evaluate checks every dealer's values and the joint test decryption.
func (v *CeremonyVerifier) Evaluate(checks []*CeremonyCheck) *CheckReport {
	n := v.com.N
	rep := &CheckReport{checks: make([]*CeremonyCheck, n)}
	seen := make([]bool, n)
	h := sha256.New()
	h.Write([]byte("zkbank/ceremony/checks/v1\x00"))
	h.Write(v.transcript[:])
	byFrom := make([]*CeremonyCheck, n)
	for _, c := range checks {
		if c == nil || c.From < 0 || c.From >= n {
			continue
		}
		if seen[c.From] {
			rep.Faults = append(rep.Faults, recipientFault(c.From, "sent two check messages"))
			byFrom[c.From] = nil
			continue
		}
		seen[c.From] = true
		byFrom[c.From] = c
	}
	for i, c := range byFrom {
		var b []byte
		if c != nil {
			var err error
			if b, err = c.MarshalBinary(); err != nil {
				b = nil
			}
		}
		var l [8]byte
		binary.BigEndian.PutUint64(l[:], uint64(len(b)))
		h.Write(l[:])
		h.Write(b)
		switch {
		case !seen[i]:
			rep.Faults = append(rep.Faults, recipientFault(i, "sent no check message"))
		case c == nil:
		case v.wellFormed(c) != nil:
			rep.Faults = append(rep.Faults, recipientFault(i, "malformed check message: %v", v.wellFormed(c)))
		case c.Transcript != v.transcript:
			rep.Faults = append(rep.Faults, unattributed("validator %d derived a different transcript (a party sent different round messages to different validators, or %d is faulty)", i, i))
		default:
			rep.checks[i] = c
		}
	}
	copy(rep.Digest[:], h.Sum(nil))

	var valid []int
	for i, c := range rep.checks {
		if c != nil {
			valid = append(valid, i)
		}
	}
	for d := 0; d < n; d++ {
		ok := v.consistent(d, valid, func(j int) ringqp.Poly { return rep.checks[j].R[d] }, v.smudge.Bound)
		if !ok {
			rep.Failed = append(rep.Failed, d)
		}
	}
	rep.FinalOK, rep.finalGood = v.finalTest(rep.checks, valid)
	return rep
}

// consistent checks that the points pts (recipient indices, ascending) and
// dealer d's anchor lie on one polynomial of degree t-1: for the N-t+1
// subsets made of the first t-1 points and one more, Delta*c0_d +
// sum Delta*lambda_j*val(j) must be within the honest bound (perPoint is
// the noise bound of one value). Fewer than t points cannot be checked.
func (v *CeremonyVerifier) consistent(d int, pts []int, val func(j int) ringqp.Poly, perPoint float64) bool {
	d0, _ := new(big.Float).SetInt(v.com.Delta).Float64()
	return onCurve(v.p, v.crt, v.com, v.c0[d], d0*v.boundNu, pts, val, perPoint)
}

// onCurve reports whether the values val(j) at the points pts (indices of
// com, ascending) and anchor at 0 lie on one polynomial of degree T-1 up to
// noise: for the N-T+1 subsets made of the first T-1 points and one more,
// Delta*anchor + sum Delta*lambda_j*val(j) must be at most anchorBound +
// sum |Delta*lambda_j|*perPoint. Fewer than T points cannot be checked.
func onCurve(p *Params, crt *crtCheck, com *Committee, anchor ringqp.Poly, anchorBound float64, pts []int, val func(j int) ringqp.Poly, perPoint float64) bool {
	t := com.T
	if len(pts) < t {
		return true
	}
	rqp := p.BGV.RingQP()
	z := rqp.NewPoly()
	for k := t - 1; k < len(pts); k++ {
		idx := append(append([]int(nil), pts[:t-1]...), pts[k])
		co := ceremonyCoefficients(com, idx)
		mulScalarQP(rqp, anchor, com.Delta, z, false)
		for a, j := range idx {
			mulScalarQP(rqp, val(j), co[a], z, true)
		}
		b := anchorBound
		for _, c := range co {
			f, _ := new(big.Float).SetInt(new(big.Int).Abs(c)).Float64()
			b += f * perPoint
		}
		rqp.INTT(z, z)
		if !crt.small(z, b) {
			return false
		}
	}
	return true
}

// mulScalarQP sets (or, with add, adds to) out the product of x by an
// integer.
func mulScalarQP(rqp *ringqp.Ring, x ringqp.Poly, c *big.Int, out ringqp.Poly, add bool) {
	if add {
		rqp.RingQ.MulScalarBigintThenAdd(x.Q, c, out.Q)
		if rqp.RingP != nil {
			rqp.RingP.MulScalarBigintThenAdd(x.P, c, out.P)
		}
		return
	}
	rqp.RingQ.MulScalarBigint(x.Q, c, out.Q)
	if rqp.RingP != nil {
		rqp.RingP.MulScalarBigint(x.P, c, out.P)
	}
}

// finalTest decrypts the joint test ciphertext with every t-subset of the
// parties whose checks are usable. It returns whether all did, and the
// parties that are in at least one subset that did.
func (v *CeremonyVerifier) finalTest(checks []*CeremonyCheck, valid []int) (bool, map[int]bool) {
	shares := make([]*DecShare, len(valid))
	for a, i := range valid {
		shares[a] = checks[i].Final
	}
	return everySubsetDecrypts(v.dec, v.com.T, v.ct, v.want, valid, shares)
}

// everySubsetDecrypts decrypts ct with every t-subset of shares (shares[a]
// is party valid[a]'s). It returns whether all gave want, and the parties
// that are in at least one subset that did.
func everySubsetDecrypts(dec *Decryptor, t int, ct *rlwe.Ciphertext, want []uint64, valid []int, all []*DecShare) (bool, map[int]bool) {
	inGood := map[int]bool{}
	if len(valid) < t {
		return false, inGood
	}
	ok := true
	Subsets(len(valid), t, func(pos []int) {
		shares := make([]*DecShare, len(pos))
		for a, i := range pos {
			shares[a] = all[i]
		}
		got, err := dec.Combine(ct, shares)
		good := err == nil && len(got) == len(want)
		for s := 0; good && s < len(got); s++ {
			good = got[s] == want[s]
		}
		if !good {
			ok = false
			return
		}
		for _, i := range pos {
			inGood[valid[i]] = true
		}
	})
	return ok, inGood
}

// CeremonyReveal is a party's verdict message: what it judged, and the
// signed deals it holds from every dealer whose values failed.
type CeremonyReveal struct {
	From   int
	Digest [32]byte
	Accept bool
	Failed []int
	Deals  []*SignedDeal
}

// Reveal builds this party's verdict message from its report.
func (pt *Party) Reveal(rep *CheckReport) (*CeremonyReveal, error) {
	if pt.check == nil {
		return nil, fmt.Errorf("%w: reveal before check", ErrCeremony)
	}
	out := &CeremonyReveal{From: pt.index, Digest: rep.Digest, Accept: rep.Accept(), Failed: append([]int(nil), rep.Failed...)}
	for _, d := range rep.Failed {
		if sd, ok := pt.deals[d]; ok {
			out.Deals = append(out.Deals, sd)
		}
	}
	return out, nil
}

// Verdict decides the ceremony from a report and every party's reveal: nil
// if every check passed and every party agrees, else a *CeremonyFault.
func (v *CeremonyVerifier) Verdict(rep *CheckReport, reveals []*CeremonyReveal) error {
	n := v.com.N
	faults := append([]*CeremonyFault(nil), rep.Faults...)
	byFrom := make([]*CeremonyReveal, n)
	for _, r := range reveals {
		if r == nil || r.From < 0 || r.From >= n {
			continue
		}
		if byFrom[r.From] != nil {
			faults = append(faults, recipientFault(r.From, "sent two verdicts"))
			continue
		}
		byFrom[r.From] = r
	}
	accept := rep.Accept()
	for i, r := range byFrom {
		switch {
		case r == nil:
			faults = append(faults, recipientFault(i, "sent no verdict"))
		case r.Digest != rep.Digest:
			faults = append(faults, unattributed("validator %d judged different check messages (one was sent differently to different validators, or %d is faulty)", i, i))
		default:
			if !equalInts(r.Failed, rep.Failed) {
				faults = append(faults, recipientFault(i, "reports dealers %v failed, but the agreed check values fail %v", r.Failed, rep.Failed))
			} else if r.Accept && !accept {
				faults = append(faults, recipientFault(i, "accepts a ceremony whose checks fail"))
			} else if !r.Accept && accept {
				faults = append(faults, recipientFault(i, "rejects a ceremony whose checks all pass"))
			}
		}
	}
	for _, d := range rep.Failed {
		faults = append(faults, v.adjudicate(d, rep, byFrom)...)
	}
	if !rep.FinalOK && len(rep.Failed) == 0 {
		// Every deal checked out, so a failing subset holds a party whose
		// joint-test share is wrong. It is identifiable when some subset
		// decrypted and it is in none that did.
		found := false
		for i, c := range rep.checks {
			if c != nil && len(rep.finalGood) > 0 && !rep.finalGood[i] {
				faults = append(faults, recipientFault(i, "its decryption share of the joint test ciphertext is wrong (every %d-subset with it fails, others decrypt)", v.com.T))
				found = true
			}
		}
		if !found {
			faults = append(faults, unattributed("the joint test ciphertext did not decrypt with every %d-subset, although every deal checked out", v.com.T))
		}
	}
	if len(rep.Failed) > 0 && len(faults) == len(rep.Faults) {
		// Not reachable with honest arithmetic: values failed but nobody is
		// to blame. Fail anyway.
		faults = append(faults, unattributed("dealers %v failed their checks but no fault was isolated", rep.Failed))
	}
	if f := joinFaults(faults); f != nil {
		return f
	}
	return nil
}

// adjudicate judges dealer d from the revealed deals.
func (v *CeremonyVerifier) adjudicate(d int, rep *CheckReport, reveals []*CeremonyReveal) []*CeremonyFault {
	var faults []*CeremonyFault
	rqp := v.p.BGV.RingQP()
	ys := make(map[int]ringqp.Poly)
	var verified []int
	diff := rqp.NewPoly()
	for i := 0; i < v.com.N; i++ {
		r := reveals[i]
		if r == nil {
			continue // already blamed for sending no verdict
		}
		var sd *SignedDeal
		for _, x := range r.Deals {
			if x != nil && x.Deal != nil && x.Deal.From == d {
				sd = x
				break
			}
		}
		if sd == nil {
			faults = append(faults, recipientFault(i, "revealed no deal from dealer %d, whose check values failed", d))
			continue
		}
		if err := verifySignedDeal(v.p, v.com, v.seed, sd, d, i, v.verify); err != nil {
			faults = append(faults, recipientFault(i, "revealed a deal dealer %d did not sign (%v)", d, err))
			continue
		}
		y := rqp.NewPoly()
		rqp.MulCoeffsMontgomery(sd.Deal.Share.Poly, v.u, y)
		if c := rep.checks[i]; c != nil {
			rqp.Sub(c.R[d], y, diff)
			rqp.INTT(diff, diff)
			if !v.crt.small(diff, v.smudge.Bound) {
				faults = append(faults, recipientFault(i, "its check value for dealer %d does not match the deal dealer %d signed for it", d, d))
				continue
			}
		}
		ys[i] = y
		verified = append(verified, i)
	}
	if len(verified) >= v.com.T && !v.consistent(d, verified, func(j int) ringqp.Poly { return ys[j] }, 0) {
		faults = append(faults, dealerFault(d, "the deals it signed for validators %v do not lie on one degree-%d polynomial through the secret of its public-key share", verified, v.com.T-1))
	}
	return faults
}

// VerifiedKeyShare returns this party's key share if the verdict is clean;
// otherwise it erases it and returns the fault.
func (pt *Party) VerifiedKeyShare(v *CeremonyVerifier, rep *CheckReport, reveals []*CeremonyReveal) (*KeyShare, error) {
	if pt.share == nil {
		return nil, fmt.Errorf("%w: no checked key share", ErrCeremony)
	}
	if err := v.Verdict(rep, reveals); err != nil {
		pt.share = nil
		return nil, err
	}
	return pt.share, nil
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
