// Package actors holds the protoactor-go actors of a validator process, one
// owner per piece of state:
//
//   - Consensus: owns the consensus state machine and its timers, and drives
//     its Ready (persist, send, schedule) in order.
//   - Mempool: owns uploaded transfers not yet decided and account openings.
//   - Shard (one per account shard): evaluates its shard's batches with its
//     own evaluator; shards evaluate in parallel across cores.
//   - Store: owns the node's storage handle; every durable write goes through it.
//   - Net: owns the libp2p host and moves bytes to and from peers.
//
// Only package actor of protoactor-go is used (its remote/cluster layers are
// not: libp2p is the only transport). It must not import zkbank's node or
// cmd packages.
package actors
