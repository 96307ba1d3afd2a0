package wallet

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/zkbank/zkbank/ledger"
)

// Lending (docs/LENDING.md). The chain keeps what is public about a
// borrower's loans (schedule, installments paid and missed, consents given);
// what only the borrower knows, the amounts it was lent and repaid, and the
// consent nonces it has signed but the chain may not have recorded yet,
// live in a sidecar file next to the wallet file, FILE.lending (mode 0600),
// like the journal.

// LendingPath is the lending sidecar of a wallet file.
func LendingPath(walletPath string) string { return walletPath + ".lending" }

// Lending is a wallet's local lending state.
type Lending struct {
	// ConsentNonce is the last consent nonce this wallet signed (the
	// chain's is ledger.Account.ConsentNonce: a consent still waiting to
	// be recorded is only here).
	ConsentNonce uint64              `json:"consent_nonce"`
	Consents     []ConsentRecord     `json:"consents,omitempty"`
	Applications []ApplicationRecord `json:"applications,omitempty"`
	Loans        []LoanRecord        `json:"loans,omitempty"`
}

// ConsentRecord is a consent (or revocation) this wallet signed.
type ConsentRecord struct {
	ID     string    `json:"id"` // hex ledger.Consent.ID
	Lender string    `json:"lender"`
	Scope  string    `json:"scope"` // "score" or "revoke"
	Expiry uint64    `json:"expiry"`
	Nonce  uint64    `json:"nonce"`
	Time   time.Time `json:"time"`
}

// Application kinds.
const (
	ApplyCheck   = "check"   // a decision-only score check (OpCheck)
	ApplyConsent = "consent" // a score consent
)

// ApplicationRecord is a loan application this wallet made, with what it
// knew of the lender's offer when it applied (from the policy file, if it
// read one).
type ApplicationRecord struct {
	ID           string    `json:"id"` // hex: the check's operation id or the consent's ID
	Lender       string    `json:"lender"`
	Kind         string    `json:"kind"`             // ApplyCheck or ApplyConsent
	Policy       string    `json:"policy,omitempty"` // hex SHA-256 of the lender's policy file
	PolicyName   string    `json:"policy_name,omitempty"`
	Min          uint64    `json:"min,omitempty"`          // a check's minimum score
	Amount       uint64    `json:"amount,omitempty"`       // the offered loan, cents (0: unknown)
	Installments []uint64  `json:"installments,omitempty"` // the offered installment amounts, cents
	Height       uint64    `json:"height"`                 // the height the score was read at, or the consent was signed at
	Time         time.Time `json:"time"`
}

// LoanRecord is a loan this wallet owes: its chain ID (the funding
// operation's), and what the wallet knows of its amounts.
type LoanRecord struct {
	ID           string            `json:"id"`
	Lender       string            `json:"lender"`
	Application  string            `json:"application,omitempty"`
	Amount       uint64            `json:"amount,omitempty"`       // cents, 0: unknown
	Installments []uint64          `json:"installments,omitempty"` // cents per installment, if known
	Due          []uint64          `json:"due,omitempty"`
	Repayments   []RepaymentRecord `json:"repayments,omitempty"`
}

// RepaymentRecord is one repayment this wallet sent.
type RepaymentRecord struct {
	ID     string `json:"id"`
	Amount uint64 `json:"amount"` // cents
	Height uint64 `json:"height,omitempty"`
	Status string `json:"status,omitempty"` // committed, rejected, or empty while unknown
}

// Repaid is the sum of the committed repayments recorded for the loan.
func (l *LoanRecord) Repaid() uint64 {
	var t uint64
	for _, r := range l.Repayments {
		if r.Status == "committed" {
			t += r.Amount
		}
	}
	return t
}

// Installment is the amount of installment k (0-based), 0 if unknown.
func (l *LoanRecord) Installment(k int) uint64 {
	if k < 0 || k >= len(l.Installments) {
		return 0
	}
	return l.Installments[k]
}

