package node

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/zkbank/zkbank/consensus"
	"github.com/zkbank/zkbank/p2p"
	"github.com/zkbank/zkbank/version"
)

// Every line of the table has a usable cap and timeout, and every public
// protocol a rate; the validators-only set is the one docs/P2P.md states.
func TestGating_EveryProtocolHasCapTimeoutAndRate(t *testing.T) {
	wantValidatorsOnly := map[protocol.ID]bool{protoConsensus: true, protoPieces: true, protoCeremony: true}
	for _, id := range []protocol.ID{protoConsensus, protoPieces, protoCeremony, protoTx, protoOpen, protoConsent, protoSync} {
		if _, ok := gating[id]; !ok {
			t.Errorf("%s has no line in gating", id)
		}
	}
	limits := protocolLimits()
	for id, a := range gating {
		if l := a.limits; l.MaxFrameBytes <= 0 || l.MaxFrameBytes > p2p.MaxFrameCeiling || l.Timeout <= 0 {
			t.Errorf("%s: cap %d, timeout %s", id, l.MaxFrameBytes, l.Timeout)
		}
		if limits[id] != a.limits {
			t.Errorf("%s: p2p limits %+v, table %+v", id, limits[id], a.limits)
		}
		if wantValidatorsOnly[id] != (a.who == validatorsOnly) {
			t.Errorf("%s: validators-only %v, want %v", id, a.who == validatorsOnly, wantValidatorsOnly[id])
		}
		if a.who == public && (a.rate <= 0 || a.burst < 1) {
			t.Errorf("%s: public protocol without a rate (%v, burst %d)", id, a.rate, a.burst)
		}
	}
	h, err := p2p.New(context.Background(), p2p.Config{ChainID: "c", Protocols: limits})
	if err != nil {
		t.Fatalf("p2p refuses the table's limits: %v", err)
	}
	h.Close()
}

func refusal(t *testing.T, err error) *p2p.Refusal {
	t.Helper()
	r, ok := errors.AsType[*p2p.Refusal](err)
	if !ok {
		t.Fatalf("allow: %v, want a *p2p.Refusal", err)
	}
	return r
}

// A stranger on a validators-only protocol is refused each time, and its
// third refusal in a row asks for a block; validators pass; a protocol
// without a line is refused to everyone.
func TestGate_StrangerOnValidatorsOnlyIsRefusedThenBlocked(t *testing.T) {
	val, stranger, other := peer.ID("validator"), peer.ID("stranger"), peer.ID("other")
	g := newGate([]peer.ID{val}, slog.New(slog.DiscardHandler))
	for _, proto := range []protocol.ID{protoConsensus, protoPieces, protoCeremony, protoTx, protoSync} {
		if err := g.allow(val, proto); err != nil {
			t.Fatalf("validator on %s: %v", proto, err)
		}
	}
	for i := 1; i <= notValidatorStrikes; i++ {
		r := refusal(t, g.allow(stranger, protoConsensus))
		if r.Reason != refusedNotValidator {
			t.Fatalf("refusal %d: reason %q", i, r.Reason)
		}
		if (r.Block > 0) != (i == notValidatorStrikes) || (r.Block > 0 && r.Block != notValidatorBlock) {
			t.Fatalf("refusal %d of %d asks for a block of %s", i, notValidatorStrikes, r.Block)
		}
	}
	// Strikes are per peer.
	if r := refusal(t, g.allow(other, protoPieces)); r.Block != 0 {
		t.Fatalf("another stranger's first refusal blocks it for %s", r.Block)
	}
	if err := g.allow(other, protoTx); err != nil {
		t.Fatalf("a stranger on a public protocol: %v", err)
	}
	if r := refusal(t, g.allow(val, p2p.ProtocolID("unlisted", 1))); r.Reason != refusedUnlisted {
		t.Fatalf("unlisted protocol: reason %q", r.Reason)
	}
}

