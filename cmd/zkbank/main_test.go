package main

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/ledger"
)

// zk runs the CLI in-process and returns exit code, stdout and stderr.
func zk(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// oneErrorLine asserts the CLI failed with exactly one "zkbank: ..." line on
// stderr containing every want.
func oneErrorLine(t *testing.T, code int, stderr string, wantCode int, want ...string) {
	t.Helper()
	if code != wantCode {
		t.Fatalf("exit %d, want %d; stderr %q", code, wantCode, stderr)
	}
	lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
	if len(lines) != 1 || !strings.HasPrefix(lines[0], "zkbank: ") {
		t.Fatalf("stderr is not one error line: %q", stderr)
	}
	for _, w := range want {
		if !strings.Contains(lines[0], w) {
			t.Fatalf("stderr %q lacks %q", lines[0], w)
		}
	}
	if strings.Contains(stderr, "goroutine ") || strings.Contains(stderr, "Usage:") {
		t.Fatalf("stack trace or usage dump: %q", stderr)
	}
}

var (
	walletOnce sync.Once
	walletDir  string
)

// sharedWallets creates alice (deposit) and card (card) once per test binary.
func sharedWallets(t *testing.T) (alice, card string) {
	walletOnce.Do(func() {
		d, err := os.MkdirTemp("", "zkbank-cmd-test")
		if err != nil {
			t.Fatal(err)
		}
		walletDir = d
		if c, _, e := zk(t, "wallet", "create", "--name", "alice", "--out", filepath.Join(d, "alice.json")); c != 0 {
			t.Fatal(e)
		}
		if c, _, e := zk(t, "wallet", "create", "--name", "card", "--out", filepath.Join(d, "card.json"), "--card", "--limit", "500"); c != 0 {
			t.Fatal(e)
		}
	})
	return filepath.Join(walletDir, "alice.json"), filepath.Join(walletDir, "card.json")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if walletDir != "" {
		os.RemoveAll(walletDir)
	}
	os.Exit(code)
}

func TestHelpExplainsWhatZkbankIs(t *testing.T) {
	code, out, _ := zk(t, "--help")
	if code != 0 {
		t.Fatal(code)
	}
	for _, want := range []string{"confidential", "homomorphic", "t-of-N", "Examples:", "zkbank testnet", "zkbank wallet send", "wallet", "load", "testnet", "node"} {
		if !strings.Contains(out, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	code, out, _ = zk(t, "wallet", "send", "--help")
	if code != 0 || !strings.Contains(out, "--amount") || !strings.Contains(out, "Examples:") {
		t.Fatalf("wallet send --help: %d\n%s", code, out)
	}
}

func TestUsageErrorsAreOneLineExit2(t *testing.T) {
	alice, _ := sharedWallets(t)
	cases := []struct {
		args []string
		want []string
	}{
		{[]string{"frobnicate"}, []string{`unknown command "frobnicate"`, "zkbank --help"}},
		{[]string{"wallet", "frob"}, []string{`unknown command "frob" for "zkbank wallet"`}},
		{[]string{"wallet", "send", "--amout", "3"}, []string{"unknown flag: --amout", "'zkbank wallet send --help'"}},
		{[]string{"wallet", "send", "--wallet", alice, "--to", alice}, []string{"flag --amount is required"}},
		{[]string{"wallet", "send", "--wallet", alice, "--to", alice, "--amount", "1.234"}, []string{"at most 2 decimals"}},
		{[]string{"wallet", "send", "--wallet", alice, "--to", alice, "--amount", "-5"}, []string{"invalid amount"}},
		{[]string{"wallet", "send", "--wallet", alice, "--to", "nobody", "--amount", "5"}, []string{`--to "nobody"`}},
		{[]string{"wallet", "create"}, []string{"flag --name is required"}},
		{[]string{"wallet", "create", "--name", "x", "--limit", "5"}, []string{"--card wallets only"}},
		{[]string{"wallet", "balance"}, []string{"flag --wallet is required"}},
		{[]string{"load", "--wallets", "x", "--zipf", "0.5"}, []string{"must be > 1"}},
		{[]string{"load", "--wallets", "x", "--max", "--rate", "5"}, []string{"exclude each other"}},
		{[]string{"load", "--wallets", "x", "--depth", "0"}, []string{"--depth"}},
		{[]string{"load", "--wallets", "x", "--invalid", "2"}, []string{"fraction"}},
		{[]string{"testnet", "extra"}, []string{`unknown command "extra"`}},
	}
	for _, c := range cases {
		t.Run(strings.Join(c.args, " "), func(t *testing.T) {
			code, _, stderr := zk(t, c.args...)
			oneErrorLine(t, code, stderr, 2, c.want...)
		})
	}
}

func TestWalletCreateAndShow(t *testing.T) {
	alice, card := sharedWallets(t)
	code, out, _ := zk(t, "wallet", "show", "--wallet", alice)
	if code != 0 || !strings.Contains(out, "name       alice") || !strings.Contains(out, "kind       deposit") || !strings.Contains(out, "not opened on a chain yet") {
		t.Fatalf("show: %d\n%s", code, out)
	}
	code, out, _ = zk(t, "wallet", "show", "--wallet", card)
	if code != 0 || !strings.Contains(out, "kind       card") || !strings.Contains(out, "limit      500.00") {
		t.Fatalf("show card: %d\n%s", code, out)
	}
	code, _, stderr := zk(t, "wallet", "create", "--name", "alice", "--out", alice)
	oneErrorLine(t, code, stderr, 1, "wallet "+alice, "already exists")
}

func TestCorruptOrOpenWalletFileIsOneLine(t *testing.T) {
	d := t.TempDir()
	bad := filepath.Join(d, "bad.json")
	os.WriteFile(bad, []byte(`{"version":1,"name":`), 0o600)
	code, _, stderr := zk(t, "wallet", "balance", "--wallet", bad, "--node", "http://127.0.0.1:1")
	oneErrorLine(t, code, stderr, 1, "wallet "+bad, "corrupt wallet file")

	alice, _ := sharedWallets(t)
	open := filepath.Join(d, "open.json")
	b, _ := os.ReadFile(alice)
	os.WriteFile(open, b, 0o644)
	os.Chmod(open, 0o644)
	code, _, stderr = zk(t, "wallet", "show", "--wallet", open)
	oneErrorLine(t, code, stderr, 1, "permissions too open", "chmod 600 "+open)

	code, _, stderr = zk(t, "wallet", "show", "--wallet", filepath.Join(d, "missing.json"))
	oneErrorLine(t, code, stderr, 1, "missing.json", "not found")
}

func deadURL(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := "http://" + l.Addr().String()
	l.Close()
	return u
}

func TestNodeDownIsOneLine(t *testing.T) {
	alice, _ := sharedWallets(t)
	u := deadURL(t)
	code, _, stderr := zk(t, "wallet", "balance", "--wallet", alice, "--node", u, "--timeout", "5s")
	oneErrorLine(t, code, stderr, 1, "node "+u+" unreachable", "connection refused")
}

func TestNoChainGiven(t *testing.T) {
	alice, _ := sharedWallets(t)
	t.Chdir(t.TempDir())
	t.Setenv("ZKBANK_GENESIS", "")
	code, _, stderr := zk(t, "wallet", "balance", "--wallet", alice)
	oneErrorLine(t, code, stderr, 1, "no chain given: pass --genesis FILE or --node URL")
}

// fakeChain serves a genesis naming itself and knows no accounts.
func fakeChain(t *testing.T) (string, string) {
	var g genesis.Genesis
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", api.ContentJSON)
		switch r.URL.Path {
		case api.PathGenesis:
			json.NewEncoder(w).Encode(g)
		case api.PathStatus:
			json.NewEncoder(w).Encode(api.Status{Chain: g.ChainID, Ready: true})
		default:
			w.WriteHeader(404)
			json.NewEncoder(w).Encode(api.Error{Error: "unknown account", Code: "unknown_account"})
		}
	}))
	t.Cleanup(srv.Close)
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	g = genesis.Genesis{ChainID: "fake-chain", ParamSet: ledger.ZKB128.Name, Threshold: 1, Created: time.Now().UTC(),
		Validators: []genesis.Validator{{Index: 0, Name: "node-0", PeerID: "p", ConsensusPub: hex.EncodeToString(pub), API: srv.URL, Power: 1}}}
	path := filepath.Join(t.TempDir(), "genesis.json")
	if err := g.Save(path); err != nil {
		t.Fatal(err)
	}
	return srv.URL, path
}

