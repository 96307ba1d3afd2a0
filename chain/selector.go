package chain

import (
	"crypto/sha256"
	"encoding/binary"

	"github.com/zkbank/zkbank/consensus"
)

// CreditSelector is proposer(h, r) weighted by verified homomorphic work: a
// validator's weight is 1 + its work credits as of the last finalized height,
// and the pick is a deterministic hash of (h, r) into the cumulative weights.
// It reads the application's credits, so it must be called from the
// goroutine that drives the App (the consensus machine does).
type CreditSelector struct {
	credits func() []int64
}

// Selector returns the proposer selector weighted by this App's credits.
func (a *App) Selector() CreditSelector {
	return CreditSelector{credits: func() []int64 { return a.credits }}
}

// Proposer implements consensus.ProposerSelector.
func (s CreditSelector) Proposer(h uint64, r consensus.Round) int {
	if p := ProposerByCredits(s.credits(), h, r); p >= 0 {
		return p
	}
	return 0
}

// ProposerByCredits is the proposer of (h, r) given the credits as of the
// last finalized height (-1 if there are no validators): what
// CreditSelector picks, for anyone holding a finalized height's credits
// (the dashboard shows who proposed).
func ProposerByCredits(cr []int64, h uint64, r consensus.Round) int {
	var total uint64
	for _, c := range cr {
		total += uint64(1 + c)
	}
	if total == 0 {
		return -1
	}
	var buf [12]byte
	binary.BigEndian.PutUint64(buf[:8], h)
	binary.BigEndian.PutUint32(buf[8:], uint32(r))
	d := sha256.Sum256(buf[:])
	x := binary.BigEndian.Uint64(d[:8]) % total
	for i, c := range cr {
		w := uint64(1 + c)
		if x < w {
			return i
		}
		x -= w
	}
	return 0
}
