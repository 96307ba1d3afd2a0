package lending

import (
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/ledger"
)

func TestDecide_EachRuleWithItsReason(t *testing.T) {
	dec, err := ParsePolicy([]byte(testPolicy))
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ParsePolicy([]byte(strings.Replace(testPolicy, `"decision"`, `"score"`, 1)))
	if err != nil {
		t.Fatal(err)
	}
	hash := Hash([]byte(testPolicy))
	ours := hex.EncodeToString(hash[:])
	check := Application{ID: "a", Borrower: "b", Kind: KindCheck, Min: 250000, Policy: ours}
	consent := Application{ID: "c", Borrower: "b", Kind: KindConsent, Nonce: 1, Score: 300000}
	with := func(a Application, f func(*Application)) Application { f(&a); return a }
	roomy := Limits{OpenLoans: 0, BorrowerOpenLoans: 0, MaxBorrowerLoans: ledger.MaxLoans}
	for _, c := range []struct {
		name     string
		pol      *Policy
		app      Application
		lim      Limits
		decision string
		reason   string
	}{
		{"check at the minimum", dec, check, roomy, Fund, "check accepted: score >= 250000"},
		{"check above the minimum", dec, with(check, func(a *Application) { a.Min = 400000 }), roomy, Fund, "score >= 400000"},
		{"check below min_score", dec, with(check, func(a *Application) { a.Min = 100 }), roomy, Refuse, "below this policy's min_score 250000"},
		{"check under another policy", dec, with(check, func(a *Application) { a.Policy = strings.Repeat("0", 64) }), roomy, Refuse, "not this lender's policy"},
		{"check rejected", dec, with(check, func(a *Application) { a.Code, a.Reason = "balance_mismatch", "no" }), roomy, Refuse, "validators rejected the check"},
		{"check to a score lender", sc, check, roomy, Refuse, "score mode"},
		{"consent to a decision lender", dec, consent, roomy, Refuse, "decision mode"},
		{"consent, score enough", sc, consent, roomy, Fund, "score 300000 >= min_score 250000"},
		{"consent, score low", sc, with(consent, func(a *Application) { a.Score = 249999 }), roomy, Refuse, "score 249999 is below min_score 250000"},
		{"consent, unreadable", sc, with(consent, func(a *Application) { a.ScoreErr = ledger.ErrConsentRevoked }), roomy, Refuse, "revoked"},
		{"lender at max_open_loans", dec, check, Limits{OpenLoans: 2, MaxBorrowerLoans: ledger.MaxLoans}, Refuse, "max_open_loans 2"},
		{"borrower at the chain's limit", dec, check, Limits{BorrowerOpenLoans: ledger.MaxLoans, MaxBorrowerLoans: ledger.MaxLoans}, Refuse, "chain's limit"},
		{"unknown kind", dec, with(check, func(a *Application) { a.Kind = "x" }), roomy, Refuse, "unknown application kind"},
	} {
		d, r := Decide(c.pol, hash, c.app, c.lim)
		if d != c.decision || !strings.Contains(r, c.reason) {
			t.Errorf("%s: %s (%s), want %s with %q", c.name, d, r, c.decision, c.reason)
		}
	}
}

func TestState_SavesResumesAndRefusesAnotherPool(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.json")
	s, err := LoadState(path, "chain", "pool")
	if err != nil || s.Scanned != 0 || len(s.Loans) != 0 {
		t.Fatalf("fresh: %+v %v", s, err)
	}
	s.Scanned = 42
	s.Applications["a"] = &Decided{Borrower: "b", Decision: Fund, Reason: "r", Loan: "l"}
	s.Loans["l"] = &LoanTracker{ID: "l", Borrower: "b", Due: []uint64{50, 60}, Paid: 1}
	s.Loans["m"] = &LoanTracker{ID: "m", Closed: true}
	if err := s.Save(path); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode())
	}
	got, err := LoadState(path, "chain", "pool")
	if err != nil || got.Scanned != 42 || got.Applications["a"].Loan != "l" || got.Loans["l"].Next() != 1 || got.OpenLoans() != 1 {
		t.Fatalf("resumed: %+v %v", got, err)
	}
	if _, err := LoadState(path, "chain", "other-pool"); !errors.Is(err, ErrState) || !strings.Contains(err.Error(), "use another --state file") {
		t.Fatalf("other pool: %v", err)
	}
	os.WriteFile(path, []byte("{"), 0o600)
	if _, err := LoadState(path, "chain", "pool"); !errors.Is(err, ErrState) {
		t.Fatalf("corrupt: %v", err)
	}
}

