package testnet

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/client"
	"github.com/zkbank/zkbank/genesis"
)

// Proc is one running validator process.
type Proc struct {
	Index int
	Name  string
	API   string
	Log   string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, valid after done
}

// Exited reports whether the process has ended, and how.
func (p *Proc) Exited() (bool, error) {
	select {
	case <-p.done:
		return true, p.err
	default:
		return false, nil
	}
}

// Cluster is the set of validator processes of a testnet.
type Cluster struct {
	Layout Layout
	Procs  []*Proc
	// Aux are the testnet's other processes (the demo lending bot),
	// stopped before the validators.
	Aux []*Proc

	lifeline *os.File      // write end of the validators' lifeline pipe, held until Stop
	lifeRead *os.File      // its read end, for processes started later (StartAux)
	thread   *lockedThread // the thread that forks the validators, kept until Stop
}

// StartOptions change how Start runs the validators; the zero value runs
// them on this host.
type StartOptions struct {
	// Command, if set, returns the command line that runs validator i's
	// argv (the binary first), e.g. inside its network namespace
	// (netns.go). The validators' addresses are then not this host's, and
	// Start does not check them.
	Command func(i int, argv []string) ([]string, error)
}

// Start launches `exe node --home DIR` for every validator of g, logging to
// DIR/node.log (appended, so a resumed chain keeps its history). The
// validators stop by themselves if this process dies without calling Stop.
func Start(exe string, l Layout, g *genesis.Genesis, opts ...StartOptions) (*Cluster, error) {
	var o StartOptions
	for _, x := range opts {
		o = x
	}
	if o.Command == nil {
		if err := checkPorts(g); err != nil {
			return nil, err
		}
	}
	r, w, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("lifeline pipe: %w", err)
	}
	// Each child holds its own copy of the read end; this one is kept for
	// StartAux and closed by Stop.
	c := &Cluster{Layout: l, lifeline: w, lifeRead: r, thread: startLockedThread()}
	for i, v := range g.Validators {
		logf, err := os.OpenFile(l.Log(i), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
		if err != nil {
			c.Stop(0)
			return nil, err
		}
		fmt.Fprintf(logf, "\n=== zkbank testnet: starting %s at %s ===\n", v.Name, time.Now().Format(time.RFC3339))
		argv := []string{exe, "node", "--home", l.Home(i), "--" + ParentFDFlag, strconv.Itoa(lifelineFD)}
		if o.Command != nil {
			if argv, err = o.Command(i, argv); err != nil {
				logf.Close()
				c.Stop(0)
				return nil, fmt.Errorf("starting %s: %w", v.Name, err)
			}
		}
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Stdin, cmd.Stdout, cmd.Stderr = r, logf, logf
		cmd.SysProcAttr = sysProcAttr()
		err = c.thread.do(cmd.Start)
		logf.Close() // the child holds its own descriptor
		if err != nil {
			c.Stop(0)
			return nil, fmt.Errorf("starting %s: %w", v.Name, err)
		}
		os.WriteFile(l.PIDFile(i), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o600)
		p := &Proc{Index: i, Name: v.Name, API: v.API, Log: l.Log(i), cmd: cmd, done: make(chan struct{})}
		go func() {
			p.err = cmd.Wait()
			close(p.done)
		}()
		c.Procs = append(c.Procs, p)
	}
	return c, nil
}

