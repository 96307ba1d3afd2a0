// Package wallet owns an account holder's secrets on disk: the ed25519 key
// that names and signs for the account, and the owner's homomorphic key pair
// to which validators re-encrypt the balance. A wallet file is versioned JSON,
// mode 0600; anything else (wrong permissions, a corrupt field, an unknown
// version) is refused with one error naming the file.
//
// The package also converts between decimal currency units ("12.34") and the
// ledger's integer minor units (cents), keeps the journal of amounts sent
// (FILE.journal) and the lending sidecar (FILE.lending: consent nonces
// signed, loan applications, loans owed and their amounts), and builds a
// borrower's and a lender's operation specs (checks, loans, repayments).
//
// It imports ledger and genesis only; it never talks to a node (package client
// does that).
package wallet
