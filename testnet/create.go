package testnet

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/wallet"
)

// Demo funds, in cents.
const (
	DemoBalance   = 1_000_00  // each demo account
	CardLimit     = 500_00    // the card's credit line
	IssuerFunds   = 10_000_00 // the issuer's funds before granting the card's line
	DemoLoadFunds = 1_000_00  // each background-load wallet
	LenderFunds   = 5_000_00  // the demo lender's pool
	demoLoaders   = 4
	// demoBorrowers are the wallets of the demo loans (the last one
	// deliberately misses an installment).
	demoBorrowers = 3
	maxAccounts   = 4096 // 16 shards
	maxValidators = 16

	// summaryAccounts is how many deposit accounts the startup summary
	// decrypts and lists.
	summaryAccounts = 10
)

// InitInfo is what `zkbank node init` prints on stdout: the validator's
// identity for the genesis.
type InitInfo struct {
	PeerID       string   `json:"peer_id"`
	ConsensusPub string   `json:"consensus_pub"`
	P2PAddrs     []string `json:"p2p_addrs"`
	API          string   `json:"api"`
}

// Layout names the files of a testnet directory.
type Layout struct{ Dir string }

func (l Layout) Genesis() string           { return filepath.Join(l.Dir, "genesis.json") }
func (l Layout) Home(i int) string         { return filepath.Join(l.Dir, fmt.Sprintf("node-%d", i)) }
func (l Layout) Log(i int) string          { return filepath.Join(l.Home(i), "node.log") }
func (l Layout) PIDFile(i int) string      { return filepath.Join(l.Home(i), "node.pid") }
func (l Layout) Wallets() string           { return filepath.Join(l.Dir, "wallets") }
func (l Layout) Wallet(name string) string { return filepath.Join(l.Wallets(), name+".json") }
func (l Layout) DemoWallets() string       { return filepath.Join(l.Dir, "demo-wallets") }
func (l Layout) DemoLog() string           { return filepath.Join(l.Dir, "demo.log") }

// The demo lender (docs/LENDING.md): its pool wallet, policy, bot log and
// state, and the demo borrowers, in DIR/lending.
func (l Layout) Lending() string       { return filepath.Join(l.Dir, "lending") }
func (l Layout) LenderPool() string    { return filepath.Join(l.Lending(), "pool.json") }
func (l Layout) LenderPolicy() string  { return filepath.Join(l.Lending(), "policy.json") }
func (l Layout) BotLog() string        { return filepath.Join(l.Lending(), "bot.log") }
func (l Layout) BotState() string      { return filepath.Join(l.Lending(), "bot-state.json") }
func (l Layout) LoansLog() string      { return filepath.Join(l.Lending(), "demo-loans.log") }
func (l Layout) DemoBorrowers() string { return filepath.Join(l.Lending(), "borrowers") }
func (l Layout) demoBorrower(i int) string {
	return filepath.Join(l.DemoBorrowers(), fmt.Sprintf("borrower-%d.json", i+1))
}
func (l Layout) nodeGenesis(i int) string { return filepath.Join(l.Home(i), "genesis.json") }
func (l Layout) demoWallet(i int) string {
	return filepath.Join(l.DemoWallets(), fmt.Sprintf("demo-%d.json", i+1))
}

// Resumable reports whether the directory holds a complete testnet.
func (l Layout) Resumable() bool {
	_, err := os.Stat(l.Genesis())
	return err == nil
}

var demoNames = []string{"alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan", "judy", "mallory", "niaj", "olivia", "peggy", "rupert", "sybil", "trent", "victor", "walter"}

// DemoName is the i-th demo account's name.
func DemoName(i int) string {
	if i < len(demoNames) {
		return demoNames[i]
	}
	return fmt.Sprintf("user-%03d", i+1)
}

// Ports are the base ports of a testnet: validator i listens on P2P+i and
// serves its API on API+i, on 127.0.0.1; or, with network namespaces
// (netns.go), on P2P and API at its own address.
type Ports struct {
	P2P, API int
	netns    *Network
}

// DefaultPorts are the brief's ports.
var DefaultPorts = Ports{P2P: 27000, API: 27100}

func (p Ports) p2pAddr(i int) string {
	if p.netns != nil {
		return fmt.Sprintf("/ip4/%s/tcp/%d", p.netns.ValidatorAddr(i), p.P2P)
	}
	return fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", p.P2P+i)
}
func (p Ports) apiURL(i int) string {
	if p.netns != nil {
		return fmt.Sprintf("http://%s:%d", p.netns.ValidatorAddr(i), p.API)
	}
	return fmt.Sprintf("http://127.0.0.1:%d", p.API+i)
}

