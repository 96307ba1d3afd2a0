package testnet

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/zkbank/zkbank/client"
	"github.com/zkbank/zkbank/genesis"
)

func TestNetnsTag_StablePerDirectoryAndDistinct(t *testing.T) {
	d := t.TempDir()
	a, b := NetnsTag(filepath.Join(d, "tn")), NetnsTag(filepath.Join(d, "tn", ".", ""))
	if a != b || len(a) != 6 {
		t.Fatalf("tag of the same directory: %q vs %q", a, b)
	}
	if c := NetnsTag(filepath.Join(d, "other")); c == a {
		t.Fatalf("two directories share tag %q", a)
	}
	n := &Network{Tag: a, Subnet: 3}
	// Linux interface names have at most 15 bytes.
	for _, name := range []string{n.Bridge(), n.validatorNode(maxValidators - 1).Veth, n.fullNode(maxFullNodes - 1).Veth} {
		if len(name) > 15 {
			t.Errorf("interface name %q is longer than 15 bytes", name)
		}
		if !n.ours(name) {
			t.Errorf("%q not recognized as this testnet's", name)
		}
	}
	if n.ours("zkb-" + NetnsTag(filepath.Join(d, "other")) + "-0") {
		t.Error("another directory's namespace taken for this one's")
	}
	if got := n.ValidatorAddr(2).String(); got != "10.77.3.12" {
		t.Errorf("validator 2 at %s, want 10.77.3.12", got)
	}
	if got := n.FullNodeAddr(1).String(); got != "10.77.3.101" {
		t.Errorf("full node 1 at %s, want 10.77.3.101", got)
	}
}

func TestHasNetAdmin(t *testing.T) {
	for status, want := range map[string]bool{
		"Name:\tx\nCapEff:\t000001fffeffffff\n": true,
		"CapEff:\t0000000000001000\n":           true, // CAP_NET_ADMIN alone
		"CapEff:\t0000000000000000\n":           false,
		"CapEff:\t0000000000200000\n":           false, // CAP_SYS_ADMIN alone
		"CapPrm:\t000001fffeffffff\n":           false, // permitted is not effective
		"CapEff:\tzz\n":                         false,
	} {
		if got := hasNetAdmin(status); got != want {
			t.Errorf("hasNetAdmin(%q) = %v, want %v", status, got, want)
		}
	}
}

func TestPorts_NetnsAddresses(t *testing.T) {
	p := Ports{P2P: 27000, API: 27100}
	if got := p.p2pAddr(2); got != "/ip4/127.0.0.1/tcp/27002" {
		t.Errorf("host p2p of validator 2: %s", got)
	}
	if got := p.fullAPIURL(1); got != "http://127.0.0.1:27117" {
		t.Errorf("host API of full node 1: %s", got)
	}
	p.netns = &Network{Subnet: 5}
	if got := p.p2pAddr(2); got != "/ip4/10.77.5.12/tcp/27000" {
		t.Errorf("netns p2p of validator 2: %s", got)
	}
	if got := p.apiURL(2); got != "http://10.77.5.12:27100" {
		t.Errorf("netns API of validator 2: %s", got)
	}
	if got := p.fullP2PAddr(0); got != "/ip4/10.77.5.100/tcp/27000" {
		t.Errorf("netns p2p of full node 0: %s", got)
	}
}

func TestCheckNetnsMode(t *testing.T) {
	g := &genesis.Genesis{Validators: []genesis.Validator{{P2PAddrs: []string{"/ip4/10.77.9.10/tcp/27000"}}}}
	if s, ok := netnsSubnet(g); !ok || s != 9 {
		t.Fatalf("netnsSubnet = %d, %v; want 9, true", s, ok)
	}
	if err := checkNetnsMode("d", g, true); err != nil {
		t.Fatal(err)
	}
	if err := checkNetnsMode("d", g, false); err == nil || !strings.Contains(err.Error(), "created with --netns") {
		t.Fatalf("netns chain resumed without --netns: %v", err)
	}
	g.Validators[0].P2PAddrs = []string{"/ip4/127.0.0.1/tcp/27000"}
	if err := checkNetnsMode("d", g, true); err == nil || !strings.Contains(err.Error(), "created without --netns") {
		t.Fatalf("host chain resumed with --netns: %v", err)
	}
	if err := checkNetnsMode("d", g, false); err != nil {
		t.Fatal(err)
	}
}

// needNetns skips a test that creates network namespaces where it cannot.
func needNetns(t *testing.T) {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("network namespaces need Linux")
	}
	if os.Geteuid() != 0 {
		t.Skip("creating network namespaces needs root (run this test as root to cover --netns)")
	}
	if _, err := ipCommand(); err != nil {
		t.Skipf("netns unavailable: %v", err)
	}
	probe := fmt.Sprintf("zkb-probe-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", probe).CombinedOutput(); err != nil {
		t.Skipf("netns unavailable here: ip netns add: %v: %s", err, out)
	}
	exec.Command("ip", "netns", "del", probe).Run()
}

