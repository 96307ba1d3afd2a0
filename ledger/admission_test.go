package ledger

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
)

func TestAttack_ReplayedNonce(t *testing.T) {
	w := genesis3(t)
	sub, _ := w.b.Build(w.spec("alice", "bob", 10, 100))
	if r := reason(t, w.block(t, sub), sub); r != Accepted {
		t.Fatal(r)
	}
	if r := reason(t, w.block(t, sub), sub); r != RejectReplay {
		t.Fatalf("replay: %v", r)
	}
	w.expectBalances(t, map[string]uint64{"alice": 90, "bob": 60})
}

// A payment built on the same balance as an earlier, accepted payment of the
// account names an operation that is no longer the last: rejected in
// plaintext, nothing moves. Lying about Prev does not help: its claimed new
// balance no longer adds up.
func TestAttack_PaymentBuiltOnAnOutdatedAvailableBalance(t *testing.T) {
	w := genesis3(t)
	first, _ := w.b.Build(w.spec("alice", "bob", 10, 100))
	second := w.spec("alice", "carol", 80, 100) // built against the same balance
	second.Nonce++
	s2, _ := w.b.Build(second)
	if r := reason(t, w.block(t, first), first); r != Accepted {
		t.Fatal(r)
	}
	if r := reason(t, w.block(t, s2), s2); r != RejectPredecessor {
		t.Fatalf("outdated: %v", r)
	}
	lie := w.spec("alice", "carol", 80, 100) // Prev is now the first payment
	s3, _ := w.b.Build(lie)
	if r := reason(t, w.block(t, s3), s3); r != RejectBalanceMismatch {
		t.Fatalf("outdated with a current Prev: %v", r)
	}
	w.expectBalances(t, map[string]uint64{"alice": 90, "bob": 60, "carol": 7})
}

// Two applies of the same pending read: the second names a height older
// than the first one's commit.
func TestAttack_StaleApply(t *testing.T) {
	w := genesis3(t)
	pay, _ := w.b.Build(w.spec("alice", "bob", 10, 100))
	if r := reason(t, w.block(t, pay), pay); r != Accepted {
		t.Fatal(r)
	}
	first := w.applySpec("bob", 10, 10)
	second := first
	second.Nonce++
	a1, _ := w.b.Build(first)
	a2, _ := w.b.Build(second)
	if r := reason(t, w.block(t, a1), a1); r != Accepted {
		t.Fatal(r)
	}
	if r := reason(t, w.block(t, a2), a2); r != RejectStaleHeight {
		t.Fatalf("second apply: %v", r)
	}
	if a, p := w.balances(t, "bob"); a != 60 || p != 0 {
		t.Fatalf("bob holds %d available, %d pending; want 60, 0", a, p)
	}
}

func TestCreditsSinceNamedHeightDoNotMakeADebitStale(t *testing.T) {
	w := genesis3(t)
	h0 := w.spec("carol", "alice", 6, 7) // carol built against height 0
	toCarol, _ := w.b.Build(w.spec("bob", "carol", 40, 50))
	if r := reason(t, w.block(t, toCarol), toCarol); r != Accepted {
		t.Fatal(r)
	}
	s, _ := w.b.Build(h0) // still valid: only a credit happened since height 0
	if r := reason(t, w.block(t, s), s); r != Accepted {
		t.Fatalf("credit made debit stale: %v", r)
	}
	w.expectBalances(t, map[string]uint64{"alice": 106, "bob": 10, "carol": 41})
}

func TestAttack_ApplyNamingAFutureHeight(t *testing.T) {
	w := genesis3(t)
	s := w.applySpec("alice", 0, 0)
	s.Height = 5
	sub, _ := w.b.Build(s)
	if r := reason(t, w.block(t, sub), sub); r != RejectFutureHeight {
		t.Fatalf("future: %v", r)
	}
}

func TestAttack_BadSignature(t *testing.T) {
	w := genesis3(t)
	sub, _ := w.b.Build(w.spec("alice", "bob", 10, 100))
	sub.Envelopes[0].Sig[0] ^= 1
	if r := reason(t, w.block(t, sub), sub); r != RejectBadSignature {
		t.Fatalf("bad sig: %v", r)
	}
	// Signed by someone else's key for alice's account.
	s := w.spec("alice", "bob", 10, 100)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	s.Key = other
	sub2, _ := w.b.Build(s)
	if r := reason(t, w.block(t, sub2), sub2); r != RejectBadSignature {
		t.Fatalf("foreign key: %v", r)
	}
	// Swapping the ciphertext under a valid envelope breaks the binding.
	a, _ := w.b.Build(w.spec("alice", "bob", 1, 100))
	b, _ := w.b.Build(w.spec("alice", "bob", 99, 100))
	a.Ciphertext = b.Ciphertext
	if r := reason(t, w.block(t, a), a); r != RejectMalformed {
		t.Fatalf("swapped ciphertext: %v", r)
	}
	w.expectBalances(t, map[string]uint64{"alice": 100, "bob": 50})
}

