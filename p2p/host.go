package p2p

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p"
	dht "github.com/libp2p/go-libp2p-kad-dht"
	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/event"
	"github.com/libp2p/go-libp2p/core/host"
	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/p2p/host/eventbus"
	"github.com/libp2p/go-libp2p/p2p/muxer/yamux"
	"github.com/libp2p/go-libp2p/p2p/net/connmgr"
	"github.com/libp2p/go-libp2p/p2p/security/noise"
	libp2ptls "github.com/libp2p/go-libp2p/p2p/security/tls"
	quic "github.com/libp2p/go-libp2p/p2p/transport/quic"
	"github.com/libp2p/go-libp2p/p2p/transport/tcp"
)

// Connection-manager watermarks: far above a handful of validators, so only
// a node drowning in clients ever trims, and bootstrap peers are protected.
const (
	connLow   = 64
	connHigh  = 128
	connGrace = time.Minute
)

// Host is one node's libp2p host. All methods are safe for concurrent use.
type Host struct {
	cfg     Config
	log     *slog.Logger
	host    host.Host
	metrics *Metrics
	ps      *pubsub.PubSub
	kad     *dht.IpfsDHT
	mdns    interface{ Close() error }
	gater   *gater
	agent   Agent // parsed cfg.UserAgent
	// agentsMu serializes recomputations of the peers-by-agent gauge.
	agentsMu sync.Mutex

	ctx    context.Context // done when Close is called or New's ctx ends
	cancel context.CancelFunc
	// bg counts the host's own goroutines, inflight the stream handlers
	// running; Close waits for both.
	bg       sync.WaitGroup
	inflight sync.WaitGroup
	// found queues peers from mDNS and the DHT for the dialer.
	found chan peer.AddrInfo

	mu          sync.Mutex
	closed      bool
	changed     chan struct{} // closed and replaced on each connectedness change
	watchers    map[int]func(PeerEvent)
	nextWatcher int
	topics      map[string]*pubsub.Topic
	out         map[outKey]*outStream
}

// PeerEvent says that a peer's first connection opened (Connected) or its
// last one closed (!Connected).
type PeerEvent struct {
	Peer      peer.ID
	Connected bool
}

// New starts a host listening on cfg.ListenAddrs. ctx scopes the host's
// background work (discovery, gossip, bootstrap redials); Close must be
// called in any case to release the host.
func New(ctx context.Context, cfg Config) (*Host, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	bootstrap, err := parsePeers(cfg.Bootstrap)
	if err != nil {
		return nil, fmt.Errorf("%w: bootstrap: %w", ErrConfig, err)
	}
	sk := cfg.Identity
	if sk == nil {
		if sk, err = GenerateIdentity(); err != nil {
			return nil, err
		}
	}
	metrics, err := NewMetrics(cfg.Registerer)
	if err != nil {
		return nil, fmt.Errorf("p2p: metrics: %w", err)
	}
	rm, err := newResourceManager(cfg.Allowlist)
	if err != nil {
		return nil, fmt.Errorf("p2p: resource manager: %w", err)
	}
	agent, _ := ParseAgent(cfg.UserAgent) // checked by withDefaults
	g := newGater(func() { metrics.Refused.WithLabelValues(refusedConnect, reasonBlocked).Inc() })
	cm, err := connmgr.NewConnManager(connLow, connHigh, connmgr.WithGracePeriod(connGrace))
	if err != nil {
		rm.Close()
		return nil, fmt.Errorf("p2p: connection manager: %w", err)
	}
	opts := []libp2p.Option{
		libp2p.Identity(sk),
		libp2p.ListenAddrStrings(cfg.ListenAddrs...),
		// Noise first: both ends prefer it; TLS only when asked for.
		libp2p.Security(noise.ID, noise.New),
		libp2p.Transport(tcp.NewTCPTransport),
		libp2p.Muxer(yamux.ID, yamux.DefaultTransport),
		libp2p.ResourceManager(rm),
		libp2p.ConnectionManager(cm),
		libp2p.PrometheusRegisterer(cfg.Registerer),
		libp2p.DisableRelay(),
		libp2p.UserAgent(cfg.UserAgent),
		libp2p.ConnectionGater(g),
	}
	if cfg.EnableTLS {
		opts = append(opts, libp2p.Security(libp2ptls.ID, libp2ptls.New))
	}
	if cfg.EnableQUIC {
		opts = append(opts, libp2p.Transport(quic.NewTransport))
	}
	lh, err := libp2p.New(opts...)
	if err != nil {
		rm.Close()
		cm.Close()
		return nil, fmt.Errorf("p2p: start libp2p: %w", err)
	}

	h := &Host{
		cfg:      cfg,
		log:      cfg.Logger,
		host:     lh,
		metrics:  metrics,
		gater:    g,
		agent:    agent,
		found:    make(chan peer.AddrInfo, 64),
		changed:  make(chan struct{}),
		watchers: make(map[int]func(PeerEvent)),
		topics:   make(map[string]*pubsub.Topic),
		out:      make(map[outKey]*outStream),
	}
	h.ctx, h.cancel = context.WithCancel(ctx)
	if err := h.start(bootstrap); err != nil {
		h.Close()
		return nil, err
	}
	if cfg.Identity == nil {
		h.log.Info("p2p host uses an ephemeral identity", "peer", lh.ID())
	}
	h.log.Info("p2p host listening", "peer", lh.ID(), "addrs", h.Addrs(), "agent", cfg.UserAgent)
	return h, nil
}

