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

// The threshold must lie in [f+1, N-f]; powers must be equal; the committee
// must fit the parameter set's noise budget.
func TestValidateThresholdPowerAndCommitteeSize(t *testing.T) {
	withVals := func(n int, th int, powers ...int64) *Genesis {
		g := validGenesis(t)
		g.Validators = nil
		for i := 0; i < n; i++ {
			p := int64(1)
			if i < len(powers) {
				p = powers[i]
			}
			v := validGenesis(t).Validators[0]
			v.Index, v.Power = i, p
			g.Validators = append(g.Validators, v)
		}
		g.Threshold = th
		return g
	}
	for _, c := range []struct {
		n, t int
		ok   bool
	}{{4, 1, false}, {4, 2, true}, {4, 3, false}, {4, 4, false}, {7, 2, false}, {7, 3, true}, {7, 5, false}, {7, 6, false}} {
		err := withVals(c.n, c.t).Validate()
		if (err == nil) != c.ok {
			t.Errorf("%d-of-%d: %v", c.t, c.n, err)
		}
	}
	if err := withVals(4, 2, 5, 1, 1, 1).Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("unequal powers: %v", err)
	}
	if err := withVals(16, DefaultThreshold(16)).Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("16 validators (beyond the noise budget): %v", err)
	}
}
