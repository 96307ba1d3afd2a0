package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/client"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/wallet"
)

func newWalletCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "wallet",
		Short: "Create wallets, read balances (decrypted locally), send transfers, charge cards, borrow",
		Long: `A wallet file holds one account's keys: the ed25519 key that names the account
and signs its transfers, and the homomorphic key pair validators re-encrypt the
balance to. Keep it secret (it is written with mode 0600); whoever holds it
owns the account. Amounts are currency units with up to two decimals (12.34).

An account has two balances. Money you receive lands in its pending balance;
'zkbank wallet apply' moves it into the available balance, the only one you
spend from. Nobody else can change your available balance, so a payment is
never invalidated by someone paying you meanwhile.`,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	c.AddCommand(newWalletCreateCmd(), newWalletShowCmd(), newWalletOpenCmd(), newWalletBalanceCmd(false),
		newWalletTransferCmd(false), newWalletPayManyCmd(), newWalletTransferCmd(true), newWalletApplyCmd(), newWalletBalanceCmd(true), newWalletHistoryCmd())
	c.AddCommand(lendingCommands()...)
	return c
}

func newWalletCreateCmd() *cobra.Command {
	var name, out, limit, issuer string
	var card bool
	c := &cobra.Command{
		Use:   "create --name NAME [--out FILE] [--card [--limit AMOUNT] [--issuer ACCOUNT_ID]]",
		Short: "Generate a new wallet file (keys only; open the account with 'wallet open')",
		Example: `  zkbank wallet create --name carol --out carol.json
  zkbank wallet create --name carols-card --out card.json --card --limit 500`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := required(cmd, "name"); err != nil {
				return err
			}
			kind := wallet.KindDeposit
			if card {
				kind = wallet.KindCard
			} else if limit != "" || issuer != "" {
				return usagef(cmd, "--limit and --issuer apply to --card wallets only")
			}
			var lim uint64
			if limit != "" {
				var err error
				if lim, err = wallet.ParseAmount(limit); err != nil {
					return usagef(cmd, "--limit: %v", err)
				}
			}
			if issuer != "" {
				if _, err := ledger.ParseAccountID(issuer); err != nil {
					return usagef(cmd, "--issuer: want a 64-hex-digit account id")
				}
			}
			if out == "" {
				out = name + ".json"
			}
			w, err := wallet.New(name, kind, ledger.MustParams(ledger.ZKB128))
			if err != nil {
				return err
			}
			w.Limit, w.Issuer = lim, issuer
			if err := w.Create(out); err != nil {
				return err
			}
			o := cmd.OutOrStdout()
			fmt.Fprintf(o, "created %s wallet %q\n  account  %s\n  file     %s (secret: it holds the account's keys)\n", kind, name, w.Account, out)
			fmt.Fprintf(o, "next: zkbank wallet open --wallet %s --node http://127.0.0.1:27100\n", out)
			return nil
		},
	}
	c.Flags().StringVar(&name, "name", "", "a name for the wallet (shown in listings)")
	c.Flags().StringVar(&out, "out", "", "wallet file to write (default NAME.json); never overwritten")
	c.Flags().BoolVar(&card, "card", false, "a card credit line instead of a deposit account")
	c.Flags().StringVar(&limit, "limit", "", "card: the credit line the issuer granted (informational)")
	c.Flags().StringVar(&issuer, "issuer", "", "card: the issuer's account id")
	return c
}

func loadWallet(cmd *cobra.Command, path string) (*wallet.Wallet, error) {
	if path == "" {
		return nil, usagef(cmd, "flag --wallet is required")
	}
	return wallet.Load(path)
}

