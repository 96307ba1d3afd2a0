package p2p

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults for a Config field left at its zero value.
const (
	// DefaultListenAddr keeps a node off every interface but loopback unless
	// the operator names one.
	DefaultListenAddr = "/ip4/127.0.0.1/tcp/0"
	// DefaultMaxMessageBytes is the read cap of a protocol without its own
	// ProtocolLimits: normal traffic carries 1-2 MiB of ciphertexts.
	DefaultMaxMessageBytes = 4 << 20
	// DefaultStreamTimeout bounds one request/response exchange, or the
	// writing or reading of one message.
	DefaultStreamTimeout = 30 * time.Second
	// DefaultMaxGossipBytes caps a published message; gossip carries ids and
	// headers only.
	DefaultMaxGossipBytes = 64 << 10
	// DefaultReconnectMin and DefaultReconnectMax bound the backoff between
	// attempts to reach a bootstrap peer.
	DefaultReconnectMin = 250 * time.Millisecond
	DefaultReconnectMax = 30 * time.Second
	// DefaultDiscoveryInterval is how often the DHT is asked for the chain's
	// other nodes.
	DefaultDiscoveryInterval = time.Minute
	// DefaultAgentCooldown is how long a peer with a foreign or incompatible
	// agent stays blocked: short, so two nodes reconnect soon after one of
	// them is upgraded, long enough that a refused peer costs a handshake a
	// minute, not a stream of them.
	DefaultAgentCooldown = time.Minute
)

// MaxFrameCeiling is the largest read cap any protocol may have. Key-ceremony
// frames are about 64 MiB; the resource manager's per-stream memory limit is
// sized from this number (see resources.go), so raising it means raising that.
const MaxFrameCeiling = 128 << 20

// maxGossipCeiling stays well under gossipsub's 1 MiB RPC limit, which also
// has to hold the envelope and control messages.
const maxGossipCeiling = 256 << 10

// Namespace is the prefix of every protocol id and gossip topic of zkbank.
const Namespace = "/zkbank/"

// mdnsServiceName is the mDNS service zkbank nodes announce on a LAN.
const mdnsServiceName = "zkbank"

// dhtPrefix keeps our DHT apart from the public IPFS one (/ipfs/kad/1.0.0).
const dhtPrefix = "/zkbank"

