package testnet

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"strings"

	"github.com/zkbank/zkbank/genesis"
)

// With --netns every node of the testnet runs in its own Linux network
// namespace, as if on its own machine: a bridge on this host (zkb-TAG,
// address 10.77.S.1/24) and, per node, a namespace (zkb-TAG-i for
// validator i, zkb-TAG-fJ for full node J) joined to the bridge by a veth
// pair, with the address 10.77.S.(10+i) (validators) or 10.77.S.(100+J)
// (full nodes) on its eth0, and lo up. Every node listens on the same ports
// on its own address; this host reaches the APIs through the bridge. TAG is
// derived from the testnet directory, so a testnet that died without
// cleaning up is cleaned up by the next start on the same directory; S is
// the first /24 of 10.77.0.0/16 no interface of this host uses when the
// chain is created, and is read back from the genesis on resume.

// ErrNetnsPermission is returned when --netns is asked for without the
// privileges to create namespaces.
var ErrNetnsPermission = errors.New("--netns needs root or CAP_NET_ADMIN to create network namespaces: run as root or without --netns")

const (
	netnsPrefix     = "10.77"
	netnsValidator0 = 10  // validator i has host part 10+i
	netnsFull0      = 100 // full node j has host part 100+j
	maxFullNodes    = 16
)

// NetnsTag is the short name of a testnet directory's network objects: 6
// hex digits of the SHA-256 of its absolute path.
func NetnsTag(dir string) string {
	abs, err := filepath.Abs(dir)
	if err != nil {
		abs = dir
	}
	sum := sha256.Sum256([]byte(filepath.Clean(abs)))
	return hex.EncodeToString(sum[:3])
}

// netnsNode is one node's namespace.
type netnsNode struct {
	Name string // the testnet's name of the node: node-i or full-j
	NS   string // the namespace: zkb-TAG-i or zkb-TAG-fj
	Veth string // the host end of its veth pair, in the bridge
	Addr netip.Addr
}

// Network is a testnet's bridge and namespaces (see above). Its methods
// run iproute2's ip command.
type Network struct {
	Dir    string
	Tag    string
	Subnet int // S in 10.77.S.0/24

	ip    string
	nodes []netnsNode
}

// Bridge is the name of the host's bridge.
func (n *Network) Bridge() string { return "zkb-" + n.Tag }

// HostAddr is the bridge's address: this host as the nodes see it.
func (n *Network) HostAddr() netip.Addr { return subnetAddr(n.Subnet, 1) }

func subnetAddr(s, host int) netip.Addr {
	return netip.AddrFrom4([4]byte{10, 77, byte(s), byte(host)})
}

// ValidatorAddr is validator i's address.
func (n *Network) ValidatorAddr(i int) netip.Addr { return subnetAddr(n.Subnet, netnsValidator0+i) }

// FullNodeAddr is full node j's address.
func (n *Network) FullNodeAddr(j int) netip.Addr { return subnetAddr(n.Subnet, netnsFull0+j) }

func (n *Network) validatorNode(i int) netnsNode {
	return netnsNode{Name: fmt.Sprintf("node-%d", i), NS: fmt.Sprintf("zkb-%s-%d", n.Tag, i),
		Veth: fmt.Sprintf("zkb%sv%d", n.Tag, i), Addr: n.ValidatorAddr(i)}
}

func (n *Network) fullNode(j int) netnsNode {
	return netnsNode{Name: fullName(j), NS: fmt.Sprintf("zkb-%s-f%d", n.Tag, j),
		Veth: fmt.Sprintf("zkb%sf%d", n.Tag, j), Addr: n.FullNodeAddr(j)}
}

// node finds a node by its testnet name (node-i, full-j).
func (n *Network) node(name string) (netnsNode, error) {
	for _, nd := range n.nodes {
		if nd.Name == name {
			return nd, nil
		}
	}
	return netnsNode{}, fmt.Errorf("no node %q in the network namespaces of %s", name, n.Dir)
}

// Namespace is the network namespace of a node (node-i or full-j) of a
// network that is up.
func (n *Network) Namespace(name string) (string, error) {
	nd, err := n.node(name)
	return nd.NS, err
}

