package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/chain"
	"github.com/zkbank/zkbank/consensus"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/p2p"
)

// fullOpts shape a test's full node.
type fullOpts struct {
	bootstrap string    // its one bootstrap peer; validator 0's if empty
	isolated  bool      // the genesis it gets lists dead validator addresses
	keys      bool      // its home gets validator 0's public_keys.bin
	log       io.Writer // its logs (warnings and errors); stderr if nil
}

// startFull creates (once) a full node's home joining from one bootstrap
// peer, starts it, and adds its API to the cluster's (its index is
// returned). stop ends it.
func (c *cluster) startFull(name string, o fullOpts) (idx int, stop func()) {
	c.t.Helper()
	home := filepath.Join(c.dir, name)
	if o.bootstrap == "" {
		v0 := c.gen.Validators[0]
		o.bootstrap = v0.P2PAddrs[0] + "/p2p/" + v0.PeerID
	}
	if _, err := os.Stat(home); err != nil {
		apiURL := fmt.Sprintf("http://127.0.0.1:%d", freePort(c.t))
		if _, err := Init(home, []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(c.t))}, apiURL, nil, func(lc *LocalConfig) {
			lc.Bootstrap = []string{o.bootstrap}
		}); err != nil {
			c.t.Fatal(err)
		}
		g := *c.gen
		if o.isolated {
			g.Validators = append([]genesis.Validator(nil), c.gen.Validators...)
			for i := range g.Validators {
				g.Validators[i].P2PAddrs = []string{fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(c.t))}
			}
		}
		if err := g.Save(filepath.Join(home, "genesis.json")); err != nil {
			c.t.Fatal(err)
		}
		if o.keys {
			raw, err := os.ReadFile(Home{Dir: filepath.Join(c.dir, "v0")}.PublicKeys())
			if err != nil {
				c.t.Fatal(err)
			}
			if err := os.WriteFile(Home{Dir: home}.PublicKeys(), raw, 0o644); err != nil {
				c.t.Fatal(err)
			}
		}
	}
	lc, err := loadLocalConfig(Home{Dir: home})
	if err != nil {
		c.t.Fatal(err)
	}
	if len(lc.Bootstrap) != 1 {
		c.t.Fatalf("full node configured with %d bootstrap peers, want 1", len(lc.Bootstrap))
	}
	idx = -1
	for i, a := range c.apis {
		if a == lc.API {
			idx = i
		}
	}
	if idx < 0 {
		c.apis = append(c.apis, lc.API)
		idx = len(c.apis) - 1
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	w := o.log
	if w == nil {
		w = os.Stderr
	}
	logger := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if v := os.Getenv("ZKBANK_TEST_LOG"); v == "all" || strings.Contains(v, "full") {
		logger = slog.New(slog.NewTextHandler(io.MultiWriter(w, os.Stderr), &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	go func() { done <- Run(ctx, home, logger) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				c.t.Errorf("full node exited: %v", err)
			}
		case <-time.After(30 * time.Second):
			c.t.Errorf("full node did not stop")
		}
	}
	c.t.Cleanup(stop)
	return idx, stop
}

// syncBuffer is a log sink tests read while nodes write.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// fakeServer is a peer serving /zkbank/blocks/1 and /zkbank/sync/1 by
// asking validator 0, altering the decisions it passes on with tamper: a
// byzantine serving peer (or validators gone wrong) in front of a full node.
func (c *cluster) fakeServer(tamper func(*consensus.Commit)) (addr string) {
	c.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	c.t.Cleanup(cancel)
	listen := fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", freePort(c.t))
	h, err := p2p.New(ctx, p2p.Config{ListenAddrs: []string{listen}, ChainID: c.gen.ChainID, UserAgent: p2pAgent(RoleFull), Protocols: protocolLimits()})
	if err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() { h.Close() })
	v0 := c.gen.Validators[0]
	v0id, err := peer.Decode(v0.PeerID)
	if err != nil {
		c.t.Fatal(err)
	}
	if err := h.Connect(ctx, v0.P2PAddrs[0]+"/p2p/"+v0.PeerID); err != nil {
		c.t.Fatal(err)
	}
	if err := h.SetHandler(protoSync, func(ctx context.Context, _ peer.ID, b []byte) ([]byte, error) {
		return h.Request(ctx, v0id, protoSync, b)
	}); err != nil {
		c.t.Fatal(err)
	}
	if err := h.SetHandler(protoBlocks, func(ctx context.Context, _ peer.ID, b []byte) ([]byte, error) {
		raw, err := h.Request(ctx, v0id, protoBlocks, b)
		if err != nil || len(b) == 0 || b[0] != blocksReqRun {
			return raw, err
		}
		last, commits, err := decodeRun(raw)
		if err != nil {
			return nil, err
		}
		var msgs [][]byte
		for _, cm := range commits {
			tamper(cm)
			msgs = append(msgs, consensus.EncodeMessage(cm))
		}
		return encodeRun(last, msgs), nil
	}); err != nil {
		c.t.Fatal(err)
	}
	return listen + "/p2p/" + h.ID().String()
}

