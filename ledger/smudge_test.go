package ledger

import (
	"bytes"
	"fmt"
	"math"
	"math/big"
	"sync"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/schemes/bgv"
)

func mustBytes(t testing.TB, m interface{ MarshalBinary() ([]byte, error) }) []byte {
	t.Helper()
	b, err := m.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// restarted returns a fresh Decryptor and a copy of validator i's key share
// decoded from its key-file encoding, as a node has after a restart.
func restarted(t testing.TB, nw *net, i int) (*Decryptor, *KeyShare) {
	t.Helper()
	dec, err := NewDecryptor(nw.p, nw.com)
	if err != nil {
		t.Fatal(err)
	}
	ks, err := nw.p.DecodeKeyShare(mustBytes(t, nw.shares[i]))
	if err != nil {
		t.Fatal(err)
	}
	return dec, ks
}

// centered maps a coefficient-domain poly at LevelDecrypt to signed
// integers (CRT over the level's primes, centred mod Q_1). The flooding is
// wider than one prime, so the rows no longer agree.
func centered(t testing.TB, p *Params, v ring.Poly) []*big.Int {
	t.Helper()
	rq := p.BGV.RingQ().AtLevel(LevelDecrypt)
	out := make([]*big.Int, rq.N())
	for i := range out {
		out[i] = new(big.Int)
	}
	rq.PolyToBigintCentered(v, 1, out)
	return out
}

// cksNoise returns e = share - c1*s_i in the coefficient domain.
func cksNoise(t testing.TB, nw *net, ks *KeyShare, ct *rlwe.Ciphertext, s *DecShare) []*big.Int {
	t.Helper()
	rq := nw.p.BGV.RingQ().AtLevel(LevelDecrypt)
	cs := rq.NewPoly()
	rq.MulCoeffsMontgomery(ct.Value[1], ks.Share.Q, cs)
	rq.Sub(s.Share.Value, cs, cs)
	rq.INTT(cs, cs)
	return centered(t, nw.p, cs)
}

// pcksNoise unmasks a re-encryption share with the owner key:
// share0 + share1*sk_owner - c1*s_i = e + (small encryption noise).
func pcksNoise(t testing.TB, nw *net, ks *KeyShare, ct *rlwe.Ciphertext, own *OwnerKeys, s *ReencShare) []*big.Int {
	t.Helper()
	rq := nw.p.BGV.RingQ().AtLevel(LevelDecrypt)
	acc := rq.NewPoly()
	rq.MulCoeffsMontgomery(s.Share.Value[1], own.SK.Value.Q, acc)
	rq.Add(acc, s.Share.Value[0], acc)
	cs := rq.NewPoly()
	rq.MulCoeffsMontgomery(ct.Value[1], ks.Share.Q, cs)
	rq.Sub(acc, cs, acc)
	rq.INTT(acc, acc)
	return centered(t, nw.p, acc)
}

func floats(e []*big.Int) []float64 {
	out := make([]float64, len(e))
	for i, v := range e {
		out[i], _ = new(big.Float).SetInt(v).Float64()
	}
	return out
}

func stddev(e []float64) (mean, std float64) {
	for _, v := range e {
		mean += v
	}
	mean /= float64(len(e))
	for _, v := range e {
		d := v - mean
		std += d * d
	}
	return mean, math.Sqrt(std / float64(len(e)))
}

// correlation is the sample correlation of two noise vectors.
func correlation(a, b []*big.Int) float64 {
	fa, fb := floats(a), floats(b)
	ma, sa := stddev(fa)
	mb, sb := stddev(fb)
	c := 0.0
	for i := range fa {
		c += (fa[i] - ma) * (fb[i] - mb)
	}
	return c / float64(len(fa)) / (sa * sb)
}

// maxAbsDiff is max |a_i - b_i|, computed exactly.
func maxAbsDiff(a, b []*big.Int) float64 {
	m, d := new(big.Int), new(big.Int)
	for i := range a {
		if d.Sub(a[i], b[i]).Abs(d).Cmp(m) > 0 {
			m.Set(d)
		}
	}
	f, _ := new(big.Float).SetInt(m).Float64()
	return f
}

func TestShareIsByteIdenticalAcrossRestarts(t *testing.T) {
	nw := testNet(t, 4, 3)
	ct := encryptAt(t, nw, randomVals(nw.p, 11))
	own := NewOwnerKeys(nw.p)
	for i := 0; i < nw.com.N; i++ {
		dec2, ks2 := restarted(t, nw, i)
		a, err := nw.dec.Share(nw.shares[i], ct)
		if err != nil {
			t.Fatal(err)
		}
		again, _ := nw.dec.Share(nw.shares[i], ct)
		b, err := dec2.Share(ks2, ct)
		if err != nil {
			t.Fatal(err)
		}
		if ab := mustBytes(t, a); !bytes.Equal(ab, mustBytes(t, again)) || !bytes.Equal(ab, mustBytes(t, b)) {
			t.Fatalf("validator %d: decryption shares of one ciphertext differ", i)
		}
		ra, err := nw.dec.ReencShare(nw.shares[i], ct, own.PK)
		if err != nil {
			t.Fatal(err)
		}
		ragain, _ := nw.dec.ReencShare(nw.shares[i], ct, own.PK)
		rb, err := dec2.ReencShare(ks2, ct, own.PK)
		if err != nil {
			t.Fatal(err)
		}
		if ab := mustBytes(t, ra); !bytes.Equal(ab, mustBytes(t, ragain)) || !bytes.Equal(ab, mustBytes(t, rb)) {
			t.Fatalf("validator %d: re-encryption shares of one ciphertext to one key differ", i)
		}
		// The wire decoders accept the new shares.
		if _, err := nw.p.DecodeDecShare(mustBytes(t, a)); err != nil {
			t.Fatalf("decode decryption share: %v", err)
		}
		if _, err := nw.p.DecodeReencShare(mustBytes(t, ra)); err != nil {
			t.Fatalf("decode re-encryption share: %v", err)
		}
	}
}

// TestShareDependsOnlyOnC1 pins the choice of hashing c1 alone: c0 does not
// enter a share, so changing it (a plaintext addition) must not buy a fresh
// noise sample, and the same ring element in either domain gets the same one.
func TestShareDependsOnlyOnC1(t *testing.T) {
	nw := testNet(t, 4, 3)
	ct := encryptAt(t, nw, randomVals(nw.p, 12))
	rq := nw.p.BGV.RingQ().AtLevel(LevelDecrypt)
	shifted := ct.CopyNew()
	rq.Add(shifted.Value[0], encryptAt(t, nw, randomVals(nw.p, 13)).Value[0], shifted.Value[0])
	own := NewOwnerKeys(nw.p)
	ks := nw.shares[1]
	a, _ := nw.dec.Share(ks, ct)
	b, err := nw.dec.Share(ks, shifted)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mustBytes(t, a), mustBytes(t, b)) {
		t.Fatal("changing c0 changed the decryption share")
	}
	ra, _ := nw.dec.ReencShare(ks, ct, own.PK)
	rb, _ := nw.dec.ReencShare(ks, shifted, own.PK)
	if !bytes.Equal(mustBytes(t, ra), mustBytes(t, rb)) {
		t.Fatal("changing c0 changed the re-encryption share")
	}
	// The same ciphertext in the coefficient domain: same share, INTT'd.
	coef := ct.CopyNew()
	rq.INTT(coef.Value[0], coef.Value[0])
	rq.INTT(coef.Value[1], coef.Value[1])
	coef.IsNTT = false
	c, err := nw.dec.Share(ks, coef)
	if err != nil {
		t.Fatal(err)
	}
	want := rq.NewPoly()
	rq.INTT(a.Share.Value, want)
	if !rq.Equal(c.Share.Value, want) {
		t.Fatal("the coefficient-domain ciphertext got different noise")
	}
}

