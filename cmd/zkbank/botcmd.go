package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/zkbank/zkbank/lending"
	"github.com/zkbank/zkbank/testnet"
	"github.com/zkbank/zkbank/wallet"
)

// newBotCmd is `zkbank bot`: an automatic lender.
func newBotCmd() *cobra.Command {
	var path, policyPath, statePath, logLevel, logFormat string
	var lookback uint64
	var poll time.Duration
	var cf chainFlags
	parentFD := -1
	c := &cobra.Command{
		Use:   "bot --wallet POOL --policy FILE (--node URL|--genesis FILE)",
		Short: "Run an automatic lender: decides loan applications by its policy, funds them, follows repayments",
		Long: `The bot lends from a pool account (its wallet) under a policy file (JSON):

  {
    "name": "my-lender",
    "mode": "decision",        // "decision": one bit per applicant; "score": reads the score
    "min_score": 250000,       // the lowest score funded
    "amount": "100.00",        // each loan
    "installments": 3,
    "interval": 40,            // heights between installments (the first is due interval heights after funding)
    "max_open_loans": 16       // loans of this lender open at once
  }

It prints the policy's SHA-256 at start: borrowers name it in their checks
('zkbank wallet loan apply --lender POOL --policy FILE|HASH --min N').

At each committed block it looks for applications to its pool:
  decision mode: accepted score checks whose minimum is at least min_score and
                 whose policy hash is this policy file's;
  score mode:    score consents, under which it reads the applicant's score and
                 approves it if it is at least min_score.
It funds an approved application with a loan (installments due every interval
heights), applying the pool's received repayments first when it needs them,
and follows every loan's repayments and defaults on chain. Each decision is
one log line (log/slog on stderr): applicant, mode, decision, reason.

It remembers what it scanned and decided in a state file (default
POOL.bot.json); restarted, it resumes there. Several bots, each with its own
pool wallet and policy, can run against one chain. A node that is down is
retried; an application already funded, expired, or beyond what the pool
holds is refused with its reason.`,
		Example: `  zkbank bot --wallet .testnet/lending/pool.json --policy .testnet/lending/policy.json --node http://127.0.0.1:27100
  zkbank bot --wallet pool.json --policy strict.json --genesis genesis.json --log-format json 2>>bot.log`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := required(cmd, "wallet", "policy"); err != nil {
				return err
			}
			if poll < 100*time.Millisecond {
				return usagef(cmd, "--poll %s: want at least 100ms", poll)
			}
			logger, err := newLogger(logLevel, logFormat)
			if err != nil {
				return usagef(cmd, "%v", err)
			}
			pol, hash, err := lending.LoadPolicy(policyPath)
			if err != nil {
				return err
			}
			w, err := wallet.Load(path)
			if err != nil {
				return err
			}
			if statePath == "" {
				statePath = path + ".bot.json"
			}
			ctx := cmd.Context()
			if parentFD >= 0 {
				var cancel context.CancelFunc
				ctx, cancel, err = testnet.WithParent(ctx, parentFD, logger)
				if err != nil {
					return err
				}
				defer cancel()
			}
			o := cmd.OutOrStdout()
			fmt.Fprintf(o, "lender %s (%s mode, min_score %d): %s in %d installments, every %d heights; at most %d open loans\n",
				pol.Name, pol.Mode, pol.MinScore, wallet.FormatAmount(pol.Cents()), pol.Installments, pol.Interval, pol.MaxOpenLoans)
			fmt.Fprintf(o, "policy sha256 %s\n", hex.EncodeToString(hash[:]))
			fmt.Fprintf(o, "pool account  %s (%s)\n", w.Account, w.Path())
			if pol.Mode == lending.ModeDecision {
				fmt.Fprintf(o, "borrowers apply with: zkbank wallet loan apply --wallet FILE --lender %s --policy %s --min %d\n", w.Account, hex.EncodeToString(hash[:]), pol.MinScore)
			} else {
				fmt.Fprintf(o, "borrowers apply with: zkbank wallet loan apply --wallet FILE --lender %s --share-score\n", w.Account)
			}
			// Connecting: a node may not be up yet; the bot waits for it.
			var mctx context.Context
			var mcancel context.CancelFunc
			for {
				mctx, mcancel = cf.withTimeout(ctx)
				m, err := cf.multi(mctx, w)
				mcancel()
				if err == nil {
					bot, err := lending.NewBot(lending.BotConfig{Multi: m, Pool: w, Policy: pol, PolicyHash: hash, StatePath: statePath,
						Lookback: lookback, Poll: poll, Log: logger.With("lender", pol.Name)})
					if err != nil {
						return err
					}
					if err := bindAndSave(w, m.Chain()); err != nil {
						return err
					}
					return bot.Run(ctx)
				}
				if ctx.Err() != nil {
					return nil
				}
				if err == errNoChain {
					return usagef(cmd, "%v", err)
				}
				logger.Warn("chain not reachable yet; retrying", "err", err)
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(3 * time.Second):
				}
			}
		},
	}
	c.Flags().StringVar(&path, "wallet", "", "the pool's wallet file: loans are paid from it, repayments land in it")
	c.Flags().StringVar(&policyPath, "policy", "", "the lender's policy file (JSON)")
	c.Flags().StringVar(&statePath, "state", "", "where the bot remembers what it scanned and decided (default WALLET.bot.json)")
	c.Flags().Uint64Var(&lookback, "lookback", 64, "first start: scan this many heights back for applications")
	c.Flags().DurationVar(&poll, "poll", time.Second, "how often to look for new blocks")
	c.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	c.Flags().StringVar(&logFormat, "log-format", "text", "text or json")
	cf.register(c)
	c.Flags().Lookup("timeout").Usage = "give up on one connection attempt after this long"
	// Hidden: `zkbank testnet` passes it so its demo bot never outlives it.
	c.Flags().IntVar(&parentFD, testnet.ParentFDFlag, -1, "stop cleanly when this inherited descriptor (0: stdin) reaches EOF")
	c.Flags().MarkHidden(testnet.ParentFDFlag)
	return c
}
