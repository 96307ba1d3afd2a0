package testnet

// End-to-end with network namespaces: the real zkbank binary, 4 validators,
// each in its own namespace at its own address (root only; skipped with
// -short).
//
//	go test -run TestNetns_ -v ./testnet/

import (
	"context"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/zkbank/zkbank/client"
	"github.com/zkbank/zkbank/genesis"
)

// meshPeers returns, per validator, the addresses of the peers it has
// established p2p connections with, read from the kernel's TCP table of
// its namespace.
func meshPeers(t *testing.T, l Layout, g *genesis.Genesis, port int) [][]netip.Addr {
	t.Helper()
	out := make([][]netip.Addr, len(g.Validators))
	for i := range g.Validators {
		seen := map[netip.Addr]bool{}
		for _, ap := range tcpPeers(t, readPID(t, l.PIDFile(i)), port) {
			seen[ap.Addr()] = true
		}
		for a := range seen {
			out[i] = append(out[i], a)
		}
		slices.SortFunc(out[i], func(a, b netip.Addr) int { return a.Compare(b) })
	}
	return out
}

func TestNetns_ValidatorsDialEachOtherByTheirOwnAddresses(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end testnet in -short mode")
	}
	netnsE2E(t)
	needNetns(t)
	bin := buildBinary(t)
	dir := filepath.Join(t.TempDir(), "tn")
	tn := startTestnet(t, bin, "--netns", "--dir", dir, "--validators", "4", "--accounts", "2", "--demo=false")
	l := Layout{Dir: dir}
	g, err := genesis.Load(l.Genesis())
	if err != nil {
		t.Fatal(err)
	}
	nw, err := AttachNetwork(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range g.Validators {
		mustContain(t, "summary", tn.out.String(), v.API)
		ns, _ := nw.Namespace(v.Name)
		if pid := readPID(t, l.PIDFile(i)); !sameNetns(t, pid, ns) {
			t.Fatalf("%s (pid %d) is not in namespace %s", v.Name, pid, ns)
		}
	}
	// Every validator ends up connected to the three others, each at its
	// namespace address, and to nothing on a loopback address.
	var peers [][]netip.Addr
	waitFor(t, "a full mesh of namespace addresses", 2*time.Minute, func() bool {
		peers = meshPeers(t, l, g, DefaultPorts.P2P)
		for i, ps := range peers {
			var want []netip.Addr
			for j := range g.Validators {
				if j != i {
					want = append(want, nw.ValidatorAddr(j))
				}
			}
			for _, a := range ps {
				if a.IsLoopback() {
					t.Fatalf("node-%d has a p2p connection on loopback (%s): %v", i, a, peers)
				}
			}
			if !slices.Equal(ps, want) {
				return false
			}
		}
		return true
	})
	t.Logf("p2p peers per validator: %v", peers)

	// This host's CLI reaches the validators through the bridge.
	_, out, _ := cli(t, bin, "wallet", "balance", "--wallet", filepath.Join(dir, "wallets", "alice.json"))
	mustContain(t, "balance through the bridge", out, "alice: balance 1000.00")

	tn.stop(t)
	if left := leftovers(t, dir); len(left) > 0 {
		t.Fatalf("left behind after the stop: %v", left)
	}
}