func TestShareNoiseDiffersAcrossCiphertextsAndValidators(t *testing.T) {
	nw := testNet(t, 4, 3)
	ct1 := encryptAt(t, nw, randomVals(nw.p, 14))
	ct2 := encryptAt(t, nw, randomVals(nw.p, 14)) // same plaintext, new c1
	noise := func(i int, ct *rlwe.Ciphertext) []*big.Int {
		s, err := nw.dec.Share(nw.shares[i], ct)
		if err != nil {
			t.Fatal(err)
		}
		return cksNoise(t, nw, nw.shares[i], ct, s)
	}
	e01, e02, e11 := noise(0, ct1), noise(0, ct2), noise(1, ct1)
	for name, pair := range map[string][2][]*big.Int{
		"same validator, different ciphertext": {e01, e02},
		"same ciphertext, different validator": {e01, e11},
	} {
		// Independent samples: correlation ~ N(0, 1/sqrt(16384)) = 0.008.
		if c := correlation(pair[0], pair[1]); math.Abs(c) > 0.05 {
			t.Errorf("%s: noise correlation %.3f", name, c)
		}
		if maxAbsDiff(pair[0], pair[1]) == 0 {
			t.Errorf("%s: same noise", name)
		}
	}
}

// TestReencShareMaskDependsOnOwnerKeyButNoiseDoesNot: asking for one
// ciphertext under two owner keys gives different shares, but once each
// owner removes its mask both see the same flooding term, which is also the
// one in the decryption share of that ciphertext: no second sample.
func TestReencShareMaskDependsOnOwnerKeyButNoiseDoesNot(t *testing.T) {
	nw := testNet(t, 4, 3)
	ct := encryptAt(t, nw, randomVals(nw.p, 15))
	ks := nw.shares[2]
	a, b := NewOwnerKeys(nw.p), NewOwnerKeys(nw.p)
	sa, _ := nw.dec.ReencShare(ks, ct, a.PK)
	sb, err := nw.dec.ReencShare(ks, ct, b.PK)
	if err != nil {
		t.Fatal(err)
	}
	rq := nw.p.BGV.RingQ().AtLevel(LevelDecrypt)
	if rq.Equal(sa.Share.Value[0], sb.Share.Value[0]) || rq.Equal(sa.Share.Value[1], sb.Share.Value[1]) {
		t.Fatal("re-encryption shares to two owner keys share a mask component")
	}
	ea, eb := pcksNoise(t, nw, ks, ct, a, sa), pcksNoise(t, nw, ks, ct, b, sb)
	_, std := stddev(floats(ea))
	if d := maxAbsDiff(ea, eb); d > 1<<20 || std < 1<<60 {
		t.Fatalf("unmasked shares differ by up to 2^%.1f (noise std 2^%.1f): the flooding term depends on the owner key", math.Log2(d), math.Log2(std))
	}
	ds, _ := nw.dec.Share(ks, ct)
	ed := cksNoise(t, nw, ks, ct, ds)
	if d := maxAbsDiff(ea, ed); d > 1<<20 {
		t.Fatalf("decryption and re-encryption of one ciphertext drew different flooding (diff 2^%.1f)", math.Log2(d))
	}
	t.Logf("owner-key mask residue after unmasking: max 2^%.1f", math.Log2(maxAbsDiff(ea, ed)+1))
}

