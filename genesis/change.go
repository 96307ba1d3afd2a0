package genesis

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Change is a validator-set change: the committee of the next epoch,
// signed by a quorum (more than two thirds of the voting power) of the
// current one. A block carries it; the new committee takes over at the
// height the chain fixes when it commits the block (chain.SwitchDelay
// heights later), after the key shares are reshared to it (docs/PROTOCOL.md,
// "Validator-set changes").
//
// A Change is self-certifying: whoever holds the genesis can check a run of
// changes, each against the committee the previous one installed, without
// any block (VerifyChain). The signatures cover everything but themselves.
type Change struct {
	ChainID string `json:"chain_id"`
	// Epoch is the epoch this change starts: 1 for the first change of a
	// chain (genesis is epoch 0), then 2, ...
	Epoch uint64 `json:"epoch"`
	// Validators is the new committee, indexes 0..N'-1. A member that stays
	// keeps its consensus key and peer id (and is found by its key).
	Validators []Validator `json:"validators"`
	Threshold  int         `json:"threshold"`
	// Reason is free text for operators ("add bank-5"), signed too.
	Reason     string      `json:"reason,omitempty"`
	Signatures []ChangeSig `json:"signatures"`
}

// ChangeSig is one current validator's signature over Change.SigningBytes.
type ChangeSig struct {
	Validator int    `json:"validator"` // index in the committee being replaced
	Sig       string `json:"sig"`       // hex ed25519
}

// MaxChangeBytes bounds an encoded change (a block field, a request body).
const MaxChangeBytes = 64 << 10

// changeDomain separates change signatures from every other signature a
// consensus key makes.
const changeDomain = "zkbank/validator-set-change/1\x00"

// SigningBytes is what each signer signs: the change without signatures.
func (c *Change) SigningBytes() []byte {
	u := *c
	u.Signatures = nil
	b, _ := json.Marshal(&u)
	return append([]byte(changeDomain), b...)
}

// Sign adds the signature of current validator index with priv (replacing
// one it made before).
func (c *Change) Sign(index int, priv ed25519.PrivateKey) {
	sig := ChangeSig{Validator: index, Sig: hex.EncodeToString(ed25519.Sign(priv, c.SigningBytes()))}
	for i, s := range c.Signatures {
		if s.Validator == index {
			c.Signatures[i] = sig
			return
		}
	}
	c.Signatures = append(c.Signatures, sig)
}

// Encode is the canonical encoding a block carries.
func (c *Change) Encode() []byte {
	b, _ := json.Marshal(c)
	return b
}

// DecodeChange decodes and bounds an encoded change.
func DecodeChange(b []byte) (*Change, error) {
	if len(b) > MaxChangeBytes {
		return nil, fmt.Errorf("%w: validator-set change of %d bytes (at most %d)", ErrInvalid, len(b), MaxChangeBytes)
	}
	var c Change
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%w: validator-set change: %w", ErrInvalid, err)
	}
	return &c, nil
}

// Verify checks c against the committee it replaces (cur, of epoch
// c.Epoch-1) on chain g: the new committee is well-formed (as a genesis
// committee must be), and distinct members of cur holding more than two
// thirds of its power signed exactly these bytes.
func (c *Change) Verify(g *Genesis, cur []Validator, curEpoch uint64) error {
	if c.ChainID != g.ChainID {
		return fmt.Errorf("%w: validator-set change for chain %q, this is %q", ErrInvalid, c.ChainID, g.ChainID)
	}
	if c.Epoch != curEpoch+1 {
		return fmt.Errorf("%w: validator-set change starts epoch %d, the next epoch is %d", ErrInvalid, c.Epoch, curEpoch+1)
	}
	next := *g
	next.Validators, next.Threshold, next.Accounts = c.Validators, c.Threshold, nil
	if err := next.Validate(); err != nil {
		return fmt.Errorf("the new committee: %w", err)
	}
	seenKey, seenPeer := map[string]bool{}, map[string]bool{}
	for _, v := range c.Validators {
		if seenKey[v.ConsensusPub] || seenPeer[v.PeerID] {
			return fmt.Errorf("%w: validator %d of the new committee repeats a consensus key or peer id", ErrInvalid, v.Index)
		}
		seenKey[v.ConsensusPub], seenPeer[v.PeerID] = true, true
		for _, o := range cur {
			if o.ConsensusPub == v.ConsensusPub && o.PeerID != v.PeerID {
				return fmt.Errorf("%w: new validator %d keeps validator %d's consensus key under another peer id", ErrInvalid, v.Index, o.Index)
			}
			if o.PeerID == v.PeerID && o.ConsensusPub != v.ConsensusPub {
				return fmt.Errorf("%w: new validator %d takes validator %d's peer id with another consensus key", ErrInvalid, v.Index, o.Index)
			}
		}
	}
	var total, signed int64
	for _, v := range cur {
		total += v.Power
	}
	msg := c.SigningBytes()
	seen := map[int]bool{}
	for _, s := range c.Signatures {
		if s.Validator < 0 || s.Validator >= len(cur) || seen[s.Validator] {
			return fmt.Errorf("%w: validator-set change signature by unknown or repeated validator %d", ErrInvalid, s.Validator)
		}
		seen[s.Validator] = true
		pub, err := cur[s.Validator].PublicKey()
		if err != nil {
			return err
		}
		sig, err := hex.DecodeString(s.Sig)
		if err != nil || !ed25519.Verify(pub, msg, sig) {
			return fmt.Errorf("%w: validator %d's signature of the validator-set change does not verify", ErrInvalid, s.Validator)
		}
		signed += cur[s.Validator].Power
	}
	if 3*signed <= 2*total {
		return fmt.Errorf("%w: validator-set change signed by %d of %d voting power (more than two thirds needed)", ErrInvalid, signed, total)
	}
	return nil
}