func TestAttack_UnknownAccount(t *testing.T) {
	w := genesis3(t)
	s := w.spec("alice", "bob", 10, 100)
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	s.To = AccountIDOf(pub)
	sub, _ := w.b.Build(s)
	if r := reason(t, w.block(t, sub), sub); r != RejectUnknownAccount {
		t.Fatalf("unknown receiver: %v", r)
	}
	w.expectBalances(t, map[string]uint64{"alice": 100, "bob": 50})
}

// An apply claiming pending funds an account does not have is rejected.
func TestAttack_ApplyOfNothingPending(t *testing.T) {
	w := genesis3(t)
	sub, _ := w.b.Build(w.applySpec("alice", 10, 10))
	if r := reason(t, w.block(t, sub), sub); r != RejectBalanceMismatch {
		t.Fatalf("apply of nothing: %v", r)
	}
	if a, p := w.balances(t, "alice"); a != 100 || p != 0 {
		t.Fatalf("alice holds %d available, %d pending", a, p)
	}
}

func TestAttack_TwoDebitsOfOneAccountInOneBlock(t *testing.T) {
	w := genesis3(t)
	s1 := w.spec("alice", "bob", 60, 100)
	s2 := w.spec("alice", "carol", 60, 100)
	s2.Nonce++
	a, _ := w.b.Build(s1)
	b, _ := w.b.Build(s2)
	res := w.block(t, a, b)
	if reason(t, res, a) != Accepted || reason(t, res, b) != RejectLaneBusy {
		t.Fatalf("got %v, %v", reason(t, res, a), reason(t, res, b))
	}
	w.expectBalances(t, map[string]uint64{"alice": 40, "bob": 110, "carol": 7})
}

func TestMalformedUploadBytes(t *testing.T) {
	w := genesis3(t)
	p := w.nw.p
	good, _ := w.b.Build(w.spec("alice", "bob", 1, 100))
	cases := map[string][]byte{
		"empty":     nil,
		"garbage":   []byte("definitely not a ciphertext"),
		"truncated": good.Ciphertext[:len(good.Ciphertext)/2],
	}
	// Wrong level: a ciphertext that already lost a prime.
	ct, _ := p.DecodeUpload(good.Ciphertext)
	low := ct.CopyNew()
	low.Resize(1, LevelChecked)
	cases["wrong level"], _ = low.MarshalBinary()
	// Unreduced coefficient.
	bad := ct.CopyNew()
	bad.Value[0].Coeffs[0][0] = p.BGV.Q()[0]
	cases["unreduced coefficient"], _ = bad.MarshalBinary()
	// Other parameters (N = 2^13).
	small, err := NewParams(ParamSet{Name: "small", LogN: 13, LogQ: []int{54, 54, 54, 54, 54}, LogP: []int{55}, PlaintextModulus: 1099512938497 % (1 << 62), SecurityLogQPMax: 438, SmudgingLogLambda: 40})
	if err == nil {
		sb := newBuilder(small, NewOwnerKeys(small).PK, "test")
		if enc, err := sb.EncryptSlots(make([]uint64, small.Slots)); err == nil {
			cases["other parameters"] = enc
		}
	}
	for name, b := range cases {
		_, err := p.DecodeUpload(b)
		var re *RejectError
		if !errors.As(err, &re) || re.Reason != RejectMalformed {
			t.Errorf("%s: err = %v, want RejectMalformed", name, err)
		}
	}
	var s Submission
	for _, b := range [][]byte{nil, {1}, {1, 0, 0, 0, 1, 0, 0, 0, 200}, []byte("xxxxxxxxxxxxxxxxxxxxxxxx")} {
		if err := s.UnmarshalBinary(b); err == nil {
			t.Errorf("submission %x decoded", b)
		}
	}
}

