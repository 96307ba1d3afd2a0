package main

import (
	"fmt"
	"strings"

	"github.com/spf13/cobra"
)

const rootLong = `zkbank is a confidential, decentralized bank ledger.

A committee of validators ("banks") jointly holds one homomorphic-encryption
key, t-of-N: no coalition smaller than t can decrypt anything and no single
bank can move money. Balances and amounts exist only as ciphertexts; every
transfer is checked homomorphically (no overdraft, no negative amount),
ordered by BFT consensus and committed in encrypted blocks. You decrypt your
own balance on your own machine, with your wallet's key.

This one binary is a validator node, a wallet, a local testnet and a load
generator.`

const rootExample = `  # a local 4-validator chain with demo accounts (Ctrl-C stops it, rerun resumes)
  zkbank testnet

  # your balance, decrypted locally
  zkbank wallet balance --wallet .testnet/wallets/alice.json

  # pay 12.34 to bob
  zkbank wallet send --wallet .testnet/wallets/alice.json --to .testnet/wallets/bob.json --amount 12.34

  # a card: charge a merchant, then see the available credit
  zkbank wallet charge --wallet .testnet/wallets/card.json --to .testnet/wallets/bob.json --amount 20
  zkbank wallet available --wallet .testnet/wallets/card.json

  # 1000 random transfers among 8 wallets, 10% deliberate overdrafts
  zkbank load --genesis .testnet/genesis.json --wallets .testnet/wallets -n 1000 -p 8 --max --invalid 0.1

  # your credit score, then a loan from the testnet's demo lender (its bot decides on one bit: score >= its minimum)
  zkbank wallet score --wallet .testnet/wallets/alice.json
  zkbank wallet loan apply --wallet .testnet/wallets/alice.json --lender .testnet/lending/pool.json --policy .testnet/lending/policy.json

  # pay 3 wallets with one transfer
  zkbank wallet pay-many --wallet .testnet/wallets/alice.json --pay .testnet/wallets/bob.json=1 --pay .testnet/wallets/carol.json=2 --pay .testnet/wallets/dave.json=3`

func newRootCmd() *cobra.Command {
	root := &cobra.Command{
		Use:           "zkbank",
		Short:         "A confidential bank ledger: homomorphically encrypted balances, threshold-decrypting validators",
		Long:          rootLong,
		Example:       rootExample,
		SilenceUsage:  true, // runtime errors are one line, not a usage dump
		SilenceErrors: true, // run prints the error itself
		Args:          cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cmd.Help()
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.AddCommand(newWalletCmd(), newLoadCmd(), newTestnetCmd(), newNodeCmd(), newBotCmd(), newValidatorsCmd(), newVersionCmd())
	wrapUsageErrors(root)
	return root
}

// wrapUsageErrors marks flag and argument errors as usage errors on every
// command, so they exit 2 and point at --help.
func wrapUsageErrors(c *cobra.Command) {
	c.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return &usageError{err: err, path: cmd.CommandPath()}
	})
	if c.Args != nil {
		args := c.Args
		c.Args = func(cmd *cobra.Command, a []string) error {
			if err := args(cmd, a); err != nil {
				return &usageError{err: err, path: cmd.CommandPath()}
			}
			return nil
		}
	} else if c.HasSubCommands() {
		// A group command given an unknown subcommand.
		c.Args = func(cmd *cobra.Command, a []string) error {
			if len(a) > 0 {
				return &usageError{err: fmt.Errorf("unknown command %q for %q", strings.Join(a, " "), cmd.CommandPath()), path: cmd.CommandPath()}
			}
			return nil
		}
	}
	for _, sub := range c.Commands() {
		wrapUsageErrors(sub)
	}
}

// usagef reports a bad flag value found at run time as a usage error.
func usagef(cmd *cobra.Command, format string, a ...any) error {
	return &usageError{err: fmt.Errorf(format, a...), path: cmd.CommandPath()}
}
