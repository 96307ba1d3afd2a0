package ledger

import (
	"errors"
	"math"
	"math/big"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/schemes/bgv"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"
)

func TestParamsAre128BitSecure(t *testing.T) {
	p := MustParams(ZKB128)
	// HE standard (homomorphicencryption.org, ternary secrets, classical
	// 128-bit): N = 2^14 allows log2(QP) <= 438.
	if p.BGV.LogN() != 14 || p.LogQP() > 438 {
		t.Fatalf("logN %d, logQP %.1f: outside the 128-bit bound", p.BGV.LogN(), p.LogQP())
	}
	tm := p.BGV.PlaintextModulus()
	if !new(big.Int).SetUint64(tm).ProbablyPrime(32) || tm%(2*uint64(p.BGV.N())) != 1 {
		t.Fatalf("t = %d must be a prime = 1 mod 2N", tm)
	}
	if tm <= 1<<(AmountBits+1) {
		t.Fatalf("t = %d leaves room for a negative 32-bit decomposition", tm)
	}
	if p.Lanes != 256 || p.Slots != 1<<14 {
		t.Fatalf("layout: %d lanes, %d slots", p.Lanes, p.Slots)
	}
	if _, err := NewParams(ParamSet{Name: "weak", LogN: 14, LogQ: []int{60, 60, 60, 60, 60, 60}, LogP: []int{60, 60}, PlaintextModulus: ZKB128.PlaintextModulus, SecurityLogQPMax: 438}); err == nil {
		t.Fatal("a 480-bit modulus at N=2^14 was accepted")
	}
}

// encryptAt encrypts vals at LevelDecrypt under the collective key.
func encryptAt(t *testing.T, nw *net, vals []uint64) *rlwe.Ciphertext {
	pt := bgv.NewPlaintext(nw.p.BGV, LevelDecrypt)
	if err := newEncoder(nw.p).Encode(vals, pt); err != nil {
		t.Fatal(err)
	}
	ct, err := rlwe.NewEncryptor(nw.p.BGV, nw.keys.PK).EncryptNew(pt)
	if err != nil {
		t.Fatal(err)
	}
	return ct
}

func randomVals(p *Params, seed byte) []uint64 {
	prng, _ := sampling.NewKeyedPRNG([]byte{seed})
	vals := make([]uint64, p.Slots)
	b := make([]byte, 8)
	for i := range vals {
		prng.Read(b)
		vals[i] = (uint64(b[0]) | uint64(b[1])<<8 | uint64(b[2])<<16 | uint64(b[3])<<24) % p.BGV.PlaintextModulus()
	}
	return vals
}

func testThreshold(t *testing.T, n, th int) {
	nw := testNet(t, n, th)
	vals := randomVals(nw.p, byte(n))
	ct := encryptAt(t, nw, vals)
	shares := make([]*DecShare, n)
	for i := range shares {
		s, err := nw.dec.Share(nw.shares[i], ct)
		if err != nil {
			t.Fatal(err)
		}
		shares[i] = s
	}
	// Every t-subset decrypts.
	nw.com.forEachSubset(func(idx []int) {
		var sub []*DecShare
		for _, i := range idx {
			sub = append(sub, shares[i])
		}
		got, err := nw.dec.Combine(ct, sub)
		if err != nil {
			t.Fatalf("subset %v: %v", idx, err)
		}
		for i := range vals {
			if got[i] != vals[i] {
				t.Fatalf("subset %v: slot %d = %d, want %d", idx, i, got[i], vals[i])
			}
		}
	})
	// t-1 shares, combined as well as anyone can (Lagrange for t-1 points),
	// give values unrelated to the plaintext.
	weak, err := NewCommittee(n, th-1)
	if err != nil {
		t.Fatal(err)
	}
	d := &Decryptor{p: nw.p, com: weak, cks: nw.dec.cks}
	got, err := d.combine(ct, shares[:th-1])
	if err != nil {
		t.Fatal(err)
	}
	same := 0
	for i := range vals {
		if got[i] == vals[i] {
			same++
		}
	}
	if same > 2 {
		t.Fatalf("%d of %d slots recovered from t-1 = %d shares", same, len(vals), th-1)
	}
}

func TestThreshold_3of4_AnyThreeDecryptTwoLearnNothing(t *testing.T) { testThreshold(t, 4, 3) }

func TestThreshold_5of7_AnyFiveDecryptFourLearnNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("7-party ceremony in -short mode")
	}
	testThreshold(t, 7, 5)
}

func TestReencryptionIsOnlyReadableByTheOwner(t *testing.T) {
	w := genesis3(t)
	alice, bob := w.acct["alice"], w.acct["bob"]
	st, _ := w.book.State(0, 0)
	ct, err := w.nw.eng.BalanceCiphertext(st, alice.lane)
	if err != nil {
		t.Fatal(err)
	}
	var shares []*ReencShare
	for i := 0; i < 3; i++ {
		s, err := w.nw.dec.ReencShare(w.nw.shares[i], ct, alice.own.PK)
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, s)
	}
	out, err := w.nw.dec.CombineReenc(ct, shares)
	if err != nil {
		t.Fatal(err)
	}
	if v, _ := w.nw.p.DecryptBalance(alice.own, out, alice.lane); v != 100 {
		t.Fatalf("alice decrypts %d, want 100", v)
	}
	if v, _ := w.nw.p.DecryptBalance(bob.own, out, alice.lane); v == 100 {
		t.Fatal("bob decrypted alice's re-encrypted balance")
	}
	if _, err := w.nw.dec.CombineReenc(ct, shares[:2]); err == nil {
		t.Fatal("two re-encryption shares combined")
	}
}

