package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"
)

// The genesis key ceremony, as message-in/message-out steps a node can run
// over any transport:
//
//	round 1: every party broadcasts Round1 (public-key, relinearization
//	         round-1 and Galois-key shares) and sends each other party its
//	         private ShamirDeal over an authenticated, encrypted channel.
//	round 2: after all Round1 messages, every party broadcasts Round2
//	         (relinearization round-2 share).
//	finish:  anyone aggregates the public messages into PublicKeys; each
//	         party aggregates the deals addressed to it into its KeyShare.
//
// All N parties must take part (the collective key is N-of-N additive); the
// resulting Shamir shares then allow any T of them to decrypt. No process ever
// holds the collective secret key. Common random polynomials come from a
// public seed (the chain id), so every party derives the same ones.
//
// Finish trusts the deals: one wrong deal silently leaves some t-subsets
// unable to decrypt. Nodes run the verified ceremony instead
// (ceremony_verify.go): signed deals (SignDeals, AcceptDeal before Round2),
// then Check, Evaluate, Reveal and VerifiedKeyShare, which detect a wrong
// deal before any key share is kept and name the dealer.

// ErrCeremony reports a protocol violation during key generation.
var ErrCeremony = errors.New("ledger: key ceremony")

// Round1 is a party's public first-round message.
type Round1 struct {
	From int
	CKG  mhe.PublicKeyGenShare
	RKG  mhe.RelinearizationKeyGenShare
	GKG  []mhe.GaloisKeyGenShare // in Params.GaloisElements order
}

// Round2 is a party's public second-round message.
type Round2 struct {
	From int
	RKG  mhe.RelinearizationKeyGenShare
}

// ShamirDeal is the private Shamir share of party From's secret for party To.
type ShamirDeal struct {
	From, To int
	Share    mhe.ShamirSecretShare
}

// PublicKeys are what genesis publishes: the collective public key and the
// evaluation keys validators need.
type PublicKeys struct {
	PK  *rlwe.PublicKey
	RLK *rlwe.RelinearizationKey
	GKs []*rlwe.GaloisKey
}

// EvaluationKeys returns the key set an evaluator uses.
func (k *PublicKeys) EvaluationKeys() *rlwe.MemEvaluationKeySet {
	return rlwe.NewMemEvaluationKeySet(k.RLK, k.GKs...)
}

// Party is one validator's side of the ceremony. It keeps its additive secret
// only until Finish; after that only the Shamir share remains.
type Party struct {
	p     *Params
	com   *Committee
	index int
	seed  []byte

	sk    *rlwe.SecretKey
	ephSk *rlwe.SecretKey
	rkg   mhe.RelinearizationKeyGenProtocol
	r1    *Round1

	// Verified ceremony (ceremony_verify.go).
	deals  map[int]*SignedDeal // accepted deals by dealer; nil: unverified path
	round2 bool
	check  *CeremonyCheck
	share  *KeyShare // formed by Check, handed out by VerifiedKeyShare
}

// NewParty starts the ceremony for validator index of a committee. seed is
// the public common reference string (e.g. the chain id).
func NewParty(p *Params, com *Committee, index int, seed []byte) (*Party, error) {
	if index < 0 || index >= com.N {
		return nil, fmt.Errorf("%w: party index %d of %d", ErrCeremony, index, com.N)
	}
	return &Party{p: p, com: com, index: index, seed: append([]byte(nil), seed...)}, nil
}

// crs derives an independent common PRNG per purpose from the public seed.
func crs(seed []byte, purpose string, n uint64) sampling.PRNG {
	h := sha256.New()
	h.Write([]byte("zkbank/crs/v1\x00"))
	h.Write(seed)
	h.Write([]byte(purpose))
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	h.Write(b[:])
	prng, err := sampling.NewKeyedPRNG(h.Sum(nil))
	if err != nil {
		panic(err) // only fails on a nil key
	}
	return prng
}

