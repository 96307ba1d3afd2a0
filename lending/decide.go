package lending

import (
	"encoding/hex"
	"fmt"
)

// Application kinds, as a bot sees them.
const (
	KindCheck   = "check"   // an accepted OpCheck addressed to the lender's pool
	KindConsent = "consent" // a score consent to the lender
)

// Application is one loan request a bot considers.
type Application struct {
	ID       string // hex: the check's operation id, or the consent's ID
	Borrower string // hex account id
	Kind     string // KindCheck or KindConsent
	Height   uint64 // block that recorded it
	// A check's: the validators' verdict code ("" when accepted), its
	// minimum and its policy hash.
	Code   string
	Reason string
	Min    uint64
	Policy string
	// A consent's nonce (what LenderScore names), and the score the lender
	// read under it.
	Nonce    uint64
	Score    uint64
	ScoreErr error // why the score could not be read
}

// Decisions.
const (
	Fund   = "fund"
	Refuse = "refuse"
)

// Limits is what a decision needs to know beyond the application: the
// lender's loans open now and the borrower's open loans (all lenders).
type Limits struct {
	OpenLoans         int // this lender's open loans
	BorrowerOpenLoans int // the borrower's open loans, every lender
	MaxBorrowerLoans  int // the chain's limit (ledger.MaxLoans)
}

// Decide is a bot's policy applied to one application: Fund or Refuse,
// and why, in words fit for its log. It is pure: whether the application
// is still open on chain and whether the pool can pay are checked when
// funding.
func Decide(p *Policy, policyHash [32]byte, a Application, lim Limits) (string, string) {
	switch a.Kind {
	case KindCheck:
		if p.Mode != ModeDecision {
			return Refuse, "this lender decides on the score itself (score mode): record a score consent ('zkbank wallet loan apply --share-score')"
		}
		if a.Code != "" {
			return Refuse, fmt.Sprintf("the validators rejected the check: %s (%s)", a.Reason, a.Code)
		}
		if want := hex.EncodeToString(policyHash[:]); a.Policy != want {
			return Refuse, fmt.Sprintf("the check names policy %s, not this lender's policy %s", short(a.Policy), short(want))
		}
		if a.Min < p.MinScore {
			return Refuse, fmt.Sprintf("the check proves score >= %d, below this policy's min_score %d", a.Min, p.MinScore)
		}
	case KindConsent:
		if p.Mode != ModeScore {
			return Refuse, "this lender decides on one bit (decision mode): submit a check ('zkbank wallet loan apply --policy ... --min ...')"
		}
		if a.ScoreErr != nil {
			return Refuse, fmt.Sprintf("the score could not be read under the consent: %v", a.ScoreErr)
		}
		if a.Score < p.MinScore {
			return Refuse, fmt.Sprintf("score %d is below min_score %d", a.Score, p.MinScore)
		}
	default:
		return Refuse, fmt.Sprintf("unknown application kind %q", a.Kind)
	}
	if lim.OpenLoans >= p.MaxOpenLoans {
		return Refuse, fmt.Sprintf("this lender already has %d open loans (max_open_loans %d)", lim.OpenLoans, p.MaxOpenLoans)
	}
	if lim.MaxBorrowerLoans > 0 && lim.BorrowerOpenLoans >= lim.MaxBorrowerLoans {
		return Refuse, fmt.Sprintf("the borrower already has %d open loans, the chain's limit", lim.BorrowerOpenLoans)
	}
	if a.Kind == KindCheck {
		return Fund, fmt.Sprintf("check accepted: score >= %d (min_score %d) under this policy", a.Min, p.MinScore)
	}
	return Fund, fmt.Sprintf("score %d >= min_score %d", a.Score, p.MinScore)
}