func TestUnknownAccountIsOneLine(t *testing.T) {
	alice, card := sharedWallets(t)
	url, gen := fakeChain(t)
	code, _, stderr := zk(t, "wallet", "balance", "--wallet", alice, "--node", url)
	oneErrorLine(t, code, stderr, 1, "unknown account", "zkbank wallet open")
	code, _, stderr = zk(t, "wallet", "available", "--wallet", card, "--genesis", gen)
	oneErrorLine(t, code, stderr, 1, "unknown account")
	code, _, stderr = zk(t, "wallet", "send", "--wallet", alice, "--genesis", gen, "--to", strings.Repeat("ab", 32), "--amount", "1")
	oneErrorLine(t, code, stderr, 1, "unknown recipient account "+strings.Repeat("ab", 32), "nothing was sent")
	code, _, stderr = zk(t, "wallet", "available", "--wallet", alice, "--genesis", gen)
	oneErrorLine(t, code, stderr, 1, "is a deposit account", "wallet balance")
	code, _, stderr = zk(t, "wallet", "charge", "--wallet", alice, "--genesis", gen, "--to", card, "--amount", "1")
	oneErrorLine(t, code, stderr, 1, "is a deposit account", "wallet send")
	code, _, stderr = zk(t, "wallet", "send", "--wallet", card, "--genesis", gen, "--to", alice, "--amount", "1")
	oneErrorLine(t, code, stderr, 1, "is a card", "wallet charge")
}

func TestGenesisFileErrors(t *testing.T) {
	alice, _ := sharedWallets(t)
	d := t.TempDir()
	code, _, stderr := zk(t, "wallet", "balance", "--wallet", alice, "--genesis", filepath.Join(d, "nope.json"))
	oneErrorLine(t, code, stderr, 1, "nope.json", "not found")
	bad := filepath.Join(d, "bad.json")
	os.WriteFile(bad, []byte("{"), 0o644)
	code, _, stderr = zk(t, "wallet", "balance", "--wallet", alice, "--genesis", bad)
	oneErrorLine(t, code, stderr, 1, "genesis: invalid", "bad.json")
}

func TestLoadNeedsEnoughWallets(t *testing.T) {
	sharedWallets(t)
	code, _, stderr := zk(t, "load", "--wallets", walletDir, "--node", deadURL(t), "-p", "3", "-n", "1")
	oneErrorLine(t, code, stderr, 1, fmt.Sprintf("-p 3: %s holds only 1 deposit wallets", walletDir))
}