func newWalletShowCmd() *cobra.Command {
	var path string
	c := &cobra.Command{
		Use:   "show --wallet FILE",
		Short: "Show a wallet's account id, kind and chain (no network)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := loadWallet(cmd, path)
			if err != nil {
				return err
			}
			o := cmd.OutOrStdout()
			fmt.Fprintf(o, "name       %s\naccount    %s\nkind       %s\n", w.Name, w.Account, w.Kind)
			chain := w.ChainID
			if chain == "" {
				chain = "(not opened on a chain yet)"
			}
			fmt.Fprintf(o, "chain      %s\nsign key   %s\nparams     %s\n", chain, hex.EncodeToString(w.SignPub()), w.ParamSet)
			if w.IsCard() {
				lim := "(unknown)"
				if w.Limit > 0 {
					lim = wallet.FormatAmount(w.Limit)
				}
				fmt.Fprintf(o, "limit      %s\n", lim)
				if w.Issuer != "" {
					fmt.Fprintf(o, "issuer     %s\n", w.Issuer)
				}
			}
			fmt.Fprintf(o, "file       %s\n", w.Path())
			return nil
		},
	}
	c.Flags().StringVar(&path, "wallet", "", "wallet file")
	return c
}

func newWalletOpenCmd() *cobra.Command {
	var path string
	var cf chainFlags
	c := &cobra.Command{
		Use:   "open --wallet FILE --node URL",
		Short: "Open the wallet's account on a chain (zero balance; genesis accounts are already open)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withWallet(cmd, path, &cf, func(ctx context.Context, m *client.Multi, w *wallet.Wallet) error {
				return openAccount(ctx, cmd.OutOrStdout(), m, w)
			})
		},
	}
	c.Flags().StringVar(&path, "wallet", "", "wallet file")
	cf.register(c)
	return c
}

// openAccount opens w's account on m's chain, or says it is open already.
func openAccount(ctx context.Context, o io.Writer, m *client.Multi, w *wallet.Wallet) error {
	a, err := m.Account(ctx, w.Account)
	if err == nil {
		fmt.Fprintf(o, "account %s is already open on %s (%s, shard %d, lane %d)\n", w.Account, m.Chain(), a.Kind, a.Shard, a.Lane)
		return bindAndSave(w, m.Chain())
	}
	if !errors.Is(err, client.ErrUnknownAccount) {
		return err
	}
	req := api.OpenRequest{SignPub: hex.EncodeToString(w.SignPub()), Kind: w.Kind, Signature: hex.EncodeToString(w.OpenSignature(m.Chain()))}
	r, err := m.Open(ctx, req)
	if err != nil {
		return fmt.Errorf("opening account: %w", err)
	}
	// Balance reads need a threshold of validators to know the account.
	if err := m.WaitAccount(ctx, w.Account, m.Threshold()); err != nil {
		return fmt.Errorf("account opened but not yet visible: %w", err)
	}
	if err := bindAndSave(w, m.Chain()); err != nil {
		return err
	}
	fmt.Fprintf(o, "opened %s account %s on %s (shard %d, lane %d, balance 0.00)\n", r.Account.Kind, r.Account.ID, m.Chain(), r.Account.Shard, r.Account.Lane)
	return nil
}

func bindAndSave(w *wallet.Wallet, chain string) error {
	if w.ChainID == chain {
		return nil
	}
	if err := w.BindChain(chain); err != nil {
		return err
	}
	return w.Save(w.Path())
}

// newWalletBalanceCmd is `wallet balance`, or `wallet available` for cards.
func newWalletBalanceCmd(card bool) *cobra.Command {
	var path string
	var cf chainFlags
	use, short := "balance --wallet FILE [--genesis FILE|--node URL]", "Read the balance: validators re-encrypt it to your key; it is decrypted here"
	if card {
		use, short = "available --wallet CARD [--genesis FILE|--node URL]", "A card's available credit (limit - spent), decrypted here; the issuer never sees it"
	}
	c := &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			w, err := loadWallet(cmd, path)
			if err != nil {
				return err
			}
			if card && !w.IsCard() {
				return fmt.Errorf("wallet %s is a deposit account; use 'zkbank wallet balance'", w.Path())
			}
			ctx, m, cancel, err := cf.connect(cmd, w)
			defer cancel()
			if err != nil {
				return err
			}
			b, err := m.Balance(ctx, w)
			if err != nil {
				return err
			}
			printBalance(cmd.OutOrStdout(), w, b)
			return nil
		},
	}
	c.Flags().StringVar(&path, "wallet", "", "wallet file")
	cf.register(c)
	return c
}

