// Package genesis defines the genesis file every validator of a chain
// starts from: chain id, parameter set, the validator committee (network
// identities, consensus keys, client API addresses) and the prefunded
// accounts. It is shared by the node and by tools that create chains
// (zkbank testnet). It imports nothing of zkbank but the ledger's public
// types.
package genesis

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/zkbank/zkbank/ledger"
)

// ErrInvalid reports a genesis file that cannot start a chain.
var ErrInvalid = errors.New("genesis: invalid")

// Validator is one member of the committee.
type Validator struct {
	Index        int      `json:"index"`
	Name         string   `json:"name"`
	PeerID       string   `json:"peer_id"`       // libp2p peer id
	P2PAddrs     []string `json:"p2p_addrs"`     // multiaddrs without /p2p/
	ConsensusPub string   `json:"consensus_pub"` // hex ed25519 public key signing votes
	API          string   `json:"api"`           // client API base URL, e.g. http://127.0.0.1:26657
	Power        int64    `json:"power"`
}

// Account is a prefunded account.
type Account struct {
	Name    string `json:"name,omitempty"`
	SignPub string `json:"sign_pub"` // hex ed25519
	Kind    string `json:"kind"`     // "deposit" or "card"
	Balance uint64 `json:"balance"`  // minor units
}

// Timeouts of the consensus rounds (durations as Go strings: "500ms").
type Timeouts struct {
	Propose   string `json:"propose"`
	Prevote   string `json:"prevote"`
	Precommit string `json:"precommit"`
	Delta     string `json:"delta"` // added per round
	// Commit is how long the proposer of a new height, having nothing to
	// propose, waits for transfers before proposing an empty block (it
	// proposes at once when one arrives). It paces an idle chain, as
	// CometBFT's timeout_commit does, and must stay below Propose.
	Commit string `json:"commit"`
}

// DefaultThreshold is the decryption threshold for n validators, and the
// only one a genesis may name: f+1 with f = floor((n-1)/3). No f colluding
// validators can decrypt, and decisions need t+f = 2f+1 validators whose
// shares agree, which the honest ones are even with f validators down or
// lying (docs/PROTOCOL.md, "Robust decryption"). A higher threshold would
// protect nothing more: uploads are secret-shared among f-subsets of the
// validators (sealed uploads), so any f+1 of them hold every piece.
func DefaultThreshold(n int) int { return (n-1)/3 + 1 }

// Genesis is the whole file.
type Genesis struct {
	ChainID    string      `json:"chain_id"`
	ParamSet   string      `json:"param_set"`
	Threshold  int         `json:"threshold"`
	Validators []Validator `json:"validators"`
	Accounts   []Account   `json:"accounts"`
	Timeouts   Timeouts    `json:"timeouts"`
	// Score holds the credit score's public weights (docs/LENDING.md);
	// absent means ledger.DefaultScoreParams.
	Score   *ledger.ScoreParams `json:"score,omitempty"`
	Created time.Time           `json:"created"`
}

// ScoreParams returns the chain's score weights.
func (g *Genesis) ScoreParams() ledger.ScoreParams {
	if g.Score == nil {
		return ledger.DefaultScoreParams
	}
	return *g.Score
}

// Load reads and validates a genesis file.
func Load(path string) (*Genesis, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("genesis: %w", err)
	}
	var g Genesis
	if err := json.Unmarshal(b, &g); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalid, path, err)
	}
	if err := g.Validate(); err != nil {
		return nil, err
	}
	return &g, nil
}