// Config describes one node's host. The zero value of each field has a
// documented default, except ChainID, which is required.
type Config struct {
	// ListenAddrs are multiaddrs to listen on; default DefaultListenAddr.
	ListenAddrs []string
	// Identity is the node's ed25519 key (see LoadOrCreateIdentity). Nil means
	// a fresh ephemeral key, which only tests and throwaway clients want.
	Identity crypto.PrivKey
	// ChainID namespaces gossip topics (/zkbank/<chain-id>/<name>) and the
	// DHT rendezvous, so two chains on one network never mix messages.
	ChainID string
	// Bootstrap are full multiaddrs with /p2p/<id>. The host keeps them
	// connected, redialing with exponential backoff whenever they drop.
	Bootstrap []string
	// EnableMDNS announces and finds zkbank nodes on the LAN.
	EnableMDNS bool
	// DHT runs a Kademlia DHT in server mode under the /zkbank prefix and
	// uses it to find the chain's other nodes.
	DHT bool
	// EnableTLS offers TLS 1.3 as a second security protocol after Noise.
	EnableTLS bool
	// EnableQUIC adds the QUIC transport; ListenAddrs must then name a
	// /udp/.../quic-v1 address for it to listen.
	EnableQUIC bool
	// Logger receives the package's own logs; the caller adds node=<id>.
	// Nil discards them.
	Logger *slog.Logger
	// Registerer receives this host's metrics and libp2p's own. Nil means a
	// private registry nobody scrapes; prometheus.DefaultRegisterer is refused
	// because several hosts share a process in tests and testnets.
	Registerer prometheus.Registerer
	// MaxMessageBytes is the read cap of protocols absent from Protocols;
	// default DefaultMaxMessageBytes, at most MaxFrameCeiling.
	MaxMessageBytes int
	// StreamTimeout is the timeout of protocols absent from Protocols;
	// default DefaultStreamTimeout.
	StreamTimeout time.Duration
	// Protocols overrides the cap and timeout of particular protocols, e.g.
	// /zkbank/ceremony/2 with a 64 MiB cap. Both ends must agree.
	Protocols map[protocol.ID]ProtocolLimits
	// MaxGossipBytes caps a gossip message, published or received; default
	// DefaultMaxGossipBytes, at most 256 KiB.
	MaxGossipBytes int
	// ReconnectMin and ReconnectMax bound the bootstrap redial backoff.
	ReconnectMin, ReconnectMax time.Duration
	// DiscoveryInterval is the period of DHT lookups; default
	// DefaultDiscoveryInterval.
	DiscoveryInterval time.Duration
	// UserAgent is announced in identify and must parse as an Agent
	// ("zkbank/<version> (protocol <n>; <role>)"); default DefaultUserAgent.
	// Its protocol number is the one this host requires of its peers.
	UserAgent string
	// AgentCooldown is how long a peer whose agent is refused stays blocked;
	// default DefaultAgentCooldown.
	AgentCooldown time.Duration
	// Allow, if set, decides whether a peer may send a frame on a protocol:
	// it is called when an inbound stream opens, before anything is read,
	// and on a message stream again for each further message, after its
	// 5-byte header and before its body. A non-nil error (a *Refusal to name
	// the reason and possibly block the peer) resets the stream unread. It
	// runs on the stream's goroutine and must not block.
	Allow func(from peer.ID, proto protocol.ID) error
	// Trusted, if set, names the peers that may open message streams
	// (Send): a message stream lives as long as the connection, so any
	// other peer's is refused at its first frame (they use requests).
	Trusted func(peer.ID) bool
	// Allowlist are multiaddrs (with /p2p/<id>) of peers whose connections
	// and streams may use the resource manager's allowlisted scope once
	// the general one is full (the validators): strangers exhausting the
	// general limits cannot starve them. Loopback is always allowlisted.
	Allowlist []string
}

// ProtocolLimits are the read cap and timeout of one protocol. They apply in
// both directions: to requests and messages a handler reads and to responses
// a requester reads.
type ProtocolLimits struct {
	// MaxFrameBytes is the largest payload accepted; a frame that claims more
	// resets the stream before anything is allocated.
	MaxFrameBytes int
	// Timeout bounds a whole request/response exchange (open, write, handler,
	// read), or writing one message, or reading the body of one message.
	Timeout time.Duration
	// MaxRequestBytes, if set, is the largest request or message this host
	// reads as the server (MaxFrameBytes still bounds responses). A
	// protocol whose requests are small (a height, a hash) must set it: a
	// frame header's declared length is reserved before its body arrives,
	// so a large cap lets a stranger reserve memory with 5 bytes.
	MaxRequestBytes int
}

// ErrConfig reports an unusable Config.
var ErrConfig = errors.New("p2p: invalid config")

