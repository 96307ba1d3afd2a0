package testnet

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/zkbank/zkbank/api"
)

// The test binary doubles as a fake `zkbank` executable: with
// ZKBANK_FAKE_NODE=1 it implements just enough of `node init` and `node` for
// the testnet's process management to be tested without a real validator.
// It exists only in tests.
func TestMain(m *testing.M) {
	if os.Getenv("ZKBANK_FAKE_NODE") == "1" {
		os.Exit(fakeZkbank(os.Args[1:]))
	}
	if os.Getenv("ZKBANK_FAKE_TESTNET") == "1" {
		os.Exit(fakeTestnet(os.Args[1:]))
	}
	os.Exit(m.Run())
}

func fakeZkbank(args []string) int {
	if len(args) > 0 && args[0] == "bot" {
		return fakeBot(args[1:])
	}
	if len(args) == 0 || args[0] != "node" {
		fmt.Fprintln(os.Stderr, "fake zkbank: want 'node'")
		return 2
	}
	if len(args) > 1 && args[1] == "init" {
		fs := flag.NewFlagSet("init", flag.ContinueOnError)
		home := fs.String("home", "", "")
		p2p := fs.String("p2p", "", "")
		apiURL := fs.String("api", "", "")
		if err := fs.Parse(args[2:]); err != nil {
			return 2
		}
		if os.Getenv("FAKE_INIT_FAIL") == "1" {
			fmt.Fprintln(os.Stderr, "some chatter\nnode init: cannot create keys: disk full")
			return 1
		}
		os.MkdirAll(*home, 0o700)
		os.WriteFile(filepath.Join(*home, "fake.json"), []byte(fmt.Sprintf(`{"api":%q}`, *apiURL)), 0o600)
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		fmt.Println("starting init...") // chatter before the JSON line must be tolerated
		json.NewEncoder(os.Stdout).Encode(InitInfo{PeerID: "12D3KooFake" + hex.EncodeToString(pub[:4]), ConsensusPub: hex.EncodeToString(pub), P2PAddrs: []string{*p2p}, API: *apiURL})
		return 0
	}
	fs := flag.NewFlagSet("node", flag.ContinueOnError)
	home := fs.String("home", "", "")
	parentFD := fs.Int(ParentFDFlag, -1, "")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	ctx := context.Background()
	if *parentFD >= 0 {
		var cancel context.CancelFunc
		var err error
		ctx, cancel, err = WithParent(ctx, *parentFD, slog.New(slog.NewTextHandler(os.Stdout, nil)))
		if err != nil {
			fmt.Fprintln(os.Stderr, "fake node:", err)
			return 2
		}
		defer cancel()
	}
	if _, err := os.Stat(filepath.Join(*home, "genesis.json")); err != nil {
		fmt.Fprintln(os.Stderr, "fake node: no genesis.json in home")
		return 1
	}
	if os.Getenv("FAKE_NODE_CRASH") == "1" {
		fmt.Println("fake node: boom, crashed on start")
		return 3
	}
	var cfg struct{ API string }
	b, _ := os.ReadFile(filepath.Join(*home, "fake.json"))
	json.Unmarshal(b, &cfg)
	u, _ := url.Parse(cfg.API)
	start := time.Now()
	never := os.Getenv("FAKE_NODE_NEVER_READY") == "1"
	mux := http.NewServeMux()
	mux.HandleFunc(api.PathStatus, func(w http.ResponseWriter, r *http.Request) {
		ready := !never && time.Since(start) > 300*time.Millisecond
		json.NewEncoder(w).Encode(api.Status{Chain: "fake", Ready: ready, Height: uint64(time.Since(start) / (100 * time.Millisecond)), Peers: 1})
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(404)
		json.NewEncoder(w).Encode(api.Error{Error: "fake node knows no accounts", Code: "unknown_account"})
	})
	srv := &http.Server{Addr: u.Host, Handler: mux}
	go srv.ListenAndServe()
	fmt.Println("fake node: serving", cfg.API)
	sig := make(chan os.Signal, 1)
	if os.Getenv("FAKE_NODE_IGNORE_TERM") == "1" {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	}
	select {
	case <-sig:
	case <-ctx.Done():
	}
	fmt.Println("fake node: stopping")
	sctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	return 0
}

// fakeTestnet is `zkbank testnet` as main.go runs it, with fake validators:
// the process whose death the validators must not survive.
func fakeTestnet(args []string) int {
	fs := flag.NewFlagSet("testnet", flag.ContinueOnError)
	dir := fs.String("dir", "", "")
	validators := fs.Int("validators", 2, "")
	p2pPort := fs.Int("p2p-port", 0, "")
	apiPort := fs.Int("api-port", 0, "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	os.Setenv("ZKBANK_FAKE_NODE", "1") // for the validators this process starts
	exe, err := os.Executable()
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake testnet:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err = Run(ctx, RunConfig{Dir: *dir, Validators: *validators, Accounts: 2, Exe: exe, Demo: false,
		Ports: Ports{P2P: *p2pPort, API: *apiPort}, ReadyTimeout: time.Minute, StopGrace: 3 * time.Second,
		StatusEvery: 100 * time.Millisecond, Out: os.Stdout, Err: os.Stderr})
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake testnet:", err)
		return 1
	}
	return 0
}

// fakeBot is `zkbank bot` as the testnet starts it: it runs until SIGTERM
// or until its lifeline (--exit-with-parent-fd) reaches EOF, and says which.
func fakeBot(args []string) int {
	fs := flag.NewFlagSet("bot", flag.ContinueOnError)
	parentFD := fs.Int(ParentFDFlag, -1, "")
	fs.String("wallet", "", "")
	fs.String("policy", "", "")
	fs.String("genesis", "", "")
	fs.String("state", "", "")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx := context.Background()
	if *parentFD >= 0 {
		var cancel context.CancelFunc
		var err error
		ctx, cancel, err = WithParent(ctx, *parentFD, slog.New(slog.NewTextHandler(os.Stdout, nil)))
		if err != nil {
			fmt.Fprintln(os.Stderr, "fake bot:", err)
			return 2
		}
		defer cancel()
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	fmt.Println("fake bot: running")
	select {
	case <-sig:
		fmt.Println("fake bot: stopping on a signal")
	case <-ctx.Done():
		fmt.Println("fake bot: stopping, its lifeline is gone")
	}
	return 0
}
