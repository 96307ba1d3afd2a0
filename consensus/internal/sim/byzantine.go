package sim

import (
	"crypto/ed25519"

	"github.com/zkbank/zkbank/consensus"
)

// byzantine runs a correct machine underneath (so it stays in step with the
// height) and corrupts what it sends: equivocating proposals and votes, votes
// for values nobody proposed, bad extensions, bad signatures, impersonation,
// wrong proposers, far-future rounds, stale heights and garbage bytes. It
// signs with its own key: it cannot forge a correct validator's signature.
type byzantine struct {
	s      *Sim
	n      *node
	recent [][]byte // bytes seen on the wire, for mutation
	lastP  *consensus.Proposal
}

func (b *byzantine) observe(data []byte) {
	if len(b.recent) < 16 {
		b.recent = append(b.recent, data)
	} else {
		b.recent[b.s.rng.IntN(len(b.recent))] = data
	}
	if m, err := consensus.DecodeMessage(data); err == nil {
		if p, ok := m.(*consensus.Proposal); ok {
			b.lastP = p
		}
	}
}

// split sends x to a random half of the others and y to the rest.
func (b *byzantine) split(x, y consensus.Message) {
	bx, by := consensus.EncodeMessage(x), consensus.EncodeMessage(y)
	for j := range b.s.nodes {
		if j == b.n.id {
			continue
		}
		if b.s.rng.IntN(2) == 0 {
			b.s.transmit(b.n.id, j, bx)
		} else {
			b.s.transmit(b.n.id, j, by)
		}
	}
}

func (b *byzantine) broadcast(m consensus.Message) {
	if p, ok := m.(*consensus.Proposal); ok {
		b.s.check.proposal(p)
	}
	b.s.transmit(b.n.id, consensus.Broadcast, consensus.EncodeMessage(m))
}

func (b *byzantine) send(env consensus.Envelope) {
	rng := b.s.rng
	switch x := env.Msg.(type) {
	case *consensus.Proposal:
		b.s.check.proposal(x)
		if x.Proposer == b.n.id && env.To == consensus.Broadcast && rng.IntN(2) == 0 {
			// Equivocating proposer: a second proposal, valid or not.
			value := encodeValue(x.Height, b.n.id, 1<<40+rng.Uint64N(1<<20), nil)
			if x.Height > 1 && rng.IntN(2) == 0 {
				if last := b.n.app.last(); last != nil {
					value = encodeValue(x.Height, b.n.id, 1<<40+rng.Uint64N(1<<20), last.Cert)
				}
			}
			p2 := consensus.NewProposal(x.Height, x.Round, x.ValidRound, b.n.id, value)
			consensus.SignProposal(chainID, b.n.signer, p2)
			b.s.check.proposal(p2)
			b.split(x, p2)
			return
		}
	case *consensus.Vote:
		if x.Validator == b.n.id && env.To == consensus.Broadcast && rng.IntN(5) < 2 {
			v2 := *x
			v2.Extension = nil
			switch rng.IntN(3) {
			case 0:
				v2.BlockID = consensus.NilBlockID
			case 1:
				v2.BlockID = b.randomID()
			default:
				if b.lastP != nil {
					v2.BlockID = b.lastP.BlockID()
				}
			}
			if v2.BlockID == x.BlockID {
				v2.BlockID = b.randomID()
			}
			if v2.Type == consensus.Precommit && !v2.BlockID.IsNil() {
				v2.Extension = b.randomBytes(32)
			}
			consensus.SignVote(chainID, b.n.signer, &v2)
			b.split(x, &v2)
			return
		}
	}
	b.s.transmit(b.n.id, env.To, consensus.EncodeMessage(env.Msg))
}

// tick injects one unsolicited bad message.
func (b *byzantine) tick() {
	if !b.n.up {
		return
	}
	rng := b.s.rng
	st := b.n.m.State()
	vote := func(t consensus.VoteType, r consensus.Round, id consensus.BlockID) *consensus.Vote {
		v := &consensus.Vote{Type: t, Height: st.Height, Round: r, BlockID: id, Validator: b.n.id}
		if t == consensus.Precommit && !id.IsNil() {
			v.Extension = b.randomBytes(1 + rng.IntN(64))
		}
		consensus.SignVote(chainID, b.n.signer, v)
		return v
	}
	voteType := consensus.VoteType(1 + rng.IntN(2))
	switch rng.IntN(10) {
	case 0: // a vote for a value nobody proposed
		b.broadcast(vote(voteType, st.Round+consensus.Round(rng.IntN(2)), b.randomID()))
	case 1: // a precommit for a real proposal with a bad extension
		if p := b.lastP; p != nil && p.Height == st.Height {
			b.broadcast(vote(consensus.Precommit, p.Round, p.BlockID()))
		}
	case 2: // garbage bytes
		b.s.transmit(b.n.id, rng.IntN(len(b.s.nodes)), b.randomBytes(rng.IntN(200)))
	case 3: // a mutated message seen on the wire
		if len(b.recent) > 0 {
			m := append([]byte(nil), b.recent[rng.IntN(len(b.recent))]...)
			switch rng.IntN(3) {
			case 0:
				if len(m) > 0 {
					m[rng.IntN(len(m))] ^= byte(1 + rng.IntN(255))
				}
			case 1:
				m = m[:rng.IntN(len(m)+1)]
			default:
				m = append(m, b.randomBytes(1+rng.IntN(8))...)
			}
			b.s.transmit(b.n.id, consensus.Broadcast, m)
		}
	case 4: // a bad signature
		v := vote(voteType, st.Round, b.randomID())
		v.Signature = b.randomBytes(ed25519.SignatureSize)
		b.broadcast(v)
	case 5: // impersonation: another validator's index, our key
		v := vote(voteType, st.Round, b.randomID())
		v.Validator = rng.IntN(len(b.s.nodes))
		consensus.SignVote(chainID, b.n.signer, v)
		b.broadcast(v)
	case 6: // a proposal for a round we do not lead
		r := st.Round + consensus.Round(rng.IntN(3))
		p := consensus.NewProposal(st.Height, r, consensus.NoRound, b.n.id, encodeValue(st.Height, b.n.id, rng.Uint64(), nil))
		consensus.SignProposal(chainID, b.n.signer, p)
		b.broadcast(p)
	case 7: // far-future rounds, to fill memory
		r := st.Round + 1 + consensus.Round(rng.Int64N(int64(consensus.MaxRound-st.Round-1)))
		b.broadcast(vote(voteType, r, b.randomID()))
	case 8: // a stale height, asks for a commit
		if st.Height > 1 {
			v := vote(consensus.Prevote, 0, consensus.NilBlockID)
			v.Height = st.Height - 1
			consensus.SignVote(chainID, b.n.signer, v)
			b.broadcast(v)
		}
	default: // a nil vote for a round ahead (line 55 needs f+1, we are at most f)
		b.broadcast(vote(voteType, st.Round+1+consensus.Round(rng.IntN(3)), consensus.NilBlockID))
	}
}

func (b *byzantine) randomID() (id consensus.BlockID) {
	for i := range id {
		id[i] = byte(b.s.rng.IntN(256))
	}
	return id
}

func (b *byzantine) randomBytes(n int) []byte {
	out := make([]byte, n)
	for i := range out {
		out[i] = byte(b.s.rng.IntN(256))
	}
	return out
}
