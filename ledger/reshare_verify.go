package ledger

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math"
	"math/big"
	"sort"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/ring/ringqp"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"
)

// Verification of a resharing (docs/PROTOCOL.md, "Resharing"). It reuses the
// verified ceremony's machinery: a challenge u = a*r + e1 from a transcript
// no dealer could predict, smudged check values u*x + e, the exact
// "small modulo q0*q1" test, onCurve for "these values lie on one polynomial
// of degree t-1 through this anchor", and the joint test ciphertext. What
// differs: the dealt secrets lambda_j*sk_j are not small, so nothing may be
// revealed to adjudicate (a revealed deal of an honest dealer, with the
// adversary's own, would give away sk_j), and a dealer's check values come
// from the dealer itself (signed), not from its recipients.
//
//  1. Share commitments. Every old member j taking part publishes
//     A_j = u*sk_j + e_j. With c0 = b*r (b the collective key's first
//     part, -a*s + e), c0 + u*s = e*r + e1*s is small because s is. So
//     Delta*c0 + sum_{j in S} Delta*lambda_j*A_j is small for every t-subset
//     S (onCurve): the commitments are of shares of s. If not, the member
//     whose A_j is off the polynomial that most commitments agree on is
//     named (needs more than f + t - 2 of the committing members, and more
//     than half, on the honest polynomial: see offCurve).
//  2. Deal commitments. Dealer j publishes C_{j,k} = u*deal_{j->k} + e for
//     every new member k. Delta'*(-L_j*A_j) + sum_{k in S'}
//     Delta'*lambda'_k*(Delta*C_{j,k}), with L_j = Delta*lambda_j^Q, must be
//     small for the N'-t'+1 spanning t'-subsets S' of the new committee: the
//     deals lie on one degree-(t'-1) polynomial through lambda_j*sk_j. Both
//     sides are signed by j, so a failure names j.
//  3. Private check. Member k checks that C_{j,k} - u*deal_{j->k} is small;
//     if not, it publishes the signed deal as a complaint. A complaint whose
//     deal the dealer signed and that does not match names the dealer; one
//     that matches, or carries an unsigned deal, names the complainer. Only
//     a deal the complainer already holds becomes public, and an honest
//     member complains only about a dealer that cheated.
//  4. Joint test. Every new member decrypts a known public-key encryption
//     under the (unchanged) collective key; every t'-subset must recover it.
//
// Soundness, in short: the deals are fixed before u (every honest member's
// nonce enters the transcript after it holds its deals). 2 and 3 give, for
// each dealer and each checked t'-subset S', u*(Delta*G_j^{S'} - L_j*x_j)
// small, where G_j^{S'} is the Lagrange combination of j's deals to honest
// members and A_j = u*x_j + small; summed over Q and with 1 (Delta*c0 +
// sum_Q L_j*A_j small), u*Delta*(sum_j G_j^{S'} - s) is small. That is a
// fixed ring element times u; as in the ceremony, it is small only if it is
// zero, so every checked subset of new shares reconstructs s.

// ReshareCommit is an old member's signed commitment message: A = u*sk_j + e
// and, for a dealer, C[k] = u*deal_{j->k} + e for every new member k (all
// NTT, full QP level).
type ReshareCommit struct {
	From       int
	Transcript [32]byte
	A          ringqp.Poly
	C          []ringqp.Poly
	Sig        []byte
}

// ReshareCheck is a new member's check message: complaints (signed deals
// that do not match their dealer's commitments) and its decryption share of
// the joint test ciphertext, made with its new key share.
type ReshareCheck struct {
	From       int
	Transcript [32]byte
	Complaints []*ReshareDeal
	Final      *DecShare
}

// ReshareVerifier is the public part of a resharing: everything any
// participant (or observer) derives identically from the acknowledgements.
type ReshareVerifier struct {
	r      *Reshare
	verify DealVerifier // dealers' signatures, by old index

	transcript [32]byte
	u          ringqp.Poly // the challenge, NTT
	c0         ringqp.Poly // b*r, NTT
	ct         *rlwe.Ciphertext
	want       []uint64
	dec        *Decryptor // new committee

	smudge  ring.DiscreteGaussian
	boundNu float64 // honest |c0 + u*s|
	crt     *crtCheck
}

// reshareMaxCeremony bounds the number of parties of the ceremony that made
// s (committees have at most 16 members): s is a sum of that many ternary
// secrets and e of that many Gaussian errors.
const reshareMaxCeremony = 16

