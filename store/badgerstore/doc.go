// Package badgerstore is the durable store.Backend of a validator node: the
// byte-oriented key-value schema of package store over Badger v4.
//
// It owns the on-disk layout of the records package store describes —
// consensus write-ahead records, committed blocks and their commit
// certificates by height, encrypted shard states by height, node metadata and
// transfer status records — and the durability rules that tie them together:
// a WAL record is synced before Append returns, and Commit applies a height's
// block, states, statuses, metadata and the new last-applied height in one
// synced Badger transaction, so a crash never leaves a height half applied.
//
// Every stored value carries a CRC-32C over its key and payload, so a torn or
// garbage value is reported as store.ErrCorrupt instead of being handed to a
// decoder. Errors wrap package store's sentinels (store.ErrNotFound, ...), so
// callers branch with errors.Is without importing this package.
//
// Among this module's packages badgerstore imports only store (and, in its
// tests, store/storetest, whose contract suite it passes); .ci/layering
// enforces that. Import it only where a node opens its data directory;
// everything else takes a store.Backend. See docs/STORAGE.md.
package badgerstore
