package ledger

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/schemes/bgv"
)

// rsKeys is a committee holding the collective key: its key shares and the
// signing keys its members deal with.
type rsKeys struct {
	p       *Params
	com     *Committee
	keys    *PublicKeys
	shares  []*KeyShare
	signers []DealSigner
	verify  DealVerifier
}

type rsOnce struct {
	once sync.Once
	k    *rsKeys
	err  error
}

var rsGenesis, rsFive rsOnce

// rsChain4 is a 4-validator chain's key (2-of-4) from the verified ceremony.
func rsChain4(t testing.TB) *rsKeys {
	t.Helper()
	rsGenesis.once.Do(func() {
		b := verifiedBase(t, 4, 2)
		h := b.run(t, nil)
		for i, err := range h.errs {
			if err != nil {
				rsGenesis.err = fmt.Errorf("ceremony party %d: %w", i, err)
				return
			}
		}
		rsGenesis.k = &rsKeys{p: b.p, com: b.com, keys: h.keys, shares: h.shares, signers: b.signers, verify: b.verify}
	})
	if rsGenesis.err != nil {
		t.Fatal(rsGenesis.err)
	}
	return rsGenesis.k
}

// rsChain5 is rsChain4 after a fifth validator joined (2-of-5).
func rsChain5(t testing.TB) *rsKeys {
	t.Helper()
	g := rsChain4(t)
	rsFive.once.Do(func() {
		res := reshareRun(t, g, 5, 2, []int{1, 3}, nil)
		if err := res.firstErr(); err != nil {
			rsFive.err = err
			return
		}
		rsFive.k = res.next
	})
	if rsFive.err != nil {
		t.Fatal(rsFive.err)
	}
	return rsFive.k
}

func newSigners(n int) ([]DealSigner, DealVerifier) {
	pubs := make([]ed25519.PublicKey, n)
	privs := make([]ed25519.PrivateKey, n)
	for i := range pubs {
		pubs[i], privs[i], _ = ed25519.GenerateKey(rand.Reader)
	}
	signers := make([]DealSigner, n)
	var verify DealVerifier
	for i := range signers {
		signers[i], verify = Ed25519DealAuth(privs[i], pubs)
	}
	return signers, verify
}

// rsHooks let a test make dealers and recipients misbehave.
type rsHooks struct {
	// share may replace the key share dealer j deals and commits to.
	share func(j int, ks *KeyShare) *KeyShare
	// prepare may alter dealer j's deal polynomial values before it signs
	// and commits to them.
	prepare func(j int, d *ReshareDealer)
	// send may alter the signed deals dealer j sends (after it committed to
	// what it computed).
	send func(r *Reshare, j int, deals []*ReshareDeal, sign DealSigner)
	// tamperCommit may alter (or drop, returning nil) an old member's
	// commitment message.
	tamperCommit func(c *ReshareCommit) *ReshareCommit
	// tamperCheck may alter a new member's check message.
	tamperCheck func(c *ReshareCheck)
}

type rsResult struct {
	r       *Reshare
	v       *ReshareVerifier
	commits []*ReshareCommit
	checks  []*ReshareCheck
	shares  []*KeyShare
	errs    []error
	next    *rsKeys
	elapsed struct{ deal, ack, commit, check, verdict time.Duration }
	bytes   struct{ deal, commit, check int }
}

func (res *rsResult) firstErr() error {
	for k, err := range res.errs {
		if err != nil {
			return fmt.Errorf("new member %d: %w", k, err)
		}
	}
	return nil
}

