package ledger

import (
	"crypto/ed25519"
	"crypto/sha256"

	"github.com/zkbank/zkbank/internal/wire"
)

// ScoreQueryBytes is what a requester signs to have an owner's credit score
// re-encrypted to ownerPK (its own HE key, bound by hash): the owner itself
// (requester zero, or the owner's own id) or a lender naming the nonce of
// the score consent the owner gave it. The height, expiry and nonce rules
// are a balance query's (BalanceQuery). Domain-separated from
// BalanceQueryBytes, so a signed balance request can never be replayed as a
// score request, nor the other way round.
func ScoreQueryBytes(chain string, owner, requester AccountID, consentNonce uint64, q BalanceQuery, ownerPK []byte) []byte {
	if requester == owner {
		// One encoding for the owner's own query, however it names itself.
		requester = AccountID{}
	}
	if requester == (AccountID{}) {
		consentNonce = 0 // the owner needs no consent
	}
	var w wire.Writer
	w.Fixed([]byte("zkbank/score/v1\x00"))
	w.Bytes([]byte(chain))
	w.Fixed(owner[:])
	w.Fixed(requester[:])
	w.U64(consentNonce)
	w.U64(q.Height)
	w.U64(q.Expiry)
	w.U64(q.Nonce)
	h := sha256.Sum256(ownerPK)
	w.Fixed(h[:])
	return w.B
}

// VerifyScoreQuery checks a signed score request: pub must be the
// requester's account key (the owner's when requester is zero) and sig its
// signature over ScoreQueryBytes.
func VerifyScoreQuery(pub ed25519.PublicKey, chain string, owner, requester AccountID, consentNonce uint64, q BalanceQuery, ownerPK, sig []byte) bool {
	signer := requester
	if signer == (AccountID{}) {
		signer = owner
	}
	return len(pub) == ed25519.PublicKeySize && AccountIDOf(pub) == signer &&
		ed25519.Verify(pub, ScoreQueryBytes(chain, owner, requester, consentNonce, q, ownerPK), sig)
}