// leftovers lists the namespaces and host interfaces of dir's testnet.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	ip, err := ipCommand()
	if err != nil {
		t.Fatal(err)
	}
	n := &Network{Dir: dir, Tag: NetnsTag(dir), ip: ip}
	ns, err := n.namespaces()
	if err != nil {
		t.Fatal(err)
	}
	links, err := n.links()
	if err != nil {
		t.Fatal(err)
	}
	return append(ns, links...)
}

// sameNetns reports whether process pid runs in the named namespace.
func sameNetns(t *testing.T, pid int, ns string) bool {
	t.Helper()
	var a, b syscall.Stat_t
	if err := syscall.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &a); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Stat(filepath.Join("/run/netns", ns), &b); err != nil {
		t.Fatal(err)
	}
	return a.Ino == b.Ino && a.Dev == b.Dev
}

func readPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("pid file %s: %v", path, err)
	}
	return pid
}

// statusVia reads a node's status over hc.
func statusVia(ctx context.Context, hc *http.Client, apiURL string) (uint64, error) {
	s, err := client.New(apiURL, client.WithHTTPClient(hc), client.WithTimeout(3*time.Second)).Status(ctx)
	if err != nil {
		return 0, err
	}
	return s.Height, nil
}

// inside is an HTTP client whose connections start in a node's namespace.
func inside(t *testing.T, nw *Network, name string) *http.Client {
	t.Helper()
	dial, err := nw.DialContext(name)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Client{Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}, Timeout: 5 * time.Second}
}

// The whole --netns life cycle with fake validators (cheap): each runs in
// its own namespace at its own address, the host reaches its API through
// the bridge, a partition cuts it off until healed, everything is removed at
// the stop, and leftovers of a crashed run are removed by the next start.
func TestNetns_RunPlacesEachValidatorInItsNamespaceAndCleansUp(t *testing.T) {
	needNetns(t)
	dir := filepath.Join(t.TempDir(), "tn")
	cfg := runConfig(t, dir, 3)
	cfg.Netns = true
	out, errb := &syncBuf{}, &syncBuf{}
	cfg.Out, cfg.Err = out, errb
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Run(ctx, cfg) }()
	for !strings.Contains(errb.String(), "height ") {
		select {
		case err := <-done:
			t.Fatalf("testnet ended early: %v\n%s", err, errb.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	g, err := genesis.Load(Layout{Dir: dir}.Genesis())
	if err != nil {
		t.Fatal(err)
	}
	s, ok := netnsSubnet(g)
	if !ok {
		t.Fatalf("genesis addresses are not namespace addresses: %v", g.Validators[0].P2PAddrs)
	}
	nw, err := AttachNetwork(dir)
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range g.Validators {
		want := fmt.Sprintf("/ip4/10.77.%d.%d/tcp/%d", s, 10+i, cfg.Ports.P2P)
		if len(v.P2PAddrs) != 1 || v.P2PAddrs[0] != want {
			t.Errorf("%s p2p %v, want %s", v.Name, v.P2PAddrs, want)
		}
		if want := fmt.Sprintf("http://10.77.%d.%d:%d", s, 10+i, cfg.Ports.API); v.API != want {
			t.Errorf("%s API %s, want %s", v.Name, v.API, want)
		}
		ns, err := nw.Namespace(v.Name)
		if err != nil {
			t.Fatal(err)
		}
		if pid := readPID(t, Layout{Dir: dir}.PIDFile(i)); !sameNetns(t, pid, ns) {
			t.Errorf("%s (pid %d) does not run in namespace %s", v.Name, pid, ns)
		}
		mustContain(t, "summary", out.String(), v.API)
	}

	// A partition cuts node-1 off from this host; from inside its namespace
	// its API still answers; healing restores the host's route.
	hostClient := &http.Client{Timeout: 3 * time.Second}
	if _, err := statusVia(ctx, hostClient, g.Validators[1].API); err != nil {
		t.Fatalf("node-1 unreachable before the partition: %v", err)
	}
	if err := nw.Partition("node-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := statusVia(ctx, hostClient, g.Validators[1].API); err == nil {
		t.Fatal("node-1 answered this host while partitioned")
	}
	if _, err := statusVia(ctx, inside(t, nw, "node-1"), g.Validators[1].API); err != nil {
		t.Fatalf("node-1 not reachable from inside its namespace: %v", err)
	}
	if _, err := statusVia(ctx, hostClient, g.Validators[0].API); err != nil {
		t.Fatalf("node-0 cut off by node-1's partition: %v", err)
	}
	if err := nw.Heal("node-1"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node-1 reachable after healing", 20*time.Second, func() bool {
		_, err := statusVia(ctx, hostClient, g.Validators[1].API)
		return err == nil
	})

	cancel()
	if err := <-done; err != nil {
		t.Fatalf("stop: %v\n%s", err, errb.String())
	}
	if l := leftovers(t, dir); len(l) > 0 {
		t.Fatalf("left behind after the stop: %v", l)
	}

	// A crash leaves the namespaces up; the next start on the directory
	// removes them and resumes the chain on the same addresses.
	crashed, err := OpenNetwork(dir, g)
	if err != nil {
		t.Fatal(err)
	}
	if err := crashed.Up(3, 0); err != nil {
		t.Fatal(err)
	}
	if len(leftovers(t, dir)) == 0 {
		t.Fatal("the simulated crash left nothing to clean up")
	}
	sout, serr, err := runUntil(t, cfg)
	if err != nil {
		t.Fatalf("restart after a crash: %v\n%s", err, serr)
	}
	mustContain(t, "resumed", serr, "resuming chain")
	mustContain(t, "resumed summary", sout, g.Validators[0].API)
	if l := leftovers(t, dir); len(l) > 0 {
		t.Fatalf("left behind after the second stop: %v", l)
	}

	// The chain's addresses need namespaces: resuming without --netns is one
	// clear error, not validators failing to bind.
	cfg.Netns = false
	if _, _, err := runUntil(t, cfg); err == nil || !strings.Contains(err.Error(), "created with --netns") {
		t.Fatalf("resume without --netns: %v", err)
	}
}

// Without root or CAP_NET_ADMIN, --netns is one clear error before anything
// is created. Run as root, the test drops to an unprivileged user in a
// child process.
func TestNetns_WithoutPrivilegesIsOneClearError(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("network namespaces need Linux")
	}
	if os.Getenv("ZKBANK_NETNS_UNPRIVILEGED") == "1" {
		err := Run(context.Background(), RunConfig{Dir: filepath.Join(os.TempDir(), "zkb-unprivileged-never-created"), Validators: 2, Accounts: 2, Netns: true, Exe: "/nonexistent"})
		fmt.Printf("RUN-ERROR: %v\n", err)
		return
	}
	if os.Geteuid() != 0 {
		// Already unprivileged: check directly, unless this user has the
		// capability anyway.
		status, _ := os.ReadFile("/proc/self/status")
		if hasNetAdmin(string(status)) {
			t.Skip("this unprivileged user has CAP_NET_ADMIN")
		}
		err := Run(context.Background(), RunConfig{Dir: filepath.Join(t.TempDir(), "tn"), Validators: 2, Accounts: 2, Netns: true, Exe: "/nonexistent"})
		if !errors.Is(err, ErrNetnsPermission) {
			t.Fatalf("unprivileged --netns: %v", err)
		}
		return
	}
	// A copy of this test binary that user nobody can run.
	bin := filepath.Join(t.TempDir(), "testnet.test")
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	dst.Close()
	for d := filepath.Dir(bin); d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755) // t.TempDir's directories are 0700
	}
	cmd := exec.Command(bin, "-test.run", "^TestNetns_WithoutPrivilegesIsOneClearError$", "-test.v")
	cmd.Env = append(os.Environ(), "ZKBANK_NETNS_UNPRIVILEGED=1")
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("unprivileged child: %v\n%s", err, out)
	}
	want := "RUN-ERROR: " + ErrNetnsPermission.Error()
	if !strings.Contains(string(out), want+"\n") {
		t.Fatalf("unprivileged --netns printed\n%s\nwant the line %q", out, want)
	}
}

