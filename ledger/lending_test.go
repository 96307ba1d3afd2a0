package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"reflect"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
)

// Lending, attacked (lending.go): who controls each input of each check —
// a borrower its dealt values and its signed envelope, a lender its funding
// envelope, an owner its consents — and what each may make it be. Every
// block runs through Book.Plan, EvaluateBatch, the threshold decryption of
// t validators' shares and Commit, with real sealed uploads (payWorld); a
// score check's pieces are encrypted the way their holders do (the holders
// of piece 0 write the public minimum in row 0, LanePiece.AtLeast).
//
// Heights: in a payWorld the block after book height x is planned at x and
// committed at x + 1. A consent recorded at book height x belongs to that
// block (on a chain, a block's consents are recorded on the book its
// operations are planned on, one height behind): a loan may answer it from
// the next block on, planned at x + 1 (lendSkip).

// lendBatch is one evaluated batch of a block: what its checks decrypted to.
type lendBatch struct {
	bt       *Batch
	ev       *Evaluation
	index    int
	bits, eq []uint64 // the threshold decryption every validator (and a lender) sees
}

// lendRun plans, evaluates, threshold-decrypts (t validators) and commits
// one block like world.run, and also returns every batch's decrypted check
// slots.
func (w *payWorld) lendRun(t testing.TB, pend []Pending) (map[[32]byte]Reason, []lendBatch) {
	t.Helper()
	h := w.book.Height() + 1
	batches, early := w.book.Plan(pend)
	var evals []*Evaluation
	var verdicts []map[int]Reason
	var out []lendBatch
	for i, bt := range batches {
		ev, err := w.book.EvaluateBatch(w.nw.eng, bt, []byte("block"), i)
		if err != nil {
			t.Fatal(err)
		}
		bs, es := w.nw.checkShares(t, ev)
		bits, err := w.nw.dec.Combine(ev.Checks.Bits, bs)
		if err != nil {
			t.Fatal(err)
		}
		eq, err := w.nw.dec.Combine(ev.Checks.Eq, es)
		if err != nil {
			t.Fatal(err)
		}
		vd, err := w.nw.p.Verdicts(ev.Lanes, ev.Subs, bits, eq)
		if err != nil {
			t.Fatal(err)
		}
		evals, verdicts = append(evals, ev), append(verdicts, vd)
		out = append(out, lendBatch{bt: bt, ev: ev, index: i, bits: bits, eq: eq})
	}
	var outs []Outcome
	var err error
	if len(batches) == 0 {
		err = w.book.Skip(h)
	} else {
		outs, err = w.book.Commit(w.nw.eng, h, batches, evals, verdicts)
	}
	if err != nil {
		t.Fatal(err)
	}
	res := map[[32]byte]Reason{}
	for id, r := range early {
		res[id] = r
	}
	for _, o := range outs {
		res[o.ID] = o.Reason
	}
	return res, out
}

// checkPending is the pending operations of score-check uploads as one
// group of their shard, encrypted the way their holders do (chain.myPieces):
// row 0 is the public minimum, written by the holders of piece 0 only; the
// dealer's row 0 never reaches a ciphertext.
func (w *payWorld) checkPending(t testing.TB, subs ...*Submission) []Pending {
	t.Helper()
	p := w.nw.p
	h := w.book.Height() + 1
	pcs := make([][]*Piece, len(subs))
	for i, s := range subs {
		pcs[i] = w.pieces(t, s)
	}
	var cts []*rlwe.Ciphertext
	for k := 0; k < w.sh.Pieces(); k++ {
		var lps []LanePiece
		for i, s := range subs {
			env := &s.Envelopes[0]
			from, _ := w.book.Account(env.From)
			lps = append(lps, LanePiece{Lane: from.Lane, Piece: pcs[i][k], AtLeast: true, Min: env.Min, First: k == 0})
		}
		ct, err := p.EncryptPieceBatch(w.nw.keys.PK, lps, PieceBatchSeed("test", h, 1, k, lps))
		if err != nil {
			t.Fatal(err)
		}
		cts = append(cts, ct)
	}
	sum, err := p.SumPieces(cts)
	if err != nil {
		t.Fatal(err)
	}
	var pend []Pending
	for _, s := range subs {
		pend = append(pend, Pending{Env: &s.Envelopes[0], CT: sum, Sub: 1})
	}
	return pend
}

// lendBlock runs one block of uploads: payments, loans and repayments as one
// group, score checks as another (as a chain lays them out).
func (w *payWorld) lendBlock(t testing.TB, subs ...*Submission) (map[[32]byte]Reason, []lendBatch) {
	t.Helper()
	var pays []paySub
	var checks []*Submission
	for _, s := range subs {
		if s.Envelopes[0].IsCheck() {
			checks = append(checks, s)
		} else {
			pays = append(pays, paySub{sub: s})
		}
	}
	var pend []Pending
	if len(pays) > 0 {
		pend = w.pending(t, pays...)
	}
	if len(checks) > 0 {
		pend = append(pend, w.checkPending(t, checks...)...)
	}
	return w.lendRun(t, pend)
}

// lendOne runs a block of one upload and returns its outcome.
func (w *payWorld) lendOne(t testing.TB, s *Submission) Reason {
	t.Helper()
	res, _ := w.lendBlock(t, s)
	r, ok := res[s.Envelopes[0].ID()]
	if !ok {
		t.Fatal("no outcome")
	}
	return r
}

// lendSkip commits n empty blocks.
func (w *payWorld) lendSkip(t testing.TB, n int) {
	t.Helper()
	for i := 0; i < n; i++ {
		w.run(t, nil)
	}
}

func lendPolicy(lender string) [32]byte { return sha256.Sum256([]byte("policy of " + lender)) }

// checkSpec is name's score check "my score is at least min" addressed to
// lender, built on score (what its wallet read at the book's height).
func (w *payWorld) checkSpec(name, lender string, min, score uint64) TransferSpec {
	s := w.spec(name, lender, 0, score)
	s.Kind, s.Min, s.Policy = OpCheck, min, lendPolicy(lender)
	return s
}

// fundSpec is lender's loan of amount to borrower (from its available
// balance avail), answering the application app, installments due at due.
func (w *payWorld) fundSpec(lender, borrower string, amount, avail uint64, app [32]byte, due ...uint64) TransferSpec {
	s := w.spec(lender, borrower, amount, avail)
	s.Kind, s.Loan, s.Due = OpFund, app, due
	return s
}

// repaySpec is borrower's repayment of amount (from avail) on loan to lender.
func (w *payWorld) repaySpec(borrower, lender string, amount, avail uint64, loan [32]byte) TransferSpec {
	s := w.spec(borrower, lender, amount, avail)
	s.Kind, s.Loan = OpRepay, loan
	return s
}

