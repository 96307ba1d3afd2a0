package consensus

import "crypto/ed25519"

// Signer signs this validator's messages. ed25519 signing is deterministic,
// which keeps the Machine a pure function of its inputs.
type Signer interface {
	PubKey() ed25519.PublicKey
	Sign(msg []byte) []byte
}

// Verifier checks signatures. The default is ed25519.Verify; a driver may
// plug a cache of verified (key, message, signature) triples, because in
// gossip every message arrives many times.
type Verifier interface {
	Verify(pub ed25519.PublicKey, msg, sig []byte) bool
}

// Ed25519Signer signs with an in-memory private key.
type Ed25519Signer struct{ key ed25519.PrivateKey }

// NewEd25519Signer wraps a private key.
func NewEd25519Signer(key ed25519.PrivateKey) *Ed25519Signer { return &Ed25519Signer{key: key} }

// PubKey returns the public half of the key.
func (s *Ed25519Signer) PubKey() ed25519.PublicKey { return s.key.Public().(ed25519.PublicKey) }

// Sign signs msg.
func (s *Ed25519Signer) Sign(msg []byte) []byte { return ed25519.Sign(s.key, msg) }

// Ed25519Verifier verifies with crypto/ed25519 and no cache.
type Ed25519Verifier struct{}

// Verify reports whether sig is pub's signature of msg.
func (Ed25519Verifier) Verify(pub ed25519.PublicKey, msg, sig []byte) bool {
	return len(sig) == ed25519.SignatureSize && ed25519.Verify(pub, msg, sig)
}

// SignVote fills v.Signature. For tests, tools and the simulator's byzantine
// nodes; the Machine signs its own votes.
func SignVote(chainID string, s Signer, v *Vote) { v.Signature = s.Sign(VoteSignBytes(chainID, v)) }

// SignProposal fills p.Signature.
func SignProposal(chainID string, s Signer, p *Proposal) {
	p.Signature = s.Sign(ProposalSignBytes(chainID, p))
}

// VerifyVote reports whether v is signed by its validator's key in vals (with
// ed25519). The application uses it for precommits a block carries.
func VerifyVote(chainID string, vals *ValidatorSet, v *Vote) bool {
	return verifyVote(Ed25519Verifier{}, chainID, vals, v)
}

// VerifyProposal reports whether p is signed by its proposer's key in vals.
// A node checks it before doing work for a proposal (fetching what it names).
func VerifyProposal(chainID string, vals *ValidatorSet, p *Proposal) bool {
	return verifyProposal(Ed25519Verifier{}, chainID, vals, p)
}

func verifyVote(ver Verifier, chainID string, vals *ValidatorSet, v *Vote) bool {
	return vals.Has(v.Validator) && ver.Verify(vals.vals[v.Validator].PubKey, VoteSignBytes(chainID, v), v.Signature)
}

func verifyProposal(ver Verifier, chainID string, vals *ValidatorSet, p *Proposal) bool {
	return vals.Has(p.Proposer) && ver.Verify(vals.vals[p.Proposer].PubKey, ProposalSignBytes(chainID, p), p.Signature)
}