// BuildGenesis assembles a genesis from the validators' init output and the
// prefunded accounts. Pure: the caller writes it.
func BuildGenesis(chain string, vals []InitInfo, accounts []genesis.Account, created time.Time) (*genesis.Genesis, error) {
	g := &genesis.Genesis{
		ChainID:   chain,
		ParamSet:  ledger.ZKB128.Name,
		Threshold: genesis.DefaultThreshold(len(vals)),
		Accounts:  accounts,
		Created:   created.UTC().Truncate(time.Second),
	}
	for i, v := range vals {
		g.Validators = append(g.Validators, genesis.Validator{
			Index: i, Name: fmt.Sprintf("node-%d", i), PeerID: v.PeerID, P2PAddrs: v.P2PAddrs,
			ConsensusPub: v.ConsensusPub, API: v.API, Power: 1,
		})
	}
	if err := g.Validate(); err != nil {
		return nil, err
	}
	return g, nil
}

// CreateConfig says what testnet to create.
type CreateConfig struct {
	Dir        string
	Validators int
	Accounts   int
	Exe        string // the zkbank binary whose `node init` creates homes
	Ports      Ports
	Progress   func(string) // optional: one line per step
}

// ErrIncomplete marks a directory a previous creation left half done.
var ErrIncomplete = errors.New("incomplete testnet directory")

// Create makes a new testnet directory: validator homes (via `node init`),
// wallets, and the genesis, written last so its presence means "complete".
func Create(ctx context.Context, cfg CreateConfig) (*genesis.Genesis, error) {
	if cfg.Validators < 1 || cfg.Validators > maxValidators {
		return nil, fmt.Errorf("--validators %d: want 1-%d", cfg.Validators, maxValidators)
	}
	if cfg.Accounts < 2 || cfg.Accounts > maxAccounts {
		return nil, fmt.Errorf("--accounts %d: want 2-%d", cfg.Accounts, maxAccounts)
	}
	say := cfg.Progress
	if say == nil {
		say = func(string) {}
	}
	l := Layout{Dir: cfg.Dir}
	if entries, err := os.ReadDir(cfg.Dir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("%w: %s exists but has no genesis.json (rerun with --reset to start over)", ErrIncomplete, cfg.Dir)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, err
	}
	vals := make([]InitInfo, cfg.Validators)
	for i := range vals {
		say(fmt.Sprintf("initializing validator node-%d", i))
		info, err := nodeInit(ctx, cfg.Exe, l.Home(i), cfg.Ports.p2pAddr(i), cfg.Ports.apiURL(i))
		if err != nil {
			return nil, fmt.Errorf("node-%d: %w", i, err)
		}
		vals[i] = *info
	}
	say("generating demo wallets (ed25519 + homomorphic owner keys)")
	accounts, err := createWallets(l, cfg.Accounts)
	if err != nil {
		return nil, err
	}
	chain := "zkbank-testnet-" + randHex(3)
	g, err := BuildGenesis(chain, vals, accounts, time.Now())
	if err != nil {
		return nil, err
	}
	if err := bindWallets(l, chain); err != nil {
		return nil, err
	}
	for i := range vals {
		if err := g.Save(l.nodeGenesis(i)); err != nil {
			return nil, err
		}
	}
	if err := saveAtomic(g, l.Genesis()); err != nil {
		return nil, err
	}
	return g, nil
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func saveAtomic(g *genesis.Genesis, path string) error {
	tmp := path + ".tmp"
	if err := g.Save(tmp); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// nodeInit runs `zkbank node init` and parses the identity it prints.
func nodeInit(ctx context.Context, exe, home, p2p, apiURL string) (*InitInfo, error) {
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(cctx, exe, "node", "init", "--home", home, "--p2p", p2p, "--api", apiURL)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(stderr.String())
		if i := strings.LastIndexByte(msg, '\n'); i >= 0 {
			msg = msg[i+1:]
		}
		return nil, fmt.Errorf("%s node init: %v: %s", filepath.Base(exe), err, msg)
	}
	var info InitInfo
	out := bytes.TrimSpace(stdout.Bytes())
	if i := bytes.LastIndexByte(out, '\n'); i >= 0 {
		out = out[i+1:] // the JSON is the last line; anything before is chatter
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return nil, fmt.Errorf("node init printed %q, want its JSON identity: %w", string(out), err)
	}
	if info.PeerID == "" || info.ConsensusPub == "" {
		return nil, fmt.Errorf("node init printed no peer_id or consensus_pub")
	}
	if len(info.P2PAddrs) == 0 {
		info.P2PAddrs = []string{p2p}
	}
	if info.API == "" {
		info.API = apiURL
	}
	return &info, nil
}

// createWallets writes the demo wallets and returns their genesis entries:
// n deposit accounts, an issuer, a card whose credit line the issuer granted
// from its funds, and the background-load wallets.
func createWallets(l Layout, n int) ([]genesis.Account, error) {
	p := ledger.MustParams(ledger.ZKB128)
	for _, d := range []string{l.Wallets(), l.DemoWallets(), l.Lending(), l.DemoBorrowers()} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, err
		}
	}
	var out []genesis.Account
	mk := func(name, kind, path string, balance uint64, edit func(*wallet.Wallet)) (*wallet.Wallet, error) {
		w, err := wallet.New(name, kind, p)
		if err != nil {
			return nil, err
		}
		if edit != nil {
			edit(w)
		}
		if err := w.Create(path); err != nil {
			return nil, err
		}
		out = append(out, w.GenesisAccount(balance))
		return w, nil
	}
	for i := 0; i < n; i++ {
		if _, err := mk(DemoName(i), wallet.KindDeposit, l.Wallet(DemoName(i)), DemoBalance, nil); err != nil {
			return nil, err
		}
	}
	issuer, err := mk("issuer", wallet.KindDeposit, l.Wallet("issuer"), IssuerFunds-CardLimit, nil)
	if err != nil {
		return nil, err
	}
	if _, err := mk("card", wallet.KindCard, l.Wallet("card"), CardLimit, func(w *wallet.Wallet) {
		w.Limit, w.Issuer = CardLimit, issuer.Account
	}); err != nil {
		return nil, err
	}
	for i := 0; i < demoLoaders; i++ {
		if _, err := mk(fmt.Sprintf("demo-%d", i+1), wallet.KindDeposit, l.demoWallet(i), DemoLoadFunds, nil); err != nil {
			return nil, err
		}
	}
	if _, err := mk("lender", wallet.KindDeposit, l.LenderPool(), LenderFunds, nil); err != nil {
		return nil, err
	}
	for i := 0; i < demoBorrowers; i++ {
		if _, err := mk(fmt.Sprintf("borrower-%d", i+1), wallet.KindDeposit, l.demoBorrower(i), DemoBalance, nil); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(l.LenderPolicy(), []byte(DemoPolicy), 0o644); err != nil {
		return nil, err
	}
	return out, nil
}

