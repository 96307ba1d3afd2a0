package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/testnet"
	"github.com/zkbank/zkbank/wallet"
)

func newLoadCmd() *cobra.Command {
	var (
		cf         chainFlags
		dir        string
		n, p       int
		rate       float64
		maxRate    bool
		zipf       float64
		invalid    float64
		seed       uint64
		depth      int
		payees     int
		noSupply   bool
		noProgress bool
	)
	c := &cobra.Command{
		Use:   "load --genesis FILE --wallets DIR [-n 1000] [-p 8] [--rate 50|--max] [--zipf 1.2] [--invalid 0.1]",
		Short: "Drive random transfers among wallets and check the ledger's invariants",
		Long: `load submits n random transfers among p wallets of DIR (deposit wallets, by
name), at a target rate or as fast as possible. Each wallet keeps up to
--depth payments in flight, each built on the available balance the previous
ones leave: it never reads its balance between them (the ledger orders one
operation per account per block). Money a wallet receives lands in its
pending balance; when its available balance runs low it reads the pending
one and applies it. A fraction --invalid are deliberate overdrafts, dealt
the way a hacked wallet would (wrap-around new-balance bits): the
validators must reject every one. With --payees K, every transfer is a
pay-many: one upload paying K distinct wallets (one debit of the total, one
credit each); the report counts both transfers and payments.

Before and after, every wallet's balance is decrypted with its owner's keys
and the totals compared. load exits non-zero if an invalid transfer was
accepted or the supply changed.`,
		Example: `  zkbank load --genesis .testnet/genesis.json --wallets .testnet/wallets -n 1000 -p 8 --max --invalid 0.1
  zkbank load --node http://127.0.0.1:27100 --wallets .testnet/wallets -n 300 --rate 20 --zipf 1.2
  zkbank load --genesis .testnet/genesis.json --wallets .testnet/wallets -n 500 -p 64 --max --payees 16`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := required(cmd, "wallets"); err != nil {
				return err
			}
			if n < 1 || p < 2 {
				return usagef(cmd, "need -n >= 1 and -p >= 2")
			}
			if maxRate && cmd.Flags().Changed("rate") {
				return usagef(cmd, "--rate and --max exclude each other")
			}
			if rate <= 0 && !maxRate {
				return usagef(cmd, "--rate must be positive (or use --max)")
			}
			if invalid < 0 || invalid > 1 {
				return usagef(cmd, "--invalid %g: want a fraction in [0, 1]", invalid)
			}
			if zipf != 0 && zipf <= 1 {
				return usagef(cmd, "--zipf %g: the exponent must be > 1 (0 means uniform)", zipf)
			}
			if depth < 1 || depth > 64 {
				return usagef(cmd, "--depth %d: want 1-64", depth)
			}
			if maxRate {
				rate = 0
			}
			all, err := testnet.LoadWallets(dir)
			if err != nil {
				return err
			}
			var ws []*wallet.Wallet
			for _, w := range all {
				if !w.IsCard() {
					ws = append(ws, w)
				}
			}
			if len(ws) < p {
				return fmt.Errorf("-p %d: %s holds only %d deposit wallets", p, dir, len(ws))
			}
			ws = ws[:p]
			ctx := cmd.Context()
			m, err := cf.multi(ctx, ws[0])
			if err != nil {
				return err
			}
			for _, w := range ws {
				if w.ChainID != "" && w.ChainID != m.Chain() {
					return fmt.Errorf("wallet %s belongs to chain %s, not %s", w.Path(), w.ChainID, m.Chain())
				}
			}
			errOut := cmd.ErrOrStderr()
			cfg := testnet.LoadConfig{Multi: m, Wallets: ws, N: n, Rate: rate, Zipf: zipf, Invalid: invalid, Seed: seed, CheckSupply: !noSupply, Depth: depth, Payees: payees, Log: cmd.ErrOrStderr()}
			if !noProgress {
				cfg.Progress = errOut
				cfg.ProgressBar = errOut == os.Stderr && isTerminal(os.Stderr)
			}
			mode := fmt.Sprintf("%g/s", rate)
			if rate == 0 {
				mode = "max rate"
			}
			mode += fmt.Sprintf(", up to %d in flight per wallet", depth)
			fmt.Fprintf(errOut, "load: %d transfers among %d wallets on %s (%s, %.0f%% invalid)\n", n, p, m.Chain(), mode, invalid*100)
			rep, err := testnet.Load(ctx, cfg)
			if rep != nil {
				rep.Write(cmd.OutOrStdout())
			}
			if err != nil {
				return err
			}
			if ctx.Err() != nil {
				return errors.New("interrupted")
			}
			return rep.Check()
		},
	}
	cf.register(c)
	c.Flags().StringVar(&dir, "wallets", "", "directory of wallet files (*.json)")
	c.Flags().IntVarP(&n, "n", "n", 1000, "number of transfers")
	c.Flags().IntVarP(&p, "p", "p", 8, "number of wallets taking part")
	c.Flags().Float64Var(&rate, "rate", 50, "target transfers per second")
	c.Flags().BoolVar(&maxRate, "max", false, "as fast as possible (up to --depth payments in flight per wallet)")
	c.Flags().Float64Var(&zipf, "zipf", 0, "Zipf exponent (> 1) skewing counterparties and amounts; 0 = uniform")
	c.Flags().Float64Var(&invalid, "invalid", 0, "fraction of deliberate overdrafts that must be rejected")
	c.Flags().Uint64Var(&seed, "seed", 0, "random seed (0 = random)")
	c.Flags().IntVar(&depth, "depth", 4, "payments each wallet keeps in flight (built on one another, no balance reads between)")
	c.Flags().IntVar(&payees, "payees", 0, fmt.Sprintf("pay-many: each transfer pays this many wallets (2 to %d; 0 = single payments)", ledger.MaxPayees))
	c.Flags().BoolVar(&noSupply, "no-supply-check", false, "skip decrypting every balance before and after")
	c.Flags().BoolVar(&noProgress, "quiet", false, "no progress bar")
	return c
}

// isTerminal reports whether f is a terminal (spinners and \r status lines
// only make sense there).
func isTerminal(f *os.File) bool { return term.IsTerminal(int(f.Fd())) }
