package ledger

import (
	"fmt"
	"math"
	"math/big"
	"sort"
	"testing"
	"time"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/schemes/bgv"
)

// collectiveSecret reconstructs the committee's collective secret key from
// the first t key shares (Lagrange at 0, denominators cleared by D, then
// D^-1 mod Q). Tests only: no node ever holds it.
func collectiveSecret(t testing.TB, nw *net) *rlwe.SecretKey {
	t.Helper()
	idx := make([]int, nw.com.T)
	for i := range idx {
		idx[i] = i
	}
	co, err := nw.com.coefficients(idx)
	if err != nil {
		t.Fatal(err)
	}
	sk := rlwe.NewSecretKey(nw.p.BGV)
	rq, rp := nw.p.BGV.RingQ(), nw.p.BGV.RingP()
	for a, i := range idx {
		rq.MulScalarBigintThenAdd(nw.shares[i].Share.Q, co[a], sk.Value.Q)
		rp.MulScalarBigintThenAdd(nw.shares[i].Share.P, co[a], sk.Value.P)
	}
	inv := func(m *big.Int) *big.Int {
		r := new(big.Int).ModInverse(nw.com.Delta, m)
		if r == nil {
			t.Fatalf("D = %v is not invertible", nw.com.Delta)
		}
		return r
	}
	rq.MulScalarBigint(sk.Value.Q, inv(rq.Modulus()), sk.Value.Q)
	rp.MulScalarBigint(sk.Value.P, inv(rp.Modulus()), sk.Value.P)
	return sk
}

// noiseFigures are the infinity norm and the standard deviation of a
// ciphertext's noise, as log2, in Lattigo's BGV (MSB) domain: c0 + c1*s =
// T^-1*[scale*m]_T + e (mod Q_level), the domain of checkNoiseBound.
type noiseFigures struct{ Max, Std float64 }

// measureNoise decrypts ct with the full secret key and returns its noise:
// the decoded slots are re-encoded at the ciphertext's level and scale and
// subtracted, leaving e (exact while |T*e| < Q_level/2).
func measureNoise(t testing.TB, p *Params, sk *rlwe.SecretKey, ct *rlwe.Ciphertext) noiseFigures {
	t.Helper()
	level := ct.Level()
	pt := rlwe.NewDecryptor(p.BGV, sk).DecryptNew(ct)
	vals := make([]uint64, p.Slots)
	ecd := newEncoder(p)
	if err := ecd.Decode(pt, vals); err != nil {
		t.Fatal(err)
	}
	want := bgv.NewPlaintext(p.BGV, level)
	*want.MetaData = *pt.MetaData
	if err := ecd.Encode(vals, want); err != nil {
		t.Fatal(err)
	}
	rq := p.BGV.RingQ().AtLevel(level)
	e := rq.NewPoly()
	rq.Sub(pt.Value, want.Value, e)
	if pt.IsNTT {
		rq.INTT(e, e)
	}
	bigs := make([]*big.Int, rq.N())
	for i := range bigs {
		bigs[i] = new(big.Int)
	}
	rq.PolyToBigintCentered(e, 1, bigs)
	maxAbs, sum2 := 0.0, 0.0
	for _, b := range bigs {
		f, _ := new(big.Float).SetInt(b).Float64()
		maxAbs = math.Max(maxAbs, math.Abs(f))
		sum2 += f * f
	}
	return noiseFigures{Max: math.Log2(maxAbs + 1), Std: math.Log2(math.Sqrt(sum2/float64(len(bigs))) + 1e-300)}
}

