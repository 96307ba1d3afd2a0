package sim

import (
	"github.com/zkbank/zkbank/consensus"
)

// checker holds the invariants across all validators and incarnations.
type checker struct {
	s        *Sim
	decided  map[uint64]consensus.BlockID
	proposed map[heightID]bool
	votes    map[signedVoteKey]consensus.BlockID
	props    map[signedPropKey]propSig
	// decisions whose proposal may not be on the wire yet: a validator with
	// more than 2/3 of the power decides inside Step, before its Ready is sent.
	unchecked []decision
}

type decision struct {
	node int
	h    uint64
	id   consensus.BlockID
}

// validity checks that every decision so far was proposed by someone.
func (c *checker) validity() {
	for _, d := range c.unchecked {
		if !c.proposed[heightID{d.h, d.id}] {
			c.s.fail("validity: v%d committed %s at height %d, which nobody proposed", d.node, d.id, d.h)
		}
	}
	c.unchecked = c.unchecked[:0]
}

type heightID struct {
	h  uint64
	id consensus.BlockID
}

type signedVoteKey struct {
	validator int
	h         uint64
	r         consensus.Round
	t         consensus.VoteType
}

type signedPropKey struct {
	h uint64
	r consensus.Round
}

type propSig struct {
	id consensus.BlockID
	vr consensus.Round
}

func newChecker(s *Sim) *checker {
	return &checker{s: s, decided: map[uint64]consensus.BlockID{}, proposed: map[heightID]bool{},
		votes: map[signedVoteKey]consensus.BlockID{}, props: map[signedPropKey]propSig{}}
}

// proposal notes that a signed proposal exists (from anyone): validity only
// lets proposed values commit.
func (c *checker) proposal(p *consensus.Proposal) {
	c.proposed[heightID{p.Height, p.BlockID()}] = true
}

// signed checks what a correct validator made durable: with what it sent, it
// must never contain two conflicting messages, across crashes.
func (c *checker) signed(nd *node, r consensus.WALRecord) {
	switch r.Kind {
	case consensus.RecordVote:
		c.vote(nd, r.Vote)
	case consensus.RecordProposal:
		c.prop(nd, r.Proposal)
	}
}

func (c *checker) sent(nd *node, m consensus.Message) {
	switch x := m.(type) {
	case *consensus.Vote:
		if x.Validator == nd.id {
			c.vote(nd, x)
		}
	case *consensus.Proposal:
		c.proposal(x)
		if x.Proposer == nd.id {
			c.prop(nd, x)
		}
	}
}

func (c *checker) vote(nd *node, v *consensus.Vote) {
	k := signedVoteKey{v.Validator, v.Height, v.Round, v.Type}
	if id, ok := c.votes[k]; ok && id != v.BlockID {
		c.s.fail("correct v%d signed conflicting %ss at %d/%d: %s and %s", nd.id, v.Type, v.Height, v.Round, id, v.BlockID)
	}
	c.votes[k] = v.BlockID
}

func (c *checker) prop(nd *node, p *consensus.Proposal) {
	c.proposal(p)
	k := signedPropKey{p.Height, p.Round}
	ps := propSig{p.BlockID(), p.ValidRound}
	if old, ok := c.props[k]; ok && old != ps {
		c.s.fail("correct v%d signed conflicting proposals at %d/%d", nd.id, p.Height, p.Round)
	}
	c.props[k] = ps
}

// finalizeHook checks each decision of a correct validator before its
// application applies it: agreement, validity, and a certificate that a
// lagging node could verify, extensions included.
func (c *checker) finalizeHook(nd *node) func(uint64, []byte, *consensus.CommitCertificate) error {
	return func(h uint64, value []byte, cert *consensus.CommitCertificate) error {
		s := c.s
		id := consensus.HashValue(value)
		s.tracef("v%d COMMIT %d/%d %s", nd.id, h, cert.Round, id)
		if d, ok := c.decided[h]; ok && d != id {
			s.fail("agreement: v%d committed %s at height %d, another correct validator %s", nd.id, id, h, d)
		}
		c.decided[h] = id
		c.unchecked = append(c.unchecked, decision{nd.id, h, id})
		if err := nd.app.validate(h, value); err != nil {
			s.fail("validity: v%d committed an invalid value at height %d: %v", nd.id, h, err)
		}
		if cert.Height != h || cert.BlockID != id {
			s.fail("v%d certificate for %d/%s, committed %d/%s", nd.id, cert.Height, cert.BlockID, h, id)
		}
		if err := consensus.VerifyCommitWith(s.verifier, chainID, s.vals, cert); err != nil {
			s.fail("v%d certificate at height %d: %v", nd.id, h, err)
		}
		for _, sig := range cert.Sigs {
			if nd.app.VerifyExtension(h, sig.Validator, value, sig.Extension) != nil {
				s.fail("v%d certificate at height %d carries a bad extension of v%d", nd.id, h, sig.Validator)
			}
		}
		return nil
	}
}
