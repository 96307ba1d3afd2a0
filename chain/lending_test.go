package chain

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"
	"time"

	"github.com/zkbank/zkbank/ledger"
)

// Lending on a running chain (ledger/lending.go): score checks, loans,
// repayments and consents through real sealed uploads, acks, piece
// attestations, carried precommits and threshold decryption, with every
// validator's book compared at the end.

// lendOp builds a user's next lending operation as its wallet would (the
// next nonce, built on its last operation, at the book's height): honest
// (Dealer.Build) if vals is nil, else with the dealt values vals.
func (n *chainNet) lendOp(from string, s ledger.TransferSpec, vals []uint64) *Upload {
	n.t.Helper()
	f := n.users[from]
	f.nonce++
	s.From, s.Key, s.Height, s.Prev, s.Nonce = f.id, f.key, n.vals[0].app.book.Height(), n.prev(f), f.nonce
	var sub *ledger.Submission
	var err error
	if vals != nil {
		sub, err = n.b.BuildValues(s, vals)
	} else {
		sub, err = n.b.Build(s)
	}
	if err != nil {
		n.t.Fatal(err)
	}
	f.last = n.vals[0].open.NewUpload(sub.Sealed, sub.Envelopes, time.Now())
	return f.last
}

// checkOp is from's score check "at least min" to lender, built on score.
func (n *chainNet) checkOp(from, lender string, min, score uint64, vals []uint64) *Upload {
	n.t.Helper()
	return n.lendOp(from, ledger.TransferSpec{Kind: ledger.OpCheck, To: n.users[lender].id, Min: min, Balance: score}, vals)
}

// fundOp is lender's loan of amount (from its available avail) to borrower
// answering application app.
func (n *chainNet) fundOp(lender, borrower string, amount, avail uint64, app [32]byte, due ...uint64) *Upload {
	n.t.Helper()
	return n.lendOp(lender, ledger.TransferSpec{Kind: ledger.OpFund, To: n.users[borrower].id, Amount: amount, Balance: avail, Loan: app, Due: due}, nil)
}

// repayOp is borrower's repayment of amount (from avail) on loan to lender.
func (n *chainNet) repayOp(borrower, lender string, amount, avail uint64, loan [32]byte) *Upload {
	n.t.Helper()
	return n.lendOp(borrower, ledger.TransferSpec{Kind: ledger.OpRepay, To: n.users[lender].id, Amount: amount, Balance: avail, Loan: loan}, nil)
}

// consentOf is owner's signed consent to lender.
func (n *chainNet) consentOf(owner, lender string, scope ledger.ConsentScope, expiry, nonce uint64) ledger.Consent {
	c := ledger.Consent{Chain: testChain, Owner: n.users[owner].id, Lender: n.users[lender].id, Scope: scope, Expiry: expiry, Nonce: nonce}
	c.Sign(n.users[owner].key)
	return c
}

// offerConsents puts consents in every validator's pool.
func (n *chainNet) offerConsents(cs ...ledger.Consent) {
	for _, v := range n.vals {
		v.mem.consents = append(v.mem.consents, cs...)
	}
}

// account is name's account in validator i's book.
func (n *chainNet) account(i int, name string) *ledger.Account {
	n.t.Helper()
	a, ok := n.vals[i].app.book.Account(n.users[name].id)
	if !ok {
		n.t.Fatalf("validator %d: no account for %s", i, name)
	}
	return a
}

// score threshold-decrypts name's score in validator i's book at its
// height, masked to its lane as for its owner.
func (n *chainNet) score(i int, name string) uint64 {
	n.t.Helper()
	v := n.vals[i]
	book := v.app.book
	acct := n.account(i, name)
	sc, err := book.ScoreAt(v.cfg.Engine, acct.Shard, book.Height(), []int{acct.Lane})
	if err != nil {
		n.t.Fatal(err)
	}
	ct, err := v.cfg.Engine.BalanceFromRecomposed(sc, acct.Lane)
	if err != nil {
		n.t.Fatal(err)
	}
	var shares []*ledger.DecShare
	for k := 0; k < n.c.com.T; k++ {
		s, err := n.c.dec.Share(n.c.shares[k], ct)
		if err != nil {
			n.t.Fatal(err)
		}
		shares = append(shares, s)
	}
	vals, err := n.c.dec.Combine(ct, shares)
	if err != nil {
		n.t.Fatal(err)
	}
	anchor := n.c.p.Slot(0, 0, acct.Lane)
	for s, x := range vals {
		if s != anchor && x != 0 {
			n.t.Fatalf("validator %d: %s's score ciphertext holds %d at slot %d", i, name, x, s)
		}
	}
	return vals[anchor]
}

