package testnet

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/client"
	"github.com/zkbank/zkbank/genesis"
)

func TestFullNodePorts_StayClearOfTheValidators(t *testing.T) {
	p := Ports{P2P: 27000, API: 27100}
	taken := map[string]string{}
	for i := 0; i < maxValidators; i++ {
		taken[p.p2pAddr(i)] = fmt.Sprintf("validator %d p2p", i)
		taken[p.apiURL(i)] = fmt.Sprintf("validator %d api", i)
	}
	for j := 0; j < maxFullNodes; j++ {
		for _, a := range []string{p.fullP2PAddr(j), p.fullAPIURL(j)} {
			if who, ok := taken[a]; ok {
				t.Fatalf("full node %d's %s is %s's", j, a, who)
			}
			taken[a] = fmt.Sprintf("full node %d", j)
		}
	}
}

func TestBootstrapAddr(t *testing.T) {
	g := &genesis.Genesis{Validators: []genesis.Validator{{PeerID: "12D3KooWabc", P2PAddrs: []string{"/ip4/10.77.0.10/tcp/27000"}}}}
	got, err := bootstrapAddr(g)
	if err != nil || got != "/ip4/10.77.0.10/tcp/27000/p2p/12D3KooWabc" {
		t.Fatalf("bootstrapAddr = %q, %v", got, err)
	}
	if _, err := bootstrapAddr(&genesis.Genesis{}); err == nil {
		t.Fatal("a genesis without validators gave a bootstrap address")
	}
}

// A binary without full-node mode is refused with one clear error, before
// any full node is created (the fake zkbank's node init has no --genesis).
func TestRun_FullNodesNeedFullNodeMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tn")
	cfg := runConfig(t, dir, 2)
	cfg.FullNodes = 1
	if err := FullNodeSupport(cfg.Exe); !errors.Is(err, ErrNoFullNodes) {
		t.Fatalf("FullNodeSupport(fake zkbank) = %v", err)
	}
	_, errb, err := runUntil(t, cfg)
	if !errors.Is(err, ErrNoFullNodes) {
		t.Fatalf("--full-nodes with the fake zkbank: %v\n%s", err, errb)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the testnet directory was created before the refusal: %v", err)
	}
}

func TestE2E_FullNodesFollowTheTestnet(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end testnet in -short mode")
	}
	bin := buildBinary(t)
	if err := FullNodeSupport(bin); errors.Is(err, ErrNoFullNodes) {
		t.Skipf("full-node mode not available in this zkbank yet: %v", err)
	} else if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "tn")
	// Validators on base+i and base+32+i, full node 0 on base+16 and base+48.
	base := freePorts(t, 64)
	tn := startTestnet(t, bin, "--dir", dir, "--validators", "4", "--accounts", "2", "--demo=false", "--full-nodes", "1",
		"--p2p-port", fmt.Sprint(base), "--api-port", fmt.Sprint(base+32))
	full := fmt.Sprintf("http://127.0.0.1:%d", base+32+maxValidators)
	node0 := fmt.Sprintf("http://127.0.0.1:%d", base+32)
	mustContain(t, "summary", tn.out.String(), "full nodes", "full-0", full, Layout{Dir: dir}.FullLog(0))

	ctx := context.Background()
	status := func(url string) *api.Status {
		s, err := client.New(url, client.WithTimeout(3*time.Second)).Status(ctx)
		if err != nil {
			return &api.Status{}
		}
		return s
	}
	waitFor(t, "the full node following the validators", 3*time.Minute, func() bool {
		f, v := status(full), status(node0)
		return f.Role == "full" && f.Height > 0 && f.Height+2 >= v.Height
	})

	// A transfer committed by the validators reaches the full node, and its
	// height keeps tracking theirs.
	w := func(name string) string { return filepath.Join(dir, "wallets", name+".json") }
	code, out, _ := cli(t, bin, "wallet", "send", "--wallet", w("alice"), "--to", w("bob"), "--amount", "3.00")
	if code != 0 {
		t.Fatal("send failed")
	}
	mustContain(t, "send", out, "committed in block")
	alice := accountOf(t, w("alice"))
	waitFor(t, "the transfer on the full node", 2*time.Minute, func() bool {
		a, err := client.New(full).Account(ctx, alice)
		return err == nil && a.Nonce == 1
	})
	from := status(node0).Height
	waitFor(t, "the full node tracking 5 more heights", 2*time.Minute, func() bool {
		f := status(full)
		return f.Height >= from+5 && f.Height+2 >= status(node0).Height
	})
	tn.stop(t)
}