func TestBadDecryptionShares(t *testing.T) {
	w := genesis3(t)
	nw := w.nw
	sub, _ := w.b.Build(w.spec("alice", "bob", 1, 100))
	st, _ := w.book.State(0, 0)
	ev, err := nw.eng.Evaluate(st, []Item{{CT: nw.upload(t, sub), Lanes: []int{w.acct["alice"].lane}}}, []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	var bs, es []*DecShare
	for i := 0; i < nw.com.N; i++ {
		b, e, err := nw.dec.ShareChecks(nw.shares[i], &ev.Checks)
		if err != nil {
			t.Fatal(err)
		}
		bs, es = append(bs, b), append(es, e)
	}
	// A share claiming to be from a non-validator.
	alien := *bs[0]
	alien.Validator = 9
	if _, err := nw.dec.Combine(ev.Checks.Bits, []*DecShare{&alien, bs[1], bs[2]}); !errors.Is(err, ErrShare) {
		t.Errorf("non-validator share: %v", err)
	}
	// Too few shares.
	if _, err := nw.dec.Combine(ev.Checks.Bits, bs[:2]); !errors.Is(err, ErrShare) {
		t.Errorf("two shares: %v", err)
	}
	// Malformed bytes.
	raw, _ := bs[0].MarshalBinary()
	for _, b := range [][]byte{raw[:len(raw)/3], raw[:8], nil, append(append([]byte(nil), raw...), 0)} {
		if _, err := nw.p.DecodeDecShare(b); !errors.Is(err, ErrShare) {
			t.Errorf("bad share bytes (%d) decoded: %v", len(b), err)
		}
	}
	if got, err := nw.p.DecodeDecShare(raw); err != nil || got.Validator != bs[0].Validator {
		t.Errorf("round trip: %v", err)
	}
	// Wrong level (a share of some other ciphertext shape).
	wrong := *bs[1]
	wrong.Share = nw.dec.cks.AllocateShare(LevelState)
	if _, err := nw.dec.Combine(ev.Checks.Bits, []*DecShare{bs[0], &wrong, bs[2]}); !errors.Is(err, ErrShare) {
		t.Errorf("wrong-level share: %v", err)
	}
	// A validator sending a wrong (but well-formed) share is caught when more
	// than t shares are available: the two t-subsets disagree.
	evil := *bs[3]
	evil.Share = nw.dec.cks.AllocateShare(LevelDecrypt)
	nw.p.BGV.RingQ().AtLevel(LevelDecrypt).Add(bs[3].Share.Value, bs[0].Share.Value, evil.Share.Value)
	if _, err := nw.dec.Combine(ev.Checks.Bits, []*DecShare{bs[0], bs[1], bs[2], &evil}); !errors.Is(err, ErrShare) {
		t.Errorf("bad fourth share not detected: %v", err)
	}
	// With exactly t shares one of which is bad, the decryption is garbage in
	// slots that must be zero: it is refused, never read as verdicts (the
	// caller fails the batch closed; see docs/PROTOCOL.md on passive security).
	if _, err := nw.dec.DecryptChecks(ev, []*DecShare{bs[1], bs[2], &evil}, es[1:]); !errors.Is(err, ErrInconsistentDecryption) {
		t.Errorf("inconsistent decryption not detected: %v", err)
	}
}

func TestTransfersNamingDifferentHeightsShareOneBatch(t *testing.T) {
	w := genesis3(t)
	old := w.spec("carol", "alice", 7, 7) // carol built against height 0
	first, _ := w.b.Build(w.spec("bob", "carol", 20, 50))
	if r := reason(t, w.block(t, first), first); r != Accepted {
		t.Fatal(r)
	}
	// Height 1 now: alice pays at height 1, carol's transfer still names 0
	// (only a credit reached carol since), bob overdraws at height 1.
	a, _ := w.b.Build(w.spec("alice", "bob", 30, 100))
	c, _ := w.b.Build(old)
	bs := w.spec("bob", "alice", 31, 30)
	vals := make([]uint64, w.nw.p.Slots)
	w.nw.p.EncodeLanes(vals, bs.Lane, 31, (30-31)&MaxAmount)
	bad := w.forged(t, vals, bs)
	var pend []Pending
	for i, s := range []*testSub{a, c, bad} {
		ct := w.nw.upload(t, s)
		cr := w.credits(t, ct, s)[0]
		pend = append(pend, Pending{Env: &s.Envelopes[0], CT: ct, Sub: i, Credits: cr.Credits})
	}
	if batches, _ := w.book.Plan(pend); len(batches) != 1 {
		t.Fatalf("%d batches for one shard", len(batches))
	}
	res := w.block(t, a, c, bad)
	if reason(t, res, a) != Accepted || reason(t, res, c) != Accepted || reason(t, res, bad) != RejectBalanceMismatch {
		t.Fatalf("outcomes: %v %v %v", reason(t, res, a), reason(t, res, c), reason(t, res, bad))
	}
	w.expectBalances(t, map[string]uint64{"alice": 77, "bob": 60, "carol": 20})
}