// start launches everything that runs beside the libp2p host.
func (h *Host) start(bootstrap []peer.AddrInfo) error {
	sub, err := h.host.EventBus().Subscribe(new(event.EvtPeerConnectednessChanged), eventbus.BufSize(256))
	if err != nil {
		return fmt.Errorf("p2p: subscribe to peer events: %w", err)
	}
	h.bg.Add(1)
	go h.watchPeers(sub)
	idSub, err := h.host.EventBus().Subscribe(new(event.EvtPeerIdentificationCompleted), eventbus.BufSize(256))
	if err != nil {
		return fmt.Errorf("p2p: subscribe to identify events: %w", err)
	}
	h.bg.Add(1)
	go h.watchIdentify(idSub)

	h.ps, err = pubsub.NewGossipSub(h.ctx, h.host,
		pubsub.WithMessageSignaturePolicy(pubsub.StrictSign),
		// Off by default in this gossipsub: our own messages would then go to
		// mesh peers only, and until the first heartbeat grafts a mesh (0.1-1 s
		// after peers connect) to nobody at all, silently. With a handful of
		// validators, sending our own small messages to every subscriber is
		// cheap.
		pubsub.WithFloodPublish(true),
		// Gossip messages are small; deeper queues than the default 32 cost
		// little and drop less under bursts. They still drop when full.
		pubsub.WithPeerOutboundQueueSize(256),
		pubsub.WithValidateQueueSize(256),
	)
	if err != nil {
		return fmt.Errorf("p2p: gossipsub: %w", err)
	}

	h.bg.Add(1)
	go h.dialFound()
	for _, pi := range bootstrap {
		if pi.ID == h.host.ID() {
			continue
		}
		h.bg.Add(1)
		go h.keepConnected(pi)
	}
	if h.cfg.DHT {
		if err := h.startDHT(bootstrap); err != nil {
			return err
		}
	}
	if h.cfg.EnableMDNS {
		if err := h.startMDNS(); err != nil {
			return err
		}
	}
	return nil
}

// ID is the host's peer id.
func (h *Host) ID() peer.ID { return h.host.ID() }

// Addrs returns the host's addresses with /p2p/<id>, ready to print or to
// put in another node's Config.Bootstrap.
func (h *Host) Addrs() []string {
	addrs := h.host.Addrs()
	if len(addrs) == 0 {
		addrs = h.host.Network().ListenAddresses()
	}
	out := make([]string, 0, len(addrs))
	suffix := "/p2p/" + h.host.ID().String()
	for _, a := range addrs {
		out = append(out, a.String()+suffix)
	}
	return out
}

// Peers returns the peers with at least one open connection.
func (h *Host) Peers() []peer.ID { return h.host.Network().Peers() }

// Metrics returns the host's collectors.
func (h *Host) Metrics() *Metrics { return h.metrics }