// StartAux starts another process of the testnet (`exe args...`, its
// output appended to logPath) that must not outlive it: it gets the same
// lifeline as the validators (its standard input; pass
// --exit-with-parent-fd 0) and, on Linux, SIGTERM when the testnet dies.
// Stop stops it first.
func (c *Cluster) StartAux(exe, name, logPath string, args ...string) (*Proc, error) {
	if c.lifeRead == nil {
		return nil, errors.New("testnet stopped")
	}
	logf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(logf, "\n=== zkbank testnet: starting %s at %s ===\n", name, time.Now().Format(time.RFC3339))
	cmd := exec.Command(exe, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = c.lifeRead, logf, logf
	cmd.SysProcAttr = sysProcAttr()
	err = c.thread.do(cmd.Start)
	logf.Close()
	if err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &Proc{Index: -1, Name: name, Log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	c.Aux = append(c.Aux, p)
	return p, nil
}

// checkPorts fails early, with the port named, when something already listens
// where a validator must: most often a testnet still running elsewhere.
func checkPorts(g *genesis.Genesis) error {
	for _, v := range g.Validators {
		addrs := []string{}
		if u, err := url.Parse(v.API); err == nil && u.Host != "" {
			addrs = append(addrs, u.Host)
		}
		for _, ma := range v.P2PAddrs {
			if hp, ok := tcpFromMultiaddr(ma); ok {
				addrs = append(addrs, hp)
			}
		}
		for _, a := range addrs {
			l, err := net.Listen("tcp", a)
			if err != nil {
				return fmt.Errorf("%s: address %s is in use (is this testnet already running? stop it first)", v.Name, a)
			}
			l.Close()
		}
	}
	return nil
}

// tcpFromMultiaddr reads host:port from "/ip4/H/tcp/P" (or ip6).
func tcpFromMultiaddr(ma string) (string, bool) {
	f := strings.Split(strings.Trim(ma, "/"), "/")
	if len(f) >= 4 && (f[0] == "ip4" || f[0] == "ip6") && f[2] == "tcp" {
		return net.JoinHostPort(f[1], f[3]), true
	}
	return "", false
}

// NodeState is one validator's state while the testnet waits for it.
type NodeState struct {
	Name   string
	Ready  bool
	Height uint64
	Err    error // unreachable, or an API error
}

func (s NodeState) String() string {
	switch {
	case s.Ready:
		return s.Name + ": ready"
	case s.Err != nil && errors.Is(s.Err, client.ErrUnreachable):
		return s.Name + ": starting"
	case s.Err != nil:
		return s.Name + ": " + s.Err.Error()
	}
	return fmt.Sprintf("%s: not ready", s.Name)
}

// WaitReady polls every validator's status until all are ready, a process
// exits, ctx ends or timeout passes. report is called after each poll.
func (c *Cluster) WaitReady(ctx context.Context, timeout time.Duration, report func([]NodeState)) error {
	deadline := time.Now().Add(timeout)
	clients := make([]*client.Client, len(c.Procs))
	for i, p := range c.Procs {
		clients[i] = client.New(p.API, client.WithTimeout(2*time.Second))
	}
	for {
		for _, p := range c.Procs {
			if done, err := p.Exited(); done {
				return fmt.Errorf("%s exited during startup (%v); see %s: %s", p.Name, exitText(err), p.Log, lastLine(p.Log))
			}
		}
		states := pollStates(ctx, c.Procs, clients)
		if report != nil {
			report(states)
		}
		ready := 0
		for _, s := range states {
			if s.Ready {
				ready++
			}
		}
		if ready == len(states) {
			return nil
		}
		if time.Now().After(deadline) {
			var waiting []string
			for _, s := range states {
				if !s.Ready {
					waiting = append(waiting, s.String())
				}
			}
			return fmt.Errorf("validators not ready after %s (%s); see the logs: %s", timeout, strings.Join(waiting, ", "), filepath.Join(c.Layout.Dir, "node-*", "node.log"))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func pollStates(ctx context.Context, procs []*Proc, clients []*client.Client) []NodeState {
	states := make([]NodeState, len(procs))
	var wg sync.WaitGroup
	for i, p := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := NodeState{Name: p.Name}
			s, err := clients[i].Status(ctx)
			if err != nil {
				st.Err = err
			} else {
				st.Ready, st.Height = s.Ready, s.Height
			}
			states[i] = st
		}()
	}
	wg.Wait()
	return states
}

func exitText(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// lastLine returns the last non-empty line of a log, for error messages.
func lastLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return "(no log)"
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			last = t
		}
	}
	if len(last) > 240 {
		last = last[:240] + "…"
	}
	if last == "" {
		return "(empty log)"
	}
	return last
}

// Stop sends SIGTERM to every running validator, waits up to grace for them
// to exit, then kills the rest. It returns the names of killed processes.
func (c *Cluster) Stop(grace time.Duration) []string {
	var killed []string
	for _, p := range c.Aux {
		if done, _ := p.Exited(); !done {
			terminate(p.cmd.Process)
		}
		select {
		case <-p.done:
		case <-time.After(grace):
			p.cmd.Process.Kill()
			<-p.done
			killed = append(killed, p.Name)
		}
	}
	for _, p := range c.Procs {
		if done, _ := p.Exited(); !done {
			terminate(p.cmd.Process)
		}
	}
	timer := time.NewTimer(grace)
	defer timer.Stop()
	for _, p := range c.Procs {
		select {
		case <-p.done:
		case <-timer.C:
			timer.Reset(0)
		}
		if done, _ := p.Exited(); !done {
			p.cmd.Process.Kill()
			<-p.done
			killed = append(killed, p.Name)
		}
		os.Remove(c.Layout.PIDFile(p.Index))
	}
	// Every validator has exited: neither mechanism is needed any more.
	if c.lifeline != nil {
		c.lifeline.Close()
		c.lifeRead.Close()
		c.thread.close()
		c.lifeline, c.lifeRead, c.thread = nil, nil, nil
	}
	return killed
}

// Status returns the first answering validator's status.
func (c *Cluster) Status(ctx context.Context) (*api.Status, error) {
	var errs []error
	for _, p := range c.Procs {
		s, err := client.New(p.API, client.WithTimeout(2*time.Second)).Status(ctx)
		if err == nil {
			return s, nil
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}
