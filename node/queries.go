package node

import (
	"errors"
	"fmt"
	"sync"

	"github.com/zkbank/zkbank/ledger"
)

// usedQueries remembers the re-encryption requests (balance and score) this
// node answered until they expire, so a captured request is answered at
// most once. Entries leave when
// their expiry height passes; the set is bounded, and a full set refuses new
// requests (the wallet retries) rather than forgetting unexpired ones.
type usedQueries struct {
	mu   sync.Mutex
	seen map[queryKey]uint64 // -> expiry height
	by   map[ledger.AccountID]int
}

// maxQueriesPerAccount bounds one requester's remembered requests: one
// account signing requests with fresh nonces fills its own share, not the
// set every other account's reads need.
const maxQueriesPerAccount = 256

// queryKind tells balance requests from score requests: each kind is
// answered once per (requester, nonce), independently of the other (their
// signatures are domain-separated, so neither can be replayed as the other).
type queryKind uint8

const (
	queryBalance queryKind = iota
	queryScore
)

func (k queryKind) String() string {
	if k == queryScore {
		return "score"
	}
	return "balance"
}

type queryKey struct {
	kind    queryKind
	account ledger.AccountID // the requester: the owner, or a lender reading a score
	nonce   uint64
}

// maxUsedQueries bounds the remembered requests (about 5 MB).
const maxUsedQueries = 1 << 16

var (
	errQueryReplayed = errors.New("request already answered (replayed)")
	errQueriesFull   = errors.New("too many balance or score requests in flight; retry")
)

// use records q of the given kind by account (the requester), or refuses it
// if it was seen before. height is the node's finalized height: entries
// that expired before it are dropped.
func (u *usedQueries) use(kind queryKind, account ledger.AccountID, q ledger.BalanceQuery, height uint64) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.seen == nil {
		u.seen, u.by = map[queryKey]uint64{}, map[ledger.AccountID]int{}
	}
	k := queryKey{kind, account, q.Nonce}
	if _, ok := u.seen[k]; ok {
		return fmt.Errorf("%s %w: nonce %d of account %s", kind, errQueryReplayed, q.Nonce, account.Short())
	}
	if len(u.seen) >= maxUsedQueries || u.by[account] >= maxQueriesPerAccount {
		for k, exp := range u.seen {
			if exp < height {
				delete(u.seen, k)
				if u.by[k.account]--; u.by[k.account] <= 0 {
					delete(u.by, k.account)
				}
			}
		}
		if len(u.seen) >= maxUsedQueries {
			return errQueriesFull
		}
		if u.by[account] >= maxQueriesPerAccount {
			return fmt.Errorf("%w: account %s has %d unexpired requests", errQueriesFull, account.Short(), maxQueriesPerAccount)
		}
	}
	u.seen[k] = q.Expiry
	u.by[account]++
	return nil
}
