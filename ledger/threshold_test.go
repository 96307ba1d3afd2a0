package ledger

import (
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
// committee decrypts, which sizes the smudging (checkNoiseBound). It uses a
// 1-of-1 committee, whose single key share is the secret key itself.
func TestNoiseOfDecryptedChecks(t *testing.T) {
	nw := testNet(t, 1, 1)
	w := &world{nw: nw, b: NewBuilder(nw.p, nw.keys.PK, "test"), acct: map[string]*account{}}
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
		t.Logf("%s check noise: max |e| = 2^%.1f (bound 2^%.0f)", name, math.Log2(maxAbs+1), math.Log2(checkNoiseBound))
		if maxAbs >= checkNoiseBound {
			t.Errorf("%s noise 2^%.1f exceeds checkNoiseBound", name, math.Log2(maxAbs))
		}
	}
}