func printBalance(o io.Writer, w *wallet.Wallet, b client.Balance) {
	pending := ""
	if b.Pending > 0 {
		pending = fmt.Sprintf("; %s pending (received; 'zkbank wallet apply' makes it spendable)", wallet.FormatAmount(b.Pending))
	}
	if !w.IsCard() {
		fmt.Fprintf(o, "%s: balance %s available%s (height %d)\n", w.Name, wallet.FormatAmount(b.Amount), pending, b.Height)
		return
	}
	fmt.Fprintf(o, "%s: available credit %s (height %d)", w.Name, wallet.FormatAmount(b.Amount), b.Height)
	if w.Limit > 0 && w.Limit >= b.Amount {
		fmt.Fprintf(o, "; limit %s, spent %s", wallet.FormatAmount(w.Limit), wallet.FormatAmount(w.Limit-b.Amount))
	}
	if b.Pending > 0 {
		fmt.Fprintf(o, "; repayments of %s pending ('zkbank wallet apply')", wallet.FormatAmount(b.Pending))
	}
	fmt.Fprintln(o)
}

// withWallet loads the wallet at path, connects to its chain and runs f.
func withWallet(cmd *cobra.Command, path string, cf *chainFlags, f func(context.Context, *client.Multi, *wallet.Wallet) error) error {
	w, err := loadWallet(cmd, path)
	if err != nil {
		return err
	}
	ctx, m, cancel, err := cf.connect(cmd, w)
	defer cancel()
	if err != nil {
		return err
	}
	return f(ctx, m, w)
}

// newWalletApplyCmd is `wallet apply`: move received funds into the
// available balance.
func newWalletApplyCmd() *cobra.Command {
	var path string
	var cf chainFlags
	c := &cobra.Command{
		Use:   "apply --wallet FILE [--genesis FILE|--node URL]",
		Short: "Make received funds spendable: moves the pending balance into the available one",
		Long: `Payments to an account land in its pending balance. This reads the pending
balance (re-encrypted to your key, decrypted here), then sends an apply: an
operation only you can sign that moves exactly that amount into the available
balance. A card's repayments are applied the same way.`,
		Example: "  zkbank wallet apply --wallet .testnet/wallets/bob.json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withWallet(cmd, path, &cf, func(ctx context.Context, m *client.Multi, w *wallet.Wallet) error {
				return operate(ctx, cmd.OutOrStdout(), m, w, []payee{{id: w.ID(), name: w.Name}}, true)
			})
		},
	}
	c.Flags().StringVar(&path, "wallet", "", "wallet file")
	cf.register(c)
	return c
}

// recipient resolves --to: an account id, or a wallet file (only its public
// fields are read).
func recipient(cmd *cobra.Command, to string) (ledger.AccountID, string, error) {
	if id, err := ledger.ParseAccountID(to); err == nil {
		return id, id.Short(), nil
	}
	if b, err := os.ReadFile(to); err == nil {
		var pub struct {
			Name    string `json:"name"`
			Account string `json:"account_id"`
		}
		if json.Unmarshal(b, &pub) != nil {
			return ledger.AccountID{}, "", fmt.Errorf("--to %s: not a wallet file", to)
		}
		id, err := ledger.ParseAccountID(pub.Account)
		if err != nil {
			return ledger.AccountID{}, "", fmt.Errorf("--to %s: wallet file has no valid account_id", to)
		}
		return id, pub.Name, nil
	}
	return ledger.AccountID{}, "", usagef(cmd, "--to %q: want a 64-hex-digit account id or a wallet file", to)
}

