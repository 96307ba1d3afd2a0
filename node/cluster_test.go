package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/client"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/ledger"
)

// cluster is N real validators (libp2p hosts on loopback, Badger stores,
// actor systems) in this test process.
type cluster struct {
	t      testing.TB
	dir    string
	gen    *genesis.Genesis
	apis   []string
	cancel []context.CancelFunc
	done   []chan error
	p      *ledger.Params
	users  map[string]*user
}

type user struct {
	key ed25519.PrivateKey
	id  ledger.AccountID
	own *ledger.OwnerKeys
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{}
)

// freePort picks a free loopback port below the kernel's ephemeral range
// (32768-60999 here): a port the kernel handed out and took back can be
// reused at once as the source port of an outgoing connection (libp2p dials
// constantly), and a node that then binds it fails. The testnet package's
// tests pick theirs in 10000-20000.
//
// Clusters start in parallel: a port is handed out once per process, or two
// tests could both find it free before either binds it.
func freePort(t testing.TB) int {
	portsMu.Lock()
	defer portsMu.Unlock()
	for try := 0; try < 100; try++ {
		port := 20000 + mrand.IntN(12000)
		if portsGiven[port] {
			continue
		}
		portsGiven[port] = true
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err != nil {
			continue
		}
		l.Close()
		return port
	}
	t.Fatal("no free port")
	return 0
}

func newCluster(t *testing.T, n int, balances map[string]uint64, fault ...func(i int) *faults) *cluster {
	c := &cluster{t: t, dir: t.TempDir(), p: ledger.MustParams(ledger.ZKB128), users: map[string]*user{}}
	for i := 0; i < n && len(fault) > 0; i++ {
		if f := fault[0](i); f != nil {
			faultsMu.Lock()
			faultsByHome[filepath.Join(c.dir, fmt.Sprintf("v%d", i))] = f
			faultsMu.Unlock()
		}
	}
	g := &genesis.Genesis{ChainID: "zkbank-test", ParamSet: ledger.ZKB128.Name, Threshold: genesis.DefaultThreshold(n),
		Timeouts: genesis.Timeouts{Propose: "800ms", Prevote: "300ms", Precommit: "300ms", Delta: "300ms"}, Created: time.Now().UTC()}
	for i := 0; i < n; i++ {
		home := filepath.Join(c.dir, fmt.Sprintf("v%d", i))
		apiURL := fmt.Sprintf("http://127.0.0.1:%d", freePort(t))
		info, err := Init(home, []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(t))}, apiURL, nil)
		if err != nil {
			t.Fatal(err)
		}
		g.Validators = append(g.Validators, genesis.Validator{Index: i, Name: fmt.Sprintf("v%d", i), PeerID: info.PeerID, P2PAddrs: info.P2PAddrs, ConsensusPub: info.ConsensusPub, API: apiURL, Power: 1})
		c.apis = append(c.apis, apiURL)
	}
	for _, name := range []string{"alice", "bob", "carol"} {
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		c.users[name] = &user{key: priv, id: ledger.AccountIDOf(pub), own: ledger.NewOwnerKeys(c.p)}
		g.Accounts = append(g.Accounts, genesis.Account{Name: name, SignPub: hex.EncodeToString(pub), Kind: "deposit", Balance: balances[name]})
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	c.gen = g
	for i := 0; i < n; i++ {
		if err := g.Save(filepath.Join(c.dir, fmt.Sprintf("v%d", i), "genesis.json")); err != nil {
			t.Fatal(err)
		}
	}
	c.cancel = make([]context.CancelFunc, n)
	c.done = make([]chan error, n)
	for i := 0; i < n; i++ {
		c.start(i)
	}
	t.Cleanup(func() {
		for i := range c.cancel {
			c.stop(i)
		}
	})
	return c
}

