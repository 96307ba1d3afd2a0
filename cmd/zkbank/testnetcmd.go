package main

import (
	"os"
	"time"

	"github.com/spf13/cobra"
	"github.com/zkbank/zkbank/testnet"
)

func newTestnetCmd() *cobra.Command {
	var cfg testnet.RunConfig
	c := &cobra.Command{
		Use:   "testnet [--validators 4] [--accounts 64] [--dir .testnet] [--reset] [--demo=true] [--netns] [--full-nodes 0]",
		Short: "Run a local chain: N validator processes, demo wallets, live status (Ctrl-C stops, rerun resumes)",
		Long: `testnet creates DIR (validator homes, a genesis, demo wallets prefunded with
1,000.00 each, and a card with a 500.00 credit line granted by an issuer),
starts one 'zkbank node' process per validator, waits for the key ceremony,
prints the endpoints, accounts and commands to try, then shows a live status
line. Ctrl-C stops every validator cleanly. Running it again resumes the same
chain from DIR; --reset starts a new one.

Validator i listens for peers on 127.0.0.1:27000+i and serves its API on
http://127.0.0.1:27100+i; logs are in DIR/node-i/node.log.

With --netns (Linux, root or CAP_NET_ADMIN) every node runs in its own
network namespace, as on its own machine: a bridge zkb-TAG on this host at
10.77.S.1/24 and, per validator i, a namespace zkb-TAG-i joined to it by a
veth pair, at 10.77.S.(10+i), listening on 27000 and serving its API on
http://10.77.S.(10+i):27100. TAG comes from DIR, S is the first free /24 of
10.77.0.0/16. All of it is removed when the testnet stops, or on the next
start in DIR after a crash.

With --full-nodes N it also runs N full nodes (homes DIR/full-j) that follow
the chain from validator 0: on 127.0.0.1:27016+j and http://127.0.0.1:27116+j,
or with --netns in namespaces zkb-TAG-fj at 10.77.S.(100+j).

With --demo (the default) it also runs a demo lender: a 'zkbank bot' process
lending from DIR/lending/pool.json under DIR/lending/policy.json (its
decisions in DIR/lending/bot.log), and a few demo borrowers who apply, are
funded and repay; one misses an installment on purpose
(DIR/lending/demo-loans.log).`,
		Example: `  zkbank testnet
  zkbank testnet --validators 7 --accounts 16 --dir /tmp/zk --reset --demo=false
  sudo zkbank testnet --netns --full-nodes 1 --dir /tmp/zkn`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if !cmd.Flags().Changed("validators") {
				// On resume the genesis decides; on creation 4 is the default.
				cfg.Validators = 0
				if !(testnet.Layout{Dir: cfg.Dir}).Resumable() || cfg.Reset {
					cfg.Validators = 4
				}
			}
			if cfg.Exe == "" {
				cfg.Exe = testnet.DefaultExe()
			}
			cfg.Out, cfg.Err = cmd.OutOrStdout(), cmd.ErrOrStderr()
			cfg.TTY = isTerminal(os.Stderr) && cmd.ErrOrStderr() == os.Stderr
			return testnet.Run(cmd.Context(), cfg)
		},
	}
	f := c.Flags()
	f.IntVar(&cfg.Validators, "validators", 4, "number of validators (a new chain only)")
	f.IntVar(&cfg.Accounts, "accounts", 64, "number of prefunded demo accounts (a new chain only)")
	f.StringVar(&cfg.Dir, "dir", ".testnet", "testnet directory")
	f.BoolVar(&cfg.Reset, "reset", false, "delete DIR and start a new chain")
	f.BoolVar(&cfg.Demo, "demo", true, "run a gentle background load among DIR/demo-wallets, and the demo lender (a 'zkbank bot' and a few loans, DIR/lending)")
	f.Float64Var(&cfg.DemoRate, "demo-rate", 2, "background transfers per second")
	f.IntVar(&cfg.Ports.P2P, "p2p-port", testnet.DefaultPorts.P2P, "first validator's p2p port (validator i uses +i; with --netns every node uses it)")
	f.IntVar(&cfg.Ports.API, "api-port", testnet.DefaultPorts.API, "first validator's API port (validator i uses +i; with --netns every node uses it)")
	f.BoolVar(&cfg.Netns, "netns", false, "run every node in its own Linux network namespace with its own address (needs root or CAP_NET_ADMIN)")
	f.IntVar(&cfg.FullNodes, "full-nodes", 0, "also run this many full nodes following the chain (homes DIR/full-j)")
	f.DurationVar(&cfg.ReadyTimeout, "ready-timeout", 5*time.Minute, "how long to wait for every validator to be ready")
	f.StringVar(&cfg.Exe, "exe", "", "zkbank binary to run validators with (default: this one)")
	f.Lookup("exe").Hidden = true
	return c
}
