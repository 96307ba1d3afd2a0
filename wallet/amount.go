package wallet

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/zkbank/zkbank/ledger"
)

// ErrAmount reports an amount that is not a positive decimal with at most two
// fractional digits, or that exceeds what the ledger can represent.
var ErrAmount = errors.New("invalid amount")

// ParseAmount converts decimal currency units ("12.34", "5", "0.5") to
// integer cents. It never goes through floating point.
func ParseAmount(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	whole, frac, hasDot := strings.Cut(s, ".")
	if whole == "" && (!hasDot || frac == "") {
		return 0, fmt.Errorf("%w %q: want a decimal like 12.34", ErrAmount, s)
	}
	if len(frac) > 2 {
		return 0, fmt.Errorf("%w %q: at most 2 decimals (cents)", ErrAmount, s)
	}
	if hasDot && frac == "" {
		return 0, fmt.Errorf("%w %q: digits expected after the point", ErrAmount, s)
	}
	if !allDigits(whole) || !allDigits(frac) {
		return 0, fmt.Errorf("%w %q: want a positive decimal like 12.34", ErrAmount, s)
	}
	for len(frac) < 2 {
		frac += "0"
	}
	if whole == "" {
		whole = "0"
	}
	if len(whole) > 12 {
		return 0, fmt.Errorf("%w %q: exceeds the maximum %s", ErrAmount, s, FormatAmount(ledger.MaxAmount))
	}
	w, err := strconv.ParseUint(whole, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w %q", ErrAmount, s)
	}
	f, _ := strconv.ParseUint(frac, 10, 64)
	c := w*100 + f
	if c == 0 {
		return 0, fmt.Errorf("%w %q: must be positive", ErrAmount, s)
	}
	if c > ledger.MaxAmount {
		return 0, fmt.Errorf("%w %q: exceeds the maximum %s", ErrAmount, s, FormatAmount(ledger.MaxAmount))
	}
	return c, nil
}

func allDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}

// FormatAmount renders cents as currency units with two decimals.
func FormatAmount(cents uint64) string {
	return fmt.Sprintf("%d.%02d", cents/100, cents%100)
}
