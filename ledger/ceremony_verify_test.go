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
	"github.com/tuneinsight/lattigo/v5/schemes/bgv"
)

// Round 1 is the slow part of a ceremony (the Galois-key shares); tests of
// the verified steps share one Round 1 per committee and replay everything
// after it with fresh party state.
type vBase struct {
	p       *Params
	com     *Committee
	seed    []byte
	parties []*Party
	r1      []*Round1
	deals   [][]*ShamirDeal // by dealer
	signers []DealSigner
	verify  DealVerifier
	bind    []byte
}

var vBases sync.Map // "n/t" -> *vBaseEntry

type vBaseEntry struct {
	once sync.Once
	b    *vBase
	err  error
}

func verifiedBase(t testing.TB, n, th int) *vBase {
	t.Helper()
	v, _ := vBases.LoadOrStore(fmt.Sprintf("%d/%d", n, th), &vBaseEntry{})
	e := v.(*vBaseEntry)
	e.once.Do(func() {
		p := MustParams(ZKB128)
		com, err := NewCommittee(n, th)
		if err != nil {
			e.err = err
			return
		}
		b := &vBase{p: p, com: com, seed: []byte(fmt.Sprintf("verified-%d-%d", n, th))}
		pubs := make([]ed25519.PublicKey, n)
		privs := make([]ed25519.PrivateKey, n)
		for i := range pubs {
			pubs[i], privs[i], _ = ed25519.GenerateKey(rand.Reader)
			b.bind = append(b.bind, pubs[i]...)
		}
		for i := 0; i < n; i++ {
			var sign DealSigner
			sign, b.verify = Ed25519DealAuth(privs[i], pubs)
			b.signers = append(b.signers, sign)
			pt, err := NewParty(p, com, i, b.seed)
			if err != nil {
				e.err = err
				return
			}
			m, d, err := pt.Round1()
			if err != nil {
				e.err = err
				return
			}
			b.parties = append(b.parties, pt)
			b.r1 = append(b.r1, roundTrip1(m))
			b.deals = append(b.deals, d)
		}
		e.b = b
	})
	if e.err != nil {
		t.Fatalf("committee %d-of-%d: %v", th, n, e.err)
	}
	return e.b
}

// vRun is one verified ceremony after Round 1, with hooks for misbehaviour.
type vRun struct {
	// corruptDeal may replace the deal dealer -> recipient before the dealer
	// signs it (a malicious dealer signs what it sends).
	corruptDeal func(dealer, recipient int, d *ShamirDeal) *ShamirDeal
	// tamperCheck may alter a party's check message after it is made.
	tamperCheck func(c *CeremonyCheck)
	// tamperReveal may alter (or drop, returning nil) a party's verdict.
	tamperReveal func(r *CeremonyReveal) *CeremonyReveal

	keys    *PublicKeys
	v       *CeremonyVerifier
	rep     *CheckReport
	shares  []*KeyShare
	errs    []error
	elapsed struct{ sign, check, eval, verdict time.Duration }
	bytes   struct{ deal, check, reveal int }
}

func cloneParty(pt *Party) *Party {
	c := *pt
	c.deals, c.round2, c.check, c.share = nil, false, nil, nil
	return &c
}

func addOne(p *Params, d *ShamirDeal, row, coeff int) *ShamirDeal {
	out := &ShamirDeal{From: d.From, To: d.To, Share: d.Share}
	out.Share.Poly = *d.Share.Poly.CopyNew()
	q := p.BGV.Q()[row]
	out.Share.Poly.Q.Coeffs[row][coeff] = (out.Share.Poly.Q.Coeffs[row][coeff] + 1) % q
	return out
}

func flipBitP(d *ShamirDeal, row, coeff int, bit uint) *ShamirDeal {
	out := &ShamirDeal{From: d.From, To: d.To, Share: d.Share}
	out.Share.Poly = *d.Share.Poly.CopyNew()
	out.Share.Poly.P.Coeffs[row][coeff] ^= 1 << bit
	return out
}