// tcpPeers lists the remote addresses of the established TCP connections
// in process pid's network namespace that have port at either end.
func tcpPeers(t *testing.T, pid, port int) []netip.AddrPort {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/tcp", pid))
	if err != nil {
		t.Fatal(err)
	}
	parse := func(s string) netip.AddrPort {
		host, portHex, _ := strings.Cut(s, ":")
		raw, err := hex.DecodeString(host)
		if err != nil || len(raw) != 4 {
			t.Fatalf("/proc/%d/net/tcp address %q", pid, s)
		}
		// The kernel prints the address's bytes (network order) as one
		// 32-bit number in host order.
		var a [4]byte
		binary.NativeEndian.PutUint32(a[:], binary.BigEndian.Uint32(raw))
		p, err := strconv.ParseUint(portHex, 16, 16)
		if err != nil {
			t.Fatalf("/proc/%d/net/tcp port %q", pid, s)
		}
		return netip.AddrPortFrom(netip.AddrFrom4(a), uint16(p))
	}
	var peers []netip.AddrPort
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 4 || f[3] != "01" { // 01: ESTABLISHED
			continue
		}
		local, remote := parse(f[1]), parse(f[2])
		if int(local.Port()) == port || int(remote.Port()) == port {
			peers = append(peers, remote)
		}
	}
	return peers
}

func TestTCPPeers_ParsesTheKernelTable(t *testing.T) {
	// This process's own table: a loopback connection shows up with the
	// right address and port.
	srv := &http.Server{Handler: http.NotFoundHandler()}
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	port := ln.Addr().(*net.TCPAddr).Port
	resp, err := (&http.Client{Transport: &http.Transport{}}).Get(fmt.Sprintf("http://127.0.0.1:%d/", port))
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body) // a drained body keeps the connection open
	resp.Body.Close()
	peers := tcpPeers(t, os.Getpid(), port)
	found := false
	for _, p := range peers {
		if p.Addr() == netip.MustParseAddr("127.0.0.1") {
			found = true
		}
	}
	if !found {
		t.Fatalf("connection to 127.0.0.1:%d not in /proc/self/net/tcp: %v", port, peers)
	}
}
