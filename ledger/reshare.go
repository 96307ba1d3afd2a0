package ledger

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"sort"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring/ringqp"
)

// Key resharing for a validator-set change: the collective secret s, held as
// Shamir shares sk_j (degree t-1, points 1..N) by the old committee (N, t),
// is re-dealt to a new committee (N', t') without ever being assembled, and
// the collective public key, the evaluation keys and every ciphertext stay
// valid. See docs/PROTOCOL.md ("Resharing").
//
//	deal:   each dealer j of a t-subset Q of the old committee Shamir-shares
//	        lambda_j^Q * sk_j with a fresh degree-(t'-1) polynomial to the
//	        new points 1..N', signing every deal (ReshareDealer.Deals).
//	ack:    each new member k accepts one signed deal per dealer, then
//	        publishes an acknowledgement with a fresh nonce (Ack). The
//	        transcript hashes every acknowledgement, so no dealer knows it
//	        while its deals to honest members can still change.
//	commit: every old member taking part publishes u*sk_j + e; each dealer
//	        also publishes u*deal_{j->k} + e for every k (Commit), with u
//	        derived from the transcript (reshare_verify.go).
//	check:  each new member compares its deals with the dealers'
//	        commitments (complaining with the signed deal if one does not
//	        match), sums its deals into sk'_k = sum_j deal_{j->k} and
//	        publishes its decryption share of a joint test ciphertext (Check).
//	verdict: everyone runs ReshareVerifier.Verdict on the same messages; the
//	        new share is released only if it returns nil (KeyShare).
//
// Since sum_{j in Q} lambda_j sk_j = s and every deal polynomial is of degree
// t'-1, sum_{k in S} lambda'_k sk'_k = s for every t'-subset S of the new
// committee: the key is unchanged.

// ErrReshare reports a failed or misused key resharing.
var ErrReshare = errors.New("ledger: key resharing")

// ReshareFault is a failed resharing, naming who is to blame. Dealer is an
// index in the old committee (a member that dealt, or committed to its
// share), Recipient an index in the new committee; at most one is >= 0, and
// both are -1 when the failure is not attributable. It wraps ErrReshare.
//
// Dealer is the old member blamed: its commitment is not one to its share of
// the collective key, its deals are not one degree-(t'-1) polynomial through
// lambda_j times that share, it signed a deal that does not match its
// commitments or two different deals for one recipient, or its messages are
// missing or malformed. Recipient is the new member blamed: it complained
// about a deal that matches the dealer's commitment or that the dealer did
// not sign, its joint test decryption share is wrong, or its messages are
// missing or malformed. More lists further, independent faults found in the
// same run.
type ReshareFault = fault[reshareRoles]

// Reshare is the public description of one resharing session, identical at
// every participant.
type Reshare struct {
	p              *Params
	oldCom, newCom *Committee
	dealers        []int // Q, ascending old indices
	id             [32]byte
	pk0, a         ringqp.Poly // the collective public key (b, a)

	lambda  map[int]*big.Int // Delta_old * lambda_j^Q
	lambdaQ map[int]*big.Int // lambda_j^Q mod QP
}