// Save writes the genesis file.
func (g *Genesis) Save(path string) error {
	b, err := json.MarshalIndent(g, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// Hash identifies the genesis (and with it the chain) byte-exactly.
func (g *Genesis) Hash() [32]byte {
	b, _ := json.Marshal(g)
	return sha256.Sum256(b)
}

// Validate checks the committee and accounts.
func (g *Genesis) Validate() error {
	if g.ChainID == "" || len(g.ChainID) > 64 {
		return fmt.Errorf("%w: chain_id must be 1-64 characters", ErrInvalid)
	}
	if _, err := ledger.ParamSetByName(g.ParamSet); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if err := g.ScoreParams().Validate(); err != nil {
		return fmt.Errorf("%w: score: %w", ErrInvalid, err)
	}
	n := len(g.Validators)
	if f := (n - 1) / 3; n == 0 || g.Threshold != f+1 {
		return fmt.Errorf("%w: threshold %d of %d validators (must be f+1 = %d: f colluding validators cannot decrypt, and any f+1 of them hold every piece of a sealed upload, so a higher threshold protects nothing more)",
			ErrInvalid, g.Threshold, n, f+1)
	}
	set, _ := ledger.ParamSetByName(g.ParamSet)
	if p, err := ledger.NewParams(set); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	} else if com, err := ledger.NewCommittee(n, g.Threshold); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	} else if _, err := ledger.NewDecryptor(p, com); err != nil {
		return fmt.Errorf("%w: %d validators do not fit the parameter set's noise budget: %w", ErrInvalid, n, err)
	}
	for i, v := range g.Validators {
		if v.Index != i {
			return fmt.Errorf("%w: validator %d has index %d", ErrInvalid, i, v.Index)
		}
		if _, err := v.PublicKey(); err != nil {
			return err
		}
		if v.PeerID == "" || v.API == "" || v.Power <= 0 {
			return fmt.Errorf("%w: validator %d needs peer_id, api and a positive power", ErrInvalid, i)
		}
		// Consensus counts power, decryption counts validators (t and f):
		// they agree only if every validator has the same power.
		if v.Power != g.Validators[0].Power {
			return fmt.Errorf("%w: validator %d has power %d, validator 0 has %d: all validators must have equal power (a quorum of power must hold t+f validators' shares)", ErrInvalid, i, v.Power, g.Validators[0].Power)
		}
	}
	var supply uint64
	for i, a := range g.Accounts {
		if _, err := a.Decode(); err != nil {
			return fmt.Errorf("account %d: %w", i, err)
		}
		supply += a.Balance
		if a.Balance > ledger.MaxAmount || supply > ledger.MaxSupply {
			return fmt.Errorf("%w: total supply exceeds %d", ErrInvalid, uint64(ledger.MaxSupply))
		}
	}
	return nil
}

// PublicKey decodes the validator's consensus key.
func (v Validator) PublicKey() (ed25519.PublicKey, error) {
	b, err := hex.DecodeString(v.ConsensusPub)
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: validator %d consensus_pub", ErrInvalid, v.Index)
	}
	return ed25519.PublicKey(b), nil
}

// Decode converts an account entry to the ledger's genesis account.
func (a Account) Decode() (ledger.GenesisAccount, error) {
	pub, err := hex.DecodeString(a.SignPub)
	if err != nil || len(pub) != ed25519.PublicKeySize {
		return ledger.GenesisAccount{}, fmt.Errorf("%w: sign_pub", ErrInvalid)
	}
	kind := ledger.KindDeposit
	switch a.Kind {
	case "", "deposit":
	case "card":
		kind = ledger.KindCard
	default:
		return ledger.GenesisAccount{}, fmt.Errorf("%w: kind %q", ErrInvalid, a.Kind)
	}
	return ledger.GenesisAccount{SignPub: pub, Kind: kind, Balance: a.Balance}, nil
}

// LedgerAccounts converts every account entry.
func (g *Genesis) LedgerAccounts() ([]ledger.GenesisAccount, error) {
	out := make([]ledger.GenesisAccount, 0, len(g.Accounts))
	for _, a := range g.Accounts {
		d, err := a.Decode()
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// Durations parses the timeouts with defaults.
func (t Timeouts) Durations() (propose, prevote, precommit, delta, commit time.Duration, err error) {
	parse := func(s string, def time.Duration) (time.Duration, error) {
		if s == "" {
			return def, nil
		}
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("%w: timeout %q", ErrInvalid, s)
		}
		return d, nil
	}
	if propose, err = parse(t.Propose, 1500*time.Millisecond); err != nil {
		return
	}
	if prevote, err = parse(t.Prevote, 500*time.Millisecond); err != nil {
		return
	}
	if precommit, err = parse(t.Precommit, 500*time.Millisecond); err != nil {
		return
	}
	if delta, err = parse(t.Delta, 500*time.Millisecond); err != nil {
		return
	}
	if commit, err = parse(t.Commit, 500*time.Millisecond); err != nil {
		return
	}
	if commit >= propose {
		err = fmt.Errorf("%w: timeout commit %v must be below propose %v (the other validators would give up on the proposer)", ErrInvalid, commit, propose)
	}
	return
}
