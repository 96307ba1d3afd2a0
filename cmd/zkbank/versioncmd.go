package main

import (
	"encoding/json"
	"fmt"

	"github.com/spf13/cobra"
	"github.com/zkbank/zkbank/version"
)

// newVersionCmd is `zkbank version`.
func newVersionCmd() *cobra.Command {
	var asJSON bool
	c := &cobra.Command{
		Use:   "version [--json]",
		Short: "Print the software version, the wire-protocol number, the Go version and the source commit",
		Long: `Prints which zkbank this binary is:

  version   the software version (a release tag, or devel-<commit> for a build from a checkout)
  protocol  the wire-protocol number: nodes of different numbers refuse to talk
            (blocks, envelopes, vote extensions and p2p messages changed incompatibly)
  go        the Go toolchain that built it
  commit    the source revision ("+dirty": built with local changes)

A node announces "zkbank/<version> (protocol <n>; <role>)" to its peers and
reports version and protocol in /v1/status.`,
		Example: `  zkbank version
  zkbank version --json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			in := version.Get()
			out := cmd.OutOrStdout()
			if asJSON {
				enc := json.NewEncoder(out)
				enc.SetIndent("", "  ")
				return enc.Encode(in)
			}
			_, err := fmt.Fprintf(out, "version   %s\nprotocol  %d\ngo        %s\ncommit    %s\n", in.Version, in.Protocol, in.Go, in.Commit)
			return err
		},
	}
	c.Flags().BoolVar(&asJSON, "json", false, "print one JSON object")
	return c
}