// ReshareTranscript hashes the session id and every new member's
// acknowledgement (exactly one per member).
func ReshareTranscript(r *Reshare, acks []*ReshareAck) ([32]byte, error) {
	byFrom := make([]*ReshareAck, r.newCom.N)
	for _, a := range acks {
		if a == nil || a.From < 0 || a.From >= r.newCom.N {
			return [32]byte{}, reshareUnattributed("acknowledgement from outside the new committee")
		}
		if byFrom[a.From] != nil && *byFrom[a.From] != *a {
			return [32]byte{}, reshareRecipientFault(a.From, "sent two different acknowledgements")
		}
		byFrom[a.From] = a
	}
	h := sha256.New()
	h.Write([]byte("zkbank/reshare/transcript/v1\x00"))
	h.Write(r.id[:])
	for k, a := range byFrom {
		if a == nil {
			return [32]byte{}, reshareRecipientFault(k, "sent no acknowledgement")
		}
		h.Write(binary.BigEndian.AppendUint32(nil, uint32(k)))
		h.Write(a.Nonce[:])
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out, nil
}

// NewReshareVerifier derives the challenge, the anchor and the joint test
// ciphertext from the acknowledgements. verify checks dealers' signatures
// (old committee indices).
func NewReshareVerifier(r *Reshare, acks []*ReshareAck, verify DealVerifier) (*ReshareVerifier, error) {
	tr, err := ReshareTranscript(r, acks)
	if err != nil {
		return nil, err
	}
	dec, err := NewDecryptor(r.p, r.newCom)
	if err != nil {
		return nil, err
	}
	v := &ReshareVerifier{r: r, verify: verify, transcript: tr, dec: dec}
	if err := v.bounds(); err != nil {
		return nil, err
	}
	p := r.p
	rqp := p.BGV.RingQP()
	n := p.BGV.N()
	prng := transcriptPRNG(tr, "reshare-challenge")
	rr := liftSmallQP(p, ternary(prng, n))
	e1 := liftSmallQP(p, ternary(prng, n))
	v.u = rqp.NewPoly()
	rqp.MulCoeffsMontgomery(r.a, rr, v.u)
	rqp.Add(v.u, e1, v.u)
	v.c0 = rqp.NewPoly()
	rqp.MulCoeffsMontgomery(r.pk0, rr, v.c0)
	if v.ct, v.want, err = jointTestCiphertext(p, tr, prng, r.pk0, r.a); err != nil {
		return nil, err
	}
	return v, nil
}

// Transcript returns the transcript hash every commitment and check carries.
func (v *ReshareVerifier) Transcript() [32]byte { return v.transcript }

// bounds sizes the smudging of commitments and the honest noise bounds, and
// refuses committees whose worst honest combination does not fit q0*q1.
func (v *ReshareVerifier) bounds() error {
	p, oldC, newC := v.r.p, v.r.oldCom, v.r.newCom
	xe, ok := p.BGV.Xe().(ring.DiscreteGaussian)
	if !ok {
		return fmt.Errorf("%w: resharing needs a Gaussian error distribution", ErrParams)
	}
	// c0 + u*s = e*r + e1*s, e and s sums of up to 16 parties' errors and
	// ternary secrets: 24 standard deviations of that sum (2^15.0 for
	// ZKB128), as the ceremony bounds one party's.
	std := math.Sqrt(float64(reshareMaxCeremony) * float64(p.BGV.N()) * (xe.Sigma*xe.Sigma*2/3 + 4.0/9))
	v.boundNu = 24 * std
	// The same flooding as the ceremony's check values.
	var err error
	if v.smudge, err = checkSmudging(p, oldC.T, "resharing"); err != nil {
		return err
	}
	v.crt = newCRTCheck(p)
	l1 := func(com *Committee) float64 {
		worst := 0.0
		Subsets(com.N, com.T, func(idx []int) {
			s := 0.0
			for _, c := range ceremonyCoefficients(com, idx) {
				f, _ := new(big.Float).SetInt(new(big.Int).Abs(c)).Float64()
				s += f
			}
			worst = math.Max(worst, s)
		})
		return worst
	}
	dOld, _ := new(big.Float).SetInt(oldC.Delta).Float64()
	dNew, _ := new(big.Float).SetInt(newC.Delta).Float64()
	worst := dOld*v.boundNu + l1(oldC)*v.smudge.Bound
	for _, j := range v.r.dealers {
		w := dNew*v.lambdaAbs(j)*v.smudge.Bound + dOld*l1(newC)*v.smudge.Bound
		worst = math.Max(worst, w)
	}
	if worst >= v.crt.halfQ01/4 {
		return fmt.Errorf("%w: resharing %d-of-%d to %d-of-%d: check bound 2^%.1f does not fit q0*q1", ErrParams, oldC.T, oldC.N, newC.T, newC.N, math.Log2(worst))
	}
	return nil
}

func (v *ReshareVerifier) lambdaAbs(j int) float64 {
	f, _ := new(big.Float).SetInt(new(big.Int).Abs(v.r.lambda[j])).Float64()
	return f
}

// noiseKey is the secret PRF key of a member's commitment noise, derived from
// its key share: the same transcript always gets the same noise, so asking
// twice releases no second sample of u*sk_j.
func noiseKey(ks *KeyShare) ([]byte, error) {
	b, err := ks.MarshalBinary()
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	var n [8]byte
	dom := []byte("zkbank/reshare/noise-key/v1")
	binary.BigEndian.PutUint64(n[:], uint64(len(dom)))
	h.Write(n[:])
	h.Write(dom)
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	h.Write(n[:])
	h.Write(b)
	return h.Sum(nil), nil
}

// noise draws the smudging term for (purpose, k) from the member's key,
// bound to the transcript and to what it smudges (bind: the hash of a deal,
// so two different deals under one transcript never share noise that a
// difference would cancel).
func (v *ReshareVerifier) noise(key []byte, purpose string, k int, bind []byte) (ringqp.Poly, error) {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("zkbank/reshare/noise/v2\x00"))
	mac.Write([]byte(purpose))
	mac.Write([]byte{0})
	mac.Write(v.transcript[:])
	mac.Write(binary.BigEndian.AppendUint32(nil, uint32(k)))
	mac.Write(bind)
	prng, err := sampling.NewKeyedPRNG(mac.Sum(nil))
	if err != nil {
		return ringqp.Poly{}, err
	}
	s, err := ring.NewSampler(prng, v.r.p.BGV.RingQ().AtLevel(0), v.smudge, false)
	if err != nil {
		return ringqp.Poly{}, fmt.Errorf("%w: %w", ErrReshare, err)
	}
	return smudgeNoiseQP(v.r.p, s), nil
}