// reshareRun re-deals from's key to a new (newN, newT) committee, with
// dealers Q and every old member committing to its share.
func reshareRun(t testing.TB, from *rsKeys, newN, newT int, dealers []int, h *rsHooks) *rsResult {
	t.Helper()
	if h == nil {
		h = &rsHooks{}
	}
	p := from.p
	next, err := NewCommittee(newN, newT)
	if err != nil {
		t.Fatal(err)
	}
	res := &rsResult{}
	res.r, err = NewReshare(p, from.com, next, dealers, from.keys.PK, []byte(fmt.Sprintf("test-reshare-%d-%d", from.com.N, newN)), []byte("bind"))
	if err != nil {
		t.Fatal(err)
	}
	r := res.r
	recipients := make([]*ReshareRecipient, newN)
	for k := range recipients {
		if recipients[k], err = r.NewRecipient(k); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	olds := make([]*ReshareDealer, from.com.N)
	for j := range olds {
		ks := from.shares[j]
		if h.share != nil {
			ks = h.share(j, ks)
		}
		if olds[j], err = r.NewDealer(ks); err != nil {
			t.Fatal(err)
		}
	}
	for _, j := range r.Dealers() {
		d := olds[j]
		if h.prepare != nil {
			if err := d.makeDeals(); err != nil {
				t.Fatal(err)
			}
			h.prepare(j, d)
		}
		deals, err := d.Deals(from.signers[j])
		if err != nil {
			t.Fatal(err)
		}
		if h.send != nil {
			h.send(r, j, deals, from.signers[j])
		}
		for _, sd := range deals {
			b, err := sd.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			res.bytes.deal += len(b)
			if sd, err = p.DecodeReshareDeal(b); err != nil {
				t.Fatal(err)
			}
			if err := recipients[sd.To].Accept(sd, from.verify); err != nil {
				t.Fatalf("new member %d: %v", sd.To, err)
			}
		}
	}
	res.elapsed.deal = time.Since(start)
	start = time.Now()
	var acks []*ReshareAck
	for _, rc := range recipients {
		a, err := rc.Ack()
		if err != nil {
			t.Fatal(err)
		}
		b, _ := a.MarshalBinary()
		if a, err = DecodeReshareAck(b); err != nil {
			t.Fatal(err)
		}
		acks = append(acks, a)
	}
	if res.v, err = NewReshareVerifier(r, acks, from.verify); err != nil {
		t.Fatal(err)
	}
	res.elapsed.ack = time.Since(start)
	start = time.Now()
	for j, d := range olds {
		c, err := d.Commit(res.v, from.signers[j])
		if err != nil {
			t.Fatal(err)
		}
		if h.tamperCommit != nil {
			if c = h.tamperCommit(c); c == nil {
				continue
			}
		}
		b, err := c.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		res.bytes.commit += len(b)
		if c, err = p.DecodeReshareCommit(b); err != nil {
			t.Fatal(err)
		}
		res.commits = append(res.commits, c)
	}
	res.elapsed.commit = time.Since(start)
	start = time.Now()
	for _, rc := range recipients {
		c, err := rc.Check(res.v, res.commits)
		if err != nil {
			t.Fatal(err)
		}
		if h.tamperCheck != nil {
			h.tamperCheck(c)
		}
		b, err := c.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		res.bytes.check += len(b)
		if c, err = p.DecodeReshareCheck(b); err != nil {
			t.Fatal(err)
		}
		res.checks = append(res.checks, c)
	}
	res.elapsed.check = time.Since(start)
	start = time.Now()
	res.shares = make([]*KeyShare, newN)
	res.errs = make([]error, newN)
	for k, rc := range recipients {
		res.shares[k], res.errs[k] = rc.KeyShare(res.v, res.commits, res.checks)
	}
	res.elapsed.verdict = time.Since(start)
	if res.firstErr() == nil {
		signers, verify := newSigners(newN)
		res.next = &rsKeys{p: p, com: next, keys: from.keys, shares: res.shares, signers: signers, verify: verify}
	}
	return res
}

// wantFault asserts that every new member's resharing failed with the same
// fault, naming old member dealer (if >= 0) or new member recipient, that
// no one else is blamed, and that no one kept a key share.
func (res *rsResult) wantFault(t *testing.T, dealer, recipient int) *ReshareFault {
	t.Helper()
	fs := wantFaults[reshareRoles](t, "new member", "ReshareFault", res.errs, res.shares, dealer, recipient)
	for _, f := range fs {
		if len(f.More) != 0 {
			t.Fatalf("others blamed too: %v", f)
		}
		if f.Error() != fs[0].Error() {
			t.Fatalf("members disagree: %v / %v", f, fs[0])
		}
	}
	return fs[0]
}

// encryptBalances encrypts balances (values below 2^32) under the collective
// key.
func encryptBalances(t testing.TB, k *rsKeys, seed byte) (*rlwe.Ciphertext, []uint64) {
	t.Helper()
	vals := randomVals(k.p, seed)
	pt := bgv.NewPlaintext(k.p.BGV, LevelDecrypt)
	if err := newEncoder(k.p).Encode(vals, pt); err != nil {
		t.Fatal(err)
	}
	ct, err := rlwe.NewEncryptor(k.p.BGV, k.keys.PK).EncryptNew(pt)
	if err != nil {
		t.Fatal(err)
	}
	return ct, vals
}

// decShares computes every member's decryption share of ct.
func decShares(t testing.TB, p *Params, com *Committee, shares []*KeyShare, ct *rlwe.Ciphertext) (*Decryptor, []*DecShare) {
	t.Helper()
	dec, err := NewDecryptor(p, com)
	if err != nil {
		t.Fatal(err)
	}
	out := make([]*DecShare, len(shares))
	for i, ks := range shares {
		if out[i], err = dec.Share(ks, ct); err != nil {
			t.Fatal(err)
		}
	}
	return dec, out
}

// decrypts reports whether the shares of the given members decrypt ct to want.
func decrypts(dec *Decryptor, ct *rlwe.Ciphertext, shares []*DecShare, members []int, want []uint64) bool {
	var sub []*DecShare
	for _, i := range members {
		sub = append(sub, shares[i])
	}
	got, err := dec.Combine(ct, sub)
	if err != nil || len(got) != len(want) {
		return false
	}
	for s := range want {
		if got[s] != want[s] {
			return false
		}
	}
	return true
}

// wantEverySubsetDecrypts asserts every t-subset of k's shares decrypts ct.
func wantEverySubsetDecrypts(t *testing.T, k *rsKeys, ct *rlwe.Ciphertext, want []uint64) {
	t.Helper()
	dec, shares := decShares(t, k.p, k.com, k.shares, ct)
	n := 0
	Subsets(k.com.N, k.com.T, func(idx []int) {
		if !decrypts(dec, ct, shares, idx, want) {
			t.Fatalf("%d-of-%d: subset %v does not decrypt the balances", k.com.T, k.com.N, idx)
		}
		n++
	})
	t.Logf("%d-of-%d: all %d subsets decrypt", k.com.T, k.com.N, n)
}

// A 4-validator chain (key from the verified ceremony) adds a fifth
// validator: dealers 1 and 3 re-deal, the collective key is unchanged, every
// 2-subset of the five decrypts balances encrypted before the change, and
// the new member's share works with each of the others.
func TestReshare_AddAFifthValidatorKeepsTheKeyAndBalances(t *testing.T) {
	g := rsChain4(t)
	ct, vals := encryptBalances(t, g, 41)
	res := reshareRun(t, g, 5, 2, []int{1, 3}, nil)
	if err := res.firstErr(); err != nil {
		t.Fatal(err)
	}
	five := res.next
	wantEverySubsetDecrypts(t, five, ct, vals)

	// The new member's share, with each old member's new share.
	dec, shares := decShares(t, five.p, five.com, five.shares, ct)
	for k := 0; k < 4; k++ {
		if !decrypts(dec, ct, shares, []int{k, 4}, vals) {
			t.Fatalf("the new member with member %d does not decrypt", k)
		}
	}
	// The shares were re-randomized: no member's new share equals its old one.
	for k := 0; k < 4; k++ {
		if five.shares[k].Share.Equal(&g.shares[k].Share.Poly) {
			t.Fatalf("member %d's share did not change", k)
		}
	}
	// Asking an old member again for its commitment on the same transcript
	// returns the same share commitment: no second noise sample of u*sk_j.
	again, err := res.r.NewDealer(g.shares[0])
	if err != nil {
		t.Fatal(err)
	}
	c, err := again.Commit(res.v, g.signers[0])
	if err != nil {
		t.Fatal(err)
	}
	if !c.A.Equal(&res.commits[0].A) {
		t.Fatal("a second commitment on the same transcript carries fresh noise")
	}
	// A fresh encryption under the same public key decrypts too.
	ct2, vals2 := encryptBalances(t, five, 42)
	dec, shares = decShares(t, five.p, five.com, five.shares, ct2)
	if !decrypts(dec, ct2, shares, []int{2, 4}, vals2) {
		t.Fatal("a new encryption under the unchanged key does not decrypt")
	}
	t.Logf("4->5: deal %v, ack+verifier %v, commit %v, check %v, verdict %v (whole committee, one process); deals %d B, commitments %d B, checks %d B in all",
		res.elapsed.deal.Round(time.Millisecond), res.elapsed.ack.Round(time.Millisecond), res.elapsed.commit.Round(time.Millisecond),
		res.elapsed.check.Round(time.Millisecond), res.elapsed.verdict.Round(time.Millisecond), res.bytes.deal, res.bytes.commit, res.bytes.check)
}

// A 5-validator chain (from the 4->5 resharing) removes old validator 2: old
// 0, 1, 3, 4 become new 0..3, dealt by old 3 and 4; every 2-subset of the
// four decrypts balances encrypted at genesis.
func TestReshare_RemoveAValidator(t *testing.T) {
	five := rsChain5(t)
	ct, vals := encryptBalances(t, five, 43)
	res := reshareRun(t, five, 4, 2, []int{3, 4}, nil)
	if err := res.firstErr(); err != nil {
		t.Fatal(err)
	}
	wantEverySubsetDecrypts(t, res.next, ct, vals)
}

// What resharing revokes, and what it does not. After 5 -> 4 without old
// validator 4, its old share is on the old polynomial: combined with any
// new member's share (as if at its old point 5) it decrypts nothing. But the
// collective key is unchanged, so t old shares still reconstruct it:
// resharing does not revoke a coalition of t old members that kept their
// shares (docs/PROTOCOL.md, "Resharing").
func TestReshare_RemovedMembersOldShareIsUselessWithTheNewSet(t *testing.T) {
	five := rsChain5(t)
	ct, vals := encryptBalances(t, five, 44)
	res := reshareRun(t, five, 4, 2, []int{0, 2}, nil)
	if err := res.firstErr(); err != nil {
		t.Fatal(err)
	}
	four := res.next

	// New shares at points 1..4 plus the removed member's old share at its
	// point 5, combined as one 2-of-5 polynomial.
	mixed := append(append([]*KeyShare(nil), four.shares...), five.shares[4])
	dec, shares := decShares(t, five.p, five.com, mixed, ct)
	for k := 0; k < 4; k++ {
		if decrypts(dec, ct, shares, []int{k, 4}, vals) {
			t.Fatalf("new member %d with the removed member's old share decrypted", k)
		}
	}
	// Neither does the old share stand in for the new share at the same point.
	for k := 0; k < 4; k++ {
		other := (k + 1) % 4
		swapped := append([]*KeyShare(nil), four.shares...)
		swapped[k] = &KeyShare{Index: k, N: 4, T: 2, Share: five.shares[k].Share}
		dec4, s4 := decShares(t, four.p, four.com, swapped, ct)
		if decrypts(dec4, ct, s4, []int{k, other}, vals) {
			t.Fatalf("old share of %d with new share of %d decrypted", k, other)
		}
	}
	// Not revoked: two old shares, the removed member's among them.
	dec5, old := decShares(t, five.p, five.com, five.shares, ct)
	if !decrypts(dec5, ct, old, []int{1, 4}, vals) {
		t.Fatal("old shares of a t-subset of the old committee no longer decrypt (the key changed?)")
	}
}

func shiftPoly(p *Params, s *mhe.ShamirSecretShare, row, coeff int, by uint64) {
	q := p.BGV.Q()[row]
	s.Poly.Q.Coeffs[row][coeff] = (s.Poly.Q.Coeffs[row][coeff] + by) % q
}

// A dealer that re-deals badly is named, and no new member keeps a share:
// one deal off by one in one coefficient (committed to, or only sent),
// every deal shifted by the same amount (consistent but not through
// lambda_j*sk_j), and a dealer re-dealing a share other than its own.
func TestAttack_BadReDealIsNamed(t *testing.T) {
	g := rsChain4(t)
	cases := []struct {
		name string
		bad  int
		h    func(p *Params) *rsHooks
	}{
		{"one coefficient off, committed", 3, func(p *Params) *rsHooks {
			return &rsHooks{prepare: func(j int, d *ReshareDealer) {
				if j == 3 {
					shiftPoly(p, &d.shares[2], 0, 0, 1)
				}
			}}
		}},
		{"one coefficient off, sent only", 3, func(p *Params) *rsHooks {
			return &rsHooks{send: func(r *Reshare, j int, deals []*ReshareDeal, sign DealSigner) {
				if j != 3 {
					return
				}
				bad := &ReshareDeal{From: j, To: 2, Share: mhe.ShamirSecretShare{Poly: *deals[2].Share.Poly.CopyNew()}}
				shiftPoly(p, &bad.Share, 0, 0, 1)
				msg, err := r.DealSigningBytes(j, 2, &bad.Share)
				if err != nil {
					panic(err)
				}
				bad.Sig, _ = sign(msg)
				deals[2] = bad
			}}
		}},
		{"consistent but wrong", 1, func(p *Params) *rsHooks {
			return &rsHooks{prepare: func(j int, d *ReshareDealer) {
				if j == 1 {
					for k := range d.shares {
						shiftPoly(p, &d.shares[k], 1, 7, 1)
					}
				}
			}}
		}},
		{"sends no commitment", 3, func(p *Params) *rsHooks {
			return &rsHooks{tamperCommit: func(c *ReshareCommit) *ReshareCommit {
				if c.From == 3 {
					return nil
				}
				return c
			}}
		}},
		{"a non-dealer commits to another member's share", 2, func(p *Params) *rsHooks {
			return &rsHooks{share: func(j int, ks *KeyShare) *KeyShare {
				if j == 2 {
					return &KeyShare{Index: 2, N: ks.N, T: ks.T, Share: g.shares[0].Share}
				}
				return ks
			}}
		}},
		{"re-deals another member's share", 1, func(p *Params) *rsHooks {
			return &rsHooks{share: func(j int, ks *KeyShare) *KeyShare {
				if j == 1 {
					return &KeyShare{Index: 1, N: ks.N, T: ks.T, Share: g.shares[2].Share}
				}
				return ks
			}}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := reshareRun(t, g, 5, 2, []int{1, 3}, tc.h(g.p))
			f := res.wantFault(t, tc.bad, -1)
			t.Logf("%v", f)
		})
	}
}

// A new member that lies is named, not the dealer: a complaint about a deal
// that matches its dealer's commitment, a complaint with a deal the dealer
// did not sign, and a wrong decryption share of the joint test ciphertext.
func TestAttack_LyingRecipientIsNamedNotTheDealer(t *testing.T) {
	g := rsChain4(t)
	cases := []struct {
		name string
		liar int
		h    *rsHooks
	}{
		{"complains about a good deal", 3, &rsHooks{tamperCheck: func(c *ReshareCheck) {}}},
		{"complains with an unsigned deal", 2, &rsHooks{tamperCheck: func(c *ReshareCheck) {}}},
		{"wrong joint test share", 4, &rsHooks{tamperCheck: func(c *ReshareCheck) {
			if c.From == 4 {
				c.Final.Share.Value.Coeffs[0][1] ^= 1 << 55
			}
		}}},
	}
	// The complaining liars complain about dealer 1 with the deal dealer 1
	// sent them (caught on its way), or with that deal altered.
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := tc.h
			if i < 2 {
				var held *ReshareDeal
				h = &rsHooks{
					send: func(_ *Reshare, j int, deals []*ReshareDeal, _ DealSigner) {
						if j == 1 {
							held = deals[tc.liar]
						}
					},
					tamperCheck: func(c *ReshareCheck) {
						if c.From != tc.liar {
							return
						}
						d := held
						if i == 1 {
							d = &ReshareDeal{From: held.From, To: held.To, Share: mhe.ShamirSecretShare{Poly: *held.Share.Poly.CopyNew()}, Sig: held.Sig}
							shiftPoly(g.p, &d.Share, 0, 3, 5)
						}
						c.Complaints = append(c.Complaints, d)
					},
				}
			}
			res := reshareRun(t, g, 5, 2, []int{1, 3}, h)
			f := res.wantFault(t, -1, tc.liar)
			t.Logf("%v", f)
		})
	}
}

