package lending

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// State is what a bot remembers across restarts (a JSON file next to its
// pool wallet, mode 0600): how far it scanned, what it decided, and the
// loans it made. The chain is the authority on loans; the state spares a
// restarted bot rescanning history and deciding twice.
type State struct {
	Version int    `json:"version"`
	Chain   string `json:"chain"`
	Pool    string `json:"pool"`
	// Scanned is the last block height whose applications were decided.
	Scanned      uint64                  `json:"scanned"`
	Applications map[string]*Decided     `json:"applications"`
	Loans        map[string]*LoanTracker `json:"loans"`
}

// Decided is one decided application.
type Decided struct {
	Borrower string `json:"borrower"`
	Kind     string `json:"kind"`
	Height   uint64 `json:"height"`
	Decision string `json:"decision"`
	Reason   string `json:"reason"`
	Loan     string `json:"loan,omitempty"`
}

// LoanTracker follows one loan the bot made.
type LoanTracker struct {
	ID          string   `json:"id"`
	Borrower    string   `json:"borrower"`
	Application string   `json:"application"`
	Amount      uint64   `json:"amount"` // cents
	Start       uint64   `json:"start"`
	Due         []uint64 `json:"due"`
	Paid        int      `json:"paid"`   // installments repaid on time, as last reconciled
	Missed      int      `json:"missed"` // installments missed
	// Repayments seen in blocks (committed), not yet reconciled with the
	// borrower's lending state.
	Repayments []SeenRepayment `json:"repayments,omitempty"`
	Closed     bool            `json:"closed,omitempty"`
}

// SeenRepayment is a committed repayment of a loan, by the block that
// ordered it.
type SeenRepayment struct {
	ID     string `json:"id"`
	Height uint64 `json:"height"`
}

// Next is the index of the loan's next unsettled installment.
func (l *LoanTracker) Next() int { return l.Paid + l.Missed }

const stateVersion = 1

// Bounds on what a state file keeps.
const (
	maxDecided     = 4096
	maxClosedLoans = 1024
)

// ErrState reports a state file this bot cannot use.
var ErrState = errors.New("bot state")

// LoadState reads a bot state file; a missing one is a fresh state.
func LoadState(path, chain, pool string) (*State, error) {
	s := &State{Version: stateVersion, Chain: chain, Pool: pool, Applications: map[string]*Decided{}, Loans: map[string]*LoanTracker{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w %s: %w", ErrState, path, err)
	}
	var got State
	if err := json.Unmarshal(b, &got); err != nil {
		return nil, fmt.Errorf("%w %s: corrupt: %v", ErrState, path, err)
	}
	if got.Version != stateVersion {
		return nil, fmt.Errorf("%w %s: version %d, this zkbank reads %d", ErrState, path, got.Version, stateVersion)
	}
	if got.Chain != chain || got.Pool != pool {
		return nil, fmt.Errorf("%w %s: it belongs to pool %s on chain %s, not pool %s on chain %s (use another --state file)", ErrState, path, short(got.Pool), got.Chain, short(pool), chain)
	}
	if got.Applications == nil {
		got.Applications = map[string]*Decided{}
	}
	if got.Loans == nil {
		got.Loans = map[string]*LoanTracker{}
	}
	return &got, nil
}

// Save writes the state atomically (mode 0600), pruning the oldest
// decisions and closed loans beyond the bounds.
func (s *State) Save(path string) error {
	s.prune()
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	_, err = tmp.Write(append(b, '\n'))
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("%w: %w", ErrState, err)
	}
	return nil
}

func (s *State) prune() {
	if len(s.Applications) > maxDecided {
		ids := make([]string, 0, len(s.Applications))
		for id := range s.Applications {
			ids = append(ids, id)
		}
		sort.Slice(ids, func(i, j int) bool { return s.Applications[ids[i]].Height < s.Applications[ids[j]].Height })
		for _, id := range ids[:len(ids)-maxDecided] {
			delete(s.Applications, id)
		}
	}
	var closed []string
	for id, l := range s.Loans {
		if l.Closed {
			closed = append(closed, id)
		}
	}
	if len(closed) > maxClosedLoans {
		sort.Slice(closed, func(i, j int) bool { return s.Loans[closed[i]].Start < s.Loans[closed[j]].Start })
		for _, id := range closed[:len(closed)-maxClosedLoans] {
			delete(s.Loans, id)
		}
	}
}

// OpenLoans counts the loans not yet closed.
func (s *State) OpenLoans() int {
	n := 0
	for _, l := range s.Loans {
		if !l.Closed {
			n++
		}
	}
	return n
}
