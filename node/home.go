package node

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/zkbank/zkbank/p2p"
)

// Home is a validator's directory layout.
type Home struct{ Dir string }

func (h Home) NodeKey() string      { return filepath.Join(h.Dir, "node_key") }
func (h Home) ConsensusKey() string { return filepath.Join(h.Dir, "consensus_key") }
func (h Home) Genesis() string      { return filepath.Join(h.Dir, "genesis.json") }
func (h Home) Data() string         { return filepath.Join(h.Dir, "data") }
func (h Home) KeyShare() string     { return filepath.Join(h.Dir, "key_share") }
func (h Home) PublicKeys() string   { return filepath.Join(h.Dir, "public_keys.bin") }
func (h Home) Config() string       { return filepath.Join(h.Dir, "node.json") }

// LocalConfig is what `zkbank node init` records about this node.
type LocalConfig struct {
	P2PAddrs  []string `json:"p2p_addrs"`
	API       string   `json:"api"`
	Bootstrap []string `json:"bootstrap,omitempty"` // extra peers (full multiaddrs with /p2p/) besides the genesis validators
	MDNS      bool     `json:"mdns,omitempty"`      // find zkbank peers on the LAN
	DHT       bool     `json:"dht,omitempty"`       // join the chain's Kademlia DHT (prefix /zkbank) to find peers
}

// InitInfo is printed by `zkbank node init` for the chain's creator.
type InitInfo struct {
	PeerID       string   `json:"peer_id"`
	ConsensusPub string   `json:"consensus_pub"`
	P2PAddrs     []string `json:"p2p_addrs"`
	API          string   `json:"api"`
}

// Init creates a validator home: a libp2p identity, a consensus signing key
// (both 0600) and the local addresses. Re-running it keeps existing keys.
func Init(dir string, p2pAddrs []string, api string, out io.Writer, opts ...func(*LocalConfig)) (*InitInfo, error) {
	h := Home{Dir: dir}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("node init: %w", err)
	}
	id, err := p2p.LoadOrCreateIdentity(h.NodeKey())
	if err != nil {
		return nil, fmt.Errorf("node init: %w", err)
	}
	pid, err := peer.IDFromPrivateKey(id)
	if err != nil {
		return nil, err
	}
	ck, err := loadOrCreateConsensusKey(h.ConsensusKey())
	if err != nil {
		return nil, err
	}
	cfg := LocalConfig{P2PAddrs: p2pAddrs, API: api}
	for _, o := range opts {
		o(&cfg)
	}
	b, _ := json.MarshalIndent(cfg, "", "  ")
	if err := os.WriteFile(h.Config(), append(b, '\n'), 0o600); err != nil {
		return nil, fmt.Errorf("node init: %w", err)
	}
	info := &InitInfo{PeerID: pid.String(), ConsensusPub: hex.EncodeToString(ck.Public().(ed25519.PublicKey)), P2PAddrs: p2pAddrs, API: api}
	if out != nil {
		enc := json.NewEncoder(out)
		if err := enc.Encode(info); err != nil {
			return nil, err
		}
	}
	return info, nil
}

func loadOrCreateConsensusKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		_, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			return nil, err
		}
		if err := os.WriteFile(path, []byte(hex.EncodeToString(priv.Seed())+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("writing %s: %w", path, err)
		}
		return priv, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	seed, err := hex.DecodeString(strings.TrimSpace(string(b)))
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%s: not a hex ed25519 seed", path)
	}
	return ed25519.NewKeyFromSeed(seed), nil
}

func loadLocalConfig(h Home) (*LocalConfig, error) {
	b, err := os.ReadFile(h.Config())
	if err != nil {
		return nil, fmt.Errorf("%s: %w (run `zkbank node init` first)", h.Config(), err)
	}
	var c LocalConfig
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", h.Config(), err)
	}
	return &c, nil
}