// TestLaneDecryptsExactlyAfter100000Credits applies one genuine credit delta
// (an honest transfer from shard 0 credited to a lane of shard 1 through
// Engine.Apply) 100,000 times to the receiving state: identical noise adding
// linearly, the worst case for accumulation. The balance must still
// threshold-decrypt exactly and the validation circuit must still judge a
// debit and an overdraft of that lane correctly. It logs the noise at each
// decade and checks it against the model of noise.go.
func TestLaneDecryptsExactlyAfter100000Credits(t *testing.T) {
	const (
		credits = 100_000
		amount  = 42_949 // credits*amount + bob0 < 2^32
		bob0    = 1_000
		aliceB  = 50_000
		spend   = 4_000_000_000
	)
	began := time.Now()
	nw := testNet(t, 4, 3)
	p, eng := nw.p, nw.eng
	sk := collectiveSecret(t, nw)
	all := []int{0, 1, 2, 3}

	alice, bob, carol := newAccount(t, p, 3), newAccount(t, p, 200), newAccount(t, p, 9)
	const aliceShard, bobShard = 0, 1
	stA, err := eng.GenesisState(nw.keys.PK, map[int]uint64{alice.lane: aliceB})
	if err != nil {
		t.Fatal(err)
	}
	st, err := eng.GenesisState(nw.keys.PK, map[int]uint64{bob.lane: bob0})
	if err != nil {
		t.Fatal(err)
	}

	// The genuine credit: alice -> bob, evaluated, decided by all four
	// validators' shares, applied.
	b := newBuilder(p, nw.keys.PK, "test")
	sub, err := b.Build(TransferSpec{From: alice.id, Lane: alice.lane, Key: alice.key, To: bob.id, Amount: amount, Balance: aliceB, Nonce: 1})
	if err != nil {
		t.Fatal(err)
	}
	ev, v := nw.verdicts(t, stA, []Item{{CT: nw.upload(t, sub), Lanes: []int{alice.lane}}}, all)
	if v[alice.lane] != Accepted {
		t.Fatalf("honest transfer: %v", v[alice.lane])
	}
	d, err := eng.Apply(ev, v, []Credit{b.credit(t, alice.lane, bobShard, bob.lane, amount)})
	if err != nil {
		t.Fatal(err)
	}
	credit := d.Credits[bobShard]
	if credit == nil {
		t.Fatal("no credit delta for bob's shard")
	}

	// The model for this committee.
	m, ok := p.noiseModel(nw.com.N)
	if !ok {
		t.Fatal("noise model does not cover zkb128")
	}
	// Measured standard deviations must match the model within half a bit
	// (it is an estimate, not a bound); maxima must stay below its bounds.
	const slack = 0.5
	// stateFig checks a state-level ciphertext's noise against the model: its
	// standard deviation between lo and hi (each within the slack), its
	// maximum below the tail bound of hi.
	stateFig := func(what string, ct *rlwe.Ciphertext, lo, hi float64) noiseFigures {
		t.Helper()
		n := measureNoise(t, p, sk, ct)
		t.Logf("%-34s max |e| 2^%5.1f  std 2^%5.1f  (model std 2^%.1f to 2^%.1f)", what, n.Max, n.Std, math.Log2(lo), math.Log2(hi))
		if n.Std < math.Log2(lo)-slack || n.Std > math.Log2(hi)+slack {
			t.Errorf("%s: noise std 2^%.2f, model 2^%.2f to 2^%.2f", what, n.Std, math.Log2(lo), math.Log2(hi))
		}
		if n.Max > math.Log2(m.tail*hi) {
			t.Errorf("%s: max |e| 2^%.1f above the model's bound 2^%.1f", what, n.Max, math.Log2(m.tail*hi))
		}
		return n
	}
	decFig := func(what string, ct *rlwe.Ciphertext, ops float64) noiseFigures {
		t.Helper()
		n := measureNoise(t, p, sk, ct)
		bound := m.decryptBound(ops, true)
		nb := nw.dec.flood.NoiseBound
		margin := float64(p.Set.SmudgingLogLambda) - math.Max(0, n.Max-math.Log2(nb))
		t.Logf("%-34s max |e| 2^%5.1f  std 2^%5.1f  (model bound 2^%.1f, flooding noise bound 2^%.1f, flooding margin %.1f bits)", what, n.Max, n.Std, math.Log2(bound), math.Log2(nb), margin)
		if margin < float64(p.Set.SmudgingLogLambda) {
			t.Errorf("%s: max |e| 2^%.1f exceeds the flooding's noise bound 2^%.1f", what, n.Max, math.Log2(nb))
		}
		if ct.Level() != LevelDecrypt {
			t.Fatalf("%s at level %d", what, ct.Level())
		}
		if n.Max > math.Log2(bound) {
			t.Errorf("%s: max |e| 2^%.1f above the model's bound 2^%.1f", what, n.Max, math.Log2(bound))
		}
		return n
	}
	balanceFig := func(what string, st *rlwe.Ciphertext, ops float64) noiseFigures {
		t.Helper()
		ct, err := eng.BalanceCiphertext(st, bob.lane)
		if err != nil {
			t.Fatal(err)
		}
		return decFig(what, ct, ops)
	}

	t.Logf("committee %d-of-%d; model: rounding 2^%.1f, key switch 2^%.1f, delta 2^%.1f, state->decrypt gain 2^%.1f, tail %.1f",
		nw.com.T, nw.com.N, math.Log2(m.round), math.Log2(m.ksState), math.Log2(m.op), 0.5*math.Log2(m.decGain2*AmountBits), m.tail)
	stateFig("fresh state (GenesisState)", st, m.fresh, m.fresh)
	stateFig("credit delta", credit, m.op, m.op)
	stateFig("debit delta", d.Debit, m.round, m.round)
	balanceFig("balance ciphertext, fresh state", st, 0)

	applied := time.Now()
	for k, next := 1, 1; k <= credits; k++ {
		if st, err = eng.ApplyDelta(st, credit, +1); err != nil {
			t.Fatal(err)
		}
		if k == next {
			// The model adds the fresh noise and the deltas' linearly (the
			// worst case, identical deltas); the fresh state's noise is
			// independent of the credit's, so the truth lies between the
			// independent and the coherent figure (half a bit apart after
			// one credit, the same after many).
			stateFig(fmt.Sprintf("state after %d credits", k), st, m.stateStd(float64(k), false), m.stateStd(float64(k), true))
			balanceFig(fmt.Sprintf("balance ct after %d credits", k), st, float64(k))
			next *= 10
		}
	}
	t.Logf("%d ApplyDelta in %v", credits, time.Since(applied).Round(time.Millisecond))

	// (a) The balance decrypts exactly: by re-encryption to the owner (the
	// balance query), and by the committee's own threshold decryption.
	want := uint64(bob0 + credits*amount)
	if want > MaxAmount {
		t.Fatalf("test bug: balance %d does not fit 32 bits", want)
	}
	if got := nw.balance(t, st, bob); got != want {
		t.Fatalf("re-encrypted balance after %d credits: %d, want %d", credits, got, want)
	}
	bct, err := eng.BalanceCiphertext(st, bob.lane)
	if err != nil {
		t.Fatal(err)
	}
	var shares []*DecShare
	for _, i := range all {
		s, err := nw.dec.Share(nw.shares[i], bct)
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, s)
	}
	vals, err := nw.dec.Combine(bct, shares)
	if err != nil {
		t.Fatalf("threshold decryption of the balance: %v", err)
	}
	if got := vals[p.Slot(0, 0, bob.lane)]; got != want {
		t.Fatalf("threshold-decrypted balance: %d, want %d", got, want)
	}

	// (b) The circuit still judges debits of the aged lane: an honest one
	// spending most of it, then an overdraft (well-formed bits of a wrapped
	// new balance, which only the balance equation can catch).
	hs, err := b.Build(TransferSpec{From: bob.id, Lane: bob.lane, Key: bob.key, To: carol.id, Amount: spend, Balance: want, Nonce: 1})
	if err != nil {
		t.Fatal(err)
	}
	ev, v = nw.verdicts(t, st, []Item{{CT: nw.upload(t, hs), Lanes: []int{bob.lane}}}, all)
	if v[bob.lane] != Accepted {
		t.Fatalf("honest debit of the aged lane: %v", v[bob.lane])
	}
	decFig("balance-equation check, aged", ev.Checks.Eq, credits)
	d, err = eng.Apply(ev, v, []Credit{b.credit(t, bob.lane, aliceShard, carol.lane, spend)})
	if err != nil {
		t.Fatal(err)
	}
	after, err := eng.ApplyDelta(st, d.Debit, -1)
	if err != nil {
		t.Fatal(err)
	}
	if got := nw.balance(t, after, bob); got != want-spend {
		t.Fatalf("balance after the debit: %d, want %d", got, want-spend)
	}

	vals = make([]uint64, p.Slots)
	p.EncodeLanes(vals, bob.lane, want+1, (want-(want+1))&MaxAmount)
	ctb, err := b.EncryptSlots(vals)
	if err != nil {
		t.Fatal(err)
	}
	od := b.Seal(ctb, TransferSpec{From: bob.id, Key: bob.key, To: carol.id, Nonce: 2})
	if _, v = nw.verdicts(t, st, []Item{{CT: nw.upload(t, od), Lanes: []int{bob.lane}}}, all); v[bob.lane] != RejectBalanceMismatch {
		t.Fatalf("overdraft of the aged lane: %v, want %v", v[bob.lane], RejectBalanceMismatch)
	}
	t.Logf("wall time %v", time.Since(began).Round(time.Millisecond))
}