func TestState_PrunesOldDecisionsAndClosedLoans(t *testing.T) {
	s, _ := LoadState(filepath.Join(t.TempDir(), "s.json"), "c", "p")
	for i := 0; i < maxDecided+10; i++ {
		s.Applications[hex.EncodeToString([]byte{byte(i >> 8), byte(i)})] = &Decided{Height: uint64(i)}
	}
	for i := 0; i < maxClosedLoans+5; i++ {
		s.Loans[hex.EncodeToString([]byte{byte(i >> 8), byte(i)})] = &LoanTracker{Start: uint64(i), Closed: true}
	}
	s.Loans["open"] = &LoanTracker{Start: 0}
	s.prune()
	if len(s.Applications) != maxDecided || len(s.Loans) != maxClosedLoans+1 || s.Loans["open"] == nil {
		t.Fatalf("%d decisions, %d loans", len(s.Applications), len(s.Loans))
	}
	if _, ok := s.Applications["0000"]; ok {
		t.Fatal("the oldest decision was kept")
	}
}

func TestSettled_FollowsTheChainsRuleOnceALoanIsClosed(t *testing.T) {
	open := &api.LoanInfo{Paid: 2, Missed: 1}
	l := &LoanTracker{Due: []uint64{50, 60, 70}, Paid: 1}
	if p, m := settled(l, open); p != 2 || m != 1 {
		t.Fatalf("open loan: the chain's counts, got %d %d", p, m)
	}
	for _, c := range []struct {
		seen         []uint64 // heights of repayments seen since the last look
		paid, missed int
	}{
		{nil, 1, 2},          // nothing more repaid: both installments missed
		{[]uint64{60}, 2, 1}, // on the due height: on time
		{[]uint64{61}, 2, 1}, // after 60: installment 2 missed, the repayment pays installment 3
		{[]uint64{55, 66}, 3, 0},
		{[]uint64{71}, 1, 2}, // after every due height: all missed
	} {
		l.Repayments = nil
		for _, h := range c.seen {
			l.Repayments = append(l.Repayments, SeenRepayment{Height: h})
		}
		if p, m := settled(l, nil); p != c.paid || m != c.missed {
			t.Errorf("repayments at %v: paid %d missed %d, want %d %d", c.seen, p, m, c.paid, c.missed)
		}
	}
}

func TestOrder_NamesEachSettledInstallment(t *testing.T) {
	l := &LoanTracker{Due: []uint64{50, 60, 70}, Paid: 1}
	l.Repayments = []SeenRepayment{{Height: 65}}
	// Installment 2 (due 60) missed, the repayment at 65 pays installment 3.
	if got := order(l, 1, 1); len(got) != 2 || got[0] || !got[1] {
		t.Fatalf("order %v", got)
	}
	l.Repayments = nil
	if got := order(l, 0, 1); len(got) != 1 || got[0] {
		t.Fatalf("one missed: %v", got)
	}
	// Counts the repayments seen do not explain: repaid ones first.
	if got := order(l, 1, 1); len(got) != 2 || !got[0] || got[1] {
		t.Fatalf("fallback %v", got)
	}
	if order(l, 0, 0) != nil {
		t.Fatal("nothing settled")
	}
}
