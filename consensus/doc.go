// Package consensus is zkbank's ordering layer: Tendermint (Buchman, Kwon,
// Milosevic, "The latest gossip on BFT consensus", 2018, Algorithm 1) written as
// a pure, deterministic state machine in the style of etcd's raft Step/Ready.
//
// It owns: the round state of one validator (height, round, step, locks), vote
// and proposal bookkeeping, equivocation evidence, vote extensions and commit
// certificates, weighted proposer selection, the wire encoding of its messages
// and the write-ahead records that make a restart safe.
//
// It does not own I/O. Inputs are decoded messages, timeout events and the
// local node's WorkAvailable; outputs (Ready) are records to make durable,
// messages to send, timeouts to schedule and values committed. What it
// observes goes to a Metrics the node supplies (no metrics library here). There are no goroutines, clocks, randomness or files
// here: the node's consensus actor drives the Machine, a simulator drives it in
// tests.
//
// This package must never import ledger, p2p, libp2p, badger, store or actors:
// the application reaches it only through the Application interface.
package consensus
