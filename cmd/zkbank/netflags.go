package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"github.com/zkbank/zkbank/client"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/wallet"
)

// chainFlags say how to reach a chain: its genesis file (every validator's
// API is in it) or one node's URL (which serves the genesis).
type chainFlags struct {
	genesis string
	node    string
	timeout time.Duration
}

func (f *chainFlags) register(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.genesis, "genesis", "", "genesis file of the chain (default: $ZKBANK_GENESIS, the testnet the wallet lives in, or ./.testnet/genesis.json)")
	cmd.Flags().StringVar(&f.node, "node", "", "API URL of any validator, e.g. http://127.0.0.1:27100 (instead of --genesis)")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 2*time.Minute, "give up after this long")
}

// genesisPath finds the genesis when neither flag is given.
func (f *chainFlags) genesisPath(w *wallet.Wallet) string {
	if f.genesis != "" {
		return f.genesis
	}
	if env := os.Getenv("ZKBANK_GENESIS"); env != "" {
		return env
	}
	var guesses []string
	if w != nil && w.Path() != "" {
		// DIR/wallets/alice.json -> DIR/genesis.json (a testnet's layout)
		d := filepath.Dir(w.Path())
		guesses = append(guesses, filepath.Join(filepath.Dir(d), "genesis.json"), filepath.Join(d, "genesis.json"))
	}
	guesses = append(guesses, filepath.Join(".testnet", "genesis.json"))
	for _, g := range guesses {
		if _, err := os.Stat(g); err == nil {
			return g
		}
	}
	return ""
}

var errNoChain = errors.New("no chain given: pass --genesis FILE or --node URL")

// multi returns a client of the chain's validators, checking that the wallet
// (if any) belongs to that chain.
func (f *chainFlags) multi(ctx context.Context, w *wallet.Wallet) (*client.Multi, error) {
	opts := []client.Option{client.WithTimeout(min(f.timeout, client.DefaultTimeout))}
	if w != nil {
		opts = append(opts, client.WithParams(w.Params()))
	}
	var m *client.Multi
	var err error
	if f.node != "" {
		if m, err = client.Dial(ctx, f.node, opts...); err != nil {
			return nil, err
		}
	} else {
		path := f.genesisPath(w)
		if path == "" {
			return nil, errNoChain
		}
		g, err := genesis.Load(path)
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("genesis file %s not found", path)
		}
		if err != nil {
			return nil, err
		}
		if m, err = client.Current(ctx, g, opts...); err != nil {
			return nil, err
		}
	}
	if w != nil && w.ChainID != "" && w.ChainID != m.Chain() {
		return nil, fmt.Errorf("wallet %s belongs to chain %s, but the chain given is %s", w.Path(), w.ChainID, m.Chain())
	}
	return m, nil
}

// connect bounds a command's network work by --timeout and reaches the
// wallet's chain. cancel must be called even when err is not nil.
func (f *chainFlags) connect(cmd *cobra.Command, w *wallet.Wallet) (context.Context, *client.Multi, context.CancelFunc, error) {
	ctx, cancel := f.withTimeout(cmd.Context())
	m, err := f.multi(ctx, w)
	return ctx, m, cancel, err
}

// withTimeout bounds a command's network work.
func (f *chainFlags) withTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(ctx, f.timeout)
}

// required checks flags that must be given, as a usage error.
func required(cmd *cobra.Command, names ...string) error {
	for _, n := range names {
		if !cmd.Flags().Changed(n) {
			return usagef(cmd, "flag --%s is required", n)
		}
	}
	return nil
}
