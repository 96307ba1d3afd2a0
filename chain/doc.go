// Package chain is zkbank's chain application: the consensus.Application
// that turns ordered blocks of encrypted transfers into decided, applied and
// persisted results.
//
// It owns the block and extension encodings, deciding a height from the
// extensions the next block carries, proposal building and validation,
// finalize, work credits and the credit-weighted proposer selector, the
// persistence schema, and the upload and account-opening types that the
// actors and the node share.
//
// It imports ledger, consensus, store (interfaces and the in-memory store
// only) and internal/wire, and never libp2p, protoactor or Badger: every
// collaborator (mempool, evaluator, store, observer) is a narrow interface, so
// the package is tested on its own with in-memory fakes. Nothing in it does
// network I/O or sleeps: uploads a proposal references are fetched by the
// node before the proposal reaches the consensus machine.
package chain
