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
	"github.com/zkbank/zkbank/lending"
	"github.com/zkbank/zkbank/wallet"
)

// Lending commands of `zkbank wallet` (docs/LENDING.md): the credit score,
// consents to lenders, loan applications, loans and repayments.

// lendingCommands are the wallet subcommands for borrowers.
func lendingCommands() []*cobra.Command {
	return []*cobra.Command{newWalletScoreCmd(), newWalletConsentCmd(), newWalletLoanCmd(), newWalletLoansCmd()}
}

// accountArg resolves an account flag: an account id (64 hex digits) or a
// wallet file (only its public fields are read). It returns the id and a
// display name.
func accountArg(cmd *cobra.Command, flag, v string) (ledger.AccountID, string, error) {
	if id, err := ledger.ParseAccountID(v); err == nil {
		return id, id.Short(), nil
	}
	b, err := os.ReadFile(v)
	if err != nil {
		return ledger.AccountID{}, "", usagef(cmd, "--%s %q: want a 64-hex-digit account id or a wallet file", flag, v)
	}
	var pub struct {
		Name    string `json:"name"`
		Account string `json:"account_id"`
	}
	if json.Unmarshal(b, &pub) != nil {
		return ledger.AccountID{}, "", fmt.Errorf("--%s %s: not a wallet file", flag, v)
	}
	id, err := ledger.ParseAccountID(pub.Account)
	if err != nil {
		return ledger.AccountID{}, "", fmt.Errorf("--%s %s: wallet file has no valid account_id", flag, v)
	}
	return id, pub.Name, nil
}

// namer labels accounts with the names of the wallet files next to the
// wallet (and in the testnet's lending directory), else a short id.
type namer map[string]string

func newNamer(w *wallet.Wallet) namer {
	n := namer(siblingNames(filepath.Dir(w.Path())))
	// A testnet's lender pool lives in DIR/lending, beside DIR/wallets.
	for id, name := range siblingNames(filepath.Join(filepath.Dir(filepath.Dir(w.Path())), "lending")) {
		if _, ok := n[id]; !ok {
			n[id] = name
		}
	}
	return n
}

func (n namer) name(id string) string {
	if s, ok := n[id]; ok && s != "" {
		return s
	}
	return shortID(id)
}

// --- wallet score ---

func newWalletScoreCmd() *cobra.Command {
	var path string
	var cf chainFlags
	c := &cobra.Command{
		Use:   "score --wallet FILE [--genesis FILE|--node URL]",
		Short: "Your credit score, decrypted here, and what it is made of",
		Long: `Reads your credit score: validators compute it from your encrypted balances
and re-encrypt it to your key; it is decrypted on this machine, as a balance is.

    S = base + avail_weight * A + repaid_weight * R + penalty * max(0, grace - D)

A is your available balance (a card's available credit), R the sum of the loan
installments you repaid on time, D the number of installments you missed
(public). The weights are the chain's (from its genesis). Nobody reads R on its
own: it is derived here as what S leaves once the other terms are taken out.
A lender learns your score only if you consent ('zkbank wallet consent grant'),
or one bit, "S >= its minimum", if you apply with a check ('zkbank wallet loan
apply --policy ...').`,
		Example: "  zkbank wallet score --wallet .testnet/wallets/alice.json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withWallet(cmd, path, &cf, func(ctx context.Context, m *client.Multi, w *wallet.Wallet) error {
				return showScore(ctx, cmd.OutOrStdout(), m, w)
			})
		},
	}
	c.Flags().StringVar(&path, "wallet", "", "wallet file")
	cf.register(c)
	return c
}

// scoreParts splits a score into its terms. ok is false when the inputs do
// not add up (read at different heights with an operation in between).
type scoreParts struct {
	base, avail, repaidPart, public uint64
	repaid                          uint64 // R in cents
	ok                              bool
}

func splitScore(p api.ScoreParams, score, available uint64, defaults uint32) scoreParts {
	sp := ledger.ScoreParams{Base: p.Base, Avail: p.Avail, Repaid: p.Repaid, Penalty: p.Penalty, Grace: p.Grace}
	out := scoreParts{base: p.Base, avail: p.Avail * available, public: sp.PublicPart(defaults)}
	rest := out.public + out.avail
	if score < rest {
		return out
	}
	out.repaidPart = score - rest
	switch {
	case p.Repaid == 0:
		out.ok = out.repaidPart == 0
	case out.repaidPart%p.Repaid == 0:
		out.repaid, out.ok = out.repaidPart/p.Repaid, true
	}
	return out
}