func TestNetns_PartitionedValidatorRejoins(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end testnet in -short mode")
	}
	netnsE2E(t)
	needNetns(t)
	bin := buildBinary(t)
	dir := filepath.Join(t.TempDir(), "tn")
	t.Setenv("ZKBANK_FAKE_NODE", "")
	out, errb := &syncBuf{}, &syncBuf{}
	cfg := RunConfig{Dir: dir, Validators: 4, Accounts: 2, Exe: bin, Netns: true, Demo: false,
		StopGrace: 10 * time.Second, Out: out, Err: errb}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	waitFor(t, "the testnet up", 6*time.Minute, func() bool {
		select {
		case err := <-done:
			t.Fatalf("testnet ended early: %v\n%s", err, errb.String())
		default:
		}
		return strings.Contains(out.String(), "resumes this chain")
	})
	t.Logf("testnet up:\n%s", out.String())
	g, err := genesis.Load(Layout{Dir: dir}.Genesis())
	if err != nil {
		t.Fatal(err)
	}
	nw, err := AttachNetwork(dir)
	if err != nil {
		t.Fatal(err)
	}
	host := &http.Client{Timeout: 3 * time.Second}
	height := func(i int) uint64 { // 0 when unreachable from this host
		h, _ := statusVia(ctx, host, g.Validators[i].API)
		return h
	}
	in3 := inside(t, nw, "node-3")
	height3 := func() uint64 { // node-3 seen from inside its namespace
		h, err := statusVia(ctx, in3, g.Validators[3].API)
		if err != nil {
			t.Fatalf("node-3 from inside its namespace: %v", err)
		}
		return h
	}
	w := func(name string) string { return filepath.Join(dir, "wallets", name+".json") }
	send := func(amount string) {
		t.Helper()
		code, out, _ := cli(t, bin, "wallet", "send", "--wallet", w("alice"), "--to", w("bob"), "--amount", amount)
		if code != 0 {
			t.Fatalf("send %s failed", amount)
		}
		mustContain(t, "send", out, "committed in block")
	}

	send("1.00")
	if err := nw.Partition("node-3"); err != nil {
		t.Fatal(err)
	}
	cut := height3()
	if h := height(3); h != 0 {
		t.Fatalf("node-3 answered this host at height %d while partitioned", h)
	}
	// The three others keep committing, transfers included; node-3 stays
	// where the partition left it.
	send("2.00")
	from := height(0)
	waitFor(t, "the three others committing 5 more heights", 2*time.Minute, func() bool { return height(0) >= from+5 && height(1) >= from+5 })
	if h := height3(); h > cut+1 {
		t.Fatalf("partitioned node-3 moved from height %d to %d", cut, h)
	}
	t.Logf("partitioned at %d; the others at %d", cut, height(0))

	if err := nw.Heal("node-3"); err != nil {
		t.Fatal(err)
	}
	healed := time.Now()
	waitFor(t, "node-3 catching up", 3*time.Minute, func() bool {
		h3, h0 := height(3), height(0)
		return h3 > cut+5 && h3+2 >= h0
	})
	t.Logf("node-3 caught up %s after the heal: %d vs %d", time.Since(healed).Round(time.Second), height(3), height(0))
	// It tracks the chain again, and has the transfer of the partition.
	from = height(0)
	waitFor(t, "node-3 tracking node-0", time.Minute, func() bool { return height(0) >= from+5 && height(3)+2 >= height(0) })
	acct, err := client.New(g.Validators[3].API).Account(ctx, accountOf(t, w("alice")))
	if err != nil {
		t.Fatal(err)
	}
	if acct.Nonce != 2 {
		t.Fatalf("node-3 has alice at nonce %d after her two transfers, one during its partition", acct.Nonce)
	}
	_, bal, _ := cli(t, bin, "wallet", "balance", "--wallet", w("alice"))
	mustContain(t, "alice", bal, "alice: balance 997.00")

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("stop: %v\n%s", err, tail(errb.String(), 5))
	}
	if left := leftovers(t, dir); len(left) > 0 {
		t.Fatalf("left behind after the stop: %v", left)
	}
	if !strings.Contains(errb.String(), "resume this chain") {
		t.Fatalf("no clean stop message:\n%s", tail(errb.String(), 5))
	}
}

// netnsE2E skips the end-to-end namespace testnets unless
// ZKBANK_NETNS_E2E=1: four validator processes each, minutes of both cores
// while the rest of the suite runs (run them as root: `ZKBANK_NETNS_E2E=1
// go test ./testnet -run Netns`).
func netnsE2E(t *testing.T) {
	t.Helper()
	if os.Getenv("ZKBANK_NETNS_E2E") != "1" {
		t.Skip("end-to-end namespace testnet: set ZKBANK_NETNS_E2E=1 (and run as root)")
	}
}
