package p2p

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

func TestTwoHostsConnectViaBootstrap(t *testing.T) {
	a, regA := newHost(t, Config{})
	b, _ := newHost(t, Config{Bootstrap: a.Addrs()})
	waitFor(t, 10*time.Second, func() bool { return connected(a, b.ID()) && connected(b, a.ID()) }, "a and b to connect")
	for _, addr := range a.Addrs() {
		if !strings.HasPrefix(addr, "/ip4/127.0.0.1/tcp/") || !strings.HasSuffix(addr, "/p2p/"+a.ID().String()) {
			t.Errorf("address %q is not a loopback TCP multiaddr with /p2p/", addr)
		}
	}
	waitFor(t, 5*time.Second, func() bool { return counterValue(t, regA, "zkbank_p2p_peers", "", "") == 1 }, "peers gauge of a to read 1")
}

func TestFourHostsConnectViaBootstrap(t *testing.T) {
	hosts := newMesh(t, 4, Config{})
	for _, h := range hosts {
		for _, o := range hosts {
			if h != o && !connected(h, o.ID()) {
				t.Errorf("%s not connected to %s", h.ID(), o.ID())
			}
		}
	}
}

func TestPeerEventsReportComingAndGoing(t *testing.T) {
	a, _ := newHost(t, Config{})
	events := make(chan PeerEvent, 16)
	cancel := a.Notify(func(e PeerEvent) { events <- e })
	defer cancel()

	b, _ := newHost(t, Config{Bootstrap: a.Addrs()})
	expectEvent(t, events, PeerEvent{Peer: b.ID(), Connected: true})
	b.Close()
	expectEvent(t, events, PeerEvent{Peer: b.ID(), Connected: false})
}

func expectEvent(t *testing.T, events <-chan PeerEvent, want PeerEvent) {
	t.Helper()
	select {
	case got := <-events:
		if got != want {
			t.Fatalf("event %+v, want %+v", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no event, want %+v", want)
	}
}

// A validator that restarts with the same key and address is redialed by a
// peer that has it as a bootstrap peer.
func TestRestartedPeerWithSameIdentityIsReconnected(t *testing.T) {
	key, err := GenerateIdentity()
	if err != nil {
		t.Fatal(err)
	}
	a1, _ := newHost(t, Config{Identity: key})
	listen := strings.TrimSuffix(a1.Addrs()[0], "/p2p/"+a1.ID().String())

	b, _ := newHost(t, Config{Bootstrap: a1.Addrs()})
	events := make(chan PeerEvent, 16)
	defer b.Notify(func(e PeerEvent) { events <- e })()
	expectEvent(t, events, PeerEvent{Peer: a1.ID(), Connected: true})

	if err := a1.Close(); err != nil {
		t.Fatalf("close a1: %v", err)
	}
	expectEvent(t, events, PeerEvent{Peer: a1.ID(), Connected: false})

	a2, _ := newHost(t, Config{Identity: key, ListenAddrs: []string{listen}})
	if a2.ID() != a1.ID() {
		t.Fatalf("restarted host has id %s, want %s", a2.ID(), a1.ID())
	}
	if err := a2.SetHandler(protoEcho, echo); err != nil {
		t.Fatal(err)
	}
	expectEvent(t, events, PeerEvent{Peer: a2.ID(), Connected: true})
	got, err := b.Request(context.Background(), a2.ID(), protoEcho, []byte("again"))
	if err != nil || string(got) != "again" {
		t.Fatalf("request after restart: %q, %v", got, err)
	}
}

// Two hosts in one process, each with its own registry: no collision, each
// registry sees its own host's values and libp2p's collectors, and nothing
// lands on the global default registry.
func TestSeparateRegistriesDoNotCollide(t *testing.T) {
	a, regA := newHost(t, Config{})
	b, regB := newHost(t, Config{Bootstrap: a.Addrs()})
	if err := a.SetHandler(protoEcho, echo); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return connected(b, a.ID()) }, "b to reach a")
	if _, err := b.Request(context.Background(), a.ID(), protoEcho, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}

	sentB := counterValue(t, regB, "zkbank_p2p_bytes_sent_total", "protocol", string(protoEcho))
	// a counts its reply after writing it: b can read the reply first.
	var sentA float64
	waitFor(t, 5*time.Second, func() bool {
		sentA = counterValue(t, regA, "zkbank_p2p_bytes_sent_total", "protocol", string(protoEcho))
		return sentA == 1005
	}, "a to count its reply")
	if sentB != 1005 || sentA != 1005 {
		t.Fatalf("bytes sent: b %v, a %v, want 1005 each (one frame each way)", sentB, sentA)
	}
	for name, reg := range map[string]*prometheus.Registry{"a": regA, "b": regB} {
		if !hasFamilyPrefix(t, reg, "libp2p_") {
			t.Errorf("registry of %s has no libp2p_ metrics", name)
		}
	}
	if hasFamilyPrefix(t, prometheus.DefaultGatherer, "libp2p_") || hasFamilyPrefix(t, prometheus.DefaultGatherer, "zkbank_") {
		t.Fatal("metrics leaked onto the global default registry")
	}
}