// withDefaults returns a copy of c with defaults filled in, or an error
// wrapping ErrConfig.
func (c Config) withDefaults() (Config, error) {
	if c.ChainID == "" || strings.ContainsAny(c.ChainID, "/ \t\n") {
		return c, fmt.Errorf("%w: chain id %q must be non-empty without '/' or spaces", ErrConfig, c.ChainID)
	}
	if len(c.ListenAddrs) == 0 {
		c.ListenAddrs = []string{DefaultListenAddr}
	}
	if c.Identity != nil && c.Identity.Type() != crypto.Ed25519 {
		return c, fmt.Errorf("%w: identity key is %s, want Ed25519", ErrConfig, c.Identity.Type())
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Registerer == prometheus.DefaultRegisterer {
		return c, fmt.Errorf("%w: use a registry per node, not prometheus.DefaultRegisterer", ErrConfig)
	}
	if c.Registerer == nil {
		c.Registerer = prometheus.NewRegistry()
	}
	if c.MaxMessageBytes == 0 {
		c.MaxMessageBytes = DefaultMaxMessageBytes
	}
	if c.StreamTimeout == 0 {
		c.StreamTimeout = DefaultStreamTimeout
	}
	def := ProtocolLimits{MaxFrameBytes: c.MaxMessageBytes, Timeout: c.StreamTimeout}
	if err := def.validate(); err != nil {
		return c, fmt.Errorf("%w: default protocol limits: %w", ErrConfig, err)
	}
	protos := make(map[protocol.ID]ProtocolLimits, len(c.Protocols))
	for id, l := range c.Protocols {
		if err := checkProtocol(id); err != nil {
			return c, fmt.Errorf("%w: %w", ErrConfig, err)
		}
		if l.MaxFrameBytes == 0 {
			l.MaxFrameBytes = def.MaxFrameBytes
		}
		if l.Timeout == 0 {
			l.Timeout = def.Timeout
		}
		if err := l.validate(); err != nil {
			return c, fmt.Errorf("%w: protocol %s: %w", ErrConfig, id, err)
		}
		protos[id] = l
	}
	c.Protocols = protos
	if c.MaxGossipBytes == 0 {
		c.MaxGossipBytes = DefaultMaxGossipBytes
	}
	if c.MaxGossipBytes < 0 || c.MaxGossipBytes > maxGossipCeiling {
		return c, fmt.Errorf("%w: gossip cap %d outside (0, %d]", ErrConfig, c.MaxGossipBytes, maxGossipCeiling)
	}
	if c.ReconnectMin == 0 {
		c.ReconnectMin = DefaultReconnectMin
	}
	if c.ReconnectMax == 0 {
		c.ReconnectMax = DefaultReconnectMax
	}
	if c.ReconnectMin < 0 || c.ReconnectMax < c.ReconnectMin {
		return c, fmt.Errorf("%w: reconnect backoff [%s, %s]", ErrConfig, c.ReconnectMin, c.ReconnectMax)
	}
	if c.DiscoveryInterval <= 0 {
		c.DiscoveryInterval = DefaultDiscoveryInterval
	}
	if c.UserAgent == "" {
		c.UserAgent = DefaultUserAgent
	}
	if _, err := ParseAgent(c.UserAgent); err != nil {
		return c, fmt.Errorf("%w: user agent: %w", ErrConfig, err)
	}
	if c.AgentCooldown == 0 {
		c.AgentCooldown = DefaultAgentCooldown
	}
	if c.AgentCooldown < 0 {
		return c, fmt.Errorf("%w: agent cooldown %s is negative", ErrConfig, c.AgentCooldown)
	}
	return c, nil
}

func (l ProtocolLimits) validate() error {
	if l.MaxFrameBytes <= 0 || l.MaxFrameBytes > MaxFrameCeiling {
		return fmt.Errorf("frame cap %d outside (0, %d]", l.MaxFrameBytes, MaxFrameCeiling)
	}
	if l.Timeout <= 0 {
		return fmt.Errorf("timeout %s must be positive", l.Timeout)
	}
	return nil
}

// limitsFor returns the cap and timeout of proto.
func (c *Config) limitsFor(proto protocol.ID) ProtocolLimits {
	if l, ok := c.Protocols[proto]; ok {
		return l
	}
	return ProtocolLimits{MaxFrameBytes: c.MaxMessageBytes, Timeout: c.StreamTimeout}
}

// ErrNamespace reports a protocol id or topic name outside /zkbank/.
var ErrNamespace = errors.New("p2p: name outside the /zkbank/ namespace")

// ProtocolID returns /zkbank/<name>/<version>, e.g. ProtocolID("consensus", 1)
// is /zkbank/consensus/1.
func ProtocolID(name string, version int) protocol.ID {
	return protocol.ID(fmt.Sprintf("%s%s/%d", Namespace, name, version))
}

func checkProtocol(id protocol.ID) error {
	if !strings.HasPrefix(string(id), Namespace) || len(id) == len(Namespace) {
		return fmt.Errorf("%w: protocol %q", ErrNamespace, id)
	}
	return nil
}