func showScore(ctx context.Context, o io.Writer, m *client.Multi, w *wallet.Wallet) error {
	sc, err := m.Score(ctx, w)
	if err != nil {
		return fmt.Errorf("reading your score: %w", err)
	}
	bal, err := m.BalanceAt(ctx, w, sc.Height)
	if err != nil {
		return fmt.Errorf("reading your balance: %w", err)
	}
	lend, err := lending.Lending(ctx, m, w.Account, sc.Height)
	if err != nil {
		return err
	}
	p := lend.Score
	parts := splitScore(p, sc.Value, bal.Amount, lend.Defaults)
	fmt.Fprintf(o, "%s: credit score %d (height %d, decrypted here)\n", w.Name, sc.Value, sc.Height)
	line := func(label string, v any, note string) {
		fmt.Fprintf(o, "  %-46s %10v%s\n", label, v, note)
	}
	line("base", p.Base, "")
	what := "available balance"
	if w.IsCard() {
		what = "available credit"
	}
	line(fmt.Sprintf("+ %d x %s %s", p.Avail, what, wallet.FormatAmount(bal.Amount)), parts.avail, "")
	if parts.ok {
		line(fmt.Sprintf("+ %d x repaid on time %s", p.Repaid, wallet.FormatAmount(parts.repaid)), parts.repaidPart, "  (derived)")
	} else {
		line(fmt.Sprintf("+ %d x repaid on time", p.Repaid), "?", "")
	}
	left := uint32(0)
	if lend.Defaults < p.Grace {
		left = p.Grace - lend.Defaults
	}
	line(fmt.Sprintf("+ %d x max(0, grace %d - %d defaults)", p.Penalty, p.Grace, lend.Defaults), p.Penalty*uint64(left), "")
	if parts.ok {
		fmt.Fprintln(o, "  The repaid-on-time sum is encrypted like a balance and never read alone: it is your score minus the other terms.")
	} else {
		fmt.Fprintln(o, "  The repaid-on-time sum could not be derived: your available balance changed between the two reads (run again).")
	}
	if bal.Height != sc.Height {
		fmt.Fprintf(o, "  (available balance read at height %d: only your own operations change it)\n", bal.Height)
	}
	if bal.Pending > 0 {
		fmt.Fprintf(o, "  %s pending does not count until you apply it ('zkbank wallet apply').\n", wallet.FormatAmount(bal.Pending))
	}
	switch n := len(lend.Loans); n {
	case 0:
		fmt.Fprintln(o, "open loans: none")
	default:
		fmt.Fprintf(o, "open loans: %d ('zkbank wallet loans --wallet %s' lists them)\n", n, w.Path())
	}
	return nil
}

// --- wallet consent ---

func newWalletConsentCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "consent",
		Short: "Let a lender read your credit score, withdraw that, or list your consents",
		Long: `A score consent lets one lender read your credit score itself (re-encrypted to
the lender's key by the validators) until it expires or you revoke it. You sign
it; a block records it on chain. A recorded consent is also a loan application
to that lender. Lenders you did not consent to learn nothing of your score.`,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	c.AddCommand(newConsentGrantCmd(), newConsentRevokeCmd(), newConsentListCmd())
	return c
}

// defaultConsentSpan is how long a consent stays valid by default, in heights.
const defaultConsentSpan = 4096

func newConsentGrantCmd() *cobra.Command {
	var path, lender string
	var expiryIn uint64
	var cf chainFlags
	c := &cobra.Command{
		Use:   "grant --wallet FILE --lender ACCOUNT [--expiry-in HEIGHTS]",
		Short: "Let a lender read your score until an expiry height (also a loan application to it)",
		Example: `  zkbank wallet consent grant --wallet .testnet/wallets/alice.json --lender .testnet/lending/pool.json
  zkbank wallet consent grant --wallet alice.json --lender 3fa2...e9 --expiry-in 1000`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := required(cmd, "wallet", "lender"); err != nil {
				return err
			}
			lid, lname, err := accountArg(cmd, "lender", lender)
			if err != nil {
				return err
			}
			if expiryIn == 0 || expiryIn > ledger.MaxConsentSpan {
				return usagef(cmd, "--expiry-in %d: want 1 to %d heights", expiryIn, ledger.MaxConsentSpan)
			}
			return withWallet(cmd, path, &cf, func(ctx context.Context, m *client.Multi, w *wallet.Wallet) error {
				_, err := grantConsent(ctx, cmd.OutOrStdout(), m, w, lid, lname, expiryIn, nil, [32]byte{})
				return err
			})
		},
	}
	c.Flags().StringVar(&path, "wallet", "", "wallet file of the score's owner")
	c.Flags().StringVar(&lender, "lender", "", "the lender: account id or wallet file")
	c.Flags().Uint64Var(&expiryIn, "expiry-in", defaultConsentSpan, "heights until the consent expires")
	cf.register(c)
	return c
}