// commitSigningBytes is what old member from signs for its commitment.
func (v *ReshareVerifier) commitSigningBytes(c *ReshareCommit) ([]byte, error) {
	h := sha256.New()
	put := func(x ringqp.Poly) error {
		b, err := x.MarshalBinary()
		if err != nil {
			return err
		}
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(b))))
		h.Write(b)
		return nil
	}
	if err := put(c.A); err != nil {
		return nil, err
	}
	h.Write(binary.BigEndian.AppendUint32(nil, uint32(len(c.C))))
	for _, x := range c.C {
		if err := put(x); err != nil {
			return nil, err
		}
	}
	msg := []byte("zkbank/reshare/commit/v1\x00")
	msg = append(msg, v.r.id[:]...)
	msg = append(msg, c.Transcript[:]...)
	msg = binary.BigEndian.AppendUint32(msg, uint32(c.From))
	return h.Sum(msg), nil
}

// Commit returns this old member's signed commitment message (the same one
// on every call for one transcript).
func (d *ReshareDealer) Commit(v *ReshareVerifier, sign DealSigner) (*ReshareCommit, error) {
	if d.commit != nil && d.commit.Transcript == v.transcript {
		return d.commit, nil
	}
	if sign == nil {
		return nil, fmt.Errorf("%w: no signer", ErrReshare)
	}
	j := d.ks.Index
	if v.r.isDealer(j) {
		if err := d.makeDeals(); err != nil {
			return nil, err
		}
	}
	key, err := noiseKey(d.ks)
	if err != nil {
		return nil, fmt.Errorf("%w: noise key of %d: %w", ErrReshare, j, err)
	}
	rqp := v.r.p.BGV.RingQP()
	commit := func(x ringqp.Poly, purpose string, k int) (ringqp.Poly, error) {
		out := rqp.NewPoly()
		rqp.MulCoeffsMontgomery(x, v.u, out)
		var bind []byte
		if purpose == "deal" {
			b, err := x.MarshalBinary()
			if err != nil {
				return out, err
			}
			h := sha256.Sum256(b)
			bind = h[:]
		}
		e, err := v.noise(key, purpose, k, bind)
		if err != nil {
			return out, err
		}
		rqp.Add(out, e, out)
		return out, nil
	}
	c := &ReshareCommit{From: j, Transcript: v.transcript}
	if c.A, err = commit(d.ks.Share.Poly, "share", 0); err != nil {
		return nil, err
	}
	for k := range d.shares {
		x, err := commit(d.shares[k].Poly, "deal", k)
		if err != nil {
			return nil, err
		}
		c.C = append(c.C, x)
	}
	msg, err := v.commitSigningBytes(c)
	if err != nil {
		return nil, fmt.Errorf("%w: commitment of %d: %w", ErrReshare, j, err)
	}
	if c.Sig, err = sign(msg); err != nil {
		return nil, fmt.Errorf("%w: signing commitment of %d: %w", ErrReshare, j, err)
	}
	d.commit = c
	return c, nil
}

