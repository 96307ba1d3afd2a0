// Package ledger is zkbank's confidential ledger core: threshold-BGV keys,
// slot-packed encrypted account state, wallet-side transfer construction,
// validator-side homomorphic validation, threshold decryption of the checks,
// and deterministic application of accepted transfers.
//
// The package owns every use of Lattigo (a move to a newer Lattigo is a change
// to this package only). It is a pure library: no networking, no goroutines
// that outlive a call, no clocks, no disk. A node persists what it needs
// through the binary encodings exposed here.
//
// It must never import zkbank's actors, p2p, consensus or store packages.
//
// The scheme, what each check proves and what each party learns are described
// in docs/PROTOCOL.md; the layout constants below are the ones documented
// there.
package ledger