// TestShareNoiseHasTheSmudgingStdDev checks the flooding term of real
// shares against its distribution, uniform in [-B, B): standard deviation
// B/sqrt(3), mean 0, never beyond B, and uniform both in its top bits (the
// width) and its low bits (every byte of the stream is used).
func TestShareNoiseHasTheSmudgingStdDev(t *testing.T) {
	nw := testNet(t, 4, 3)
	ct := encryptAt(t, nw, randomVals(nw.p, 16))
	own := NewOwnerKeys(nw.p)
	fl := nw.dec.flood
	B := fl.B()
	bigB := new(big.Int).Lsh(big.NewInt(1), uint(fl.LogB))
	sigma := B / math.Sqrt(3)
	t.Logf("flooding: B = 2^%d (std 2^%.2f), noise bound 2^%.2f, ratio B/bound = 2^%.2f = 2^lambda * sqrt(%d)",
		fl.LogB, math.Log2(sigma), math.Log2(fl.NoiseBound), math.Log2(B/fl.NoiseBound), nw.com.N)
	check := func(name string, e []*big.Int, slack int64) {
		mean, std := stddev(floats(e))
		maxAbs := 0.0
		hiHist, loHist := make([]float64, 16), make([]float64, 16)
		u := new(big.Int)
		for _, v := range e {
			f, _ := new(big.Float).SetInt(v).Float64()
			maxAbs = math.Max(maxAbs, math.Abs(f))
			// u = e + B in [0, 2B): bits logB-3..logB, and bits 0..3.
			u.Add(v, bigB)
			hiHist[new(big.Int).Rsh(u, uint(fl.LogB-3)).Int64()&15]++
			loHist[u.Int64()&15]++
		}
		chi2 := func(h []float64) float64 {
			want := float64(len(e)) / float64(len(h))
			x := 0.0
			for _, c := range h {
				x += (c - want) * (c - want) / want
			}
			return x
		}
		t.Logf("%s: std 2^%.3f (B/sqrt(3) 2^%.3f, ratio %.4f), mean %.2g sigma, max |e| %.5f B, chi2(15) top bits %.1f, low bits %.1f",
			name, math.Log2(std), math.Log2(sigma), std/sigma, mean/sigma, maxAbs/B, chi2(hiHist), chi2(loHist))
		// 16384 samples: the std's relative error is ~0.35%, the mean's ~0.8%
		// of sigma; a chi2 with 15 degrees of freedom exceeds 60 with
		// probability ~1e-7.
		if r := std / sigma; r < 0.98 || r > 1.02 {
			t.Errorf("%s: noise std is %.4f B/sqrt(3)", name, r)
		}
		if math.Abs(mean) > 0.05*sigma {
			t.Errorf("%s: noise mean %.3f sigma", name, mean/sigma)
		}
		lim := new(big.Int).Add(bigB, big.NewInt(slack))
		for i, v := range e {
			if v.Cmp(lim) >= 0 || new(big.Int).Neg(v).Cmp(lim) > 0 {
				t.Fatalf("%s: e[%d] = %v outside [-B, B) (B = 2^%d, slack %d)", name, i, v, fl.LogB, slack)
			}
		}
		if maxAbs < 0.99*B {
			t.Errorf("%s: max |e| = %.4f B: the flood is narrower than B", name, maxAbs/B)
		}
		if x := chi2(hiHist); x > 60 {
			t.Errorf("%s: top bits not uniform (chi2 %.1f)", name, x)
		}
		if x := chi2(loHist); x > 60 {
			t.Errorf("%s: low bits not uniform (chi2 %.1f)", name, x)
		}
	}
	for i := 0; i < 2; i++ {
		ks := nw.shares[i]
		s, err := nw.dec.Share(ks, ct)
		if err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("CKS validator %d", i), cksNoise(t, nw, ks, ct, s), 0)
		r, err := nw.dec.ReencShare(ks, ct, own.PK)
		if err != nil {
			t.Fatal(err)
		}
		// The unmasked PCKS term carries the mask's encryption noise too.
		check(fmt.Sprintf("PCKS validator %d", i), pcksNoise(t, nw, ks, ct, own, r), 1<<24)
	}
}

