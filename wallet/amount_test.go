package wallet

import (
	"errors"
	"testing"

	"github.com/zkbank/zkbank/ledger"
)

func TestParseAmount(t *testing.T) {
	good := map[string]uint64{
		"12.34":         1234,
		"12":            1200,
		"12.3":          1230,
		"0.01":          1,
		".5":            50,
		" 7.00 ":        700,
		"1000.00":       100_000,
		"42949672.95":   ledger.MaxAmount,
		"000000000.10":  10,
		"10000000.00":   1_000_000_000,
		"0042949672.95": ledger.MaxAmount,
	}
	for in, want := range good {
		got, err := ParseAmount(in)
		if err != nil || got != want {
			t.Errorf("ParseAmount(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	bad := []string{"", ".", "-1", "+1", "1.234", "0", "0.00", "1e3", "1,000", "12.", "abc", "42949672.96", "99999999999999999999", "1.2.3", "0x10", "1 2"}
	for _, in := range bad {
		if got, err := ParseAmount(in); !errors.Is(err, ErrAmount) {
			t.Errorf("ParseAmount(%q) = %d, %v; want ErrAmount", in, got, err)
		}
	}
}

func TestFormatAmount(t *testing.T) {
	for cents, want := range map[uint64]string{0: "0.00", 1: "0.01", 1234: "12.34", 100_000: "1000.00", ledger.MaxAmount: "42949672.95"} {
		if got := FormatAmount(cents); got != want {
			t.Errorf("FormatAmount(%d) = %q, want %q", cents, got, want)
		}
	}
}

func TestAmountRoundTrip(t *testing.T) {
	for _, c := range []uint64{1, 9, 10, 99, 100, 101, 123456, ledger.MaxAmount} {
		got, err := ParseAmount(FormatAmount(c))
		if err != nil || got != c {
			t.Errorf("round trip %d: %d %v", c, got, err)
		}
	}
}