// grantConsent signs, submits and waits for the recording of a score
// consent to lender; it returns the consent's (and application's) id.
func grantConsent(ctx context.Context, o io.Writer, m *client.Multi, w *wallet.Wallet, lender ledger.AccountID, lname string, expiryIn uint64, pol *lending.Policy, policyHash [32]byte) (string, error) {
	if lender == w.ID() {
		return "", errors.New("the lender is your own account; nothing was sent")
	}
	if err := waitLender(ctx, m, lender); err != nil {
		return "", err
	}
	lend, err := lending.Lending(ctx, m, w.Account, 0)
	if err != nil {
		return "", err
	}
	c, err := w.SignConsent(m.Chain(), lender, ledger.ScopeScore, lend.Height+expiryIn, lend.Height, lend.ConsentNonce)
	if err != nil {
		return "", err
	}
	id, err := m.SubmitConsent(ctx, c)
	if err != nil {
		return "", consentErr(err)
	}
	fmt.Fprintf(o, "consent %s to %s submitted (nonce %d, valid through height %d); waiting for a block to record it\n", shortID(id), lname, c.Nonce, c.Expiry)
	rec, err := waitConsent(ctx, m, w, c.Nonce)
	if err != nil {
		return id, err
	}
	ap := wallet.ApplicationRecord{ID: id, Lender: lender.String(), Kind: wallet.ApplyConsent, Height: rec, Time: time.Now().UTC()}
	if pol != nil {
		ap.Policy, ap.PolicyName, ap.Amount, ap.Installments = hex.EncodeToString(policyHash[:]), pol.Name, pol.Cents(), pol.InstallmentAmounts()
	}
	if err := w.UpdateLending(func(s *wallet.Lending) error { s.Applications = append(s.Applications, ap); return nil }); err != nil {
		fmt.Fprintf(o, "warning: %v\n", err)
	}
	fmt.Fprintf(o, "recorded by height %d: %s may read your score until height %d ('zkbank wallet consent revoke' withdraws it)\n", rec, lname, c.Expiry)
	fmt.Fprintf(o, "this consent is also a loan application to %s (application %s)\n", lname, id)
	return id, nil
}

// waitLender checks that the lender's account exists (waiting briefly for
// one opened a moment ago), before anything is signed or sent.
func waitLender(ctx context.Context, m *client.Multi, lender ledger.AccountID) error {
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err := m.WaitAccount(wctx, lender.String(), 1)
	cancel()
	if err == nil || ctx.Err() != nil {
		return ctx.Err()
	}
	_, err = m.Account(ctx, lender.String())
	if errors.Is(err, client.ErrUnknownAccount) {
		return fmt.Errorf("unknown lender account %s on chain %s; nothing was sent", lender, m.Chain())
	}
	return err
}

// consentErr words a node's refusal of a consent.
func consentErr(err error) error {
	var ae *client.APIError
	if errors.As(err, &ae) && ae.Status/100 == 4 {
		return fmt.Errorf("consent refused: %s; nothing was recorded", ae.Message)
	}
	return err
}

// waitConsent waits until the chain has recorded the owner's consent of
// nonce (its consent nonce reached it) and returns the height it saw it at.
func waitConsent(ctx context.Context, m *client.Multi, w *wallet.Wallet, nonce uint64) (uint64, error) {
	for {
		l, err := m.Lending(ctx, w.Account)
		if err != nil && !errors.Is(err, client.ErrUnreachable) {
			return 0, err
		}
		if err == nil && l.ConsentNonce >= nonce {
			return l.Height, nil
		}
		select {
		case <-ctx.Done():
			return 0, fmt.Errorf("consent nonce %d not recorded yet: %w (it may still be; 'zkbank wallet consent list' shows it)", nonce, ctx.Err())
		case <-time.After(300 * time.Millisecond):
		}
	}
}

func newConsentRevokeCmd() *cobra.Command {
	var path, lender string
	var cf chainFlags
	c := &cobra.Command{
		Use:     "revoke --wallet FILE --lender ACCOUNT",
		Short:   "Withdraw every score consent you gave a lender",
		Example: "  zkbank wallet consent revoke --wallet .testnet/wallets/alice.json --lender .testnet/lending/pool.json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := required(cmd, "wallet", "lender"); err != nil {
				return err
			}
			lid, lname, err := accountArg(cmd, "lender", lender)
			if err != nil {
				return err
			}
			return withWallet(cmd, path, &cf, func(ctx context.Context, m *client.Multi, w *wallet.Wallet) error {
				o := cmd.OutOrStdout()
				lend, err := lending.Lending(ctx, m, w.Account, 0)
				if err != nil {
					return err
				}
				live := 0
				for _, c := range lend.Consents {
					if c.Lender == lid.String() && !c.Revoked && c.Expiry >= lend.Height {
						live++
					}
				}
				if live == 0 {
					return fmt.Errorf("nothing to revoke: you have no live consent to %s on chain ('zkbank wallet consent list'); nothing was sent", lname)
				}
				c, err := w.SignConsent(m.Chain(), lid, ledger.ScopeRevoke, lend.Height, lend.Height, lend.ConsentNonce)
				if err != nil {
					return err
				}
				if _, err := m.SubmitConsent(ctx, c); err != nil {
					return consentErr(err)
				}
				fmt.Fprintf(o, "revocation of %d consent(s) to %s submitted (nonce %d); waiting for a block to record it\n", live, lname, c.Nonce)
				h, err := waitConsent(ctx, m, w, c.Nonce)
				if err != nil {
					return err
				}
				fmt.Fprintf(o, "revoked by height %d: %s can no longer read your score\n", h, lname)
				return nil
			})
		},
	}
	c.Flags().StringVar(&path, "wallet", "", "wallet file of the score's owner")
	c.Flags().StringVar(&lender, "lender", "", "the lender: account id or wallet file")
	cf.register(c)
	return c
}

