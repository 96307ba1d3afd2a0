package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
	"github.com/prometheus/client_golang/prometheus"
)

func TestParseAgent(t *testing.T) {
	good := Agent{Version: "v0.3.0", Protocol: 1, Role: "validator"}
	if got, err := ParseAgent(good.String()); err != nil || got != good {
		t.Fatalf("round trip of %q: %+v, %v", good.String(), got, err)
	}
	if s := good.String(); s != "zkbank/v0.3.0 (protocol 1; validator)" {
		t.Fatalf("agent string %q", s)
	}
	if a, err := ParseAgent("zkbank/devel-b631093a1b2c+dirty (protocol 12; full)"); err != nil || a.Protocol != 12 || a.Version != "devel-b631093a1b2c+dirty" {
		t.Fatalf("checkout agent: %+v, %v", a, err)
	}
	for _, bad := range []string{
		"", "zkbank", "go-ipfs/0.1", "zkbank/v1", "zkbank/v1 (protocol x; validator)",
		"zkbank/v1 (protocol -1; validator)", "zkbank/v1 (protocol 01; validator)",
		"zkbank/v1 (protocol 1)", "zkbank/v1 (protocol 1; validator", "zkbank/ (protocol 1; validator)",
		"zkbank/v1 (protocol 1; )", "zkbank/v 1 (protocol 1; validator)", "zkbank/v1 (protocol 1; val\nidator)",
		"zkbank/" + strings.Repeat("v", maxAgentVersion+1) + " (protocol 1; validator)",
		"zkbank/v1 (protocol 99999999999999999999999; validator)",
	} {
		if a, err := ParseAgent(bad); !errors.Is(err, ErrAgent) {
			t.Errorf("ParseAgent(%q) = %+v, %v; want ErrAgent", bad, a, err)
		}
	}
	if _, err := New(context.Background(), Config{ChainID: testChain, UserAgent: "zkbank"}); !errors.Is(err, ErrConfig) {
		t.Fatalf("New with a malformed UserAgent: %v, want ErrConfig", err)
	}
}

func TestGater_BlocksUntilExpiryAndNeverShortens(t *testing.T) {
	var refused atomic.Int64
	g := newGater(func() { refused.Add(1) })
	p, q := peer.ID("p"), peer.ID("q")
	if !g.block(p, time.Now().Add(time.Hour)) {
		t.Fatal("first block reported as already blocked")
	}
	if g.block(p, time.Now().Add(time.Millisecond)) {
		t.Fatal("second block of a blocked peer reported as new (would log twice)")
	}
	if !g.blocked(p) {
		t.Fatal("a shorter block shortened the running one")
	}
	if g.InterceptPeerDial(p) || g.InterceptSecured(0, p, nil) {
		t.Fatal("gater let a blocked peer through")
	}
	if !g.InterceptPeerDial(q) || !g.InterceptSecured(0, q, nil) {
		t.Fatal("gater refused a peer that is not blocked")
	}
	if refused.Load() != 2 {
		t.Fatalf("refused connections counted %d, want 2", refused.Load())
	}
	g.block(q, time.Now().Add(-time.Second))
	if g.blocked(q) {
		t.Fatal("an expired block still blocks")
	}
	g.unblock(p)
	if g.blocked(p) {
		t.Fatal("unblock left the peer blocked")
	}
}

func TestGater_BoundedUnderAFloodOfIdentities(t *testing.T) {
	g := newGater(func() {})
	for i := range maxBlocked + 100 {
		g.block(peer.ID(fmt.Sprint(i)), time.Now().Add(time.Hour+time.Duration(i)*time.Millisecond))
	}
	if len(g.until) > maxBlocked {
		t.Fatalf("block list grew to %d entries, bound %d", len(g.until), maxBlocked)
	}
	if !g.blocked(peer.ID(fmt.Sprint(maxBlocked + 99))) {
		t.Fatal("the newest block was dropped instead of the soonest-expiring")
	}
}