// signer is validator i's consensus signer, read from its home.
func (c *cluster) signer(i int) *consensus.Ed25519Signer {
	c.t.Helper()
	ck, err := loadOrCreateConsensusKey(Home{Dir: filepath.Join(c.dir, fmt.Sprintf("v%d", i))}.ConsensusKey())
	if err != nil {
		c.t.Fatal(err)
	}
	return consensus.NewEd25519Signer(ck)
}

// attackedFull runs a cluster through a committed transfer, then a full
// node that can reach only a fake server altering the decision of the
// height after the transfer's (whose certificate attests the evaluation
// digest of the transfer's block). It waits for the refusal and returns
// the full node's index, the refused height and its logs.
//
// alarm: the refusal is an alarm about the chain (REFUSED BLOCK, the
// refused height in the status); otherwise it is the serving peer's fault
// (counted and logged, no alarm).
func attackedFull(t *testing.T, alarm bool, tamper func(c *cluster, cm *consensus.Commit)) (*cluster, int, uint64, *syncBuffer) {
	c := newCluster(t, 4, map[string]uint64{"alice": 10_000, "bob": 0, "carol": 0})
	c.waitReady(0, 1, 2, 3)
	b := c.dealer()
	bal, h := c.balance("alice", 0, 1, 2, 3)
	paid := c.send(b, "alice", "bob", 700, bal, h, nil, 0)
	if paid.Status != api.StatusCommitted {
		t.Fatalf("transfer: %+v", paid)
	}
	target := max(paid.Height+1, 3)
	c.waitFor("the chain past the target", time.Minute, func() bool { return c.status(0).Height > target+2 })
	addr := c.fakeServer(func(cm *consensus.Commit) {
		if cm.Height() == target {
			tamper(c, cm)
		}
	})
	logs := &syncBuffer{}
	f, _ := c.startFull("full", fullOpts{bootstrap: addr, isolated: true, keys: true, log: logs})
	c.waitFor("the full node refuses the altered decision", 2*time.Minute, func() bool {
		if alarm {
			return c.status(f).RefusedHeight == target
		}
		return c.status(f).Ready && c.metric(f, `zkbank_full_refused_total{reason="certificate"}`) >= 1
	})
	c.waitFor("the validators move on", time.Minute, func() bool { return c.status(0).Height > target+5 })
	if st := c.status(f); st.VerifiedHeight != target-1 || st.Height != target-1 {
		t.Fatalf("full node verified %d (height %d) after refusing %d; want %d", st.VerifiedHeight, st.Height, target, target-1)
	}
	if !strings.Contains(logs.String(), fmt.Sprintf("height=%d", target)) || strings.Contains(logs.String(), "REFUSED BLOCK") != alarm {
		t.Fatalf("the refusal of height %d is not logged as it should be (alarm %v):\n%s", target, alarm, logs)
	}
	if !alarm && c.status(f).RefusedHeight != 0 {
		t.Fatal("a peer's forged certificate raised the chain alarm")
	}
	return c, f, target, logs
}