// The resharing protocol of a validator-set change: validators always, the
// participants of a resharing under way (newcomers included) only while it
// runs, a stranger never (refused as on validators-only protocols); and
// being a participant opens no other validators-only protocol.
func TestAttack_StrangerOnTheResharingProtocolIsRefused(t *testing.T) {
	val, newcomer, stranger := peer.ID("validator"), peer.ID("newcomer"), peer.ID("stranger")
	g := newGate([]peer.ID{val}, slog.New(slog.DiscardHandler))
	if err := g.allow(val, protoReshare); err != nil {
		t.Fatalf("validator on reshare: %v", err)
	}
	if r := refusal(t, g.allow(newcomer, protoReshare)); r.Reason != refusedNotValidator {
		t.Fatalf("newcomer before any change: reason %q", r.Reason)
	}
	g.expect([]peer.ID{val, newcomer})
	if err := g.allow(newcomer, protoReshare); err != nil {
		t.Fatalf("participant during the resharing: %v", err)
	}
	if r := refusal(t, g.allow(newcomer, protoConsensus)); r.Reason != refusedNotValidator {
		t.Fatalf("participant on consensus: reason %q", r.Reason)
	}
	if r := refusal(t, g.allow(stranger, protoReshare)); r.Reason != refusedNotValidator {
		t.Fatalf("stranger during the resharing: reason %q", r.Reason)
	}
	g.expect(nil)
	if r := refusal(t, g.allow(newcomer, protoReshare)); r.Reason != refusedNotValidator {
		t.Fatalf("newcomer after the resharing: reason %q", r.Reason)
	}
}

// gateHost starts a host that serves proto through gate g, counting the
// requests its handler sees per peer.
func gateHost(t *testing.T, g *gate, proto protocol.ID) (*p2p.Host, *prometheus.Registry, func(peer.ID) int64) {
	t.Helper()
	reg := prometheus.NewRegistry()
	h, err := p2p.New(context.Background(), p2p.Config{ChainID: "gating-test", Registerer: reg, Protocols: protocolLimits(), Allow: g.allow})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	var counts sync.Map // peer.ID -> *atomic.Int64
	counter := func(p peer.ID) *atomic.Int64 {
		n, _ := counts.LoadOrStore(p, new(atomic.Int64))
		return n.(*atomic.Int64)
	}
	if err := h.SetHandler(proto, func(_ context.Context, from peer.ID, b []byte) ([]byte, error) {
		counter(from).Add(1)
		return b, nil
	}); err != nil {
		t.Fatal(err)
	}
	return h, reg, func(p peer.ID) int64 { return counter(p).Load() }
}

func peerHost(t *testing.T, server *p2p.Host) *p2p.Host {
	t.Helper()
	h, err := p2p.New(context.Background(), p2p.Config{ChainID: "gating-test", Protocols: protocolLimits()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	if err := h.Connect(context.Background(), server.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	return h
}

func refusedTotal(t *testing.T, reg prometheus.Gatherer, proto protocol.ID, reason string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "zkbank_p2p_refused_total" {
			continue
		}
		var sum float64
		for _, m := range mf.GetMetric() {
			var p, r string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "protocol":
					p = l.GetValue()
				case "reason":
					r = l.GetValue()
				}
			}
			if p == string(proto) && r == reason {
				sum += m.GetCounter().GetValue()
			}
		}
		return sum
	}
	return 0
}