// Loan returns the record of loan id, nil if none.
func (s *Lending) Loan(id string) *LoanRecord {
	for i := range s.Loans {
		if s.Loans[i].ID == id {
			return &s.Loans[i]
		}
	}
	return nil
}

// Application returns the record of application id, nil if none.
func (s *Lending) Application(id string) *ApplicationRecord {
	for i := range s.Applications {
		if s.Applications[i].ID == id {
			return &s.Applications[i]
		}
	}
	return nil
}

// LatestApplication is the newest application to lender, nil if none.
func (s *Lending) LatestApplication(lender string) *ApplicationRecord {
	for i := len(s.Applications) - 1; i >= 0; i-- {
		if s.Applications[i].Lender == lender {
			return &s.Applications[i]
		}
	}
	return nil
}

// maxLendingRecords bounds each list of the sidecar: old entries are
// dropped first (the chain keeps what matters; this is a convenience).
const maxLendingRecords = 256

func trim[T any](s []T) []T {
	if len(s) > maxLendingRecords {
		return append([]T(nil), s[len(s)-maxLendingRecords:]...)
	}
	return s
}

// LoadLending reads the wallet's lending sidecar; a missing one is empty.
func (w *Wallet) LoadLending() (*Lending, error) {
	s := &Lending{}
	if w.path == "" {
		return s, nil
	}
	p := LendingPath(w.path)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, &FileError{Path: p, Err: err}
	}
	if err := json.Unmarshal(b, s); err != nil {
		return nil, &FileError{Path: p, Err: fmt.Errorf("%w: %v", ErrCorrupt, err)}
	}
	return s, nil
}

// UpdateLending reads the sidecar, lets f change it and writes it back
// atomically (mode 0600). A wallet without a file keeps nothing.
func (w *Wallet) UpdateLending(f func(*Lending) error) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	s, err := w.LoadLending()
	if err != nil {
		return err
	}
	if err := f(s); err != nil {
		return err
	}
	if w.path == "" {
		return nil
	}
	s.Consents, s.Applications, s.Loans = trim(s.Consents), trim(s.Applications), trim(s.Loans)
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	p := LendingPath(w.path)
	tmp, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".tmp*")
	if err != nil {
		return &FileError{Path: p, Err: err}
	}
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), p)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return &FileError{Path: p, Err: err}
	}
	return nil
}

// ErrConsentInput reports a consent the wallet refuses to sign.
var ErrConsentInput = errors.New("invalid consent")

// SignConsent signs a score consent (ledger.ScopeScore, valid through
// expiry) or a revocation (ledger.ScopeRevoke: every consent to lender
// withdrawn) with the next consent nonce, above both the chain's
// (chainNonce, ledger.Account.ConsentNonce) and every one this wallet
// signed, and records it in the sidecar. height is the chain's height now.
func (w *Wallet) SignConsent(chain string, lender ledger.AccountID, scope ledger.ConsentScope, expiry, height, chainNonce uint64) (ledger.Consent, error) {
	if lender == w.id {
		return ledger.Consent{}, fmt.Errorf("%w: the lender is this wallet's own account", ErrConsentInput)
	}
	switch scope {
	case ledger.ScopeScore:
		if expiry <= height || expiry > height+ledger.MaxConsentSpan {
			return ledger.Consent{}, fmt.Errorf("%w: expiry %d must be after height %d and at most %d heights later", ErrConsentInput, expiry, height, ledger.MaxConsentSpan)
		}
	case ledger.ScopeRevoke:
	default:
		return ledger.Consent{}, fmt.Errorf("%w: scope %s", ErrConsentInput, scope)
	}
	var c ledger.Consent
	err := w.UpdateLending(func(s *Lending) error {
		c = ledger.Consent{Chain: chain, Owner: w.id, Lender: lender, Scope: scope, Expiry: expiry,
			Nonce: max(s.ConsentNonce, chainNonce) + 1}
		c.Sign(w.key)
		id := c.ID()
		s.ConsentNonce = c.Nonce
		s.Consents = append(s.Consents, ConsentRecord{ID: hex.EncodeToString(id[:]), Lender: lender.String(),
			Scope: scope.String(), Expiry: expiry, Nonce: c.Nonce, Time: time.Now().UTC()})
		return nil
	})
	return c, err
}

