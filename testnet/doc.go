// Package testnet runs a local zkbank chain and drives load against chains.
//
// A testnet is a directory: one validator home per node (created by the
// binary's `node init`), a genesis.json naming them, and demo wallets whose
// accounts the genesis prefunds. Run starts one `zkbank node` process per
// validator, waits for the key ceremony, and resumes the same chain from disk
// on the next run. The load generator (Load) submits random transfers among
// wallets, keeping one debit per account in flight, mixes in deliberately
// invalid ones, and checks that total supply is conserved. With the demo on,
// Run also starts a lending bot process (`zkbank bot`) for the testnet's
// lender pool and a few demo borrowers who apply, are funded and repay, one
// missing an installment on purpose (lendingdemo.go, docs/LENDING.md).
//
// The package talks to nodes only through the binary (processes) and the
// HTTP API (package client); it never imports node, actors, consensus or p2p.
package testnet
