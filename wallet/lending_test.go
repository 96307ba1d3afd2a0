package wallet

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/zkbank/zkbank/ledger"
)

// lendingWallet is a fresh wallet file of its own (the sidecar is per file).
func lendingWallet(t *testing.T) *Wallet {
	t.Helper()
	w, err := New("borrower", KindDeposit, params(ledger.ZKB128))
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Create(filepath.Join(t.TempDir(), "borrower.json")); err != nil {
		t.Fatal(err)
	}
	return w
}

func otherAccount(t *testing.T) ledger.AccountID {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	return ledger.AccountIDOf(pub)
}

func TestSignConsent_NextNonceSignatureAndSidecar(t *testing.T) {
	w := lendingWallet(t)
	lender := otherAccount(t)
	// The chain's nonce is ahead of the wallet's: the next one is above it.
	c, err := w.SignConsent("chain", lender, ledger.ScopeScore, 500, 100, 7)
	if err != nil {
		t.Fatal(err)
	}
	if c.Nonce != 8 || c.Owner != w.ID() || c.Lender != lender || c.Expiry != 500 || c.Chain != "chain" {
		t.Fatalf("consent %+v", c)
	}
	if !ed25519.Verify(w.SignPub(), c.SigningBytes(), c.Sig) {
		t.Fatal("consent not signed by the owner's key")
	}
	// A second consent before the chain recorded the first: the wallet's
	// own nonce is ahead of the chain's.
	r, err := w.SignConsent("chain", lender, ledger.ScopeRevoke, 100, 100, 7)
	if err != nil {
		t.Fatal(err)
	}
	if r.Nonce != 9 {
		t.Fatalf("revocation nonce %d, want 9", r.Nonce)
	}
	s, err := w.LoadLending()
	if err != nil {
		t.Fatal(err)
	}
	if s.ConsentNonce != 9 || len(s.Consents) != 2 || s.Consents[0].Scope != "score" || s.Consents[1].Scope != "revoke" || s.Consents[0].Lender != lender.String() {
		t.Fatalf("sidecar %+v", s)
	}
	st, err := os.Stat(LendingPath(w.Path()))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("sidecar mode: %v %v", st, err)
	}
}

