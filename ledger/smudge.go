package ledger

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
	"math/bits"
	"sync"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/ring/ringqp"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"
)

// Deterministic smudging.
//
// A decryption share c1*s_i + e_i hides s_i and the ciphertext noise only if
// each (s_i, c1) pair is released with a single e_i: several shares of the
// same c1 with independent e_i can be averaged, shrinking the flooding noise
// until the ciphertext noise, and with it key material, shows through
// (ePrint 2024/194, 2025/409, 2026/031; lattigo SECURITY.md). Lattigo's
// protocols draw e_i from crypto/rand on every call, so a re-proposal, a
// restart or a repeated balance query would release a fresh sample each time.
// Here every random value of a share is drawn from a keyed PRNG whose seed is
// a PRF, keyed by a secret derived from the validator's key share, of exactly
// the public inputs the share depends on. Asking again returns the same bytes.
//
//	prfKey    = SHA-256(lp("zkbank/threshold/smudge-key/v1") || lp(KeyShare.MarshalBinary()))
//	h1        = SHA-256(lp("zkbank/threshold/c1/v1") || u32 level || u32 N || c1 in NTT form, mod q_j, rows 0..level, LE u64)
//	hpk       = SHA-256(lp("zkbank/threshold/owner-pk/v1") || u32 level || u32 0 || for pk0, pk1: Q rows 0..level, P row 0, reduced, LE u64)
//	seedE     = HMAC-SHA256(prfKey, lp("zkbank/threshold/smudge/v2") || u32 level || lp(h1))
//	seedMask  = HMAC-SHA256(prfKey, lp("zkbank/threshold/pcks-mask/v1") || u32 level || lp(h1) || lp(hpk))
//
// where lp(x) is x prefixed with its length as a big-endian u64. seedE keys
// the smudging term e of both the decryption share (CKS) and the
// re-encryption share (PCKS); seedMask keys the PCKS encryption of zero
// (u, e0, e1) under the owner key. The PRNG is lattigo's blake2b XOF
// (sampling.NewKeyedPRNG). The mask is drawn by lattigo's ring samplers,
// exactly as mhe.PublicKeySwitchProtocol draws it. The flooding term e is
// not lattigo's Gaussian (whose samples must fit one prime, capping it near
// 2^56): every coefficient is uniform in [-B, B), B = 2^LogB of the
// committee's flooding (threshold.go, up to ~2^78), read from the seedE
// stream as
//
//	w = ceil((LogB+1)/8) bytes per coefficient, coefficients 0..N-1 in order;
//	u = the w bytes as a little-endian integer, bits LogB+1 and up cleared;
//	e = u - B, reduced exactly into every prime q_0..q_level
//
// (rejection-free: u is uniform on the 2B values of [0, 2B)). v1 drew a
// discrete Gaussian from the same seed; the domain was bumped with the
// distribution.
//
// Why c1 and not c0: a share is a function of (s_i, level, c1) only; c0 never
// enters it. Binding the noise to c0 as well would be harmful: (c0 + a, c1)
// for any public plaintext a (a homomorphic plaintext addition, or a client
// resubmitting) would get fresh noise on the very same c1*s_i, which is the
// averaging attack. Two ciphertexts with equal c1 get byte-identical shares,
// which releases nothing new. c1 is hashed in canonical form (NTT domain,
// fully reduced) so no re-encoding of the same ring element gets new noise.
//
// Why the owner key does not enter seedE: the owner key of a balance query is
// chosen (and signed) by the account holder, who may ask for the same balance
// ciphertext under as many keys as they like. If e depended on the key, each
// key would yield a fresh sample of c1*s_i + e that its holder can unmask.
// Only the encryption-of-zero mask depends on the key; unmasking any number
// of them reveals the one c1*s_i + e_i that a decryption share would.
// Decryption and re-encryption of the same c1 also share e for the same
// reason: both draw it from one distribution and one seed, so it is
// identical.
//
// What this does not cover: ciphertexts with different c1 that are
// homomorphically related (X^k*c1, a*c1, ...) get independent noise, and
// combining their decryptions averages the smudging of the underlying
// ciphertext noise. That is why validators only decrypt ciphertexts they
// computed themselves (docs/PROTOCOL.md), and it is not solved here.