// TestNoiseOfDecryptedChecks measures the noise of the ciphertexts the
// committee decrypts when the state is fresh: checkNoiseBound, the least any
// committee's flooding must cover, bounds it. It uses a 1-of-1 committee,
// whose single key share is the secret key itself.
func TestNoiseOfDecryptedChecks(t *testing.T) {
	nw := testNet(t, 1, 1)
	w := &world{nw: nw, b: newBuilder(nw.p, nw.keys.PK, "test"), acct: map[string]*account{}}
	a := newAccount(t, nw.p, 0)
	st, err := nw.eng.trivialState(map[int]uint64{0: 1000})
	if err != nil {
		t.Fatal(err)
	}
	// A full batch: 256 honest transfers packed into one upload.
	var specs []TransferSpec
	for l := 0; l < nw.p.Lanes; l++ {
		specs = append(specs, TransferSpec{From: a.id, Lane: l, Key: a.key, To: AccountID{1}, Amount: 7, Balance: 1000})
	}
	sub, err := w.b.Build(specs...)
	if err != nil {
		t.Fatal(err)
	}
	lanes := make([]int, nw.p.Lanes)
	for i := range lanes {
		lanes[i] = i
	}
	st0, _ := nw.eng.trivialState(func() map[int]uint64 {
		m := map[int]uint64{}
		for l := range lanes {
			m[l] = 1000
		}
		return m
	}())
	_ = st
	ev, err := nw.eng.Evaluate(st0, []Item{{CT: nw.upload(t, sub), Lanes: lanes}}, []byte("n"))
	if err != nil {
		t.Fatal(err)
	}
	for name, ct := range map[string]*rlwe.Ciphertext{"bits": ev.Checks.Bits, "eq": ev.Checks.Eq} {
		maxAbs := nw.noiseOf(t, ct) // every slot is 0: pure noise
		t.Logf("%s check noise: max |e| = 2^%.1f (checkNoiseBound 2^%.0f, flooding noise bound 2^%.1f)", name, math.Log2(maxAbs+1), math.Log2(checkNoiseBound), math.Log2(nw.dec.flood.NoiseBound))
		if maxAbs >= checkNoiseBound {
			t.Errorf("%s noise 2^%.1f exceeds checkNoiseBound", name, math.Log2(maxAbs))
		}
	}
}

// TestSmudgingIsTheWidestFloodThatDecryptsExactly checks Committee.smudging
// against its definition for every committee of up to 9 parties and a few
// larger ones: B is the largest power of two with t*(D*(e+1) + L1*B) <
// Q_1/2 at e = floor(B/(2^lambda*sqrt(n))), e is the largest noise bound
// with the flooding ratio B/e >= 2^lambda*sqrt(n), and NewDecryptor accepts
// exactly the committees whose e reaches checkNoiseBound.
func TestSmudgingIsTheWidestFloodThatDecryptsExactly(t *testing.T) {
	p := MustParams(ZKB128)
	lambda := p.Set.SmudgingLogLambda
	var committees [][2]int
	for n := 1; n <= 9; n++ {
		for th := 1; th <= n; th++ {
			committees = append(committees, [2]int{n, th})
		}
	}
	committees = append(committees, [][2]int{{10, 2}, {10, 4}, {10, 7}, {16, 1}, {16, 2}, {16, 6}, {16, 11}, {16, 16}}...)
	accepted := 0
	for _, nt := range committees {
		c, err := NewCommittee(nt[0], nt[1])
		if err != nil {
			t.Fatal(err)
		}
		fits, _ := c.exactness(p)
		// The widest power of two that decrypts exactly, by definition.
		logB := maxFloodLogB
		for logB >= 0 && !fits(logB, floodNoiseBound(logB, lambda, c.N)) {
			logB--
		}
		e := floodNoiseBound(logB, lambda, c.N)
		fl, err := c.smudging(p)
		_, decErr := NewDecryptor(p, c)
		if e.Cmp(big.NewInt(checkNoiseBound)) < 0 {
			if err == nil || !errors.Is(decErr, ErrParams) {
				t.Errorf("%d-of-%d: noise bound %v < checkNoiseBound accepted (smudging: %v, NewDecryptor: %v)", nt[1], nt[0], e, err, decErr)
			}
			continue
		}
		if err != nil || decErr != nil {
			t.Errorf("%d-of-%d: refused with noise bound %v: %v / %v", nt[1], nt[0], e, err, decErr)
			continue
		}
		accepted++
		if fl.LogB != logB || fl.NoiseBound != float64(e.Int64()) {
			t.Errorf("%d-of-%d: flooding 2^%d / %v, want 2^%d / %v", nt[1], nt[0], fl.LogB, fl.NoiseBound, logB, e)
		}
		// Ratio: B >= 2^lambda*sqrt(n)*e, i.e. B^2 >= 4^lambda*n*e^2, and e
		// is the largest such integer.
		ratioOK := func(e *big.Int) bool {
			lhs := new(big.Int).Lsh(big.NewInt(1), uint(2*logB))
			rhs := new(big.Int).Mul(e, e)
			rhs.Mul(rhs, big.NewInt(int64(c.N)))
			return lhs.Cmp(rhs.Lsh(rhs, uint(2*lambda))) >= 0
		}
		if !ratioOK(e) || ratioOK(new(big.Int).Add(e, big.NewInt(1))) {
			t.Errorf("%d-of-%d: noise bound %v is not the largest with B/e >= 2^%d*sqrt(%d)", nt[1], nt[0], e, lambda, c.N)
		}
		if fits(logB+1, floodNoiseBound(logB+1, lambda, c.N)) {
			t.Errorf("%d-of-%d: B = 2^%d also decrypts exactly", nt[1], nt[0], logB+1)
		}
	}
	t.Logf("%d of %d committees accepted", accepted, len(committees))
	// The default committees (t = f+1 of 4, and 3-of-4).
	for _, th := range []int{2, 3} {
		c, _ := NewCommittee(4, th)
		fl, err := c.smudging(p)
		if err != nil || fl.LogB != 73 || fl.NoiseBound != 1<<32 {
			t.Errorf("%d-of-4: flooding %+v, %v; want B = 2^73, noise bound 2^32", th, fl, err)
		}
	}
}