// Epoch is a committed change: the change and the first height its
// committee decides.
type Epoch struct {
	Change *Change `json:"change"`
	Start  uint64  `json:"start"`
}

// Committee returns the committee of epoch number e given the committed
// changes in order (epoch 0 is the genesis committee).
func (g *Genesis) Committee(epochs []Epoch) (vals []Validator, threshold int, epoch uint64) {
	if len(epochs) == 0 {
		return g.Validators, g.Threshold, 0
	}
	last := epochs[len(epochs)-1].Change
	return last.Validators, last.Threshold, last.Epoch
}

// At is the genesis as the committee of the last of epochs sees it: the
// same chain, accounts and parameters, its validators and threshold.
func (g *Genesis) At(epochs []Epoch) *Genesis {
	if len(epochs) == 0 {
		return g
	}
	out := *g
	out.Validators, out.Threshold, _ = g.Committee(epochs)
	return &out
}

// VerifyChain checks epochs in order, each change against the committee
// before it, starting from genesis, with strictly increasing start heights.
func (g *Genesis) VerifyChain(epochs []Epoch) error {
	cur, epoch := g.Validators, uint64(0)
	var start uint64
	for i, e := range epochs {
		if e.Change == nil {
			return fmt.Errorf("%w: epoch record %d has no change", ErrInvalid, i)
		}
		if err := e.Change.Verify(g, cur, epoch); err != nil {
			return fmt.Errorf("epoch %d: %w", i+1, err)
		}
		if e.Start <= start {
			return fmt.Errorf("%w: epoch %d starts at height %d, not after %d", ErrInvalid, i+1, e.Start, start)
		}
		cur, epoch, start = e.Change.Validators, e.Change.Epoch, e.Start
	}
	return nil
}

// EpochsFile is where a node keeps the committed changes it has seen, next
// to its genesis file.
const EpochsFile = "epochs.json"

// LoadEpochs reads the committed changes kept in path (none if the file
// does not exist) and checks them against g.
func LoadEpochs(g *Genesis, path string) ([]Epoch, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []Epoch
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, fmt.Errorf("%s: %w: %w", path, ErrInvalid, err)
	}
	if err := g.VerifyChain(out); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return out, nil
}

// SaveEpochs writes epochs to path atomically (a temporary file renamed
// over it).
func SaveEpochs(path string, epochs []Epoch) error {
	b, err := json.MarshalIndent(epochs, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".epochs-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Conflict reports the first epoch at which two committee histories name
// different changes (false if one is a prefix of the other). Two verified
// histories that conflict mean a past committee signed twice: a quorum of
// departed validators forking the history (a long-range attack); a client
// that sees both must not choose.
func Conflict(a, b []Epoch) (uint64, bool) {
	for i := 0; i < len(a) && i < len(b); i++ {
		if string(a[i].Change.Encode()) != string(b[i].Change.Encode()) {
			return uint64(i + 1), true
		}
	}
	return 0, false
}

// Dealers are the members of the current committee cur (threshold t) that
// re-deal the key to c's committee, by index in cur: the first t that stay,
// then, if fewer than t stay, the first that leave.
func (c *Change) Dealers(cur []Validator, t int) []int {
	stays := map[string]bool{}
	for _, v := range c.Validators {
		stays[v.ConsensusPub] = true
	}
	var dealers []int
	for _, staying := range []bool{true, false} {
		for i, v := range cur {
			if len(dealers) < t && stays[v.ConsensusPub] == staying {
				dealers = append(dealers, i)
			}
		}
	}
	return dealers
}