// Round1 samples this party's secret and returns its public message and one
// private deal per other party (the deal to itself is kept internally).
func (pt *Party) Round1() (*Round1, []*ShamirDeal, error) {
	if pt.r1 != nil {
		return nil, nil, fmt.Errorf("%w: round 1 already run", ErrCeremony)
	}
	params := pt.p.BGV
	pt.sk = rlwe.NewKeyGenerator(params).GenSecretKeyNew()

	ckg := mhe.NewPublicKeyGenProtocol(params)
	ckgShare := ckg.AllocateShare()
	ckg.GenShare(pt.sk, ckg.SampleCRP(crs(pt.seed, "ckg", 0)), &ckgShare)

	evk := pt.p.evkParams()
	pt.rkg = mhe.NewRelinearizationKeyGenProtocol(params)
	ephSk, rkgR1, _ := pt.rkg.AllocateShare(evk)
	pt.rkg.GenShareRoundOne(pt.sk, pt.rkg.SampleCRP(crs(pt.seed, "rkg", 0), evk), ephSk, &rkgR1)
	pt.ephSk = ephSk

	gkg := mhe.NewGaloisKeyGenProtocol(params)
	els := pt.p.GaloisElements()
	gks := make([]mhe.GaloisKeyGenShare, len(els))
	for i, g := range els {
		gks[i] = gkg.AllocateShare(evk)
		if err := gkg.GenShare(pt.sk, g, gkg.SampleCRP(crs(pt.seed, "gkg", g), evk), &gks[i]); err != nil {
			return nil, nil, fmt.Errorf("%w: galois share: %w", ErrCeremony, err)
		}
	}

	thr := mhe.NewThresholdizer(params)
	poly, err := thr.GenShamirPolynomial(pt.com.T, pt.sk)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %w", ErrCeremony, err)
	}
	deals := make([]*ShamirDeal, 0, pt.com.N)
	for j := 0; j < pt.com.N; j++ {
		d := &ShamirDeal{From: pt.index, To: j, Share: thr.AllocateThresholdSecretShare()}
		thr.GenShamirSecretShare(Point(j), poly, &d.Share)
		deals = append(deals, d)
	}
	pt.r1 = &Round1{From: pt.index, CKG: ckgShare, RKG: rkgR1, GKG: gks}
	return pt.r1, deals, nil
}

// checkComplete verifies there is exactly one message from every party.
func checkComplete[T any](n int, msgs []T, from func(T) int) ([]T, error) {
	out := make([]T, n)
	seen := make([]bool, n)
	for _, m := range msgs {
		f := from(m)
		if f < 0 || f >= n {
			return nil, fmt.Errorf("%w: message from unknown party %d", ErrCeremony, f)
		}
		if seen[f] {
			return nil, fmt.Errorf("%w: duplicate message from party %d", ErrCeremony, f)
		}
		seen[f] = true
		out[f] = m
	}
	for i, ok := range seen {
		if !ok {
			return nil, fmt.Errorf("%w: missing message from party %d", ErrCeremony, i)
		}
	}
	return out, nil
}

// Round2 takes every party's Round1 and returns this party's Round2.
func (pt *Party) Round2(all []*Round1) (*Round2, error) {
	if pt.r1 == nil {
		return nil, fmt.Errorf("%w: round 2 before round 1", ErrCeremony)
	}
	// In the verified ceremony every deal must be fixed before this party's
	// Round2 goes out: the check challenge hashes Round2, so no dealer can
	// know it while its deals can still change.
	if pt.deals != nil && len(pt.deals) < pt.com.N {
		return nil, fmt.Errorf("%w: round 2 with %d of %d deals accepted", ErrCeremony, len(pt.deals), pt.com.N)
	}
	r1s, err := checkComplete(pt.com.N, all, func(m *Round1) int { return m.From })
	if err != nil {
		return nil, err
	}
	agg, err := aggregateRKG1(pt.p, r1s)
	if err != nil {
		return nil, err
	}
	_, _, r2 := pt.rkg.AllocateShare(pt.p.evkParams())
	pt.rkg.GenShareRoundTwo(pt.ephSk, pt.sk, agg, &r2)
	pt.round2 = true
	return &Round2{From: pt.index, RKG: r2}, nil
}

func aggregateRKG1(p *Params, r1s []*Round1) (mhe.RelinearizationKeyGenShare, error) {
	rkg := mhe.NewRelinearizationKeyGenProtocol(p.BGV)
	_, agg, _ := rkg.AllocateShare(p.evkParams())
	for i, m := range r1s {
		if i == 0 {
			agg = copyRKGShare(rkg, p, m.RKG)
			continue
		}
		if err := safeCall(func() { rkg.AggregateShares(agg, m.RKG, &agg) }); err != nil {
			return agg, fmt.Errorf("%w: relinearization share from %d: %w", ErrCeremony, m.From, err)
		}
	}
	return agg, nil
}

func copyRKGShare(rkg mhe.RelinearizationKeyGenProtocol, p *Params, s mhe.RelinearizationKeyGenShare) mhe.RelinearizationKeyGenShare {
	b, err := s.MarshalBinary()
	if err != nil {
		panic(err)
	}
	_, out, _ := rkg.AllocateShare(p.evkParams())
	if err := out.UnmarshalBinary(b); err != nil {
		panic(err)
	}
	return out
}

// safeCall converts a panic inside third-party aggregation (mismatched shapes
// from a malicious message) into an error.
func safeCall(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	f()
	return nil
}

