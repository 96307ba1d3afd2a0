package ledger

import (
	"math/big"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
)

// craftBlame is a rushing byzantine validator 0's share: it adds W with
// lambda_0 * W = -M (M the true check values, from honest 1 and 2), so that
// {0,1} and {0,2} still give the true verdicts (the same zero pattern) while
// {0,3} decrypts to all zeros, trying to get honest validator 3 named.
func craftBlame(t *testing.T, nw *net, ct *rlwe.Ciphertext, honest0, h1, h2 *DecShare) *DecShare {
	d := nw.dec
	T := new(big.Int).SetUint64(d.p.BGV.PlaintextModulus())
	M, err := d.Combine(ct, []*DecShare{h1, h2})
	if err != nil {
		t.Fatal(err)
	}
	co, err := d.com.coefficients([]int{0, 3})
	if err != nil {
		t.Fatal(err)
	}
	a03 := new(big.Int).Mod(co[0], T)
	inv := new(big.Int).ModInverse(a03, T)
	W := make([]uint64, len(M))
	for i, m := range M {
		x := new(big.Int).SetUint64(m)
		x.Mul(x, inv)
		x.Neg(x)
		x.Mod(x, T)
		W[i] = x.Uint64()
	}
	pt := rlwe.NewPlaintext(d.p.BGV, ct.Level())
	pt.MetaData = ct.MetaData.CopyNew()
	pt.Scale = ct.Scale.Mul(d.p.BGV.NewScale(new(big.Int).Mod(d.com.Delta, T).Uint64()))
	if err := newEncoder(d.p).Encode(W, pt); err != nil {
		t.Fatal(err)
	}
	out := &DecShare{Validator: 0}
	out.Share.Value = *honest0.Share.Value.CopyNew()
	rq := d.p.BGV.RingQ().AtLevel(ct.Level())
	rq.Add(out.Share.Value, pt.Value, out.Share.Value)
	return out
}

// A rushing validator that crafts its share to agree with the deciding set
// but spoil its pairing with an honest validator cannot get that validator
// named faulty (nor is the honest one credited on its word): an outsider is
// named only if it disagrees with every t-1 members of the deciding set.
func TestRobust_RushingValidatorCannotFrameAnHonestOne(t *testing.T) {
	nw := testNet(t, 4, 2)
	ev, shares, truth := robustBatch(t, nw)
	bad := map[int]CheckShares{}
	for i, s := range shares {
		bad[i] = s
	}
	bad[0] = CheckShares{
		Bits: craftBlame(t, nw, ev.Checks.Bits, shares[0].Bits, shares[1].Bits, shares[2].Bits),
		Eq:   craftBlame(t, nw, ev.Checks.Eq, shares[0].Eq, shares[1].Eq, shares[2].Eq),
	}
	d, err := nw.dec.DecideChecks(ev, bad)
	if err != nil {
		t.Fatal(err)
	}
	if !sameVerdicts(d.Verdicts, truth) {
		t.Fatalf("verdicts %v, want %v", d.Verdicts, truth)
	}
	for _, v := range d.Faulty {
		if v != 0 {
			t.Fatalf("honest validator %d named faulty (faulty %v, agreed %v)", v, d.Faulty, d.Agreed)
		}
	}
}