func newConsentListCmd() *cobra.Command {
	var path string
	var cf chainFlags
	c := &cobra.Command{
		Use:   "list --wallet FILE",
		Short: "List the score consents recorded on chain for your account",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withWallet(cmd, path, &cf, func(ctx context.Context, m *client.Multi, w *wallet.Wallet) error {
				lend, err := lending.Lending(ctx, m, w.Account, 0)
				if err != nil {
					return err
				}
				o := cmd.OutOrStdout()
				if len(lend.Consents) == 0 {
					fmt.Fprintf(o, "%s has no score consents on chain (height %d; consent nonce %d)\n", w.Name, lend.Height, lend.ConsentNonce)
					return nil
				}
				names := newNamer(w)
				fmt.Fprintf(o, "%s: score consents at height %d\n", w.Name, lend.Height)
				tw := tabwriter.NewWriter(o, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "LENDER\tSCOPE\tNONCE\tEXPIRY\tSTATUS\tID")
				for _, c := range lend.Consents {
					status := "live"
					switch {
					case c.Revoked:
						status = "revoked"
					case c.Expiry < lend.Height:
						status = "expired"
					}
					fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\t%s\n", names.name(c.Lender), c.Scope, c.Nonce, c.Expiry, status, shortID(c.ID))
				}
				return tw.Flush()
			})
		},
	}
	c.Flags().StringVar(&path, "wallet", "", "wallet file")
	cf.register(c)
	return c
}

// --- wallet loan ---

func newWalletLoanCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "loan",
		Short: "Apply for a loan (score check or score consent), or repay one",
		Long: `Lenders publish a policy file (JSON: name, mode, min_score, amount,
installments, interval, max_open_loans) and its SHA-256. You apply in the
lender's mode:

  decision  'loan apply --policy FILE --min N': your wallet reads your score,
            refuses here if it is below N (nothing sent), else sends a check;
            the validators' verdict tells the lender one bit, score >= N.
  score     'loan apply --share-score': records a score consent; the lender
            reads your score itself.

A loan arrives in your pending balance with public installment heights; each
repayment ('loan repay') committed by its due height adds to your score, each
installment missed is a default that lowers it.`,
		RunE: func(cmd *cobra.Command, args []string) error { return cmd.Help() },
	}
	c.AddCommand(newLoanApplyCmd(), newLoanRepayCmd())
	return c
}