// commitments sorts the commitment messages by old member and returns the
// usable ones (nil where missing or unusable) with the faults found.
func (v *ReshareVerifier) commitments(commits []*ReshareCommit) ([]*ReshareCommit, []*ReshareFault) {
	n := v.r.oldCom.N
	out := make([]*ReshareCommit, n)
	seen := make([]bool, n)
	var faults []*ReshareFault
	for _, c := range commits {
		if c == nil || c.From < 0 || c.From >= n {
			continue
		}
		if seen[c.From] {
			if out[c.From] != nil {
				faults = append(faults, reshareDealerFault(c.From, "sent two commitment messages"))
			}
			out[c.From] = nil
			continue
		}
		seen[c.From] = true
		if err := v.wellFormed(c); err != nil {
			faults = append(faults, reshareDealerFault(c.From, "unusable commitment message: %v", err))
			continue
		}
		out[c.From] = c
	}
	for _, j := range v.r.dealers {
		if !seen[j] {
			faults = append(faults, reshareDealerFault(j, "sent no commitment message"))
		}
	}
	return out, faults
}

func (v *ReshareVerifier) wellFormed(c *ReshareCommit) error {
	if c.Transcript != v.transcript {
		return fmt.Errorf("commits to another transcript")
	}
	if err := v.r.p.checkQP(c.A); err != nil {
		return fmt.Errorf("share commitment: %v", err)
	}
	want := 0
	if v.r.isDealer(c.From) {
		want = v.r.newCom.N
	}
	if len(c.C) != want {
		return fmt.Errorf("%d deal commitments, want %d", len(c.C), want)
	}
	for k, x := range c.C {
		if err := v.r.p.checkQP(x); err != nil {
			return fmt.Errorf("deal commitment %d: %v", k, err)
		}
	}
	if len(c.Sig) == 0 || len(c.Sig) > maxDealSig {
		return fmt.Errorf("signature of %d bytes", len(c.Sig))
	}
	msg, err := v.commitSigningBytes(c)
	if err != nil {
		return err
	}
	if v.verify == nil || !v.verify(c.From, msg, c.Sig) {
		return fmt.Errorf("bad signature")
	}
	return nil
}

// dealMatches reports whether deal is within the smudging bound of its
// commitment C: C - u*deal small.
func (v *ReshareVerifier) dealMatches(c ringqp.Poly, deal ringqp.Poly) bool {
	rqp := v.r.p.BGV.RingQP()
	z := rqp.NewPoly()
	rqp.MulCoeffsMontgomery(deal, v.u, z)
	rqp.Sub(c, z, z)
	rqp.INTT(z, z)
	return v.crt.small(z, v.smudge.Bound)
}

// Check compares this member's deals with the dealers' commitments, forms
// its new key share (kept inside until the verdict) and returns its check
// message.
func (rc *ReshareRecipient) Check(v *ReshareVerifier, commits []*ReshareCommit) (*ReshareCheck, error) {
	if rc.check != nil && rc.check.Transcript == v.transcript {
		return rc.check, nil
	}
	if rc.ack == nil {
		return nil, fmt.Errorf("%w: check before the acknowledgement", ErrReshare)
	}
	cs, _ := v.commitments(commits)
	params := rc.r.p.BGV
	rqp := params.RingQP()
	c := &ReshareCheck{From: rc.index, Transcript: v.transcript}
	acc := rqp.NewPoly()
	for _, j := range rc.r.dealers {
		d := rc.deals[j]
		rqp.Add(acc, d.Share.Poly, acc)
		if cm := cs[j]; cm != nil && !v.dealMatches(cm.C[rc.index], d.Share.Poly) {
			c.Complaints = append(c.Complaints, d)
		}
	}
	ks := &KeyShare{Index: rc.index, N: rc.r.newCom.N, T: rc.r.newCom.T, Share: mhe.ShamirSecretShare{Poly: acc}}
	var err error
	if c.Final, err = v.dec.Share(ks, v.ct); err != nil {
		return nil, fmt.Errorf("%w: joint test share of %d: %w", ErrReshare, rc.index, err)
	}
	rc.share = ks
	rc.check = c
	return c, nil
}

