package p2p

import (
	"errors"
	"fmt"
	"maps"
	"strconv"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/control"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	ma "github.com/multiformats/go-multiaddr"
)

// Who may talk to this host, in two layers (docs/P2P.md, "Roles, gating and
// limits"):
//
//   - Connections: a peer is blocked for a while (Block) when its identify
//     agent is not a zkbank agent of this host's protocol number, or when the
//     node's Allow hook asks for it. A blocked peer's connections are closed
//     and the ConnectionGater refuses new ones, both ways, until the block
//     expires.
//   - Frames: before a handler sees anything of an inbound stream, and before
//     the body of each further message on it is read, Config.Allow decides
//     whether the peer may use the protocol. The policy (which protocols are
//     for validators, rate limits) is the node's; this file is the mechanism.

// ErrRefused is what a refused frame is matched with: a *Refusal returned by
// Config.Allow, or a blocked peer.
var ErrRefused = errors.New("p2p: refused")

// ReasonMessageStream refuses a message stream from a peer that is not
// Config.Trusted.
const ReasonMessageStream = "message_stream"

// Refusal is an Allow hook's way to refuse a frame. The stream is reset
// before its payload is read, and zkbank_p2p_refused_total{protocol,reason}
// counts it.
type Refusal struct {
	// Reason is the metric label and log field: a short snake_case word
	// (not_validator, rate_limited, ...).
	Reason string
	// Block, when positive, also disconnects the peer and refuses its
	// connections for that long (see Host.Block).
	Block time.Duration
}

func (r *Refusal) Error() string {
	if r.Block > 0 {
		return fmt.Sprintf("p2p: refused (%s), peer blocked for %s", r.Reason, r.Block)
	}
	return fmt.Sprintf("p2p: refused (%s)", r.Reason)
}

// Is makes errors.Is(r, ErrRefused) true.
func (r *Refusal) Is(target error) bool { return target == ErrRefused }

// Labels of zkbank_p2p_refused_total for refusals made by this package.
const (
	// protocol label of refused connections and of agent checks.
	refusedConnect  = "connect"
	refusedIdentify = "identify"

	reasonBlocked          = "blocked"           // a blocked peer's connection or frame
	reasonNotZkbank        = "not_zkbank"        // identify agent is not a zkbank agent
	reasonProtocolMismatch = "protocol_mismatch" // zkbank agent of another protocol number
	reasonRefused          = "refused"           // an Allow error that is not a *Refusal
)

// maxBlocked bounds the block list; expired entries are dropped first, then
// (a flood of identities) the entries that expire soonest.
const maxBlocked = 1 << 14

// gater is the host's libp2p ConnectionGater: it refuses dials to and
// connections from blocked peers.
type gater struct {
	mu      sync.Mutex
	until   map[peer.ID]time.Time
	refused func() // counts a refused connection
}

func newGater(refused func()) *gater {
	return &gater{until: make(map[peer.ID]time.Time), refused: refused}
}

// block refuses p until the given time; it reports whether p was not blocked
// already (so the caller logs a block once). A later until extends a block.
func (g *gater) block(p peer.ID, until time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	old, was := g.until[p]
	was = was && now.Before(old)
	if !was || until.After(old) {
		if len(g.until) >= maxBlocked {
			g.prune(now)
		}
		g.until[p] = until
	}
	return !was
}

// prune drops expired entries, then, if still full, the one expiring first.
// Called with g.mu held.
func (g *gater) prune(now time.Time) {
	maps.DeleteFunc(g.until, func(_ peer.ID, t time.Time) bool { return !now.Before(t) })
	for len(g.until) >= maxBlocked {
		var first peer.ID
		var at time.Time
		for p, t := range g.until {
			if at.IsZero() || t.Before(at) {
				first, at = p, t
			}
		}
		delete(g.until, first)
	}
}

func (g *gater) blocked(p peer.ID) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	t, ok := g.until[p]
	if !ok {
		return false
	}
	if !time.Now().Before(t) {
		delete(g.until, p)
		return false
	}
	return true
}

func (g *gater) unblock(p peer.ID) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.until, p)
}

func (g *gater) refuse(p peer.ID) bool {
	if g.blocked(p) {
		g.refused()
		return false
	}
	return true
}

// InterceptPeerDial refuses to dial a blocked peer.
func (g *gater) InterceptPeerDial(p peer.ID) bool { return g.refuse(p) }

// InterceptAddrDial allows every address: the peer was checked before.
func (g *gater) InterceptAddrDial(peer.ID, ma.Multiaddr) bool { return true }

// InterceptAccept allows every inbound connection: its peer is unknown until
// the security handshake (InterceptSecured).
func (g *gater) InterceptAccept(network.ConnMultiaddrs) bool { return true }

// InterceptSecured refuses a connection, either way, with a blocked peer.
func (g *gater) InterceptSecured(_ network.Direction, p peer.ID, _ network.ConnMultiaddrs) bool {
	return g.refuse(p)
}

// InterceptUpgraded allows what InterceptSecured allowed.
func (g *gater) InterceptUpgraded(network.Conn) (bool, control.DisconnectReason) { return true, 0 }

// Block disconnects p and refuses its connections, inbound and outbound, for
// d; a block already running is extended, never shortened. The first block
// of a peer is logged at Warn with why.
func (h *Host) Block(p peer.ID, d time.Duration, why string) {
	if p == h.host.ID() || d <= 0 {
		return
	}
	if h.gater.block(p, time.Now().Add(d)) {
		h.log.Warn("peer blocked: disconnected, its connections refused until the block expires",
			"peer", p, "for", d, "why", why)
	}
	h.host.Network().ClosePeer(p)
}