// NewReshare describes a session re-dealing the collective key behind pk
// from the old committee to the new one, dealt by the old members dealers (a
// t-subset of old). session must be unique per resharing (a node uses the
// chain id and the height of the validator-set change); bind is further
// public context every participant agrees on (a node passes the old and new
// validators' signing keys).
func NewReshare(p *Params, old, next *Committee, dealers []int, pk *rlwe.PublicKey, session, bind []byte) (*Reshare, error) {
	if old == nil || next == nil || pk == nil {
		return nil, fmt.Errorf("%w: missing committee or public key", ErrReshare)
	}
	if len(dealers) != old.T {
		return nil, fmt.Errorf("%w: %d dealers, want the old threshold %d", ErrReshare, len(dealers), old.T)
	}
	q := append([]int(nil), dealers...)
	sort.Ints(q)
	for i, j := range q {
		if j < 0 || j >= old.N || i > 0 && q[i-1] == j {
			return nil, fmt.Errorf("%w: dealers %v are not distinct members of the old %d-of-%d committee", ErrReshare, dealers, old.T, old.N)
		}
	}
	for i, x := range pk.Value {
		if err := p.checkQP(x); err != nil {
			return nil, fmt.Errorf("%w: public key part %d: %v", ErrReshare, i, err)
		}
	}
	r := &Reshare{p: p, oldCom: old, newCom: next, dealers: q, pk0: *pk.Value[0].CopyNew(), a: *pk.Value[1].CopyNew(),
		lambda: map[int]*big.Int{}, lambdaQ: map[int]*big.Int{}}

	mod := big.NewInt(1)
	for _, x := range p.BGV.Q() {
		mod.Mul(mod, new(big.Int).SetUint64(x))
	}
	for _, x := range p.BGV.P() {
		mod.Mul(mod, new(big.Int).SetUint64(x))
	}
	inv := new(big.Int).ModInverse(old.Delta, mod)
	if inv == nil {
		return nil, fmt.Errorf("%w: Delta %v is not invertible mod QP", ErrParams, old.Delta)
	}
	for a, c := range ceremonyCoefficients(old, q) {
		r.lambda[q[a]] = c
		r.lambdaQ[q[a]] = new(big.Int).Mod(new(big.Int).Mul(c, inv), mod)
	}

	pkb, err := pk.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("%w: public key: %w", ErrReshare, err)
	}
	h := sha256.New()
	field := func(b []byte) { writeField(h, b) }
	field([]byte("zkbank/reshare/session/v1"))
	field([]byte(p.Set.Name))
	field(session)
	field(committeeBytes(old, next))
	var qb []byte
	for _, j := range q {
		qb = binary.BigEndian.AppendUint32(qb, uint32(j))
	}
	field(qb)
	field(bind)
	pkh := sha256.Sum256(pkb)
	field(pkh[:])
	copy(r.id[:], h.Sum(nil))
	return r, nil
}

func committeeBytes(old, next *Committee) []byte {
	var b []byte
	for _, x := range []int{old.N, old.T, next.N, next.T} {
		b = binary.BigEndian.AppendUint32(b, uint32(x))
	}
	return b
}

// ID is the session hash every signature binds.
func (r *Reshare) ID() [32]byte { return r.id }

// Old returns the old committee.
func (r *Reshare) Old() *Committee { return r.oldCom }

// New returns the new committee.
func (r *Reshare) New() *Committee { return r.newCom }

// Dealers returns Q, ascending.
func (r *Reshare) Dealers() []int { return append([]int(nil), r.dealers...) }

func (r *Reshare) isDealer(j int) bool {
	_, ok := r.lambda[j]
	return ok
}

// ReshareDeal is dealer From's (old index) signed deal for new member To.
type ReshareDeal struct {
	From, To int
	Share    mhe.ShamirSecretShare
	Sig      []byte
}

// DealSigningBytes is what dealer from signs for its deal to new member to:
// a domain string, the session id, the old and new committees, dealer,
// recipient and SHA-256 of the deal.
func (r *Reshare) DealSigningBytes(from, to int, share *mhe.ShamirSecretShare) ([]byte, error) {
	b, err := share.MarshalBinary()
	if err != nil {
		return nil, fmt.Errorf("%w: encoding deal %d->%d: %w", ErrReshare, from, to, err)
	}
	h := sha256.Sum256(b)
	var w bytes.Buffer
	w.WriteString("zkbank/reshare/deal/v1\x00")
	w.Write(r.id[:])
	w.Write(committeeBytes(r.oldCom, r.newCom))
	w.Write(binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, uint32(from)), uint32(to)))
	w.Write(h[:])
	return w.Bytes(), nil
}