func newLoanApplyCmd() *cobra.Command {
	var path, lender, policy string
	var minScore, expiryIn uint64
	var share, waitLoan bool
	var cf chainFlags
	c := &cobra.Command{
		Use:   "apply --wallet FILE --lender ACCOUNT (--policy FILE|URL|SHA256 [--min N] | --share-score)",
		Short: "Apply for a loan: prove score >= the lender's minimum (one bit), or share your score",
		Long: `Decision mode (--policy): reads your score at a committed height, refuses here
if it is below the minimum (nothing is sent: a failed check would publish how
far below it is), else sends an OpCheck addressed to the lender, naming the
policy's SHA-256 and the minimum, and waits for its verdict. Accepted means
the validators proved score >= minimum; that bit (public to everyone) is all
the lender learns, and the accepted check is your application.

--policy takes the lender's policy file, a URL serving it, or its SHA-256 (64
hex digits, then --min is required). With a file or URL, --min defaults to
its min_score.

Score mode (--share-score): records a score consent to the lender (see
'zkbank wallet consent grant'), which is your application; the lender reads
your score itself.`,
		Example: `  zkbank wallet loan apply --wallet .testnet/wallets/alice.json --lender .testnet/lending/pool.json --policy .testnet/lending/policy.json
  zkbank wallet loan apply --wallet alice.json --lender 3fa2...e9 --policy 9c1d...07 --min 250000
  zkbank wallet loan apply --wallet alice.json --lender 3fa2...e9 --share-score`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := required(cmd, "wallet", "lender"); err != nil {
				return err
			}
			hasMin := cmd.Flags().Changed("min")
			if share && hasMin {
				return usagef(cmd, "--min applies to a check, not to --share-score")
			}
			if !share && policy == "" {
				return usagef(cmd, "give --policy (the lender's policy file, URL or SHA-256) or --share-score")
			}
			lid, lname, err := accountArg(cmd, "lender", lender)
			if err != nil {
				return err
			}
			var pol *lending.Policy
			var hash [32]byte
			if policy != "" {
				if pol, hash, err = lending.ResolvePolicy(cmd.Context(), policy); err != nil {
					return err
				}
			}
			if pol != nil {
				lname = fmt.Sprintf("%s (%s)", lname, pol.Name)
			}
			if share {
				if pol != nil && pol.Mode != lending.ModeScore {
					return fmt.Errorf("policy %s decides on one bit (mode %s): apply with --policy and --min, without --share-score; nothing was sent", pol.Name, pol.Mode)
				}
				if expiryIn == 0 || expiryIn > ledger.MaxConsentSpan {
					return usagef(cmd, "--expiry-in %d: want 1 to %d heights", expiryIn, ledger.MaxConsentSpan)
				}
			} else {
				if pol != nil && pol.Mode != lending.ModeDecision {
					return fmt.Errorf("policy %s reads the score itself (mode %s): apply with --share-score; nothing was sent", pol.Name, pol.Mode)
				}
				switch {
				case !hasMin && pol == nil:
					return usagef(cmd, "--policy is a hash: give the lender's published minimum with --min")
				case !hasMin:
					minScore = pol.MinScore
				case pol != nil && minScore < pol.MinScore:
					return usagef(cmd, "--min %d is below the policy's min_score %d: the lender would refuse it", minScore, pol.MinScore)
				}
				if minScore > ledger.MaxAmount {
					return usagef(cmd, "--min %d exceeds %d", minScore, uint64(ledger.MaxAmount))
				}
			}
			w, err := loadWallet(cmd, path)
			if err != nil {
				return err
			}
			ctx, m, cancel, err := cf.connect(cmd, w)
			defer cancel()
			if err != nil {
				return err
			}
			o := cmd.OutOrStdout()
			if share {
				appID, err := grantConsent(ctx, o, m, w, lid, lname, expiryIn, pol, hash)
				if err != nil {
					return err
				}
				if waitLoan {
					return waitForLoan(ctx, o, m, w, lid, appID)
				}
				return nil
			}
			appID, err := applyCheck(ctx, o, m, w, lid, lname, minScore, hash, pol)
			if err != nil {
				return err
			}
			if waitLoan {
				return waitForLoan(ctx, o, m, w, lid, appID)
			}
			return nil
		},
	}
	c.Flags().StringVar(&path, "wallet", "", "wallet file of the borrower")
	c.Flags().StringVar(&lender, "lender", "", "the lender's pool: account id or wallet file")
	c.Flags().StringVar(&policy, "policy", "", "the lender's policy: file, http(s) URL, or its SHA-256")
	c.Flags().Uint64Var(&minScore, "min", 0, "the lender's published minimum score (default: the policy's min_score)")
	c.Flags().BoolVar(&share, "share-score", false, "apply by letting the lender read your score (a score consent)")
	c.Flags().Uint64Var(&expiryIn, "expiry-in", defaultConsentSpan, "with --share-score: heights until the consent expires")
	c.Flags().BoolVar(&waitLoan, "wait-loan", false, "after applying, wait (up to --timeout) until the lender funds the application")
	cf.register(c)
	return c
}

// applyCheck sends a decision-only score check and waits for its verdict;
// it returns the application's id (the check's).
func applyCheck(ctx context.Context, o io.Writer, m *client.Multi, w *wallet.Wallet, lender ledger.AccountID, lname string, minScore uint64, policy [32]byte, pol *lending.Policy) (string, error) {
	if lender == w.ID() {
		return "", errors.New("the lender is your own account; nothing was sent")
	}
	if err := waitLender(ctx, m, lender); err != nil {
		return "", err
	}
	a := lending.NewActor(m, w)
	a.Progress = func(s string) { fmt.Fprintln(o, s) }
	var score client.Score
	st, _, err := a.Do(ctx, "check", func(ctx context.Context, acct *api.Account, base wallet.OpBase) (ledger.TransferSpec, error) {
		// The score at a committed height including every operation of
		// the account; the check names that height.
		sc, err := m.ScoreAt(ctx, w, acct.Height)
		if err != nil {
			return ledger.TransferSpec{}, fmt.Errorf("reading your score: %w", err)
		}
		score = sc
		fmt.Fprintf(o, "%s: score %d at height %d (decrypted here); %s's minimum %d\n", w.Name, sc.Value, sc.Height, lname, minScore)
		if sc.Value < minScore {
			return ledger.TransferSpec{}, fmt.Errorf("refused here: your score %d is below %s's minimum %d; a check could only fail, and a failed check would publish how far below it is; nothing was sent",
				sc.Value, lname, minScore)
		}
		base.Height = sc.Height
		fmt.Fprintf(o, "sending a check to %s: proves only \"score >= %d\" under policy %s\n", lname, minScore, shortID(hex.EncodeToString(policy[:])))
		return w.CheckSpec(base, lender, minScore, policy, sc.Value), nil
	})
	if errors.Is(err, ledger.ErrScoreRange) {
		return "", fmt.Errorf("your score %d exceeds the minimum %d by 2^32 or more, more than one check proves: ask the lender for a higher minimum; nothing was sent", score.Value, minScore)
	}
	if err != nil {
		return "", err
	}
	if st.Status != api.StatusCommitted {
		return "", fmt.Errorf("check rejected: %s (%s); operation %s", st.Reason, st.Code, st.ID)
	}
	ap := wallet.ApplicationRecord{ID: st.ID, Lender: lender.String(), Kind: wallet.ApplyCheck, Policy: hex.EncodeToString(policy[:]),
		Min: minScore, Height: score.Height, Time: time.Now().UTC()}
	if pol != nil {
		ap.PolicyName, ap.Amount, ap.Installments = pol.Name, pol.Cents(), pol.InstallmentAmounts()
	}
	if err := w.UpdateLending(func(s *wallet.Lending) error { s.Applications = append(s.Applications, ap); return nil }); err != nil {
		fmt.Fprintf(o, "warning: %v\n", err)
	}
	fmt.Fprintf(o, "accepted in block %d: your score is at least %d; that bit is all %s learns\n", st.Height, minScore, lname)
	offer := ""
	if pol != nil {
		offer = fmt.Sprintf(" (its policy: %s in %d installments of %s, every %d heights)", wallet.FormatAmount(pol.Cents()), pol.Installments,
			wallet.FormatAmount(pol.InstallmentAmounts()[0]), pol.Interval)
	}
	fmt.Fprintf(o, "application %s is open to %s for %d heights%s; 'zkbank wallet loans' shows the loan once funded\n", st.ID, lname, ledger.ApplicationWindow, offer)
	return st.ID, nil
}