// TestFloodSamplerMatchesItsSpecification re-derives the flooding term from
// the PRNG stream with big integers, as smudge.go's header specifies it,
// and compares every RNS residue, for widths around the byte and word
// boundaries and zkb128's own.
func TestFloodSamplerMatchesItsSpecification(t *testing.T) {
	p := MustParams(ZKB128)
	rq := p.BGV.RingQ().AtLevel(LevelDecrypt)
	com, _ := NewCommittee(4, 2)
	fl, err := com.smudging(p)
	if err != nil {
		t.Fatal(err)
	}
	for _, logB := range []int{0, 1, 7, 8, 62, 63, 64, 65, 71, 72, fl.LogB, 100, maxFloodLogB} {
		seed := []byte(fmt.Sprintf("flood-spec-%d", logB))
		e := rq.NewPoly()
		readFlood(keyedPRNG(seed), rq, logB, e)
		w := (logB + 8) / 8
		stream := make([]byte, w*rq.N())
		keyedPRNG(seed).Read(stream)
		B := new(big.Int).Lsh(big.NewInt(1), uint(logB))
		mask := new(big.Int).Sub(new(big.Int).Lsh(B, 1), big.NewInt(1))
		var neg, pos int
		for i := 0; i < rq.N(); i++ {
			le := stream[i*w : (i+1)*w]
			be := make([]byte, w)
			for k := range le {
				be[w-1-k] = le[k]
			}
			x := new(big.Int).SetBytes(be)
			x.And(x, mask).Sub(x, B)
			if x.Sign() < 0 {
				neg++
			} else {
				pos++
			}
			for j, q := range rq.ModuliChain()[:LevelDecrypt+1] {
				want := new(big.Int).Mod(x, new(big.Int).SetUint64(q)).Uint64()
				if got := e.Coeffs[j][i]; got != want {
					t.Fatalf("logB %d, coefficient %d = %v: residue mod q%d is %d, want %d", logB, i, x, j, got, want)
				}
			}
		}
		if neg < rq.N()/3 || pos < rq.N()/3 {
			t.Errorf("logB %d: %d negative, %d non-negative samples", logB, neg, pos)
		}
	}
	// logB = 0: [-1, 1) is {-1, 0}, both reachable, nothing else.
	e := rq.NewPoly()
	readFlood(keyedPRNG([]byte("tiny")), rq, 0, e)
	seen := map[uint64]int{}
	for _, c := range e.Coeffs[0] {
		seen[c]++
	}
	if q := rq.ModuliChain()[0]; len(seen) != 2 || seen[0] == 0 || seen[q-1] == 0 {
		t.Errorf("B = 1: samples %v, want {0, -1}", seen)
	}
}