// Connect dials addr (a multiaddr with /p2p/<id>) once.
func (h *Host) Connect(ctx context.Context, addr string) error {
	pis, err := parsePeers([]string{addr})
	if err != nil {
		return err
	}
	if err := h.host.Connect(ctx, pis[0]); err != nil {
		return fmt.Errorf("p2p: connect %s: %w", pis[0].ID, err)
	}
	return nil
}

// Notify calls fn for every PeerEvent until the returned cancel is called.
// Calls come one at a time, in order, from one goroutine of the host; fn must
// not block (hand the event to an actor's mailbox). Peers already connected
// when Notify is called produce no event: read Peers() after Notify.
func (h *Host) Notify(fn func(PeerEvent)) (cancel func()) {
	h.mu.Lock()
	defer h.mu.Unlock()
	id := h.nextWatcher
	h.nextWatcher++
	h.watchers[id] = fn
	return func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.watchers, id)
	}
}

// watchPeers turns libp2p's connectedness events into PeerEvents, keeps the
// peers gauge, and wakes the bootstrap redialers.
func (h *Host) watchPeers(sub event.Subscription) {
	defer h.bg.Done()
	defer sub.Close()
	for {
		var e any
		select {
		case <-h.ctx.Done():
			return
		case e = <-sub.Out():
		}
		ev, ok := e.(event.EvtPeerConnectednessChanged)
		if !ok {
			continue
		}
		connected := ev.Connectedness == network.Connected
		h.metrics.Peers.Set(float64(len(h.host.Network().Peers())))
		if !connected {
			h.countAgents()
		}

		h.mu.Lock()
		if !connected {
			h.dropOutStreams(ev.Peer)
		}
		close(h.changed)
		h.changed = make(chan struct{})
		ids := slices.Sorted(maps.Keys(h.watchers))
		fns := make([]func(PeerEvent), 0, len(ids))
		for _, id := range ids {
			fns = append(fns, h.watchers[id])
		}
		h.mu.Unlock()

		if connected {
			h.log.Debug("peer connected", "peer", ev.Peer)
		} else {
			h.log.Debug("peer disconnected", "peer", ev.Peer)
		}
		for _, fn := range fns {
			fn(PeerEvent{Peer: ev.Peer, Connected: connected})
		}
	}
}

// changedCh returns a channel closed at the next connectedness change.
func (h *Host) changedCh() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.changed
}

// enter registers a running stream handler, or reports that the host is
// closing.
func (h *Host) enter() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.inflight.Add(1)
	return true
}

// spawn runs fn as one of the host's goroutines, unless the host is closing.
func (h *Host) spawn(fn func()) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return ErrClosed
	}
	h.bg.Add(1)
	go func() {
		defer h.bg.Done()
		fn()
	}()
	return nil
}

func (h *Host) isClosed() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.closed
}

// Close stops discovery and gossip, closes every connection, and waits for
// the host's goroutines and running handlers (whose contexts are canceled).
// It is idempotent.
func (h *Host) Close() error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	clear(h.watchers)
	h.mu.Unlock()

	h.cancel()
	var errs []error
	if h.mdns != nil {
		errs = append(errs, h.mdns.Close())
	}
	if h.kad != nil {
		errs = append(errs, h.kad.Close())
	}
	errs = append(errs, h.host.Close())
	h.inflight.Wait()
	h.bg.Wait()
	h.metrics.Peers.Set(0)
	h.metrics.PeerAgents.Reset()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("p2p: close: %w", err)
	}
	return nil
}

// parsePeers parses multiaddrs with /p2p/<id>, merging addresses of the same
// peer.
func parsePeers(addrs []string) ([]peer.AddrInfo, error) {
	var infos []peer.AddrInfo
	index := make(map[peer.ID]int)
	for _, s := range addrs {
		pi, err := peer.AddrInfoFromString(s)
		if err != nil {
			return nil, fmt.Errorf("p2p: peer address %q: %w", s, err)
		}
		if i, ok := index[pi.ID]; ok {
			infos[i].Addrs = append(infos[i].Addrs, pi.Addrs...)
			continue
		}
		index[pi.ID] = len(infos)
		infos = append(infos, *pi)
	}
	return infos, nil
}

// checkOpen fails once the host is closing.
func (h *Host) checkOpen() error {
	if h.isClosed() {
		return ErrClosed
	}
	return nil
}
