package testnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/client"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/wallet"
)

// RunConfig is `zkbank testnet`.
type RunConfig struct {
	Dir          string
	Validators   int
	Accounts     int
	Reset        bool
	Demo         bool
	DemoRate     float64 // background transfers per second (default 2)
	Exe          string  // the zkbank binary (validators run as `Exe node --home DIR`)
	Ports        Ports
	ReadyTimeout time.Duration // default 5 min
	StopGrace    time.Duration // SIGTERM to SIGKILL, default 10 s
	StatusEvery  time.Duration // default 1 s
	Netns        bool          // every node in its own network namespace (netns.go)
	FullNodes    int           // full nodes following the chain (fullnodes.go)
	Out          io.Writer     // summary
	Err          io.Writer     // progress and the live status line
	TTY          bool          // Err is a terminal: spinner and \r status line
}

func (c *RunConfig) defaults() {
	if c.Ports == (Ports{}) {
		c.Ports = DefaultPorts
	}
	if c.ReadyTimeout == 0 {
		c.ReadyTimeout = 5 * time.Minute
	}
	if c.StopGrace == 0 {
		c.StopGrace = 10 * time.Second
	}
	if c.StatusEvery == 0 {
		c.StatusEvery = time.Second
	}
	if c.DemoRate == 0 {
		c.DemoRate = 2
	}
	if c.Out == nil {
		c.Out = io.Discard
	}
	if c.Err == nil {
		c.Err = io.Discard
	}
}

// Prepare creates the testnet directory, or reuses it when it already holds
// a genesis (unless reset). It reports whether it resumed.
func Prepare(ctx context.Context, cfg RunConfig, say func(string)) (*genesis.Genesis, bool, error) {
	cfg.defaults()
	l := Layout{Dir: cfg.Dir}
	if cfg.Reset {
		if err := Reset(cfg.Dir); err != nil {
			return nil, false, err
		}
	}
	if l.Resumable() {
		g, err := genesis.Load(l.Genesis())
		if err != nil {
			return nil, false, err
		}
		for i := range g.Validators {
			if _, err := os.Stat(l.Home(i)); err != nil {
				return nil, false, fmt.Errorf("%w: %s is missing (rerun with --reset to start over)", ErrIncomplete, l.Home(i))
			}
		}
		return g, true, nil
	}
	g, err := Create(ctx, CreateConfig{Dir: cfg.Dir, Validators: cfg.Validators, Accounts: cfg.Accounts, Exe: cfg.Exe, Ports: cfg.Ports, Progress: say})
	return g, false, err
}

// Run creates or resumes a testnet, starts its validators, waits until they
// are ready, prints how to use it, then shows a live status line until ctx
// ends, when it stops the validators. A clean stop returns nil.
func Run(ctx context.Context, cfg RunConfig) error {
	cfg.defaults()
	// With SIGPIPE notified, a write to a closed stdout or stderr (`zkbank
	// testnet | tee` after tee died) fails with EPIPE instead of killing this
	// process before it stops the validators; Notify rather than Ignore, so
	// the validators do not inherit an ignored SIGPIPE.
	sigpipe := make(chan os.Signal, 1)
	signal.Notify(sigpipe, syscall.SIGPIPE)
	defer signal.Stop(sigpipe)
	l := Layout{Dir: cfg.Dir}
	if err := checkFullNodes(cfg); err != nil {
		return err
	}
	nw, err := openNetns(&cfg)
	if err != nil {
		return err
	}
	defer nw.down(cfg.Err)
	g, resumed, err := Prepare(ctx, cfg, func(s string) { fmt.Fprintln(cfg.Err, s) })
	if err != nil {
		return err
	}
	if err := checkNetnsMode(cfg.Dir, g, cfg.Netns); err != nil {
		return err
	}
	if err := nw.up(len(g.Validators), cfg.FullNodes); err != nil {
		return err
	}
	if resumed && cfg.Validators != 0 && cfg.Validators != len(g.Validators) {
		fmt.Fprintf(cfg.Err, "note: %s holds a %d-validator chain; --validators %d applies only with --reset\n", cfg.Dir, len(g.Validators), cfg.Validators)
	}
	verb := "starting"
	if resumed {
		verb = "resuming"
	}
	fmt.Fprintf(cfg.Err, "%s chain %s: %d validators, threshold %d, in %s\n", verb, g.ChainID, len(g.Validators), g.Threshold, cfg.Dir)

	cl, err := Start(cfg.Exe, l, g, nw.startOptions())
	if err != nil {
		return err
	}
	stop := func() {
		fmt.Fprintf(cfg.Err, "stopping %d validators...\n", len(cl.Procs))
		if killed := cl.Stop(cfg.StopGrace); len(killed) > 0 {
			fmt.Fprintf(cfg.Err, "killed after %s: %s\n", cfg.StopGrace, strings.Join(killed, ", "))
		}
	}
	what := "key ceremony"
	if resumed {
		what = "validators to restart"
	}
	if err := cl.WaitReady(ctx, cfg.ReadyTimeout, waitReporter(cfg.Err, cfg.TTY, what)); err != nil {
		stop()
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}

	// The current committee, which validator-set changes may have made
	// other than genesis's: demo traffic is sealed to it.
	m, err := client.Current(ctx, g)
	if err != nil {
		stop()
		return err
	}
	fulls, err := StartFullNodes(ctx, cfg, cl, g, nw)
	if err != nil {
		stop()
		return err
	}
	lender := startLender(cfg, l, cl, cfg.Demo)
	printSummary(ctx, cfg, l, g, m, resumed, lender, fulls)

	var demoWG sync.WaitGroup
	demoCtx, demoStop := context.WithCancel(ctx)
	if cfg.Demo {
		demoWG.Add(1)
		go func() {
			defer demoWG.Done()
			runDemo(demoCtx, cfg, l, m)
		}()
	}
	if lender.running {
		demoWG.Add(1)
		go func() {
			defer demoWG.Done()
			runDemoLoans(demoCtx, l, m, lender)
		}()
	}
	statusLoop(ctx, cfg, cl)
	demoStop()
	demoWG.Wait()
	stop()
	fmt.Fprintf(cfg.Err, "stopped. Run 'zkbank testnet --dir %s%s' to resume this chain.\n", cfg.Dir, resumeFlags(cfg))
	return nil
}