// Host.Block disconnects a peer and refuses its connections both ways until
// Unblock (or the expiry).
func TestBlockDisconnectsAndRefusesRedials(t *testing.T) {
	a, regA := newHost(t, Config{})
	b, _ := newHost(t, Config{})
	if err := b.Connect(context.Background(), a.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { return connected(a, b.ID()) }, "b to connect")
	a.Block(b.ID(), time.Hour, "test")
	waitFor(t, 10*time.Second, func() bool { return !connected(a, b.ID()) && !connected(b, a.ID()) }, "b to be disconnected")
	if err := b.Connect(context.Background(), a.Addrs()[0]); err == nil {
		waitFor(t, 10*time.Second, func() bool { return !connected(b, a.ID()) }, "a refused connection to drop")
	}
	if err := a.Connect(context.Background(), b.Addrs()[0]); err == nil {
		t.Fatal("a dialed a peer it blocked")
	}
	if got := counterValue(t, regA, "zkbank_p2p_refused_total", "protocol", refusedConnect); got < 2 {
		t.Fatalf("refused connections counted %v, want >= 2 (one inbound, one dial)", got)
	}
	a.Unblock(b.ID())
	if err := b.Connect(context.Background(), a.Addrs()[0]); err != nil {
		t.Fatalf("connect after unblock: %v", err)
	}
}

// The Allow hook runs before a frame's payload is read: a refused request or
// message never reaches the handler, the stream is reset and counted, other
// peers are unaffected, and a refusal with Block disconnects the peer.
func TestAllowHookRefusesBeforeTheHandler(t *testing.T) {
	var stranger atomic.Value // peer.ID refused on protoEcho
	stranger.Store(peer.ID(""))
	var messages atomic.Int64 // messages the stranger may still send
	allow := func(from peer.ID, proto protocol.ID) error {
		if from != stranger.Load().(peer.ID) {
			return nil
		}
		if proto == protoBig && messages.Add(-1) >= 0 {
			return nil
		}
		if proto == protoBig {
			return &Refusal{Reason: "over_budget", Block: time.Hour}
		}
		return &Refusal{Reason: "not_validator"}
	}
	a, regA := newHost(t, Config{Allow: allow, Protocols: bigLimits()})
	var calls sync.Map // peer -> count of handler calls
	count := func(_ context.Context, from peer.ID, p []byte) ([]byte, error) {
		n, _ := calls.LoadOrStore(from, new(atomic.Int64))
		n.(*atomic.Int64).Add(1)
		return p, nil
	}
	if err := a.SetHandler(protoEcho, count); err != nil {
		t.Fatal(err)
	}
	if err := a.SetHandler(protoBig, count); err != nil {
		t.Fatal(err)
	}
	friend, _ := newHost(t, Config{Bootstrap: a.Addrs(), Protocols: bigLimits()})
	bad, _ := newHost(t, Config{Bootstrap: a.Addrs(), Protocols: bigLimits()})
	stranger.Store(bad.ID())
	waitFor(t, 10*time.Second, func() bool { return connected(a, friend.ID()) && connected(a, bad.ID()) }, "both peers to connect")
	handled := func(p peer.ID) int64 {
		n, ok := calls.Load(p)
		if !ok {
			return 0
		}
		return n.(*atomic.Int64).Load()
	}

	ctx := context.Background()
	for i := range 5 {
		if _, err := bad.Request(ctx, a.ID(), protoEcho, []byte("hello")); err == nil {
			t.Fatalf("refused request %d answered", i)
		}
		if resp, err := friend.Request(ctx, a.ID(), protoEcho, []byte("hello")); err != nil || string(resp) != "hello" {
			t.Fatalf("friend's request %d: %q, %v", i, resp, err)
		}
	}
	if handled(bad.ID()) != 0 || handled(friend.ID()) != 5 {
		t.Fatalf("handler calls: stranger %d (want 0), friend %d (want 5)", handled(bad.ID()), handled(friend.ID()))
	}
	if got := counterValue(t, regA, "zkbank_p2p_refused_total", "reason", "not_validator"); got != 5 {
		t.Fatalf("refused frames counted %v, want 5", got)
	}
	if !connected(a, bad.ID()) {
		t.Fatal("a refusal without Block disconnected the peer")
	}

	// Messages: 3 admitted on one stream, the 4th refused with Block.
	messages.Store(3)
	for i := range 3 {
		if err := bad.Send(ctx, a.ID(), protoBig, []byte{byte(i)}); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
	}
	waitFor(t, 10*time.Second, func() bool { return handled(bad.ID()) == 3 }, "3 admitted messages to be handled")
	_ = bad.Send(ctx, a.ID(), protoBig, []byte("over budget"))
	waitFor(t, 10*time.Second, func() bool { return a.Blocked(bad.ID()) && !connected(a, bad.ID()) }, "the stranger to be blocked and disconnected")
	if handled(bad.ID()) != 3 {
		t.Fatalf("stranger's messages handled %d, want 3", handled(bad.ID()))
	}
	if got := counterValue(t, regA, "zkbank_p2p_refused_total", "reason", "over_budget"); got != 1 {
		t.Fatalf("over-budget refusals counted %v, want 1", got)
	}
	if err := bad.Connect(ctx, a.Addrs()[0]); err == nil {
		waitFor(t, 10*time.Second, func() bool { return !connected(bad, a.ID()) }, "the blocked stranger's redial to be dropped")
	}
	if resp, err := friend.Request(ctx, a.ID(), protoEcho, []byte("still here")); err != nil || string(resp) != "still here" {
		t.Fatalf("friend after the block: %q, %v", resp, err)
	}
}

