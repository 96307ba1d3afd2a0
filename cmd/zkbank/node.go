package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // profiles on a separate, opt-in listener (ZKBANK_PPROF)
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/node"
	"github.com/zkbank/zkbank/testnet"
)

// newNodeCmd is `zkbank node`: run a validator, or `node init` its home.
func newNodeCmd() *cobra.Command {
	var home, logLevel, logFormat string
	parentFD := -1
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run a validator or a full node (one libp2p host, one actor system, one Badger store)",
		Long: `Run a zkbank validator, or a full node, from its home directory.

The home holds node_key (libp2p identity), consensus_key, node.json (listen
addresses), genesis.json and, after the first start, key_share (this
validator's Shamir share of the collective key, mode 0600) and data/ (Badger).
On first start the validators of the genesis run the key ceremony among
themselves; every later start resumes from data/.

A home whose consensus key is not a validator's in genesis.json runs as a
full node: it joins from the bootstrap peers in node.json (and the chain's
DHT), fetches the public evaluation keys once t validators serve the same
bytes, then syncs every decided block over /zkbank/blocks/1, verifying each
commit certificate against the genesis validators and re-evaluating each
block's homomorphic checks before applying it (a block whose certificate or
evaluation digest does not verify is refused and logged). It serves the read
API and relays submissions to the validators; it refuses balance and score
requests (code not_a_validator): those need a key share.

Set ZKBANK_PPROF=127.0.0.1:6060 to serve Go profiles (/debug/pprof/) on that
address, for finding where memory and CPU go; off by default, and never on
the client API's address.`,
		Example: `  zkbank node init --home ./v0 --p2p /ip4/127.0.0.1/tcp/27000 --api http://127.0.0.1:27100
  zkbank node --home ./v0

  # a full node, joining from one validator's address
  zkbank node init --home ./f0 --genesis ./v0/genesis.json --p2p /ip4/127.0.0.1/tcp/27050 \
    --api http://127.0.0.1:27150 --bootstrap /ip4/127.0.0.1/tcp/27000/p2p/12D3KooW...
  zkbank node --home ./f0`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			logger, err := newLogger(logLevel, logFormat)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if parentFD >= 0 {
				var cancel context.CancelFunc
				ctx, cancel, err = testnet.WithParent(ctx, parentFD, logger)
				if err != nil {
					return err
				}
				defer cancel()
			}
			if addr := os.Getenv("ZKBANK_PPROF"); addr != "" {
				go func() {
					logger.Info("serving profiles", "addr", addr)
					if err := http.ListenAndServe(addr, nil); err != nil {
						logger.Warn("profiles not served", "addr", addr, "err", err)
					}
				}()
			}
			return node.Run(ctx, home, logger)
		},
	}
	cmd.Flags().StringVar(&home, "home", ".", "validator home directory")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "debug, info, warn or error")
	cmd.Flags().StringVar(&logFormat, "log-format", "text", "text or json")
	// Hidden: `zkbank testnet` passes it so its validators never outlive it.
	cmd.Flags().IntVar(&parentFD, testnet.ParentFDFlag, -1, "stop cleanly when this inherited descriptor (0: stdin) reaches EOF")
	cmd.Flags().MarkHidden(testnet.ParentFDFlag)

	var p2pAddrs, bootstrap []string
	var api, genesisFile string
	var mdns, dht bool
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create a validator's or a full node's home (keys and listen addresses) and print its identity as JSON",
		Long: `Create a node home: a libp2p identity, a consensus key and node.json.

With --genesis, the chain's genesis is copied into the home. If this home's
consensus key is not one of its validators', the home is a full node's and
needs at least one --bootstrap peer (a validator's or another full node's
multiaddr with /p2p/<id>); full nodes always join the chain's DHT.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			var gen []byte
			if genesisFile != "" {
				var err error
				if gen, err = readGenesis(genesisFile); err != nil {
					return err
				}
			}
			info, err := node.Init(home, p2pAddrs, api, nil, func(c *node.LocalConfig) {
				c.Bootstrap, c.MDNS, c.DHT = bootstrap, mdns, dht
			})
			if err != nil {
				return err
			}
			if gen != nil {
				full, err := isFullNode(genesisFile, info.ConsensusPub)
				if err != nil {
					return err
				}
				if full && len(bootstrap) == 0 {
					return fmt.Errorf("node init: this key is not a validator in %s, so the home is a full node's: give it at least one --bootstrap peer", genesisFile)
				}
				if err := os.WriteFile(node.Home{Dir: home}.Genesis(), gen, 0o644); err != nil {
					return fmt.Errorf("node init: %w", err)
				}
				if full {
					fmt.Fprintf(cmd.ErrOrStderr(), "full node home %s created: start it with zkbank node --home %s\n", home, home)
				}
			}
			return json.NewEncoder(cmd.OutOrStdout()).Encode(info)
		},
	}
	initCmd.Flags().StringVar(&home, "home", ".", "validator home directory")
	initCmd.Flags().StringSliceVar(&p2pAddrs, "p2p", []string{"/ip4/127.0.0.1/tcp/27000"}, "libp2p listen multiaddr(s)")
	initCmd.Flags().StringVar(&api, "api", "http://127.0.0.1:27100", "client API address (http://host:port)")
	initCmd.Flags().StringSliceVar(&bootstrap, "bootstrap", nil, "extra peers to stay connected to (multiaddrs with /p2p/<id>), besides the genesis validators")
	initCmd.Flags().BoolVar(&mdns, "mdns", false, "discover zkbank peers on the local network (mDNS)")
	initCmd.Flags().BoolVar(&dht, "dht", false, "join the chain's DHT (protocol prefix /zkbank, server mode) to discover peers (full nodes always do)")
	initCmd.Flags().StringVar(&genesisFile, "genesis", "", "copy this genesis.json into the home (needed for a full node)")
	cmd.AddCommand(initCmd)
	return cmd
}

// readGenesis reads a genesis file and checks it loads.
func readGenesis(path string) ([]byte, error) {
	if _, err := genesis.Load(path); err != nil {
		return nil, fmt.Errorf("node init: --genesis %s: %w", path, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("node init: %w", err)
	}
	return b, nil
}

// isFullNode reports whether the consensus key pub (hex) is no validator's
// in the genesis at path.
func isFullNode(path, pub string) (bool, error) {
	g, err := genesis.Load(path)
	if err != nil {
		return false, fmt.Errorf("node init: --genesis %s: %w", path, err)
	}
	for _, v := range g.Validators {
		if v.ConsensusPub == pub {
			return false, nil
		}
	}
	return true, nil
}

func newLogger(level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: %w", level, err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format %q: want text or json", format)
}