const (
	smudgeKeyDomain  = "zkbank/threshold/smudge-key/v1"
	smudgeSeedDomain = "zkbank/threshold/smudge/v2"
	maskSeedDomain   = "zkbank/threshold/pcks-mask/v1"
	c1HashDomain     = "zkbank/threshold/c1/v1"
	pkHashDomain     = "zkbank/threshold/owner-pk/v1"
)

// smudgeKey is a validator's PRF key for share randomness.
type smudgeKey [sha256.Size]byte

// deriveSmudgeKey derives the PRF key from the secret key share. It depends
// on nothing public, so nobody else can predict a share's noise; it depends
// on the whole share encoding, so a restart (which reloads the same bytes
// from the key file) derives the same key.
func deriveSmudgeKey(ks *KeyShare) (smudgeKey, error) {
	b, err := ks.MarshalBinary()
	if err != nil {
		return smudgeKey{}, fmt.Errorf("ledger: smudging key: %w", err)
	}
	h := sha256.New()
	writeField(h, []byte(smudgeKeyDomain))
	writeField(h, b)
	clear(b)
	var k smudgeKey
	h.Sum(k[:0])
	return k, nil
}

// smudgeKeyFor returns the cached PRF key of ks. Deriving it hashes the
// whole ~0.9 MB key share, which would otherwise dominate Share. The cache is
// keyed by the KeyShare pointer; a KeyShare must not be modified once used.
func (d *Decryptor) smudgeKeyFor(ks *KeyShare) (smudgeKey, error) {
	if ks == nil {
		return smudgeKey{}, fmt.Errorf("%w: no key share", ErrShare)
	}
	if v, ok := d.keys.Load(ks); ok {
		return v.(smudgeKey), nil
	}
	k, err := deriveSmudgeKey(ks)
	if err != nil {
		return smudgeKey{}, err
	}
	d.keys.Store(ks, k)
	return k, nil
}

// writeField writes b prefixed with its length, so concatenations are
// unambiguous.
func writeField(h hash.Hash, b []byte) {
	var l [8]byte
	binary.BigEndian.PutUint64(l[:], uint64(len(b)))
	h.Write(l[:])
	h.Write(b)
}

func writeU32(h hash.Hash, v int) {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(v))
	h.Write(b[:])
}

// writeRows hashes rows[j] reduced mod moduli[j], little-endian.
func writeRows(h hash.Hash, rows [][]uint64, moduli []uint64, buf []byte) {
	for j, row := range rows {
		q := moduli[j]
		for i, c := range row {
			if c >= q {
				c %= q
			}
			binary.LittleEndian.PutUint64(buf[8*i:], c)
		}
		h.Write(buf[:8*len(row)])
	}
}

// canonicalC1 returns c1 at level in the NTT domain with every coefficient
// in [0, q_j): the form in which it multiplies the key share.
func (d *Decryptor) canonicalC1(ct *rlwe.Ciphertext, level int) (ring.Poly, error) {
	if ct == nil || len(ct.Value) != 2 || ct.MetaData == nil {
		return ring.Poly{}, fmt.Errorf("%w: not a degree-1 ciphertext", ErrShare)
	}
	c1 := ct.Value[1]
	if !polyShape(c1, d.p.BGV.N(), level, d.p.BGV.QCount()) {
		return ring.Poly{}, fmt.Errorf("%w: c1 has the wrong shape for level %d", ErrShare, level)
	}
	rq := d.p.BGV.RingQ().AtLevel(level)
	out := rq.NewPoly()
	rq.Reduce(c1, out)
	if !ct.IsNTT {
		rq.NTT(out, out)
	}
	return out, nil
}

