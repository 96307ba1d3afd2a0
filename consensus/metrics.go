package consensus

import "errors"

// Metrics receives what the machine observes. Implementations must be cheap
// and must not call back into the Machine: it calls them synchronously from
// inside Start and Step. The machine has no clock: it reports events, and an
// implementation that wants durations (time per step, per height) timestamps
// them itself. Consensus never imports a metrics library; the node adapts
// this interface to one.
type Metrics interface {
	// StepEntered: the machine entered step of round at height. Reported on
	// every step change, including the propose step that begins each round
	// (so a new round is StepEntered(h, r, StepPropose)), and the steps a
	// restart restores.
	StepEntered(height uint64, round Round, step Step)
	// HeightCommitted: height was decided in round (round+1 rounds were
	// needed); proposer is proposer(height, round). Reported once per height,
	// after Application.Finalize succeeded, also for a decision learnt from a
	// Commit message.
	HeightCommitted(height uint64, round Round, proposer int)
	// LateVote: a validly signed vote of validator arrived after the machine
	// had moved past its round: a new vote for an earlier round of the
	// current height, or a precommit for the last decided block that joined
	// the last commit certificate, or an attestation that does (addLate).
	LateVote(validator int, kind VoteType)
	// ExtensionRejected: Application.VerifyExtension failed for a precommit
	// of validator at height (err is the application's error). Reported per
	// precommit checked, including those carried by a Commit message and late
	// precommits of the previous height.
	ExtensionRejected(height uint64, validator int, err error)
	// Equivocation: new evidence that validator signed two conflicting votes
	// or proposals (once per validator, round, vote type and kind, as
	// Ready.Evidence).
	Equivocation(validator int)
	// MessageRejected: an input was dropped and Step returned an error
	// blaming its sender. reason is one of "malformed", "unknown_validator",
	// "not_proposer", "invalid_commit" and "invalid_signature" (in that order
	// of precedence when an error wraps several).
	MessageRejected(reason string)
	// ValueRejected: Application.ValidateProposal refused a proposed value
	// at height (valid(v) is false: this validator prevotes nil for it).
	// Reported once per distinct value.
	ValueRejected(height uint64, err error)
}

// NopMetrics returns a Metrics that does nothing (Config.Metrics nil).
func NopMetrics() Metrics { return nopMetrics{} }

type nopMetrics struct{}

func (nopMetrics) StepEntered(uint64, Round, Step)      {}
func (nopMetrics) HeightCommitted(uint64, Round, int)   {}
func (nopMetrics) LateVote(int, VoteType)               {}
func (nopMetrics) ExtensionRejected(uint64, int, error) {}
func (nopMetrics) Equivocation(int)                     {}
func (nopMetrics) MessageRejected(string)               {}
func (nopMetrics) ValueRejected(uint64, error)          {}

// rejectReason names the sentinel an input error wraps, "" for errors that
// do not blame the input (application errors, configuration, halt).
func rejectReason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrUnknownValidator):
		return "unknown_validator"
	case errors.Is(err, ErrNotProposer):
		return "not_proposer"
	case errors.Is(err, ErrInvalidCommit):
		return "invalid_commit"
	case errors.Is(err, ErrInvalidSignature):
		return "invalid_signature"
	}
	return ""
}
