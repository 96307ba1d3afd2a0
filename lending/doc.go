// Package lending is what a borrower's wallet and a lender run on top of the
// ledger's encrypted credit scores (docs/LENDING.md): a lender's policy file
// (Policy: mode, minimum score, loan terms; its SHA-256 is what checks
// name), an Actor that sends one account's checks, loans, repayments and
// applies in order and awaits each verdict, and the automatic lender (Bot):
// it scans committed blocks for applications to its pool, decides each by
// its policy (Decide, one log line with the reason), funds the approved
// ones and follows their repayments and defaults on chain.
//
// It talks to nodes only through package client; wallets hold the keys.
package lending
