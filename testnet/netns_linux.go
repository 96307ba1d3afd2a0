package testnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/zkbank/zkbank/genesis"
	"golang.org/x/sys/unix"
)

// ipCommand finds iproute2's ip: on PATH, or where distributions put it
// (PATH often lacks /usr/sbin outside a root login shell).
func ipCommand() (string, error) {
	if p, err := exec.LookPath("ip"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"} {
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", errors.New("--netns needs iproute2's ip command (package iproute2), found neither on PATH nor in /usr/sbin or /sbin")
}

// OpenNetwork prepares the network of the testnet in dir for a start: it
// checks the privileges, removes whatever a previous run on dir left behind
// (a crash, a kill -9) and picks the subnet: g's (a chain being resumed,
// created with --netns), or the first free 10.77.S.0/24 when g is nil (a
// new chain). Up then creates the bridge and the namespaces.
func OpenNetwork(dir string, g *genesis.Genesis) (*Network, error) {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil, fmt.Errorf("--netns: reading this process's capabilities: %w", err)
	}
	if os.Geteuid() != 0 && !hasNetAdmin(string(status)) {
		return nil, ErrNetnsPermission
	}
	ip, err := ipCommand()
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		return nil, fmt.Errorf("--netns: this kernel has no network namespaces (/proc/self/ns/net: %w)", err)
	}
	n := &Network{Dir: dir, Tag: NetnsTag(dir), ip: ip}
	if err := n.Down(); err != nil {
		return nil, fmt.Errorf("removing the network namespaces a previous run on %s left: %w", dir, err)
	}
	if g != nil {
		s, ok := netnsSubnet(g)
		if !ok {
			return nil, checkNetnsMode(dir, g, true)
		}
		n.Subnet = s
		if owner, used := n.subnetUsers()[s]; used {
			return nil, fmt.Errorf("the chain in %s uses %s.%d.0/24, which interface %s of this host already has (another testnet with --netns?): stop it first", dir, netnsPrefix, s, owner)
		}
		return n, nil
	}
	used := n.subnetUsers()
	for s := 0; s < 256; s++ {
		if _, taken := used[s]; !taken {
			n.Subnet = s
			return n, nil
		}
	}
	return nil, fmt.Errorf("--netns: every /24 of %s.0.0/16 is in use on this host", netnsPrefix)
}

// AttachNetwork returns the network of a testnet running with --netns in
// dir (started by this or another process), to partition and heal its
// nodes. It creates nothing.
func AttachNetwork(dir string) (*Network, error) {
	l := Layout{Dir: dir}
	g, err := genesis.Load(l.Genesis())
	if err != nil {
		return nil, err
	}
	s, ok := netnsSubnet(g)
	if !ok {
		return nil, checkNetnsMode(dir, g, true)
	}
	ip, err := ipCommand()
	if err != nil {
		return nil, err
	}
	n := &Network{Dir: dir, Tag: NetnsTag(dir), Subnet: s, ip: ip}
	existing := map[string]bool{}
	names, err := n.namespaces()
	if err != nil {
		return nil, err
	}
	for _, ns := range names {
		existing[ns] = true
	}
	for i := range g.Validators {
		nd := n.validatorNode(i)
		if !existing[nd.NS] {
			return nil, fmt.Errorf("namespace %s of %s does not exist: is the testnet in %s running with --netns?", nd.NS, nd.Name, dir)
		}
		n.nodes = append(n.nodes, nd)
	}
	for j := 0; j < maxFullNodes; j++ {
		if nd := n.fullNode(j); existing[nd.NS] {
			n.nodes = append(n.nodes, nd)
		}
	}
	return n, nil
}

// run runs one ip command.
func (n *Network) run(args ...string) error {
	var stderr bytes.Buffer
	cmd := exec.Command(n.ip, args...)
	cmd.Stderr = &stderr
	if out, err := cmd.Output(); err != nil {
		msg := strings.TrimSpace(stderr.String() + string(out))
		if strings.Contains(msg, "Operation not permitted") || strings.Contains(msg, "Permission denied") {
			return fmt.Errorf("ip %s: %s: %w", strings.Join(args, " "), msg, ErrNetnsPermission)
		}
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, msg)
	}
	return nil
}