// run executes the verified steps, sending every message through its wire
// encoding, and returns each party's outcome.
func (b *vBase) run(t testing.TB, h *vRun) *vRun {
	t.Helper()
	if h == nil {
		h = &vRun{}
	}
	n := b.com.N
	parties := make([]*Party, n)
	for i := range parties {
		parties[i] = cloneParty(b.parties[i])
	}
	start := time.Now()
	inbox := make([][]*SignedDeal, n)
	for d := 0; d < n; d++ {
		deals := make([]*ShamirDeal, n)
		for j, x := range b.deals[d] {
			deals[j] = x
			if h.corruptDeal != nil {
				deals[j] = h.corruptDeal(d, x.To, x)
			}
		}
		signed, err := parties[d].SignDeals(deals, b.signers[d])
		if err != nil {
			t.Fatal(err)
		}
		for _, sd := range signed {
			raw, err := sd.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			h.bytes.deal += len(raw)
			got, err := b.p.DecodeSignedDeal(raw)
			if err != nil {
				t.Fatal(err)
			}
			inbox[sd.Deal.To] = append(inbox[sd.Deal.To], got)
		}
	}
	for i, pt := range parties {
		for _, sd := range inbox[i] {
			if err := pt.AcceptDeal(sd, b.verify); err != nil {
				t.Fatalf("party %d: %v", i, err)
			}
		}
	}
	h.elapsed.sign = time.Since(start)
	var r2 []*Round2
	for _, pt := range parties {
		m, err := pt.Round2(b.r1)
		if err != nil {
			t.Fatal(err)
		}
		r2 = append(r2, m)
	}
	keys, err := AggregatePublic(b.p, b.com, b.seed, b.r1, r2)
	if err != nil {
		t.Fatal(err)
	}
	h.keys = keys
	start = time.Now()
	if h.v, err = NewCeremonyVerifier(b.p, b.com, b.seed, b.bind, b.r1, r2, b.verify); err != nil {
		t.Fatal(err)
	}
	var checks []*CeremonyCheck
	for _, pt := range parties {
		c, err := pt.Check(h.v)
		if err != nil {
			t.Fatal(err)
		}
		if h.tamperCheck != nil {
			h.tamperCheck(c)
		}
		raw, err := c.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		h.bytes.check += len(raw)
		got, err := b.p.DecodeCeremonyCheck(raw)
		if err != nil {
			t.Fatal(err)
		}
		checks = append(checks, got)
	}
	h.elapsed.check = time.Since(start)
	start = time.Now()
	h.rep = h.v.Evaluate(checks)
	h.elapsed.eval = time.Since(start)
	start = time.Now()
	var reveals []*CeremonyReveal
	for _, pt := range parties {
		r, err := pt.Reveal(h.rep)
		if err != nil {
			t.Fatal(err)
		}
		if h.tamperReveal != nil {
			if r = h.tamperReveal(r); r == nil {
				continue
			}
		}
		raw, err := r.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		h.bytes.reveal += len(raw)
		got, err := b.p.DecodeCeremonyReveal(raw)
		if err != nil {
			t.Fatal(err)
		}
		reveals = append(reveals, got)
	}
	h.shares = make([]*KeyShare, n)
	h.errs = make([]error, n)
	for i, pt := range parties {
		h.shares[i], h.errs[i] = pt.VerifiedKeyShare(h.v, h.rep, reveals)
	}
	h.elapsed.verdict = time.Since(start)
	return h
}

// wantFault asserts that every party's ceremony failed with the same fault,
// blaming dealer (if dealer >= 0) or recipient, and kept no key share.
func (h *vRun) wantFault(t *testing.T, dealer, recipient int) *CeremonyFault {
	t.Helper()
	return wantFaults[ceremonyRoles](t, "party", "CeremonyFault", h.errs, h.shares, dealer, recipient)[0]
}

// wantFaults asserts that every run in errs failed with a fault of R's
// protocol (named want) blaming dealer (if dealer >= 0) or recipient, and
// that none kept a key share; it returns the faults. who names a
// participant in failures.
func wantFaults[R faultRoles](t *testing.T, who, want string, errs []error, shares []*KeyShare, dealer, recipient int) []*fault[R] {
	t.Helper()
	var r R
	out := make([]*fault[R], len(errs))
	for i, err := range errs {
		if shares[i] != nil {
			t.Fatalf("%s %d kept a key share from a failed run", who, i)
		}
		var f *fault[R]
		if !errors.As(err, &f) || !errors.Is(err, r.names().sentinel) {
			t.Fatalf("%s %d: error %v, want a %s", who, i, err, want)
		}
		if f.Dealer != dealer || f.Recipient != recipient {
			t.Fatalf("%s %d: fault %v names dealer %d / recipient %d, want %d / %d", who, i, f, f.Dealer, f.Recipient, dealer, recipient)
		}
		out[i] = f
	}
	return out
}