// VerifyDeal checks a deal's shape, that it comes from a dealer and is for a
// new member, and its dealer's signature.
func (r *Reshare) VerifyDeal(d *ReshareDeal, verify DealVerifier) error {
	if d == nil {
		return fmt.Errorf("%w: no deal", ErrReshare)
	}
	if err := r.verifyDeal(d, d.From, d.To, verify); err != nil {
		return fmt.Errorf("%w: deal %d->%d: %v", ErrReshare, d.From, d.To, err)
	}
	return nil
}

// verifyDeal checks a deal's shape, addressing and dealer signature.
func (r *Reshare) verifyDeal(d *ReshareDeal, dealer, recipient int, verify DealVerifier) error {
	if d == nil {
		return fmt.Errorf("no deal")
	}
	if d.From != dealer || d.To != recipient {
		return fmt.Errorf("deal is addressed %d->%d, want %d->%d", d.From, d.To, dealer, recipient)
	}
	if !r.isDealer(dealer) || recipient < 0 || recipient >= r.newCom.N {
		return fmt.Errorf("deal %d->%d: %d is not a dealer or %d not a new member", dealer, recipient, dealer, recipient)
	}
	if err := r.p.checkQP(d.Share.Poly); err != nil {
		return fmt.Errorf("deal shape: %v", err)
	}
	if len(d.Sig) == 0 || len(d.Sig) > maxDealSig {
		return fmt.Errorf("signature of %d bytes", len(d.Sig))
	}
	msg, err := r.DealSigningBytes(dealer, recipient, &d.Share)
	if err != nil {
		return err
	}
	if verify == nil || !verify(dealer, msg, d.Sig) {
		return fmt.Errorf("bad signature")
	}
	return nil
}

// ReshareDealer is an old member's side: it commits to its share and, if it
// is in Q, deals lambda_j * sk_j.
type ReshareDealer struct {
	r      *Reshare
	ks     *KeyShare
	shares []mhe.ShamirSecretShare // the deal polynomial at points 1..N' (dealers only)
	commit *ReshareCommit
}

// NewDealer starts the old member's side with its current key share.
func (r *Reshare) NewDealer(ks *KeyShare) (*ReshareDealer, error) {
	if ks == nil || ks.N != r.oldCom.N || ks.T != r.oldCom.T || ks.Index < 0 || ks.Index >= r.oldCom.N {
		return nil, fmt.Errorf("%w: key share is not one of the old %d-of-%d committee", ErrReshare, r.oldCom.T, r.oldCom.N)
	}
	if err := r.p.checkQP(ks.Share.Poly); err != nil {
		return nil, fmt.Errorf("%w: key share of %d: %v", ErrReshare, ks.Index, err)
	}
	return &ReshareDealer{r: r, ks: ks}, nil
}

// makeDeals samples the deal polynomial g_j (degree t'-1, g_j(0) =
// lambda_j^Q * sk_j) and evaluates it at the new points.
func (d *ReshareDealer) makeDeals() error {
	if d.shares != nil {
		return nil
	}
	j := d.ks.Index
	if !d.r.isDealer(j) {
		return fmt.Errorf("%w: old validator %d is not a dealer (dealers %v)", ErrReshare, j, d.r.dealers)
	}
	params := d.r.p.BGV
	rqp := params.RingQP()
	secret := rlwe.NewSecretKey(params)
	mulScalarQP(rqp, d.ks.Share.Poly, d.r.lambdaQ[j], secret.Value, false)
	thr := mhe.NewThresholdizer(params)
	poly, err := thr.GenShamirPolynomial(d.r.newCom.T, secret)
	if err != nil {
		return fmt.Errorf("%w: deal polynomial of %d: %w", ErrReshare, j, err)
	}
	shares := make([]mhe.ShamirSecretShare, d.r.newCom.N)
	for k := range shares {
		shares[k] = thr.AllocateThresholdSecretShare()
		thr.GenShamirSecretShare(Point(k), poly, &shares[k])
	}
	d.shares = shares
	return nil
}