// DemoPolicy is the demo lender's policy file: decision mode, a minimum a
// demo account with its 1,000.00 and no default meets (1 x 100000 + 4 x
// 50000 with the default weights), a small loan repaid in three
// installments a few dozen heights apart.
const DemoPolicy = `{
  "name": "demo-lender",
  "mode": "decision",
  "min_score": 250000,
  "amount": "100.00",
  "installments": 3,
  "interval": 30,
  "max_open_loans": 16
}
`

// bindWallets records the chain id in every wallet of the testnet.
func bindWallets(l Layout, chain string) error {
	var all []*wallet.Wallet
	for _, dir := range []string{l.Wallets(), l.DemoWallets(), l.DemoBorrowers()} {
		ws, err := LoadWallets(dir)
		if err != nil {
			return err
		}
		all = append(all, ws...)
	}
	// The lender's pool lives beside its policy file.
	pool, err := wallet.Load(l.LenderPool())
	if err != nil {
		return err
	}
	for _, w := range append(all, pool) {
		if err := w.BindChain(chain); err != nil {
			return err
		}
		if err := w.Save(w.Path()); err != nil {
			return err
		}
	}
	return nil
}

// LoadWallets loads every *.json wallet of a directory, sorted by name.
func LoadWallets(dir string) ([]*wallet.Wallet, error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, err
	}
	if len(paths) == 0 {
		if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("wallet directory %s does not exist", dir)
		}
		return nil, fmt.Errorf("no wallets (*.json) in %s", dir)
	}
	sort.Strings(paths)
	out := make([]*wallet.Wallet, 0, len(paths))
	for _, p := range paths {
		w, err := wallet.Load(p)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

// Reset removes a testnet directory, refusing anything that does not look
// like one (so --reset --dir $HOME cannot wipe a home directory).
func Reset(dir string) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	known := map[string]bool{"genesis.json": true, "genesis.json.tmp": true, "wallets": true, "demo-wallets": true, "demo.log": true, "lending": true}
	for _, e := range entries {
		if !known[e.Name()] && !strings.HasPrefix(e.Name(), "node-") && !strings.HasPrefix(e.Name(), "full-") {
			return fmt.Errorf("refusing to reset %s: %s is not part of a testnet", dir, e.Name())
		}
	}
	return os.RemoveAll(dir)
}