// A full node refuses a decision whose signers, with valid signatures,
// attest an evaluation digest other than the one it computed (validators
// that evaluated wrongly, or colluding to make it apply a forged result): it
// names the height and the validators, and does not advance.
func TestAttack_FullNodeRefusesABlockWithAWrongDigest(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-validator cluster in -short mode")
	}
	c, f, _, logs := attackedFull(t, true, func(c *cluster, cm *consensus.Commit) {
		for i, s := range cm.Cert.Sigs {
			x, err := chain.DecodeExt(s.Extension)
			if err != nil {
				t.Error(err)
				return
			}
			x.Digest[0] ^= 1
			v := cm.Cert.Vote(i)
			v.Extension = x.Encode()
			consensus.SignVote(c.gen.ChainID, c.signer(s.Validator), v)
			cm.Cert.Sigs[i] = consensus.CommitSig{Validator: s.Validator, Extension: v.Extension, Signature: v.Signature}
		}
	})
	if got := c.metric(f, `zkbank_full_refused_total{reason="digest"}`); got < 1 {
		t.Fatalf("digest refusals counted: %v", got)
	}
	if !strings.Contains(logs.String(), "validators=") || !strings.Contains(logs.String(), "evaluated_height=") {
		t.Fatalf("the refusal does not name the validators and the evaluated height:\n%s", logs)
	}
}

// A full node refuses a decision whose certificate carries a forged
// signature and does not advance; anyone can serve garbage, so it is the
// serving peer's fault (counted, logged with the height, the peer avoided),
// not an alarm about the chain: the refused height stays clear.
func TestAttack_FullNodeRefusesAForgedCertificate(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-validator cluster in -short mode")
	}
	c, f, _, _ := attackedFull(t, false, func(_ *cluster, cm *consensus.Commit) {
		s := &cm.Cert.Sigs[len(cm.Cert.Sigs)-1]
		s.Signature = append([]byte(nil), s.Signature...)
		s.Signature[0] ^= 1
	})
	if got := c.metric(f, `zkbank_full_refused_total{reason="certificate"}`); got < 1 {
		t.Fatalf("certificate refusals counted: %v", got)
	}
}

