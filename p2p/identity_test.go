package p2p

import (
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"
)

func TestIdentitySaveLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.key")
	sk, err := LoadOrCreateIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("key file mode %04o, want 0600", st.Mode().Perm())
	}
	again, err := LoadOrCreateIdentity(path)
	if err != nil {
		t.Fatal(err)
	}
	if !sk.Equals(again) {
		t.Fatal("reloaded key differs")
	}
	other, _ := GenerateIdentity()
	if err := SaveIdentity(path, other); !errors.Is(err, os.ErrExist) {
		t.Fatalf("overwriting a key: %v, want ErrExist", err)
	}
}

func TestIdentityRefusesLoosePermissions(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.key")
	sk, _ := GenerateIdentity()
	if err := SaveIdentity(path, sk); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadIdentity(path); !errors.Is(err, ErrKeyPermissions) {
		t.Fatalf("world-readable key: %v, want ErrKeyPermissions", err)
	}
}

func TestConfigRejects(t *testing.T) {
	secp, _, err := crypto.GenerateSecp256k1Key(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]Config{
		"no chain id":        {},
		"slash in chain id":  {ChainID: "a/b"},
		"global registry":    {ChainID: "c", Registerer: prometheus.DefaultRegisterer},
		"non-ed25519 key":    {ChainID: "c", Identity: secp},
		"protocol namespace": {ChainID: "c", Protocols: map[protocol.ID]ProtocolLimits{"/ipfs/x/1": {}}},
		"cap over ceiling":   {ChainID: "c", MaxMessageBytes: MaxFrameCeiling + 1},
		"gossip cap":         {ChainID: "c", MaxGossipBytes: 1 << 20},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := cfg.withDefaults(); !errors.Is(err, ErrConfig) {
				t.Fatalf("err = %v, want ErrConfig", err)
			}
		})
	}
}