func (w *payWorld) buildValues(t testing.TB, s TransferSpec, vals []uint64) *Submission {
	t.Helper()
	sub, err := w.dealer.BuildValues(s, vals)
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

// lendConsent is owner's signed consent to lender.
func (w *payWorld) lendConsent(owner, lender string, scope ConsentScope, expiry, nonce uint64) *Consent {
	c := &Consent{Chain: "test", Owner: w.acct[owner].id, Lender: w.acct[lender].id, Scope: scope, Expiry: expiry, Nonce: nonce}
	c.Sign(w.acct[owner].key)
	return c
}

func (w *payWorld) lendAcct(t testing.TB, name string) *Account {
	t.Helper()
	a, ok := w.book.Account(w.acct[name].id)
	if !ok {
		t.Fatalf("no account %s", name)
	}
	return a
}

// lendLane threshold-decrypts lane's anchor of a recomposed plane (or
// score), masked to that lane as for its owner, and fails if any other
// slot of what is decrypted is not zero: no other lane leaks into it.
func (w *payWorld) lendLane(t testing.TB, rec *rlwe.Ciphertext, lane int) uint64 {
	t.Helper()
	ct, err := w.nw.eng.BalanceFromRecomposed(rec, lane)
	if err != nil {
		t.Fatal(err)
	}
	var shares []*DecShare
	for v := 0; v < w.nw.com.T; v++ {
		sh, err := w.nw.dec.Share(w.nw.shares[v], ct)
		if err != nil {
			t.Fatal(err)
		}
		shares = append(shares, sh)
	}
	vals, err := w.nw.dec.Combine(ct, shares)
	if err != nil {
		t.Fatal(err)
	}
	anchor := w.nw.p.Slot(0, 0, lane)
	for s, v := range vals {
		if s != anchor && v != 0 {
			t.Fatalf("lane %d's masked value holds %d at slot %d (lane %d)", lane, v, s, s%w.nw.p.Lanes)
		}
	}
	return vals[anchor]
}

// lendScore is name's score now (Book.ScoreAt), as the owner reads it.
func (w *payWorld) lendScore(t testing.TB, name string) uint64 {
	t.Helper()
	a := w.lendAcct(t, name)
	sc, err := w.book.ScoreAt(w.nw.eng, a.Shard, w.book.Height(), []int{a.Lane})
	if err != nil {
		t.Fatal(err)
	}
	return w.lendLane(t, sc, a.Lane)
}

// lendRepaid is name's repaid plane (R) now.
func (w *payWorld) lendRepaid(t testing.TB, name string) uint64 {
	t.Helper()
	a := w.lendAcct(t, name)
	st, ok := w.book.State(RepaidKey(a.Shard), w.book.Height())
	if !ok {
		t.Fatal("no repaid plane")
	}
	rec, err := w.nw.eng.Recompose(st)
	if err != nil {
		t.Fatal(err)
	}
	return w.lendLane(t, rec, a.Lane)
}

// lendExpect checks name's score, repaid plane and defaults against the
// formula on what the test knows: available balance avail, repaid R, D.
func (w *payWorld) lendExpect(t testing.TB, name string, avail, repaid uint64, d uint32) uint64 {
	t.Helper()
	if got := w.lendAcct(t, name).Defaults; got != d {
		t.Fatalf("%s has %d defaults, want %d", name, got, d)
	}
	if got := w.lendRepaid(t, name); got != repaid {
		t.Fatalf("%s's repaid plane holds %d, want %d", name, got, repaid)
	}
	want := w.book.ScoreParams().Score(avail, repaid, d)
	if got := w.lendScore(t, name); got != want {
		t.Fatalf("%s's score decrypts to %d, want %d", name, got, want)
	}
	return want
}

// The score every owner decrypts is exactly the formula on its own inputs,
// whatever its neighbours in the shard hold: several accounts of one shard
// with different available balances, repaid sums and defaults (below and
// beyond the grace), under non-default weights. A credit waiting in the
// pending balance does not count.
func TestLending_ScoreIsExactlyTheFormula(t *testing.T) {
	names := []string{"ann", "ben", "cat", "dan", "eve"}
	w := newPayWorld(t, map[string]uint64{"ann": 100, "ben": 0, "cat": 5000, "dan": 77, "eve": 1_000_000}, names...)
	sp := ScoreParams{Base: 1000, Avail: 3, Repaid: 5, Penalty: 7000, Grace: 3}
	if err := w.book.SetScoreParams(sp); err != nil {
		t.Fatal(err)
	}
	pay := w.build(t, w.spec("cat", "eve", 30, 5000))
	if r := w.block(t, paySub{sub: pay})[pay.Envelopes[0].ID()]; r != Accepted {
		t.Fatalf("payment: %v", r)
	}
	avail := map[string]uint64{"ann": 100, "ben": 0, "cat": 4970, "dan": 77, "eve": 1_000_000}
	repaid := map[string]uint64{"ann": 0, "ben": 40, "cat": 1234, "dan": 9, "eve": 100_000}
	defaults := map[string]uint32{"ann": 0, "ben": 1, "cat": 3, "dan": 5, "eve": 2}
	lanes := map[int]uint64{}
	for _, n := range names {
		a := w.lendAcct(t, n)
		if a.Shard != 0 {
			t.Fatalf("%s in shard %d", n, a.Shard)
		}
		lanes[a.Lane] = repaid[n]
		a.Defaults = defaults[n]
	}
	st, err := w.nw.eng.GenesisState(w.nw.keys.PK, lanes)
	if err != nil {
		t.Fatal(err)
	}
	w.book.history[RepaidKey(0)][w.book.Height()] = st // an encrypted repaid plane, as repayments would have left it
	formula := func(a, r uint64, d uint32) uint64 {
		left := int64(sp.Grace) - int64(d)
		if left < 0 {
			left = 0
		}
		return sp.Base + sp.Avail*a + sp.Repaid*r + sp.Penalty*uint64(left)
	}
	for _, n := range names {
		want := formula(avail[n], repaid[n], defaults[n])
		if got := sp.Score(avail[n], repaid[n], defaults[n]); got != want {
			t.Fatalf("%s: ScoreParams.Score = %d, formula %d", n, got, want)
		}
		if got := w.lendScore(t, n); got != want {
			t.Errorf("%s: score decrypts to %d, want %d", n, got, want)
		}
	}
	// Spot values: ann 1000 + 300 + 0 + 21000; dan is past the grace: no
	// public part beyond the base.
	if formula(100, 0, 0) != 22300 || formula(77, 9, 5) != 1276 {
		t.Fatal("formula arithmetic")
	}
}

// An application, a loan with a public schedule, an on-time repayment, a
// missed installment and a late repayment, each moving the owner's score
// exactly per the formula: a repayment on time raises S by Repaid x amount
// (and lowers it by Avail x amount, the money leaving the available
// balance); each missed installment lowers it by Penalty once; a late
// repayment moves the money but counts as missed, not repaid.
func TestLending_RepaidLoanRaisesScoreDefaultLowersIt(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"lender": 1000, "bob": 200}, "lender", "bob")
	sp := w.book.ScoreParams()
	s0 := w.lendExpect(t, "bob", 200, 0, 0)

	// The application: a check to the lender at its minimum (the public part).
	check := w.build(t, w.checkSpec("bob", "lender", sp.PublicPart(0), s0))
	if r := w.lendOne(t, check); r != Accepted {
		t.Fatalf("check: %v", r)
	}
	bob := w.lendAcct(t, "bob")
	if ap := bob.application(check.Envelopes[0].ID()); ap == nil || ap.Lender != w.acct["lender"].id {
		t.Fatalf("no application recorded: %+v", bob.Applications)
	}
	// The loan: 100, installments due at d1, d2 = d1+2 and d3 = d1+4.
	d1 := w.book.Height() + RepayLead + 1
	d2, d3 := d1+2, d1+4
	fund := w.build(t, w.fundSpec("lender", "bob", 100, 1000, check.Envelopes[0].ID(), d1, d2, d3))
	if r := w.lendOne(t, fund); r != Accepted {
		t.Fatalf("fund: %v", r)
	}
	loanID := fund.Envelopes[0].ID()
	bob = w.lendAcct(t, "bob")
	if len(bob.Loans) != 1 || bob.Loans[0].ID != loanID || bob.Loans[0].Lender != w.acct["lender"].id || !reflect.DeepEqual(bob.Loans[0].Due, []uint64{d1, d2, d3}) {
		t.Fatalf("loan not opened: %+v", bob.Loans)
	}
	if bob.application(check.Envelopes[0].ID()) != nil {
		t.Fatal("the application was not used up")
	}
	w.expectSplit(t, map[string][2]uint64{"lender": {900, 0}, "bob": {200, 100}})
	if s := w.lendExpect(t, "bob", 200, 0, 0); s != s0 {
		t.Fatalf("a loan waiting in the pending balance changed the score: %d -> %d", s0, s)
	}

	// On time (the next height, due d1): R += 30, S += Repaid*30 - Avail*30.
	rep := w.build(t, w.repaySpec("bob", "lender", 30, 200, loanID))
	if r := w.lendOne(t, rep); r != Accepted {
		t.Fatalf("repayment: %v", r)
	}
	s1 := w.lendExpect(t, "bob", 170, 30, 0)
	if int64(s1)-int64(s0) != int64(sp.Repaid*30)-int64(sp.Avail*30) {
		t.Fatalf("on-time repayment moved S by %d", int64(s1)-int64(s0))
	}
	if l := w.lendAcct(t, "bob").Loans[0]; l.Paid != 1 || l.Missed != 0 {
		t.Fatalf("loan after an on-time repayment: %+v", l)
	}

	// Installment 2 (due d2) passes unpaid: one default at height d2+1, once.
	for w.book.Height() < d2 {
		w.lendSkip(t, 1)
		if d := w.lendAcct(t, "bob").Defaults; d != 0 {
			t.Fatalf("default at height %d, before installment 2 was due", w.book.Height())
		}
	}
	w.lendSkip(t, 1)
	s2 := w.lendExpect(t, "bob", 170, 30, 1)
	if s1-s2 != sp.Penalty {
		t.Fatalf("a missed installment lowered S by %d, want %d", s1-s2, sp.Penalty)
	}
	w.lendSkip(t, 1) // height d3: installment 3 is due now, not missed yet
	w.lendExpect(t, "bob", 170, 30, 1)

	// Late (committed at d3+1, due d3): the money moves, R does not, one more default.
	late := w.build(t, w.repaySpec("bob", "lender", 20, 170, loanID))
	if r := w.lendOne(t, late); r != Accepted {
		t.Fatalf("late repayment: %v", r)
	}
	w.expectSplit(t, map[string][2]uint64{"lender": {900, 50}, "bob": {150, 100}})
	s3 := w.lendExpect(t, "bob", 150, 30, 2)
	if int64(s2)-int64(s3) != int64(sp.Penalty+sp.Avail*20) {
		t.Fatalf("late repayment moved S by %d", int64(s3)-int64(s2))
	}
	if ls := w.lendAcct(t, "bob").Loans; len(ls) != 0 {
		t.Fatalf("a loan with no installment left stays open: %+v", ls)
	}
	w.lendSkip(t, 3)
	w.lendExpect(t, "bob", 150, 30, 2) // each installment counted once
	if again := w.build(t, w.repaySpec("bob", "lender", 1, 150, loanID)); w.lendOne(t, again) != RejectLoan {
		t.Fatal("a repayment of a settled loan was not refused")
	}
	w.expectSplit(t, map[string][2]uint64{"lender": {900, 50}, "bob": {150, 100}})
}

