package p2p

import (
	"fmt"
	"net/netip"

	"github.com/libp2p/go-libp2p"
	"github.com/libp2p/go-libp2p/core/network"
	rcmgr "github.com/libp2p/go-libp2p/p2p/host/resource-manager"
	ma "github.com/multiformats/go-multiaddr"
)

// Resource-manager limits, sized for a handful of validators plus clients.
// Our frame reader reserves each frame's length on the stream's scope before
// reading it, so these memory limits bound how many large frames are in
// memory at once; yamux also reserves up to 16 MiB of receive window per
// stream on the peer's scope.
const (
	// streamMemory holds the largest frame plus slack for a response.
	streamMemory = MaxFrameCeiling + 32<<20
	// protocolPeerMemory lets one peer have two ceremony-sized frames in
	// flight on one protocol (one each way) next to normal traffic.
	protocolPeerMemory = 2*MaxFrameCeiling + 64<<20
	// peerMemory adds room for other protocols' 1-2 MiB frames and yamux
	// windows, which grow only while the peer scope is under half full.
	peerMemory = 512 << 20
	// protocolMemory: several peers sending ceremony frames at once.
	protocolMemory = 1 << 30
	// systemMemory is the ceiling for everything; about 2 GiB of a
	// validator's memory at worst, typically a few tens of MiB.
	systemMemory = 2 << 30
	// transientMemory covers streams still negotiating their protocol.
	transientMemory = 64 << 20

	systemConns     = 256 // validators, clients, DHT neighbours
	peerConns       = 8   // simultaneous dials both ways, plus QUIC and TCP
	systemStreams   = 4096
	peerStreams     = 512
	transientConns  = 64
	transientStream = 256
	fileDescriptors = 1024

	// ipv4ConnsPerIP keeps libp2p's default of 8 connections per IPv4 /32.
	ipv4ConnsPerIP = 8
	// loopbackConns: a local testnet of n nodes fully meshed needs about
	// n*(n-1) connections on 127.0.0.1; 4096 is far beyond any we run.
	loopbackConns = 4096
)

// resourceLimits returns explicit limits, independent of the machine's memory
// and file descriptors (libp2p's AutoScale would size them from those).
func resourceLimits() rcmgr.ConcreteLimitConfig {
	scaling := rcmgr.DefaultLimits
	// Keep libp2p's own service limits (identify, ping, ...) as it sets them.
	libp2p.SetDefaultServiceLimits(&scaling)
	base := scaling.Scale(systemMemory, fileDescriptors)

	mem := func(n int64) rcmgr.LimitVal64 { return rcmgr.LimitVal64(n) }
	ours := rcmgr.PartialLimitConfig{
		System: rcmgr.ResourceLimits{
			Conns: systemConns, ConnsInbound: systemConns, ConnsOutbound: systemConns,
			Streams: systemStreams, StreamsInbound: systemStreams, StreamsOutbound: systemStreams,
			FD: fileDescriptors, Memory: mem(systemMemory),
		},
		Transient: rcmgr.ResourceLimits{
			Conns: transientConns, ConnsInbound: transientConns, ConnsOutbound: transientConns,
			Streams: transientStream, StreamsInbound: transientStream, StreamsOutbound: transientStream,
			FD: transientConns, Memory: mem(transientMemory),
		},
		// Loopback peers are allowlisted: once the normal limits are used up,
		// these apply to them instead, so a local testnet is never starved.
		AllowlistedSystem: rcmgr.ResourceLimits{
			Conns: loopbackConns, ConnsInbound: loopbackConns, ConnsOutbound: loopbackConns,
			Streams: 4 * systemStreams, StreamsInbound: 4 * systemStreams, StreamsOutbound: 4 * systemStreams,
			FD: rcmgr.Unlimited, Memory: mem(systemMemory),
		},
		AllowlistedTransient: rcmgr.ResourceLimits{
			Conns: loopbackConns, ConnsInbound: loopbackConns, ConnsOutbound: loopbackConns,
			Streams: 4 * transientStream, StreamsInbound: 4 * transientStream, StreamsOutbound: 4 * transientStream,
			FD: rcmgr.Unlimited, Memory: mem(transientMemory),
		},
		ProtocolDefault: rcmgr.ResourceLimits{
			Streams: systemStreams, StreamsInbound: systemStreams / 2, StreamsOutbound: systemStreams / 2,
			Memory: mem(protocolMemory),
		},
		ProtocolPeerDefault: rcmgr.ResourceLimits{
			Streams: peerStreams / 2, StreamsInbound: peerStreams / 4, StreamsOutbound: peerStreams / 4,
			Memory: mem(protocolPeerMemory),
		},
		PeerDefault: rcmgr.ResourceLimits{
			Conns: peerConns, ConnsInbound: peerConns, ConnsOutbound: peerConns,
			Streams: peerStreams, StreamsInbound: peerStreams / 2, StreamsOutbound: peerStreams / 2,
			FD: peerConns, Memory: mem(peerMemory),
		},
		Stream: rcmgr.ResourceLimits{Memory: mem(streamMemory)},
	}
	return ours.Build(base)
}

// newResourceManager builds the manager with the limits above, the per-IP
// connection limits spelled out, and loopback and allow (the validators)
// allowlisted.
func newResourceManager(allow []string) (network.ResourceManager, error) {
	loopback := []ma.Multiaddr{
		ma.StringCast("/ip4/127.0.0.0/ipcidr/8"),
		ma.StringCast("/ip6/::1/ipcidr/128"),
	}
	for _, a := range allow {
		m, err := ma.NewMultiaddr(a)
		if err != nil {
			return nil, fmt.Errorf("%w: allowlisted address %q: %w", ErrConfig, a, err)
		}
		loopback = append(loopback, m)
	}
	return rcmgr.NewResourceManager(
		rcmgr.NewFixedLimiter(resourceLimits()),
		rcmgr.WithAllowlistedMultiaddrs(loopback),
		rcmgr.WithLimitPerSubnet(
			[]rcmgr.ConnLimitPerSubnet{{PrefixLength: 32, ConnCount: ipv4ConnsPerIP}},
			nil, // IPv6: libp2p's defaults (8 per /56, 64 per /48)
		),
		rcmgr.WithNetworkPrefixLimit(
			[]rcmgr.NetworkPrefixLimit{{Network: netip.MustParsePrefix("127.0.0.0/8"), ConnCount: loopbackConns}},
			[]rcmgr.NetworkPrefixLimit{{Network: netip.MustParsePrefix("::1/128"), ConnCount: loopbackConns}},
		),
	)
}

// reserveFrame accounts n bytes of a frame to the stream's scope, or fails
// with ErrResourceLimit. The returned func releases them.
func reserveFrame(s network.Stream, n int) (release func(), err error) {
	if n == 0 {
		return func() {}, nil
	}
	scope := s.Scope()
	if err := scope.ReserveMemory(n, network.ReservationPriorityAlways); err != nil {
		return nil, fmt.Errorf("%w: %d-byte frame: %w", ErrResourceLimit, n, err)
	}
	return func() { scope.ReleaseMemory(n) }, nil
}