func hasApplication(a *ledger.Account, id [32]byte, lender ledger.AccountID) bool {
	for _, ap := range a.Applications {
		if ap.ID == id && ap.Lender == lender {
			return true
		}
	}
	return false
}

// A score check at or above the minimum is accepted, one below it (forged
// bits, as no honest wallet builds it) rejected, beside each other in one
// block: neither moves money, both consume their nonce, and only the
// accepted one becomes its sender's last operation and an application to
// the lender. Every book is identical.
func TestChain_ScoreCheckAcceptedAndRejectedWithoutMovingMoney(t *testing.T) {
	t.Parallel()
	n := newChainNet(t) // alice 100, bob 0, carol 50
	n.step(0)
	sp := n.vals[0].app.book.ScoreParams()
	aliceS, carolS := sp.Score(100, 0, 0), sp.Score(50, 0, 0)
	ok := n.checkOp("alice", "bob", sp.PublicPart(0), aliceS, nil)
	if _, err := n.b.Build(ledger.TransferSpec{Kind: ledger.OpCheck, From: n.users["carol"].id, Key: n.users["carol"].key, To: n.users["bob"].id, Min: carolS + 1, Balance: carolS, Nonce: 9}); !errors.Is(err, ledger.ErrBelowMinimum) {
		t.Fatalf("an honest wallet builds a check below the minimum: %v", err)
	}
	bad := n.checkOp("carol", "bob", carolS+1, carolS+1, ledger.TransferValues(0, 0)) // claims S = Min
	n.submitAll([]*Upload{ok, bad})
	n.settle()
	for i := range n.vals {
		if r, _ := n.verdict(i, ok); r != ledger.Accepted {
			t.Fatalf("validator %d: check at the minimum: %v", i, r)
		}
		if r, _ := n.verdict(i, bad); r != ledger.RejectBalanceMismatch {
			t.Fatalf("validator %d: check below the minimum: %v", i, r)
		}
		alice, carol := n.account(i, "alice"), n.account(i, "carol")
		if alice.Nonce != ok.Envs[0].Nonce || carol.Nonce != bad.Envs[0].Nonce {
			t.Fatalf("validator %d: nonces %d, %d not consumed", i, alice.Nonce, carol.Nonce)
		}
		if alice.LastOp != idOf(ok) || carol.LastOp != ([32]byte{}) {
			t.Fatalf("validator %d: last operations", i)
		}
		if !hasApplication(alice, idOf(ok), n.users["bob"].id) || len(carol.Applications) != 0 {
			t.Fatalf("validator %d: applications %+v, %+v", i, alice.Applications, carol.Applications)
		}
		if s := n.score(i, "alice"); s != aliceS {
			t.Fatalf("validator %d: alice's score %d, want %d", i, s, aliceS)
		}
	}
	n.assertHolds("alice", 100, 0)
	n.assertHolds("carol", 50, 0)
	n.assertHolds("bob", 0, 0)
	n.assertBooksIdentical()
	n.assertNobodyNamed()
}