func (c *cluster) start(i int) {
	ctx, cancel := context.WithCancel(context.Background())
	c.cancel[i] = cancel
	c.done[i] = make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if v := os.Getenv("ZKBANK_TEST_LOG"); v == "all" || strings.Contains(v, fmt.Sprint(i)) {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	go func() { c.done[i] <- Run(ctx, filepath.Join(c.dir, fmt.Sprintf("v%d", i)), logger) }()
}

func (c *cluster) stop(i int) {
	if c.cancel[i] == nil {
		return
	}
	c.cancel[i]()
	select {
	case err := <-c.done[i]:
		if err != nil {
			c.t.Logf("node %d exited: %v", i, err)
		}
	case <-time.After(30 * time.Second):
		c.t.Errorf("node %d did not stop", i)
	}
	c.cancel[i] = nil
}

func (c *cluster) getJSON(i int, path string, out any) error {
	resp, err := http.Get(c.apis[i] + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s: %d %s", path, resp.StatusCode, b)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (c *cluster) waitFor(what string, timeout time.Duration, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	c.t.Fatalf("timed out waiting for %s", what)
}

// metric sums the samples of a Prometheus series (name with optional
// labels, as it appears in the exposition) at node i; 0 if absent.
func (c *cluster) metric(i int, series string) float64 {
	c.t.Helper()
	resp, err := http.Get(c.apis[i] + api.PathMetrics)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	sum := 0.0
	for _, line := range strings.Split(string(b), "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(line, "#") {
			continue
		}
		if name == series || (!strings.Contains(series, "{") && strings.HasPrefix(name, series+"{")) {
			var v float64
			fmt.Sscan(val, &v)
			sum += v
		}
	}
	return sum
}

func (c *cluster) status(i int) api.Status {
	var st api.Status
	_ = c.getJSON(i, api.PathStatus, &st)
	return st
}

func (c *cluster) waitReady(nodes ...int) {
	c.waitFor("nodes ready", 5*time.Minute, func() bool {
		for _, i := range nodes {
			st := c.status(i)
			if !st.Ready || st.AppliedHeight < 1 {
				return false
			}
		}
		return true
	})
}

// dealer is a wallet's transfer builder for the cluster's chain: shares
// sealed to the genesis validators' keys.
func (c *cluster) dealer() *ledger.Dealer {
	c.t.Helper()
	m, err := client.NewMulti(c.gen, client.WithParams(c.p))
	if err != nil {
		c.t.Fatal(err)
	}
	d, err := m.Dealer()
	if err != nil {
		c.t.Fatal(err)
	}
	return d
}

// balance asks every reachable node, combines t replies and decrypts locally.
func (c *cluster) balance(name string, nodes ...int) (uint64, uint64) {
	c.t.Helper()
	at := uint64(0)
	for _, i := range nodes {
		if h := c.status(i).AppliedHeight; h > 0 && (at == 0 || h < at) {
			at = h
		}
	}
	body := c.balanceRequest(name, at, at+32)
	var replies []*ledger.BalanceReply
	for _, i := range nodes {
		resp, err := http.Post(c.apis[i]+api.PathBalance, api.ContentJSON, bytes.NewReader(body))
		if err != nil {
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			c.t.Logf("balance from %d: %d %s", i, resp.StatusCode, b)
			continue
		}
		r, err := c.p.DecodeBalanceReply(b)
		if err != nil {
			c.t.Fatal(err)
		}
		replies = append(replies, r)
	}
	com, _ := ledger.NewCommittee(len(c.gen.Validators), c.gen.Threshold)
	dec, _ := ledger.NewDecryptor(c.p, com)
	b, h, err := dec.CombineBalances(c.users[name].own, replies)
	if err != nil {
		c.t.Fatalf("balance of %s: %v", name, err)
	}
	return b.Available + b.Pending, h // everything the account owns
}

// balanceRequest is name's signed balance request for height at, answerable
// until expiry, with a fresh nonce.
func (c *cluster) balanceRequest(name string, at, expiry uint64) []byte {
	u := c.users[name]
	pkb, _ := u.own.PK.MarshalBinary()
	q := ledger.BalanceQuery{Height: at, Expiry: expiry, Nonce: uint64(time.Now().UnixNano())}
	req := api.BalanceRequest{Account: u.id.String(), Height: at, SignPub: hex.EncodeToString(u.key.Public().(ed25519.PublicKey)), OwnerPK: base64.StdEncoding.EncodeToString(pkb), Nonce: q.Nonce, Expiry: q.Expiry,
		Signature: hex.EncodeToString(ed25519.Sign(u.key, ledger.BalanceQueryBytes(c.gen.ChainID, u.id, q, pkb)))}
	body, _ := json.Marshal(req)
	return body
}

// postBalance posts a balance request to node i and returns the HTTP status
// and error code.
func (c *cluster) postBalance(i int, body []byte) (int, string) {
	c.t.Helper()
	resp, err := http.Post(c.apis[i]+api.PathBalance, api.ContentJSON, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var e api.Error
	if resp.StatusCode != http.StatusOK {
		_ = json.NewDecoder(resp.Body).Decode(&e)
	}
	return resp.StatusCode, e.Code
}

// account returns the newest state of the account that any node serves
// (the highest nonce): the node that reported the last transfer's verdict
// may be ahead of the others, and a nonce read from one behind it would
// build a replay.
func (c *cluster) account(name string) api.Account {
	c.t.Helper()
	var best api.Account
	var errs []error
	found := false
	for i := range c.apis {
		var a api.Account
		if err := c.getJSON(i, api.PathAccount+c.users[name].id.String(), &a); err != nil {
			errs = append(errs, err)
			continue
		}
		if !found || a.Nonce > best.Nonce {
			best, found = a, true
		}
	}
	if !found {
		c.t.Fatalf("no node serves account %s: %v", name, errors.Join(errs...))
	}
	return best
}

// send builds and submits a transfer (or a forged one if vals != nil) and
// waits for its decided status.
func (c *cluster) send(b *ledger.Dealer, from, to string, amount, balance, height uint64, vals []uint64, node int) api.TransferStatus {
	c.t.Helper()
	return c.sendVia(b, from, to, amount, balance, height, vals, node)
}

// faultsAt returns the faults of each validator by index, for newCluster.
func faultsAt(m map[int]*faults) func(i int) *faults { return func(i int) *faults { return m[i] } }

// overdraw sends amount from one user to another as a hacked wallet would:
// wrap-around bits for a balance that does not cover it (read from the
// validators in from), submitted to node; it returns the decided status.
func (c *cluster) overdraw(b *ledger.Dealer, from, to string, amount uint64, node int, read ...int) api.TransferStatus {
	c.t.Helper()
	bal, h := c.balance(from, read...)
	vals := ledger.TransferValues(amount, (bal-amount)&ledger.MaxAmount)
	return c.send(b, from, to, amount, bal, h, vals, node)
}

// sendWith builds a transfer, lets tamper alter its sealed shares (the
// dealer re-signs), submits it and waits for its decided status.
func (c *cluster) sendWith(b *ledger.Dealer, from, to string, amount, balance, height uint64, tamper func(*ledger.SealedTransfer), node int) api.TransferStatus {
	c.t.Helper()
	u := c.users[from]
	a := c.account(from)
	spec := ledger.TransferSpec{From: u.id, Key: u.key, To: c.users[to].id, Amount: amount, Balance: balance, Height: height, Nonce: a.Nonce + 1, Prev: c.lastOp(a)}
	sub, err := b.Build(spec)
	if err != nil {
		c.t.Fatal(err)
	}
	var st ledger.SealedTransfer
	if err := st.UnmarshalBinary(sub.Sealed); err != nil {
		c.t.Fatal(err)
	}
	tamper(&st)
	sub.Sealed, _ = st.MarshalBinary()
	env := &sub.Envelopes[0]
	env.CTHash = sha256.Sum256(sub.Sealed)
	env.Sig = ed25519.Sign(u.key, env.SigningBytes())
	return c.post(sub, node)
}

// lastOp is the account's last accepted operation: the next one's Prev.
func (c *cluster) lastOp(a api.Account) [32]byte {
	c.t.Helper()
	id, err := client.ParseOpID(a.LastOp)
	if err != nil {
		c.t.Fatal(err)
	}
	return id
}

// sendVia submits the transfer to every listed validator and waits at the
// first.
func (c *cluster) sendVia(b *ledger.Dealer, from, to string, amount, balance, height uint64, vals []uint64, nodes ...int) api.TransferStatus {
	c.t.Helper()
	u := c.users[from]
	a := c.account(from)
	spec := ledger.TransferSpec{From: u.id, Lane: a.Lane, Key: u.key, To: c.users[to].id, Amount: amount, Balance: balance, Height: height, Nonce: a.Nonce + 1, Prev: c.lastOp(a)}
	var sub *ledger.Submission
	var err error
	if vals != nil {
		if sub, err = b.BuildValues(spec, vals); err != nil {
			c.t.Fatal(err)
		}
	} else if sub, err = b.Build(spec); err != nil {
		c.t.Fatal(err)
	}
	return c.post(sub, nodes...)
}

// post submits a submission to every listed validator and waits, at the
// first, for its decided status.
func (c *cluster) post(sub *ledger.Submission, nodes ...int) api.TransferStatus {
	c.t.Helper()
	raw, _ := sub.MarshalBinary()
	var sr api.SubmitResponse
	for _, node := range nodes {
		resp, err := http.Post(c.apis[node]+api.PathTransfers, api.ContentBinary, bytes.NewReader(raw))
		if err != nil {
			c.t.Fatal(err)
		}
		if resp.StatusCode != http.StatusAccepted {
			b, _ := io.ReadAll(resp.Body)
			c.t.Fatalf("submit: %d %s", resp.StatusCode, b)
		}
		_ = json.NewDecoder(resp.Body).Decode(&sr)
		resp.Body.Close()
	}
	node := nodes[0]
	var st api.TransferStatus
	deadline := time.Now().Add(2 * time.Minute)
	for {
		_ = c.getJSON(node, api.PathTransfer+sr.IDs[0], &st)
		if st.Status == api.StatusCommitted || st.Status == api.StatusRejected {
			return st
		}
		if time.Now().After(deadline) {
			// What each node saw, for whoever reads a failure.
			for i := range c.apis {
				s := c.status(i)
				c.t.Logf("node %d: height %d applied %d round %d peers %d mempool %d ready %v; p2p refusals %v",
					i, s.Height, s.AppliedHeight, s.Round, s.Peers, s.Mempool, s.Ready, c.metric(i, "zkbank_p2p_refused_total"))
			}
			c.t.Fatalf("transfer %s not decided in 2 min (status %+v)", sr.IDs[0], st)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func TestCluster_FourValidatorsCommitRejectAndRestart(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-validator cluster in -short mode")
	}
	quiet := make([]*faults, 3)
	c := newCluster(t, 4, map[string]uint64{"alice": 10_000, "bob": 500, "carol": 0}, func(i int) *faults {
		if i < 3 {
			quiet[i] = &faults{}
			quiet[i].noRelay.Store(true)
			return quiet[i]
		}
		return nil
	})
	c.waitReady(0, 1, 2, 3)
	b := c.dealer()

	// An upload validators 0-2 hold (N-f acks: it can be ordered) but
	// validator 3 never received is fetched by 3 when a proposal names it,
	// before the proposal reaches its consensus machine.
	bal, h := c.balance("bob", 0, 1, 2, 3)
	if st := c.sendVia(b, "bob", "carol", 0, bal, h, nil, 0, 1, 2); st.Status != api.StatusCommitted {
		t.Fatalf("transfer unknown to validator 3: %+v", st)
	}
	if got := c.metric(3, `zkbank_upload_fetches_total{result="fetched"}`); got < 1 {
		t.Fatalf("validator 3 fetched %v uploads, want 1", got)
	}
	for _, f := range quiet {
		f.noRelay.Store(false)
	}

	// A dealer whose box for validator 3 does not open: validator 3 gets
	// its pieces from co-holders (checked against the commitments), and
	// the transfer commits.
	bal, h = c.balance("carol", 0, 1, 2, 3)
	if st := c.sendWith(b, "carol", "bob", 0, bal, h, func(st *ledger.SealedTransfer) { st.Boxes[3] = make([]byte, len(st.Boxes[3])) }, 0); st.Status != api.StatusCommitted {
		t.Fatalf("transfer with a bad box for validator 3: %+v", st)
	}
	if got := c.metric(3, `zkbank_upload_fetches_total{result="recovered"}`); got < 1 {
		t.Fatalf("validator 3 recovered %v uploads' pieces, want 1", got)
	}
	for _, name := range []string{"zkbank_consensus_step_duration_seconds_count", "zkbank_consensus_rounds_total", "zkbank_peers_best_height", "go_goroutines", "process_resident_memory_bytes"} {
		if c.metric(0, name) <= 0 {
			t.Fatalf("metric %s missing or zero", name)
		}
	}

	bal, h = c.balance("alice", 0, 1, 2, 3)
	if bal != 10_000 {
		t.Fatalf("alice genesis balance %d", bal)
	}
	st := c.send(b, "alice", "bob", 2_500, bal, h, nil, 0)
	if st.Status != api.StatusCommitted {
		t.Fatalf("transfer: %+v", st)
	}
	c.waitFor("balances applied", time.Minute, func() bool {
		v, _ := c.balance("bob", 0, 1, 2, 3)
		return v == 3_000
	})
	if v, _ := c.balance("alice", 0, 1, 2, 3); v != 7_500 {
		t.Fatalf("alice = %d, want 7500", v)
	}

	// An overdraft (wrap-around bits, as a hacked wallet would send) is rejected with its reason.
	st = c.overdraw(b, "bob", "carol", 9_999, 1, 0, 1, 2, 3)
	if st.Status != api.StatusRejected || st.Code != ledger.RejectBalanceMismatch.Code() {
		t.Fatalf("overdraft: %+v", st)
	}

	// kill one validator; the others keep committing; it restarts and catches up.
	c.stop(3)
	bal, h = c.balance("alice", 0, 1, 2)
	if st := c.send(b, "alice", "carol", 100, bal, h, nil, 0); st.Status != api.StatusCommitted {
		t.Fatalf("transfer with a validator down: %+v", st)
	}
	c.start(3)
	c.waitFor("restarted validator catches up", 2*time.Minute, func() bool {
		return c.status(3).Height >= c.status(0).Height && c.status(3).Ready
	})
	for i := 0; i < 4; i++ {
		st := c.status(i)
		t.Logf("node %d: finalized %d applied %d round %d ready %v", i, st.Height, st.AppliedHeight, st.Round, st.Ready)
	}
	c.waitFor("balances consistent on all nodes", time.Minute, func() bool {
		v, _ := c.balance("carol", 0, 1, 2, 3)
		return v == 100
	})
	for _, n := range []string{"alice", "bob", "carol"} {
		v1, _ := c.balance(n, 0, 1, 2)
		v2, _ := c.balance(n, 1, 2, 3)
		if v1 != v2 {
			t.Fatalf("%s: %d vs %d across subsets", n, v1, v2)
		}
	}
}

// A validator that sends well-formed but wrong decryption shares cannot make
// an invalid transfer valid, and does not halt the others. With 4 validators
// and t = 3 its shares can make a batch undecided (failed closed) when they
// are among the shares a block carries; see docs/PROTOCOL.md.
func TestCluster_ByzantineSharesNeitherForgeNorHalt(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-validator cluster in -short mode")
	}
	c := newCluster(t, 4, map[string]uint64{"alice": 10_000, "bob": 500, "carol": 0}, func(i int) *faults {
		if i == 3 {
			return &faults{corruptShares: true}
		}
		return nil
	})
	c.waitReady(0, 1, 2, 3)
	b := c.dealer()
	st := c.overdraw(b, "bob", "carol", 9_999, 1, 0, 1, 2)
	if st.Status == api.StatusCommitted {
		t.Fatalf("overdraft committed with a byzantine validator: %+v", st)
	}
	var bal, h uint64
	committed := uint64(0)
	for tries := 0; tries < 8 && committed == 0; tries++ {
		bal, h = c.balance("alice", 0, 1, 2)
		st = c.send(b, "alice", "carol", 10, bal, h, nil, 0)
		switch {
		case st.Status == api.StatusCommitted:
			committed = 10
		case st.Code == ledger.RejectUndecided.Code():
			t.Logf("honest transfer failed closed (%s); resubmitting", st.Code)
		default:
			t.Fatalf("honest transfer: %+v", st)
		}
	}
	if committed == 0 {
		t.Fatal("honest transfers never got through with one byzantine validator")
	}
	c.waitFor("chain keeps finalizing", time.Minute, func() bool { return c.status(0).Height > st.Height+2 })
	ab, _ := c.balance("alice", 0, 1, 2)
	bb, _ := c.balance("bob", 0, 1, 2)
	cb, _ := c.balance("carol", 0, 1, 2)
	if ab+bb+cb != 10_500 || cb != committed {
		t.Fatalf("balances %d+%d+%d (carol should have %d)", ab, bb, cb, committed)
	}
	// The wrong shares are named by the honest validators whenever the
	// byzantine validator's precommit is carried (a proposer carries the
	// precommits it holds; a quorum of honest ones decides without it).
	named := func() bool {
		for _, i := range []int{0, 1, 2} {
			if c.metric(i, `zkbank_validator_faults_total{validator="3"}`) < 1 {
				return false
			}
		}
		return true
	}
	for tries := 0; tries < 8 && !named(); tries++ {
		bal, h = c.balance("alice", 0, 1, 2)
		if st = c.send(b, "alice", "carol", 1, bal, h, nil, 0); st.Status == api.StatusCommitted {
			committed++
		}
	}
	if !named() {
		t.Fatal("the honest validators never identified validator 3")
	}
	c.waitFor("chain keeps finalizing", time.Minute, func() bool { return c.status(0).Height > st.Height+2 })
	ab, _ = c.balance("alice", 0, 1, 2)
	bb, _ = c.balance("bob", 0, 1, 2)
	cb, _ = c.balance("carol", 0, 1, 2)
	if ab+bb+cb != 10_500 || cb != committed {
		t.Fatalf("balances %d+%d+%d (carol should have %d)", ab, bb, cb, committed)
	}
}

// A validator with wrong shares (3) and an honest validator on a slow link
// (0: every proposal reaches it after its timeouts, so it precommits nil and
// the others decide with 1, 2 and 3). Each certificate then holds only two
// agreeing shares, fewer than t+f, and no other precommit can ever join it:
// before attestations every proposal of the next height was refused and the
// chain halted (a byzantine proposer withholding its proposal from one
// honest validator did the same on purpose). Validator 0 attests its
// extension for each block it decided without being in the certificate,
// the next block carries it, and transfers commit with the right balances.
func TestAttack_SlowValidatorAndWrongSharesDoNotHaltTheChain(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-validator cluster in -short mode")
	}
	c := newCluster(t, 4, map[string]uint64{"alice": 1_000, "bob": 100, "carol": 0}, faultsAt(map[int]*faults{
		0: {delayProposals: 2 * time.Second},
		3: {corruptShares: true},
	}))
	c.waitReady(0, 1, 2, 3)
	b := c.dealer()
	if st := c.overdraw(b, "bob", "carol", 500, 1, 1, 2, 3); st.Status == api.StatusCommitted {
		t.Fatalf("overdraft committed: %+v", st)
	}
	var bal, h, last uint64
	committed := uint64(0)
	for tries := 0; tries < 4 && committed < 2; tries++ {
		// The nonce comes from validator 0, which learns of each decision
		// last.
		c.waitFor("validator 0 applied what validator 1 did", time.Minute, func() bool {
			var a0, a1 api.Account
			return c.getJSON(0, api.PathAccount+c.users["alice"].id.String(), &a0) == nil &&
				c.getJSON(1, api.PathAccount+c.users["alice"].id.String(), &a1) == nil && a0.Nonce == a1.Nonce
		})
		bal, h = c.balance("alice", 1, 2, 3)
		st := c.send(b, "alice", "carol", 10, bal, h, nil, 1)
		last = max(last, st.Height)
		switch {
		case st.Status == api.StatusCommitted:
			committed++
		case st.Code == ledger.RejectUndecided.Code():
			t.Logf("honest transfer failed closed (%s); resubmitting", st.Code)
		default:
			t.Fatalf("honest transfer: %+v", st)
		}
	}
	if committed < 2 {
		t.Fatal("honest transfers did not commit with a slow validator and one sending wrong shares")
	}
	attested := `zkbank_consensus_late_votes_total{type="attestation"}`
	if c.metric(1, attested) < 1 && c.metric(2, attested) < 1 {
		t.Fatal("no attestation reached validators 1 and 2: the test did not exercise what it is about")
	}
	// Balances are read one account after another: every validator read
	// must have applied the last transfer first, or an earlier read sees an
	// older height than a later one.
	c.waitFor("validators 1-3 applied the last transfer", time.Minute, func() bool {
		for _, i := range []int{1, 2, 3} {
			if c.status(i).AppliedHeight <= last+2 {
				return false
			}
		}
		return true
	})
	ab, _ := c.balance("alice", 1, 2, 3)
	bb, _ := c.balance("bob", 1, 2, 3)
	cb, _ := c.balance("carol", 1, 2, 3)
	if ab+bb+cb != 1_100 || cb != 10*committed {
		t.Fatalf("balances %d+%d+%d (carol should have %d)", ab, bb, cb, 10*committed)
	}
}

// A validator whose Finalize fails (a disk write, say) halts its consensus
// for good; the node then restarts itself from its durable state and
// catches up, instead of answering at the same height forever.
func TestCluster_ValidatorWhoseFinalizeFailsRestartsAndCatchesUp(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-validator cluster in -short mode")
	}
	f1 := &faults{failFinalizeAt: 3}
	c := newCluster(t, 4, map[string]uint64{"alice": 1_000, "bob": 0}, faultsAt(map[int]*faults{1: f1}))
	c.waitReady(0, 1, 2, 3)
	c.waitFor("validator 1 fails to finalize a height", time.Minute, f1.finalizeFailed.Load)
	b := c.dealer()
	bal, h := c.balance("alice", 0, 2, 3)
	if st := c.send(b, "alice", "bob", 25, bal, h, nil, 0); st.Status != api.StatusCommitted {
		t.Fatalf("transfer: %+v", st)
	}
	c.waitFor("validator 1 catches up", time.Minute, func() bool { return c.status(1).Height+1 >= c.status(0).Height })
	c.waitFor("validator 1 answers balance queries", time.Minute, func() bool {
		v, _ := c.balance("bob", 1, 2, 3)
		return v == 25
	})
	select {
	case err := <-c.done[1]:
		t.Fatalf("validator 1's Run returned: %v", err)
	default:
	}
}

// A validator cut off from the others for a while rejoins and converges.
func TestCluster_PartitionedValidatorRejoins(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-validator cluster in -short mode")
	}
	var cut *faults
	c := newCluster(t, 4, map[string]uint64{"alice": 1_000, "bob": 0, "carol": 0}, func(i int) *faults {
		if i == 2 {
			cut = &faults{}
			return cut
		}
		return nil
	})
	c.waitReady(0, 1, 2, 3)
	b := c.dealer()
	cut.partitioned.Store(true)
	bal, h := c.balance("alice", 0, 1, 3)
	if st := c.send(b, "alice", "bob", 250, bal, h, nil, 0); st.Status != api.StatusCommitted {
		t.Fatalf("transfer during partition: %+v", st)
	}
	stuck := c.status(2).Height
	c.waitFor("majority moves on", time.Minute, func() bool { return c.status(0).Height > stuck+3 })
	cut.partitioned.Store(false)
	c.waitFor("partitioned validator catches up", 2*time.Minute, func() bool { return c.status(2).Height+1 >= c.status(0).Height })
	c.waitFor("it answers balance queries consistently", time.Minute, func() bool {
		v, _ := c.balance("bob", 1, 2, 3)
		return v == 250
	})
}