// Nobody can saddle an account with a loan (and its defaults): a loan
// naming no application, a made-up one, an application to another lender,
// another account's application, or one already used is refused in
// plaintext (`loan`), before anything is evaluated, and moves nothing.
func TestAttack_LoanWithoutApplicationIsRefused(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"lender": 1000, "other": 1000, "bob": 200, "victim": 50}, "lender", "other", "bob", "victim")
	sp := w.book.ScoreParams()
	var made [32]byte
	rand.Read(made[:])
	for name, app := range map[string][32]byte{"no application": {}, "a made-up application": made} {
		f := w.build(t, w.fundSpec("lender", "victim", 100, 1000, app, 50))
		if r := w.lendOne(t, f); r != RejectLoan {
			t.Fatalf("%s: %v", name, r)
		}
	}
	// bob applies to other; victim applies to other too.
	bobCheck := w.build(t, w.checkSpec("bob", "other", sp.PublicPart(0), sp.Score(200, 0, 0)))
	vicCheck := w.build(t, w.checkSpec("victim", "other", sp.PublicPart(0), sp.Score(50, 0, 0)))
	if res, _ := w.lendBlock(t, bobCheck, vicCheck); res[bobCheck.Envelopes[0].ID()] != Accepted || res[vicCheck.Envelopes[0].ID()] != Accepted {
		t.Fatalf("checks: %v", res)
	}
	bobApp, vicApp := bobCheck.Envelopes[0].ID(), vicCheck.Envelopes[0].ID()
	cases := []struct {
		name string
		spec TransferSpec
	}{
		{"bob's application to another lender", w.fundSpec("lender", "bob", 100, 1000, bobApp, 50)},
		{"another borrower's application", w.fundSpec("other", "bob", 100, 1000, vicApp, 50)},
		{"the victim's application, by the wrong lender", w.fundSpec("lender", "victim", 100, 1000, vicApp, 50)},
	}
	for _, c := range cases {
		if r := w.lendOne(t, w.build(t, c.spec)); r != RejectLoan {
			t.Fatalf("%s: %v", c.name, r)
		}
	}
	// The genuine loan, then the same application again.
	if r := w.lendOne(t, w.build(t, w.fundSpec("other", "bob", 100, 1000, bobApp, 50))); r != Accepted {
		t.Fatalf("genuine loan: %v", r)
	}
	if r := w.lendOne(t, w.build(t, w.fundSpec("other", "bob", 100, 900, bobApp, 60))); r != RejectLoan {
		t.Fatalf("a used application: %v", r)
	}
	w.lendSkip(t, 60)
	w.expectSplit(t, map[string][2]uint64{"lender": {1000, 0}, "other": {900, 0}, "bob": {200, 100}, "victim": {50, 0}})
	if v := w.lendAcct(t, "victim"); len(v.Loans) != 0 || v.Defaults != 0 {
		t.Fatalf("victim: loans %+v, defaults %d", v.Loans, v.Defaults)
	}
	if b := w.lendAcct(t, "bob"); b.Defaults != 1 {
		t.Fatalf("bob missed his one installment: %d defaults", b.Defaults)
	}
	w.lendExpect(t, "victim", 50, 0, 0)
}

// A loan whose first installment falls due before the borrower could repay
// it (the loan is committed a height after it is planned, published two
// later, and a repayment then needs an ack and a block) would plant a
// default the borrower cannot avoid. It is refused up to RepayLead heights
// after the loan's; one due after that is repaid on time.
func TestAttack_LoanDueBeforeTheBorrowerCanRepayIsRefused(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"lender": 1000, "bob": 200}, "lender", "bob")
	sp := w.book.ScoreParams()
	check := w.build(t, w.checkSpec("bob", "lender", 0, sp.Score(200, 0, 0)))
	if r := w.lendOne(t, check); r != Accepted {
		t.Fatalf("check: %v", r)
	}
	app := check.Envelopes[0].ID()
	h := w.book.Height() // the loan is planned at h, committed at h+1
	for _, early := range []uint64{h + 1, h + 4, h + RepayLead} {
		if r := w.lendOne(t, w.build(t, w.fundSpec("lender", "bob", 10, 1000, app, early, early+5))); r != RejectLoan {
			t.Fatalf("first installment due at %d (planned at %d): %v", early, h, r)
		}
		h = w.book.Height()
	}
	fund := w.build(t, w.fundSpec("lender", "bob", 10, 1000, app, h+RepayLead+1))
	if r := w.lendOne(t, fund); r != Accepted {
		t.Fatalf("first installment due at %d (planned at %d): %v", h+RepayLead+1, h, r)
	}
	if r := w.lendOne(t, w.build(t, w.repaySpec("bob", "lender", 10, 200, fund.Envelopes[0].ID()))); r != Accepted {
		t.Fatalf("repayment in the next block: %v", r)
	}
	w.lendSkip(t, 3)
	w.lendExpect(t, "bob", 190, 10, 0)
}

// Repaying a loan one does not owe (another borrower's), to a lender that
// did not lend it, an unknown loan, or a loan already settled: `loan`, in
// plaintext; nothing moves and no score changes (R only grows from a
// repayment of one's own open loan, to its lender).
func TestAttack_RepayingALoanYouDoNotOwe(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"lender": 1000, "other": 500, "bob": 200, "mal": 300}, "lender", "other", "bob", "mal")
	sp := w.book.ScoreParams()
	check := w.build(t, w.checkSpec("bob", "lender", 0, sp.Score(200, 0, 0)))
	if r := w.lendOne(t, check); r != Accepted {
		t.Fatalf("check: %v", r)
	}
	h := w.book.Height()
	fund := w.build(t, w.fundSpec("lender", "bob", 100, 1000, check.Envelopes[0].ID(), h+20, h+21))
	if r := w.lendOne(t, fund); r != Accepted {
		t.Fatalf("fund: %v", r)
	}
	loan := fund.Envelopes[0].ID()
	var unknown [32]byte
	rand.Read(unknown[:])
	before := map[string]uint64{"bob": w.lendScore(t, "bob"), "mal": w.lendScore(t, "mal")}
	split := map[string][2]uint64{"lender": {900, 0}, "other": {500, 0}, "bob": {200, 100}, "mal": {300, 0}}
	refused := func(what string, s TransferSpec) {
		t.Helper()
		if r := w.lendOne(t, w.build(t, s)); r != RejectLoan {
			t.Fatalf("%s: %v", what, r)
		}
		w.expectSplit(t, split)
		for n, was := range before {
			if got := w.lendScore(t, n); got != was {
				t.Fatalf("%s: %s's score %d -> %d", what, n, was, got)
			}
		}
		if r := w.lendRepaid(t, "mal"); r != 0 {
			t.Fatalf("%s: mal's repaid plane holds %d", what, r)
		}
	}
	refused("another borrower's loan", w.repaySpec("mal", "lender", 50, 300, loan))
	refused("a lender that did not lend it", w.repaySpec("bob", "other", 50, 200, loan))
	refused("an unknown loan", w.repaySpec("bob", "lender", 50, 200, unknown))
	refused("another borrower's loan, to another lender", w.repaySpec("mal", "other", 50, 300, loan))

	// bob settles the loan on time, then tries once more.
	for i, avail := range []uint64{200, 150} {
		if r := w.lendOne(t, w.build(t, w.repaySpec("bob", "lender", 50, avail, loan))); r != Accepted {
			t.Fatalf("installment %d: %v", i+1, r)
		}
	}
	w.lendSkip(t, 1)
	if ls := w.lendAcct(t, "bob").Loans; len(ls) != 0 {
		t.Fatalf("settled loan still open: %+v", ls)
	}
	split["bob"], split["lender"] = [2]uint64{100, 100}, [2]uint64{900, 100}
	before["bob"] = w.lendExpect(t, "bob", 100, 100, 0)
	refused("a settled loan", w.repaySpec("bob", "lender", 50, 100, loan))
}

