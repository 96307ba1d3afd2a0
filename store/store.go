package store

import (
	"context"
	"errors"
)

// Sentinel errors. Every error the package returns wraps one of these or an
// underlying I/O error, so callers branch with errors.Is.
var (
	// ErrNotFound: no value is stored under the requested key.
	ErrNotFound = errors.New("store: not found")
	// ErrCorrupt: a stored value failed its checksum or is malformed. The
	// bytes are not returned: a node must resync that record, not decode it.
	ErrCorrupt = errors.New("store: corrupt value")
	// ErrOutOfOrder: a Commit height is not last-applied+1, or a WAL record's
	// height is below that of the previous record.
	ErrOutOfOrder = errors.New("store: out of order")
	// ErrTooLarge: a Commit does not fit in one Badger transaction (too many
	// small records for the memtable size; large values do not count).
	ErrTooLarge = errors.New("store: batch too large for one transaction")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrInvalid: an argument is malformed (empty id or key).
	ErrInvalid = errors.New("store: invalid argument")
)

// WAL is the consensus write-ahead log. Records are opaque; the height lets
// the log be truncated once a height is committed.
type WAL interface {
	// Append stores rec for height and returns only once it is durable
	// (synced): a node may send the vote rec describes after Append returns.
	// Heights must not decrease from one record to the next.
	Append(height uint64, rec []byte) error
	// Records returns every record not yet truncated, in append order.
	Records() ([][]byte, error)
	// TruncateBefore deletes every record whose height is below height.
	TruncateBefore(height uint64) error
}

// BlockStore keeps committed blocks and their commit certificates by height.
type BlockStore interface {
	// SaveBlock stores a block and its certificate, synced before return.
	SaveBlock(height uint64, block, cert []byte) error
	Block(height uint64) ([]byte, error)
	Cert(height uint64) ([]byte, error)
	// LastHeight is the highest height with a stored block, 0 if none.
	LastHeight() (uint64, error)
}

// StateStore keeps each shard's encrypted state by height.
type StateStore interface {
	PutState(height uint64, shard uint32, data []byte) error
	State(height uint64, shard uint32) ([]byte, error)
	// Prune deletes the states of every height below keepFrom. It is
	// idempotent but not atomic: a crash may leave some of those states.
	Prune(keepFrom uint64) error
}

// Meta keeps small node metadata (chain id, genesis hash, work credits).
// The last-applied height is not in this namespace: see Committer.
type Meta interface {
	GetMeta(key string) ([]byte, error)
	PutMeta(key string, value []byte) error
}

// Status keeps transfer status records: transfer id -> opaque record.
type Status interface {
	PutStatus(id, rec []byte) error
	Status(id []byte) ([]byte, error)
}

// Accounts keeps the account index: account id -> opaque record.
type Accounts interface {
	PutAccount(id, rec []byte) error
	Account(id []byte) ([]byte, error)
}

// Committer applies a whole height at once.
type Committer interface {
	// Commit writes b and sets the last-applied height to height, all or
	// nothing, and returns once that is durable. height must be
	// LastApplied()+1; heights start at 1.
	Commit(height uint64, b Batch) error
	// LastApplied is the height of the last Commit, 0 if none.
	LastApplied() (uint64, error)
}

// Backend is everything a node needs from its store. *Store (Badger) and
// *Memory both implement it.
type Backend interface {
	WAL
	BlockStore
	StateStore
	Meta
	Status
	Accounts
	Committer
	// RunGC reclaims value-log space freed by Prune and overwrites; it
	// returns how many value-log files were rewritten.
	RunGC(ctx context.Context) (int, error)
	Close() error
}

// Batch is everything one height changes. Nil slices are fine.
type Batch struct {
	Block    []byte
	Cert     []byte
	States   []ShardState
	Statuses []Record // Key is the transfer id.
	Accounts []Record // Key is the account id.
	Meta     []Record // Key is the metadata key.
	// DeleteMeta removes metadata keys in the same transaction (e.g. uploads
	// no longer needed once the height that decided them is durable).
	DeleteMeta [][]byte
}

// ShardState is one shard's encrypted state at the batch's height.
type ShardState struct {
	Shard uint32
	Data  []byte
}

// Record is a key and an opaque value.
type Record struct {
	Key   []byte
	Value []byte
}

var (
	_ Backend = (*Store)(nil)
	_ Backend = (*Memory)(nil)
)