// ours reports whether a namespace or interface name belongs to this
// testnet directory.
func (n *Network) ours(name string) bool {
	return name == n.Bridge() || strings.HasPrefix(name, "zkb-"+n.Tag+"-") || strings.HasPrefix(name, "zkb"+n.Tag)
}

// netnsSubnet reads S from a genesis created with --netns (validator 0 at
// 10.77.S.10), and reports whether it was.
func netnsSubnet(g *genesis.Genesis) (int, bool) {
	if len(g.Validators) == 0 || len(g.Validators[0].P2PAddrs) == 0 {
		return 0, false
	}
	hp, ok := tcpFromMultiaddr(g.Validators[0].P2PAddrs[0])
	if !ok {
		return 0, false
	}
	i := strings.LastIndexByte(hp, ':')
	a, err := netip.ParseAddr(hp[:i])
	if err != nil || !a.Is4() {
		return 0, false
	}
	b := a.As4()
	if b[0] != 10 || b[1] != 77 || b[3] != netnsValidator0 {
		return 0, false
	}
	return int(b[2]), true
}

// checkNetnsMode refuses to resume a chain whose addresses need the other
// mode: its nodes listen on namespace addresses, or on this host's.
func checkNetnsMode(dir string, g *genesis.Genesis, netns bool) error {
	_, inNetns := netnsSubnet(g)
	switch {
	case inNetns && !netns:
		return fmt.Errorf("%s was created with --netns (its nodes listen on %s.x addresses): rerun with --netns, or with --reset", dir, netnsPrefix)
	case !inNetns && netns:
		return fmt.Errorf("%s was created without --netns (its nodes listen on this host's addresses): rerun without --netns, or with --reset", dir)
	}
	return nil
}

// hasNetAdmin reports whether a /proc/PID/status text shows CAP_NET_ADMIN
// (bit 12) among the effective capabilities.
func hasNetAdmin(status string) bool {
	for _, line := range strings.Split(status, "\n") {
		hexCaps, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		var caps uint64
		if _, err := fmt.Sscanf(strings.TrimSpace(hexCaps), "%x", &caps); err != nil {
			return false
		}
		return caps&(1<<12) != 0
	}
	return false
}

// openNetns prepares the network namespaces of cfg's testnet when
// cfg.Netns (nil otherwise) and gives the nodes of a new chain their
// addresses in it.
func openNetns(cfg *RunConfig) (*Network, error) {
	if !cfg.Netns {
		return nil, nil
	}
	l := Layout{Dir: cfg.Dir}
	var g *genesis.Genesis
	if !cfg.Reset && l.Resumable() {
		var err error
		if g, err = genesis.Load(l.Genesis()); err != nil {
			return nil, err
		}
	}
	nw, err := OpenNetwork(cfg.Dir, g)
	if err != nil {
		return nil, err
	}
	cfg.Ports.netns = nw
	return nw, nil
}

// up creates the namespaces of a network opened by openNetns (nothing
// without --netns).
func (n *Network) up(validators, fullNodes int) error {
	if n == nil {
		return nil
	}
	return n.Up(validators, fullNodes)
}

// down removes them, warning on w when something could not be removed.
func (n *Network) down(w io.Writer) {
	if n == nil {
		return
	}
	if err := n.Down(); err != nil {
		fmt.Fprintf(w, "warning: removing the network namespaces: %v\n", err)
	}
}

// startOptions runs each validator in its namespace (the zero options
// without --netns).
func (n *Network) startOptions() StartOptions {
	if n == nil {
		return StartOptions{}
	}
	return StartOptions{Command: func(i int, argv []string) ([]string, error) {
		return n.Command(fmt.Sprintf("node-%d", i), argv)
	}}
}

// resumeFlags are the flags the command that resumes cfg's chain needs
// besides --dir.
func resumeFlags(cfg RunConfig) string {
	s := ""
	if cfg.Netns {
		s += " --netns"
	}
	if cfg.FullNodes > 0 {
		s += fmt.Sprintf(" --full-nodes %d", cfg.FullNodes)
	}
	return s
}
