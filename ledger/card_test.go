package ledger

import (
	"errors"
	"testing"
)

// Card mode: the issuer grants a credit line by transferring the limit into
// the card account from its own credit-line account; the holder charges
// merchants; the card's encrypted "balance" is available credit (limit minus
// spent), which only the holder decrypts. The issuer never sees a charge.
func TestCard_ChargeAgainstLimitAndHolderDecryptsAvailable(t *testing.T) {
	w := newWorld(t, map[string]uint64{"issuer": 1_000_000, "merchant": 0}, map[string]AccountKind{"card": KindCard}, "issuer", "card", "merchant")
	grant, _ := w.b.Build(w.spec("issuer", "card", 1_000, 1_000_000)) // limit 10.00
	if r := reason(t, w.block(t, grant), grant); r != Accepted {
		t.Fatal(r)
	}
	// The grant lands in the card's pending balance; the holder applies it.
	if a, p := w.balances(t, "card"); a != 0 || p != 1_000 {
		t.Fatalf("card holds %d available, %d pending after the grant", a, p)
	}
	ap, _ := w.b.Build(w.applySpec("card", 1_000, 1_000))
	if r := reason(t, w.block(t, ap), ap); r != Accepted {
		t.Fatal(r)
	}
	charge, _ := w.b.Build(w.spec("card", "merchant", 400, 1_000))
	if r := reason(t, w.block(t, charge), charge); r != Accepted {
		t.Fatal(r)
	}
	if avail := w.balance(t, "card"); avail != 600 {
		t.Fatalf("available credit = %d, want 600 (spent = limit - available = 400)", avail)
	}
	// An honest wallet declines an over-limit charge before sending anything.
	if _, err := w.b.Build(w.spec("card", "merchant", 700, 600)); !errors.Is(err, ErrInsufficientFunds) {
		t.Fatalf("over-limit charge built: %v", err)
	}
	// A hacked wallet sending it anyway is rejected by the validators.
	s := w.spec("card", "merchant", 700, 600)
	vals := make([]uint64, w.nw.p.Slots)
	w.nw.p.EncodeLanes(vals, s.Lane, 700, (600-700)&MaxAmount)
	forced := w.forged(t, vals, s)
	if r := reason(t, w.block(t, forced), forced); r != RejectBalanceMismatch {
		t.Fatalf("over-limit charge: %v", r)
	}
	w.expectBalances(t, map[string]uint64{"card": 600, "merchant": 400, "issuer": 999_000})
}