func warnLogger(buf *syncBuffer) *slog.Logger {
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// Two zkbank nodes of different protocol numbers refuse each other after
// identify: both disconnect, each logs one line naming both versions, and
// neither redials during the cooldown.
func TestAttack_PeerWithIncompatibleProtocolIsRefused(t *testing.T) {
	var logA, logB syncBuffer
	oldAgent := Agent{Version: "v0.2.0", Protocol: 1, Role: "validator"}
	newAgent := Agent{Version: "v0.3.0", Protocol: 2, Role: "full"}
	a, regA := newHost(t, Config{UserAgent: oldAgent.String(), Logger: warnLogger(&logA)})
	b, regB := newHost(t, Config{UserAgent: newAgent.String(), Logger: warnLogger(&logB), Bootstrap: a.Addrs()})
	if err := a.SetHandler(protoEcho, echo); err != nil {
		t.Fatal(err)
	}

	// Each side refuses once identify tells it the other's agent; the one
	// that learns first disconnects a second later, so the other usually,
	// not always, gets to identify and refuse too.
	refused := func(reg prometheus.Gatherer) bool {
		return counterValue(t, reg, "zkbank_p2p_refused_total", "reason", reasonProtocolMismatch) >= 1
	}
	waitFor(t, 10*time.Second, func() bool { return refused(regA) || refused(regB) }, "a host to refuse the other's protocol")
	waitFor(t, 10*time.Second, func() bool { return !connected(a, b.ID()) && !connected(b, a.ID()) }, "a and b to disconnect")
	var lines int
	for _, side := range []struct {
		name string
		h    *Host
		peer peer.ID
		log  *syncBuffer
		reg  prometheus.Gatherer
	}{{"a", a, b.ID(), &logA, regA}, {"b", b, a.ID(), &logB, regB}} {
		log := side.log.String()
		var mine []string
		for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
			if strings.Contains(l, "refused for") {
				mine = append(mine, l)
			}
		}
		if !refused(side.reg) {
			if len(mine) != 0 {
				t.Fatalf("%s logged a refusal it did not count: %s", side.name, log)
			}
			continue
		}
		if !side.h.Blocked(side.peer) {
			t.Fatalf("%s refused its peer without blocking it for the cooldown", side.name)
		}
		if len(mine) != 1 {
			t.Fatalf("%s logged %d refusal lines, want 1:\n%s", side.name, len(mine), log)
		}
		lines++
		for _, want := range []string{"level=WARN", "zkbank/v0.2.0", "zkbank/v0.3.0", "protocol 1", "protocol 2", "upgrade one of them"} {
			if !strings.Contains(mine[0], want) {
				t.Errorf("%s's refusal line lacks %q: %s", side.name, want, mine[0])
			}
		}
	}
	if lines == 0 {
		t.Fatal("no refusal line logged")
	}
	// b keeps a as a bootstrap peer, but its redials are refused by its own
	// gater during the cooldown; a direct request fails too.
	if _, err := b.Request(context.Background(), a.ID(), protoEcho, []byte("x")); err == nil {
		t.Fatal("a request crossed an incompatible pair")
	}
	if connected(a, b.ID()) {
		t.Fatal("the incompatible pair reconnected during the cooldown")
	}
}