// A borrower below the lender's minimum deals whatever it likes: bits of
// S - Min wrapped mod 2^32, a "negative" remainder, non-boolean slots, bits
// of a larger number, a row 0 of its own lowering the minimum. Every one is
// rejected, nothing moves and no application is recorded (the nonce is
// consumed). What the decryption publishes is a function of the cheater's
// own values and score only: the honest applicant checked in the same batch
// decrypts to zeros everywhere, and nonzero slots lie in the cheater's lane.
func TestAttack_CheckBelowTheMinimumCannotPass(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"lender": 0, "mal": 300, "bob": 200}, "lender", "mal", "bob")
	sp := w.book.ScoreParams()
	p := w.nw.p
	tm := p.BGV.PlaintextModulus()
	S := w.lendExpect(t, "mal", 300, 0, 0)
	min := S + 1
	if _, err := w.dealer.Build(w.checkSpec("mal", "lender", min, S)); !errors.Is(err, ErrBelowMinimum) {
		t.Fatalf("an honest wallet builds a check below the minimum: %v", err)
	}
	rowOne := func(x uint64) []uint64 { return TransferValues(0, x) }
	negative := rowOne(0)
	negative[AmountBits] = tm - 1 // -1 in the remainder's slot 0: Min - 1 = S
	nonBool := rowOne(0)
	nonBool[AmountBits+3] = 3 * 8 // "3" in bit 3's slot
	lowered := rowOne(0)
	lowered[0] = tm - 1 // the dealer's own row 0: -1, as if the minimum were S
	cases := []struct {
		name string
		vals []uint64
		want Reason
	}{
		{"wrapped bits of S - Min mod 2^32", rowOne((S - min) & MaxAmount), RejectBalanceMismatch},
		{"a negative remainder", negative, RejectNewBalanceRange},
		{"a non-boolean slot", nonBool, RejectNewBalanceRange},
		{"bits of a larger number (S itself)", rowOne(S), RejectBalanceMismatch},
		{"bits of zero", rowOne(0), RejectBalanceMismatch},
		{"the dealer's row 0 lowering the minimum", lowered, RejectBalanceMismatch},
	}
	bobS := sp.Score(200, 0, 0)
	for _, c := range cases {
		mal := w.lendAcct(t, "mal")
		lastOp := mal.LastOp
		bad := w.buildValues(t, w.checkSpec("mal", "lender", min, S), c.vals)
		honest := w.build(t, w.checkSpec("bob", "lender", bobS-7, bobS))
		res, bts := w.lendBlock(t, bad, honest)
		if r := res[bad.Envelopes[0].ID()]; r != c.want {
			t.Fatalf("%s: %v, want %v", c.name, r, c.want)
		}
		if r := res[honest.Envelopes[0].ID()]; r != Accepted {
			t.Fatalf("%s: the honest check beside it: %v", c.name, r)
		}
		mal = w.lendAcct(t, "mal")
		if mal.Nonce != bad.Envelopes[0].Nonce || mal.LastOp != lastOp || len(mal.Applications) != 0 {
			t.Fatalf("%s: nonce %d, last op changed %v, applications %+v", c.name, mal.Nonce, mal.LastOp != lastOp, mal.Applications)
		}
		if len(bts) != 1 || !bts[0].bt.Check {
			t.Fatalf("%s: %d batches", c.name, len(bts))
		}
		b := bts[0]
		malLane, bobLane := mal.Lane, w.lendAcct(t, "bob").Lane
		for s, v := range b.bits {
			if v != 0 && s%p.Lanes != malLane {
				t.Fatalf("%s: booleanness slot %d (lane %d) = %d, outside the cheater's lane", c.name, s, s%p.Lanes, v)
			}
			if v != 0 && s/(p.Lanes*p.Bits) == 0 {
				t.Fatalf("%s: booleanness of row 0 (the validators' minimum) published %d", c.name, v)
			}
		}
		for s, v := range b.eq {
			if v != 0 && s != p.Slot(0, 0, malLane) {
				t.Fatalf("%s: equation slot %d = %d", c.name, s, v)
			}
		}
		if b.eq[p.Slot(0, 0, bobLane)] != 0 {
			t.Fatalf("%s: the honest applicant's equation is not zero", c.name)
		}
		// rho is public (the block hash): the equation publishes
		// Min + (the cheater's remainder) - S, nothing of anyone else.
		rho := w.nw.eng.rho(b.ev.Lanes, b.bt.RhoSeed([]byte("block"), b.index))[p.Slot(0, 0, malLane)]
		var rem uint64
		for j := 0; j < AmountBits; j++ {
			rem = (rem + c.vals[AmountBits+j]) % tm
		}
		if got, want := mulmod(b.eq[p.Slot(0, 0, malLane)], invmod(rho, tm), tm), (min+rem+tm-S)%tm; got != want {
			t.Fatalf("%s: the equation reveals %d, want the cheater's own Min + r - S = %d", c.name, got, want)
		}
	}
	w.expectSplit(t, map[string][2]uint64{"mal": {300, 0}, "bob": {200, 0}, "lender": {0, 0}})
	w.lendExpect(t, "mal", 300, 0, 0)
}

// What an honest decision publishes: every decrypted check slot, booleanness
// and equation, in every lane, is zero. The verdict is the only output: no
// slot holds the score, the balance or the margin above the minimum.
func TestLending_DecisionRevealsOnlyTheBit(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"lender": 0, "bob": 200, "carol": 12345, "dave": 0}, "lender", "bob", "carol", "dave")
	sp := w.book.ScoreParams()
	type app struct {
		name       string
		avail, min uint64
	}
	apps := []app{{"bob", 200, sp.Score(200, 0, 0)}, {"carol", 12345, sp.PublicPart(0) + 45}, {"dave", 0, 0}}
	var subs []*Submission
	secret := map[uint64]bool{}
	for _, a := range apps {
		s := sp.Score(a.avail, 0, 0)
		subs = append(subs, w.build(t, w.checkSpec(a.name, "lender", a.min, s)))
		secret[s], secret[a.avail], secret[s-a.min] = true, true, true
	}
	delete(secret, 0)
	res, bts := w.lendBlock(t, subs...)
	for i, s := range subs {
		if r := res[s.Envelopes[0].ID()]; r != Accepted {
			t.Fatalf("%s: %v", apps[i].name, r)
		}
	}
	if len(bts) != 1 {
		t.Fatalf("%d batches", len(bts))
	}
	for _, slots := range [][]uint64{bts[0].bits, bts[0].eq} {
		for s, v := range slots {
			if v != 0 || secret[v] {
				t.Fatalf("slot %d (lane %d) decrypts to %d: more than the verdict", s, s%w.nw.p.Lanes, v)
			}
		}
	}
	w.expectSplit(t, map[string][2]uint64{"bob": {200, 0}, "carol": {12345, 0}, "dave": {0, 0}, "lender": {0, 0}})
	for i, a := range apps {
		if ap := w.lendAcct(t, a.name).application(subs[i].Envelopes[0].ID()); ap == nil {
			t.Fatalf("%s: no application", a.name)
		}
	}
}

// A recorded consent cannot be recorded again, nor one with a lower nonce.
func TestAttack_ReplayedConsentIsRefused(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"lender": 0, "bob": 10, "other": 0}, "lender", "bob", "other")
	c5 := w.lendConsent("bob", "lender", ScopeScore, 100, 5)
	if err := w.book.RecordConsent(c5); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]*Consent{
		"the same consent":          c5,
		"the same nonce, elsewhere": w.lendConsent("bob", "other", ScopeScore, 100, 5),
		"a lower nonce":             w.lendConsent("bob", "other", ScopeScore, 100, 4),
		"a revocation, replayed":    w.lendConsent("bob", "lender", ScopeRevoke, 0, 5),
	} {
		if err := w.book.RecordConsent(c); !errors.Is(err, ErrConsent) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	w.lendSkip(t, 1)
	if err := w.book.RecordConsent(c5); !errors.Is(err, ErrConsent) {
		t.Fatalf("replayed a height later: %v", err)
	}
	bob := w.lendAcct(t, "bob")
	if bob.ConsentNonce != 5 || len(bob.Consents) != 1 {
		t.Fatalf("nonce %d, %d consents", bob.ConsentNonce, len(bob.Consents))
	}
	if err := w.book.RecordConsent(w.lendConsent("bob", "other", ScopeScore, 100, 6)); err != nil {
		t.Fatalf("the next nonce: %v", err)
	}
}

