package testnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/lending"
	"github.com/zkbank/zkbank/wallet"
)

func TestDefaultThresholdIsFPlusOne(t *testing.T) {
	for n, want := range map[int]int{1: 1, 2: 1, 3: 1, 4: 2, 5: 2, 6: 2, 7: 3, 10: 4, 16: 6} {
		if got := genesis.DefaultThreshold(n); got != want {
			t.Errorf("DefaultThreshold(%d) = %d, want %d", n, got, want)
		}
	}
}

func fakeVals(n int) []InitInfo {
	var out []InitInfo
	for i := 0; i < n; i++ {
		out = append(out, InitInfo{PeerID: fmt.Sprintf("peer-%d", i), ConsensusPub: strings.Repeat("ab", 32), P2PAddrs: []string{DefaultPorts.p2pAddr(i)}, API: DefaultPorts.apiURL(i)})
	}
	return out
}

func TestBuildGenesis(t *testing.T) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 999, time.FixedZone("x", 3600))
	acc := []genesis.Account{{Name: "a", SignPub: strings.Repeat("cd", 32), Kind: "deposit", Balance: DemoBalance}}
	g, err := BuildGenesis("zkbank-testnet-x", fakeVals(4), acc, created)
	if err != nil {
		t.Fatal(err)
	}
	if g.Threshold != 2 || len(g.Validators) != 4 || g.ParamSet != "zkb128" || g.ChainID != "zkbank-testnet-x" {
		t.Fatalf("%+v", g)
	}
	for i, v := range g.Validators {
		if v.Index != i || v.Name != fmt.Sprintf("node-%d", i) || v.Power != 1 || v.API != fmt.Sprintf("http://127.0.0.1:%d", 27100+i) || v.P2PAddrs[0] != fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", 27000+i) {
			t.Fatalf("validator %d: %+v", i, v)
		}
	}
	if !g.Created.Equal(created.Truncate(time.Second)) || g.Created.Location() != time.UTC {
		t.Fatalf("created %v", g.Created)
	}
	bad := fakeVals(2)
	bad[1].ConsensusPub = "zz"
	if _, err := BuildGenesis("c", bad, acc, created); !errors.Is(err, genesis.ErrInvalid) {
		t.Fatalf("bad consensus key: %v", err)
	}
}

// freePorts finds a base port with n consecutive free ports on loopback.
func freePorts(t *testing.T, n int) int {
	for try := 0; try < 50; try++ {
		// Below the kernel's ephemeral range (32768+), where outgoing
		// connections' source ports could take a port between the check
		// and the bind; the node package's tests use 20000-32000.
		base := 10000 + rand.IntN(10000-n)
		ok := true
		for i := 0; i < n && ok; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				ok = false
				continue
			}
			l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no free ports")
	return 0
}

// syncBuf is a bytes.Buffer safe for the writer goroutines of Run.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func runConfig(t *testing.T, dir string, validators int) RunConfig {
	t.Setenv("ZKBANK_FAKE_NODE", "1")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	base := freePorts(t, 2*validators)
	return RunConfig{Dir: dir, Validators: validators, Accounts: 2, Exe: exe,
		Ports: Ports{P2P: base, API: base + validators}, ReadyTimeout: 20 * time.Second,
		StopGrace: 3 * time.Second, StatusEvery: 100 * time.Millisecond}
}