// OpBase is what every operation of an account is built on: the account's
// last accepted operation (Prev), the next nonce, and its height (for a
// payment a recent height; for a check the height its score was read at).
type OpBase struct {
	Prev   [32]byte
	Nonce  uint64
	Height uint64
}

// CheckSpec is a decision-only score check "my score is at least min",
// addressed to lender under its policy: score is the owner's score read at
// b.Height. Building it (ledger.Dealer.Build) refuses a score below min
// with ledger.ErrBelowMinimum before anything is sent.
func (w *Wallet) CheckSpec(b OpBase, lender ledger.AccountID, min uint64, policy [32]byte, score uint64) ledger.TransferSpec {
	return ledger.TransferSpec{From: w.id, Key: w.key, To: lender, Balance: score, Height: b.Height, Prev: b.Prev, Nonce: b.Nonce,
		Kind: ledger.OpCheck, Min: min, Policy: policy}
}

// ErrSchedule reports a loan schedule the chain would refuse.
var ErrSchedule = errors.New("invalid loan schedule")

// FundSpec is a loan of amount from this wallet (a lender's pool, whose
// available balance is available) to borrower, answering the borrower's
// application, with installments due at the heights due. The chain funds
// it only if the application proved a score of at least min under policy
// (a check's); an application a score consent made proved nothing: min 0,
// policy zero.
func (w *Wallet) FundSpec(b OpBase, borrower ledger.AccountID, amount, available uint64, due []uint64, application [32]byte, min uint64, policy [32]byte) (ledger.TransferSpec, error) {
	if len(due) == 0 || len(due) > ledger.MaxInstallments {
		return ledger.TransferSpec{}, fmt.Errorf("%w: %d installments, want 1 to %d", ErrSchedule, len(due), ledger.MaxInstallments)
	}
	if due[0] <= b.Height+ledger.RepayLead {
		return ledger.TransferSpec{}, fmt.Errorf("%w: the first installment (height %d) must fall more than %d heights after height %d, so the borrower can repay it on time", ErrSchedule, due[0], ledger.RepayLead, b.Height)
	}
	prev := b.Height
	for _, d := range due {
		if d <= prev || d > b.Height+ledger.MaxLoanSpan {
			return ledger.TransferSpec{}, fmt.Errorf("%w: due heights %v must increase strictly after height %d, within %d heights", ErrSchedule, due, b.Height, ledger.MaxLoanSpan)
		}
		prev = d
	}
	return ledger.TransferSpec{From: w.id, Key: w.key, To: borrower, Amount: amount, Balance: available, Height: b.Height, Prev: b.Prev, Nonce: b.Nonce,
		Kind: ledger.OpFund, Due: append([]uint64(nil), due...), Loan: application, Min: min, Policy: policy}, nil
}

// RepaySpec is a repayment of amount on loan (its funding operation's ID)
// to its lender, from this wallet's available balance available.
func (w *Wallet) RepaySpec(b OpBase, lender ledger.AccountID, loan [32]byte, amount, available uint64) ledger.TransferSpec {
	return ledger.TransferSpec{From: w.id, Key: w.key, To: lender, Amount: amount, Balance: available, Height: b.Height, Prev: b.Prev, Nonce: b.Nonce,
		Kind: ledger.OpRepay, Loan: loan}
}

// ApplySpec moves this wallet's pending balance pending, read at height,
// into its available balance.
func (w *Wallet) ApplySpec(b OpBase, pending uint64) ledger.TransferSpec {
	return ledger.TransferSpec{From: w.id, Key: w.key, To: w.id, Amount: pending, Balance: pending, Height: b.Height, Prev: b.Prev, Nonce: b.Nonce}
}