// newWalletTransferCmd is `wallet send`, or `wallet charge` for cards.
func newWalletTransferCmd(card bool) *cobra.Command {
	var path, to, amount string
	var cf chainFlags
	use, short := "send --wallet FILE --to ACCOUNT_ID|WALLET_FILE --amount 12.34", "Send money: reads your balance, encrypts the transfer, submits it and waits for the verdict"
	example := "  zkbank wallet send --wallet .testnet/wallets/alice.json --to .testnet/wallets/bob.json --amount 12.34"
	if card {
		use, short = "charge --wallet CARD --to MERCHANT --amount 12.34", "Charge a card: pays a merchant from the card's credit line"
		example = "  zkbank wallet charge --wallet .testnet/wallets/card.json --to .testnet/wallets/bob.json --amount 20"
	}
	c := &cobra.Command{
		Use:     use,
		Short:   short,
		Example: example,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := required(cmd, "wallet", "to", "amount"); err != nil {
				return err
			}
			cents, err := wallet.ParseAmount(amount)
			if err != nil {
				return usagef(cmd, "--amount: %v", err)
			}
			toID, toName, err := recipient(cmd, to)
			if err != nil {
				return err
			}
			w, err := wallet.Load(path)
			if err != nil {
				return err
			}
			if card && !w.IsCard() {
				return fmt.Errorf("wallet %s is a deposit account; use 'zkbank wallet send'", w.Path())
			}
			if !card && w.IsCard() {
				return fmt.Errorf("wallet %s is a card; use 'zkbank wallet charge'", w.Path())
			}
			ctx, m, cancel, err := cf.connect(cmd, w)
			defer cancel()
			if err != nil {
				return err
			}
			return transfer(ctx, cmd.OutOrStdout(), m, w, toID, toName, cents)
		},
	}
	c.Flags().StringVar(&path, "wallet", "", "wallet file of the payer")
	c.Flags().StringVar(&to, "to", "", "recipient: account id (64 hex digits) or wallet file")
	c.Flags().StringVar(&amount, "amount", "", "amount in currency units, e.g. 12.34")
	cf.register(c)
	return c
}

// transfer is the whole honest-wallet path: read, check, build, submit, wait;
// rebuilt from a fresh balance when the validators found it stale.
func transfer(ctx context.Context, o io.Writer, m *client.Multi, w *wallet.Wallet, to ledger.AccountID, toName string, cents uint64) error {
	if to == w.ID() {
		return errors.New("cannot pay yourself: sender and recipient are the same account (to make received funds spendable, use 'zkbank wallet apply')")
	}
	return operate(ctx, o, m, w, []payee{{id: to, name: toName, cents: cents}}, false)
}

// payee is one recipient of a payment and its amount.
type payee struct {
	id    ledger.AccountID
	name  string
	cents uint64
}

// operate sends one operation (a payment, or with apply the account's pending
// funds into its available balance) with client.Multi.Pay or ApplyPending
// (read, check, build, submit, wait; rebuilt from a fresh balance when the
// validators found it stale), printing its progress and verdict.
func operate(ctx context.Context, o io.Writer, m *client.Multi, w *wallet.Wallet, pays []payee, apply bool) error {
	var read client.Balance
	var start time.Time
	built, submitted := false, false
	hooks := &client.PayHooks{
		Read: func(b client.Balance) { read = b },
		Built: func(cents uint64, bal client.Balance, sealed int) {
			built, submitted = true, false
			if apply {
				fmt.Fprintf(o, "applying %s pending (read at height %d, sealed upload %d bytes)\n", wallet.FormatAmount(cents), bal.Height, sealed)
				return
			}
			verb, toName := "sending", pays[0].name
			if w.IsCard() {
				verb = "charging"
			}
			if len(pays) > 1 {
				toName = fmt.Sprintf("%d payees in one transfer", len(pays))
			}
			fmt.Fprintf(o, "%s %s to %s (balance read at height %d, sealed upload %d bytes)\n", verb, wallet.FormatAmount(cents), toName, bal.Height, sealed)
		},
		Submitted: func(id string, cents uint64) {
			submitted, start = true, time.Now()
			if err := w.Record(wallet.Entry{ID: id, To: pays[0].id.String(), Amount: cents, Time: time.Now().UTC()}); err != nil {
				fmt.Fprintf(o, "warning: %v\n", err)
			}
		},
		Retry: func(code string, attempt, max int) {
			fmt.Fprintf(o, "rejected as %s (nothing moved); rebuilding from a fresh balance (attempt %d of %d)\n", code, attempt, max)
		},
	}
	var res *client.PayResult
	var err error
	if apply {
		res, err = m.ApplyPending(ctx, w, hooks)
	} else {
		ps := make([]client.Payee, len(pays))
		for i, p := range pays {
			ps[i] = client.Payee{To: p.id, Amount: p.cents}
		}
		res, err = m.Pay(ctx, w, w.IsCard(), ps, hooks)
	}
	var ie *client.InsufficientError
	var ae *client.APIError
	switch {
	case err == nil:
	case errors.Is(err, client.ErrNothingPending):
		printBalance(o, w, read)
		return err
	case errors.As(err, &ie) && !ie.Card:
		hint := ""
		if ie.Pending > 0 {
			hint = fmt.Sprintf(" (%s received is pending: 'zkbank wallet apply' makes it spendable)", wallet.FormatAmount(ie.Pending))
		}
		what := "amount"
		if ie.Payees > 1 {
			what = "total"
		}
		return fmt.Errorf("insufficient funds: available %s, %s %s%s; nothing was sent", wallet.FormatAmount(ie.Available), what, wallet.FormatAmount(ie.Amount), hint)
	case built && !submitted && errors.As(err, &ae) && ae.Status/100 == 4:
		return fmt.Errorf("%s at admission: %s", refusedWord(w, ae.Code), ae.Message)
	case submitted:
		return fmt.Errorf("%w; check later with 'zkbank wallet history'", err)
	default:
		return err
	}
	st := res.Status
	if st.Status == api.StatusRejected {
		reason := st.Reason
		if reason == "" {
			reason = st.Code
		}
		return fmt.Errorf("%s: %s (%s); transfer id %s", refusedWord(w, st.Code), reason, st.Code, st.ID)
	}
	if st.Status == api.StatusCommitted {
		fmt.Fprintf(o, "committed in block %d after %s; transfer id %s\n", st.Height, time.Since(start).Round(10*time.Millisecond), st.ID)
	}
	// The debit lands in the state of the block that decided it; show it.
	nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if nb, err := m.BalanceAt(nctx, w, st.Height); err == nil {
		printBalance(o, w, nb)
	}
	return nil
}