// A byzantine holder of piece 0 writes a lower minimum into its piece of a
// borrower's check (the borrower dealt bits of S - that lower minimum): were
// its piece used, the check would pass. Its honest co-holders of piece 0
// attest the real minimum, so the piece is decided on theirs, the holder is
// named, and the check is rejected; the honest check beside it passes.
func TestAttack_ByzantineHolderCannotLowerTheMinimum(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	byz := n.c.sh.Holders(0)[0]
	n.step(0)
	sp := n.vals[0].app.book.ScoreParams()
	carolS := sp.Score(50, 0, 0)
	min := carolS + 51
	bad := n.checkOp("carol", "bob", min, min, ledger.TransferValues(0, 0)) // bits of S - (min - 51) = 0
	honest := n.checkOp("alice", "bob", sp.PublicPart(0), sp.Score(100, 0, 0), nil)
	n.submitAll([]*Upload{bad, honest})
	n.step(1) // acks
	carol := n.account(0, "carol")
	shifted := 0
	n.vals[byz].app.faults.ShiftMin = func(shard uint32, piece, lane int, m uint64) uint64 {
		if shard == carol.Shard && lane == carol.Lane && piece == 0 {
			shifted++
			return m - 51
		}
		return m
	}
	if b, _ := DecodeBlock(n.step(2)); len(b.Subs) != 2 { // orders both checks
		t.Fatalf("block orders %d uploads, want 2", len(b.Subs))
	}
	if shifted == 0 {
		t.Fatal("the byzantine holder wrote no minimum")
	}
	co := n.c.sh.Holders(0)[1]
	honestExt, _ := DecodeExt(n.last.Sigs[co].Extension)
	badExt, _ := DecodeExt(n.last.Sigs[byz].Extension)
	if h, b := attested(honestExt, 0), attested(badExt, 0); h == nil || b == nil || *h == *b {
		t.Fatal("the byzantine holder's piece 0 does not differ from an honest holder's")
	}
	n.step(3) // decides the pieces
	for i := range n.vals {
		if v := lastView(n, i); len(v.Faulty) != 1 || v.Faulty[0] != byz {
			t.Fatalf("validator %d named %v at height %d, want [%d]", i, v.Faulty, v.Height, byz)
		}
	}
	n.vals[byz].app.faults.ShiftMin = nil
	n.settle()
	for i := range n.vals {
		if r, _ := n.verdict(i, bad); r != ledger.RejectBalanceMismatch {
			t.Fatalf("validator %d: the check below the minimum: %v", i, r)
		}
		if r, _ := n.verdict(i, honest); r != ledger.Accepted {
			t.Fatalf("validator %d: the honest check: %v", i, r)
		}
		if len(n.account(i, "carol").Applications) != 0 {
			t.Fatalf("validator %d: carol got an application", i)
		}
	}
	n.assertBalances(map[string]uint64{"alice": 100, "bob": 0, "carol": 50})
	n.assertBooksIdentical()
}

// Consents are recorded in blocks: a grant becomes an application and lets
// its lender read the score; a revocation withdraws it. A proposal carrying
// a consent that is replayed, badly signed, for another chain, preset
// revoked, expired, to an unknown lender or of an unknown scope is refused
// by every validator; an honest proposer leaves such consents out.
func TestChain_ConsentsRecordedAndBadOnesMakeTheBlockInvalid(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	bob, alice := n.users["bob"].id, n.users["alice"].id
	grant := n.consentOf("bob", "alice", ledger.ScopeScore, 1000, 1)
	n.offerConsents(grant)
	if b, _ := DecodeBlock(n.step(1)); len(b.Consents) != 1 || b.Consents[0].ID() != grant.ID() {
		t.Fatalf("block records %d consents", len(b.Consents))
	}
	for i, v := range n.vals {
		a := n.account(i, "bob")
		if a.ConsentNonce != 1 || len(a.Consents) != 1 || !hasApplication(a, grant.ID(), alice) {
			t.Fatalf("validator %d: consent not recorded: %+v", i, a)
		}
		if _, err := v.app.book.ScoreConsent(bob, alice, 1); err != nil {
			t.Fatalf("validator %d: %v", i, err)
		}
		if _, err := v.app.book.ScoreConsent(bob, n.users["carol"].id, 1); !errors.Is(err, ledger.ErrConsentForeign) {
			t.Fatalf("validator %d: foreign lender: %v", i, err)
		}
	}

	byAlice := n.consentOf("bob", "carol", ledger.ScopeScore, 1000, 2)
	byAlice.Sign(n.users["alice"].key)
	foreign := ledger.Consent{Chain: "another-chain", Owner: bob, Lender: alice, Scope: ledger.ScopeScore, Expiry: 1000, Nonce: 2}
	foreign.Sign(n.users["bob"].key)
	revoked := n.consentOf("bob", "carol", ledger.ScopeScore, 1000, 2)
	revoked.Revoked = true
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	unknown := ledger.Consent{Chain: testChain, Owner: bob, Lender: ledger.AccountIDOf(stranger.Public().(ed25519.PublicKey)), Scope: ledger.ScopeScore, Expiry: 1000, Nonce: 2}
	unknown.Sign(n.users["bob"].key)
	good := n.consentOf("bob", "carol", ledger.ScopeScore, 1000, 2)
	bad := map[string][]ledger.Consent{
		"a replayed consent":              {grant},
		"a lower nonce":                   {n.consentOf("bob", "carol", ledger.ScopeScore, 1000, 1)},
		"a consent signed by another key": {byAlice},
		"a consent for another chain":     {foreign},
		"a consent preset revoked":        {revoked},
		"an expired consent":              {n.consentOf("bob", "carol", ledger.ScopeScore, n.vals[0].app.book.Height(), 2)},
		"a consent to an unknown lender":  {unknown},
		"an unknown scope":                {n.consentOf("bob", "carol", 3, 1000, 2)},
		"the same consent twice":          {good, good},
	}
	for what, cs := range bad {
		value := n.tamperedProposal(2, func(b *Block) { b.Consents = append(b.Consents, cs...) })
		n.assertRefused(n.height+1, value, what)
	}

	// An honest proposer leaves the bad ones out and records the revocation.
	revoke := n.consentOf("bob", "alice", ledger.ScopeRevoke, 0, 2)
	n.offerConsents(grant, byAlice, foreign, revoke)
	b, _ := DecodeBlock(n.step(2))
	if len(b.Consents) != 1 || b.Consents[0].ID() != revoke.ID() {
		t.Fatalf("the proposal carries %d consents", len(b.Consents))
	}
	for i, v := range n.vals {
		if _, err := v.app.book.ScoreConsent(bob, alice, 1); !errors.Is(err, ledger.ErrConsentRevoked) {
			t.Fatalf("validator %d: after the revocation: %v", i, err)
		}
		if a := n.account(i, "bob"); a.ConsentNonce != 2 {
			t.Fatalf("validator %d: consent nonce %d", i, a.ConsentNonce)
		}
		v.mem.consents = nil
	}
	n.assertBooksIdentical()
	n.assertNobodyNamed()
}