// Verdict decides the resharing from every commitment and check message:
// nil if every check passed, else a *ReshareFault naming who is to blame.
// It is a deterministic function of the messages; participants that hold
// the same messages reach the same verdict.
func (v *ReshareVerifier) Verdict(commits []*ReshareCommit, checks []*ReshareCheck) error {
	oldC, newC := v.r.oldCom, v.r.newCom
	cs, faults := v.commitments(commits)
	rqp := v.r.p.BGV.RingQP()

	// 1. The share commitments are of shares of s.
	var pts []int
	for j, c := range cs {
		if c != nil {
			pts = append(pts, j)
		}
	}
	dOld, _ := new(big.Float).SetInt(oldC.Delta).Float64()
	aOf := func(j int) ringqp.Poly { return cs[j].A }
	if len(pts) < oldC.T {
		faults = append(faults, reshareUnattributed("%d usable share commitments, need %d", len(pts), oldC.T))
	} else if !onCurve(v.r.p, v.crt, oldC, v.c0, dOld*v.boundNu, pts, aOf, v.smudge.Bound) {
		bad, ok := v.offCurve(pts, aOf)
		if !ok {
			faults = append(faults, reshareUnattributed("the share commitments of old validators %v do not recombine to the collective key, and no majority of them agrees", pts))
		}
		for _, j := range bad {
			faults = append(faults, reshareDealerFault(j, "its commitment is not to its share of the collective key (the commitments of the others agree)"))
		}
	}

	// 2. Each dealer's deals lie on one degree-(t'-1) polynomial through
	// lambda_j times the share it committed to.
	all := make([]int, newC.N)
	for k := range all {
		all[k] = k
	}
	dNew, _ := new(big.Float).SetInt(newC.Delta).Float64()
	for _, j := range v.r.dealers {
		c := cs[j]
		if c == nil {
			continue
		}
		anchor := rqp.NewPoly()
		mulScalarQP(rqp, c.A, new(big.Int).Neg(v.r.lambda[j]), anchor, false)
		scaled := make([]ringqp.Poly, newC.N)
		for k := range scaled {
			scaled[k] = rqp.NewPoly()
			mulScalarQP(rqp, c.C[k], oldC.Delta, scaled[k], false)
		}
		if !onCurve(v.r.p, v.crt, newC, anchor, dNew*v.lambdaAbs(j)*v.smudge.Bound, all,
			func(k int) ringqp.Poly { return scaled[k] }, dOld*v.smudge.Bound) {
			faults = append(faults, reshareDealerFault(j, "its deal commitments are not one degree-%d polynomial through lambda_%d times the share it committed to", newC.T-1, j))
		}
	}

	// 3. Check messages and complaints.
	byFrom := make([]*ReshareCheck, newC.N)
	seen := make([]bool, newC.N)
	for _, c := range checks {
		if c == nil || c.From < 0 || c.From >= newC.N {
			continue
		}
		if seen[c.From] {
			faults = append(faults, reshareRecipientFault(c.From, "sent two check messages"))
			byFrom[c.From] = nil
			continue
		}
		seen[c.From] = true
		byFrom[c.From] = c
	}
	var valid []int
	var finals []*DecShare
	for k, c := range byFrom {
		switch {
		case !seen[k]:
			faults = append(faults, reshareRecipientFault(k, "sent no check message"))
			continue
		case c == nil:
			continue
		case c.Transcript != v.transcript:
			faults = append(faults, reshareRecipientFault(k, "its check message is for another transcript"))
			continue
		case c.Final == nil || c.Final.Validator != k || c.Final.Share.Value.N() != v.r.p.BGV.N() || c.Final.Share.Value.Level() != LevelDecrypt:
			faults = append(faults, reshareRecipientFault(k, "malformed joint test share"))
			continue
		}
		valid = append(valid, k)
		finals = append(finals, c.Final)
		complained := map[int]bool{}
		for _, d := range c.Complaints {
			if d == nil || complained[d.From] {
				faults = append(faults, reshareRecipientFault(k, "sent an empty or repeated complaint"))
				continue
			}
			complained[d.From] = true
			if err := v.r.verifyDeal(d, d.From, k, v.verify); err != nil {
				faults = append(faults, reshareRecipientFault(k, "complained with a deal from %d that %d did not sign for it (%v)", d.From, d.From, err))
				continue
			}
			cm := cs[d.From]
			if cm == nil {
				continue // the dealer is already blamed for its commitment message
			}
			if v.dealMatches(cm.C[k], d.Share.Poly) {
				faults = append(faults, reshareRecipientFault(k, "complained about the deal from %d, which matches %d's commitment", d.From, d.From))
			} else {
				faults = append(faults, reshareDealerFault(d.From, "signed a deal for new validator %d that does not match its own commitment to it", k))
			}
		}
	}

	// 4. The joint test, once everything else holds (a failure above already
	// explains a failing test).
	if len(faults) == 0 {
		ok, good := everySubsetDecrypts(v.dec, newC.T, v.ct, v.want, valid, finals)
		if !ok {
			found := false
			for _, k := range valid {
				if len(good) > 0 && !good[k] {
					faults = append(faults, reshareRecipientFault(k, "its decryption share of the joint test ciphertext is wrong (every %d-subset with it fails, others decrypt)", newC.T))
					found = true
				}
			}
			if !found {
				faults = append(faults, reshareUnattributed("the joint test ciphertext did not decrypt with every %d-subset of the new committee, although every commitment checked out", newC.T))
			}
		}
	}
	if f := joinReshareFaults(faults); f != nil {
		return f
	}
	return nil
}