// A host that is not a zkbank node (another libp2p agent) is refused, and a
// compatible peer shows in zkbank_p2p_peer_agents.
func TestAttack_ForeignAgentIsRefused(t *testing.T) {
	var logA syncBuffer
	self := Agent{Version: "v0.3.0", Protocol: 1, Role: "validator"}
	a, regA := newHost(t, Config{UserAgent: self.String(), Logger: warnLogger(&logA)})

	foreign, err := libp2p.New(libp2p.ListenAddrStrings("/ip4/127.0.0.1/tcp/0"), libp2p.UserAgent("go-ipfs/0.30.0"),
		libp2p.Transport(tcp.NewTCPTransport), libp2p.PrometheusRegisterer(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	defer foreign.Close()
	pi, err := peer.AddrInfoFromString(a.Addrs()[0])
	if err != nil {
		t.Fatal(err)
	}
	if err := foreign.Connect(context.Background(), *pi); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool {
		return counterValue(t, regA, "zkbank_p2p_refused_total", "reason", reasonNotZkbank) >= 1 && !connected(a, foreign.ID())
	}, "the foreign peer to be refused and disconnected")
	if !strings.Contains(logA.String(), "go-ipfs/0.30.0") || !strings.Contains(logA.String(), "not a zkbank node") {
		t.Fatalf("refusal log lacks the foreign agent: %s", logA.String())
	}

	friend, _ := newHost(t, Config{UserAgent: Agent{Version: "v0.3.1", Protocol: 1, Role: "full"}.String(), Bootstrap: a.Addrs()})
	waitFor(t, 10*time.Second, func() bool {
		return gaugeWithLabels(t, regA, "zkbank_p2p_peer_agents", map[string]string{"version": "v0.3.1", "protocol": "1", "role": "full"}) == 1
	}, "the compatible peer to be counted by agent")
	if !connected(a, friend.ID()) {
		t.Fatal("a compatible peer was disconnected")
	}
	friend.Close()
	waitFor(t, 10*time.Second, func() bool {
		return gaugeWithLabels(t, regA, "zkbank_p2p_peer_agents", map[string]string{"version": "v0.3.1"}) == 0
	}, "the departed peer to leave the agents gauge")
}

// A message stream stays open between messages, so strangers holding many
// idle ones would use up the host's streams: only Trusted peers may open
// one. A stranger's Send is refused at its first frame and counted; its
// requests still work; a trusted peer's messages are handled.
func TestAttack_StrangersCannotHoldMessageStreams(t *testing.T) {
	var friendID atomic.Value
	friendID.Store(peer.ID(""))
	a, regA := newHost(t, Config{Trusted: func(p peer.ID) bool { return p == friendID.Load().(peer.ID) }})
	var got sync.Map
	if err := a.SetHandler(protoEcho, func(_ context.Context, from peer.ID, p []byte) ([]byte, error) {
		got.Store(from, true)
		return p, nil
	}); err != nil {
		t.Fatal(err)
	}
	friend, _ := newHost(t, Config{Bootstrap: a.Addrs()})
	stranger, _ := newHost(t, Config{Bootstrap: a.Addrs()})
	friendID.Store(friend.ID())
	waitFor(t, 10*time.Second, func() bool { return connected(a, friend.ID()) && connected(a, stranger.ID()) }, "both peers to connect")
	if err := friend.Send(context.Background(), a.ID(), protoEcho, []byte("vote")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, func() bool { _, ok := got.Load(friend.ID()); return ok }, "the trusted peer's message")
	_ = stranger.Send(context.Background(), a.ID(), protoEcho, []byte("idle"))
	waitFor(t, 10*time.Second, func() bool {
		return counterValue(t, regA, "zkbank_p2p_refused_total", "reason", ReasonMessageStream) >= 1
	}, "the stranger's message stream refused")
	if _, ok := got.Load(stranger.ID()); ok {
		t.Fatal("a stranger's message was handled")
	}
	if resp, err := stranger.Request(context.Background(), a.ID(), protoEcho, []byte("ask")); err != nil || string(resp) != "ask" {
		t.Fatalf("a stranger's request: %q %v", resp, err)
	}
}