func testSharesCombine(t *testing.T, n, th int) {
	nw := testNet(t, n, th)
	vals := randomVals(nw.p, byte(40+th))
	ct := encryptAt(t, nw, vals)
	own := NewOwnerKeys(nw.p)
	dec := make([]*DecShare, n)
	reenc := make([]*ReencShare, n)
	for i := range dec {
		var err error
		if dec[i], err = nw.dec.Share(nw.shares[i], ct); err != nil {
			t.Fatal(err)
		}
		if reenc[i], err = nw.dec.ReencShare(nw.shares[i], ct, own.PK); err != nil {
			t.Fatal(err)
		}
	}
	check := func(what string, idx []int, got []uint64) {
		for j := range vals {
			if got[j] != vals[j] {
				t.Fatalf("%s, subset %v: slot %d = %d, want %d", what, idx, j, got[j], vals[j])
			}
		}
	}
	nw.com.forEachSubset(func(idx []int) {
		var ds []*DecShare
		var rs []*ReencShare
		for _, i := range idx {
			ds, rs = append(ds, dec[i]), append(rs, reenc[i])
		}
		got, err := nw.dec.Combine(ct, ds)
		if err != nil {
			t.Fatalf("combine %v: %v", idx, err)
		}
		check("decryption", idx, got)
		out, err := nw.dec.CombineReenc(ct, rs)
		if err != nil {
			t.Fatalf("combine re-encryption %v: %v", idx, err)
		}
		got = make([]uint64, nw.p.Slots)
		if err := newEncoder(nw.p).Decode(rlwe.NewDecryptor(nw.p.BGV, own.SK).DecryptNew(out), got); err != nil {
			t.Fatal(err)
		}
		check("re-encryption", idx, got)
	})
	// All n shares: Combine cross-checks two subsets.
	if _, err := nw.dec.Combine(ct, dec); err != nil {
		t.Fatalf("combine all %d: %v", n, err)
	}
}

func TestDeterministicSharesCombine_3of4_EveryTriple(t *testing.T) { testSharesCombine(t, 4, 3) }
func TestDeterministicSharesCombine_2of4_EveryPair(t *testing.T)   { testSharesCombine(t, 4, 2) }

// TestDeterministicSharesCombine_Balance runs the owner's balance query on
// a real state ciphertext (the path node/server.go serves).
func TestDeterministicSharesCombine_Balance(t *testing.T) {
	nw := testNet(t, 4, 3)
	st, err := nw.eng.trivialState(map[int]uint64{5: 4242})
	if err != nil {
		t.Fatal(err)
	}
	a := newAccount(t, nw.p, 5)
	if got := nw.balance(t, st, a); got != 4242 {
		t.Fatalf("balance %d, want 4242", got)
	}
}

