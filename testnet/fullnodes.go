package testnet

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/zkbank/zkbank/genesis"
)

// Full nodes (--full-nodes N) follow the chain without being validators:
// full node j has its home in DIR/full-j, created with `zkbank node init
// --genesis DIR/genesis.json --bootstrap <validator 0>`, and listens on
// P2P+16+j and API+16+j on 127.0.0.1, or with --netns on the validators'
// ports at 10.77.S.(100+j) in its own namespace. They start once the
// validators are ready and stop before them.

func fullName(j int) string { return fmt.Sprintf("full-%d", j) }

// FullHome is full node j's home.
func (l Layout) FullHome(j int) string { return filepath.Join(l.Dir, fullName(j)) }

// FullLog is full node j's log.
func (l Layout) FullLog(j int) string { return filepath.Join(l.FullHome(j), "node.log") }

// FullPIDFile holds full node j's process id while it runs.
func (l Layout) FullPIDFile(j int) string { return filepath.Join(l.FullHome(j), "node.pid") }

func (p Ports) fullP2PAddr(j int) string {
	if p.netns != nil {
		return fmt.Sprintf("/ip4/%s/tcp/%d", p.netns.FullNodeAddr(j), p.P2P)
	}
	return fmt.Sprintf("/ip4/127.0.0.1/tcp/%d", p.P2P+maxValidators+j)
}

func (p Ports) fullAPIURL(j int) string {
	if p.netns != nil {
		return fmt.Sprintf("http://%s:%d", p.netns.FullNodeAddr(j), p.API)
	}
	return fmt.Sprintf("http://127.0.0.1:%d", p.API+maxValidators+j)
}

// ErrNoFullNodes is returned for --full-nodes when the zkbank binary cannot
// run a full node (its `node init` has no --genesis).
var ErrNoFullNodes = errors.New("--full-nodes needs a zkbank whose 'node init' takes --genesis (full-node mode)")

// FullNodeSupport reports whether exe can run full nodes, from its `node
// init --help`.
func FullNodeSupport(exe string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, exe, "node", "init", "--help").CombinedOutput()
	switch {
	case bytes.Contains(out, []byte("--genesis")):
		return nil
	case err != nil:
		return fmt.Errorf("%w (%s node init --help: %v)", ErrNoFullNodes, exe, err)
	}
	return ErrNoFullNodes
}

// checkFullNodes refuses --full-nodes the binary cannot honour before
// anything starts.
func checkFullNodes(cfg RunConfig) error {
	if cfg.FullNodes <= 0 {
		return nil
	}
	if cfg.FullNodes > maxFullNodes {
		return fmt.Errorf("--full-nodes %d: want at most %d", cfg.FullNodes, maxFullNodes)
	}
	return FullNodeSupport(cfg.Exe)
}

// bootstrapAddr is validator 0's full multiaddr, which full nodes dial.
func bootstrapAddr(g *genesis.Genesis) (string, error) {
	if len(g.Validators) == 0 || len(g.Validators[0].P2PAddrs) == 0 {
		return "", errors.New("the genesis names no validator address to bootstrap full nodes from")
	}
	v := g.Validators[0]
	return strings.TrimSuffix(v.P2PAddrs[0], "/") + "/p2p/" + v.PeerID, nil
}

// initFullNode creates full node j's home unless it exists (a resumed
// testnet keeps its full nodes' keys and data).
func initFullNode(ctx context.Context, exe string, l Layout, p Ports, g *genesis.Genesis, j int) error {
	home := l.FullHome(j)
	if _, err := os.Stat(filepath.Join(home, "node.json")); err == nil {
		return nil
	}
	boot, err := bootstrapAddr(g)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(cctx, exe, "node", "init", "--home", home, "--genesis", l.Genesis(),
		"--bootstrap", boot, "--p2p", p.fullP2PAddr(j), "--api", p.fullAPIURL(j))
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s: %s node init: %v: %s", fullName(j), filepath.Base(exe), err, strings.TrimSpace(stderr.String()))
	}
	// The node reads HOME/genesis.json; write it if init did not.
	gpath := filepath.Join(home, "genesis.json")
	if _, err := os.Stat(gpath); errors.Is(err, fs.ErrNotExist) {
		if err := g.Save(gpath); err != nil {
			return fmt.Errorf("%s: %w", fullName(j), err)
		}
	}
	return nil
}

// checkFullPorts fails early when an address of a full node on this host is
// taken.
func checkFullPorts(p Ports, n int) error {
	for j := 0; j < n; j++ {
		var addrs []string
		if u, err := url.Parse(p.fullAPIURL(j)); err == nil {
			addrs = append(addrs, u.Host)
		}
		if hp, ok := tcpFromMultiaddr(p.fullP2PAddr(j)); ok {
			addrs = append(addrs, hp)
		}
		for _, a := range addrs {
			ln, err := net.Listen("tcp", a)
			if err != nil {
				return fmt.Errorf("%s: address %s is in use (is this testnet already running? stop it first)", fullName(j), a)
			}
			ln.Close()
		}
	}
	return nil
}

// StartFullNodes creates (the first time) and starts cfg.FullNodes full
// nodes bootstrapping from validator 0, as processes of the cluster (in
// their namespaces when nw is not nil). They stop with it, before the
// validators.
func StartFullNodes(ctx context.Context, cfg RunConfig, cl *Cluster, g *genesis.Genesis, nw *Network) ([]*Proc, error) {
	n := cfg.FullNodes
	if n <= 0 {
		return nil, nil
	}
	if err := checkFullNodes(cfg); err != nil {
		return nil, err
	}
	l := cl.Layout
	p := cfg.Ports
	if nw != nil {
		p.netns = nw
	} else if err := checkFullPorts(p, n); err != nil {
		return nil, err
	}
	var procs []*Proc
	for j := 0; j < n; j++ {
		if err := initFullNode(ctx, cfg.Exe, l, p, g, j); err != nil {
			return procs, err
		}
		argv := []string{cfg.Exe, "node", "--home", l.FullHome(j), "--" + ParentFDFlag, strconv.Itoa(lifelineFD)}
		if nw != nil {
			var err error
			if argv, err = nw.Command(fullName(j), argv); err != nil {
				return procs, err
			}
		}
		pr, err := cl.StartAux(argv[0], fullName(j), l.FullLog(j), argv[1:]...)
		if err != nil {
			return procs, err
		}
		pr.API = p.fullAPIURL(j)
		os.WriteFile(l.FullPIDFile(j), []byte(strconv.Itoa(pr.cmd.Process.Pid)+"\n"), 0o600)
		procs = append(procs, pr)
	}
	return procs, nil
}

// printFullNodes lists the full nodes in the summary.
// Those the committee took in (validator APIs in validators) are listed as
// validators instead.
func printFullNodes(w io.Writer, l Layout, p Ports, procs []*Proc, validators map[string]bool) {
	header := false
	for j, pr := range procs {
		if validators[pr.API] {
			continue
		}
		if !header {
			fmt.Fprintln(w, "\nfull nodes (following validator 0)")
			header = true
		}
		fmt.Fprintf(w, "  %-7s api %-24s p2p %-26s log %s\n", pr.Name, pr.API, p.fullP2PAddr(j), l.FullLog(j))
	}
}