// Blocked reports whether p is blocked now.
func (h *Host) Blocked(p peer.ID) bool { return h.gater.blocked(p) }

// Unblock lifts a block on p before it expires.
func (h *Host) Unblock(p peer.ID) { h.gater.unblock(p) }

// Agent is this host's own agent, parsed from Config.UserAgent.
func (h *Host) Agent() Agent { return h.agent }

// PeerAgent returns the agent p announced in identify, if any.
func (h *Host) PeerAgent(p peer.ID) (string, bool) {
	v, err := h.host.Peerstore().Get(p, "AgentVersion")
	if err != nil {
		return "", false
	}
	s, ok := v.(string)
	return s, ok
}

// admit asks whether from may send a frame on proto: nil, or an error
// matching ErrRefused.
func (h *Host) admit(from peer.ID, proto protocol.ID) error {
	if h.gater.blocked(from) {
		return &Refusal{Reason: reasonBlocked}
	}
	if h.cfg.Allow == nil {
		return nil
	}
	if err := h.cfg.Allow(from, proto); err != nil {
		if _, ok := errors.AsType[*Refusal](err); ok {
			return err
		}
		return fmt.Errorf("%w: %w", ErrRefused, err)
	}
	return nil
}

// refuse resets a stream whose frame was not admitted, counts and logs it,
// and blocks the peer when the refusal asks for it.
func (h *Host) refuse(s network.Stream, proto protocol.ID, from peer.ID, err error) {
	s.Reset()
	reason := reasonRefused
	r, ok := errors.AsType[*Refusal](err)
	if ok && r.Reason != "" {
		reason = r.Reason
	}
	h.metrics.Refused.WithLabelValues(string(proto), reason).Inc()
	h.log.Debug("frame refused", "protocol", proto, "peer", from, "reason", reason, "err", err)
	if ok && r.Block > 0 {
		h.Block(from, r.Block, fmt.Sprintf("%s on %s", reason, proto))
	}
}

// watchIdentify checks the agent of every identified connection: a peer that
// is not a zkbank node of this host's protocol number is disconnected and
// blocked for AgentCooldown. It also keeps the peers-by-agent gauge.
func (h *Host) watchIdentify(sub event.Subscription) {
	defer h.bg.Done()
	defer sub.Close()
	for {
		var e any
		select {
		case <-h.ctx.Done():
			return
		case e = <-sub.Out():
		}
		ev, ok := e.(event.EvtPeerIdentificationCompleted)
		if !ok {
			continue
		}
		h.checkAgent(ev.Peer, ev.AgentVersion)
		h.countAgents()
	}
}

// checkAgent refuses p unless agent is a zkbank agent of our protocol
// number, and reports whether it did not.
func (h *Host) checkAgent(p peer.ID, agent string) bool {
	a, err := ParseAgent(agent)
	var reason, msg string
	switch {
	case err != nil:
		reason = reasonNotZkbank
		msg = fmt.Sprintf("peer %s is not a zkbank node (agent %q), this node speaks zkbank protocol %d (%s): refused for %s",
			p, truncate(agent, 96), h.agent.Protocol, h.agent.Version, h.cfg.AgentCooldown)
	case a.Protocol != h.agent.Protocol:
		reason = reasonProtocolMismatch
		msg = fmt.Sprintf("peer %s runs zkbank protocol %d (%s%s, %s), this node speaks protocol %d (%s%s): refused for %s; upgrade one of them",
			p, a.Protocol, agentPrefix, a.Version, a.Role, h.agent.Protocol, agentPrefix, h.agent.Version, h.cfg.AgentCooldown)
	default:
		h.log.Debug("peer identified", "peer", p, "agent", agent)
		return true
	}
	h.metrics.Refused.WithLabelValues(refusedIdentify, reason).Inc()
	if h.gater.block(p, time.Now().Add(h.cfg.AgentCooldown)) {
		h.log.Warn(msg, "peer", p, "agent", truncate(agent, 96), "reason", reason)
	}
	// Blocked at once (its frames are refused from now on), disconnected a
	// moment later, so that the peer's own identify of this host can finish
	// and its operator gets the same line.
	_ = h.spawn(func() {
		t := time.NewTimer(agentCloseDelay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-h.ctx.Done():
		}
		h.host.Network().ClosePeer(p)
	})
	return false
}

// agentCloseDelay is the grace between refusing a peer's agent and closing
// its connections.
const agentCloseDelay = time.Second

// countAgents recomputes zkbank_p2p_peer_agents from the connected peers'
// agents. Only peers with a zkbank agent of our protocol stay connected, and
// the agent's parts are bounded, so the label sets stay few.
func (h *Host) countAgents() {
	type key struct{ version, protocol, role string }
	counts := make(map[key]int)
	for _, p := range h.host.Network().Peers() {
		s, ok := h.PeerAgent(p)
		if !ok {
			continue
		}
		a, err := ParseAgent(s)
		if err != nil {
			continue
		}
		counts[key{a.Version, strconv.Itoa(a.Protocol), a.Role}]++
	}
	h.agentsMu.Lock()
	defer h.agentsMu.Unlock()
	h.metrics.PeerAgents.Reset()
	for k, n := range counts {
		h.metrics.PeerAgents.WithLabelValues(k.version, k.protocol, k.role).Set(float64(n))
	}
}
