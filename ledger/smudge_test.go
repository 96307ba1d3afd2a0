package ledger

import (
	"bytes"
	"fmt"
	"math"
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
// integers, checking that every RNS row agrees (the value is small).
func centered(t testing.TB, p *Params, v ring.Poly) []int64 {
	t.Helper()
	rq := p.BGV.RingQ().AtLevel(LevelDecrypt)
	mod := rq.ModuliChain()
	out := make([]int64, rq.N())
	for j := range out {
		for r := 0; r <= LevelDecrypt; r++ {
			q, c := mod[r], v.Coeffs[r][j]
			var x int64
			if c > q/2 {
				x = -int64(q - c)
			} else {
				x = int64(c)
			}
			if r == 0 {
				out[j] = x
			} else if out[j] != x {
				t.Fatalf("coefficient %d is not small: %d mod q0, %d mod q%d", j, out[j], x, r)
			}
		}
	}
	return out
}

// cksNoise returns e = share - c1*s_i in the coefficient domain.
func cksNoise(t testing.TB, nw *net, ks *KeyShare, ct *rlwe.Ciphertext, s *DecShare) []int64 {
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
func pcksNoise(t testing.TB, nw *net, ks *KeyShare, ct *rlwe.Ciphertext, own *OwnerKeys, s *ReencShare) []int64 {
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

func stddev(e []int64) (mean, std float64) {
	for _, v := range e {
		mean += float64(v)
	}
	mean /= float64(len(e))
	for _, v := range e {
		d := float64(v) - mean
		std += d * d
	}
	return mean, math.Sqrt(std / float64(len(e)))
}

// correlation is the sample correlation of two noise vectors.
func correlation(a, b []int64) float64 {
	ma, sa := stddev(a)
	mb, sb := stddev(b)
	c := 0.0
	for i := range a {
		c += (float64(a[i]) - ma) * (float64(b[i]) - mb)
	}
	return c / float64(len(a)) / (sa * sb)
}

func maxAbsDiff(a, b []int64) float64 {
	m := 0.0
	for i := range a {
		m = math.Max(m, math.Abs(float64(a[i]-b[i])))
	}
	return m
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
	noise := func(i int, ct *rlwe.Ciphertext) []int64 {
		s, err := nw.dec.Share(nw.shares[i], ct)
		if err != nil {
			t.Fatal(err)
		}
		return cksNoise(t, nw, nw.shares[i], ct, s)
	}
	e01, e02, e11 := noise(0, ct1), noise(0, ct2), noise(1, ct1)
	for name, pair := range map[string][2][]int64{
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
	_, std := stddev(ea)
	if d := maxAbsDiff(ea, eb); d > 1<<20 || std < 1<<40 {
		t.Fatalf("unmasked shares differ by up to 2^%.1f (noise std 2^%.1f): the flooding term depends on the owner key", math.Log2(d), math.Log2(std))
	}
	ds, _ := nw.dec.Share(ks, ct)
	ed := cksNoise(t, nw, ks, ct, ds)
	if nw.dec.sm.cksNoise != nw.dec.sm.pcksNoise {
		t.Skipf("CKS and PCKS flooding differ for these parameters (%v vs %v)", nw.dec.sm.cksNoise, nw.dec.sm.pcksNoise)
	}
	if d := maxAbsDiff(ea, ed); d > 1<<20 {
		t.Fatalf("decryption and re-encryption of one ciphertext drew different flooding (diff 2^%.1f)", math.Log2(d))
	}
	t.Logf("owner-key mask residue after unmasking: max 2^%.1f", math.Log2(maxAbsDiff(ea, ed)+1))
}

func TestShareNoiseHasTheSmudgingStdDev(t *testing.T) {
	nw := testNet(t, 4, 3)
	ct := encryptAt(t, nw, randomVals(nw.p, 16))
	own := NewOwnerKeys(nw.p)
	check := func(name string, e []int64, want ring.DiscreteGaussian) {
		mean, std := stddev(e)
		maxAbs := 0.0
		for _, v := range e {
			maxAbs = math.Max(maxAbs, math.Abs(float64(v)))
		}
		t.Logf("%s: std 2^%.3f (sigma 2^%.3f, ratio %.4f), mean %.6g sigma, max %.2f sigma", name, math.Log2(std), math.Log2(want.Sigma), std/want.Sigma, mean/want.Sigma, maxAbs/want.Sigma)
		if r := std / want.Sigma; r < 0.9 || r > 1.1 {
			t.Errorf("%s: noise std is %.3f sigma", name, r)
		}
		if math.Abs(mean) > 0.05*want.Sigma {
			t.Errorf("%s: noise mean %.3f sigma", name, mean/want.Sigma)
		}
		if maxAbs > want.Bound+(1<<20) {
			t.Errorf("%s: |e| = %.2f sigma exceeds the bound", name, maxAbs/want.Sigma)
		}
	}
	for i := 0; i < 2; i++ {
		ks := nw.shares[i]
		s, err := nw.dec.Share(ks, ct)
		if err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("CKS validator %d", i), cksNoise(t, nw, ks, ct, s), nw.dec.sm.cksNoise)
		r, err := nw.dec.ReencShare(ks, ct, own.PK)
		if err != nil {
			t.Fatal(err)
		}
		check(fmt.Sprintf("PCKS validator %d", i), pcksNoise(t, nw, ks, ct, own, r), nw.dec.sm.pcksNoise)
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
// noise (the previous implementation) with the deterministic shares.
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
	b.Run("cks/lattigo-fresh", func(b *testing.B) {
		cks, err := mhe.NewKeySwitchProtocol(nw.p.BGV, nw.dec.sigma)
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
		pcks, err := mhe.NewPublicKeySwitchProtocol(nw.p.BGV, nw.dec.sigma)
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