// A loan on a recorded consent, an on-time repayment and a missed
// installment, with a validator restarting while the repayment is in the
// pipeline: money, the loan's public state, the defaults and the score are
// the same in every book, and exactly the formula.
func TestChain_LoanFundRepayDefaultAcrossARestart(t *testing.T) {
	t.Parallel()
	n := newChainNet(t) // alice lends, carol borrows
	n.step(0)
	grant := n.consentOf("carol", "alice", ledger.ScopeScore, 10000, 1)
	n.offerConsents(grant)
	n.step(1)
	h := n.height
	due := []uint64{h + 14, h + 16}
	fund := n.fundOp("alice", "carol", 40, 100, grant.ID(), due...)
	n.submitAll([]*Upload{fund})
	if r := n.runUntil([]*Upload{fund}, 8)[0]; r != ledger.Accepted {
		t.Fatalf("loan: %v", r)
	}
	for i := range n.vals {
		c := n.account(i, "carol")
		if len(c.Loans) != 1 || c.Loans[0].ID != idOf(fund) || c.Loans[0].Lender != n.users["alice"].id || len(c.Loans[0].Due) != 2 {
			t.Fatalf("validator %d: loans %+v", i, c.Loans)
		}
	}
	n.assertHolds("alice", 60, 0)
	n.assertHolds("carol", 50, 40)

	rep := n.repayOp("carol", "alice", 10, 50, idOf(fund))
	n.submitAll([]*Upload{rep})
	n.step(int(n.height+1) % 4) // acks
	n.step(int(n.height+1) % 4) // orders
	n.restart(3)
	if r := n.runUntil([]*Upload{rep}, 8)[0]; r != ledger.Accepted {
		t.Fatalf("repayment: %v", r)
	}
	for i := range n.vals {
		if c := n.account(i, "carol"); len(c.Loans) != 1 || c.Loans[0].Paid != 1 || c.Defaults != 0 {
			t.Fatalf("validator %d: the repayment did not count as on time: %+v", i, c.Loans)
		}
	}
	for n.vals[0].app.book.Height() <= due[1] {
		n.step(int(n.height+1) % 4)
	}
	sp := n.vals[0].app.book.ScoreParams()
	for i := range n.vals {
		c := n.account(i, "carol")
		if len(c.Loans) != 0 || c.Defaults != 1 {
			t.Fatalf("validator %d: loans %+v, %d defaults", i, c.Loans, c.Defaults)
		}
		if s, want := n.score(i, "carol"), sp.Score(40, 10, 1); s != want {
			t.Fatalf("validator %d: carol's score %d, want %d", i, s, want)
		}
	}
	n.assertHolds("alice", 60, 10)
	n.assertHolds("carol", 40, 40)
	n.assertBooksIdentical()
	n.assertNobodyNamed()
}