// TestMaxStateOps pins the state noise budget of zkb128 and its meaning:
// the largest number of deltas after which every state-derived decryption
// still fits the committee's flooding noise bound (and decrypts exactly), in
// the worst case of identical noise.
func TestMaxStateOps(t *testing.T) {
	p := MustParams(ZKB128)
	lambda := float64(p.Set.SmudgingLogLambda)
	// MaxStateOps with the Gaussian smudging sized for 2^12 (before the
	// uniform flood): the new budget must not be smaller.
	before := map[[2]int]uint64{{1, 1}: 601, {4, 3}: 298, {4, 2}: 298, {7, 5}: 224, {16, 16}: 145}
	for _, nt := range [][2]int{{1, 1}, {4, 3}, {4, 2}, {7, 3}, {7, 5}, {10, 4}, {16, 2}, {16, 16}} {
		c, err := NewCommittee(nt[0], nt[1])
		if err != nil {
			t.Fatal(err)
		}
		fl, err := c.smudging(p)
		if err != nil {
			t.Logf("%2d-of-%-2d refused: %v", nt[1], nt[0], err)
			continue
		}
		k := c.MaxStateOps(p)
		m, _ := p.noiseModel(c.N)
		if b := m.decryptBound(float64(k), true); b > fl.NoiseBound {
			t.Errorf("%d-of-%d: bound 2^%.2f after MaxStateOps = %d deltas exceeds the noise bound 2^%.2f", nt[1], nt[0], math.Log2(b), k, math.Log2(fl.NoiseBound))
		}
		if b := m.decryptBound(float64(k+1), true); b <= fl.NoiseBound {
			t.Errorf("%d-of-%d: MaxStateOps = %d is not the largest", nt[1], nt[0], k)
		}
		if got := c.FloodingMargin(p, k); got != lambda {
			t.Errorf("%d-of-%d: margin %.2f at MaxStateOps, want %v", nt[1], nt[0], got, lambda)
		}
		if got := c.FloodingMargin(p, k+1); !(got < lambda) {
			t.Errorf("%d-of-%d: margin %.2f past MaxStateOps", nt[1], nt[0], got)
		}
		// Exactness is not what binds: balances decrypt exactly for far
		// more deltas (2^50 at least), past the point where the margin is gone.
		b, _ := c.stateBudget(p)
		logExact := sort.Search(200*64, func(i int) bool { return !b.exact(b.m.decryptBound(math.Exp2(float64(i)/64), true)) })
		if got := c.FloodingMargin(p, 1<<50); math.IsInf(got, -1) || math.IsNaN(got) {
			t.Errorf("%d-of-%d: balances stop decrypting before 2^50 deltas", nt[1], nt[0])
		}
		// Independent deltas: sqrt growth.
		indep := sort.Search(1<<62, func(i int) bool { return m.decryptBound(float64(i), false) > fl.NoiseBound }) - 1
		was := "not measured"
		if v, ok := before[nt]; ok {
			was = fmt.Sprint(v)
		}
		t.Logf("%2d-of-%-2d B = 2^%d, noise bound 2^%.2f: MaxStateOps = %d = 2^%.1f (independent noise: 2^%.1f; Gaussian smudging: %s); exact for 2^%.1f; flooding margin after 10^8: %.1f, 10^9: %.1f, 10^10: %.1f bits (of %.0f)",
			nt[1], nt[0], fl.LogB, math.Log2(fl.NoiseBound), k, math.Log2(float64(k)), math.Log2(float64(indep)), was, float64(logExact)/64,
			c.FloodingMargin(p, 1e8), c.FloodingMargin(p, 1e9), c.FloodingMargin(p, 1e10), lambda)
		if k < before[nt] {
			t.Errorf("%d-of-%d: MaxStateOps = %d, below the %d of the Gaussian smudging", nt[1], nt[0], k, before[nt])
		}
		// Pinned for zkb128: a change of parameters, circuit or model must
		// revisit docs/PROTOCOL.md.
		if nt[0] == 4 && (nt[1] == 2 || nt[1] == 3) && (k < 2_000_000_000 || k > 10_000_000_000) {
			t.Errorf("%d-of-%d: MaxStateOps = %d, outside the documented range [2e9, 1e10]", nt[1], nt[0], k)
		}
		// Every committee a genesis admits (f+1 <= t <= N-f) that fits has
		// room for at least 10^4 deltas (4-of-9 and 7-of-9 fit too, with
		// less: their noise bound is 2^13.4).
		if f := (nt[0] - 1) / 3; nt[1] >= f+1 && nt[1] <= nt[0]-f && k < 10_000 {
			t.Errorf("%d-of-%d: MaxStateOps = %d < 10,000", nt[1], nt[0], k)
		}
	}
	// The model's committee sizes are the ones NewCommittee accepts.
	if _, err := NewCommittee(17, 12); err == nil {
		t.Error("NewCommittee accepts 17 parties: extend TestMaxStateOps")
	}
}
