package consensus

import "errors"

// Sentinel errors. Step wraps them with %w so that a driver can act on the
// reason (for example lower the score of the peer that relayed the message).
var (
	// ErrMalformed: the bytes do not decode to a well-formed message.
	ErrMalformed = errors.New("consensus: malformed message")
	// ErrInvalidSignature: a signature does not verify under the claimed validator's key.
	ErrInvalidSignature = errors.New("consensus: invalid signature")
	// ErrUnknownValidator: the validator index is outside the validator set.
	ErrUnknownValidator = errors.New("consensus: unknown validator")
	// ErrNotProposer: a proposal signed by someone other than proposer(h, r).
	ErrNotProposer = errors.New("consensus: proposal not from the round's proposer")
	// ErrInvalidCommit: a commit certificate or Commit message that does not prove a decision.
	ErrInvalidCommit = errors.New("consensus: invalid commit")
	// ErrInvalidEvidence: evidence that does not prove equivocation.
	ErrInvalidEvidence = errors.New("consensus: invalid evidence")
	// ErrApplication: an Application call failed; the machine continued safely
	// (no proposal this round, or a nil precommit instead of an extended one).
	ErrApplication = errors.New("consensus: application error")
	// ErrHalted: Finalize failed; the machine stops because it cannot move to the next height.
	ErrHalted = errors.New("consensus: halted")
	// ErrCorruptWAL: a restored record is not one this validator signed.
	ErrCorruptWAL = errors.New("consensus: corrupt WAL record")
	// ErrConfig: NewMachine or Start called with an unusable configuration.
	ErrConfig = errors.New("consensus: bad configuration")
	// ErrNoAttestation: returned (wrapped) by Application.ExtendVote for a
	// decided block this validator must not attest (for example the
	// previous validator set's last block); the machine stops trying for
	// that decision, and reports nothing.
	ErrNoAttestation = errors.New("consensus: no attestation for this decision")
)
