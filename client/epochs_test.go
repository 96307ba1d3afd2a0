package client

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/ledger"
)

// epochServer serves GET /v1/validators with the history *h points to.
func epochServer(t *testing.T, h *[]genesis.Epoch) *httptest.Server {
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != api.PathValidators {
			http.NotFound(w, r)
			return
		}
		out := api.Validators{Epochs: []json.RawMessage{}}
		for _, e := range *h {
			b, _ := json.Marshal(e)
			out.Epochs = append(out.Epochs, b)
		}
		if n := len(*h); n > 0 {
			out.Epoch = (*h)[n-1].Change.Epoch
		}
		w.Header().Set("Content-Type", api.ContentJSON)
		json.NewEncoder(w).Encode(out)
	}))
	t.Cleanup(s.Close)
	return s
}

// A client holding only the genesis reaches the current committee: one
// validator withholds the change, another serves a forged one, and the
// client still takes the one history that verifies, asking the new
// committee's newcomer too.
func TestAttack_ClientTakesTheLongestVerifiedCommitteeHistory(t *testing.T) {
	var honest, withheld, forged []genesis.Epoch
	servers := []*httptest.Server{epochServer(t, &honest), epochServer(t, &withheld), epochServer(t, &forged), epochServer(t, &honest)}
	newcomer := epochServer(t, &honest)
	g := &genesis.Genesis{ChainID: "client-epochs", ParamSet: ledger.ZKB128.Name, Threshold: 2, Created: time.Unix(0, 0).UTC()}
	var keys []ed25519.PrivateKey
	entry := func(i int, url string) genesis.Validator {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		keys = append(keys, priv)
		return genesis.Validator{Index: i, Name: fmt.Sprintf("v%d", i), PeerID: fmt.Sprintf("peer-%d", i), ConsensusPub: hex.EncodeToString(pub), API: url, Power: 1}
	}
	for i, s := range servers {
		g.Validators = append(g.Validators, entry(i, s.URL))
	}
	next := append(append([]genesis.Validator(nil), g.Validators...), entry(4, newcomer.URL))
	ch := &genesis.Change{ChainID: g.ChainID, Epoch: 1, Validators: next, Threshold: 2}
	for i := 0; i < 3; i++ {
		ch.Sign(i, keys[i])
	}
	honest = []genesis.Epoch{{Change: ch, Start: 40}}
	// The forger serves a longer history: the honest change, then one it
	// signed alone (removing everyone but itself and the newcomer).
	evil := &genesis.Change{ChainID: g.ChainID, Epoch: 2, Validators: []genesis.Validator{next[2], next[4]}, Threshold: 1}
	evil.Validators[0].Index, evil.Validators[1].Index = 0, 1
	evil.Sign(2, keys[2])
	forged = []genesis.Epoch{{Change: ch, Start: 40}, {Change: evil, Start: 50}}

	m, err := Current(context.Background(), g)
	if err != nil {
		t.Fatal(err)
	}
	if m.Epoch() != 1 || len(m.Genesis().Validators) != 5 || m.Genesis().Validators[4].API != newcomer.URL {
		t.Fatalf("client sees epoch %d with %d validators", m.Epoch(), len(m.Genesis().Validators))
	}
	// Every genesis validator but one withholding: still found.
	honest2 := honest
	honest = nil
	servers[3].Close()
	withheld = honest2
	if m, err = Current(context.Background(), g); err != nil || m.Epoch() != 1 {
		t.Fatalf("one validator serving the history: epoch %d, %v", m.Epoch(), err)
	}
}

// Departed validators forking the history: one node serves a longer run
// that verifies on its own but departs from the committed one at epoch 1.
// The client refuses to choose instead of adopting the longer run.
func TestAttack_ClientRefusesConflictingCommitteeHistories(t *testing.T) {
	var committed, forged []genesis.Epoch
	servers := []*httptest.Server{epochServer(t, &committed), epochServer(t, &forged), epochServer(t, &committed), epochServer(t, &committed)}
	g := &genesis.Genesis{ChainID: "client-fork", ParamSet: ledger.ZKB128.Name, Threshold: 2, Created: time.Unix(0, 0).UTC()}
	var keys []ed25519.PrivateKey
	entry := func(i int, url string) (genesis.Validator, ed25519.PrivateKey) {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		return genesis.Validator{Index: i, Name: fmt.Sprintf("v%d", i), PeerID: fmt.Sprintf("peer-%s-%d", url, i), ConsensusPub: hex.EncodeToString(pub), API: url, Power: 1}, priv
	}
	for i, s := range servers {
		v, k := entry(i, s.URL)
		g.Validators, keys = append(g.Validators, v), append(keys, k)
	}
	committee := func(tag string) ([]genesis.Validator, []ed25519.PrivateKey) {
		var vs []genesis.Validator
		var ks []ed25519.PrivateKey
		for i := 0; i < 4; i++ {
			v, k := entry(i, "http://127.0.0.1:1/"+tag)
			vs, ks = append(vs, v), append(ks, k)
		}
		return vs, ks
	}
	b, _ := committee("b")
	real := &genesis.Change{ChainID: g.ChainID, Epoch: 1, Validators: b, Threshold: 2}
	c, ck := committee("c")
	fork := &genesis.Change{ChainID: g.ChainID, Epoch: 1, Validators: c, Threshold: 2}
	for i := 0; i < 3; i++ {
		real.Sign(i, keys[i])
		fork.Sign(i, keys[i])
	}
	d, _ := committee("d")
	fork2 := &genesis.Change{ChainID: g.ChainID, Epoch: 2, Validators: d, Threshold: 2}
	for i := 0; i < 3; i++ {
		fork2.Sign(i, ck[i])
	}
	committed = []genesis.Epoch{{Change: real, Start: 20}}
	forged = []genesis.Epoch{{Change: fork, Start: 20}, {Change: fork2, Start: 30}}
	if _, err := Current(context.Background(), g); !errors.Is(err, ErrConflict) {
		t.Fatalf("Current with a forked history served = %v, want ErrConflict", err)
	}
}
