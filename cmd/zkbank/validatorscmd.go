package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/zkbank/zkbank/client"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/node"
	"github.com/zkbank/zkbank/version"
)

// newValidatorsCmd is `zkbank validators`: see and change the committee.
func newValidatorsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "validators",
		Short: "Show the validator committee, and add or remove validators (an on-chain change with key resharing)",
		Long: `The committee that holds the collective key changes by an on-chain
validator-set change: a document naming the next committee, signed by the
consensus keys of more than two thirds of the current one. Any validator
proposes it; once a block carries it, the chain runs two quiet heights (no
transfers), the old and the new committee reshare the key (the collective key
and every balance stay the same; a removed validator's share becomes useless
with the new ones) and the new committee decides from the third height on.

  1. zkbank validators change --add NAME=HOME_OR_FILE --remove NAME --out change.json
  2. each current validator's operator: zkbank validators sign --home HOME change.json
  3. zkbank validators submit change.json

Every member of the new committee must be running (a newcomer as a full node
of the chain: zkbank node init --genesis ... --bootstrap ...) when the change
commits; docs/OPERATIONS.md, "Adding and removing a validator".`,
	}
	cmd.AddCommand(newValidatorsListCmd(), newValidatorsChangeCmd(), newValidatorsSignCmd(), newValidatorsSubmitCmd())
	return cmd
}

func newValidatorsListCmd() *cobra.Command {
	var f chainFlags
	c := &cobra.Command{
		Use:   "list",
		Short: "Print the current committee (the genesis committee changed by every committed change, verified from the genesis)",
		Example: `  zkbank validators list --genesis ./.testnet/genesis.json
  zkbank validators list --node http://127.0.0.1:27100`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			_, m, cancel, err := f.connect(cmd, nil)
			defer cancel()
			if err != nil {
				return err
			}
			g := m.Genesis()
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "chain %s, epoch %d: %d validators, %d-of-%d key\n\n", g.ChainID, m.Epoch(), len(g.Validators), g.Threshold, len(g.Validators))
			tw := tabwriter.NewWriter(out, 0, 2, 2, ' ', 0)
			fmt.Fprintln(tw, "INDEX\tNAME\tPEER\tAPI")
			for _, v := range g.Validators {
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\n", v.Index, v.Name, v.PeerID, v.API)
			}
			return tw.Flush()
		},
	}
	f.register(c)
	return c
}

func newValidatorsChangeCmd() *cobra.Command {
	var f chainFlags
	var add, remove []string
	var reason, out string
	c := &cobra.Command{
		Use:   "change --add NAME=HOME_OR_FILE... --remove NAME... --out FILE",
		Short: "Write an unsigned validator-set change from the current committee",
		Long: `Writes the next committee as a change document for the current validators to
sign. --add takes a new member's home directory (on this machine) or the JSON
'zkbank node init' printed for it (peer_id, consensus_pub, p2p_addrs, api);
--remove names a current member. The threshold is f+1 of the new size.`,
		Example: `  zkbank validators change --add bank-5=./v5 --out change.json
  zkbank validators change --remove node-0 --reason "retired" --out change.json`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cmd.SilenceUsage = true
			if out == "" {
				return errors.New("--out FILE is required")
			}
			if len(add) == 0 && len(remove) == 0 {
				return errors.New("nothing to change: give --add or --remove")
			}
			_, m, cancel, err := f.connect(cmd, nil)
			defer cancel()
			if err != nil {
				return err
			}
			cur := m.Genesis()
			gone := map[string]bool{}
			for _, r := range remove {
				found := false
				for _, v := range cur.Validators {
					found = found || v.Name == r
				}
				if !found {
					return fmt.Errorf("--remove %s: no validator of that name in the current committee", r)
				}
				gone[r] = true
			}
			var next []genesis.Validator
			for _, v := range cur.Validators {
				if !gone[v.Name] {
					next = append(next, v)
				}
			}
			for _, a := range add {
				name, path, ok := strings.Cut(a, "=")
				if !ok || name == "" || path == "" {
					return fmt.Errorf("--add %q: want NAME=HOME_OR_FILE", a)
				}
				v, err := newMember(name, path)
				if err != nil {
					return fmt.Errorf("--add %s: %w", name, err)
				}
				next = append(next, v)
			}
			for i := range next {
				next[i].Index = i
			}
			ch := &genesis.Change{ChainID: cur.ChainID, Epoch: m.Epoch() + 1, Validators: next, Threshold: genesis.DefaultThreshold(len(next)), Reason: reason}
			b, _ := json.MarshalIndent(ch, "", "  ")
			if err := os.WriteFile(out, append(b, '\n'), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s: epoch %d, %d -> %d validators (%d-of-%d key); it needs signatures of more than two thirds of the %d current validators (zkbank validators sign)\n",
				out, ch.Epoch, len(cur.Validators), len(next), ch.Threshold, len(next), len(cur.Validators))
			return nil
		},
	}
	f.register(c)
	c.Flags().StringArrayVar(&add, "add", nil, "a new member: NAME=HOME_DIR or NAME=FILE (JSON printed by 'zkbank node init')")
	c.Flags().StringArrayVar(&remove, "remove", nil, "a current member to remove, by name")
	c.Flags().StringVar(&reason, "reason", "", "free text recorded (and signed) with the change")
	c.Flags().StringVar(&out, "out", "", "where to write the change")
	return c
}

// newMember reads a new member's committee entry from its home directory
// or from the JSON 'zkbank node init' printed.
func newMember(name, path string) (genesis.Validator, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		return node.ValidatorEntry(path, name)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return genesis.Validator{}, err
	}
	var v genesis.Validator
	if err := json.Unmarshal(b, &v); err != nil {
		return genesis.Validator{}, fmt.Errorf("%s: %w", path, err)
	}
	v.Name, v.Power = name, 1
	return v, nil
}