// waitForLoan waits until lender funds application appID (a loan answering
// it appears among the account's loans), with a progress line.
func waitForLoan(ctx context.Context, o io.Writer, m *client.Multi, w *wallet.Wallet, lender ledger.AccountID, appID string) error {
	fmt.Fprintln(o, "waiting for the lender to fund it...")
	known := map[string]bool{}
	if l, err := m.Lending(ctx, w.Account); err == nil {
		for _, ln := range l.Loans {
			known[ln.ID] = true
		}
	}
	for {
		l, err := m.Lending(ctx, w.Account)
		if err == nil {
			for _, ln := range l.Loans {
				if known[ln.ID] || ln.Lender != lender.String() {
					continue
				}
				rec := syncLoan(ctx, m, w, ln)
				if rec.Application != "" && rec.Application != appID {
					known[ln.ID] = true
					continue
				}
				fmt.Fprintf(o, "funded in block %d: loan %s, %s\n", ln.Start, ln.ID, scheduleText(ln, rec, l.Height))
				return nil
			}
			open := false
			for _, ap := range l.Applications {
				open = open || ap.ID == appID
			}
			if !open {
				return fmt.Errorf("application %s is no longer open and no new loan from the lender answers it (funded and already settled, or expired)", shortID(appID))
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("no loan yet: %w (the application stays open; 'zkbank wallet loans' shows the loan once funded)", ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// syncLoan returns the wallet's record of an open loan, creating it from the
// loan's funding operation and the application it answers (whose policy
// says the amounts) if the wallet has none yet.
func syncLoan(ctx context.Context, m *client.Multi, w *wallet.Wallet, ln api.LoanInfo) wallet.LoanRecord {
	var rec wallet.LoanRecord
	s, err := w.LoadLending()
	if err == nil {
		if r := s.Loan(ln.ID); r != nil {
			return *r
		}
	}
	rec = wallet.LoanRecord{ID: ln.ID, Lender: ln.Lender, Due: ln.Due}
	tctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	st, terr := m.WaitTransfer(tctx, ln.ID)
	cancel()
	if terr == nil {
		rec.Application = st.Application
	}
	_ = w.UpdateLending(func(s *wallet.Lending) error {
		if r := s.Loan(ln.ID); r != nil {
			rec = *r
			return nil
		}
		ap := s.Application(rec.Application)
		if ap == nil && rec.Application == "" {
			ap = s.LatestApplication(ln.Lender)
		}
		if ap != nil && len(ap.Installments) == len(ln.Due) {
			rec.Amount, rec.Installments = ap.Amount, append([]uint64(nil), ap.Installments...)
		}
		s.Loans = append(s.Loans, rec)
		return nil
	})
	return rec
}

// scheduleText describes a loan's next installment.
func scheduleText(ln api.LoanInfo, rec wallet.LoanRecord, height uint64) string {
	next := ln.Paid + ln.Missed
	amount := ""
	if rec.Amount > 0 {
		amount = wallet.FormatAmount(rec.Amount) + " in "
	}
	s := fmt.Sprintf("%s%d installments due at heights %s", amount, len(ln.Due), joinHeights(ln.Due))
	if next < len(ln.Due) {
		due := ln.Due[next]
		inst := ""
		if a := rec.Installment(next); a > 0 {
			inst = " of " + wallet.FormatAmount(a)
		}
		if due >= height {
			s += fmt.Sprintf("; next: installment %d%s by height %d (in %d heights)", next+1, inst, due, due-height)
		} else {
			s += fmt.Sprintf("; next: installment %d%s was due at height %d", next+1, inst, due)
		}
	}
	return s
}

func joinHeights(h []uint64) string {
	s := make([]string, len(h))
	for i, x := range h {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}

func newLoanRepayCmd() *cobra.Command {
	var path, loan, amount string
	var cf chainFlags
	c := &cobra.Command{
		Use:   "repay --wallet FILE --loan ID [--amount AMOUNT]",
		Short: "Repay an installment of a loan (from your available balance)",
		Long: `Pays the loan's lender an installment, tagged with the loan (an OpRepay). A
repayment counts for the loan's next unsettled installment: ordered by that
installment's due height, it counts as repaid on time and its amount adds to
your score's repaid-on-time sum; after it, the installment was already missed.

--loan takes the loan id ('zkbank wallet loans'), or a unique prefix of it.
--amount defaults to the installment's amount when this wallet knows the
lender's policy (it applied with a policy file or URL). The chain does not
compare the amount with the installment: the lender sees what it receives.`,
		Example: `  zkbank wallet loan repay --wallet .testnet/wallets/alice.json --loan 5c0e1f
  zkbank wallet loan repay --wallet alice.json --loan 5c0e1f2a... --amount 33.33`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := required(cmd, "wallet", "loan"); err != nil {
				return err
			}
			var cents uint64
			if amount != "" {
				var err error
				if cents, err = wallet.ParseAmount(amount); err != nil {
					return usagef(cmd, "--amount: %v", err)
				}
			}
			loan = strings.ToLower(strings.TrimSpace(loan))
			if len(loan) < 6 || len(loan) > 64 {
				return usagef(cmd, "--loan %q: want the loan id (64 hex digits) or a unique prefix of at least 6", loan)
			}
			if _, err := hex.DecodeString(loan[:len(loan)&^1]); err != nil {
				return usagef(cmd, "--loan %q: not hex", loan)
			}
			return withWallet(cmd, path, &cf, func(ctx context.Context, m *client.Multi, w *wallet.Wallet) error {
				return repay(ctx, cmd.OutOrStdout(), m, w, loan, cents)
			})
		},
	}
	c.Flags().StringVar(&path, "wallet", "", "wallet file of the borrower")
	c.Flags().StringVar(&loan, "loan", "", "the loan id, or a unique prefix")
	c.Flags().StringVar(&amount, "amount", "", "amount in currency units, e.g. 33.33 (default: the installment, if known)")
	cf.register(c)
	return c
}

// findLoan picks the open loan whose id is or starts with prefix.
func findLoan(l *api.Lending, prefix string) (*api.LoanInfo, error) {
	var hit *api.LoanInfo
	for i := range l.Loans {
		if strings.HasPrefix(l.Loans[i].ID, prefix) {
			if hit != nil {
				return nil, fmt.Errorf("--loan %s matches several loans; give more digits", prefix)
			}
			hit = &l.Loans[i]
		}
	}
	if hit == nil {
		return nil, fmt.Errorf("no open loan %s on your account at height %d ('zkbank wallet loans' lists them; a fully settled loan is closed); nothing was sent", prefix, l.Height)
	}
	return hit, nil
}

func repay(ctx context.Context, o io.Writer, m *client.Multi, w *wallet.Wallet, prefix string, cents uint64) error {
	lend, err := lending.Lending(ctx, m, w.Account, 0)
	if err != nil {
		return err
	}
	ln, err := findLoan(lend, prefix)
	if err != nil {
		return err
	}
	rec := syncLoan(ctx, m, w, *ln)
	next := ln.Paid + ln.Missed
	if next >= len(ln.Due) {
		return fmt.Errorf("loan %s has no installment left (paid %d, missed %d); nothing was sent", shortID(ln.ID), ln.Paid, ln.Missed)
	}
	if cents == 0 {
		if cents = rec.Installment(next); cents == 0 {
			return errors.New("--amount is required: this wallet does not know the loan's installments (it applied without the lender's policy file)")
		}
	}
	lenderID, err := ledger.ParseAccountID(ln.Lender)
	if err != nil {
		return fmt.Errorf("loan %s: lender %w", shortID(ln.ID), err)
	}
	loanID, err := client.ParseOpID(ln.ID)
	if err != nil {
		return err
	}
	names := newNamer(w)
	due := ln.Due[next]
	when := fmt.Sprintf("due at height %d", due)
	if due >= lend.Height {
		when = fmt.Sprintf("due by height %d, %d heights from now", due, due-lend.Height)
	}
	fmt.Fprintf(o, "repaying %s on loan %s to %s: installment %d of %d, %s\n", wallet.FormatAmount(cents), shortID(ln.ID), names.name(ln.Lender), next+1, len(ln.Due), when)
	a := lending.NewActor(m, w)
	a.Progress = func(s string) { fmt.Fprintln(o, s) }
	st, _, err := a.Do(ctx, "repayment", func(ctx context.Context, acct *api.Account, base wallet.OpBase) (ledger.TransferSpec, error) {
		bal, err := m.BalanceAt(ctx, w, acct.Height)
		if err != nil {
			return ledger.TransferSpec{}, err
		}
		if cents > bal.Amount {
			hint := ""
			if bal.Pending > 0 {
				hint = fmt.Sprintf(" (%s received is pending: 'zkbank wallet apply' makes it spendable)", wallet.FormatAmount(bal.Pending))
			}
			return ledger.TransferSpec{}, fmt.Errorf("insufficient funds: available %s, repayment %s%s; nothing was sent", wallet.FormatAmount(bal.Amount), wallet.FormatAmount(cents), hint)
		}
		return w.RepaySpec(base, lenderID, loanID, cents, bal.Amount), nil
	})
	if err != nil {
		return err
	}
	entry := wallet.RepaymentRecord{ID: st.ID, Amount: cents, Height: st.Height, Status: st.Status}
	if uerr := w.UpdateLending(func(s *wallet.Lending) error {
		if r := s.Loan(ln.ID); r != nil {
			r.Repayments = append(r.Repayments, entry)
		}
		return nil
	}); uerr != nil {
		fmt.Fprintf(o, "warning: %v\n", uerr)
	}
	if st.Status != api.StatusCommitted {
		return fmt.Errorf("rejected: %s (%s); repayment %s", st.Reason, st.Code, st.ID)
	}
	if st.Height <= due {
		fmt.Fprintf(o, "committed in block %d, by the due height %d: installment %d repaid on time (it adds %s to your score's repaid-on-time sum)\n", st.Height, due, next+1, wallet.FormatAmount(cents))
	} else {
		fmt.Fprintf(o, "committed in block %d, after the due height %d: installment %d was missed (a default); this repayment counts for the next installment, if any\n", st.Height, due, next+1)
	}
	bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if nb, err := m.BalanceAt(bctx, w, st.Height); err == nil {
		printBalance(o, w, nb)
	}
	return nil
}

// --- wallet loans ---

func newWalletLoansCmd() *cobra.Command {
	var path string
	var cf chainFlags
	c := &cobra.Command{
		Use:   "loans --wallet FILE",
		Short: "Your open loans: lender, installments paid and missed, next due height",
		Long: `Lists the loans your account owes (public on chain: schedule, installments
repaid on time and missed, your defaults) with the amounts this wallet knows
from the lenders' policies, and your open applications.`,
		Example: "  zkbank wallet loans --wallet .testnet/wallets/alice.json",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return withWallet(cmd, path, &cf, func(ctx context.Context, m *client.Multi, w *wallet.Wallet) error {
				return listLoans(ctx, cmd.OutOrStdout(), m, w)
			})
		},
	}
	c.Flags().StringVar(&path, "wallet", "", "wallet file")
	cf.register(c)
	return c
}

func listLoans(ctx context.Context, o io.Writer, m *client.Multi, w *wallet.Wallet) error {
	lend, err := lending.Lending(ctx, m, w.Account, 0)
	if err != nil {
		return err
	}
	names := newNamer(w)
	fmt.Fprintf(o, "%s: %d open loan(s), %d default(s) (height %d)\n", w.Name, len(lend.Loans), lend.Defaults, lend.Height)
	if len(lend.Loans) > 0 {
		tw := tabwriter.NewWriter(o, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "LOAN\tLENDER\tFUNDED\tAMOUNT\tPAID\tMISSED\tNEXT DUE\tINSTALLMENT")
		for _, ln := range lend.Loans {
			rec := syncLoan(ctx, m, w, ln)
			amount, inst := "?", "?"
			if rec.Amount > 0 {
				amount = wallet.FormatAmount(rec.Amount)
			}
			next := ln.Paid + ln.Missed
			nextDue := "-"
			if next < len(ln.Due) {
				d := ln.Due[next]
				if d >= lend.Height {
					nextDue = fmt.Sprintf("%d (in %d)", d, d-lend.Height)
				} else {
					nextDue = fmt.Sprintf("%d (passed)", d)
				}
				if a := rec.Installment(next); a > 0 {
					inst = wallet.FormatAmount(a)
				}
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%d of %d\t%d\t%s\t%s\n", shortID(ln.ID), names.name(ln.Lender), ln.Start, amount, ln.Paid, len(ln.Due), ln.Missed, nextDue, inst)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		fmt.Fprintf(o, "repay with: zkbank wallet loan repay --wallet %s --loan LOAN [--amount AMOUNT]\n", w.Path())
	}
	for _, ap := range lend.Applications {
		fmt.Fprintf(o, "open application %s to %s since height %d (open until height %d)\n", shortID(ap.ID), names.name(ap.Lender), ap.Height, ap.Height+ledger.ApplicationWindow)
	}
	return nil
}