// hashC1 hashes a canonical c1 (see canonicalC1) at level.
func (d *Decryptor) hashC1(c1 ring.Poly, level int) [sha256.Size]byte {
	rq := d.p.BGV.RingQ().AtLevel(level)
	h := sha256.New()
	writeField(h, []byte(c1HashDomain))
	writeU32(h, level)
	writeU32(h, rq.N())
	writeRows(h, c1.Coeffs[:level+1], rq.ModuliChain()[:level+1], make([]byte, 8*rq.N()))
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// hashOwnerPK hashes the part of an owner public key that a re-encryption
// share at level uses (Q rows 0..level, P rows 0..levelP of both polys), in
// canonical form (coefficients reduced; rlwe public keys are always in the
// NTT and Montgomery domains). The key is chosen by the client, and only the
// PCKS mask depends on it. Rows that never enter the share are left out: two
// keys that differ only there give the same share.
func (d *Decryptor) hashOwnerPK(pk *rlwe.PublicKey, level, levelP int) [sha256.Size]byte {
	h := sha256.New()
	writeField(h, []byte(pkHashDomain))
	writeU32(h, level)
	writeU32(h, levelP)
	q, p := d.p.BGV.RingQ().ModuliChain(), d.p.BGV.RingP().ModuliChain()
	buf := make([]byte, 8*d.p.BGV.N())
	for _, v := range pk.Value {
		writeRows(h, v.Q.Coeffs[:level+1], q, buf)
		writeRows(h, v.P.Coeffs[:levelP+1], p, buf)
	}
	var out [sha256.Size]byte
	h.Sum(out[:0])
	return out
}

// seed computes HMAC-SHA256(key, lp(domain) || u32 level || lp(parts)...).
func (k *smudgeKey) seed(domain string, level int, parts ...[]byte) []byte {
	m := hmac.New(sha256.New, k[:])
	writeField(m, []byte(domain))
	writeU32(m, level)
	for _, p := range parts {
		writeField(m, p)
	}
	return m.Sum(nil)
}

// newSampler returns a fresh sampler over rq drawing x from prng.
// Samplers are per call: they hold PRNG state and a buffer.
func newSampler(prng sampling.PRNG, rq *ring.Ring, x ring.DistributionParameters) ring.Sampler {
	s, err := ring.NewSampler(prng, rq, x, false)
	if err != nil {
		// The distributions are fixed at NewDecryptor; this cannot happen.
		panic(err)
	}
	return s
}

func keyedPRNG(seed []byte) sampling.PRNG {
	prng, err := sampling.NewKeyedPRNG(seed)
	if err != nil {
		// blake2b accepts keys up to 64 bytes; ours are 32.
		panic(err)
	}
	return prng
}

// smudger holds what deterministic share generation needs besides the key
// share. It is read-only after construction except for the pools, so shares
// can be generated concurrently.
type smudger struct {
	flood  flooding            // e of both CKS and PCKS (Committee.smudging)
	be     *ring.BasisExtender // template for ShallowCopy (its buffers are not shared)
	bePool sync.Pool           // of *ring.BasisExtender
}

func newSmudger(p *Params, fl flooding) *smudger {
	s := &smudger{flood: fl}
	if p.BGV.RingP() != nil {
		s.be = ring.NewBasisExtender(p.BGV.RingQ(), p.BGV.RingP())
	}
	return s
}

// floodChunk is how many coefficients readFlood draws per PRNG read. The
// XOF is a stream, so the chunking does not change the samples.
const floodChunk = 512

// readFlood writes into e (rows 0..level of rq, coefficient domain, standard
// representation) N integers uniform in [-B, B), B = 2^logB, drawn from prng
// as the header of this file specifies, each reduced exactly into every
// prime (Montgomery and Barrett reductions of the 128-bit magnitude, no
// division).
func readFlood(prng sampling.PRNG, rq *ring.Ring, logB int, e ring.Poly) {
	if logB < 0 || logB > maxFloodLogB {
		panic(fmt.Sprintf("ledger: flooding width 2^%d out of range", logB))
	}
	w := (logB + 8) / 8 // ceil((logB+1)/8) bytes
	// Masks keeping bits 0..logB of u = (hi, lo), and B = (bhi, blo).
	var mhi, mlo, bhi, blo uint64
	if logB >= 64 {
		mlo, mhi = ^uint64(0), ^uint64(0)>>(127-logB)
		bhi = 1 << (logB - 64)
	} else {
		mlo = ^uint64(0) >> (63 - logB)
		blo = 1 << logB
	}
	sub := rq.SubRings[:rq.Level()+1]
	r128 := make([]uint64, len(sub)) // 2^128 mod q_j: MRed(hi, r128) = hi*2^64 mod q_j
	for j, sr := range sub {
		r128[j] = ring.MForm(ring.MForm(1, sr.Modulus, sr.BRedConstant), sr.Modulus, sr.BRedConstant)
	}
	n := rq.N()
	buf := make([]byte, w*floodChunk)
	var b [16]byte
	for i0 := 0; i0 < n; i0 += floodChunk {
		m := min(floodChunk, n-i0)
		if _, err := prng.Read(buf[:w*m]); err != nil {
			panic(err) // a blake2b XOF does not fail
		}
		for k := 0; k < m; k++ {
			copy(b[:], buf[k*w:(k+1)*w])
			clear(b[w:])
			lo := binary.LittleEndian.Uint64(b[:8]) & mlo
			hi := binary.LittleEndian.Uint64(b[8:]) & mhi
			// e = u - B. With bit logB of u set, e = u - B >= 0 is u with
			// that bit cleared; otherwise e < 0 and |e| = B - u (no
			// borrow out: u < B). pos is all ones in the first case.
			pos := -(((hi & bhi) | (lo & blo)) >> uint(logB%64) & 1)
			nlo, borrow := bits.Sub64(blo, lo, 0)
			nhi, _ := bits.Sub64(bhi, hi, borrow)
			alo := (lo&^blo)&pos | nlo&^pos
			ahi := (hi&^bhi)&pos | nhi&^pos
			for j, sr := range sub {
				q := sr.Modulus
				r := ring.CRed(ring.MRed(ahi, r128[j], q, sr.MRedConstant)+ring.BRedAdd(alo, q, sr.BRedConstant), q)
				e.Coeffs[j][i0+k] = r&pos | ring.CRed(q-r, q)&^pos
			}
		}
	}
}

// cksShare computes c1*s + e in the ciphertext's domain, mirroring
// mhe.KeySwitchProtocol.GenShare with skOutput = 0, with e drawn from the
// PRNG keyed by seedE.
func (d *Decryptor) cksShare(key *smudgeKey, ks *KeyShare, ct *rlwe.Ciphertext, level int) (ring.Poly, error) {
	c1, err := d.canonicalC1(ct, level)
	if err != nil {
		return ring.Poly{}, err
	}
	if err := d.checkKeyShare(ks, level); err != nil {
		return ring.Poly{}, err
	}
	h1 := d.hashC1(c1, level)
	rq := d.p.BGV.RingQ().AtLevel(level)
	out := rq.NewPoly()
	d.floodedKeyTerm(key, ks, c1, h1, level, ct.IsNTT, out)
	return out, nil
}

// floodedKeyTerm writes c1*s + e into out, in the ciphertext's domain: the
// term a decryption share and a re-encryption share have in common, with e
// the committee's flooding drawn by the PRNG keyed by (key share, level, c1).
// c1 (canonical, NTT) is used as a buffer and overwritten.
func (d *Decryptor) floodedKeyTerm(key *smudgeKey, ks *KeyShare, c1 ring.Poly, h1 [sha256.Size]byte, level int, isNTT bool, out ring.Poly) {
	rq := d.p.BGV.RingQ().AtLevel(level)
	rq.MulCoeffsMontgomery(c1, ks.Share.Q, out)
	e := c1
	readFlood(keyedPRNG(key.seed(smudgeSeedDomain, level, h1[:])), rq, d.sm.flood.LogB, e)
	rq.NTT(e, e)
	rq.Add(out, e, out)
	if !isNTT {
		rq.INTT(out, out)
	}
}

// polyShape reports whether every row of p has n coefficients and the row
// count is in [minLevel+1, maxRows].
func polyShape(p ring.Poly, n, minLevel, maxRows int) bool {
	if len(p.Coeffs) < minLevel+1 || len(p.Coeffs) > maxRows {
		return false
	}
	for _, row := range p.Coeffs {
		if len(row) != n {
			return false
		}
	}
	return true
}

func (d *Decryptor) checkKeyShare(ks *KeyShare, level int) error {
	if !polyShape(ks.Share.Q, d.p.BGV.N(), level, d.p.BGV.QCount()) {
		return fmt.Errorf("%w: key share has the wrong shape for level %d", ErrShare, level)
	}
	return nil
}

// pcksShare mirrors mhe.PublicKeySwitchProtocol.GenShare:
//
//	share0 = u*pk0 + e0 + c1*s + e,  share1 = u*pk1 + e1
//
// with (u, e0, e1) drawn as rlwe.Encryptor.EncryptZero does (ternary u from
// Xs, e0 and e1 from Xe, sampled over QP with the first P prime and divided
// by it) from the PRNG keyed by seedMask, and the flooding term e from the
// PRNG keyed by seedE, the same e as the decryption share of ct.
func (d *Decryptor) pcksShare(key *smudgeKey, ks *KeyShare, ct *rlwe.Ciphertext, pk *rlwe.PublicKey, level int) (*rlwe.Element[ring.Poly], error) {
	c1, err := d.canonicalC1(ct, level)
	if err != nil {
		return nil, err
	}
	if err := d.checkKeyShare(ks, level); err != nil {
		return nil, err
	}
	if d.sm.be == nil {
		return nil, fmt.Errorf("%w: re-encryption needs an auxiliary modulus P", ErrParams)
	}
	if pk == nil || len(pk.Value) != 2 {
		return nil, fmt.Errorf("%w: no owner public key", ErrShare)
	}
	for _, v := range pk.Value {
		if !polyShape(v.Q, d.p.BGV.N(), level, d.p.BGV.QCount()) || !polyShape(v.P, d.p.BGV.N(), 0, d.p.BGV.PCount()) {
			return nil, fmt.Errorf("%w: owner public key of the wrong shape", ErrShare)
		}
	}
	const levelP = 0 // rlwe.Encryptor.encryptZeroPk on an Element[ring.Poly]
	h1 := d.hashC1(c1, level)
	hpk := d.hashOwnerPK(pk, level, levelP)
	rqp := d.p.BGV.RingQP().AtLevel(level, levelP)
	rq, rp := d.p.BGV.RingQ(), d.p.BGV.RingP()
	out := rlwe.NewElement(d.p.BGV, 1, level) // as PublicKeySwitchProtocol.AllocateShare

	be, _ := d.sm.bePool.Get().(*ring.BasisExtender)
	if be == nil {
		be = d.sm.be.ShallowCopy()
	}
	defer d.sm.bePool.Put(be)

	// Encryption of zero under pk, as rlwe.Encryptor.encryptZeroPk.
	mask := keyedPRNG(key.seed(maskSeedDomain, level, h1[:], hpk[:]))
	xs := newSampler(mask, rq.AtLevel(level), d.p.BGV.Xs())
	xe := newSampler(mask, rq.AtLevel(level), d.p.BGV.Xe())
	u := ringqp.Poly{Q: rq.NewPoly(), P: rp.NewPoly()}
	ct0 := ringqp.Poly{Q: out.Value[0], P: rp.NewPoly()}
	ct1 := ringqp.Poly{Q: out.Value[1], P: rp.NewPoly()}
	xs.Read(u.Q)
	rqp.ExtendBasisSmallNormAndCenter(u.Q, levelP, u.Q, u.P)
	rqp.NTT(u, u)
	rqp.MulCoeffsMontgomery(u, pk.Value[0], ct0)
	rqp.MulCoeffsMontgomery(u, pk.Value[1], ct1)
	rqp.INTT(ct0, ct0)
	rqp.INTT(ct1, ct1)
	e := u
	xe.Read(e.Q)
	rqp.ExtendBasisSmallNormAndCenter(e.Q, levelP, e.Q, e.P)
	rqp.Add(ct0, e, ct0)
	xe.Read(e.Q)
	rqp.ExtendBasisSmallNormAndCenter(e.Q, levelP, e.Q, e.P)
	rqp.Add(ct1, e, ct1)
	be.ModDownQPtoQ(level, levelP, ct0.Q, ct0.P, out.Value[0])
	be.ModDownQPtoQ(level, levelP, ct1.Q, ct1.P, out.Value[1])
	rql := rq.AtLevel(level)
	if ct.IsNTT {
		rql.NTT(out.Value[0], out.Value[0])
		rql.NTT(out.Value[1], out.Value[1])
	}
	if ct.IsMontgomery {
		rql.MForm(out.Value[0], out.Value[0])
		rql.MForm(out.Value[1], out.Value[1])
	}

	// + c1*s + e, in the ciphertext's domain.
	cs := u.Q
	d.floodedKeyTerm(key, ks, c1, h1, level, ct.IsNTT, cs)
	rql.Add(out.Value[0], cs, out.Value[0])
	return out, nil
}