// AggregatePublic combines every party's public messages into PublicKeys.
// It is deterministic: every party (and any observer) gets the same keys.
func AggregatePublic(p *Params, com *Committee, seed []byte, all1 []*Round1, all2 []*Round2) (*PublicKeys, error) {
	r1s, err := checkComplete(com.N, all1, func(m *Round1) int { return m.From })
	if err != nil {
		return nil, err
	}
	r2s, err := checkComplete(com.N, all2, func(m *Round2) int { return m.From })
	if err != nil {
		return nil, err
	}
	params := p.BGV
	evk := p.evkParams()
	els := p.GaloisElements()
	out := &PublicKeys{}

	ckg := mhe.NewPublicKeyGenProtocol(params)
	ckgAgg := ckg.AllocateShare()
	for i, m := range r1s {
		if i == 0 {
			ckgAgg.Value.Copy(m.CKG.Value)
			continue
		}
		if err := safeCall(func() { ckg.AggregateShares(ckgAgg, m.CKG, &ckgAgg) }); err != nil {
			return nil, fmt.Errorf("%w: public-key share from %d: %w", ErrCeremony, m.From, err)
		}
	}
	out.PK = rlwe.NewPublicKey(params)
	ckg.GenPublicKey(ckgAgg, ckg.SampleCRP(crs(seed, "ckg", 0)), out.PK)

	rkg := mhe.NewRelinearizationKeyGenProtocol(params)
	agg1, err := aggregateRKG1(p, r1s)
	if err != nil {
		return nil, err
	}
	agg2 := copyRKGShare(rkg, p, r2s[0].RKG)
	for _, m := range r2s[1:] {
		if err := safeCall(func() { rkg.AggregateShares(agg2, m.RKG, &agg2) }); err != nil {
			return nil, fmt.Errorf("%w: relinearization round-2 share from %d: %w", ErrCeremony, m.From, err)
		}
	}
	out.RLK = rlwe.NewRelinearizationKey(params, evk)
	if err := safeCall(func() { rkg.GenRelinearizationKey(agg1, agg2, out.RLK) }); err != nil {
		return nil, fmt.Errorf("%w: relinearization key: %w", ErrCeremony, err)
	}

	gkg := mhe.NewGaloisKeyGenProtocol(params)
	for gi, g := range els {
		agg := gkg.AllocateShare(evk)
		for i, m := range r1s {
			if len(m.GKG) != len(els) {
				return nil, fmt.Errorf("%w: party %d sent %d Galois shares, want %d", ErrCeremony, m.From, len(m.GKG), len(els))
			}
			if m.GKG[gi].GaloisElement != g {
				return nil, fmt.Errorf("%w: party %d Galois share %d is for element %d, want %d", ErrCeremony, m.From, gi, m.GKG[gi].GaloisElement, g)
			}
			var err error
			if i == 0 {
				err = safeCall(func() {
					b, e := m.GKG[gi].MarshalBinary()
					if e == nil {
						e = agg.UnmarshalBinary(b)
					}
					if e != nil {
						panic(e)
					}
				})
			} else {
				err = safeCall(func() {
					if e := gkg.AggregateShares(agg, m.GKG[gi], &agg); e != nil {
						panic(e)
					}
				})
			}
			if err != nil {
				return nil, fmt.Errorf("%w: Galois share from %d: %w", ErrCeremony, m.From, err)
			}
		}
		gk := rlwe.NewGaloisKey(params, evk)
		if err := gkg.GenGaloisKey(agg, gkg.SampleCRP(crs(seed, "gkg", g), evk), gk); err != nil {
			return nil, fmt.Errorf("%w: Galois key %d: %w", ErrCeremony, g, err)
		}
		out.GKs = append(out.GKs, gk)
	}
	return out, nil
}

// Finish aggregates the deals addressed to this party into its KeyShare and
// erases the additive secret. It does not verify the deals: see the verified
// ceremony (Party.Check) for what nodes run.
func (pt *Party) Finish(deals []*ShamirDeal) (*KeyShare, error) {
	if pt.r1 == nil {
		return nil, fmt.Errorf("%w: finish before round 1", ErrCeremony)
	}
	mine := make([]*ShamirDeal, 0, len(deals))
	for _, d := range deals {
		if d != nil && d.To == pt.index {
			mine = append(mine, d)
		}
	}
	ds, err := checkComplete(pt.com.N, mine, func(d *ShamirDeal) int { return d.From })
	if err != nil {
		return nil, err
	}
	thr := mhe.NewThresholdizer(pt.p.BGV)
	acc := thr.AllocateThresholdSecretShare()
	for i, d := range ds {
		if i == 0 {
			acc.Copy(d.Share.Poly)
			continue
		}
		if err := safeCall(func() {
			if e := thr.AggregateShares(acc, d.Share, &acc); e != nil {
				panic(e)
			}
		}); err != nil {
			return nil, fmt.Errorf("%w: deal from %d: %w", ErrCeremony, d.From, err)
		}
	}
	pt.sk, pt.ephSk = nil, nil
	return &KeyShare{Index: pt.index, N: pt.com.N, T: pt.com.T, Share: acc}, nil
}
