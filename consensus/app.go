package consensus

// Application is the seam between consensus and the ledger. The Machine calls
// it synchronously from inside Step (the node runs both in one actor), so an
// implementation must not call back into the Machine. For the simulator and
// for replay it must be deterministic, except ExtendVote: its output is
// persisted with the signed precommit and never recomputed.
type Application interface {
	// BuildProposal returns the value to propose at height (the paper's
	// getValue()). lastCommit is the certificate of height-1 (nil at the first
	// height); its extensions are what the application should include.
	BuildProposal(height uint64, lastCommit *CommitCertificate) ([]byte, error)
	// ValidateProposal is the paper's valid(v). It is called at most once per
	// distinct value and height, and not for values this node built itself.
	ValidateProposal(height uint64, value []byte) error
	// ExtendVote returns the extension of this validator's precommit for
	// value. An error makes the machine precommit nil instead.
	ExtendVote(height uint64, round Round, value []byte) ([]byte, error)
	// VerifyExtension checks another validator's extension on its precommit
	// for value. A precommit whose extension fails still counts towards "2f+1
	// precommits of any kind" (line 47) but not towards committing its value.
	VerifyExtension(height uint64, validator int, value []byte, ext []byte) error
	// Finalize applies a decided value. It must be durable when it returns:
	// after a restart the node starts at the next height. An error halts the machine.
	Finalize(height uint64, value []byte, cert *CommitCertificate) error
}

// WorkSignaler is optionally implemented by an Application that can say
// whether it has something to propose (the CometBFT create_empty_blocks /
// TxsAvailable pattern). With Timeouts.WaitForWork set, the proposer of round
// 0 asks HasWork before BuildProposal; if it is false, the machine waits until
// the node steps WorkAvailable{} or WaitForWork passes (TimeoutWaitWork), then
// calls BuildProposal once, whatever it returns. HasWork must be cheap and
// must not call back into the Machine; it is not asked at later rounds, where
// the height is already late.
type WorkSignaler interface {
	HasWork(height uint64) bool
}