// output runs one ip command and returns its standard output.
func (n *Network) output(args ...string) (string, error) {
	var stderr bytes.Buffer
	cmd := exec.Command(n.ip, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// namespaces lists this testnet's named network namespaces.
func (n *Network) namespaces() ([]string, error) {
	out, err := n.output("netns", "list")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		if f := strings.Fields(line); len(f) > 0 && n.ours(f[0]) {
			names = append(names, f[0])
		}
	}
	return names, nil
}

// links lists this testnet's interfaces on the host (the bridge, the host
// ends of the veth pairs).
func (n *Network) links() ([]string, error) {
	out, err := n.output("-o", "link", "show")
	if err != nil {
		return nil, err
	}
	var names []string
	for _, line := range strings.Split(out, "\n") {
		// "11: zkb1a2b3cv0@if2: <BROADCAST,..."
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		name := strings.TrimSuffix(f[1], ":")
		if at := strings.IndexByte(name, '@'); at >= 0 {
			name = name[:at]
		}
		if n.ours(name) {
			names = append(names, name)
		}
	}
	return names, nil
}

// subnetUsers maps each S of 10.77.S.0/24 that an interface of this host
// has an address in to that interface.
func (n *Network) subnetUsers() map[int]string {
	used := map[int]string{}
	out, err := n.output("-4", "-o", "addr", "show")
	if err != nil {
		return used
	}
	for _, line := range strings.Split(out, "\n") {
		// "4: eth0    inet 10.77.0.1/24 brd ... scope global eth0"
		f := strings.Fields(line)
		for k := 0; k+1 < len(f); k++ {
			if f[k] != "inet" {
				continue
			}
			var a, b, c, d int
			if _, err := fmt.Sscanf(f[k+1], "%d.%d.%d.%d", &a, &b, &c, &d); err == nil && a == 10 && b == 77 {
				used[c] = strings.TrimSuffix(f[1], ":")
			}
		}
	}
	return used
}

// Up creates the bridge and one namespace per node: validators 0..n-1 and
// full nodes 0..fullNodes-1. On failure it removes what it made.
func (n *Network) Up(validators, fullNodes int) error {
	if fullNodes > maxFullNodes {
		return fmt.Errorf("--full-nodes %d: want at most %d", fullNodes, maxFullNodes)
	}
	br := n.Bridge()
	// nf_call_iptables 0: bridged traffic between the nodes skips the
	// host's iptables (a FORWARD policy of DROP, as Docker sets, would
	// otherwise cut the nodes off each other).
	steps := [][]string{
		{"link", "add", br, "type", "bridge", "nf_call_iptables", "0", "nf_call_ip6tables", "0", "nf_call_arptables", "0"},
		{"addr", "add", n.HostAddr().String() + "/24", "dev", br},
		{"link", "set", br, "up"},
	}
	n.nodes = nil
	for i := 0; i < validators; i++ {
		n.nodes = append(n.nodes, n.validatorNode(i))
	}
	for j := 0; j < fullNodes; j++ {
		n.nodes = append(n.nodes, n.fullNode(j))
	}
	for _, nd := range n.nodes {
		steps = append(steps,
			[]string{"netns", "add", nd.NS},
			[]string{"link", "add", nd.Veth, "type", "veth", "peer", "name", "eth0", "netns", nd.NS},
			[]string{"link", "set", nd.Veth, "master", br, "up"},
			[]string{"-n", nd.NS, "addr", "add", nd.Addr.String() + "/24", "dev", "eth0"},
			[]string{"-n", nd.NS, "link", "set", "eth0", "up"},
			[]string{"-n", nd.NS, "link", "set", "lo", "up"},
			[]string{"-n", nd.NS, "route", "add", "default", "via", n.HostAddr().String()},
		)
	}
	for _, s := range steps {
		if err := n.run(s...); err != nil {
			n.Down()
			return fmt.Errorf("creating the network namespaces of %s: %w", n.Dir, err)
		}
	}
	return nil
}

// Down removes the testnet's namespaces, veth pairs and bridge; what does
// not exist is skipped. Processes still inside a namespace keep it alive
// (without a name) until they exit, but it is cut off: its veth pair goes
// with the host end.
func (n *Network) Down() error {
	var errs []error
	links, err := n.links()
	if err != nil {
		errs = append(errs, err)
	}
	for _, l := range links {
		if err := n.run("link", "del", l); err != nil {
			errs = append(errs, err)
		}
	}
	names, err := n.namespaces()
	if err != nil {
		errs = append(errs, err)
	}
	for _, ns := range names {
		if err := n.run("netns", "del", ns); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Command returns argv run inside node name's namespace (ip netns exec
// execs in place: the process keeps its pid, standard input and
// parent-death signal).
func (n *Network) Command(name string, argv []string) ([]string, error) {
	nd, err := n.node(name)
	if err != nil {
		return nil, err
	}
	return append([]string{n.ip, "netns", "exec", nd.NS}, argv...), nil
}

// Partition cuts node name off the network, as if its cable were pulled:
// the host end of its veth pair goes down, so neither the other nodes nor
// this host reach it (DialContext still does, from inside).
func (n *Network) Partition(name string) error {
	nd, err := n.node(name)
	if err != nil {
		return err
	}
	return n.run("link", "set", nd.Veth, "down")
}

// Heal reconnects a node cut off by Partition.
func (n *Network) Heal(name string) error {
	nd, err := n.node(name)
	if err != nil {
		return err
	}
	return n.run("link", "set", nd.Veth, "up")
}

// DialContext returns a dialer whose connections are made from inside node
// name's namespace (an http.Transport's DialContext): a partitioned node's
// API stays reachable there.
func (n *Network) DialContext(name string) (func(ctx context.Context, network, addr string) (net.Conn, error), error) {
	nd, err := n.node(name)
	if err != nil {
		return nil, err
	}
	path := filepath.Join("/run/netns", nd.NS)
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type result struct {
			c   net.Conn
			err error
		}
		done := make(chan result, 1)
		go func() {
			// A socket belongs to the namespace of the thread that made it:
			// switch this thread, dial, switch back. A thread that cannot
			// switch back stays locked and ends with this goroutine.
			runtime.LockOSThread()
			c, restored, err := dialInNamespace(ctx, path, network, addr)
			if restored {
				runtime.UnlockOSThread()
			}
			done <- result{c, err}
		}()
		r := <-done
		return r.c, r.err
	}, nil
}

func dialInNamespace(ctx context.Context, path, network, addr string) (net.Conn, bool, error) {
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		return nil, true, fmt.Errorf("dialing %s in %s: %w", addr, path, err)
	}
	defer self.Close()
	target, err := os.Open(path)
	if err != nil {
		return nil, true, fmt.Errorf("dialing %s in %s: %w", addr, path, err)
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		return nil, true, fmt.Errorf("dialing %s: entering %s: %w", addr, path, err)
	}
	d := net.Dialer{Timeout: 10 * time.Second}
	c, err := d.DialContext(ctx, network, addr)
	restored := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil
	return c, restored, err
}