// runUntil runs the testnet until stderr shows a status line, then stops it
// as Ctrl-C would.
func runUntil(t *testing.T, cfg RunConfig) (string, string, error) {
	t.Helper()
	out, errb := &syncBuf{}, &syncBuf{}
	cfg.Out, cfg.Err = out, errb
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	deadline := time.After(60 * time.Second)
	for !strings.Contains(errb.String(), "height ") {
		select {
		case err := <-done:
			return out.String(), errb.String(), err
		case <-deadline:
			cancel()
			<-done
			t.Fatalf("no status line; stderr:\n%s", errb.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	cancel()
	err := <-done
	return out.String(), errb.String(), err
}

func TestRun_CreatesStartsStopsAndResumes(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tn")
	cfg := runConfig(t, dir, 2)
	out, errs, err := runUntil(t, cfg)
	if err != nil {
		t.Fatalf("run: %v\n%s", err, errs)
	}
	l := Layout{Dir: dir}
	g, err := genesis.Load(l.Genesis())
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Validators) != 2 || g.Threshold != genesis.DefaultThreshold(2) || len(g.Accounts) != 2+2+demoLoaders+1+demoBorrowers {
		t.Fatalf("genesis: %d validators, threshold %d, %d accounts", len(g.Validators), g.Threshold, len(g.Accounts))
	}
	var supply uint64
	names := map[string]genesis.Account{}
	for _, a := range g.Accounts {
		supply += a.Balance
		names[a.Name] = a
	}
	if names["alice"].Balance != DemoBalance || names["card"].Kind != "card" || names["card"].Balance != CardLimit || names["issuer"].Balance != IssuerFunds-CardLimit {
		t.Fatalf("accounts: %+v", names)
	}
	ws, err := LoadWallets(l.Wallets())
	if err != nil || len(ws) != 4 {
		t.Fatalf("wallets: %d %v", len(ws), err)
	}
	byName := map[string]*wallet.Wallet{}
	for _, w := range ws {
		if w.ChainID != g.ChainID {
			t.Fatalf("wallet %s not bound to the chain", w.Name)
		}
		byName[w.Name] = w
	}
	if c := byName["card"]; c == nil || !c.IsCard() || c.Limit != CardLimit || c.Issuer != byName["issuer"].Account {
		t.Fatalf("card wallet: %+v", c)
	}
	// The demo lender: its pool and borrowers are bound to the chain and
	// prefunded, its policy is valid; without --demo no bot runs.
	pool, err := wallet.Load(l.LenderPool())
	if err != nil || pool.ChainID != g.ChainID || names["lender"].Balance != LenderFunds {
		t.Fatalf("lender pool: %v %+v", err, names["lender"])
	}
	if bs, err := LoadWallets(l.DemoBorrowers()); err != nil || len(bs) != demoBorrowers || bs[0].ChainID != g.ChainID {
		t.Fatalf("borrowers: %d %v", len(bs), err)
	}
	if _, _, err := lending.LoadPolicy(l.LenderPolicy()); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "no bot: --demo=false") || !strings.Contains(out, "zkbank bot --wallet "+l.LenderPool()) {
		t.Fatalf("summary lacks the lender:\n%s", out)
	}
	for i := range g.Validators {
		if _, err := genesis.Load(filepath.Join(l.Home(i), "genesis.json")); err != nil {
			t.Fatalf("node-%d has no genesis: %v", i, err)
		}
		logb, _ := os.ReadFile(l.Log(i))
		if !strings.Contains(string(logb), "fake node: stopping") {
			t.Fatalf("node-%d was not stopped with SIGTERM; log:\n%s", i, logb)
		}
		if _, err := os.Stat(l.PIDFile(i)); err == nil {
			t.Fatalf("node-%d pid file left behind", i)
		}
	}
	for _, want := range []string{"is up: 2 validators", "alice", "zkbank wallet send", "zkbank load --genesis " + l.Genesis(), "resumes this chain"} {
		if !strings.Contains(out, want) {
			t.Fatalf("summary lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errs, "starting chain "+g.ChainID) || !strings.Contains(errs, "stopped.") {
		t.Fatalf("stderr:\n%s", errs)
	}

	// Second run: same directory, same chain, nothing regenerated.
	before, _ := os.ReadFile(l.Genesis())
	cfg.Validators = 0
	_, errs, err = runUntil(t, cfg)
	if err != nil {
		t.Fatalf("resume: %v\n%s", err, errs)
	}
	after, _ := os.ReadFile(l.Genesis())
	if !bytes.Equal(before, after) || !strings.Contains(errs, "resuming chain "+g.ChainID) {
		t.Fatalf("not resumed:\n%s", errs)
	}
	logb, _ := os.ReadFile(l.Log(0))
	if strings.Count(string(logb), "=== zkbank testnet: starting") != 2 {
		t.Fatalf("log not appended across runs:\n%s", logb)
	}

	// --reset starts a new chain in the same place.
	cfg.Reset, cfg.Validators = true, 3
	cfg.Ports = runConfig(t, dir, 3).Ports
	_, errs, err = runUntil(t, cfg)
	if err != nil {
		t.Fatalf("reset: %v\n%s", err, errs)
	}
	g2, _ := genesis.Load(l.Genesis())
	if g2.ChainID == g.ChainID || len(g2.Validators) != 3 {
		t.Fatalf("reset kept the old chain")
	}
}

func TestRun_NodeCrashOnStartIsOneClearError(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tn")
	cfg := runConfig(t, dir, 1)
	t.Setenv("FAKE_NODE_CRASH", "1")
	_, _, err := runUntil(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "node-0 exited during startup (exit status 3)") ||
		!strings.Contains(err.Error(), "node-0/node.log: fake node: boom, crashed on start") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("got %v", err)
	}
}

func TestRun_ReadyTimeoutPointsAtTheLogs(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tn")
	cfg := runConfig(t, dir, 1)
	cfg.ReadyTimeout = 700 * time.Millisecond
	t.Setenv("FAKE_NODE_NEVER_READY", "1")
	_, errs, err := runUntil(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "not ready after 700ms") || !strings.Contains(err.Error(), filepath.Join(dir, "node-*", "node.log")) {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(errs, "waiting for key ceremony: 0/1 ready") || !strings.Contains(errs, "stopping 1 validators") {
		t.Fatalf("stderr:\n%s", errs)
	}
}

func TestStop_KillsAValidatorIgnoringSIGTERM(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tn")
	cfg := runConfig(t, dir, 1)
	g, _, err := Prepare(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("FAKE_NODE_IGNORE_TERM", "1")
	cl, err := Start(cfg.Exe, Layout{Dir: dir}, g)
	if err != nil {
		t.Fatal(err)
	}
	if err := cl.WaitReady(context.Background(), 20*time.Second, nil); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	killed := cl.Stop(300 * time.Millisecond)
	if len(killed) != 1 || killed[0] != "node-0" || time.Since(start) > 5*time.Second {
		t.Fatalf("killed %v after %s", killed, time.Since(start))
	}
}

func TestStart_PortInUse(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tn")
	cfg := runConfig(t, dir, 2)
	g, _, err := Prepare(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", cfg.Ports.API+1))
	if err != nil {
		t.Skip("port taken meanwhile")
	}
	defer l.Close()
	_, err = Start(cfg.Exe, Layout{Dir: dir}, g)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("node-1: address 127.0.0.1:%d is in use", cfg.Ports.API+1)) {
		t.Fatalf("got %v", err)
	}
}

func TestCreate_NodeInitFailureNamesTheNode(t *testing.T) {
	cfg := runConfig(t, filepath.Join(t.TempDir(), "tn"), 2)
	t.Setenv("FAKE_INIT_FAIL", "1")
	_, _, err := Prepare(context.Background(), cfg, nil)
	if err == nil || !strings.Contains(err.Error(), "node-0:") || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("got %v", err)
	}
}

func TestPrepare_IncompleteDirectoryNeedsReset(t *testing.T) {
	dir := t.TempDir()
	os.Mkdir(filepath.Join(dir, "node-0"), 0o700)
	cfg := runConfig(t, dir, 1)
	if _, _, err := Prepare(context.Background(), cfg, nil); !errors.Is(err, ErrIncomplete) || !strings.Contains(err.Error(), "--reset") {
		t.Fatalf("got %v", err)
	}
}

func TestReset_RefusesADirectoryThatIsNotATestnet(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "thesis.tex"), []byte("precious"), 0o600)
	if err := Reset(dir); err == nil || !strings.Contains(err.Error(), "thesis.tex") {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "thesis.tex")); err != nil {
		t.Fatal("file deleted")
	}
	if err := Reset(filepath.Join(dir, "missing")); err != nil {
		t.Fatalf("missing dir: %v", err)
	}
}