func hasFamilyPrefix(t *testing.T, g prometheus.Gatherer, prefix string) bool {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	return slices.ContainsFunc(mfs, func(mf *dto.MetricFamily) bool { return strings.HasPrefix(mf.GetName(), prefix) })
}

func TestCloseIsCleanAndIdempotent(t *testing.T) {
	cycle := func() {
		a, err := New(context.Background(), Config{ChainID: testChain, Registerer: prometheus.NewRegistry()})
		if err != nil {
			t.Fatal(err)
		}
		b, err := New(context.Background(), Config{ChainID: testChain, Registerer: prometheus.NewRegistry(), Bootstrap: a.Addrs()})
		if err != nil {
			t.Fatal(err)
		}
		a.SetHandler(protoEcho, echo)
		waitFor(t, 10*time.Second, func() bool { return connected(b, a.ID()) }, "b to reach a")
		if _, err := b.Request(context.Background(), a.ID(), protoEcho, []byte("x")); err != nil {
			t.Fatal(err)
		}
		if err := b.Send(context.Background(), a.ID(), protoEcho, []byte("y")); err != nil {
			t.Fatal(err)
		}
		if _, cancel, err := a.Subscribe("headers"); err != nil {
			t.Fatal(err)
		} else {
			defer cancel()
		}
		if err := b.Close(); err != nil {
			t.Errorf("close b: %v", err)
		}
		if err := a.Close(); err != nil {
			t.Errorf("close a: %v", err)
		}
		if err := a.Close(); err != nil {
			t.Errorf("second close: %v", err)
		}
		if _, err := a.Request(context.Background(), b.ID(), protoEcho, nil); !errors.Is(err, ErrClosed) {
			t.Errorf("request after close: %v, want ErrClosed", err)
		}
	}
	cycle() // libp2p starts a few process-wide goroutines on first use
	time.Sleep(100 * time.Millisecond)
	before := runtime.NumGoroutine()
	cycle()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		buf := make([]byte, 1<<20)
		t.Fatalf("%d goroutines after close, %d before\n%s", after, before, buf[:runtime.Stack(buf, true)])
	}
}

func TestDHTUsesZkbankPrefixAndFindsPeers(t *testing.T) {
	cfg := Config{DHT: true, DiscoveryInterval: 500 * time.Millisecond}
	a, _ := newHost(t, cfg)
	protos := a.host.Mux().Protocols()
	if !slices.Contains(protos, protocol.ID("/zkbank/kad/1.0.0")) || slices.Contains(protos, protocol.ID("/ipfs/kad/1.0.0")) {
		t.Fatalf("dht protocols %v: want /zkbank/kad/1.0.0 and not the public /ipfs one", protos)
	}
	// b and c know only a; the DHT introduces them to each other.
	cfg.Bootstrap = a.Addrs()
	b, _ := newHost(t, cfg)
	c, _ := newHost(t, cfg)
	waitFor(t, 30*time.Second, func() bool { return connected(b, c.ID()) }, "b and c to find each other through the DHT")
}

func TestMDNSStartsAndStops(t *testing.T) {
	a, _ := newHost(t, Config{EnableMDNS: true})
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
}

// The optional transports: QUIC to a QUIC-only listener, with TLS offered
// beside Noise; QUIC's metrics stay off the global registry too.
func TestQUICAndTLSOptions(t *testing.T) {
	a, _ := newHost(t, Config{EnableQUIC: true, EnableTLS: true, ListenAddrs: []string{"/ip4/127.0.0.1/udp/0/quic-v1"}})
	if err := a.SetHandler(protoEcho, echo); err != nil {
		t.Fatal(err)
	}
	b, _ := newHost(t, Config{EnableQUIC: true, EnableTLS: true, Bootstrap: a.Addrs()})
	waitFor(t, 10*time.Second, func() bool { return connected(b, a.ID()) }, "b to reach a over QUIC")
	if got, err := b.Request(context.Background(), a.ID(), protoEcho, []byte("quic")); err != nil || string(got) != "quic" {
		t.Fatalf("request over QUIC: %q, %v", got, err)
	}
	if tr := b.host.Network().ConnsToPeer(a.ID())[0].ConnState().Transport; tr != "quic-v1" {
		t.Fatalf("transport %q, want quic-v1", tr)
	}
	if hasFamilyPrefix(t, prometheus.DefaultGatherer, "libp2p_") {
		t.Fatal("QUIC metrics leaked onto the global default registry")
	}
}
