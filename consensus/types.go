package consensus

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"slices"
	"time"
)

// Round is a round number within a height. NoRound (-1) is the paper's "-1"
// for lockedRound, validRound and a proposal's validRound.
type Round int32

// NoRound marks an unset round.
const NoRound Round = -1

// Step is the step of a round (Algorithm 1, line 4).
type Step uint8

// Steps of a round, ordered so that step >= StepPrevote reads as in the paper.
const (
	StepPropose Step = iota + 1
	StepPrevote
	StepPrecommit
)

func (s Step) String() string {
	switch s {
	case StepPropose:
		return "propose"
	case StepPrevote:
		return "prevote"
	case StepPrecommit:
		return "precommit"
	}
	return fmt.Sprintf("step(%d)", uint8(s))
}

// VoteType distinguishes prevotes from precommits, and both from
// attestations.
type VoteType uint8

// Vote types; the values are part of the wire format.
const (
	Prevote   VoteType = 1
	Precommit VoteType = 2
	// Attestation is not a vote: it is an extension for an already decided
	// block, signed after the decision by a validator whose precommit is not
	// in the certificate (it precommitted nil, or its precommit for the
	// block was never counted). It counts toward no quorum and proves
	// nothing about the decision; it lets the next proposer carry every
	// correct validator's extension, so that an application deciding from
	// extensions never waits for a precommit that cannot exist.
	Attestation VoteType = 3
)

// AttestationRound is the round every attestation is signed with: it names
// the decided block, not a round, so it joins a certificate of that block
// from any round.
const AttestationRound Round = 0

func (t VoteType) String() string {
	switch t {
	case Prevote:
		return "prevote"
	case Precommit:
		return "precommit"
	case Attestation:
		return "attestation"
	}
	return fmt.Sprintf("votetype(%d)", uint8(t))
}

// BlockID identifies a proposed value: the SHA-256 of its bytes. The zero
// BlockID is the paper's nil.
type BlockID [32]byte

// NilBlockID is a vote for nil.
var NilBlockID BlockID

// IsNil reports whether id is the nil vote.
func (id BlockID) IsNil() bool { return id == NilBlockID }

func (id BlockID) String() string {
	if id.IsNil() {
		return "nil"
	}
	return hex.EncodeToString(id[:6])
}

// HashValue returns the BlockID of value.
func HashValue(value []byte) BlockID { return sha256.Sum256(value) }

// Vote is a signed prevote or precommit. Extension is only allowed on a
// non-nil precommit; it and the other byte slices may alias the buffer the
// vote was decoded from.
type Vote struct {
	Type      VoteType
	Height    uint64
	Round     Round
	BlockID   BlockID
	Validator int
	Extension []byte
	Signature []byte
}

// Proposal is a signed ⟨PROPOSAL, h, r, v, vr⟩. Build one with NewProposal so
// that its BlockID is computed once.
type Proposal struct {
	Height     uint64
	Round      Round
	ValidRound Round
	Proposer   int
	Value      []byte
	Signature  []byte

	id    BlockID // sha256(Value), cached: hashing a large value per use would dominate
	idSet bool
}

// NewProposal returns an unsigned proposal with its BlockID computed.
func NewProposal(height uint64, round, validRound Round, proposer int, value []byte) *Proposal {
	return &Proposal{Height: height, Round: round, ValidRound: validRound, Proposer: proposer, Value: value, id: HashValue(value), idSet: true}
}

// BlockID returns sha256(Value), computed once (when built or decoded); a
// Proposal must not have its Value changed afterwards.
func (p *Proposal) BlockID() BlockID {
	if !p.idSet {
		p.id, p.idSet = HashValue(p.Value), true
	}
	return p.id
}

// CommitSig is one precommit inside a commit certificate; height, round and
// BlockID are the certificate's.
type CommitSig struct {
	Validator int
	Extension []byte
	Signature []byte
}

// CommitCertificate proves that validators holding more than 2/3 of the voting
// power precommitted BlockID at (Height, Round). It carries their vote
// extensions, so the next height's proposer can include them.
type CommitCertificate struct {
	Height  uint64
	Round   Round
	BlockID BlockID
	Sigs    []CommitSig // strictly increasing Validator
	// Attested are the attestations (extensions signed after the decision,
	// VoteType Attestation) of validators not in Sigs, strictly increasing.
	// They are in memory only: never encoded, persisted or counted by
	// VerifyCommit, and a certificate is valid without them.
	Attested []CommitSig
}

