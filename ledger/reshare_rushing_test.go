package ledger

import (
	"crypto/rand"
	"errors"
	"math/big"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring/ringqp"
)

// Resharing commitments are revealed without being committed to first, and
// the anchor is public: two colluding old members (f = 2 of 7, t = 3) wait
// for the honest commitments and post values on another polynomial through
// the anchor and one honest commitment. With four members committing, that
// polynomial's support (3) outnumbers the honest one's (2): naming the
// members off the largest support would name an honest validator. The
// verdict is a fault, unattributed, and names no honest member.
func TestAttack_RushingCommittersCannotFrameHonestOldValidators(t *testing.T) {
	p, err := NewParams(ZKB128)
	if err != nil {
		t.Fatal(err)
	}
	old, _ := NewCommittee(7, 3)
	next, _ := NewCommittee(7, 3)
	params := p.BGV
	rqp := params.RingQP()
	kgen := rlwe.NewKeyGenerator(params)
	sk := kgen.GenSecretKeyNew()
	pk := kgen.GenPublicKeyNew(sk)
	thr := mhe.NewThresholdizer(params)
	poly, err := thr.GenShamirPolynomial(old.T, sk)
	if err != nil {
		t.Fatal(err)
	}
	shares := make([]*KeyShare, old.N)
	for j := range shares {
		sh := thr.AllocateThresholdSecretShare()
		thr.GenShamirSecretShare(Point(j), poly, &sh)
		shares[j] = &KeyShare{Index: j, N: old.N, T: old.T, Share: sh}
	}
	signers, verify := newSigners(old.N)
	r, err := NewReshare(p, old, next, []int{0, 1, 2}, pk, []byte("s"), []byte("b"))
	if err != nil {
		t.Fatal(err)
	}
	var acks []*ReshareAck
	for k := 0; k < next.N; k++ {
		a := &ReshareAck{From: k}
		rand.Read(a.Nonce[:])
		acks = append(acks, a)
	}
	v, err := NewReshareVerifier(r, acks, verify)
	if err != nil {
		t.Fatal(err)
	}
	// Honest: old 0..3 (the dealers). Malicious committers: 4, 5, 6 (f = 3).
	A := map[int]ringqp.Poly{}
	var commits []*ReshareCommit
	for j := 0; j < 2; j++ {
		d, err := r.NewDealer(shares[j])
		if err != nil {
			t.Fatal(err)
		}
		c, err := d.Commit(v, signers[j])
		if err != nil {
			t.Fatal(err)
		}
		commits = append(commits, c)
		A[j] = c.A
	}
	run := func(mal map[int]ringqp.Poly) error {
		cs := append([]*ReshareCommit(nil), commits...)
		for j, a := range mal {
			c := &ReshareCommit{From: j, Transcript: v.transcript, A: a}
			if j == 2 {
				d, _ := r.NewDealer(shares[2])
				hc, _ := d.Commit(v, signers[2])
				c.C = hc.C
			}
			msg, err := v.commitSigningBytes(c)
			if err != nil {
				t.Fatal(err)
			}
			c.Sig, _ = signers[j](msg)
			cs = append(cs, c)
		}
		return v.Verdict(cs, nil)
	}
	// Sanity: honest values for 4,5,6 give no commitment fault.
	honest := map[int]ringqp.Poly{}
	for j := 2; j < 4; j++ {
		d, _ := r.NewDealer(shares[j])
		c, _ := d.Commit(v, signers[j])
		honest[j] = c.A
	}
	// The verdict is given without the new members' check messages (they
	// are named for that); what matters is which old members are named.
	oldNamed := func(err error) []int {
		var f *ReshareFault
		if !errors.As(err, &f) {
			return nil
		}
		var out []int
		for _, g := range append([]*ReshareFault{f}, f.More...) {
			if g.Dealer >= 0 {
				out = append(out, g.Dealer)
			}
		}
		return out
	}
	if named := oldNamed(run(honest)); len(named) != 0 {
		t.Fatalf("honest commitments named old validators %v", named)
	}

	// Rushing colluders: a polynomial P' (in the u domain) through the
	// anchor -c0 at x=0, honest A_0 (x=1), A_1 (x=2), and a free value y at
	// x=5 (old 4); then evaluate P' at x=6, 7 (old 5, 6).
	mod := big.NewInt(1)
	for _, q := range params.Q() {
		mod.Mul(mod, new(big.Int).SetUint64(q))
	}
	for _, q := range params.P() {
		mod.Mul(mod, new(big.Int).SetUint64(q))
	}
	negc0 := rqp.NewPoly()
	rqp.Neg(v.c0, negc0)
	y := rqp.NewPoly()
	rqp.Add(A[0], A[1], y) // anything off the honest polynomial
	xs := []int64{0, 1, 3}
	vals := []ringqp.Poly{negc0, A[0], y}
	interp := func(x int64) ringqp.Poly {
		out := rqp.NewPoly()
		for a := range xs {
			num, den := big.NewInt(1), big.NewInt(1)
			for b := range xs {
				if a != b {
					num.Mul(num, big.NewInt(x-xs[b]))
					den.Mul(den, big.NewInt(xs[a]-xs[b]))
				}
			}
			den.Mod(den, mod)
			c := new(big.Int).Mul(num, new(big.Int).ModInverse(den, mod))
			c.Mod(c, mod)
			mulScalarQP(rqp, vals[a], c, out, true)
		}
		return out
	}
	mal := map[int]ringqp.Poly{2: y, 3: interp(4)}
	err = run(mal)
	t.Logf("colluders: %v", err)
	var f *ReshareFault
	if !errors.As(err, &f) {
		t.Fatalf("colluders' commitments passed: %v", err)
	}
	{
		for _, g := range append([]*ReshareFault{f}, f.More...) {
			if g.Dealer >= 0 && g.Dealer < 2 {
				t.Errorf("honest old validator %d named: %s", g.Dealer, g.Reason)
			}
		}
	}
}
