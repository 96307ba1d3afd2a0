package ledger

import (
	"crypto/ed25519"
	"crypto/rand"
	"testing"
)

// A signed score request verifies only for exactly what was signed, by the
// requester's key; the owner's own request reads the same whether it names
// itself or nobody; and no balance request verifies as a score request.
func TestScoreQuery_BindsEveryFieldAndIsDomainSeparated(t *testing.T) {
	opub, okey, _ := ed25519.GenerateKey(rand.Reader)
	lpub, lkey, _ := ed25519.GenerateKey(rand.Reader)
	owner, lender := AccountIDOf(opub), AccountIDOf(lpub)
	q := BalanceQuery{Height: 10, Expiry: 40, Nonce: 7}
	pk := []byte("owner key")
	sig := ed25519.Sign(lkey, ScoreQueryBytes("c", owner, lender, 3, q, pk))
	if !VerifyScoreQuery(lpub, "c", owner, lender, 3, q, pk, sig) {
		t.Fatal("the lender's request does not verify")
	}
	for name, ok := range map[string]bool{
		"other chain":         VerifyScoreQuery(lpub, "d", owner, lender, 3, q, pk, sig),
		"other owner":         VerifyScoreQuery(lpub, "c", lender, lender, 3, q, pk, sig),
		"other consent nonce": VerifyScoreQuery(lpub, "c", owner, lender, 4, q, pk, sig),
		"other height":        VerifyScoreQuery(lpub, "c", owner, lender, 3, BalanceQuery{Height: 11, Expiry: 40, Nonce: 7}, pk, sig),
		"other expiry":        VerifyScoreQuery(lpub, "c", owner, lender, 3, BalanceQuery{Height: 10, Expiry: 41, Nonce: 7}, pk, sig),
		"other nonce":         VerifyScoreQuery(lpub, "c", owner, lender, 3, BalanceQuery{Height: 10, Expiry: 40, Nonce: 8}, pk, sig),
		"other target key":    VerifyScoreQuery(lpub, "c", owner, lender, 3, q, []byte("lender's other key"), sig),
		"as the owner's":      VerifyScoreQuery(lpub, "c", owner, AccountID{}, 3, q, pk, sig),
		"by the owner's key":  VerifyScoreQuery(opub, "c", owner, lender, 3, q, pk, ed25519.Sign(okey, ScoreQueryBytes("c", owner, lender, 3, q, pk))),
	} {
		if ok {
			t.Errorf("%s: verified", name)
		}
	}
	own := ed25519.Sign(okey, ScoreQueryBytes("c", owner, AccountID{}, 0, q, pk))
	if !VerifyScoreQuery(opub, "c", owner, AccountID{}, 0, q, pk, own) || !VerifyScoreQuery(opub, "c", owner, owner, 9, q, pk, own) {
		t.Fatal("the owner's own request does not verify in both spellings")
	}
	bal := ed25519.Sign(okey, BalanceQueryBytes("c", owner, q, pk))
	if VerifyScoreQuery(opub, "c", owner, AccountID{}, 0, q, pk, bal) {
		t.Fatal("a balance request verified as a score request")
	}
	if VerifyBalanceQuery(opub, "c", owner, q, pk, own) {
		t.Fatal("a score request verified as a balance request")
	}
}