// refusedWord is "rejected", or for a card over its limit, "declined:
// insufficient credit".
func refusedWord(w *wallet.Wallet, code string) string {
	if w.IsCard() {
		switch code {
		case "insufficient_funds", "balance_mismatch", "amount_range":
			return "declined: insufficient credit"
		}
		return "declined"
	}
	return "rejected"
}

func newWalletHistoryCmd() *cobra.Command {
	var path string
	var cf chainFlags
	c := &cobra.Command{
		Use:   "history --wallet FILE",
		Short: "List the account's transfers (amounts you sent come from this machine's journal)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withWallet(cmd, path, &cf, func(ctx context.Context, m *client.Multi, w *wallet.Wallet) error {
				return history(ctx, cmd, m, w)
			})
		},
	}
	c.Flags().StringVar(&path, "wallet", "", "wallet file")
	cf.register(c)
	return c
}

// history prints the account's transfers, with the amounts this machine's
// journal knows.
func history(ctx context.Context, cmd *cobra.Command, m *client.Multi, w *wallet.Wallet) error {
	h, err := m.History(ctx, w.Account)
	if err != nil {
		return err
	}
	journal, err := w.Journal()
	if err != nil {
		return err
	}
	names := siblingNames(filepath.Dir(w.Path()))
	o := cmd.OutOrStdout()
	if len(h.Transfers) == 0 {
		fmt.Fprintf(o, "no transfers for %s yet\n", w.Name)
		return nil
	}
	tw := tabwriter.NewWriter(o, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HEIGHT\tSTATUS\tDIRECTION\tCOUNTERPARTY\tAMOUNT\tID")
	for _, t := range h.Transfers {
		dir, other := "sent", t.To
		if len(t.Payees) > 1 {
			other = fmt.Sprintf("%d payees", len(t.Payees))
		}
		if t.From != w.Account && t.Receives(w.Account) {
			dir, other = "received", t.From
		}
		amount := "confidential"
		if e, ok := journal[t.ID]; ok {
			amount = wallet.FormatAmount(e.Amount)
		}
		status := t.Status
		if t.Status == api.StatusRejected && t.Code != "" {
			status += " (" + t.Code + ")"
		}
		who := shortID(other)
		if n, ok := names[other]; ok {
			who = n
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", t.Height, status, dir, who, amount, shortID(t.ID))
	}
	return tw.Flush()
}

func shortID(s string) string {
	if len(s) > 16 {
		return s[:16]
	}
	return s
}

// siblingNames maps account ids to wallet names of the wallet files next to
// this one (public fields only), to label counterparties.
func siblingNames(dir string) map[string]string {
	out := map[string]string{}
	paths, _ := filepath.Glob(filepath.Join(dir, "*.json"))
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		var pub struct {
			Name    string `json:"name"`
			Account string `json:"account_id"`
		}
		if json.Unmarshal(b, &pub) == nil && pub.Account != "" {
			out[pub.Account] = strings.TrimSpace(pub.Name)
		}
	}
	return out
}

// newWalletPayManyCmd is `wallet pay-many`: one upload paying several
// payees (payroll, a card acquirer settling merchants).
func newWalletPayManyCmd() *cobra.Command {
	var path, list string
	var pays []string
	var cf chainFlags
	c := &cobra.Command{
		Use:   "pay-many --wallet FILE (--pay RECIPIENT=AMOUNT ... | --list FILE)",
		Short: fmt.Sprintf("Pay 2 to %d recipients in one transfer: one debit of the total, one credit each", ledger.MaxPayees),
		Long: `Pays several recipients with one sealed upload and one signature. The
validators debit the total once and credit each recipient its own amount; each
amount is proven to be in [0, 2^32) and the total is, by construction, the sum
of the amounts credited. Like every amount, none of them is visible to anyone
but you. All recipients are paid, or (if the transfer is rejected) none.

RECIPIENT is an account id (64 hex digits) or a wallet file. --list reads one
"RECIPIENT,AMOUNT" per line (blank lines and lines starting with # skipped).`,
		Example: `  zkbank wallet pay-many --wallet .testnet/wallets/alice.json \
      --pay .testnet/wallets/bob.json=12.50 --pay .testnet/wallets/carol.json=7
  zkbank wallet pay-many --wallet .testnet/wallets/alice.json --list payroll.csv`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := required(cmd, "wallet"); err != nil {
				return err
			}
			lines := append([]string(nil), pays...)
			if list != "" {
				b, err := os.ReadFile(list)
				if err != nil {
					return fmt.Errorf("--list: %w", err)
				}
				for _, l := range strings.Split(string(b), "\n") {
					if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
						lines = append(lines, strings.Replace(l, ",", "=", 1))
					}
				}
			}
			if len(lines) < 2 || len(lines) > ledger.MaxPayees {
				return usagef(cmd, "pay-many needs 2 to %d recipients, got %d (use 'zkbank wallet send' for one)", ledger.MaxPayees, len(lines))
			}
			w, err := wallet.Load(path)
			if err != nil {
				return err
			}
			if w.IsCard() {
				return fmt.Errorf("wallet %s is a card; a card charges one merchant at a time ('zkbank wallet charge')", w.Path())
			}
			var out []payee
			seen := map[ledger.AccountID]bool{w.ID(): true}
			for _, l := range lines {
				i := strings.LastIndex(l, "=")
				if i <= 0 {
					return usagef(cmd, "%q: want RECIPIENT=AMOUNT", l)
				}
				id, name, err := recipient(cmd, strings.TrimSpace(l[:i]))
				if err != nil {
					return err
				}
				if seen[id] {
					return usagef(cmd, "%s: a recipient may appear once, and not be the payer", name)
				}
				seen[id] = true
				cents, err := wallet.ParseAmount(strings.TrimSpace(l[i+1:]))
				if err != nil {
					return usagef(cmd, "%q: %v", l, err)
				}
				out = append(out, payee{id: id, name: name, cents: cents})
			}
			ctx, m, cancel, err := cf.connect(cmd, w)
			defer cancel()
			if err != nil {
				return err
			}
			return operate(ctx, cmd.OutOrStdout(), m, w, out, false)
		},
	}
	c.Flags().StringVar(&path, "wallet", "", "wallet file of the payer")
	c.Flags().StringArrayVar(&pays, "pay", nil, "RECIPIENT=AMOUNT (repeat for each recipient)")
	c.Flags().StringVar(&list, "list", "", `file with one "RECIPIENT,AMOUNT" per line`)
	cf.register(c)
	return c
}
