// Package store is the validator node's persistence contract: the Backend
// interface (write-ahead log, blocks and certificates, shard states by
// height, node metadata, transfer statuses, atomic per-height Commit), its
// sentinel errors, and Memory, an in-memory Backend for other packages'
// tests.
//
// The durable implementation, over Badger v4, is package store/badgerstore;
// it returns this package's sentinel errors, so callers branch with
// errors.Is(err, store.ErrNotFound) whichever Backend they hold. The contract
// both implementations pass is package store/storetest.
//
// Values are opaque []byte. store imports no other package of this module and
// no storage engine (no Badger): a package that only needs the interfaces and
// Memory (the chain application and its tests) can import it without pulling
// in Badger. .ci/layering enforces that. See docs/STORAGE.md for the key
// layout, durability rules, crash semantics and what is not defended.
package store