var verifiedCommittees = [][2]int{{4, 2}, {4, 3}, {7, 3}}

func skipSlow(t *testing.T, n int) {
	if testing.Short() && n > 4 {
		t.Skip("7-party ceremony in -short mode")
	}
}

// The attack: one flipped bit or one changed coefficient in one Shamir deal,
// from dealer 2 to recipient 0, left the unverified ceremony "successful"
// with most decryption subsets broken. The verified ceremony fails and
// names dealer 2.
func TestCeremony_CorruptDealNamesTheDealer(t *testing.T) {
	for _, nt := range verifiedCommittees {
		for _, tc := range []struct {
			name    string
			corrupt func(p *Params, d *ShamirDeal) *ShamirDeal
		}{
			{"coefficient+1", func(p *Params, d *ShamirDeal) *ShamirDeal { return addOne(p, d, 0, 0) }},
			{"bitflip-unused-prime", func(p *Params, d *ShamirDeal) *ShamirDeal { return flipBitP(d, 1, 4242, 17) }},
		} {
			t.Run(fmt.Sprintf("%dof%d/%s", nt[1], nt[0], tc.name), func(t *testing.T) {
				skipSlow(t, nt[0])
				b := verifiedBase(t, nt[0], nt[1])
				h := b.run(t, &vRun{corruptDeal: func(dealer, to int, d *ShamirDeal) *ShamirDeal {
					if dealer == 2 && to == 0 {
						return tc.corrupt(b.p, d)
					}
					return d
				}})
				if len(h.rep.Failed) != 1 || h.rep.Failed[0] != 2 {
					t.Fatalf("failed dealers %v, want [2]", h.rep.Failed)
				}
				f := h.wantFault(t, 2, -1)
				if len(f.More) != 0 {
					t.Fatalf("honest parties blamed too: %v", f)
				}
				t.Logf("%v", f)
			})
		}
	}
}

// The same at the extreme thresholds: t = 1 (every deal is the secret
// itself) and t = N (no redundancy among the deals: only the anchor to the
// public-key share catches it).
func TestCeremony_CorruptDealNamesTheDealerAtThresholdsOneAndN(t *testing.T) {
	if testing.Short() {
		t.Skip("two more committees in -short mode")
	}
	for _, th := range []int{1, 4} {
		t.Run(fmt.Sprintf("%dof4", th), func(t *testing.T) {
			b := verifiedBase(t, 4, th)
			if h := b.run(t, nil); h.errs[0] != nil {
				t.Fatalf("honest ceremony: %v", h.errs[0])
			}
			h := b.run(t, &vRun{corruptDeal: func(dealer, to int, d *ShamirDeal) *ShamirDeal {
				if dealer == 2 && to == 0 {
					return addOne(b.p, d, 0, 0)
				}
				return d
			}})
			h.wantFault(t, 2, -1)
		})
	}
}

// A dealer whose deals are mutually consistent but are not shares of the
// secret behind its public-key share (every deal shifted by the same
// amount) is caught by the anchor, even when t = N leaves no redundancy.
func TestCeremony_ConsistentButWrongDealsNameTheDealer(t *testing.T) {
	b := verifiedBase(t, 4, 3)
	h := b.run(t, &vRun{corruptDeal: func(dealer, _ int, d *ShamirDeal) *ShamirDeal {
		if dealer == 1 {
			return addOne(b.p, d, 1, 7) // the same shift to every deal: a constant polynomial
		}
		return d
	}})
	h.wantFault(t, 1, -1)
}

// A recipient that publishes a wrong check value for an honest dealer makes
// that dealer's values fail; the reveal shows the recipient lied.
func TestCeremony_LyingRecipientIsNamedNotTheDealer(t *testing.T) {
	for _, nt := range [][2]int{{4, 2}, {4, 3}} {
		t.Run(fmt.Sprintf("%dof%d", nt[1], nt[0]), func(t *testing.T) {
			b := verifiedBase(t, nt[0], nt[1])
			h := b.run(t, &vRun{tamperCheck: func(c *CeremonyCheck) {
				if c.From == 1 {
					c.R[2].Q.Coeffs[0][0] = (c.R[2].Q.Coeffs[0][0] + 12345) % b.p.BGV.Q()[0]
				}
			}})
			if len(h.rep.Failed) != 1 || h.rep.Failed[0] != 2 {
				t.Fatalf("failed dealers %v, want [2]", h.rep.Failed)
			}
			f := h.wantFault(t, -1, 1)
			if len(f.More) != 0 {
				t.Fatalf("more blamed: %v", f)
			}
		})
	}
}