func TestLoadWallets_Errors(t *testing.T) {
	if _, err := LoadWallets(filepath.Join(t.TempDir(), "nope")); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("missing: %v", err)
	}
	dir := t.TempDir()
	if _, err := LoadWallets(dir); err == nil || !strings.Contains(err.Error(), "no wallets") {
		t.Fatalf("empty: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "x.json"), []byte("{"), 0o600)
	if _, err := LoadWallets(dir); !errors.Is(err, wallet.ErrCorrupt) {
		t.Fatalf("corrupt: %v", err)
	}
}

func TestTCPFromMultiaddr(t *testing.T) {
	for in, want := range map[string]string{"/ip4/127.0.0.1/tcp/27000": "127.0.0.1:27000", "/ip6/::1/tcp/5": "[::1]:5", "/ip4/1.2.3.4/udp/9/quic-v1": ""} {
		got, ok := tcpFromMultiaddr(in)
		if got != want || ok != (want != "") {
			t.Errorf("%s: %q %v", in, got, ok)
		}
	}
}

// The testnet's other processes (the demo lending bot) are stopped first by
// Stop, and stop by themselves once the testnet's lifeline is gone.
func TestStartAux_StoppedWithTheTestnetOrByItsLifeline(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tn")
	cfg := runConfig(t, dir, 1)
	g, _, err := Prepare(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	l := Layout{Dir: dir}
	for _, viaLifeline := range []bool{false, true} {
		cl, err := Start(cfg.Exe, l, g)
		if err != nil {
			t.Fatal(err)
		}
		if err := cl.WaitReady(context.Background(), 20*time.Second, nil); err != nil {
			t.Fatal(err)
		}
		logPath := filepath.Join(t.TempDir(), "bot.log")
		p, err := cl.StartAux(cfg.Exe, "lender-bot", logPath, "bot", "--wallet", l.LenderPool(), "--"+ParentFDFlag, "0")
		if err != nil {
			t.Fatal(err)
		}
		waitLog := func(want string) {
			t.Helper()
			deadline := time.Now().Add(20 * time.Second)
			for {
				b, _ := os.ReadFile(logPath)
				if strings.Contains(string(b), want) {
					return
				}
				if time.Now().After(deadline) {
					t.Fatalf("bot log lacks %q:\n%s", want, b)
				}
				time.Sleep(50 * time.Millisecond)
			}
		}
		waitLog("fake bot: running")
		if viaLifeline {
			cl.lifeline.Close() // as if the testnet had died
			waitLog("fake bot: stopping, its lifeline is gone")
			<-p.done
		}
		if killed := cl.Stop(3 * time.Second); len(killed) != 0 {
			t.Fatalf("killed %v", killed)
		}
		if done, _ := p.Exited(); !done {
			t.Fatal("the bot outlived Stop")
		}
		if !viaLifeline {
			waitLog("fake bot: stopping on a signal")
		}
		if _, err := cl.StartAux(cfg.Exe, "late", logPath, "bot"); err == nil {
			t.Fatal("a process started after Stop")
		}
	}
}