// A consent signed by any key but the owner's, or altered after signing,
// is refused.
func TestAttack_ConsentSignedByAnotherKeyIsRefused(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"lender": 0, "bob": 10}, "lender", "bob")
	byLender := &Consent{Chain: "test", Owner: w.acct["bob"].id, Lender: w.acct["lender"].id, Scope: ScopeScore, Expiry: 100, Nonce: 1}
	byLender.Sign(w.acct["lender"].key)
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	byStranger := *byLender
	byStranger.Sign(stranger)
	extended := w.lendConsent("bob", "lender", ScopeScore, 100, 1)
	extended.Expiry = 1000
	rescoped := w.lendConsent("bob", "lender", ScopeRevoke, 100, 1)
	rescoped.Scope = ScopeScore
	noSig := w.lendConsent("bob", "lender", ScopeScore, 100, 1)
	noSig.Sig = nil
	for name, c := range map[string]*Consent{"the lender's key": byLender, "a stranger's key": &byStranger, "expiry altered": extended, "scope altered": rescoped, "no signature": noSig} {
		if err := w.book.CheckConsent(c); !errors.Is(err, ErrConsent) {
			t.Fatalf("%s: %v", name, err)
		}
		if err := w.book.RecordConsent(c); !errors.Is(err, ErrConsent) {
			t.Fatalf("%s: recorded: %v", name, err)
		}
	}
	if bob := w.lendAcct(t, "bob"); bob.ConsentNonce != 0 || len(bob.Consents) != 0 || len(bob.Applications) != 0 {
		t.Fatalf("bob's lending state changed: %+v", bob)
	}
}

// A consent the owner signed for another chain is refused here.
func TestAttack_ConsentForAnotherChainIsRefused(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"lender": 0, "bob": 10}, "lender", "bob")
	c := &Consent{Chain: "another-chain", Owner: w.acct["bob"].id, Lender: w.acct["lender"].id, Scope: ScopeScore, Expiry: 100, Nonce: 1}
	c.Sign(w.acct["bob"].key)
	if err := w.book.RecordConsent(c); !errors.Is(err, ErrConsent) {
		t.Fatalf("foreign-chain consent: %v", err)
	}
	moved := *c
	moved.Chain = "test" // its signature does not carry over
	if err := w.book.RecordConsent(&moved); !errors.Is(err, ErrConsent) {
		t.Fatalf("foreign-chain consent relabelled: %v", err)
	}
}

// A consent expiring now or in the past, or too far ahead, is refused; a
// recorded one stops answering after its expiry.
func TestAttack_ExpiredConsentIsRefused(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"lender": 0, "bob": 10}, "lender", "bob")
	w.lendSkip(t, 3)
	h := w.book.Height()
	for name, exp := range map[string]uint64{"expired": h - 1, "expiring now": h, "beyond the span": h + MaxConsentSpan + 1} {
		if err := w.book.RecordConsent(w.lendConsent("bob", "lender", ScopeScore, exp, 1)); !errors.Is(err, ErrConsent) {
			t.Fatalf("%s: %v", name, err)
		}
	}
	if err := w.book.RecordConsent(w.lendConsent("bob", "lender", ScopeScore, h+2, 1)); err != nil {
		t.Fatal(err)
	}
	lender := w.acct["lender"].id
	if _, err := w.book.ScoreConsent(w.acct["bob"].id, lender, 1); err != nil {
		t.Fatalf("live consent: %v", err)
	}
	w.lendSkip(t, 2)
	if _, err := w.book.ScoreConsent(w.acct["bob"].id, lender, 1); err != nil {
		t.Fatalf("consent at its expiry height: %v", err)
	}
	w.lendSkip(t, 1)
	if _, err := w.book.ScoreConsent(w.acct["bob"].id, lender, 1); !errors.Is(err, ErrConsentExpired) {
		t.Fatalf("consent after its expiry: %v", err)
	}
}

// A revocation withdraws every consent to its lender (and not another
// lender's): a query under one is told it was revoked, and the lender can
// no longer answer the application it made with a loan. A later grant works.
func TestAttack_RevokedConsentIsRefused(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"lender": 1000, "other": 1000, "bob": 10}, "lender", "other", "bob")
	bob, lender, other := w.acct["bob"].id, w.acct["lender"].id, w.acct["other"].id
	g1 := w.lendConsent("bob", "lender", ScopeScore, 500, 1)
	g2 := w.lendConsent("bob", "lender", ScopeScore, 500, 2)
	g3 := w.lendConsent("bob", "other", ScopeScore, 500, 3)
	for _, c := range []*Consent{g1, g2, g3} {
		if err := w.book.RecordConsent(c); err != nil {
			t.Fatal(err)
		}
	}
	w.lendSkip(t, 1)
	if err := w.book.RecordConsent(w.lendConsent("bob", "lender", ScopeRevoke, 0, 4)); err != nil {
		t.Fatal(err)
	}
	for _, n := range []uint64{1, 2} {
		if _, err := w.book.ScoreConsent(bob, lender, n); !errors.Is(err, ErrConsentRevoked) {
			t.Fatalf("consent %d after its revocation: %v", n, err)
		}
	}
	if _, err := w.book.ScoreConsent(bob, other, 3); err != nil {
		t.Fatalf("another lender's consent: %v", err)
	}
	// The revocation's block is planned a height later: from then on the
	// lender cannot fund bob on the revoked consent; the other lender can.
	w.lendSkip(t, 1)
	h := w.book.Height()
	if r := w.lendOne(t, w.build(t, w.fundSpec("lender", "bob", 100, 1000, g1.ID(), h+10))); r != RejectLoan {
		t.Fatalf("loan on a revoked consent: %v", r)
	}
	if r := w.lendOne(t, w.build(t, w.fundSpec("other", "bob", 100, 1000, g3.ID(), h+10))); r != Accepted {
		t.Fatalf("loan on a live consent: %v", r)
	}
	g5 := w.lendConsent("bob", "lender", ScopeScore, 500, 5)
	if err := w.book.RecordConsent(g5); err != nil {
		t.Fatal(err)
	}
	if _, err := w.book.ScoreConsent(bob, lender, 5); err != nil {
		t.Fatalf("a grant after the revocation: %v", err)
	}
	if _, err := w.book.ScoreConsent(bob, lender, 1); !errors.Is(err, ErrConsentRevoked) {
		t.Fatalf("the revoked consent came back: %v", err)
	}
	w.expectSplit(t, map[string][2]uint64{"lender": {1000, 0}, "other": {900, 0}, "bob": {10, 100}})
}

// A consent answers only the lender it names: another lender naming its
// nonce is told it is foreign, and cannot fund a loan on it either.
func TestAttack_ForeignLenderUsingAConsentIsRefused(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"lender": 1000, "other": 1000, "bob": 10}, "lender", "other", "bob")
	bob := w.acct["bob"].id
	c := w.lendConsent("bob", "lender", ScopeScore, 500, 1)
	if err := w.book.RecordConsent(c); err != nil {
		t.Fatal(err)
	}
	w.lendSkip(t, 1)
	if _, err := w.book.ScoreConsent(bob, w.acct["other"].id, 1); !errors.Is(err, ErrConsentForeign) {
		t.Fatalf("foreign lender: %v", err)
	}
	if _, err := w.book.ScoreConsent(bob, w.acct["lender"].id, 2); !errors.Is(err, ErrNoConsent) {
		t.Fatalf("a nonce never granted: %v", err)
	}
	if _, err := w.book.ScoreConsent(w.acct["other"].id, w.acct["lender"].id, 1); !errors.Is(err, ErrNoConsent) {
		t.Fatalf("another owner's consent: %v", err)
	}
	h := w.book.Height()
	if r := w.lendOne(t, w.build(t, w.fundSpec("other", "bob", 100, 1000, c.ID(), h+10))); r != RejectLoan {
		t.Fatalf("foreign lender's loan: %v", r)
	}
	if got, err := w.book.ScoreConsent(bob, w.acct["lender"].id, 1); err != nil || got.ID() != c.ID() {
		t.Fatalf("the lender's own consent: %v", err)
	}
}