// waitReporter shows what the testnet is waiting for: a spinner on a
// terminal, a line per change otherwise.
func waitReporter(w io.Writer, tty bool, what string) func([]NodeState) {
	start := time.Now()
	var bar *progressbar.ProgressBar
	if tty {
		bar = progressbar.NewOptions(-1, progressbar.OptionSetWriter(w), progressbar.OptionSpinnerType(14),
			progressbar.OptionClearOnFinish(), progressbar.OptionSetElapsedTime(false))
	}
	last := ""
	return func(states []NodeState) {
		ready := 0
		var parts []string
		for _, s := range states {
			if s.Ready {
				ready++
			}
			parts = append(parts, s.String())
		}
		msg := fmt.Sprintf("waiting for %s: %d/%d ready (%s)", what, ready, len(states), strings.Join(parts, ", "))
		if bar != nil {
			bar.Describe(fmt.Sprintf("%s [%s]", msg, time.Since(start).Round(time.Second)))
			bar.Add(1)
			if ready == len(states) {
				bar.Finish()
			}
			return
		}
		if msg != last {
			fmt.Fprintln(w, msg)
			last = msg
		}
	}
}

func printSummary(ctx context.Context, cfg RunConfig, l Layout, g *genesis.Genesis, m *client.Multi, resumed bool, lender demoLender, fulls []*Proc) {
	w := cfg.Out
	cur := m.Genesis() // the current committee
	epoch := ""
	if e := m.Epoch(); e > 0 {
		epoch = fmt.Sprintf(" (epoch %d: the validator set changed since genesis)", e)
	}
	fmt.Fprintf(w, "\nzkbank testnet %s is up: %d validators, %d-of-%d threshold key%s\n\n", g.ChainID, len(cur.Validators), cur.Threshold, len(cur.Validators), epoch)
	if len(cur.Validators) > 0 {
		fmt.Fprintf(w, "dashboard  %s/\n\n", strings.TrimSuffix(cur.Validators[0].API, "/"))
	}
	// Processes by API: genesis's validators and the full nodes; a change
	// may have made one of either the other.
	logs := map[string]string{}
	for i, v := range g.Validators {
		logs[v.API] = l.Log(i)
	}
	for j, pr := range fulls {
		logs[pr.API] = l.FullLog(j)
	}
	fmt.Fprintln(w, "validators")
	inCommittee := map[string]bool{}
	for _, v := range cur.Validators {
		inCommittee[v.API] = true
		fmt.Fprintf(w, "  %-7s api %-24s p2p %-26s log %s\n", v.Name, v.API, strings.Join(v.P2PAddrs, ","), logs[v.API])
	}
	for i, v := range g.Validators {
		if !inCommittee[v.API] {
			fmt.Fprintf(w, "  %-7s api %-24s left the committee, follows as a full node; log %s\n", v.Name, v.API, l.Log(i))
		}
	}
	printFullNodes(w, l, cfg.Ports, fulls, inCommittee)
	ws, err := LoadWallets(l.Wallets())
	if err != nil {
		fmt.Fprintf(w, "\nwallets: %v\n", err)
		return
	}
	fmt.Fprintln(w, "\naccounts (available balances decrypted here, with each owner's wallet)")
	bctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var first, other, card *wallet.Wallet
	shown := 0
	for _, wl := range ws {
		// Each balance is a threshold re-encryption: show the card and the
		// first few deposit accounts, count the rest.
		if !wl.IsCard() && shown >= summaryAccounts {
			continue
		}
		if !wl.IsCard() {
			shown++
		}
		b, err := m.Balance(bctx, wl)
		bal := "?"
		if err != nil {
			bal = "? (" + err.Error() + ")"
		} else if wl.IsCard() {
			bal = fmt.Sprintf("available %s of %s credit", wallet.FormatAmount(b.Amount), wallet.FormatAmount(wl.Limit))
		} else {
			bal = wallet.FormatAmount(b.Amount)
		}
		fmt.Fprintf(w, "  %-8s %-8s %-36s %s\n", wl.Name, wl.Kind, bal, wl.Path())
		switch {
		case wl.IsCard():
			card = wl
		case first == nil:
			first = wl
		case other == nil:
			other = wl
		}
	}
	if hidden := len(ws) - shown - 1; hidden > 0 {
		fmt.Fprintf(w, "  ... and %d more in %s\n", hidden, l.Wallets())
	}
	fmt.Fprintln(w, "\ntry")
	if first != nil && other != nil {
		fmt.Fprintf(w, "  zkbank wallet balance --wallet %s\n", first.Path())
		fmt.Fprintf(w, "  zkbank wallet send    --wallet %s --to %s --amount 12.34\n", first.Path(), other.Path())
	}
	if card != nil && other != nil {
		fmt.Fprintf(w, "  zkbank wallet charge  --wallet %s --to %s --amount 20\n", card.Path(), other.Path())
		fmt.Fprintf(w, "  zkbank wallet available --wallet %s\n", card.Path())
	}
	fmt.Fprintf(w, "  zkbank load --genesis %s --wallets %s -n 200 -p 8 --rate 20 --invalid 0.1\n", l.Genesis(), l.Wallets())
	printLender(w, l, lender, first)
	demo := ""
	if cfg.Demo {
		demo = fmt.Sprintf(" A background load (~%g transfers/s among %s, errors in %s) keeps the chain busy; --demo=false turns it and the demo lender off.", cfg.DemoRate, l.DemoWallets(), l.DemoLog())
	}
	fmt.Fprintf(w, "\nCtrl-C stops the validators; 'zkbank testnet --dir %s%s' resumes this chain.%s\n\n", cfg.Dir, resumeFlags(cfg), demo)
}

