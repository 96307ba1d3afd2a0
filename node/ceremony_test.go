package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/p2p"
)

// The attack over the network: validator 2 signs a deal with one changed
// coefficient for validator 0. Every node's ceremony fails with a
// CeremonyFault naming dealer 2, and no node returns a key share (so Run
// writes none).
func TestCeremony_NetworkCorruptDealNamesTheDealer(t *testing.T) {
	if testing.Short() {
		t.Skip("network ceremony in -short mode")
	}
	const n, th, bad = 4, 2, 2
	p := ledger.MustParams(ledger.ZKB128)
	com, err := ledger.NewCommittee(n, th)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	hosts := make([]*p2p.Host, n)
	peers := make([]peer.ID, n)
	gen := &genesis.Genesis{}
	privs := make([]ed25519.PrivateKey, n)
	for i := range hosts {
		h, err := p2p.New(ctx, p2p.Config{
			ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, ChainID: "ceremony-test",
			Protocols: map[protocol.ID]p2p.ProtocolLimits{protoCeremony: {MaxFrameBytes: 96 << 20, Timeout: 5 * time.Minute}},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		hosts[i], peers[i] = h, h.ID()
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		privs[i] = priv
		gen.Validators = append(gen.Validators, genesis.Validator{Index: i, ConsensusPub: hex.EncodeToString(pub)})
	}
	for i := range hosts {
		for j := 0; j < i; j++ {
			if err := hosts[i].Connect(ctx, hosts[j].Addrs()[0]); err != nil {
				t.Fatal(err)
			}
		}
	}
	ceremonyFaultsByPeer.set(peers[bad], &ceremonyFaults{corruptDeal: func(p *ledger.Params, d *ledger.ShamirDeal) *ledger.ShamirDeal {
		if d.To != 0 {
			return d
		}
		out := &ledger.ShamirDeal{From: d.From, To: d.To, Share: d.Share}
		out.Share.Poly = *d.Share.Poly.CopyNew()
		q := p.BGV.Q()[0]
		out.Share.Poly.Q.Coeffs[0][0] = (out.Share.Poly.Q.Coeffs[0][0] + 1) % q
		return out
	}})
	defer ceremonyFaultsByPeer.set(peers[bad], nil)

	start := time.Now()
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range hosts {
		opt, err := withConsensusKeys(privs[i], gen)
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			keys, ks, err := runCeremony(ctx, hosts[i], p, com, i, peers, []byte("ceremony-test"), slog.New(slog.DiscardHandler), opt)
			if keys != nil || ks != nil {
				t.Errorf("node %d got keys from a failed ceremony", i)
			}
			errs[i] = err
		}(i)
	}
	wg.Wait()
	t.Logf("network ceremony of %d (t=%d) with a bad dealer failed in %v", n, th, time.Since(start).Round(time.Millisecond))
	for i, err := range errs {
		var f *ledger.CeremonyFault
		if !errors.As(err, &f) || f.Dealer != bad || f.Recipient != -1 || len(f.More) != 0 {
			t.Fatalf("node %d: %v, want a fault naming dealer %d only", i, err, bad)
		}
	}
	t.Logf("node 0: %v", errs[0])
}