// Consent bounds: at most MaxConsents live grants; a revocation frees them,
// and revoked ones are kept (to answer "revoked") but never more than
// 2 x MaxConsents in all; what a block may record is refused otherwise
// (unknown owner or lender, the owner as lender, a preset Revoked, a bad
// scope). Applications stay bounded however grants and revocations cycle.
func TestLending_ConsentBounds(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"lender": 0, "bob": 10, "other": 0}, "lender", "bob", "other")
	nonce := uint64(0)
	next := func() uint64 { nonce++; return nonce }
	for cycle := 0; cycle < 5; cycle++ {
		for i := 0; i < MaxConsents; i++ {
			if err := w.book.RecordConsent(w.lendConsent("bob", "lender", ScopeScore, 1000, next())); err != nil {
				t.Fatalf("cycle %d grant %d: %v", cycle, i, err)
			}
		}
		if err := w.book.RecordConsent(w.lendConsent("bob", "other", ScopeScore, 1000, next())); !errors.Is(err, ErrConsent) {
			t.Fatalf("cycle %d: grant beyond %d live: %v", cycle, MaxConsents, err)
		}
		if err := w.book.RecordConsent(w.lendConsent("bob", "lender", ScopeRevoke, 0, next())); err != nil {
			t.Fatal(err)
		}
		bob := w.lendAcct(t, "bob")
		if len(bob.Consents) > 2*MaxConsents {
			t.Fatalf("cycle %d: %d consents kept", cycle, len(bob.Consents))
		}
		if len(bob.Applications) > MaxApplications+MaxConsents {
			t.Fatalf("cycle %d: %d applications", cycle, len(bob.Applications))
		}
		b, _ := bob.MarshalBinary()
		var back Account
		if err := back.UnmarshalBinary(b); err != nil {
			t.Fatalf("cycle %d: the account does not decode: %v", cycle, err)
		}
		w.lendSkip(t, 1)
		if bob := w.lendAcct(t, "bob"); len(bob.Applications) > MaxApplications {
			t.Fatalf("cycle %d: %d applications after a height", cycle, len(bob.Applications))
		}
	}
	// Grant, revoke, grant, ... within one height: applications stay bounded.
	for i := 0; i < 4*MaxConsents; i++ {
		err := w.book.RecordConsent(w.lendConsent("bob", "lender", ScopeScore, 1000, next()))
		if err == nil {
			err = w.book.RecordConsent(w.lendConsent("bob", "lender", ScopeRevoke, 0, next()))
		}
		if err != nil && !errors.Is(err, ErrConsent) {
			t.Fatal(err)
		}
		if n := len(w.lendAcct(t, "bob").Applications); n > MaxApplications+MaxConsents {
			t.Fatalf("%d applications", n)
		}
	}
	w.lendSkip(t, 1)
	bob, lender := w.acct["bob"].id, w.acct["lender"].id
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	unknown := AccountIDOf(stranger.Public().(ed25519.PublicKey))
	bad := map[string]*Consent{
		"unknown owner":   {Chain: "test", Owner: unknown, Lender: lender, Scope: ScopeScore, Expiry: 1000, Nonce: 1 << 40},
		"unknown lender":  {Chain: "test", Owner: bob, Lender: unknown, Scope: ScopeScore, Expiry: 1000, Nonce: 1 << 40},
		"owner as lender": {Chain: "test", Owner: bob, Lender: bob, Scope: ScopeScore, Expiry: 1000, Nonce: 1 << 40},
		"preset revoked":  {Chain: "test", Owner: bob, Lender: lender, Scope: ScopeScore, Expiry: 1000, Nonce: 1 << 40, Revoked: true},
		"unknown scope":   {Chain: "test", Owner: bob, Lender: lender, Scope: 3, Expiry: 1000, Nonce: 1 << 40},
		"no scope at all": {Chain: "test", Owner: bob, Lender: lender, Scope: 0, Expiry: 1000, Nonce: 1 << 40},
	}
	for name, c := range bad {
		if c.Owner == unknown {
			c.Sign(stranger)
		} else {
			c.Sign(w.acct["bob"].key)
		}
		if err := w.book.RecordConsent(c); !errors.Is(err, ErrConsent) {
			t.Fatalf("%s: %v", name, err)
		}
	}
}

// A borrower holds at most MaxLoans open loans: a fifth is refused, and so
// is a loan beyond the limit in the same block as another.
func TestLending_LoansPerBorrowerAreBounded(t *testing.T) {
	names := []string{"bob", "l1", "l2", "l3", "l4", "l5", "l6"}
	bal := map[string]uint64{"bob": 0}
	for _, n := range names[1:] {
		bal[n] = 100
	}
	w := newPayWorld(t, bal, names...)
	apps := map[string][32]byte{}
	for i, n := range names[1:] {
		c := w.lendConsent("bob", n, ScopeScore, 1000, uint64(i+1))
		if err := w.book.RecordConsent(c); err != nil {
			t.Fatal(err)
		}
		apps[n] = c.ID()
	}
	w.lendSkip(t, 1)
	fund := func(n string, amount uint64) *Submission {
		return w.build(t, w.fundSpec(n, "bob", amount, 100, apps[n], w.book.Height()+50))
	}
	f1, f2, f3 := fund("l1", 1), fund("l2", 2), fund("l3", 3)
	res, _ := w.lendBlock(t, f1, f2, f3)
	for _, f := range []*Submission{f1, f2, f3} {
		if r := res[f.Envelopes[0].ID()]; r != Accepted {
			t.Fatalf("loan %d of 3: %v", f.Envelopes[0].Nonce, r)
		}
	}
	f4, f5 := fund("l4", 4), fund("l5", 5)
	res, _ = w.lendBlock(t, f4, f5)
	if r := res[f4.Envelopes[0].ID()]; r != Accepted {
		t.Fatalf("fourth loan: %v", r)
	}
	if r := res[f5.Envelopes[0].ID()]; r != RejectLoan {
		t.Fatalf("fifth loan in the same block: %v", r)
	}
	if r := w.lendOne(t, fund("l6", 6)); r != RejectLoan {
		t.Fatalf("fifth loan in a later block: %v", r)
	}
	if r := w.lendOne(t, fund("l5", 5)); r != RejectLoan {
		t.Fatalf("fifth loan retried: %v", r)
	}
	if n := len(w.lendAcct(t, "bob").Loans); n != MaxLoans {
		t.Fatalf("%d open loans", n)
	}
	w.expectSplit(t, map[string][2]uint64{"bob": {0, 10}, "l4": {96, 0}, "l5": {100, 0}, "l6": {100, 0}})
}