func TestSignConsent_RefusesBadInput(t *testing.T) {
	w := lendingWallet(t)
	lender := otherAccount(t)
	for name, f := range map[string]func() error{
		"own account": func() error {
			_, err := w.SignConsent("c", w.ID(), ledger.ScopeScore, 200, 100, 0)
			return err
		},
		"expiry not ahead": func() error {
			_, err := w.SignConsent("c", lender, ledger.ScopeScore, 100, 100, 0)
			return err
		},
		"expiry too far": func() error {
			_, err := w.SignConsent("c", lender, ledger.ScopeScore, 101+ledger.MaxConsentSpan, 100, 0)
			return err
		},
		"unknown scope": func() error {
			_, err := w.SignConsent("c", lender, ledger.ConsentScope(9), 200, 100, 0)
			return err
		},
	} {
		if err := f(); !errors.Is(err, ErrConsentInput) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	if s, _ := w.LoadLending(); s.ConsentNonce != 0 {
		t.Fatalf("a refused consent used nonce %d", s.ConsentNonce)
	}
}

func TestUpdateLending_RoundTripsAndRefusesACorruptSidecar(t *testing.T) {
	w := lendingWallet(t)
	err := w.UpdateLending(func(s *Lending) error {
		s.Applications = append(s.Applications, ApplicationRecord{ID: "a1", Lender: "L", Kind: ApplyCheck, Amount: 10000, Installments: []uint64{3333, 3333, 3334}})
		s.Loans = append(s.Loans, LoanRecord{ID: "l1", Lender: "L", Application: "a1", Amount: 10000, Installments: []uint64{3333, 3333, 3334},
			Repayments: []RepaymentRecord{{ID: "r1", Amount: 3333, Status: "committed"}, {ID: "r2", Amount: 50, Status: "rejected"}}})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s, err := w.LoadLending()
	if err != nil {
		t.Fatal(err)
	}
	l := s.Loan("l1")
	if l == nil || l.Repaid() != 3333 || l.Installment(2) != 3334 || l.Installment(3) != 0 || s.Application("a1") == nil || s.LatestApplication("L").ID != "a1" {
		t.Fatalf("read back %+v", s)
	}
	os.WriteFile(LendingPath(w.Path()), []byte("{"), 0o600)
	if _, err := w.LoadLending(); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("corrupt sidecar: %v", err)
	}
}

func TestFundSpec_RefusesASchedule(t *testing.T) {
	w := lendingWallet(t)
	b := OpBase{Nonce: 1, Height: 100}
	for name, due := range map[string][]uint64{
		"empty":          nil,
		"not after":      {100, 130},
		"too soon":       {100 + ledger.RepayLead, 130},
		"not increasing": {130, 130},
		"too far":        {100 + ledger.MaxLoanSpan + 1},
		"too many":       make([]uint64, ledger.MaxInstallments+1),
	} {
		if _, err := w.FundSpec(b, otherAccount(t), 10, 100, due, [32]byte{1}, 0, [32]byte{}); !errors.Is(err, ErrSchedule) {
			t.Errorf("%s: got %v", name, err)
		}
	}
	s, err := w.FundSpec(b, otherAccount(t), 10, 100, []uint64{130, 160}, [32]byte{1}, 250000, [32]byte{2})
	if err != nil || s.Kind != ledger.OpFund || s.Loan != [32]byte{1} || len(s.Due) != 2 || s.From != w.ID() || s.Min != 250000 || s.Policy != [32]byte{2} {
		t.Fatalf("spec %+v %v", s, err)
	}
}

// A check below the lender's minimum is refused when it is built, before
// anything could be sent; repayments and checks carry their kind's fields.
func TestLendingSpecsBuild(t *testing.T) {
	w := lendingWallet(t)
	sh, err := ledger.NewSharing(1, 0)
	if err != nil {
		t.Fatal(err)
	}
	vpub, _, _ := ed25519.GenerateKey(rand.Reader)
	seal, err := ledger.SealPublicKey(vpub)
	if err != nil {
		t.Fatal(err)
	}
	d, err := ledger.NewDealer(w.Params(), sh, []*ecdh.PublicKey{seal}, "chain")
	if err != nil {
		t.Fatal(err)
	}
	lender := otherAccount(t)
	b := OpBase{Nonce: 3, Height: 40, Prev: [32]byte{9}}
	if _, err := d.Build(w.CheckSpec(b, lender, 250000, [32]byte{7}, 249999)); !errors.Is(err, ledger.ErrBelowMinimum) {
		t.Fatalf("check below the minimum: %v", err)
	}
	sub, err := d.Build(w.CheckSpec(b, lender, 250000, [32]byte{7}, 300000))
	if err != nil {
		t.Fatal(err)
	}
	e := sub.Envelopes[0]
	if e.Kind != ledger.OpCheck || e.Min != 250000 || e.Policy != [32]byte{7} || e.To != lender || e.Height != 40 || e.Prev != [32]byte{9} || e.Nonce != 3 {
		t.Fatalf("check envelope %+v", e)
	}
	if _, err := d.Build(w.RepaySpec(b, lender, [32]byte{5}, 101, 100)); !errors.Is(err, ledger.ErrInsufficientFunds) {
		t.Fatalf("repayment above the balance: %v", err)
	}
	sub, err = d.Build(w.RepaySpec(b, lender, [32]byte{5}, 100, 100))
	if err != nil {
		t.Fatal(err)
	}
	if e := sub.Envelopes[0]; e.Kind != ledger.OpRepay || e.Loan != [32]byte{5} || e.To != lender {
		t.Fatalf("repayment envelope %+v", e)
	}
}