func newValidatorsSignCmd() *cobra.Command {
	var home string
	c := &cobra.Command{
		Use:   "sign --home HOME FILE",
		Short: "Sign a validator-set change with this validator's consensus key",
		Long: `Adds this validator's signature to the change in FILE (in place). The
validator's index comes from its home's committee (genesis.json and the
changes it recorded); read the change before signing: it names every member of
the next committee.`,
		Example: `  zkbank validators sign --home ./v0 change.json`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SilenceUsage = true
			if home == "" {
				return errors.New("--home is required")
			}
			ch, err := readChange(args[0])
			if err != nil {
				return err
			}
			idx, err := node.SignChangeInHome(home, ch)
			if err != nil {
				return err
			}
			b, _ := json.MarshalIndent(ch, "", "  ")
			if err := os.WriteFile(args[0], append(b, '\n'), 0o644); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "signed %s as validator %d (%d signatures)\n", args[0], idx, len(ch.Signatures))
			return nil
		},
	}
	c.Flags().StringVar(&home, "home", "", "the signing validator's home directory")
	return c
}

func newValidatorsSubmitCmd() *cobra.Command {
	var f chainFlags
	var force bool
	c := &cobra.Command{
		Use:   "submit FILE",
		Short: "Hand a signed validator-set change to every current validator (the next proposer includes it)",
		Long: `Hands the signed change in FILE to every current validator; the next proposer
includes it, and the committee changes 3 heights later.

First it asks every member of the next committee (staying and new) for its
status: the key resharing waits for each of them, and while it waits the chain
stops (a member that never answers halts it; docs/PROTOCOL.md §8). A member
that does not answer, or answers for another chain, protocol version or epoch,
makes submit refuse; --force submits anyway.`,
		Example: `  zkbank validators submit change.json --genesis ./.testnet/genesis.json`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cmd.SilenceUsage = true
			ch, err := readChange(args[0])
			if err != nil {
				return err
			}
			ctx, m, cancel, err := f.connect(cmd, nil)
			defer cancel()
			if err != nil {
				return err
			}
			if err := preflight(ctx, resharingMembers(ch, m.Genesis()), m.Chain(), m.Epoch()); err != nil && !force {
				return err
			}
			queued := 0
			var errs []error
			for _, v := range m.Genesis().Validators {
				if _, err := client.New(v.API).SubmitChange(ctx, ch); err != nil {
					errs = append(errs, err)
					continue
				}
				queued++
			}
			if queued == 0 {
				return fmt.Errorf("no validator took the change: %w", errors.Join(errs...))
			}
			fmt.Fprintf(cmd.OutOrStdout(), "queued at %d of %d validators; the committee changes 3 heights after a block carries it (zkbank validators list shows the epoch)\n", queued, len(m.Genesis().Validators))
			return nil
		},
	}
	f.register(c)
	c.Flags().BoolVar(&force, "force", false, "submit even if a member of the next committee is not ready")
	return c
}

// resharingMembers are the validators the key resharing of ch waits for:
// every member of the next committee, and the dealers among the members
// that leave (cur is the current committee).
func resharingMembers(ch *genesis.Change, cur *genesis.Genesis) []genesis.Validator {
	out := append([]genesis.Validator(nil), ch.Validators...)
	in := map[string]bool{}
	for _, v := range ch.Validators {
		in[v.ConsensusPub] = true
	}
	for _, j := range ch.Dealers(cur.Validators, cur.Threshold) {
		if v := cur.Validators[j]; !in[v.ConsensusPub] {
			out = append(out, v)
		}
	}
	return out
}

// preflight asks every member a resharing waits for (resharingMembers) for
// its status, at once: a member that does not answer, or answers for
// another chain, protocol or epoch, would not take part, and the resharing
// waits for it while the chain stops.
func preflight(ctx context.Context, members []genesis.Validator, chainID string, epoch uint64) error {
	bad := make([]string, len(members))
	done := make(chan struct{}, len(members))
	for i, v := range members {
		go func() {
			defer func() { done <- struct{}{} }()
			c, cancel := context.WithTimeout(ctx, 5*time.Second)
			defer cancel()
			st, err := client.New(v.API).Status(c)
			switch {
			case err != nil:
				bad[i] = fmt.Sprintf("%s (%s) does not answer: %v", v.Name, v.API, err)
			case st.Chain != chainID:
				bad[i] = fmt.Sprintf("%s (%s) runs chain %q", v.Name, v.API, st.Chain)
			case st.Protocol != version.Protocol:
				bad[i] = fmt.Sprintf("%s (%s) speaks protocol %d, this zkbank %d", v.Name, v.API, st.Protocol, version.Protocol)
			case st.Epoch != epoch:
				bad[i] = fmt.Sprintf("%s (%s) is at epoch %d, the committee at %d", v.Name, v.API, st.Epoch, epoch)
			}
		}()
	}
	for range members {
		<-done
	}
	var out []string
	for _, b := range bad {
		if b != "" {
			out = append(out, b)
		}
	}
	if len(out) > 0 {
		return fmt.Errorf("%d of the %d validators the key resharing waits for (the next committee, and any dealer that leaves) are not ready; the chain stops while it waits: %s; start or fix them, or pass --force", len(out), len(members), strings.Join(out, "; "))
	}
	return nil
}

// readChange reads a change document.
func readChange(path string) (*genesis.Change, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	ch, err := genesis.DecodeChange(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ch, nil
}