// The lending fields of an envelope: each kind round-trips; a field of
// another kind, a schedule not strictly increasing, not after the height,
// too long or too far out, a check's minimum above an amount, a check or a
// loan naming its sender or several payees, an unknown kind: malformed. The
// signature covers the kind and every lending field.
func TestLending_EnvelopeKindsRoundTripAndRules(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	pub2, _, _ := ed25519.GenerateKey(rand.Reader)
	pub3, _, _ := ed25519.GenerateKey(rand.Reader)
	from, to, third := AccountIDOf(pub), AccountIDOf(pub2), AccountIDOf(pub3)
	base := func(k OpKind) Envelope {
		return Envelope{Chain: "test", From: from, To: to, Nonce: 3, Height: 10, CTHash: sha256.Sum256([]byte("up")), Kind: k}
	}
	check := base(OpCheck)
	check.Min, check.Policy = 1234, lendPolicy("x")
	fund := base(OpFund)
	fund.Due, fund.Loan = []uint64{11, 20, 30}, [32]byte{9}
	repay := base(OpRepay)
	repay.Loan = [32]byte{7}
	pay := base(OpPay)
	seen := map[[32]byte]bool{}
	for _, e := range []Envelope{pay, check, fund, repay} {
		e.Sig = ed25519.Sign(key, e.SigningBytes())
		b, err := e.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		var back Envelope
		if err := back.UnmarshalBinary(b); err != nil {
			t.Fatalf("%s: %v", e.Kind, err)
		}
		if !reflect.DeepEqual(back, e) || !back.Verify(pub) || back.ID() != e.ID() {
			t.Fatalf("%s does not round-trip: %+v", e.Kind, back)
		}
		if seen[e.ID()] {
			t.Fatalf("%s has another kind's id", e.Kind)
		}
		seen[e.ID()] = true
	}
	if pay.BatchKind() != 0 || check.BatchKind() != 2 || fund.BatchKind() != 0 || repay.BatchKind() != 0 {
		t.Fatal("batch kinds")
	}
	if check.Pays() || !fund.Pays() || !repay.Pays() || check.IsApply() {
		t.Fatal("a check moves nothing; loans and repayments pay")
	}

	// A field of another kind is not well formed (what Book.Check and a
	// dealer refuse), and the encoding never carries it: the envelope a
	// validator decodes has none.
	foreign := map[string]func(e *Envelope){}
	mal := map[string]func(e *Envelope){}
	for name, k := range map[string]OpKind{"pay": OpPay, "check": OpCheck, "fund": OpFund, "repay": OpRepay} {
		if k != OpCheck && k != OpFund { // a loan names the minimum and policy it requires
			foreign[name+" with a minimum"] = func(e *Envelope) { *e = withKind(k, fund, check, repay, pay); e.Min = 1 }
			foreign[name+" with a policy"] = func(e *Envelope) { *e = withKind(k, fund, check, repay, pay); e.Policy[0] = 1 }
		}
		if k != OpFund {
			foreign[name+" with a schedule"] = func(e *Envelope) { *e = withKind(k, fund, check, repay, pay); e.Due = []uint64{20} }
		}
		if k == OpPay || k == OpCheck {
			foreign[name+" naming a loan"] = func(e *Envelope) { *e = withKind(k, fund, check, repay, pay); e.Loan[0] = 1 }
		}
		if k != OpPay {
			mal[name+" to its sender"] = func(e *Envelope) { *e = withKind(k, fund, check, repay, pay); e.To = e.From }
			mal[name+" with several payees"] = func(e *Envelope) { *e = withKind(k, fund, check, repay, pay); e.More = []AccountID{third} }
		}
	}
	for name, f := range foreign {
		var e Envelope
		f(&e)
		if e.wellFormed() {
			t.Fatalf("%s: well formed", name)
		}
		e.Sig = ed25519.Sign(key, e.SigningBytes())
		b, _ := e.MarshalBinary()
		var back Envelope
		if err := back.UnmarshalBinary(b); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		clean := withKind(e.Kind, fund, check, repay, pay)
		clean.Sig = e.Sig
		if !reflect.DeepEqual(back, clean) {
			t.Fatalf("%s: the encoding carries a field of another kind: %+v", name, back)
		}
	}
	mal["check above an amount"] = func(e *Envelope) { *e = check; e.Min = MaxAmount + 1 }
	mal["loan without a schedule"] = func(e *Envelope) { *e = fund; e.Due = nil }
	mal["schedule repeating a height"] = func(e *Envelope) { *e = fund; e.Due = []uint64{20, 20} }
	mal["schedule going back"] = func(e *Envelope) { *e = fund; e.Due = []uint64{30, 20} }
	mal["installment at the loan's height"] = func(e *Envelope) { *e = fund; e.Due = []uint64{10, 20} }
	mal["installment before the loan's height"] = func(e *Envelope) { *e = fund; e.Due = []uint64{5} }
	mal["installment beyond the span"] = func(e *Envelope) { *e = fund; e.Due = []uint64{11, 10 + MaxLoanSpan + 1} }
	mal["too many installments"] = func(e *Envelope) {
		*e = fund
		e.Due = nil
		for i := 0; i <= MaxInstallments; i++ {
			e.Due = append(e.Due, uint64(11+i))
		}
	}
	mal["unknown kind"] = func(e *Envelope) { *e = pay; e.Kind = 7 }
	for name, f := range mal {
		var e Envelope
		f(&e)
		e.Sig = ed25519.Sign(key, e.SigningBytes())
		b, _ := e.MarshalBinary()
		var back Envelope
		if err := back.UnmarshalBinary(b); !errors.Is(err, ErrMalformed) {
			t.Fatalf("%s: decodes (%v)", name, err)
		}
		if e.wellFormed() {
			t.Fatalf("%s: well formed", name)
		}
	}

	flips := map[string]func(e *Envelope){
		"kind":   func(e *Envelope) { e.Kind = OpRepay },
		"min":    func(e *Envelope) { e.Min++ },
		"policy": func(e *Envelope) { e.Policy[31] ^= 1 },
		"due":    func(e *Envelope) { e.Due[0]++ },
		"loan":   func(e *Envelope) { e.Loan[0] ^= 1 },
	}
	for name, f := range flips {
		kinds := []Envelope{check}
		if name == "due" || name == "loan" || name == "kind" {
			kinds = []Envelope{withKind(OpFund, fund, check, repay, pay)}
		}
		if name == "min" || name == "policy" {
			kinds = append(kinds, withKind(OpFund, fund, check, repay, pay))
		}
		if name == "loan" {
			kinds = append(kinds, repay)
		}
		for _, e := range kinds {
			e.Sig = ed25519.Sign(key, e.SigningBytes())
			id := e.ID()
			f(&e)
			if e.Verify(pub) || e.ID() == id {
				t.Fatalf("flipping a %s's %s keeps its signature valid or its id", e.Kind, name)
			}
		}
	}
}

func withKind(k OpKind, fund, check, repay, pay Envelope) Envelope {
	var e Envelope
	switch k {
	case OpFund:
		e = fund
		e.Due = append([]uint64(nil), fund.Due...)
	case OpCheck:
		e = check
	case OpRepay:
		e = repay
	default:
		e = pay
	}
	return e
}

// An account's lending state (loans, consents, applications, defaults,
// the consent nonce) survives its encoding, a book snapshot, and a clone
// that is then changed: nothing of the clone's changes reaches the
// original.
func TestLending_BookSnapshotKeepsLendingState(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"lender": 1000, "bob": 200, "other": 5}, "lender", "bob", "other")
	sp := w.book.ScoreParams()
	check := w.build(t, w.checkSpec("bob", "lender", 0, sp.Score(200, 0, 0)))
	if r := w.lendOne(t, check); r != Accepted {
		t.Fatalf("check: %v", r)
	}
	h := w.book.Height()
	d2 := h + RepayLead + 3
	fund := w.build(t, w.fundSpec("lender", "bob", 100, 1000, check.Envelopes[0].ID(), h+RepayLead+1, d2, h+40))
	if r := w.lendOne(t, fund); r != Accepted {
		t.Fatalf("fund: %v", r)
	}
	if r := w.lendOne(t, w.build(t, w.repaySpec("bob", "lender", 10, 200, fund.Envelopes[0].ID()))); r != Accepted {
		t.Fatalf("repayment: %v", r)
	}
	for w.book.Height() <= d2 {
		w.lendSkip(t, 1) // the second installment is missed
	}
	g := w.lendConsent("bob", "other", ScopeScore, 900, 1)
	for _, c := range []*Consent{g, w.lendConsent("bob", "lender", ScopeScore, 900, 2), w.lendConsent("bob", "lender", ScopeRevoke, 0, 3)} {
		if err := w.book.RecordConsent(c); err != nil {
			t.Fatal(err)
		}
	}
	bob := w.lendAcct(t, "bob")
	if len(bob.Loans) != 1 || bob.Loans[0].Paid != 1 || bob.Loans[0].Missed != 1 || bob.Defaults != 1 || len(bob.Consents) != 2 || len(bob.Applications) == 0 || bob.ConsentNonce != 3 {
		t.Fatalf("lending state: %+v", bob)
	}
	// Encoding.
	b, err := bob.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	var back Account
	if err := back.UnmarshalBinary(b); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, bob) {
		t.Fatalf("account does not round-trip:\n%+v\n%+v", back, *bob)
	}
	for n := 0; n < len(b); n++ {
		var cut Account
		if err := cut.UnmarshalBinary(b[:n]); err == nil {
			t.Fatalf("an account cut at %d of %d bytes decodes", n, len(b))
		}
	}
	// Snapshot and restore: the lending state and the repaid planes.
	rb, err := RestoreBook(w.nw.eng, "test", w.book.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	got, _ := rb.Account(bob.ID)
	if !reflect.DeepEqual(got, bob) {
		t.Fatal("restored account differs")
	}
	if st, ok := rb.State(RepaidKey(bob.Shard), rb.Height()); !ok {
		t.Fatal("no repaid plane restored")
	} else if cur, _ := w.book.State(RepaidKey(bob.Shard), w.book.Height()); st != cur {
		t.Fatal("restored repaid plane differs")
	}
	// A clone's changes never reach the original.
	orig, _ := bob.MarshalBinary()
	c := w.book.Clone()
	cb, _ := c.Account(bob.ID)
	cb.Loans[0].Due[0]++
	cb.Loans[0].Paid++
	cb.Consents[0].Revoked = !cb.Consents[0].Revoked
	cb.Applications[0].Height++
	cb.Applications = append(cb.Applications[:0], Application{})
	if err := c.RecordConsent(w.lendConsent("bob", "other", ScopeRevoke, 0, 4)); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 50; i++ {
		if err := c.Skip(c.Height() + 1); err != nil {
			t.Fatal(err)
		}
	}
	if now, _ := w.lendAcct(t, "bob").MarshalBinary(); !bytes.Equal(now, orig) {
		t.Fatal("changing a clone changed the original's lending state")
	}
	if bytes.Equal(func() []byte { b, _ := cb.MarshalBinary(); return b }(), orig) {
		t.Fatal("the clone did not change")
	}
}

