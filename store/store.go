package store

import (
	"context"
	"errors"
	"fmt"
)

// Sentinel errors. Every error a Backend returns wraps one of these or an
// underlying I/O error, so callers branch with errors.Is, whichever
// implementation they hold.
var (
	// ErrNotFound: no value is stored under the requested key.
	ErrNotFound = errors.New("store: not found")
	// ErrCorrupt: a stored value failed its checksum or is malformed. The
	// bytes are not returned: a node must resync that record, not decode it.
	ErrCorrupt = errors.New("store: corrupt value")
	// ErrOutOfOrder: a Commit height is not last-applied+1, or a WAL record's
	// height is below that of the previous record.
	ErrOutOfOrder = errors.New("store: out of order")
	// ErrTooLarge: a Commit does not fit in one transaction of the backend
	// (Badger: too many small records for the memtable size; large values
	// do not count).
	ErrTooLarge = errors.New("store: batch too large for one transaction")
	// ErrClosed: the store was closed.
	ErrClosed = errors.New("store: closed")
	// ErrInvalid: an argument is malformed (empty id or key, or one longer
	// than MaxIDLen).
	ErrInvalid = errors.New("store: invalid argument")
)

// MaxIDLen is the longest transfer id or metadata key a Backend accepts. It
// keeps keys well inside Badger's 64 KiB key limit.
const MaxIDLen = 1024

// CheckID returns nil if id is a valid transfer id or metadata key (1 to
// MaxIDLen bytes), and otherwise an error wrapping ErrInvalid. Every Backend
// validates ids with it, so they accept and refuse the same ones.
func CheckID(id []byte) error {
	if len(id) == 0 || len(id) > MaxIDLen {
		return fmt.Errorf("%w: id of %d bytes (want 1..%d)", ErrInvalid, len(id), MaxIDLen)
	}
	return nil
}

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

// BlockStore reads committed blocks and their commit certificates by height.
// They are written by Commit.
type BlockStore interface {
	Block(height uint64) ([]byte, error)
	Cert(height uint64) ([]byte, error)
}

// StateStore keeps each shard's encrypted state by height.
type StateStore interface {
	// PutState stores one shard's state outside a Commit (the node re-files
	// the state kept across a Prune); it is synced before it returns.
	PutState(height uint64, shard uint32, data []byte) error
	State(height uint64, shard uint32) ([]byte, error)
	// Prune deletes the states of every height below keepFrom. It is
	// idempotent but not atomic: a crash may leave some of those states.
	Prune(keepFrom uint64) error
}

// Meta reads small node metadata (work credits, account registry, uploads).
// It is written and deleted by Commit (Batch.Meta, Batch.DeleteMeta). The
// last-applied height is not in this namespace: see Committer.
type Meta interface {
	GetMeta(key string) ([]byte, error)
}

// Status reads transfer status records (transfer id -> opaque record),
// written by Commit (Batch.Statuses).
type Status interface {
	Status(id []byte) ([]byte, error)
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

// Blobs keeps large content-addressed values (piece ciphertexts, 1.25 MiB
// each) outside the key-value store: plain files, which the kernel caches but
// the process does not map, so they do not count in its resident memory, and
// value-log GC never rewrites them. Their index lives in Meta (written by
// Commit), so a blob is written before the Commit that references it and
// deleted after the Commit that drops its reference.
type Blobs interface {
	// PutBlobs stores each blob under its key, which must be its SHA-256
	// (else ErrInvalid, and blobs before it in key order may be stored),
	// and returns once all are durable (synced). Storing a blob already
	// stored does nothing.
	PutBlobs(blobs map[[32]byte][]byte) error
	// Blob returns the blob stored under h (ErrNotFound if none, or if what
	// is stored does not hash to h: a torn write is a missing blob).
	Blob(h [32]byte) ([]byte, error)
	// DeleteBlob deletes the blob stored under h; deleting a missing blob
	// is not an error.
	DeleteBlob(h [32]byte) error
}

// Backend is everything a node needs from its store. *badgerstore.Store
// (package store/badgerstore) and *Memory both implement it.
type Backend interface {
	WAL
	BlockStore
	StateStore
	Meta
	Status
	Committer
	Installer
	Blobs
	// RunGC reclaims space freed by Prune and overwrites (Badger: value-log
	// files); it returns how many files were rewritten.
	RunGC(ctx context.Context) (int, error)
	Close() error
}

// Installer jumps a store to a height it did not commit one by one: a
// state snapshot fetched from peers (docs/STORAGE.md, "State snapshots").
type Installer interface {
	// Install writes every block, certificate, state and metadata record of
	// in, deletes in.DeleteMeta, and sets the last-applied height to
	// in.Height, all or nothing, and returns once that is durable.
	// in.Height must be above LastApplied() (else ErrOutOfOrder), and no
	// block or state of in may be above in.Height (ErrInvalid). What the
	// store held before stays (older heights are not cleared).
	Install(in Install) error
}

// Install is what Installer.Install writes. Nil slices are fine.
type Install struct {
	Height     uint64
	Blocks     []HeightBlock
	States     []HeightState
	Meta       []Record
	DeleteMeta [][]byte
}

// HeightBlock is a block (and its certificate, possibly empty) at a height.
type HeightBlock struct {
	Height uint64
	Block  []byte
	Cert   []byte
}

// HeightState is one shard's encrypted state at a height.
type HeightState struct {
	Height uint64
	Shard  uint32
	Data   []byte
}

// CheckInstall checks what every backend refuses in an Install: a height
// not above applied, a block or state above the installed height, a bad
// metadata key.
func CheckInstall(applied uint64, in Install) error {
	if in.Height <= applied {
		return fmt.Errorf("%w: install of height %d at %d", ErrOutOfOrder, in.Height, applied)
	}
	for _, b := range in.Blocks {
		if b.Height == 0 || b.Height > in.Height {
			return fmt.Errorf("%w: block of height %d in an install of %d", ErrInvalid, b.Height, in.Height)
		}
	}
	for _, st := range in.States {
		if st.Height > in.Height {
			return fmt.Errorf("%w: state of height %d in an install of %d", ErrInvalid, st.Height, in.Height)
		}
	}
	for _, r := range in.Meta {
		if err := CheckID(r.Key); err != nil {
			return err
		}
	}
	for _, k := range in.DeleteMeta {
		if err := CheckID(k); err != nil {
			return err
		}
	}
	return nil
}

// Batch is everything one height changes. Nil slices are fine.
type Batch struct {
	Block    []byte
	Cert     []byte
	States   []ShardState
	Statuses []Record // Key is the transfer id.
	Meta     []Record // Key is the metadata key.
	// DeleteMeta removes metadata keys in the same transaction (e.g. uploads
	// no longer needed once the height that decided them is durable). A key
	// both in Meta and in DeleteMeta ends up deleted.
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

var _ Backend = (*Memory)(nil)