// One peer floods a public protocol: past its burst its requests are
// refused before the handler and counted, while another peer's requests,
// and a validator's far larger allowance, are unaffected.
func TestAttack_PublicProtocolFloodIsRateLimitedPerPeer(t *testing.T) {
	const flood = 400
	lim := gating[protoSync]
	val, err := p2p.New(context.Background(), p2p.Config{ChainID: "gating-test", Protocols: protocolLimits()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { val.Close() })
	g := newGate([]peer.ID{val.ID()}, slog.New(slog.DiscardHandler))
	server, reg, handled := gateHost(t, g, protoSync)
	if err := val.Connect(context.Background(), server.Addrs()[0]); err != nil {
		t.Fatal(err)
	}
	flooder, honest := peerHost(t, server), peerHost(t, server)

	ctx := context.Background()
	start := time.Now()
	var ok int
	for range flood {
		if _, err := flooder.Request(ctx, server.ID(), protoSync, make([]byte, 32)); err == nil {
			ok++
		}
	}
	elapsed := time.Since(start)
	// The bucket admits its burst plus what refilled meanwhile.
	bound := lim.burst + int(float64(lim.rate)*elapsed.Seconds()) + 1
	t.Logf("flood of %d sync requests in %s: %d answered (bound %d)", flood, elapsed.Round(time.Millisecond), ok, bound)
	if ok > bound || int(handled(flooder.ID())) != ok {
		t.Fatalf("%d answered, %d handled; the bucket allows at most %d", ok, handled(flooder.ID()), bound)
	}
	if ok < lim.burst {
		t.Fatalf("only %d answered, below the burst of %d", ok, lim.burst)
	}
	if got := refusedTotal(t, reg, protoSync, refusedRateLimited); int(got) != flood-ok {
		t.Fatalf("refusals counted %v, want %d", got, flood-ok)
	}
	for i := range lim.burst {
		if _, err := honest.Request(ctx, server.ID(), protoSync, make([]byte, 32)); err != nil {
			t.Fatalf("another peer's request %d refused during the flood: %v", i, err)
		}
	}
	for i := range flood {
		if _, err := val.Request(ctx, server.ID(), protoSync, make([]byte, 32)); err != nil {
			t.Fatalf("a validator's request %d of %d refused (its allowance is %dx): %v", i, flood, validatorRateFactor, err)
		}
	}
}

// A stranger (its own libp2p identity, a compatible agent claiming to be a
// validator) connects to a running 4-validator chain and sends consensus
// messages, well-formed and garbage. None reaches consensus; after
// notValidatorStrikes refusals it is disconnected and its redials are
// refused for the cooldown; the chain keeps committing.
func TestAttack_NonValidatorSendingConsensusIsRefusedAndThrottled(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-validator cluster in -short mode")
	}
	c := newCluster(t, 4, map[string]uint64{"alice": 1_000, "bob": 0, "carol": 0})
	c.waitReady(0, 1, 2, 3)

	ctx := context.Background()
	stranger, err := p2p.New(ctx, p2p.Config{ChainID: c.gen.ChainID, Protocols: protocolLimits(),
		UserAgent: p2p.Agent{Version: version.Version(), Protocol: version.Protocol, Role: "validator"}.String()})
	if err != nil {
		t.Fatal(err)
	}
	defer stranger.Close()
	v0 := c.gen.Validators[0]
	target, err := peer.Decode(v0.PeerID)
	if err != nil {
		t.Fatal(err)
	}
	addr := v0.P2PAddrs[0] + "/p2p/" + v0.PeerID
	if err := stranger.Connect(ctx, addr); err != nil {
		t.Fatal(err)
	}
	// The validator announces its version and role, and reports them.
	wantAgent := p2p.Agent{Version: version.Version(), Protocol: version.Protocol, Role: RoleValidator}.String()
	c.waitFor("the validator's agent", 30*time.Second, func() bool { a, _ := stranger.PeerAgent(target); return a == wantAgent })
	if st := c.status(0); st.Version != version.Version() || st.Protocol != version.Protocol {
		t.Fatalf("status version %q protocol %d, want %q %d", st.Version, st.Protocol, version.Version(), version.Protocol)
	}

	notValidator := fmt.Sprintf(`zkbank_p2p_refused_total{protocol="%s",reason="%s"}`, protoConsensus, refusedNotValidator)
	malformed := `zkbank_consensus_rejected_messages_total{reason="malformed"}`
	badSig := `zkbank_consensus_rejected_messages_total{reason="invalid_signature"}`
	malformedBefore, badSigBefore := c.metric(0, malformed), c.metric(0, badSig)
	height := c.status(0).Height

	// A well-formed prevote for the next height, signed by a key that is no
	// validator's, claiming validator 1; and garbage.
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	vote := &consensus.Vote{Type: consensus.Prevote, Height: height + 1, Validator: 1}
	consensus.SignVote(c.gen.ChainID, consensus.NewEd25519Signer(key), vote)
	msgs := [][]byte{consensus.EncodeMessage(vote), []byte("\xff\x00garbage consensus message")}
	for i := 0; c.metric(0, notValidator) < notValidatorStrikes; i++ {
		if i > 200 {
			t.Fatalf("after %d sends, only %v refusals counted", i, c.metric(0, notValidator))
		}
		_ = stranger.Send(ctx, target, protoConsensus, msgs[i%2])
		time.Sleep(50 * time.Millisecond)
	}
	c.waitFor("the stranger to be disconnected", 30*time.Second, func() bool {
		for _, p := range stranger.Peers() {
			if p == target {
				return false
			}
		}
		return true
	})
	refusedConns := `zkbank_p2p_refused_total{protocol="connect",reason="blocked"}`
	before := c.metric(0, refusedConns)
	if err := stranger.Connect(ctx, addr); err == nil {
		// The handshake may finish on the stranger's side before validator 0
		// closes it; then it must not last.
		c.waitFor("the blocked stranger's redial to be dropped", 30*time.Second, func() bool { return len(stranger.Peers()) == 0 })
	}
	if got := c.metric(0, refusedConns); got <= before {
		t.Fatalf("redial during the cooldown not refused by the gater (%v -> %v)", before, got)
	}
	if err := stranger.Send(ctx, target, protoConsensus, msgs[0]); err == nil {
		t.Fatal("a message was handed to a connection during the cooldown")
	}
	if got := c.metric(0, malformed); got != malformedBefore {
		t.Fatalf("garbage reached consensus: malformed messages %v -> %v", malformedBefore, got)
	}
	if got := c.metric(0, badSig); got != badSigBefore {
		t.Fatalf("the stranger's vote reached consensus: invalid signatures %v -> %v", badSigBefore, got)
	}
	c.waitFor("the chain to keep committing", 2*time.Minute, func() bool { return c.status(0).Height >= height+3 })
}