// A lender holding a borrower's signed consent funds a loan on it before
// the consent is on chain, and the consent is recorded by the very next
// block. Every validator plans the loan's block before recording that
// consent, so the loan is refused; a validator restarting right after the
// consent's block re-plans the loan's block on its persisted book, which
// already holds the consent. It must reach the same verdict and the same
// book, or it would split from the others.
func TestAttack_ConsentRecordedAfterItsLoanCannotSplitARestartedValidator(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	grant := n.consentOf("carol", "alice", ledger.ScopeScore, 10000, 1)
	fund := n.fundOp("alice", "carol", 40, 100, grant.ID(), n.height+30)
	n.submitAll([]*Upload{fund})
	n.step(1) // acks the loan
	if b, _ := DecodeBlock(n.step(2)); len(b.Subs) != 1 {
		t.Fatalf("the loan's block orders %d uploads", len(b.Subs))
	}
	n.offerConsents(grant)
	if b, _ := DecodeBlock(n.step(3)); len(b.Consents) != 1 {
		t.Fatalf("the next block records %d consents", len(b.Consents))
	}
	n.restart(3)
	if r := n.runUntil([]*Upload{fund}, 6)[0]; r != ledger.RejectLoan {
		t.Fatalf("a loan ordered before its application was recorded: %v", r)
	}
	n.settle()
	n.assertBooksIdentical()
	n.assertNobodyNamed()
	n.assertHolds("alice", 100, 0)
	n.assertHolds("carol", 50, 0)

	// From then on the consent answers a loan.
	again := n.fundOp("alice", "carol", 40, 100, grant.ID(), n.height+30)
	n.submitAll([]*Upload{again})
	if r := n.runUntil([]*Upload{again}, 8)[0]; r != ledger.Accepted {
		t.Fatalf("a loan on the recorded consent: %v", r)
	}
	n.settle()
	n.assertHolds("carol", 50, 40)
	n.assertBooksIdentical()
	n.assertNobodyNamed()
}

// A score check in one block and a free account opening in the next: a
// validator restarted after the opening re-evaluates the check's block on a
// book that already holds the new account (in the check's shard). The
// check's score carries only its own lanes' public parts (Book.ScoreAt), so
// the restarted validator's digest is the others': it decides the same,
// names nobody, and keeps finalizing.
func TestAttack_CheckThenOpeningCannotSplitARestartedValidator(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	sp := n.vals[0].app.book.ScoreParams()
	chk := n.checkOp("alice", "bob", sp.PublicPart(0), sp.Score(100, 0, 0), nil)
	n.submit(chk)
	n.step(1) // acks
	if b, _ := DecodeBlock(n.step(2)); len(b.Subs) != 1 {
		t.Fatalf("the check's block orders %d uploads", len(b.Subs))
	}
	o := newOpen(t, n, true)
	for _, v := range n.vals {
		v.mem.opens[string(o.SignPub)] = o
	}
	if b, _ := DecodeBlock(n.step(3)); len(b.Opens) != 1 {
		t.Fatalf("the next block opens %d accounts", len(b.Opens))
	}
	n.restart(3)
	for i := 0; i < 4; i++ {
		n.step(i % len(n.vals))
	}
	for i := range n.vals {
		if r, ok := n.verdict(i, chk); !ok || r != ledger.Accepted {
			t.Fatalf("validator %d: the check: %v (decided %v)", i, r, ok)
		}
	}
	for h, v := range n.vals[3].obs.views {
		if len(v.Faulty) != 0 {
			t.Fatalf("the restarted validator named %v faulty at %d", v.Faulty, h)
		}
	}
	n.assertBooksIdentical()
	n.assertNobodyNamed()
}

// A genesis whose score base overflows the sum is refused, rather than
// halting the chain at the first check of an account in default.
func TestScoreParams_RefusesAnOverflowingBase(t *testing.T) {
	p := ledger.DefaultScoreParams
	p.Base = ^uint64(0) - 100000
	if err := p.Validate(); !errors.Is(err, ledger.ErrScoreParams) {
		t.Fatalf("base near 2^64 accepted: %v", err)
	}
	p.Base = ledger.MaxAmount + 1
	p.Penalty, p.Grace = 0, 0
	if err := p.Validate(); !errors.Is(err, ledger.ErrScoreParams) {
		t.Fatalf("base above 2^32 accepted: %v", err)
	}
}
