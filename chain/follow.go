package chain

import (
	"errors"
	"fmt"

	"github.com/zkbank/zkbank/consensus"
)

// A full node follows the chain without a key share: it never proposes or
// votes, and finalizes the decisions peers serve it through FollowCommit,
// which is the path a lagging validator's consensus machine takes with a
// served decision (verify the certificate, verify every extension it
// carries, Finalize), with the extension check made strict: the full node
// re-evaluates every block exactly as validators do (prepare: verdicts from
// the decryption shares the next block carries, pieces decided and summed,
// the checks evaluated with the public evaluation keys) and refuses a
// decision whose signers attest a digest other than the one it computed.

// errFollower is a validator's duty asked of a following application.
var errFollower = errors.New("chain: a following application does not propose or vote")

// ErrForgedCertificate is a served decision whose certificate does not
// prove it: a signature that does not verify, too little voting power, or a
// block that is not the one certified.
var ErrForgedCertificate = errors.New("chain: the certificate does not prove the decision")

// ErrNotNext is a served decision of another height than the next one.
var ErrNotNext = errors.New("chain: not the next height")

// DigestMismatchError is a served decision whose certificate's signers
// attest an evaluation digest of the previous block other than the one this
// node computed: either they (or this node) evaluated the checks wrongly.
// The decision is refused.
type DigestMismatchError struct {
	Height     uint64 // the decision refused
	Evaluated  uint64 // the block whose checks' digest disagrees (Height-1)
	Validators []int  // the signers whose extension carries another digest
}

func (e *DigestMismatchError) Error() string {
	return fmt.Sprintf("chain: height %d: validators %v attest another evaluation digest of height %d than this node computed", e.Height, e.Validators, e.Evaluated)
}

// FollowCommit finalizes a served decision on a following application (a
// full node): the certificate must prove the block under the genesis
// validators (a quorum of valid signatures, strictly increasing signers, the
// block hashing to the certified id), the block must be valid as validators
// judge it (prepare: its carried precommits verify and decide the previous
// blocks' verdicts and pieces, its uploads are available), and every
// signer's extension must verify against this node's own evaluation, its
// digest equal to the one this node computed. Then the height is finalized
// and persisted exactly as a validator's. Any failure leaves the
// application where it was; errors.Is(err, ErrUnavailable) means an upload
// or piece is missing (fetch it and retry), anything else is a refusal.
func (a *App) FollowCommit(c *consensus.Commit) error {
	if !a.follow {
		return errors.New("chain: FollowCommit on a validator's application")
	}
	if c == nil || c.Cert == nil {
		return fmt.Errorf("%w: no certificate", ErrForgedCertificate)
	}
	h := c.Cert.Height
	if h != a.finalized+1 {
		return fmt.Errorf("%w: decision of height %d at finalized %d", ErrNotNext, h, a.finalized)
	}
	if consensus.HashValue(c.Value) != c.Cert.BlockID {
		return fmt.Errorf("%w: height %d: the block does not hash to the certified id", ErrForgedCertificate, h)
	}
	if err := consensus.VerifyCommit(a.chain, a.vals, c.Cert); err != nil {
		return fmt.Errorf("%w: height %d: %w", ErrForgedCertificate, h, err)
	}
	ev, err := a.prepare(h, c.Value)
	if err != nil {
		return fmt.Errorf("chain: height %d: %w", h, err)
	}
	// As a validator's consensus does with a decision (it keeps only the
	// precommits whose extension verifies): the signers whose extension
	// agrees with this node's own evaluation must form a quorum by
	// themselves. A byzantine validator adding its own wrong-digest
	// precommit to an honest certificate is named, and its signature
	// dropped, not a reason to refuse what a quorum attested.
	var wrong, bad []int
	var firstErr error
	good := &consensus.CommitCertificate{Height: c.Cert.Height, Round: c.Cert.Round, BlockID: c.Cert.BlockID}
	for _, s := range c.Cert.Sigs {
		if ev.prev != nil {
			if x, err := DecodeExt(s.Extension); err == nil && x.Digest != ev.prev.digest {
				wrong = append(wrong, s.Validator)
				continue
			}
		}
		if err := a.VerifyExtension(h, s.Validator, c.Value, s.Extension); err != nil {
			bad = append(bad, s.Validator)
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		good.Sigs = append(good.Sigs, s)
	}
	if err := consensus.VerifyCommit(a.chain, a.vals, good); err != nil {
		if len(wrong) > 0 {
			return &DigestMismatchError{Height: h, Evaluated: ev.prev.height, Validators: wrong}
		}
		return fmt.Errorf("%w: height %d: extensions of validators %v do not verify: %w", ErrBlock, h, bad, firstErr)
	}
	if len(wrong)+len(bad) > 0 {
		a.dropped = append(a.dropped[:0], append(wrong, bad...)...)
	} else {
		a.dropped = a.dropped[:0]
	}
	return a.Finalize(h, c.Value, good)
}

// DroppedSigners are the validators whose signatures the last
// FollowCommit dropped from the certificate it finalized (their extension
// disagreed with this node's evaluation or did not verify, while a quorum
// of the others agreed): a byzantine validator, named.
func (a *App) DroppedSigners() []int { return append([]int(nil), a.dropped...) }

// Finalized is the last height this application finalized.
func (a *App) Finalized() uint64 { return a.finalized }