// Peer ids are free. Many identities together get a bounded share of a
// public protocol (allNonValidators peers' worth), a validator's allowance
// is its own; and a churn of fresh identities filling the limiter's table
// evicts the least recently seen bucket rather than locking every newcomer
// out.
func TestAttack_ManyIdentitiesShareOneBoundOnAPublicProtocol(t *testing.T) {
	val := peer.ID("validator")
	g := newGate([]peer.ID{val}, slog.New(slog.DiscardHandler))
	lim := gating[protoSync]
	total := lim.burst * allNonValidators
	admitted := 0
	for i := 0; i < 4*total; i++ {
		if g.allow(peer.ID(fmt.Sprintf("sybil-%d", i)), protoSync) == nil {
			admitted++
		}
	}
	// The shared bucket's burst plus what refilled while the loop ran.
	if admitted > total+int(lim.rate*allNonValidators) {
		t.Fatalf("%d requests from %d identities admitted; the shared bound is %d", admitted, 4*total, total)
	}
	if err := g.allow(val, protoSync); err != nil {
		t.Fatalf("a validator refused while strangers flood: %v", err)
	}

	l := newLimiter(1, 1)
	l.max = 4
	for i := 0; i < 4; i++ {
		if !l.allow(fmt.Sprintf("churn-%d", i)) {
			t.Fatalf("key %d refused", i)
		}
	}
	if !l.allow("newcomer") {
		t.Fatal("a newcomer was locked out by a full table")
	}
	if len(l.buckets) != 4 {
		t.Fatalf("the table holds %d buckets, bound 4", len(l.buckets))
	}
	if _, ok := l.buckets["churn-0"]; ok {
		t.Fatal("the least recently seen bucket was not the one evicted")
	}
}