// A byzantine proposer (validator 1) alters an extension it carries, as a
// proposer forging a verdict would: every honest validator refuses its
// blocks (they do not verify), the chain moves on with other proposers, an
// overdraft is still rejected and an honest transfer commits.
func TestCluster_ByzantineProposerForgingCarriedExtensions(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-validator cluster in -short mode")
	}
	c := newCluster(t, 4, map[string]uint64{"alice": 1_000, "bob": 100, "carol": 0}, faultsAt(map[int]*faults{1: {forgeCarried: true}}))
	c.waitReady(0, 1, 2, 3)
	b := c.dealer()
	if st := c.overdraw(b, "bob", "carol", 500, 0, 0, 2, 3); st.Status == api.StatusCommitted {
		t.Fatalf("overdraft committed with a byzantine proposer: %+v", st)
	}
	bal, h := c.balance("alice", 0, 2, 3)
	if st := c.send(b, "alice", "carol", 10, bal, h, nil, 2); st.Status != api.StatusCommitted {
		t.Fatalf("honest transfer with a byzantine proposer: %+v", st)
	}
	// Every honest validator refused the forged blocks (prevote nil).
	c.waitFor("the forging proposer's blocks refused by every honest validator", 2*time.Minute, func() bool {
		for _, i := range []int{0, 2, 3} {
			if c.metric(i, "zkbank_consensus_rejected_values_total") < 1 {
				return false
			}
		}
		return true
	})
	c.waitFor("carol's credit applied everywhere", time.Minute, func() bool {
		v, _ := c.balance("carol", 0, 2, 3)
		return v == 10
	})
}