// TestSharesDecryptWithNoiseAtTheBound gives a ciphertext noise of infinity
// norm exactly the flooding's NoiseBound (random signs) and checks that
// every t-subset still decrypts it exactly, by threshold decryption and by
// re-encryption to an owner key, while noise beyond Q_1/(2tD) does not.
func TestSharesDecryptWithNoiseAtTheBound(t *testing.T) {
	nw := testNet(t, 4, 2)
	vals := randomVals(nw.p, 77)
	ct := encryptAt(t, nw, vals)
	own := NewOwnerKeys(nw.p)
	rq := nw.p.BGV.RingQ().AtLevel(LevelDecrypt)
	withNoise := func(mag *big.Int) *rlwe.Ciphertext {
		signs := randomVals(nw.p, 78)
		bigs := make([]*big.Int, rq.N())
		for i := range bigs {
			bigs[i] = new(big.Int).Set(mag)
			if signs[i]&1 == 1 {
				bigs[i].Neg(bigs[i])
			}
		}
		e := rq.NewPoly()
		rq.SetCoefficientsBigint(bigs, e)
		if ct.IsNTT {
			rq.NTT(e, e)
		}
		out := ct.CopyNew()
		rq.Add(out.Value[0], e, out.Value[0])
		return out
	}
	decrypts := func(c *rlwe.Ciphertext) (bad int) {
		var ds []*DecShare
		var rs []*ReencShare
		for i := 0; i < nw.com.N; i++ {
			d, err := nw.dec.Share(nw.shares[i], c)
			if err != nil {
				t.Fatal(err)
			}
			r, err := nw.dec.ReencShare(nw.shares[i], c, own.PK)
			if err != nil {
				t.Fatal(err)
			}
			ds, rs = append(ds, d), append(rs, r)
		}
		nw.com.forEachSubset(func(idx []int) {
			var sd []*DecShare
			var sr []*ReencShare
			for _, i := range idx {
				sd, sr = append(sd, ds[i]), append(sr, rs[i])
			}
			got, err := nw.dec.Combine(c, sd)
			if err != nil {
				t.Fatal(err)
			}
			out, err := nw.dec.CombineReenc(c, sr)
			if err != nil {
				t.Fatal(err)
			}
			got2 := make([]uint64, nw.p.Slots)
			if err := newEncoder(nw.p).Decode(rlwe.NewDecryptor(nw.p.BGV, own.SK).DecryptNew(out), got2); err != nil {
				t.Fatal(err)
			}
			for j := range vals {
				if got[j] != vals[j] || got2[j] != vals[j] {
					bad++
					return
				}
			}
		})
		return bad
	}
	nb := new(big.Int).SetUint64(uint64(nw.dec.flood.NoiseBound))
	if bad := decrypts(withNoise(nb)); bad != 0 {
		t.Fatalf("noise 2^%.1f (the flooding's bound): %d subsets decrypt wrongly", math.Log2(nw.dec.flood.NoiseBound), bad)
	}
	// Control: noise of Q_1/(2tD) alone already breaks exactness.
	over := rq.Modulus()
	over.Quo(over, new(big.Int).SetUint64(2*nw.p.BGV.PlaintextModulus()))
	over.Quo(over, nw.com.Delta)
	if bad := decrypts(withNoise(over)); bad == 0 {
		t.Fatalf("noise 2^%d decrypts exactly: the test cannot see failures", over.BitLen())
	}
}
