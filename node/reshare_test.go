package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/schemes/bgv"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/ledger/ledgertest"
	"github.com/zkbank/zkbank/p2p"
)

var reshareGenesis struct {
	once sync.Once
	c    *ledgertest.Committee
	err  error
}

func reshareChain(t *testing.T) *ledgertest.Committee {
	t.Helper()
	reshareGenesis.once.Do(func() {
		reshareGenesis.c, reshareGenesis.err = ledgertest.New(4, 2, []byte("reshare-net"))
	})
	if reshareGenesis.err != nil {
		t.Fatal(reshareGenesis.err)
	}
	return reshareGenesis.c
}

// reshareNet is a 2-of-4 chain's validators plus one joining node, on real
// libp2p hosts.
type reshareNet struct {
	spec  *reshareSpec
	hosts []*p2p.Host
	privs []ed25519.PrivateKey
	c     *ledgertest.Committee
}

func newReshareNet(t *testing.T, ctx context.Context) *reshareNet {
	t.Helper()
	c := reshareChain(t)
	next, err := ledger.NewCommittee(5, 2)
	if err != nil {
		t.Fatal(err)
	}
	net := &reshareNet{c: c, spec: &reshareSpec{
		Params: c.Params, Old: c.Com, New: next, Dealers: []int{1, 3}, Committers: []int{0, 1, 2, 3},
		Keys: c.Keys, Session: []byte("reshare-net/height-100"),
	}}
	for i := 0; i < 5; i++ {
		h, err := p2p.New(ctx, p2p.Config{
			ListenAddrs: []string{"/ip4/127.0.0.1/tcp/0"}, ChainID: "reshare-test",
			Protocols: map[protocol.ID]p2p.ProtocolLimits{protoReshare: reshareLimits},
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { h.Close() })
		net.hosts = append(net.hosts, h)
		pub, priv, _ := ed25519.GenerateKey(rand.Reader)
		net.privs = append(net.privs, priv)
		m := reshareMember{Peer: h.ID(), Old: i, New: i}
		if i == 4 {
			m.Old = -1 // the joining validator
		} else {
			net.spec.OldPubs = append(net.spec.OldPubs, pub)
		}
		net.spec.Members = append(net.spec.Members, m)
	}
	for i := range net.hosts {
		for j := 0; j < i; j++ {
			if err := net.hosts[i].Connect(ctx, net.hosts[j].Addrs()[0]); err != nil {
				t.Fatal(err)
			}
		}
	}
	return net
}

func (net *reshareNet) run(ctx context.Context) ([]*ledger.KeyShare, []error) {
	n := len(net.hosts)
	shares := make([]*ledger.KeyShare, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range net.hosts {
		var old *ledger.KeyShare
		if i < 4 {
			old = net.c.Shares[i]
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			shares[i], errs[i] = runReshare(ctx, net.hosts[i], net.spec, i, net.privs[i], old, slog.New(slog.DiscardHandler))
		}(i)
	}
	wg.Wait()
	return shares, errs
}

// Over libp2p: a fifth validator joins a 2-of-4 chain. Every node ends with a
// verified key share of the unchanged key, saved with saveKeys; every
// 2-subset of the five, read back from disk, decrypts a balance encrypted
// before the change.
func TestReshare_NetworkAddAFifthValidator(t *testing.T) {
	if testing.Short() {
		t.Skip("network resharing in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	net := newReshareNet(t, ctx)
	p := net.c.Params
	vals := make([]uint64, p.Slots)
	for i := range vals {
		vals[i] = uint64(i*7919) % (1 << 32)
	}
	pt := bgv.NewPlaintext(p.BGV, ledger.LevelDecrypt)
	if err := bgv.NewEncoder(p.BGV).Encode(vals, pt); err != nil {
		t.Fatal(err)
	}
	ct, err := rlwe.NewEncryptor(p.BGV, net.c.Keys.PK).EncryptNew(pt)
	if err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	shares, errs := net.run(ctx)
	t.Logf("network resharing 2-of-4 -> 2-of-5 took %v", time.Since(start).Round(time.Millisecond))
	loaded := make([]*ledger.KeyShare, len(shares))
	for i, err := range errs {
		if err != nil || shares[i] == nil {
			t.Fatalf("node %d: %v", i, err)
		}
		home := Home{Dir: t.TempDir()}
		if err := saveReshared(home, net.c.Keys, shares[i]); err != nil {
			t.Fatal(err)
		}
		var keys *ledger.PublicKeys
		if keys, loaded[i], err = loadKeys(p, home); err != nil {
			t.Fatal(err)
		}
		if loaded[i].Index != i || loaded[i].N != 5 || loaded[i].T != 2 {
			t.Fatalf("node %d saved share %d of %d-of-%d", i, loaded[i].Index, loaded[i].T, loaded[i].N)
		}
		if !keys.PK.Equal(net.c.Keys.PK) {
			t.Fatalf("node %d: the public key changed", i)
		}
	}
	dec, err := ledger.NewDecryptor(p, net.spec.New)
	if err != nil {
		t.Fatal(err)
	}
	ds := make([]*ledger.DecShare, len(loaded))
	for i, ks := range loaded {
		if ds[i], err = dec.Share(ks, ct); err != nil {
			t.Fatal(err)
		}
	}
	ledger.Subsets(5, 2, func(idx []int) {
		got, err := dec.Combine(ct, []*ledger.DecShare{ds[idx[0]], ds[idx[1]]})
		if err != nil {
			t.Fatalf("subset %v: %v", idx, err)
		}
		for s := range vals {
			if got[s] != vals[s] {
				t.Fatalf("subset %v: slot %d = %d, want %d", idx, s, got[s], vals[s])
			}
		}
	})
}

// Over libp2p: dealer 3 signs a deal with one changed coefficient for new
// validator 2 (its commitments are to the deals it computed). Every node's
// resharing fails with a ReshareFault naming old validator 3, and no node
// returns a key share.
func TestAttack_NetworkBadReDealIsNamed(t *testing.T) {
	if testing.Short() {
		t.Skip("network resharing in -short mode")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	net := newReshareNet(t, ctx)
	const bad = 3
	id := net.hosts[bad].ID()
	reshareFaultsByPeer.set(id, &reshareFaults{corruptDeals: func(r *ledger.Reshare, deals []*ledger.ReshareDeal, sign ledger.DealSigner) {
		d := deals[2]
		out := &ledger.ReshareDeal{From: d.From, To: d.To, Share: d.Share}
		out.Share.Poly = *d.Share.Poly.CopyNew()
		q := net.c.Params.BGV.Q()[0]
		out.Share.Poly.Q.Coeffs[0][0] = (out.Share.Poly.Q.Coeffs[0][0] + 1) % q
		msg, err := r.DealSigningBytes(out.From, out.To, &out.Share)
		if err != nil {
			panic(err)
		}
		out.Sig, _ = sign(msg)
		deals[2] = out
	}})
	defer reshareFaultsByPeer.set(id, nil)
	shares, errs := net.run(ctx)
	for i, err := range errs {
		if shares[i] != nil {
			t.Fatalf("node %d got a key share from a failed resharing", i)
		}
		var f *ledger.ReshareFault
		if !errors.As(err, &f) || f.Dealer != bad || f.Recipient != -1 || len(f.More) != 0 {
			t.Fatalf("node %d: %v, want a fault naming old validator %d only", i, err, bad)
		}
	}
	t.Logf("node 0: %v", errs[0])
}

// A node that leaves the committee deletes its old key share; one that stays
// has it replaced by the new one.
func TestReshare_LeavingNodeDeletesItsKeyShare(t *testing.T) {
	home := Home{Dir: t.TempDir()}
	if err := os.WriteFile(home.KeyShare(), []byte("old share"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := saveReshared(home, nil, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(home.KeyShare()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the old key share is still there: %v", err)
	}
	if err := saveReshared(home, nil, nil); err != nil {
		t.Fatalf("no key share to delete: %v", err)
	}
}
