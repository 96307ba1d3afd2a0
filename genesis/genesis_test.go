package genesis

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"path/filepath"
	"testing"
)

func validGenesis(t *testing.T) *Genesis {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	acct, _, _ := ed25519.GenerateKey(rand.Reader)
	return &Genesis{ChainID: "c", ParamSet: "zkb128", Threshold: 1,
		Validators: []Validator{{Index: 0, PeerID: "12D3KooW", ConsensusPub: hex.EncodeToString(pub), API: "http://127.0.0.1:1", Power: 1}},
		Accounts:   []Account{{SignPub: hex.EncodeToString(acct), Balance: 5}}}
}

func TestValidateRejectsBadGenesis(t *testing.T) {
	cases := map[string]func(g *Genesis){
		"no chain":        func(g *Genesis) { g.ChainID = "" },
		"unknown params":  func(g *Genesis) { g.ParamSet = "toy" },
		"threshold":       func(g *Genesis) { g.Threshold = 2 },
		"index":           func(g *Genesis) { g.Validators[0].Index = 1 },
		"consensus key":   func(g *Genesis) { g.Validators[0].ConsensusPub = "zz" },
		"power":           func(g *Genesis) { g.Validators[0].Power = 0 },
		"account key":     func(g *Genesis) { g.Accounts[0].SignPub = "00" },
		"kind":            func(g *Genesis) { g.Accounts[0].Kind = "savings" },
		"supply overflow": func(g *Genesis) { g.Accounts = append(g.Accounts, g.Accounts[0]); g.Accounts[0].Balance = 1 << 32 },
	}
	for name, mutate := range cases {
		g := validGenesis(t)
		mutate(g)
		if err := g.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", name, err)
		}
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	g := validGenesis(t)
	path := filepath.Join(t.TempDir(), "genesis.json")
	if err := g.Save(path); err != nil {
		t.Fatal(err)
	}
	got, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if got.Hash() != g.Hash() {
		t.Fatal("genesis hash changed across save/load")
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.json")); err == nil {
		t.Fatal("missing file loaded")
	}
}
