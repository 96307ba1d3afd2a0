package consensus

import (
	"math"
	"math/big"
)

// ProposerSelector is the paper's proposer(h, r). It must be a deterministic
// function of (height, round) shared by all validators; the node may weight it
// by on-chain state such as verified homomorphic work credits.
type ProposerSelector interface {
	Proposer(height uint64, round Round) int
}

// PrioritySelector is CometBFT's proposer-priority weighted round robin over
// a fixed validator set: every increment adds each validator's power to its
// priority, picks the highest priority (ties: lowest index) and subtracts the
// total power from it. Before each batch of increments priorities are
// rescaled into a window of 2x the total power and centred on their average.
//
// As in CometBFT, the proposer of (h, 0) is the one picked by the h-th single
// increment from the all-zero genesis priorities, and the proposer of (h, r)
// is picked by r further increments made in one batch. Over any window of
// TotalPower consecutive increments each validator proposes about in
// proportion to its power.
//
// It keeps the state at the latest height asked for, so moving forward costs
// O(n) per height and round; asking for an earlier height recomputes from
// genesis. Not safe for concurrent use (the Machine is its only caller).
type PrioritySelector struct {
	vals *ValidatorSet

	h        uint64 // priorities below are the state after h increments
	prio     []int64
	proposer int

	rh    uint64 // cached round state: prio advanced rr times from the state of height rh
	rr    Round
	rprio []int64
	rprop int
}

// NewPrioritySelector starts from genesis.
func NewPrioritySelector(vals *ValidatorSet) *PrioritySelector {
	return &PrioritySelector{vals: vals, prio: make([]int64, vals.Size()), rprio: make([]int64, vals.Size())}
}

// Proposer returns proposer(height, round). Heights start at 1.
func (s *PrioritySelector) Proposer(height uint64, round Round) int {
	if height == 0 {
		height = 1
	}
	if height < s.h {
		s.h, s.rh = 0, 0
		clear(s.prio)
	}
	for s.h < height {
		s.proposer = s.increment(s.prio, 1)
		s.h++
		s.rh = 0
	}
	if round <= 0 {
		return s.proposer
	}
	if s.rh != height || s.rr > round {
		s.rh, s.rr = height, 0
		copy(s.rprio, s.prio)
		s.rescaleAndCentre(s.rprio)
	}
	for s.rr < round {
		s.rprop = s.step(s.rprio)
		s.rr++
	}
	return s.rprop
}

// increment is CometBFT's IncrementProposerPriority(times).
func (s *PrioritySelector) increment(prio []int64, times int) int {
	s.rescaleAndCentre(prio)
	p := 0
	for range times {
		p = s.step(prio)
	}
	return p
}

func (s *PrioritySelector) rescaleAndCentre(prio []int64) {
	diffMax := 2 * s.vals.TotalPower()
	lo, hi := int64(math.MaxInt64), int64(math.MinInt64)
	for _, p := range prio {
		lo, hi = min(lo, p), max(hi, p)
	}
	if diff := subClip(hi, lo); diff > diffMax {
		ratio := (diff + diffMax - 1) / diffMax
		for i := range prio {
			prio[i] /= ratio
		}
	}
	sum := new(big.Int)
	for _, p := range prio {
		sum.Add(sum, big.NewInt(p))
	}
	avg := sum.Div(sum, big.NewInt(int64(len(prio)))).Int64()
	for i := range prio {
		prio[i] = subClip(prio[i], avg)
	}
}

func (s *PrioritySelector) step(prio []int64) int {
	best := 0
	for i := range prio {
		prio[i] = addClip(prio[i], s.vals.vals[i].Power)
		if prio[i] > prio[best] {
			best = i
		}
	}
	prio[best] = subClip(prio[best], s.vals.TotalPower())
	return best
}

func addClip(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	if b < 0 && a < math.MinInt64-b {
		return math.MinInt64
	}
	return a + b
}

func subClip(a, b int64) int64 {
	if b > 0 && a < math.MinInt64+b {
		return math.MinInt64
	}
	if b < 0 && a > math.MaxInt64+b {
		return math.MaxInt64
	}
	return a - b
}
