package node

import (
	"errors"
	"testing"

	"github.com/zkbank/zkbank/ledger"
)

// One account signing re-encryption requests with fresh nonces fills only
// its own share of the replay table: past maxQueriesPerAccount unexpired
// requests it is told "busy", while every other account's reads still get
// in; its slots come back once its requests expire. A replay is refused.
func TestAttack_OneAccountCannotFillTheReplayTable(t *testing.T) {
	var u usedQueries
	spam, honest := ledger.AccountID{1}, ledger.AccountID{2}
	for i := 0; i < maxQueriesPerAccount; i++ {
		if err := u.use(queryScore, spam, ledger.BalanceQuery{Nonce: uint64(i), Expiry: 100}, 10); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if err := u.use(queryBalance, spam, ledger.BalanceQuery{Nonce: 1 << 40, Expiry: 100}, 10); !errors.Is(err, errQueriesFull) {
		t.Fatalf("request beyond the account's share: %v", err)
	}
	if err := u.use(queryBalance, honest, ledger.BalanceQuery{Nonce: 7, Expiry: 100}, 10); err != nil {
		t.Fatalf("another account's read: %v", err)
	}
	if err := u.use(queryBalance, honest, ledger.BalanceQuery{Nonce: 7, Expiry: 100}, 10); !errors.Is(err, errQueryReplayed) {
		t.Fatalf("a replayed read: %v", err)
	}
	if err := u.use(queryScore, spam, ledger.BalanceQuery{Nonce: 1 << 41, Expiry: 300}, 101); err != nil {
		t.Fatalf("after its requests expired: %v", err)
	}
}
