package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	_ "net/http/pprof" // profiles on a separate, opt-in listener (ZKBANK_PPROF)
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/zkbank/zkbank/node"
	"github.com/zkbank/zkbank/testnet"
)

// newNodeCmd is `zkbank node`: run a validator, or `node init` its home.
func newNodeCmd() *cobra.Command {
	var home, logLevel, logFormat string
	parentFD := -1
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Run a validator (one libp2p host, one actor system, one Badger store)",
		Long: `Run a zkbank validator from its home directory.

The home holds node_key (libp2p identity), consensus_key, node.json (listen
addresses), genesis.json and, after the first start, key_share (this
validator's Shamir share of the collective key, mode 0600) and data/ (Badger).
On first start the validators of the genesis run the key ceremony among
themselves; every later start resumes from data/.

Set ZKBANK_PPROF=127.0.0.1:6060 to serve Go profiles (/debug/pprof/) on that
address, for finding where memory and CPU go; off by default, and never on
the client API's address.`,
		Example: `  zkbank node init --home ./v0 --p2p /ip4/127.0.0.1/tcp/27000 --api http://127.0.0.1:27100
  zkbank node --home ./v0`,
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
	var api string
	var mdns, dht bool
	initCmd := &cobra.Command{
		Use:   "init",
		Short: "Create a validator home (keys and listen addresses) and print its identity as JSON",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			_, err := node.Init(home, p2pAddrs, api, cmd.OutOrStdout(), func(c *node.LocalConfig) {
				c.Bootstrap, c.MDNS, c.DHT = bootstrap, mdns, dht
			})
			return err
		},
	}
	initCmd.Flags().StringVar(&home, "home", ".", "validator home directory")
	initCmd.Flags().StringSliceVar(&p2pAddrs, "p2p", []string{"/ip4/127.0.0.1/tcp/27000"}, "libp2p listen multiaddr(s)")
	initCmd.Flags().StringVar(&api, "api", "http://127.0.0.1:27100", "client API address (http://host:port)")
	initCmd.Flags().StringSliceVar(&bootstrap, "bootstrap", nil, "extra peers to stay connected to (multiaddrs with /p2p/<id>), besides the genesis validators")
	initCmd.Flags().BoolVar(&mdns, "mdns", false, "discover zkbank peers on the local network (mDNS)")
	initCmd.Flags().BoolVar(&dht, "dht", false, "join the chain's DHT (protocol prefix /zkbank, server mode) to discover peers")
	cmd.AddCommand(initCmd)
	return cmd
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
