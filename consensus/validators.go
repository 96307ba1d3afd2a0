package consensus

import (
	"crypto/ed25519"
	"fmt"
	"math"
)

// MaxTotalVotingPower keeps 3*power inside int64 (the quorum tests multiply
// by 3), as CometBFT does.
const MaxTotalVotingPower = math.MaxInt64 / 8

// Validator is a public key with its voting power.
type Validator struct {
	PubKey ed25519.PublicKey
	Power  int64
}

// ValidatorSet is an ordered, immutable set of validators. A validator is
// named by its index in the set everywhere in this package (votes,
// certificates, proposer selection, ties).
type ValidatorSet struct {
	vals  []Validator
	total int64
	index map[[ed25519.PublicKeySize]byte]int
}

// NewValidatorSet checks and copies vals: at least one validator, at most
// MaxValidators, 32-byte distinct keys, positive powers, total at most
// MaxTotalVotingPower.
func NewValidatorSet(vals []Validator) (*ValidatorSet, error) {
	if len(vals) == 0 || len(vals) > MaxValidators {
		return nil, fmt.Errorf("%w: %d validators", ErrConfig, len(vals))
	}
	s := &ValidatorSet{vals: make([]Validator, len(vals)), index: make(map[[ed25519.PublicKeySize]byte]int, len(vals))}
	for i, v := range vals {
		if len(v.PubKey) != ed25519.PublicKeySize {
			return nil, fmt.Errorf("%w: validator %d key has %d bytes", ErrConfig, i, len(v.PubKey))
		}
		if v.Power <= 0 || v.Power > MaxTotalVotingPower-s.total {
			return nil, fmt.Errorf("%w: validator %d power %d", ErrConfig, i, v.Power)
		}
		k := [ed25519.PublicKeySize]byte(v.PubKey)
		if _, dup := s.index[k]; dup {
			return nil, fmt.Errorf("%w: validator %d key repeated", ErrConfig, i)
		}
		s.index[k] = i
		s.total += v.Power
		s.vals[i] = Validator{PubKey: append(ed25519.PublicKey(nil), v.PubKey...), Power: v.Power}
	}
	return s, nil
}

// Size is the number of validators.
func (s *ValidatorSet) Size() int { return len(s.vals) }

// Get returns validator i.
func (s *ValidatorSet) Get(i int) Validator { return s.vals[i] }

// Power returns validator i's voting power.
func (s *ValidatorSet) Power(i int) int64 { return s.vals[i].Power }

// TotalPower is the sum of all voting powers.
func (s *ValidatorSet) TotalPower() int64 { return s.total }

// IndexOf returns the index of pub in the set.
func (s *ValidatorSet) IndexOf(pub ed25519.PublicKey) (int, bool) {
	if len(pub) != ed25519.PublicKeySize {
		return 0, false
	}
	i, ok := s.index[[ed25519.PublicKeySize]byte(pub)]
	return i, ok
}

// Has reports whether i is a validator index of the set.
func (s *ValidatorSet) Has(i int) bool { return i >= 0 && i < len(s.vals) }

// IsQuorum reports power > 2/3 of the total: the paper's "2f+1".
func (s *ValidatorSet) IsQuorum(power int64) bool { return 3*power > 2*s.total }

// IsOneThird reports power > 1/3 of the total: the paper's "f+1", enough to
// contain one correct validator.
func (s *ValidatorSet) IsOneThird(power int64) bool { return 3*power > s.total }
