package testnet

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/client"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/lending"
	"github.com/zkbank/zkbank/wallet"
)

// The demo lender (docs/LENDING.md): with --demo, the testnet runs one
// `zkbank bot` process lending from DIR/lending/pool.json under
// DIR/lending/policy.json, and a few demo borrowers apply to it (decision
// mode), get funded and repay; the last one misses an installment on
// purpose, so a default shows up in the bot's log and in its score.

// demoLender is the running demo bot, or why there is none.
type demoLender struct {
	running bool
	policy  *lending.Policy
	hash    [32]byte
	pool    *wallet.Wallet
	err     error
}

// errNoDemo: --demo=false runs no demo lender.
var errNoDemo = errors.New("--demo=false")

// startLender starts the demo bot process (with start), if the testnet has
// a lender (testnets created before lending have none).
func startLender(cfg RunConfig, l Layout, cl *Cluster, start bool) demoLender {
	pol, hash, err := lending.LoadPolicy(l.LenderPolicy())
	if err != nil {
		return demoLender{err: err}
	}
	pool, err := wallet.Load(l.LenderPool())
	if err != nil {
		return demoLender{err: err}
	}
	d := demoLender{policy: pol, hash: hash, pool: pool}
	if !start {
		d.err = errNoDemo
		return d
	}
	_, err = cl.StartAux(cfg.Exe, "lender-bot", l.BotLog(), "bot", "--wallet", l.LenderPool(), "--policy", l.LenderPolicy(),
		"--genesis", l.Genesis(), "--state", l.BotState(), "--"+ParentFDFlag, "0")
	if err != nil {
		d.err = err
		return d
	}
	d.running = true
	return d
}

// printLender adds the lender's lines to the startup summary.
func printLender(w io.Writer, l Layout, d demoLender, user *wallet.Wallet) {
	if d.policy == nil {
		if errors.Is(d.err, os.ErrNotExist) || d.err == nil {
			return // a testnet from before lending, or --demo=false
		}
		fmt.Fprintf(w, "\nlending: no demo lender: %v\n", d.err)
		return
	}
	p := d.policy
	fmt.Fprintln(w, "\nlending (docs/LENDING.md)")
	state := "bot running"
	if !d.running {
		state = fmt.Sprintf("no bot: %v", d.err)
	}
	fmt.Fprintf(w, "  lender   %s (%s): %s mode, min score %d, lends %s in %d installments every %d heights\n",
		p.Name, state, p.Mode, p.MinScore, wallet.FormatAmount(p.Cents()), p.Installments, p.Interval)
	fmt.Fprintf(w, "  pool     %s (%s)\n", l.LenderPool(), d.pool.Account)
	fmt.Fprintf(w, "  policy   %s (sha256 %s)\n", l.LenderPolicy(), hex.EncodeToString(d.hash[:]))
	fmt.Fprintf(w, "  bot log  %s (one line per decision, with its reason)\n", l.BotLog())
	if !d.running {
		fmt.Fprintf(w, "  run it:  zkbank bot --wallet %s --policy %s --genesis %s --state %s\n", l.LenderPool(), l.LenderPolicy(), l.Genesis(), l.BotState())
	} else {
		fmt.Fprintf(w, "  demo loans of %s logged in %s (borrower-%d misses an installment on purpose)\n",
			filepath.Join(l.DemoBorrowers(), "*.json"), l.LoansLog(), demoBorrowers)
	}
	if user != nil {
		fmt.Fprintf(w, "  zkbank wallet score --wallet %s\n", user.Path())
		fmt.Fprintf(w, "  zkbank wallet loan apply --wallet %s --lender %s --policy %s\n", user.Path(), l.LenderPool(), l.LenderPolicy())
		fmt.Fprintf(w, "  zkbank wallet loans --wallet %s\n", user.Path())
	}
}

// runDemoLoans runs the demo borrowers, a few seconds apart, and logs what
// they do in DIR/lending/demo-loans.log.
func runDemoLoans(ctx context.Context, l Layout, m *client.Multi, d demoLender) {
	f, err := os.OpenFile(l.LoansLog(), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return
	}
	defer f.Close()
	var mu sync.Mutex
	logf := func(name, format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Fprintf(f, "%s %s: %s\n", time.Now().Format(time.TimeOnly), name, fmt.Sprintf(format, a...))
	}
	ws, err := LoadWallets(l.DemoBorrowers())
	if err != nil {
		logf("demo loans", "%v", err)
		return
	}
	var wg sync.WaitGroup
	for i, w := range ws {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Duration(i) * 3 * time.Second):
			}
			b := demoBorrower{m: m, w: w, d: d, defaulter: i == len(ws)-1, log: func(format string, a ...any) { logf(w.Name, format, a...) }}
			if err := b.run(ctx); err != nil && ctx.Err() == nil {
				b.log("stopped: %v", err)
			}
		}()
	}
	wg.Wait()
}

// demoBorrower is one demo borrower's script: apply with a check, wait for
// the loan, repay each installment halfway through its interval (the
// defaulter skips the second).
type demoBorrower struct {
	m         *client.Multi
	w         *wallet.Wallet
	d         demoLender
	defaulter bool
	log       func(format string, a ...any)
}