func TestShareIsSafeForConcurrentUse(t *testing.T) {
	nw := testNet(t, 4, 3)
	own := NewOwnerKeys(nw.p)
	cts := []*rlwe.Ciphertext{encryptAt(t, nw, randomVals(nw.p, 17)), encryptAt(t, nw, randomVals(nw.p, 18))}
	dec, _ := restarted(t, nw, 0) // a Decryptor with an empty key cache
	type job struct{ v, c int }
	var jobs []job
	for v := 0; v < nw.com.N; v++ {
		for c := range cts {
			jobs = append(jobs, job{v, c})
		}
	}
	got := make([][2][]byte, len(jobs))
	var wg sync.WaitGroup
	for k, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := dec.Share(nw.shares[j.v], cts[j.c])
			if err != nil {
				t.Error(err)
				return
			}
			r, err := dec.ReencShare(nw.shares[j.v], cts[j.c], own.PK)
			if err != nil {
				t.Error(err)
				return
			}
			got[k] = [2][]byte{mustBytes(t, s), mustBytes(t, r)}
		}()
	}
	wg.Wait()
	for k, j := range jobs {
		s, _ := nw.dec.Share(nw.shares[j.v], cts[j.c])
		r, _ := nw.dec.ReencShare(nw.shares[j.v], cts[j.c], own.PK)
		if !bytes.Equal(got[k][0], mustBytes(t, s)) || !bytes.Equal(got[k][1], mustBytes(t, r)) {
			t.Fatalf("validator %d, ciphertext %d: concurrent share differs from sequential", j.v, j.c)
		}
	}
}

// BenchmarkSmudgedShare compares lattigo's protocols with fresh crypto/rand
// noise (the implementation before smudge.go) with the deterministic shares.
func BenchmarkSmudgedShare(b *testing.B) {
	nw := testNet(b, 4, 3)
	pt := bgv.NewPlaintext(nw.p.BGV, LevelDecrypt)
	if err := newEncoder(nw.p).Encode(randomVals(nw.p, 19), pt); err != nil {
		b.Fatal(err)
	}
	ct, err := rlwe.NewEncryptor(nw.p.BGV, nw.keys.PK).EncryptNew(pt)
	if err != nil {
		b.Fatal(err)
	}
	own := NewOwnerKeys(nw.p)
	ks := nw.shares[1]
	// The lattigo baselines draw fresh crypto/rand noise from the widest
	// Gaussian lattigo samples correctly (sigma 2^53 for 4 parties, the
	// size of the Gaussian smudging before the uniform flood).
	b.Run("cks/lattigo-fresh", func(b *testing.B) {
		cks, err := mhe.NewKeySwitchProtocol(nw.p.BGV, nw.dec.flood.gaussian(nw.p))
		if err != nil {
			b.Fatal(err)
		}
		zero := rlwe.NewSecretKey(nw.p.BGV)
		for i := 0; i < b.N; i++ {
			sh := cks.AllocateShare(LevelDecrypt)
			cks.GenShare(ks.secretKey(), zero, ct, &sh)
		}
	})
	b.Run("cks/deterministic", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := nw.dec.Share(ks, ct); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("pcks/lattigo-fresh", func(b *testing.B) {
		pcks, err := mhe.NewPublicKeySwitchProtocol(nw.p.BGV, nw.dec.flood.gaussian(nw.p))
		if err != nil {
			b.Fatal(err)
		}
		for i := 0; i < b.N; i++ {
			sh := pcks.AllocateShare(LevelDecrypt)
			pcks.GenShare(ks.secretKey(), own.PK, ct, &sh)
		}
	})
	b.Run("pcks/deterministic", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := nw.dec.ReencShare(ks, ct, own.PK); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("prf-key-derivation", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := deriveSmudgeKey(ks); err != nil {
				b.Fatal(err)
			}
		}
	})
}
