// Package store is the validator node's persistence layer: a byte-oriented
// key-value schema over Badger v4, plus an in-memory twin for tests.
//
// It owns the on-disk layout of six kinds of record — consensus write-ahead
// records, committed blocks and their commit certificates by height, encrypted
// shard states by height, node metadata, transfer status records and the
// account index — and the durability rules that tie them together: a WAL
// record is synced before Append returns, and Commit applies a height's block,
// states, statuses and the new last-applied height in one synced Badger
// transaction, so a crash never leaves a height half applied.
//
// Values are opaque []byte. Every stored value carries a CRC-32C over its key
// and payload, so a torn or garbage value is reported as ErrCorrupt instead of
// being handed to a decoder.
//
// store must never import the ledger, consensus, actors or p2p packages (or
// Lattigo, protoactor or libp2p): they depend on it through the narrow
// interfaces below, never the other way round. See docs/STORAGE.md for the
// key layout, durability rules, crash semantics and what is not defended.
package store