func (b *demoBorrower) run(ctx context.Context) error {
	pol, pool := b.d.policy, b.d.pool.ID()
	a := lending.NewActor(b.m, b.w)
	lend, err := lending.Lending(ctx, b.m, b.w.Account, 0)
	if err != nil {
		return err
	}
	var loan *api.LoanInfo
	for i := range lend.Loans {
		if lend.Loans[i].Lender == pool.String() {
			loan = &lend.Loans[i]
			b.log("resuming loan %s", loan.ID)
			break
		}
	}
	if loan == nil {
		var score uint64
		st, _, err := a.Do(ctx, "check", func(ctx context.Context, acct *api.Account, base wallet.OpBase) (ledger.TransferSpec, error) {
			sc, err := b.m.ScoreAt(ctx, b.w, acct.Height)
			if err != nil {
				return ledger.TransferSpec{}, err
			}
			score, base.Height = sc.Value, sc.Height
			return b.w.CheckSpec(base, pool, pol.MinScore, b.d.hash, sc.Value), nil
		})
		if errors.Is(err, ledger.ErrBelowMinimum) {
			b.log("score %d is below the lender's minimum %d: not applying (refused by the wallet, nothing sent)", score, pol.MinScore)
			return nil
		}
		if err != nil {
			return err
		}
		if st.Status != api.StatusCommitted {
			return fmt.Errorf("check rejected: %s (%s)", st.Reason, st.Code)
		}
		b.log("score %d >= %d: check accepted in block %d (application %s)", score, pol.MinScore, st.Height, st.ID)
		if loan, err = b.waitLoan(ctx, pool, lend.Loans); err != nil {
			return err
		}
		b.log("funded in block %d: loan %s, installments due at heights %v", loan.Start, loan.ID, loan.Due)
	}
	amounts := lending.Split(pol.Cents(), len(loan.Due))
	if len(loan.Due) == pol.Installments {
		amounts = pol.InstallmentAmounts()
	}
	loanID, err := client.ParseOpID(loan.ID)
	if err != nil {
		return err
	}
	for k := loan.Paid + loan.Missed; k < len(loan.Due); k++ {
		due := loan.Due[k]
		if b.defaulter && k == 1 {
			b.log("misses installment %d of %d on purpose (due at height %d): a default will be recorded", k+1, len(loan.Due), due)
			continue
		}
		h, err := b.waitHeight(ctx, due-min(due, pol.Interval/2))
		if err != nil {
			return err
		}
		if h > due {
			b.log("installment %d was due at height %d, now %d: missed", k+1, due, h)
			continue
		}
		amount := amounts[k]
		st, _, err := a.Do(ctx, "repayment", func(ctx context.Context, acct *api.Account, base wallet.OpBase) (ledger.TransferSpec, error) {
			bal, err := b.m.BalanceAt(ctx, b.w, acct.Height)
			if err != nil {
				return ledger.TransferSpec{}, err
			}
			return b.w.RepaySpec(base, pool, loanID, amount, bal.Amount), nil
		})
		if err != nil {
			return err
		}
		if st.Status != api.StatusCommitted {
			b.log("repayment of installment %d rejected: %s (%s)", k+1, st.Reason, st.Code)
			continue
		}
		onTime := "on time"
		if st.Height > due {
			onTime = "late (counts as missed)"
		}
		b.log("repaid installment %d of %d (%s) in block %d, due by %d: %s", k+1, len(loan.Due), wallet.FormatAmount(amount), st.Height, due, onTime)
	}
	// The last installment settles after its due height.
	if _, err := b.waitHeight(ctx, loan.Due[len(loan.Due)-1]+2); err != nil {
		return err
	}
	sc, err := b.m.Score(ctx, b.w)
	if err != nil {
		return err
	}
	l2, err := lending.Lending(ctx, b.m, b.w.Account, sc.Height)
	if err != nil {
		return err
	}
	b.log("done: score %d at height %d, %d default(s)", sc.Value, sc.Height, l2.Defaults)
	return nil
}

// waitLoan waits for a loan from pool that is not among known.
func (b *demoBorrower) waitLoan(ctx context.Context, pool ledger.AccountID, known []api.LoanInfo) (*api.LoanInfo, error) {
	old := map[string]bool{}
	for _, l := range known {
		old[l.ID] = true
	}
	wctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	for {
		lend, err := b.m.Lending(wctx, b.w.Account)
		if err == nil {
			for i := range lend.Loans {
				if l := lend.Loans[i]; l.Lender == pool.String() && !old[l.ID] {
					return &l, nil
				}
			}
		}
		select {
		case <-wctx.Done():
			return nil, fmt.Errorf("no loan from the lender: %w", wctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// waitHeight waits until the chain's committed height reaches h and
// returns it.
func (b *demoBorrower) waitHeight(ctx context.Context, h uint64) (uint64, error) {
	for {
		s, err := b.m.Status(ctx)
		if err == nil && s.Height >= h {
			return s.Height, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Second):
		}
	}
}