// offCurve finds the commitments off the polynomial that most of them share:
// for every (t-1)-subset S of pts, the points j with anchor, S and j on one
// polynomial; the largest such support wins if it is unique, holds more
// than half of the points, and more than f + t - 2 of them. Two distinct
// polynomials through the anchor share at most t-2 further points, so a
// cheaters' polynomial can gather their own (at most f) points and t-2
// honest ones: only a support larger than that is surely the honest one.
func (v *ReshareVerifier) offCurve(pts []int, val func(int) ringqp.Poly) ([]int, bool) {
	oldC := v.r.oldCom
	dOld, _ := new(big.Float).SetInt(oldC.Delta).Float64()
	var best map[int]bool
	tie := false
	Subsets(len(pts), oldC.T-1, func(pos []int) {
		sup := map[int]bool{}
		in := map[int]bool{}
		for _, a := range pos {
			in[pts[a]] = true
			sup[pts[a]] = true
		}
		for _, j := range pts {
			if in[j] {
				continue
			}
			idx := []int{j}
			for _, a := range pos {
				idx = append(idx, pts[a])
			}
			sort.Ints(idx)
			if onCurve(v.r.p, v.crt, oldC, v.c0, dOld*v.boundNu, idx, val, v.smudge.Bound) {
				sup[j] = true
			}
		}
		if oldC.T == 1 {
			// t = 1: S is empty and every commitment stands alone.
			for k := range in {
				delete(sup, k)
			}
		}
		switch {
		case best == nil || len(sup) > len(best):
			best, tie = sup, false
		case len(sup) == len(best) && !sameSet(sup, best):
			tie = true
		}
	})
	// Commitments are not committed to before they are revealed, and the
	// anchor is public: colluders who wait for the honest commitments can
	// post values on another polynomial through the anchor and t-2 honest
	// ones. Such a support holds at most f cheaters and t-2 honest members,
	// so the largest support is the honest polynomial's only when it is
	// larger than f + t - 2 (and than half the points); otherwise the fault
	// is unattributed rather than possibly naming an honest member.
	if best == nil || tie || 2*len(best) <= len(pts) || len(best) <= oldC.F()+max(oldC.T-2, 0) {
		return nil, false
	}
	var bad []int
	for _, j := range pts {
		if !best[j] {
			bad = append(bad, j)
		}
	}
	return bad, len(bad) > 0
}

func sameSet(a, b map[int]bool) bool {
	if len(a) != len(b) {
		return false
	}
	for k := range a {
		if !b[k] {
			return false
		}
	}
	return true
}
