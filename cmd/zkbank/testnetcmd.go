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
		Use:   "testnet [--validators 4] [--accounts 64] [--dir .testnet] [--reset] [--demo=true]",
		Short: "Run a local chain: N validator processes, demo wallets, live status (Ctrl-C stops, rerun resumes)",
		Long: `testnet creates DIR (validator homes, a genesis, demo wallets prefunded with
1,000.00 each, and a card with a 500.00 credit line granted by an issuer),
starts one 'zkbank node' process per validator, waits for the key ceremony,
prints the endpoints, accounts and commands to try, then shows a live status
line. Ctrl-C stops every validator cleanly. Running it again resumes the same
chain from DIR; --reset starts a new one.

Validator i listens for peers on 127.0.0.1:27000+i and serves its API on
http://127.0.0.1:27100+i; logs are in DIR/node-i/node.log.

With --demo (the default) it also runs a demo lender: a 'zkbank bot' process
lending from DIR/lending/pool.json under DIR/lending/policy.json (its
decisions in DIR/lending/bot.log), and a few demo borrowers who apply, are
funded and repay; one misses an installment on purpose
(DIR/lending/demo-loans.log).`,
		Example: `  zkbank testnet
  zkbank testnet --validators 7 --accounts 16 --dir /tmp/zk --reset --demo=false`,
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
	f.IntVar(&cfg.Ports.P2P, "p2p-port", testnet.DefaultPorts.P2P, "first validator's p2p port (validator i uses +i)")
	f.IntVar(&cfg.Ports.API, "api-port", testnet.DefaultPorts.API, "first validator's API port (validator i uses +i)")
	f.DurationVar(&cfg.ReadyTimeout, "ready-timeout", 5*time.Minute, "how long to wait for every validator to be ready")
	f.StringVar(&cfg.Exe, "exe", "", "zkbank binary to run validators with (default: this one)")
	f.Lookup("exe").Hidden = true
	return c
}