// 10,000 account openings from one client are throttled at the validator
// (429 past a small burst), and the chain keeps committing honest transfers.
func TestCluster_OpeningFloodIsThrottled(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-validator cluster in -short mode")
	}
	c := newCluster(t, 4, map[string]uint64{"alice": 1_000, "bob": 0, "carol": 0})
	c.waitReady(0, 1, 2, 3)
	b := c.dealer()
	const flood = 10_000
	codes := make(chan int, flood)
	jobs := make(chan struct{}, flood)
	for i := 0; i < flood; i++ {
		jobs <- struct{}{}
	}
	close(jobs)
	client := &http.Client{Timeout: 2 * time.Minute}
	var wg sync.WaitGroup
	for w := 0; w < 16; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range jobs {
				pub, key, _ := ed25519.GenerateKey(rand.Reader)
				req := api.OpenRequest{SignPub: hex.EncodeToString(pub), Kind: "deposit",
					Signature: hex.EncodeToString(ed25519.Sign(key, ledger.OpenAccountBytes(c.gen.ChainID, ledger.KindDeposit)))}
				body, _ := json.Marshal(req)
				resp, err := client.Post(c.apis[1]+api.PathOpen, api.ContentJSON, bytes.NewReader(body))
				if err != nil {
					codes <- 0
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				codes <- resp.StatusCode
			}
		}()
	}
	// An honest transfer, through another validator, while the flood runs.
	bal, h := c.balance("alice", 0, 2, 3)
	if st := c.send(b, "alice", "bob", 25, bal, h, nil, 0); st.Status != api.StatusCommitted {
		t.Fatalf("honest transfer during the flood: %+v", st)
	}
	wg.Wait()
	close(codes)
	byCode := map[int]int{}
	for code := range codes {
		byCode[code]++
	}
	t.Logf("opening flood answered: %v", byCode)
	if byCode[http.StatusTooManyRequests] < flood-200 {
		t.Fatalf("only %d of %d openings throttled (%v)", byCode[http.StatusTooManyRequests], flood, byCode)
	}
	if byCode[http.StatusOK] == 0 {
		t.Fatalf("the burst an honest client is allowed was refused too (%v)", byCode)
	}
	if st := c.status(1); st.Height <= h+2 {
		t.Fatalf("chain stalled at %d during the flood", st.Height)
	}
}
