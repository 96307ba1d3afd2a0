package consensus

import (
	"fmt"
	"time"
)

// Config is fixed for the life of a Machine.
type Config struct {
	// ChainID separates signatures of different networks (at most MaxChainIDLen bytes).
	ChainID    string
	Validators *ValidatorSet
	// Proposer is proposer(h, r); nil means NewPrioritySelector(Validators).
	Proposer ProposerSelector
	// Timeouts; the zero value (or one with only WaitForWork set) means
	// DefaultTimeouts() (with that WaitForWork).
	Timeouts Timeouts
	// Verifier checks signatures; nil means Ed25519Verifier{}.
	Verifier Verifier
	// Metrics receives what the machine observes; nil means NopMetrics().
	Metrics Metrics
}

// Timeouts grow linearly with the round (base + delta*round), so that after
// GST some round is long enough for every correct validator to hear the others.
type Timeouts struct {
	Propose, ProposeDelta     time.Duration
	Prevote, PrevoteDelta     time.Duration
	Precommit, PrecommitDelta time.Duration
	// Rebroadcast is the period at which the machine re-sends its own messages
	// of the current round and its proof-of-lock.
	Rebroadcast time.Duration
	// WaitForWork, if positive, is how long the proposer of round 0 of a
	// height waits for the application to have work (WorkSignaler) before
	// proposing anyway, possibly an empty value. Zero proposes at once. It
	// must be below Propose, or the other validators would time out first.
	WaitForWork time.Duration
}

// DefaultTimeouts are CometBFT's defaults, with a one-second rebroadcast.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		Propose: 3 * time.Second, ProposeDelta: 500 * time.Millisecond,
		Prevote: time.Second, PrevoteDelta: 500 * time.Millisecond,
		Precommit: time.Second, PrecommitDelta: 500 * time.Millisecond,
		Rebroadcast: time.Second,
	}
}

// Duration returns the timeout of kind in round r, saturating instead of overflowing.
func (t Timeouts) Duration(kind TimeoutKind, r Round) time.Duration {
	var base, delta time.Duration
	switch kind {
	case TimeoutPropose:
		base, delta = t.Propose, t.ProposeDelta
	case TimeoutPrevote:
		base, delta = t.Prevote, t.PrevoteDelta
	case TimeoutPrecommit:
		base, delta = t.Precommit, t.PrecommitDelta
	case TimeoutRebroadcast:
		return t.Rebroadcast
	case TimeoutWaitWork:
		return t.WaitForWork
	}
	if r <= 0 || delta <= 0 {
		return base
	}
	const maxD = time.Duration(1<<62 - 1)
	if delta > (maxD-base)/time.Duration(r) {
		return maxD
	}
	return base + delta*time.Duration(r)
}

func (c *Config) check() error {
	if c.Validators == nil {
		return fmt.Errorf("%w: no validator set", ErrConfig)
	}
	if len(c.ChainID) > MaxChainIDLen {
		return fmt.Errorf("%w: chain id longer than %d bytes", ErrConfig, MaxChainIDLen)
	}
	if c.Timeouts == (Timeouts{WaitForWork: c.Timeouts.WaitForWork}) {
		w := c.Timeouts.WaitForWork
		c.Timeouts = DefaultTimeouts()
		c.Timeouts.WaitForWork = w
	}
	t := c.Timeouts
	if t.Propose <= 0 || t.Prevote <= 0 || t.Precommit <= 0 || t.Rebroadcast <= 0 ||
		t.ProposeDelta < 0 || t.PrevoteDelta < 0 || t.PrecommitDelta < 0 || t.WaitForWork < 0 {
		return fmt.Errorf("%w: timeouts must be positive (deltas and WaitForWork non-negative)", ErrConfig)
	}
	if t.WaitForWork >= t.Propose {
		return fmt.Errorf("%w: WaitForWork %v must be below the propose timeout %v", ErrConfig, t.WaitForWork, t.Propose)
	}
	if c.Proposer == nil {
		c.Proposer = NewPrioritySelector(c.Validators)
	}
	if c.Verifier == nil {
		c.Verifier = Ed25519Verifier{}
	}
	if c.Metrics == nil {
		c.Metrics = NopMetrics()
	}
	return nil
}
