package chain

import (
	"errors"
	"fmt"
	"slices"

	"github.com/zkbank/zkbank/consensus"
)

// Validator-set changes (docs/PROTOCOL.md, "Validator-set changes"). A block
// at height h may carry a change (Block.SetChange) that a quorum of the
// current committee signed; Config.VerifyChange checks it. Once h is
// finalized the change is pending: heights h+1 and h+2 are quiet (no
// transfers, openings, consents or other change), so that every batch is
// decided by height h+2 and nothing spans the switch; height h+SwitchDelay
// is the first the new committee decides. The current committee can
// decide no block from that height on (ErrEpochEnded): its nodes stop,
// reshare the key to the new committee and start again with it (the node
// does that, node/epoch.go). The first block of an epoch carries the
// previous committee's precommits (checked against Config.PrevValidators)
// and no transfers: their acks are the previous committee's.

// SwitchDelay is how many heights after the block that carries a change
// the new committee takes over.
const SwitchDelay = 3

// ErrEpochEnded reports a height the current committee may not decide: a
// committed change hands it to the next one.
var ErrEpochEnded = errors.New("chain: the committee's epoch has ended")

// PendingChange is a committed validator-set change not yet in force.
type PendingChange struct {
	Raw    []byte // the encoded change, as the block carried it
	Height uint64 // the block that carried it
	Start  uint64 // the first height of the new committee
}

// signersOf is the committee whose precommits decided height h (h is the
// last finalized height or the next).
func (a *App) signersOf(h uint64) *consensus.ValidatorSet {
	if a.epochStart > 1 && h < a.epochStart && a.prevVals != nil {
		return a.prevVals
	}
	return a.vals
}

// atEpochStart reports whether height is the first of a committee other
// than genesis's: its block may carry no transfer.
func (a *App) atEpochStart(height uint64) bool {
	return a.epochStart > 1 && height == a.epochStart
}

// checkEpochRules refuses a block that breaks the rules of a change:
// beyond the epoch, not quiet while a change is pending, transfers at an
// epoch's start (or attestations: the previous committee's last heights are
// quiet, there is nothing to outvote), a change when one is pending or that
// does not verify.
func (a *App) checkEpochRules(b *Block) error {
	if p := a.pending; p != nil {
		if b.Height >= p.Start {
			return fmt.Errorf("%w: height %d belongs to the committee that takes over at height %d", ErrEpochEnded, b.Height, p.Start)
		}
		if len(b.Subs) > 0 || len(b.Opens) > 0 || len(b.Consents) > 0 || b.SetChange != nil {
			return fmt.Errorf("%w: height %d must be quiet (the committee changes at height %d)", ErrBlock, b.Height, p.Start)
		}
	}
	if a.atEpochStart(b.Height) && len(b.Subs) > 0 {
		return fmt.Errorf("%w: the first block of an epoch carries no transfer", ErrBlock)
	}
	if a.atEpochStart(b.Height) && slices.ContainsFunc(b.LastCommit, func(x Precommit) bool { return x.Attested }) {
		return fmt.Errorf("%w: the first block of an epoch carries no attestation", ErrBlock)
	}
	if b.SetChange != nil {
		if a.verifyChange == nil {
			return fmt.Errorf("%w: this chain takes no validator-set change here", ErrBlock)
		}
		if err := a.verifyChange(b.SetChange); err != nil {
			return fmt.Errorf("%w: validator-set change: %w", ErrBlock, err)
		}
	}
	return nil
}

// Pending is the committed validator-set change not yet in force (nil if
// none).
func (a *App) Pending() *PendingChange { return a.pending }