// Consents recorded with a later block never change how an earlier block's
// loans are judged. A chain records a block's consents on the book its
// operations are planned on, one height behind; a validator restarting
// after block k+1 re-plans block k on its persisted book, which already
// holds block k+1's consents. So a loan must get the same verdict with or
// without them: an application they add counts from the next height only,
// and they remove none (a full list is trimmed, and revoked consents'
// applications dropped, when a height is settled).
func TestLending_ConsentsOfALaterBlockNeverChangeAnEarlierBlocksLoans(t *testing.T) {
	names := []string{"bob", "l1", "l2", "l3"}
	w := newPayWorld(t, map[string]uint64{"bob": 0, "l1": 100, "l2": 100, "l3": 100}, names...)
	g1 := w.lendConsent("bob", "l1", ScopeScore, 1000, 1)
	if err := w.book.RecordConsent(g1); err != nil {
		t.Fatal(err)
	}
	w.lendSkip(t, 1)
	h := w.book.Height()
	byL1 := w.pending(t, paySub{sub: w.build(t, w.fundSpec("l1", "bob", 10, 100, g1.ID(), h+20))})
	g2 := w.lendConsent("bob", "l2", ScopeScore, 1000, 2)
	byL2 := w.pending(t, paySub{sub: w.build(t, w.fundSpec("l2", "bob", 10, 100, g2.ID(), h+20))})

	verdict := func(b *Book, pend []Pending) Reason {
		batches, early := b.Plan(pend)
		if r, ok := early[pend[0].Env.ID()]; ok {
			return r
		}
		if len(batches) != 1 {
			t.Fatalf("%d batches", len(batches))
		}
		return Accepted
	}
	before1, before2 := verdict(w.book, byL1), verdict(w.book, byL2)
	if before1 != Accepted || before2 != RejectLoan {
		t.Fatalf("before the later consents: %v, %v", before1, before2)
	}
	later := w.book.Clone()
	// The later block: bob grants l2, fills his applications and revokes l1.
	n := uint64(2)
	if err := later.RecordConsent(g2); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < MaxApplications; i++ {
		n++
		if err := later.RecordConsent(w.lendConsent("bob", "l3", ScopeScore, 1000, n)); err != nil {
			t.Fatalf("grant %d: %v", i, err)
		}
		n++
		if err := later.RecordConsent(w.lendConsent("bob", "l3", ScopeRevoke, 0, n)); err != nil {
			t.Fatal(err)
		}
	}
	n++
	if err := later.RecordConsent(w.lendConsent("bob", "l1", ScopeRevoke, 0, n)); err != nil {
		t.Fatal(err)
	}
	if after1, after2 := verdict(later, byL1), verdict(later, byL2); after1 != before1 || after2 != before2 {
		t.Fatalf("the later block's consents change the earlier block's loans: %v -> %v, %v -> %v", before1, after1, before2, after2)
	}
	// From the later block on: l2's consent answers, l1's revoked one does not.
	if err := later.Skip(later.Height() + 1); err != nil {
		t.Fatal(err)
	}
	if r := verdict(later, byL2); r != Accepted {
		t.Fatalf("l2's loan in the block after its consent: %v", r)
	}
	if r := verdict(later, byL1); r != RejectLoan {
		t.Fatalf("l1's loan after the revocation: %v", r)
	}
	if a, _ := later.Account(w.acct["bob"].id); len(a.Applications) > MaxApplications {
		t.Fatalf("%d applications after a settled height", len(a.Applications))
	}
}

// A score check names the height of the score it was built on. An account
// opened in a new shard could name a retained height from before its shard
// existed: its score has no state there, and evaluating it would fail the
// whole block's evaluation at every validator (a chain could not decide the
// block, and would halt). It is refused in plaintext, as stale, like an
// apply naming a height before the account's last; a check at or after the
// account's opening is judged as usual.
func TestAttack_CheckNamingAHeightBeforeItsShardExistedIsRefused(t *testing.T) {
	w := reviewWorld(t, map[string]int{"lender": 0, "last": 255}, map[string]uint64{})
	if w.nw.p.Lanes != 256 {
		t.Skipf("lanes = %d", w.nw.p.Lanes)
	}
	w.lendSkip(t, 5)
	a := newAccount(t, w.nw.p, 0)
	pk, _ := a.own.PK.MarshalBinary()
	acc, err := w.book.Open(a.key.Public().(ed25519.PublicKey), pk, KindDeposit)
	if err != nil {
		t.Fatal(err)
	}
	if acc.Shard != 1 {
		t.Fatalf("opened in shard %d", acc.Shard)
	}
	a.lane = acc.Lane
	w.acct["newcomer"] = a
	w.lendSkip(t, 2)
	sp := w.book.ScoreParams()
	s := w.checkSpec("newcomer", "lender", 0, sp.Score(0, 0, 0))
	s.Height = acc.Created - 1 // retained for shard 0, before shard 1 existed
	if r := w.lendOne(t, w.build(t, s)); r != RejectStaleHeight {
		t.Fatalf("check before its shard existed: %v", r)
	}
	s = w.checkSpec("newcomer", "lender", 0, sp.Score(0, 0, 0))
	s.Height = acc.Created
	if r := w.lendOne(t, w.build(t, s)); r != Accepted {
		t.Fatalf("check at the account's opening: %v", r)
	}
}

// A repayment the checks reject (an overdraft dealt with wrapped bits of
// the new balance) moves nothing and counts nothing: the installment is
// neither paid nor advanced, R is unchanged; the honest repayment after it
// counts once.
func TestAttack_RejectedRepaymentCountsNothing(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"lender": 1000, "bob": 200}, "lender", "bob")
	sp := w.book.ScoreParams()
	check := w.build(t, w.checkSpec("bob", "lender", 0, sp.Score(200, 0, 0)))
	if r := w.lendOne(t, check); r != Accepted {
		t.Fatalf("check: %v", r)
	}
	h := w.book.Height()
	fund := w.build(t, w.fundSpec("lender", "bob", 100, 1000, check.Envelopes[0].ID(), h+30))
	if r := w.lendOne(t, fund); r != Accepted {
		t.Fatalf("fund: %v", r)
	}
	loan := fund.Envelopes[0].ID()
	over := w.buildValues(t, w.repaySpec("bob", "lender", 0, 0, loan), TransferValues(500, (200-500)&MaxAmount))
	if r := w.lendOne(t, over); r != RejectBalanceMismatch {
		t.Fatalf("overdrawn repayment: %v", r)
	}
	if l := w.lendAcct(t, "bob").Loans[0]; l.Paid != 0 || l.Missed != 0 {
		t.Fatalf("a rejected repayment counted: %+v", l)
	}
	w.expectSplit(t, map[string][2]uint64{"lender": {900, 0}, "bob": {200, 100}})
	w.lendExpect(t, "bob", 200, 0, 0)
	if r := w.lendOne(t, w.build(t, w.repaySpec("bob", "lender", 200, 200, loan))); r != Accepted {
		t.Fatalf("honest repayment: %v", r)
	}
	w.lendSkip(t, 1)
	w.lendExpect(t, "bob", 0, 200, 0)
	w.expectSplit(t, map[string][2]uint64{"lender": {900, 200}, "bob": {0, 100}})
}

// A loan names the minimum and policy it requires of its application, and
// the chain holds it to them: a borrower's check that proved S >= 0 (or
// under another policy) does not answer a loan requiring 250000 under the
// lender's policy, whatever a node told the lender about that check.
// Nothing moves; the application stays open for a loan that asks only what
// it proved.
func TestAttack_LoanOnACheckThatProvedLessIsRefused(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"lender": 1000, "bob": 200}, "lender", "bob")
	sp := w.book.ScoreParams()
	var policy, other [32]byte
	policy[0], other[0] = 1, 2
	cs := w.checkSpec("bob", "lender", 0, sp.Score(200, 0, 0))
	cs.Policy = other
	check := w.build(t, cs)
	if r := w.lendOne(t, check); r != Accepted {
		t.Fatalf("check: %v", r)
	}
	app := check.Envelopes[0].ID()
	if ap := w.lendAcct(t, "bob").application(app); ap == nil || ap.Min != 0 || ap.Policy != other {
		t.Fatalf("the application does not record what the check proved: %+v", ap)
	}
	for _, c := range []struct {
		name   string
		min    uint64
		policy [32]byte
	}{{"a higher minimum", 250000, other}, {"another policy", 0, policy}, {"both", 250000, policy}} {
		h := w.book.Height()
		s := w.fundSpec("lender", "bob", 100, 1000, app, h+RepayLead+1)
		s.Min, s.Policy = c.min, c.policy
		if r := w.lendOne(t, w.build(t, s)); r != RejectLoan {
			t.Fatalf("a loan requiring %s: %v", c.name, r)
		}
		w.expectSplit(t, map[string][2]uint64{"lender": {1000, 0}, "bob": {200, 0}})
	}
	h := w.book.Height()
	s := w.fundSpec("lender", "bob", 100, 1000, app, h+RepayLead+1)
	s.Policy = other // what it proved (minimum 0)
	if r := w.lendOne(t, w.build(t, s)); r != Accepted {
		t.Fatalf("a loan requiring what the check proved: %v", r)
	}
}
