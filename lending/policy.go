package lending

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/wallet"
)

// Policy modes.
const (
	// ModeDecision: the lender learns one bit, "score >= min_score", from an
	// OpCheck the borrower submits under this policy's hash.
	ModeDecision = "decision"
	// ModeScore: the borrower records a score consent; the lender reads the
	// score itself and approves it if it is at least min_score.
	ModeScore = "score"
)

// Policy is a lender's published terms: a JSON file whose SHA-256 (of its
// exact bytes) borrowers name in their checks.
//
//	{
//	  "name": "demo-lender",
//	  "mode": "decision",
//	  "min_score": 250000,
//	  "amount": "100.00",
//	  "installments": 3,
//	  "interval": 40,
//	  "max_open_loans": 16
//	}
type Policy struct {
	Name string `json:"name"`
	Mode string `json:"mode"`
	// MinScore is the lowest score the lender funds (score points: with the
	// default weights one point per cent available).
	MinScore uint64 `json:"min_score"`
	// Amount is what each loan lends, in currency units ("100.00").
	Amount string `json:"amount"`
	// Installments is how many repayments a loan is due in.
	Installments int `json:"installments"`
	// Interval is the number of heights between installments; the first is
	// due Interval heights after the loan is funded.
	Interval uint64 `json:"interval"`
	// MaxOpenLoans bounds the loans of this lender open at once, all
	// borrowers together (its exposure).
	MaxOpenLoans int `json:"max_open_loans"`

	cents uint64
}

// MinInterval is the shortest interval a policy may set: a loan's first
// installment must still be more than ledger.RepayLead heights ahead when
// the chain orders the loan, a few heights after the lender built it.
const MinInterval = 2 * ledger.RepayLead

// ErrPolicy reports an invalid policy file.
var ErrPolicy = errors.New("invalid lending policy")

// ParsePolicy decodes and validates a policy file's bytes.
func ParsePolicy(b []byte) (*Policy, error) {
	var p Policy
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&p); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrPolicy, err)
	}
	if err := p.validate(); err != nil {
		return nil, err
	}
	return &p, nil
}

func (p *Policy) validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: %s", ErrPolicy, fmt.Sprintf(format, a...))
	}
	if strings.TrimSpace(p.Name) == "" || len(p.Name) > 64 {
		return bad("name must be 1 to 64 characters")
	}
	if p.Mode != ModeDecision && p.Mode != ModeScore {
		return bad("mode %q: want %q or %q", p.Mode, ModeDecision, ModeScore)
	}
	if p.MinScore > ledger.MaxAmount {
		return bad("min_score %d exceeds %d", p.MinScore, uint64(ledger.MaxAmount))
	}
	c, err := wallet.ParseAmount(p.Amount)
	if err != nil {
		return bad("amount: %v", err)
	}
	p.cents = c
	if p.Installments < 1 || p.Installments > ledger.MaxInstallments {
		return bad("installments %d: want 1 to %d", p.Installments, ledger.MaxInstallments)
	}
	if uint64(p.Installments) > c {
		return bad("amount %s cannot be split into %d installments of at least 0.01", p.Amount, p.Installments)
	}
	if p.Interval < MinInterval || p.Interval*uint64(p.Installments) > ledger.MaxLoanSpan {
		return bad("interval %d: want at least %d heights, and interval * installments at most %d", p.Interval, MinInterval, ledger.MaxLoanSpan)
	}
	if p.MaxOpenLoans < 1 {
		return bad("max_open_loans %d: want at least 1", p.MaxOpenLoans)
	}
	return nil
}

// Cents is the loan amount in cents.
func (p *Policy) Cents() uint64 { return p.cents }

// InstallmentAmounts splits the loan into its installments: equal parts,
// the remainder cents on the last one.
func (p *Policy) InstallmentAmounts() []uint64 {
	return Split(p.cents, p.Installments)
}

// Split divides amount into n installments: equal parts, the remainder on
// the last.
func Split(amount uint64, n int) []uint64 {
	if n < 1 {
		return nil
	}
	out := make([]uint64, n)
	each := amount / uint64(n)
	for i := range out {
		out[i] = each
	}
	out[n-1] += amount - each*uint64(n)
	return out
}

// Schedule is the due heights of a loan funded at height now:
// now + Interval*k for k = 1..Installments.
func (p *Policy) Schedule(now uint64) []uint64 {
	out := make([]uint64, p.Installments)
	for k := range out {
		out[k] = now + p.Interval*uint64(k+1)
	}
	return out
}

// Hash is the SHA-256 of a policy file's exact bytes: what a borrower's
// check names and a bot compares.
func Hash(b []byte) [32]byte { return sha256.Sum256(b) }

// LoadPolicy reads and validates a policy file; it returns the policy and
// the hash of the file's bytes.
func LoadPolicy(path string) (*Policy, [32]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("policy file: %w", err)
	}
	p, err := ParsePolicy(b)
	if err != nil {
		return nil, [32]byte{}, fmt.Errorf("policy file %s: %w", path, err)
	}
	return p, Hash(b), nil
}

// maxPolicyBytes bounds a policy file fetched over HTTP.
const maxPolicyBytes = 64 << 10

// ResolvePolicy reads a lender's policy as a borrower names it: a policy
// file, an http(s) URL serving one, or just its hash (64 hex digits). The
// policy is nil when only the hash was given.
func ResolvePolicy(ctx context.Context, arg string) (*Policy, [32]byte, error) {
	var h [32]byte
	arg = strings.TrimSpace(arg)
	if b, err := hex.DecodeString(arg); err == nil && len(b) == 32 {
		if _, statErr := os.Stat(arg); statErr != nil { // a file named like a hash wins
			copy(h[:], b)
			return nil, h, nil
		}
	}
	if strings.HasPrefix(arg, "http://") || strings.HasPrefix(arg, "https://") {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		req, err := http.NewRequestWithContext(cctx, http.MethodGet, arg, nil)
		if err != nil {
			return nil, h, fmt.Errorf("policy URL %q: %w", arg, err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil, h, fmt.Errorf("policy URL: %w", err)
		}
		defer resp.Body.Close()
		if resp.StatusCode/100 != 2 {
			return nil, h, fmt.Errorf("policy URL %s: HTTP %d", arg, resp.StatusCode)
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxPolicyBytes+1))
		if err != nil {
			return nil, h, fmt.Errorf("policy URL %s: %w", arg, err)
		}
		if len(b) > maxPolicyBytes {
			return nil, h, fmt.Errorf("policy URL %s: larger than %d bytes", arg, maxPolicyBytes)
		}
		p, err := ParsePolicy(b)
		if err != nil {
			return nil, h, fmt.Errorf("policy at %s: %w", arg, err)
		}
		return p, Hash(b), nil
	}
	return LoadPolicy(arg)
}
