package node

import (
	"errors"
	"fmt"
	"sync"

	"github.com/zkbank/zkbank/ledger"
)

// usedQueries remembers the balance requests this node answered until they
// expire, so a captured request is answered at most once. Entries leave when
// their expiry height passes; the set is bounded, and a full set refuses new
// requests (the wallet retries) rather than forgetting unexpired ones.
type usedQueries struct {
	mu   sync.Mutex
	seen map[queryKey]uint64 // -> expiry height
}

type queryKey struct {
	account ledger.AccountID
	nonce   uint64
}

// maxUsedQueries bounds the remembered requests (about 5 MB).
const maxUsedQueries = 1 << 16

var (
	errQueryReplayed = errors.New("balance request already answered (replayed)")
	errQueriesFull   = errors.New("too many balance requests in flight; retry")
)

// use records q for account, or refuses it if it was seen before. height is
// the node's finalized height: entries that expired before it are dropped.
func (u *usedQueries) use(account ledger.AccountID, q ledger.BalanceQuery, height uint64) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.seen == nil {
		u.seen = map[queryKey]uint64{}
	}
	k := queryKey{account, q.Nonce}
	if _, ok := u.seen[k]; ok {
		return fmt.Errorf("%w: nonce %d of account %s", errQueryReplayed, q.Nonce, account.Short())
	}
	if len(u.seen) >= maxUsedQueries {
		for k, exp := range u.seen {
			if exp < height {
				delete(u.seen, k)
			}
		}
		if len(u.seen) >= maxUsedQueries {
			return errQueriesFull
		}
	}
	u.seen[k] = q.Expiry
	return nil
}
