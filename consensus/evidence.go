package consensus

import "fmt"

// EvidenceKind says which rule a validator broke.
type EvidenceKind uint8

// Evidence kinds.
const (
	// DuplicateVote: two votes of one validator, same height, round and type,
	// for different BlockIDs.
	DuplicateVote EvidenceKind = 1
	// DuplicateProposal: two proposals of the round's proposer, same height and
	// round, differing in BlockID or validRound.
	DuplicateProposal EvidenceKind = 2
)

// Evidence is a pair of validly signed, conflicting messages: proof that
// Validator equivocated. Proposals are kept without their Value (the signature
// covers the BlockID, not the bytes), so evidence stays small.
type Evidence struct {
	Kind       EvidenceKind
	VoteA      *Vote
	VoteB      *Vote
	ProposalA  *Proposal
	ProposalB  *Proposal
	Validator  int
	Height     uint64
	Round      Round
	VoteType   VoteType // for DuplicateVote
	conflictID [2]BlockID
}

func newVoteEvidence(a, b *Vote) Evidence {
	return Evidence{Kind: DuplicateVote, VoteA: a, VoteB: b, Validator: a.Validator, Height: a.Height, Round: a.Round, VoteType: a.Type, conflictID: [2]BlockID{a.BlockID, b.BlockID}}
}

func newProposalEvidence(a, b *Proposal) Evidence {
	strip := func(p *Proposal) *Proposal { q := *p; q.Value = nil; return &q }
	return Evidence{Kind: DuplicateProposal, ProposalA: strip(a), ProposalB: strip(b), Validator: a.Proposer, Height: a.Height, Round: a.Round, conflictID: [2]BlockID{a.BlockID(), b.BlockID()}}
}

func (e Evidence) String() string {
	if e.Kind == DuplicateVote {
		return fmt.Sprintf("duplicate %s by %d at %d/%d: %s vs %s", e.VoteType, e.Validator, e.Height, e.Round, e.conflictID[0], e.conflictID[1])
	}
	return fmt.Sprintf("duplicate proposal by %d at %d/%d: %s vs %s", e.Validator, e.Height, e.Round, e.conflictID[0], e.conflictID[1])
}

// Verify checks that e proves equivocation under vals: both messages signed
// by the same validator, for the same height, round (and vote type), and in
// conflict.
func (e Evidence) Verify(chainID string, vals *ValidatorSet) error {
	return e.verify(Ed25519Verifier{}, chainID, vals)
}

func (e Evidence) verify(ver Verifier, chainID string, vals *ValidatorSet) error {
	switch e.Kind {
	case DuplicateVote:
		a, b := e.VoteA, e.VoteB
		if a == nil || b == nil || a.Validator != b.Validator || a.Height != b.Height || a.Round != b.Round || a.Type != b.Type || a.BlockID == b.BlockID ||
			(a.Type != Prevote && a.Type != Precommit) {
			return fmt.Errorf("%w: votes do not conflict", ErrInvalidEvidence)
		}
		if !verifyVote(ver, chainID, vals, a) || !verifyVote(ver, chainID, vals, b) {
			return fmt.Errorf("%w: %w", ErrInvalidEvidence, ErrInvalidSignature)
		}
	case DuplicateProposal:
		a, b := e.ProposalA, e.ProposalB
		if a == nil || b == nil || a.Proposer != b.Proposer || a.Height != b.Height || a.Round != b.Round ||
			(a.BlockID() == b.BlockID() && a.ValidRound == b.ValidRound) {
			return fmt.Errorf("%w: proposals do not conflict", ErrInvalidEvidence)
		}
		if !verifyProposal(ver, chainID, vals, a) || !verifyProposal(ver, chainID, vals, b) {
			return fmt.Errorf("%w: %w", ErrInvalidEvidence, ErrInvalidSignature)
		}
	default:
		return fmt.Errorf("%w: kind %d", ErrInvalidEvidence, e.Kind)
	}
	return nil
}
