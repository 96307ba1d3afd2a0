package p2p

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	dht "github.com/libp2p/go-libp2p-kad-dht"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/p2p/discovery/mdns"
	drouting "github.com/libp2p/go-libp2p/p2p/discovery/routing"
	"github.com/libp2p/go-libp2p/p2p/net/swarm"
)

// dialTimeout bounds one attempt to reach a peer.
const dialTimeout = 10 * time.Second

// bootstrapTag protects bootstrap peers from the connection manager.
const bootstrapTag = "zkbank-bootstrap"

// keepConnected dials a bootstrap peer until connected, then waits for it to
// drop and starts again, with exponential backoff and jitter between failed
// attempts. A validator that restarts with the same identity and address is
// back within ReconnectMin to ReconnectMax.
func (h *Host) keepConnected(pi peer.AddrInfo) {
	defer h.bg.Done()
	h.host.Peerstore().AddAddrs(pi.ID, pi.Addrs, peerstore.PermanentAddrTTL)
	h.host.ConnManager().Protect(pi.ID, bootstrapTag)
	delay := h.cfg.ReconnectMin
	failures := 0
	for {
		changed := h.changedCh() // before the check, so no change is missed
		if h.host.Network().Connectedness(pi.ID) != network.Connected {
			err := h.dial(pi)
			if h.ctx.Err() != nil {
				return
			}
			if err == nil {
				if failures > 0 {
					h.log.Info("bootstrap peer reached", "peer", pi.ID, "after_failures", failures)
				}
				delay, failures = h.cfg.ReconnectMin, 0
				continue
			}
			failures++
			// Failures are routine while a peer restarts: say so once, then
			// only at debug level.
			level := h.log.Debug
			if failures == 1 {
				level = h.log.Info
			}
			level("bootstrap peer unreachable, retrying", "peer", pi.ID, "retry_in", delay, "err", err)
			select {
			case <-time.After(jitter(delay)):
			case <-h.ctx.Done():
				return
			}
			delay = min(2*delay, h.cfg.ReconnectMax)
			continue
		}
		select {
		case <-changed:
		case <-h.ctx.Done():
			return
		}
	}
}

// jitter spreads retries over [d/2, d) so peers that lost each other at the
// same moment do not redial in lockstep.
func jitter(d time.Duration) time.Duration {
	if d <= 1 {
		return d
	}
	return d/2 + rand.N(d/2)
}

// dial connects to pi once. Our own backoff decides when to retry, so the
// swarm's per-address dial backoff (5 s and up) is cleared first; otherwise a
// restarted peer would be refused for seconds after it is back.
func (h *Host) dial(pi peer.AddrInfo) error {
	if sw, ok := h.host.Network().(*swarm.Swarm); ok {
		sw.Backoff().Clear(pi.ID)
	}
	ctx, cancel := context.WithTimeout(h.ctx, dialTimeout)
	defer cancel()
	return h.host.Connect(ctx, pi)
}

// dialFound connects to peers that mDNS or the DHT reported.
func (h *Host) dialFound() {
	defer h.bg.Done()
	for {
		select {
		case <-h.ctx.Done():
			return
		case pi := <-h.found:
			if pi.ID == h.host.ID() || len(pi.Addrs) == 0 ||
				h.host.Network().Connectedness(pi.ID) == network.Connected {
				continue
			}
			if err := h.dial(pi); err != nil {
				h.log.Debug("discovered peer unreachable", "peer", pi.ID, "err", err)
				continue
			}
			h.log.Info("connected to discovered peer", "peer", pi.ID)
		}
	}
}

// offer queues a discovered peer for dialFound, dropping it if the queue is
// full: discovery repeats, so a drop only delays.
func (h *Host) offer(pi peer.AddrInfo) {
	select {
	case h.found <- pi:
	default:
	}
}

// mdnsNotifee forwards mDNS results to the dialer.
type mdnsNotifee struct{ h *Host }

func (n mdnsNotifee) HandlePeerFound(pi peer.AddrInfo) { n.h.offer(pi) }

func (h *Host) startMDNS() error {
	svc := mdns.NewMdnsService(h.host, mdnsServiceName, mdnsNotifee{h})
	if err := svc.Start(); err != nil {
		return fmt.Errorf("p2p: mdns: %w", err)
	}
	h.mdns = svc
	return nil
}

// startDHT runs a server-mode DHT under our own prefix, so it never joins the
// public IPFS DHT, and looks for the chain's nodes through it.
func (h *Host) startDHT(bootstrap []peer.AddrInfo) error {
	kad, err := dht.New(h.ctx, h.host,
		dht.ProtocolPrefix(dhtPrefix),
		dht.Mode(dht.ModeServer),
		dht.BootstrapPeers(bootstrap...),
	)
	if err != nil {
		return fmt.Errorf("p2p: dht: %w", err)
	}
	h.kad = kad
	if err := kad.Bootstrap(h.ctx); err != nil {
		return fmt.Errorf("p2p: dht bootstrap: %w", err)
	}
	h.bg.Add(1)
	go h.discoverViaDHT(drouting.NewRoutingDiscovery(kad))
	return nil
}

// discoverViaDHT advertises this node under the chain's rendezvous key and
// offers the other advertisers to the dialer, every DiscoveryInterval. The
// first rounds come sooner: the routing table fills within seconds.
func (h *Host) discoverViaDHT(rd *drouting.RoutingDiscovery) {
	defer h.bg.Done()
	ns := Namespace + h.cfg.ChainID
	wait := min(time.Second, h.cfg.DiscoveryInterval)
	for {
		select {
		case <-time.After(jitter(wait)):
		case <-h.ctx.Done():
			return
		}
		wait = min(2*wait, h.cfg.DiscoveryInterval)

		ctx, cancel := context.WithTimeout(h.ctx, h.cfg.DiscoveryInterval)
		if _, err := rd.Advertise(ctx, ns); err != nil {
			h.log.Debug("dht advertise failed", "err", err)
		}
		peers, err := rd.FindPeers(ctx, ns)
		if err != nil {
			h.log.Debug("dht find peers failed", "err", err)
			cancel()
			continue
		}
		for pi := range peers {
			h.offer(pi)
		}
		cancel()
	}
}