// A dealer that signs two different deals for one new member is named at
// receipt; a deal altered by anyone but its dealer is refused.
func TestAttack_EquivocatingReDealerIsNamed(t *testing.T) {
	g := rsChain4(t)
	next, _ := NewCommittee(5, 2)
	r, err := NewReshare(g.p, g.com, next, []int{0, 2}, g.keys.PK, []byte("equivocation"), nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := r.NewDealer(g.shares[2])
	if err != nil {
		t.Fatal(err)
	}
	deals, err := d.Deals(g.signers[2])
	if err != nil {
		t.Fatal(err)
	}
	rc, err := r.NewRecipient(1)
	if err != nil {
		t.Fatal(err)
	}
	bad := &ReshareDeal{From: 2, To: 1, Share: mhe.ShamirSecretShare{Poly: *deals[1].Share.Poly.CopyNew()}, Sig: deals[1].Sig}
	shiftPoly(g.p, &bad.Share, 0, 0, 1)
	if err := rc.Accept(bad, g.verify); err == nil {
		t.Fatal("a deal altered after signing was accepted")
	}
	if err := rc.Accept(deals[0], g.verify); err == nil {
		t.Fatal("a deal addressed to another member was accepted")
	}
	if err := rc.Accept(deals[1], g.verify); err != nil {
		t.Fatal(err)
	}
	if err := rc.Accept(deals[1], g.verify); err != nil {
		t.Fatalf("retransmission refused: %v", err)
	}
	msg, err := r.DealSigningBytes(2, 1, &bad.Share)
	if err != nil {
		t.Fatal(err)
	}
	bad.Sig, _ = g.signers[2](msg)
	var f *ReshareFault
	if err := rc.Accept(bad, g.verify); !errors.As(err, &f) || f.Dealer != 2 || f.Recipient != -1 {
		t.Fatalf("equivocating dealer: %v", err)
	}
	if _, err := rc.Ack(); err == nil {
		t.Fatal("acknowledged without dealer 0's deal")
	}
}

// Resharing messages from the network are decoded strictly: truncated,
// extended or mis-shaped bytes are errors, never panics.
func TestReshare_DecodersRejectHostileBytes(t *testing.T) {
	g := rsChain4(t)
	var deal *ReshareDeal
	res := reshareRun(t, g, 5, 2, []int{0, 1}, &rsHooks{
		send: func(_ *Reshare, j int, deals []*ReshareDeal, _ DealSigner) {
			if j == 1 {
				deal = deals[3]
			}
		},
		tamperCheck: func(c *ReshareCheck) {
			if c.From == 3 {
				c.Complaints = append(c.Complaints, deal)
			}
		},
	})
	res.wantFault(t, -1, 3)
	db, _ := deal.MarshalBinary()
	ab, _ := (&ReshareAck{From: 2}).MarshalBinary()
	cb, _ := res.commits[1].MarshalBinary()
	kb, _ := res.checks[3].MarshalBinary()
	decoders := map[string]struct {
		good   []byte
		decode func([]byte) error
	}{
		"deal":   {db, func(x []byte) error { _, err := g.p.DecodeReshareDeal(x); return err }},
		"ack":    {ab, func(x []byte) error { _, err := DecodeReshareAck(x); return err }},
		"commit": {cb, func(x []byte) error { _, err := g.p.DecodeReshareCommit(x); return err }},
		"check":  {kb, func(x []byte) error { _, err := g.p.DecodeReshareCheck(x); return err }},
	}
	for name, d := range decoders {
		if err := d.decode(d.good); err != nil {
			t.Fatalf("%s: valid encoding refused: %v", name, err)
		}
		for _, cut := range []int{0, 1, 7, 30, 35, len(d.good) / 2, len(d.good) - 1} {
			if cut < len(d.good) {
				if err := d.decode(d.good[:cut]); err == nil {
					t.Fatalf("%s: truncated to %d bytes accepted", name, cut)
				}
			}
		}
		if err := d.decode(append(append([]byte(nil), d.good...), 0)); err == nil {
			t.Fatalf("%s: trailing byte accepted", name)
		}
		for _, off := range []int{0, 8, 12, 36, 41, 45, 50} {
			if off >= len(d.good) {
				continue
			}
			bad := append([]byte(nil), d.good...)
			bad[off] ^= 0xff
			func() {
				defer func() {
					if r := recover(); r != nil {
						t.Fatalf("%s: byte %d flipped: panic %v", name, off, r)
					}
				}()
				_ = d.decode(bad)
			}()
		}
	}
}