// Deals returns this dealer's signed deals, one per new member (the same
// ones on every call).
func (d *ReshareDealer) Deals(sign DealSigner) ([]*ReshareDeal, error) {
	if sign == nil {
		return nil, fmt.Errorf("%w: no deal signer", ErrReshare)
	}
	if err := d.makeDeals(); err != nil {
		return nil, err
	}
	out := make([]*ReshareDeal, len(d.shares))
	for k := range d.shares {
		rd := &ReshareDeal{From: d.ks.Index, To: k, Share: d.shares[k]}
		msg, err := d.r.DealSigningBytes(rd.From, k, &rd.Share)
		if err != nil {
			return nil, err
		}
		if rd.Sig, err = sign(msg); err != nil {
			return nil, fmt.Errorf("%w: signing deal %d->%d: %w", ErrReshare, rd.From, k, err)
		}
		out[k] = rd
	}
	return out, nil
}

// ReshareAck is a new member's acknowledgement that it holds a deal from
// every dealer. Its fresh nonce makes the transcript, and so the challenge,
// unpredictable to the dealers.
type ReshareAck struct {
	From  int
	Nonce [32]byte
}

// ReshareRecipient is a new member's side.
type ReshareRecipient struct {
	r     *Reshare
	index int
	deals map[int]*ReshareDeal
	ack   *ReshareAck
	share *KeyShare
	check *ReshareCheck
}

// NewRecipient starts new member index's side.
func (r *Reshare) NewRecipient(index int) (*ReshareRecipient, error) {
	if index < 0 || index >= r.newCom.N {
		return nil, fmt.Errorf("%w: new member %d of %d", ErrReshare, index, r.newCom.N)
	}
	return &ReshareRecipient{r: r, index: index, deals: map[int]*ReshareDeal{}}, nil
}

// Accept verifies a signed deal addressed to this member and keeps it. The
// first valid deal per dealer is kept; a second, different one the dealer
// also signed proves equivocation (a ReshareFault naming the dealer). Every
// dealer's deal must be accepted before Ack, and none after.
func (rc *ReshareRecipient) Accept(d *ReshareDeal, verify DealVerifier) error {
	if rc.ack != nil {
		return fmt.Errorf("%w: deal after the acknowledgement", ErrReshare)
	}
	if d == nil {
		return fmt.Errorf("%w: empty deal", ErrReshare)
	}
	if err := rc.r.verifyDeal(d, d.From, rc.index, verify); err != nil {
		return fmt.Errorf("%w: deal from %d to %d: %v", ErrReshare, d.From, rc.index, err)
	}
	if old, ok := rc.deals[d.From]; ok {
		if old.Share.Equal(&d.Share.Poly) {
			return nil // a retransmission
		}
		return reshareDealerFault(d.From, "signed two different deals for new validator %d", rc.index)
	}
	rc.deals[d.From] = d
	return nil
}

// Ack returns this member's acknowledgement once it holds every dealer's
// deal. The nonce is fresh randomness; calling Ack again returns the same.
func (rc *ReshareRecipient) Ack() (*ReshareAck, error) {
	if rc.ack != nil {
		return rc.ack, nil
	}
	for _, j := range rc.r.dealers {
		if rc.deals[j] == nil {
			return nil, fmt.Errorf("%w: new validator %d has no deal from dealer %d", ErrReshare, rc.index, j)
		}
	}
	a := &ReshareAck{From: rc.index}
	if _, err := rand.Read(a.Nonce[:]); err != nil {
		return nil, fmt.Errorf("%w: nonce: %w", ErrReshare, err)
	}
	rc.ack = a
	return a, nil
}

// KeyShare returns the new key share if the verdict on the messages is
// clean; otherwise it erases it and returns the fault.
func (rc *ReshareRecipient) KeyShare(v *ReshareVerifier, commits []*ReshareCommit, checks []*ReshareCheck) (*KeyShare, error) {
	if rc.share == nil {
		return nil, fmt.Errorf("%w: no checked key share", ErrReshare)
	}
	if err := v.Verdict(commits, checks); err != nil {
		rc.share = nil
		return nil, err
	}
	return rc.share, nil
}