// A recipient that accuses an honest dealer by revealing a deal it claims
// to have received (not the one the dealer signed) is named.
func TestCeremony_ForgedRevealNamesTheRecipient(t *testing.T) {
	b := verifiedBase(t, 4, 2)
	h := b.run(t, &vRun{
		tamperCheck: func(c *CeremonyCheck) {
			if c.From == 3 {
				c.R[0].Q.Coeffs[0][9] ^= 1 << 50
			}
		},
		tamperReveal: func(r *CeremonyReveal) *CeremonyReveal {
			if r.From == 3 {
				for i, sd := range r.Deals {
					if sd.Deal.From == 0 {
						r.Deals[i] = &SignedDeal{Deal: addOne(b.p, sd.Deal, 0, 9), Sig: sd.Sig}
					}
				}
			}
			return r
		},
	})
	h.wantFault(t, -1, 3)
}

// A party that reports a failure the agreed check values do not show (a
// false accusation with no evidence) is named; so is one that withholds
// its reveal when a dealer failed.
func TestCeremony_FalseAccusationAndWithheldRevealNameTheRecipient(t *testing.T) {
	b := verifiedBase(t, 4, 2)
	h := b.run(t, &vRun{tamperReveal: func(r *CeremonyReveal) *CeremonyReveal {
		if r.From == 3 {
			r.Failed, r.Accept = []int{1}, false
		}
		return r
	}})
	h.wantFault(t, -1, 3)

	h = b.run(t, &vRun{
		corruptDeal: func(dealer, to int, d *ShamirDeal) *ShamirDeal {
			if dealer == 2 && to == 0 {
				return addOne(b.p, d, 0, 0)
			}
			return d
		},
		tamperReveal: func(r *CeremonyReveal) *CeremonyReveal {
			if r.From == 1 {
				r.Deals = nil
			}
			return r
		},
	})
	f := h.wantFault(t, 2, -1)
	if len(f.More) != 1 || f.More[0].Recipient != 1 {
		t.Fatalf("withholding recipient not named as well: %v", f)
	}
}

// A party whose deals all check out but whose decryption share of the joint
// test ciphertext is wrong is named (t < N: the subsets without it decrypt).
func TestCeremony_WrongJointTestShareNamesTheParty(t *testing.T) {
	b := verifiedBase(t, 4, 2)
	h := b.run(t, &vRun{tamperCheck: func(c *CeremonyCheck) {
		if c.From == 3 {
			c.Final.Share.Value.Coeffs[0][1] ^= 1 << 55
		}
	}})
	if len(h.rep.Failed) != 0 || h.rep.FinalOK {
		t.Fatalf("report: failed %v, joint test ok %v", h.rep.Failed, h.rep.FinalOK)
	}
	h.wantFault(t, -1, 3)
}

// A deal altered in transit (or by anyone but its dealer) is refused at
// receipt; two different deals both signed by the dealer prove
// equivocation.
func TestCeremony_UnsignedOrEquivocatedDealsAreRefused(t *testing.T) {
	b := verifiedBase(t, 4, 2)
	pt := cloneParty(b.parties[0])
	signed, err := cloneParty(b.parties[2]).SignDeals(b.deals[2], b.signers[2])
	if err != nil {
		t.Fatal(err)
	}
	tampered := &SignedDeal{Deal: addOne(b.p, signed[0].Deal, 0, 0), Sig: signed[0].Sig}
	if err := pt.AcceptDeal(tampered, b.verify); err == nil {
		t.Fatal("a deal with a broken signature was accepted")
	}
	if err := pt.AcceptDeal(signed[0], b.verify); err != nil {
		t.Fatal(err)
	}
	if err := pt.AcceptDeal(signed[0], b.verify); err != nil {
		t.Fatalf("retransmission refused: %v", err)
	}
	other, err := cloneParty(b.parties[2]).SignDeals([]*ShamirDeal{addOne(b.p, b.deals[2][0], 0, 0)}, b.signers[2])
	if err != nil {
		t.Fatal(err)
	}
	var f *CeremonyFault
	if err := pt.AcceptDeal(other[0], b.verify); !errors.As(err, &f) || f.Dealer != 2 {
		t.Fatalf("equivocating dealer: %v", err)
	}
	if _, err := pt.Round2(b.r1); err == nil {
		t.Fatal("round 2 ran before every deal was accepted")
	}
}