// Attestation reconstructs the i-th attestation of the certificate.
func (c *CommitCertificate) Attestation(i int) *Vote {
	s := c.Attested[i]
	return &Vote{Type: Attestation, Height: c.Height, Round: AttestationRound, BlockID: c.BlockID, Validator: s.Validator, Extension: s.Extension, Signature: s.Signature}
}

// has reports whether validator i's precommit is in the certificate.
func (c *CommitCertificate) has(i int) bool {
	_, ok := slices.BinarySearchFunc(c.Sigs, i, func(x CommitSig, v int) int { return x.Validator - v })
	return ok
}

// attested reports whether validator i's attestation is in the certificate.
func (c *CommitCertificate) attested(i int) bool {
	_, ok := slices.BinarySearchFunc(c.Attested, i, func(x CommitSig, v int) int { return x.Validator - v })
	return ok
}

// Vote reconstructs the i-th precommit of the certificate.
func (c *CommitCertificate) Vote(i int) *Vote {
	s := c.Sigs[i]
	return &Vote{Type: Precommit, Height: c.Height, Round: c.Round, BlockID: c.BlockID, Validator: s.Validator, Extension: s.Extension, Signature: s.Signature}
}

// Commit is a decided value with its certificate. It is both an output of the
// Machine (Ready.Committed) and a message: a node that has decided a height
// sends it to a validator still working on that height.
type Commit struct {
	Cert  *CommitCertificate
	Value []byte
}

// Height is the committed height.
func (c *Commit) Height() uint64 { return c.Cert.Height }

// TimeoutKind names the timer a TimeoutEvent belongs to.
type TimeoutKind uint8

// Timer kinds. Rebroadcast is not in the paper: it stands in for the gossip
// layer's promise that messages of correct processes are eventually delivered
// (re-sending own votes and the proof-of-lock after losses and partitions).
// WaitWork is not in the paper either: it ends the wait of a round-0
// proposer for work (Timeouts.WaitForWork).
const (
	TimeoutPropose TimeoutKind = iota + 1
	TimeoutPrevote
	TimeoutPrecommit
	TimeoutRebroadcast
	TimeoutWaitWork
)

func (k TimeoutKind) String() string {
	switch k {
	case TimeoutPropose:
		return "timeoutPropose"
	case TimeoutPrevote:
		return "timeoutPrevote"
	case TimeoutPrecommit:
		return "timeoutPrecommit"
	case TimeoutRebroadcast:
		return "rebroadcast"
	case TimeoutWaitWork:
		return "waitForWork"
	}
	return fmt.Sprintf("timeout(%d)", uint8(k))
}

// TimeoutEvent is fed back to Step when a requested timer fires.
type TimeoutEvent struct {
	Kind   TimeoutKind
	Height uint64
	Round  Round
}

// TimeoutRequest asks the driver to call Step(Event) after Duration.
type TimeoutRequest struct {
	Event    TimeoutEvent
	Duration time.Duration
}

// WorkAvailable tells the machine that the application now has work to
// propose (WorkSignaler). The local node steps it, typically when its mempool
// goes from empty to non-empty; it is not a Message, never travels between
// validators and has no wire encoding. It only matters while the proposer of
// round 0 waits for work (Timeouts.WaitForWork); at any other time Step
// ignores it without output.
type WorkAvailable struct{}

// Input is what Step accepts: *Proposal, *Vote, *Commit, TimeoutEvent or WorkAvailable.
type Input interface{ isInput() }

// Message is an Input that travels between validators.
type Message interface {
	Input
	isMessage()
}

func (*Proposal) isInput()     {}
func (*Vote) isInput()         {}
func (*Commit) isInput()       {}
func (TimeoutEvent) isInput()  {}
func (WorkAvailable) isInput() {}
func (*Proposal) isMessage()   {}
func (*Vote) isMessage()       {}
func (*Commit) isMessage()     {}