// A full node started after the chain has run, knowing only validator 0's
// address, fetches the public keys, catches up verifying and re-evaluating
// every block, keeps up with the validators, answers reads exactly as a
// validator does, relays a transfer that then commits, refuses what needs a
// key share, and resumes from its store after a restart; a second full node
// that can reach only the first syncs from it.
func TestFullNode_JoinsFromOneBootstrapAndTracksTheValidators(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-validator cluster in -short mode")
	}
	c := newCluster(t, 4, map[string]uint64{"alice": 10_000, "bob": 500, "carol": 0})
	c.waitReady(0, 1, 2, 3)
	b := c.dealer()
	bal, h := c.balance("alice", 0, 1, 2, 3)
	paid := c.send(b, "alice", "bob", 2_500, bal, h, nil, 0)
	if paid.Status != api.StatusCommitted {
		t.Fatalf("transfer: %+v", paid)
	}
	bal, h = c.balance("bob", 0, 1, 2, 3)
	vals := ledger.TransferValues(9_999, (bal-9_999)&ledger.MaxAmount) // a wallet lying about its balance
	if st := c.send(b, "bob", "carol", 9_999, bal, h, vals, 1); st.Status != api.StatusRejected {
		t.Fatalf("overdraft: %+v", st)
	}
	// ZKBANK_FULLNODE_SYNC_TRANSFERS=n commits n more transfers first, for
	// a longer chain to measure the sync speed on (docs/PERFORMANCE.md).
	more, _ := strconv.Atoi(os.Getenv("ZKBANK_FULLNODE_SYNC_TRANSFERS"))
	for k := 0; k < more; k++ {
		var bal, h uint64
		c.waitFor("alice's last debit applied", time.Minute, func() bool {
			bal, h = c.balance("alice", 0, 1, 2, 3)
			return bal == uint64(7_500-k)
		})
		if st := c.send(b, "alice", "carol", 1, bal, h, nil, k%4); st.Status != api.StatusCommitted {
			t.Fatalf("transfer %d: %+v", k, st)
		}
	}
	c.waitFor("a few more heights", time.Minute, func() bool { return c.status(0).Height > paid.Height+8 })

	target := c.status(0).Height
	f, stop := c.startFull("full0", fullOpts{})
	var ready time.Time
	c.waitFor("full node ready", 3*time.Minute, func() bool {
		if st := c.status(f); st.Ready && ready.IsZero() {
			ready = time.Now()
		}
		return !ready.IsZero()
	})
	c.waitFor("full node catches up", 3*time.Minute, func() bool { return c.status(f).VerifiedHeight >= target })
	took := time.Since(ready)
	st := c.status(f)
	synced := c.metric(f, "zkbank_full_sync_bytes_total")
	t.Logf("full node caught up %d heights in %v: %.1f heights/s, %.2f MB fetched (%.2f MB/s)",
		target, took.Round(time.Millisecond), float64(target)/took.Seconds(), synced/1e6, synced/1e6/took.Seconds())
	if fi, err := os.Stat(Home{Dir: filepath.Join(c.dir, "full0")}.PublicKeys()); err != nil {
		t.Fatalf("the full node kept no public keys: %v", err)
	} else {
		t.Logf("public keys fetched: %.1f MB", float64(fi.Size())/1e6)
	}
	if st.Role != RoleFull || st.ValidatorIndex != -1 || st.RefusedHeight != 0 {
		t.Fatalf("full node status %+v", st)
	}
	if vs := c.status(0); vs.Role != RoleValidator || vs.VerifiedHeight != vs.Height {
		t.Fatalf("validator status role %q verified %d height %d", vs.Role, vs.VerifiedHeight, vs.Height)
	}
	// It tracks the validators, not only the heights that existed.
	later := c.status(0).Height + 3
	c.waitFor("full node tracks the validators", 2*time.Minute, func() bool { return c.status(f).VerifiedHeight >= later })
	if got := c.status(f).ValidatorsHeight; got < target {
		t.Fatalf("full node heard validators at %d, below %d", got, target)
	}

	// Reads match a validator's.
	var fromFull, fromVal api.TransferStatus
	if err := c.getJSON(f, api.PathTransfer+paid.ID, &fromFull); err != nil {
		t.Fatal(err)
	}
	if err := c.getJSON(0, api.PathTransfer+paid.ID, &fromVal); err != nil {
		t.Fatal(err)
	}
	if fromFull.Status != fromVal.Status || fromFull.Height != fromVal.Height || fromFull.From != fromVal.From || fromFull.To != fromVal.To || fromFull.Status != api.StatusCommitted {
		t.Fatalf("transfer status from the full node %+v, from validator 0 %+v", fromFull, fromVal)
	}
	for _, name := range []string{"alice", "bob"} {
		var af, av api.Account
		if err := c.getJSON(f, api.PathAccount+c.users[name].id.String(), &af); err != nil {
			t.Fatal(err)
		}
		if err := c.getJSON(0, api.PathAccount+c.users[name].id.String(), &av); err != nil {
			t.Fatal(err)
		}
		af.Height, av.Height = 0, 0
		if af != av {
			t.Fatalf("%s from the full node %+v, from validator 0 %+v", name, af, av)
		}
	}

	// What needs a key share is refused.
	if code, errCode := c.postBalance(f, c.balanceRequest("alice", 0, c.status(0).Height+16)); code != http.StatusNotImplemented || errCode != "not_a_validator" {
		t.Fatalf("balance request at a full node: %d %s", code, errCode)
	}

	// A score consent and an account opening posted to the full node are
	// relayed and recorded; the full node's lending facts and registry show
	// them, as the validators' do.
	cs := c.consent("alice", "carol", ledger.ScopeScore, c.status(0).Height+10_000, 1)
	if code, id := c.postConsent(f, cs); code != http.StatusAccepted {
		t.Fatalf("consent through the full node: %d %s", code, id)
	}
	c.waitConsentNonce("alice", 1)
	if code, errCode, _ := c.postScore(f, c.scoreRequest("alice", "carol", 1)); code != http.StatusNotImplemented || errCode != "not_a_validator" {
		t.Fatalf("score request at a full node: %d %s", code, errCode)
	}
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	body, _ := json.Marshal(api.OpenRequest{SignPub: hex.EncodeToString(pub), Kind: "deposit",
		Signature: hex.EncodeToString(ed25519.Sign(key, ledger.OpenAccountBytes(c.gen.ChainID, ledger.KindDeposit)))})
	resp, err := http.Post(c.apis[f]+api.PathOpen, api.ContentJSON, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var opened api.OpenResponse
	_ = json.NewDecoder(resp.Body).Decode(&opened)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || opened.Account.ID != ledger.AccountIDOf(pub).String() {
		t.Fatalf("account opening through the full node: %d %+v", resp.StatusCode, opened)
	}
	var atVal api.Account
	c.waitFor("the opened account at validator 0", time.Minute, func() bool { return c.getJSON(0, api.PathAccount+opened.Account.ID, &atVal) == nil })

	// A transfer submitted to the full node is relayed and commits; the
	// full node reports its decided status.
	c.waitFor("alice's debits applied", time.Minute, func() bool {
		bal, h = c.balance("alice", 0, 1, 2, 3)
		return bal == uint64(7_500-more)
	})
	if st := c.send(b, "alice", "carol", 40, bal, h, nil, f); st.Status != api.StatusCommitted {
		t.Fatalf("transfer through the full node: %+v", st)
	}
	c.waitFor("carol's credit", time.Minute, func() bool {
		v, _ := c.balance("carol", 0, 1, 2, 3)
		return v == uint64(40+more)
	})

	// It resumes from its store after a restart.
	before := c.status(f).VerifiedHeight
	stop()
	f2, _ := c.startFull("full0", fullOpts{})
	if f2 != f {
		t.Fatalf("restarted full node has API index %d, was %d", f2, f)
	}
	c.waitFor("restarted full node ready", time.Minute, func() bool { return c.status(f).Ready })
	if got := c.status(f).VerifiedHeight; got < before {
		t.Fatalf("restarted full node at %d, was at %d", got, before)
	}
	later = c.status(0).Height + 2
	c.waitFor("restarted full node tracks the validators", 2*time.Minute, func() bool { return c.status(f).VerifiedHeight >= later })
	if got := c.metric(f, "zkbank_full_refused_total"); got != 0 {
		t.Fatalf("full node refused %v honest decisions", got)
	}

	// Full nodes serve each other: one that can reach only the first full
	// node (the validators' genesis addresses it gets are dead) syncs
	// blocks, uploads and pieces from it.
	fh := Home{Dir: filepath.Join(c.dir, "full0")}
	flc, err := loadLocalConfig(fh)
	if err != nil {
		t.Fatal(err)
	}
	ident, err := p2p.LoadIdentity(fh.NodeKey())
	if err != nil {
		t.Fatal(err)
	}
	fid, err := peer.IDFromPrivateKey(ident)
	if err != nil {
		t.Fatal(err)
	}
	g, _ := c.startFull("full1", fullOpts{bootstrap: flc.P2PAddrs[0] + "/p2p/" + fid.String(), isolated: true, keys: true})
	later = c.status(f).VerifiedHeight
	c.waitFor("a full node syncs from another full node", 2*time.Minute, func() bool { return c.status(g).VerifiedHeight >= later })
	if st := c.status(g); st.RefusedHeight != 0 || st.ValidatorsHeight != 0 {
		t.Fatalf("full node behind a full node: %+v", st)
	}

	// With only 2 of the 4 validators up, fewer than N - f can take an
	// upload: the full node answers 503 unavailable (retry), it does not
	// claim a submission the validators cannot order.
	bal, h = c.balance("alice", 0, 1, 2, 3)
	c.stop(2)
	c.stop(3)
	u, a := c.users["alice"], c.account("alice")
	sub, err := b.Build(ledger.TransferSpec{From: u.id, Lane: a.Lane, Key: u.key, To: c.users["bob"].id, Amount: 1, Balance: bal, Height: h, Nonce: a.Nonce + 1, Prev: c.lastOp(a)})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := sub.MarshalBinary()
	resp, err = http.Post(c.apis[f]+api.PathTransfers, api.ContentBinary, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	var e api.Error
	_ = json.NewDecoder(resp.Body).Decode(&e)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || e.Code != "unavailable" || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("relay with 2 of 4 validators up: %d %+v", resp.StatusCode, e)
	}
	t.Logf("relay with 2 of 4 validators up: %d %s", resp.StatusCode, e.Error)
}