// The honest verified ceremony passes, and every t-subset of the verified
// key shares decrypts a fresh encryption under the published key.
func TestCeremony_HonestVerifiedCeremonyEverySubsetDecrypts(t *testing.T) {
	for _, nt := range verifiedCommittees {
		t.Run(fmt.Sprintf("%dof%d", nt[1], nt[0]), func(t *testing.T) {
			skipSlow(t, nt[0])
			b := verifiedBase(t, nt[0], nt[1])
			h := b.run(t, nil)
			for i, err := range h.errs {
				if err != nil || h.shares[i] == nil {
					t.Fatalf("party %d: %v", i, err)
				}
			}
			if !h.rep.Accept() {
				t.Fatalf("report: %+v", h.rep)
			}
			dec, err := NewDecryptor(b.p, b.com)
			if err != nil {
				t.Fatal(err)
			}
			vals := randomVals(b.p, byte(nt[0]+nt[1]))
			pt := bgv.NewPlaintext(b.p.BGV, LevelDecrypt)
			if err := newEncoder(b.p).Encode(vals, pt); err != nil {
				t.Fatal(err)
			}
			ct, err := rlwe.NewEncryptor(b.p.BGV, h.keys.PK).EncryptNew(pt)
			if err != nil {
				t.Fatal(err)
			}
			shares := make([]*DecShare, nt[0])
			for i := range shares {
				if shares[i], err = dec.Share(h.shares[i], ct); err != nil {
					t.Fatal(err)
				}
			}
			Subsets(nt[0], nt[1], func(idx []int) {
				var sub []*DecShare
				for _, i := range idx {
					sub = append(sub, shares[i])
				}
				got, err := dec.Combine(ct, sub)
				if err != nil {
					t.Fatalf("subset %v: %v", idx, err)
				}
				for s := range vals {
					if got[s] != vals[s] {
						t.Fatalf("subset %v: slot %d = %d, want %d", idx, s, got[s], vals[s])
					}
				}
			})
			n := nt[0]
			t.Logf("N=%d t=%d: extra bytes per party: deals signed +%d B (sig framing), check %d B, verdict %d B; "+
				"sign+accept %v, verifier+checks %v, evaluate %v, verdict %v (whole committee, one process)",
				n, nt[1], (h.bytes.deal/(n*n))-917588, h.bytes.check/n, h.bytes.reveal/n,
				h.elapsed.sign.Round(time.Millisecond), h.elapsed.check.Round(time.Millisecond),
				h.elapsed.eval.Round(time.Millisecond), h.elapsed.verdict.Round(time.Millisecond))
		})
	}
}

// Ceremony messages from the network are decoded strictly: truncated,
// extended or mis-shaped bytes are errors, never panics or large
// allocations from a lying header.
func TestCeremony_DecodersRejectHostileBytes(t *testing.T) {
	b := verifiedBase(t, 4, 2)
	h := b.run(t, nil)
	signed, err := cloneParty(b.parties[1]).SignDeals(b.deals[1][:1], b.signers[1])
	if err != nil {
		t.Fatal(err)
	}
	sd, _ := signed[0].MarshalBinary()
	chk, _ := h.rep.checks[0].MarshalBinary()
	rev, err := (&CeremonyReveal{From: 2, Failed: []int{1}, Deals: signed}).MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	decoders := map[string]struct {
		good   []byte
		decode func([]byte) error
	}{
		"deal":    {sd, func(x []byte) error { _, err := b.p.DecodeSignedDeal(x); return err }},
		"check":   {chk, func(x []byte) error { _, err := b.p.DecodeCeremonyCheck(x); return err }},
		"verdict": {rev, func(x []byte) error { _, err := b.p.DecodeCeremonyReveal(x); return err }},
	}
	for name, d := range decoders {
		if err := d.decode(d.good); err != nil {
			t.Fatalf("%s: valid encoding refused: %v", name, err)
		}
		for _, cut := range []int{0, 1, 7, 40, 60, len(d.good) / 2, len(d.good) - 1} {
			if err := d.decode(d.good[:cut]); err == nil {
				t.Fatalf("%s: truncated to %d bytes accepted", name, cut)
			}
		}
		if err := d.decode(append(append([]byte(nil), d.good...), 0)); err == nil {
			t.Fatalf("%s: trailing byte accepted", name)
		}
		for _, off := range []int{8, 12, 36, 41, 45, 50} {
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
