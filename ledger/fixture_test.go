package ledger

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"math"
	"math/big"
	"sync"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
)

// net is an in-process committee: the ceremony run by N parties, each
// party's key share, and the public keys. Building it takes seconds, so tests
// share one per committee size.
type net struct {
	p      *Params
	com    *Committee
	keys   *PublicKeys
	shares []*KeyShare
	eng    *Engine
	dec    *Decryptor
}

var (
	netOnce sync.Map // "n/t" -> *netEntry
)

type netEntry struct {
	once sync.Once
	n    *net
	err  error
}

func runCeremony(p *Params, com *Committee, seed []byte) (*PublicKeys, []*KeyShare, error) {
	parties := make([]*Party, com.N)
	var r1 []*Round1
	var deals []*ShamirDeal
	for i := range parties {
		pt, err := NewParty(p, com, i, seed)
		if err != nil {
			return nil, nil, err
		}
		parties[i] = pt
		m, d, err := pt.Round1()
		if err != nil {
			return nil, nil, err
		}
		r1 = append(r1, roundTrip1(m))
		deals = append(deals, d...)
	}
	var r2 []*Round2
	for _, pt := range parties {
		m, err := pt.Round2(r1)
		if err != nil {
			return nil, nil, err
		}
		r2 = append(r2, m)
	}
	keys, err := AggregatePublic(p, com, seed, r1, r2)
	if err != nil {
		return nil, nil, err
	}
	shares := make([]*KeyShare, com.N)
	for i, pt := range parties {
		if shares[i], err = pt.Finish(deals); err != nil {
			return nil, nil, err
		}
	}
	return keys, shares, nil
}

// roundTrip1 sends a Round1 through its wire encoding, as a node would.
func roundTrip1(m *Round1) *Round1 {
	b, err := m.MarshalBinary()
	if err != nil {
		panic(err)
	}
	var out Round1
	if err := out.UnmarshalBinary(b); err != nil {
		panic(err)
	}
	return &out
}

func testNet(t testing.TB, n, th int) *net {
	t.Helper()
	v, _ := netOnce.LoadOrStore(fmt.Sprintf("%d/%d", n, th), &netEntry{})
	e := v.(*netEntry)
	e.once.Do(func() {
		p := MustParams(ZKB128)
		com, err := NewCommittee(n, th)
		if err != nil {
			e.err = err
			return
		}
		keys, shares, err := runCeremony(p, com, []byte(fmt.Sprintf("test-chain-%d-%d", n, th)))
		if err != nil {
			e.err = err
			return
		}
		eng, err := NewEngine(p, keys)
		if err != nil {
			e.err = err
			return
		}
		dec, err := NewDecryptor(p, com)
		if err != nil {
			e.err = err
			return
		}
		e.n = &net{p: p, com: com, keys: keys, shares: shares, eng: eng, dec: dec}
	})
	if e.err != nil {
		t.Fatalf("committee %d-of-%d: %v", th, n, e.err)
	}
	return e.n
}

// account is a test wallet's account.
type account struct {
	id   AccountID
	key  ed25519.PrivateKey
	lane int
	own  *OwnerKeys
}

func newAccount(t testing.TB, p *Params, lane int) *account {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return &account{id: AccountIDOf(pub), key: priv, lane: lane, own: NewOwnerKeys(p)}
}

// verdicts runs the full validator path on a batch: evaluate, every listed
// validator shares, combine.
func (nw *net) verdicts(t testing.TB, state *rlwe.Ciphertext, items []Item, who []int) (*Evaluation, map[int]Reason) {
	t.Helper()
	ev, err := nw.eng.Evaluate(state, items, []byte("block-hash"))
	if err != nil {
		t.Fatalf("evaluate: %v", err)
	}
	var bs, es []*DecShare
	for _, i := range who {
		b, e, err := nw.dec.ShareChecks(nw.shares[i], &ev.Checks)
		if err != nil {
			t.Fatal(err)
		}
		bs, es = append(bs, b), append(es, e)
	}
	v, err := nw.dec.DecryptChecks(ev, bs, es)
	if err != nil {
		t.Fatalf("decrypt checks: %v", err)
	}
	return ev, v
}

// balance runs the owner's balance query: t validators re-encrypt, the owner
// decrypts locally.
func (nw *net) balance(t testing.TB, state *rlwe.Ciphertext, a *account) uint64 {
	t.Helper()
	ct, err := nw.eng.BalanceCiphertext(state, a.lane)
	if err != nil {
		t.Fatal(err)
	}
	var shares []*ReencShare
	for i := 0; i < nw.com.T; i++ {
		s, err := nw.dec.ReencShare(nw.shares[i], ct, a.own.PK)
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, s)
	}
	out, err := nw.dec.CombineReenc(ct, shares)
	if err != nil {
		t.Fatal(err)
	}
	v, err := nw.p.DecryptBalance(a.own, out, a.lane)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func (nw *net) upload(t testing.TB, sub *testSub) *rlwe.Ciphertext {
	t.Helper()
	ct, err := nw.p.DecodeUpload(sub.Ciphertext)
	if err != nil {
		t.Fatalf("decode upload: %v", err)
	}
	return ct
}

// noiseOf decrypts ct with the full secret key of a 1-of-1 committee and
// returns the largest |e| in t*(c0 + c1 s) = m + t*e (mod Q): Lattigo's BGV
// decryption, with m centered below t/2, so |e| <= max|t*(c0 + c1 s)|/t + 1/2.
// An attacker-chosen c1 offset would show as |e| near Q/(2t).
func (nw *net) noiseOf(t testing.TB, ct *rlwe.Ciphertext) float64 {
	t.Helper()
	if nw.com.N != 1 {
		t.Fatal("noiseOf needs a 1-of-1 committee (the full secret key)")
	}
	pt := rlwe.NewDecryptor(nw.p.BGV, nw.shares[0].secretKey()).DecryptNew(ct)
	rq := nw.p.BGV.RingQ().AtLevel(ct.Level())
	coeffs := rq.NewPoly()
	rq.INTT(pt.Value, coeffs)
	tm := nw.p.BGV.PlaintextModulus()
	rq.MulScalar(coeffs, tm, coeffs)
	bigs := make([]*big.Int, nw.p.BGV.N())
	for i := range bigs {
		bigs[i] = new(big.Int)
	}
	rq.PolyToBigintCentered(coeffs, 1, bigs)
	maxAbs := 0.0
	for _, b := range bigs {
		f, _ := new(big.Float).SetInt(b).Float64()
		maxAbs = math.Max(maxAbs, math.Abs(f))
	}
	return maxAbs/float64(tm) + 0.5
}