func runDemo(ctx context.Context, cfg RunConfig, l Layout, m *client.Multi) {
	logf, err := os.OpenFile(l.DemoLog(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		fmt.Fprintf(cfg.Err, "demo load: %v\n", err)
		return
	}
	defer logf.Close()
	ws, err := LoadWallets(l.DemoWallets())
	if err != nil {
		fmt.Fprintf(logf, "demo load: %v\n", err)
		return
	}
	_, err = Load(ctx, LoadConfig{Multi: m, Wallets: ws, Rate: cfg.DemoRate, Log: logf})
	if err != nil && ctx.Err() == nil {
		fmt.Fprintf(logf, "demo load stopped: %v\n", err)
	}
}

// StatusLine renders a node's status on one line.
func StatusLine(s *api.Status) string {
	fin := "-"
	if s.LastFinalityMillis > 0 {
		fin = fmt.Sprintf("%.0f ms", s.LastFinalityMillis)
	}
	return fmt.Sprintf("height %d | committed %d | rejected %d | %.1f transfers/s | last finality %s | mempool %d | peers %d",
		s.Height, s.CommittedTransfers, s.RejectedTransfers, s.TransfersPerSecond, fin, s.Mempool, s.Peers)
}

func statusLoop(ctx context.Context, cfg RunConfig, cl *Cluster) {
	t := time.NewTicker(cfg.StatusEvery)
	defer t.Stop()
	warned := map[string]bool{}
	last := ""
	for {
		select {
		case <-ctx.Done():
			if cfg.TTY && last != "" {
				fmt.Fprintln(cfg.Err)
			}
			return
		case <-t.C:
		}
		for _, p := range append(cl.Procs, cl.Aux...) {
			if done, err := p.Exited(); done && !warned[p.Name] {
				warned[p.Name] = true
				if cfg.TTY {
					fmt.Fprint(cfg.Err, "\r\x1b[K")
				}
				fmt.Fprintf(cfg.Err, "warning: %s exited (%s); see %s: %s\n", p.Name, exitText(err), p.Log, lastLine(p.Log))
			}
		}
		sctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		s, err := cl.Status(sctx)
		cancel()
		line := ""
		if err != nil {
			line = "no validator answers its status"
		} else {
			line = StatusLine(s)
		}
		if cfg.TTY {
			fmt.Fprintf(cfg.Err, "\r\x1b[K%s", line)
		} else if line != last {
			fmt.Fprintln(cfg.Err, time.Now().Format(time.TimeOnly)+" "+line)
		}
		last = line
	}
}

// DefaultExe is the running binary, which is also the validator binary.
func DefaultExe() string {
	if exe, err := os.Executable(); err == nil {
		return exe
	}
	if p, err := filepath.Abs(os.Args[0]); err == nil {
		return p
	}
	return os.Args[0]
}
