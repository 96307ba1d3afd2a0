package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/node"
	"github.com/zkbank/zkbank/version"
)

// The operator's path of a validator-set change, offline: write the change
// from the genesis committee, sign it in three validators' homes (a
// non-member cannot), and a submission with every validator down fails in
// one line. The signed file verifies against the genesis committee.
func TestValidatorsChangeSignSubmit(t *testing.T) {
	dir := t.TempDir()
	g := &genesis.Genesis{ChainID: "cli-change", ParamSet: ledger.ZKB128.Name, Threshold: 2, Created: time.Now().UTC()}
	for i := 0; i < 5; i++ {
		home := filepath.Join(dir, fmt.Sprintf("v%d", i))
		info, err := node.Init(home, []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 27600+i)}, deadURL(t), nil)
		if err != nil {
			t.Fatal(err)
		}
		if i < 4 {
			g.Validators = append(g.Validators, genesis.Validator{Index: i, Name: fmt.Sprintf("node-%d", i), PeerID: info.PeerID, P2PAddrs: info.P2PAddrs, ConsensusPub: info.ConsensusPub, API: info.API, Power: 1})
		}
	}
	gpath := filepath.Join(dir, "genesis.json")
	if err := g.Save(gpath); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		if err := g.Save(filepath.Join(dir, fmt.Sprintf("v%d", i), "genesis.json")); err != nil {
			t.Fatal(err)
		}
	}
	change := filepath.Join(dir, "change.json")

	code, _, stderr := zk(t, "validators", "change", "--genesis", gpath, "--remove", "node-9", "--out", change, "--timeout", "5s")
	oneErrorLine(t, code, stderr, 1, "--remove node-9", "no validator of that name")
	code, _, stderr = zk(t, "validators", "change", "--genesis", gpath, "--out", change)
	oneErrorLine(t, code, stderr, 1, "nothing to change")

	code, stdout, stderr := zk(t, "validators", "change", "--genesis", gpath, "--add", "bank-5="+filepath.Join(dir, "v4"), "--remove", "node-0", "--reason", "rotate", "--out", change, "--timeout", "5s")
	if code != 0 {
		t.Fatalf("change: exit %d: %s", code, stderr)
	}
	if !strings.Contains(stdout, "epoch 1, 4 -> 4 validators (2-of-4 key)") {
		t.Fatalf("change said %q", stdout)
	}
	for _, v := range []string{"v1", "v2", "v3"} {
		code, stdout, stderr = zk(t, "validators", "sign", "--home", filepath.Join(dir, v), change)
		if code != 0 {
			t.Fatalf("sign in %s: exit %d: %s", v, code, stderr)
		}
	}
	if !strings.Contains(stdout, "(3 signatures)") {
		t.Fatalf("sign said %q", stdout)
	}
	code, _, stderr = zk(t, "validators", "sign", "--home", filepath.Join(dir, "v4"), change)
	oneErrorLine(t, code, stderr, 1, "no validator's of the current committee")

	b, err := os.ReadFile(change)
	if err != nil {
		t.Fatal(err)
	}
	ch, err := genesis.DecodeChange(b)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Verify(g, g.Validators, 0); err != nil {
		t.Fatalf("the signed change does not verify: %v", err)
	}
	if ch.Validators[3].Name != "bank-5" || ch.Validators[0].Name != "node-1" || ch.Reason != "rotate" {
		t.Fatalf("committee %+v", ch.Validators)
	}

	// Every member of the next committee is down here: submit refuses
	// (the resharing would wait for them with the chain stopped), naming
	// them; --force hands it to the current validators anyway.
	code, _, stderr = zk(t, "validators", "submit", change, "--genesis", gpath, "--timeout", "5s")
	oneErrorLine(t, code, stderr, 1, "4 of the 4 validators the key resharing waits for", "bank-5", "does not answer", "--force")
	code, _, stderr = zk(t, "validators", "submit", change, "--force", "--genesis", gpath, "--timeout", "5s")
	oneErrorLine(t, code, stderr, 1, "no validator took the change")

	code, stdout, _ = zk(t, "validators", "list", "--genesis", gpath, "--timeout", "5s")
	if code != 0 || !strings.Contains(stdout, "epoch 0: 4 validators, 2-of-4 key") || !strings.Contains(stdout, "node-3") {
		t.Fatalf("list: exit %d: %q", code, stdout)
	}
}

// statusServer answers /v1/status with st, as a node would.
func statusServer(t *testing.T, st api.Status) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != api.PathStatus {
			http.NotFound(w, r)
			return
		}
		_ = json.NewEncoder(w).Encode(st)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// The pre-flight of 'validators submit' asks every validator the resharing
// waits for: the next committee and a dealer that leaves (here, with one
// member staying of a 2-of-4 committee, the first leaving one, "a"). It
// names each that is down or on another chain, protocol or epoch, and
// passes when all answer for this chain at this epoch.
func TestSubmitPreflightNamesEveryMemberNotReady(t *testing.T) {
	ok := api.Status{Chain: "c", Protocol: version.Protocol, Epoch: 3}
	other, oldProto, behind := ok, ok, ok
	other.Chain, oldProto.Protocol, behind.Epoch = "another", version.Protocol-1, 2
	cur := &genesis.Genesis{ChainID: "c", Threshold: 2, Validators: []genesis.Validator{
		{Name: "a", ConsensusPub: "pa", API: deadURL(t)},
		{Name: "b", ConsensusPub: "pb", API: statusServer(t, ok)},
		{Name: "c", ConsensusPub: "pc", API: statusServer(t, ok)},
		{Name: "d", ConsensusPub: "pd", API: statusServer(t, ok)},
	}}
	ch := &genesis.Change{Validators: []genesis.Validator{
		cur.Validators[3],
		{Name: "e", ConsensusPub: "pe", API: statusServer(t, other)},
		{Name: "f", ConsensusPub: "pf", API: statusServer(t, oldProto)},
		{Name: "g", ConsensusPub: "pg", API: statusServer(t, behind)},
	}}
	members := resharingMembers(ch, cur)
	if len(members) != 5 || members[4].Name != "a" {
		t.Fatalf("members %v", members)
	}
	err := preflight(context.Background(), members, "c", 3)
	if err == nil {
		t.Fatal("passed with four members not ready")
	}
	for _, want := range []string{"4 of the 5", "a (", "does not answer", `e (`, `runs chain "another"`, "f (", "speaks protocol", "g (", "at epoch 2"} {
		if !strings.Contains(err.Error(), want) {
			t.Fatalf("%q lacks %q", err, want)
		}
	}
	if strings.Contains(err.Error(), "d (") {
		t.Fatalf("named a ready member: %v", err)
	}
	ready := &genesis.Change{Validators: []genesis.Validator{cur.Validators[1], cur.Validators[2], cur.Validators[3]}}
	if err := preflight(context.Background(), resharingMembers(ready, cur), "c", 3); err != nil {
		t.Fatalf("every member ready: %v", err)
	}
}
