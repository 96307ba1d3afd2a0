package lending

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/client"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/wallet"
)

// BotConfig configures a lending bot.
type BotConfig struct {
	Multi      *client.Multi
	Pool       *wallet.Wallet // the lender's pool account: loans are paid from it, repayments land in it
	Policy     *Policy
	PolicyHash [32]byte
	StatePath  string
	// Lookback: on a first start (no state), how many heights before the
	// chain's current one to scan for applications (default 64).
	Lookback uint64
	// Poll is how often the bot asks for new blocks (default 1 s).
	Poll time.Duration
	// VerdictWait bounds the wait for one operation's verdict (default 2 min).
	VerdictWait time.Duration
	Log         *slog.Logger
}

// Bot is an automatic lender: it scans each committed block for loan
// applications addressed to its pool (accepted score checks, score
// consents), decides each against its policy, funds the approved ones and
// follows their repayments and defaults. Every decision is one log line
// with its reason.
type Bot struct {
	cfg   BotConfig
	m     *client.Multi
	pol   *Policy
	hash  string
	hashB [32]byte
	pool  string
	log   *slog.Logger
	actor *Actor
	state *State
	down  bool
}

// NewBot checks the configuration and loads the bot's state.
func NewBot(cfg BotConfig) (*Bot, error) {
	if cfg.Multi == nil || cfg.Pool == nil || cfg.Policy == nil || cfg.StatePath == "" {
		return nil, errors.New("lending bot: chain, pool wallet, policy and state file are required")
	}
	if cfg.Lookback == 0 {
		cfg.Lookback = 64
	}
	if cfg.Poll <= 0 {
		cfg.Poll = time.Second
	}
	if cfg.VerdictWait <= 0 {
		cfg.VerdictWait = 2 * time.Minute
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	st, err := LoadState(cfg.StatePath, cfg.Multi.Chain(), cfg.Pool.Account)
	if err != nil {
		return nil, err
	}
	b := &Bot{cfg: cfg, m: cfg.Multi, pol: cfg.Policy, hash: hex.EncodeToString(cfg.PolicyHash[:]), hashB: cfg.PolicyHash, pool: cfg.Pool.Account,
		log: cfg.Log, actor: NewActor(cfg.Multi, cfg.Pool), state: st}
	b.actor.Progress = func(s string) { b.log.Debug(s) }
	return b, nil
}

// State is the bot's current state (for tests and reports).
func (b *Bot) State() *State { return b.state }

// Run scans blocks until ctx ends. A chain that cannot be reached is
// retried with a growing pause; nothing but ctx ends the loop.
func (b *Bot) Run(ctx context.Context) error {
	b.log.Info("lender started", "policy", b.pol.Name, "policy_sha256", b.hash, "mode", b.pol.Mode, "min_score", b.pol.MinScore,
		"amount", b.pol.Amount, "installments", b.pol.Installments, "interval", b.pol.Interval, "max_open_loans", b.pol.MaxOpenLoans,
		"pool", b.pool, "chain", b.m.Chain(), "resume_after", b.state.Scanned)
	pause := b.cfg.Poll
	for {
		err := b.Step(ctx)
		if ctx.Err() != nil {
			b.save()
			b.log.Info("lender stopped", "scanned", b.state.Scanned)
			return nil
		}
		switch {
		case err != nil && !b.down:
			b.down = true
			b.log.Warn("chain not reachable; retrying", "err", err)
			pause = b.cfg.Poll
		case err != nil:
			pause = min(pause*2, 15*time.Second)
			b.log.Debug("still failing", "err", err)
		case b.down:
			b.down = false
			b.log.Info("chain reachable again", "scanned", b.state.Scanned)
			pause = b.cfg.Poll
		}
		select {
		case <-ctx.Done():
		case <-time.After(pause):
		}
	}
}

func (b *Bot) save() {
	if err := b.state.Save(b.cfg.StatePath); err != nil {
		b.log.Error("saving state", "err", err)
	}
}

// Step scans every block committed since the last step, decides the
// applications it finds and reconciles the open loans.
func (b *Bot) Step(ctx context.Context) error {
	// Not one node's word: a lying node reporting a huge height would make
	// a fresh bot skip every real block.
	top, err := b.m.CommittedHeight(ctx)
	if err != nil {
		return err
	}
	if b.state.Scanned == 0 && top > b.cfg.Lookback {
		b.state.Scanned = top - b.cfg.Lookback
	}
	for h := b.state.Scanned + 1; h <= top; h++ {
		if err := b.scanBlock(ctx, h); err != nil {
			return fmt.Errorf("block %d: %w", h, err)
		}
		b.state.Scanned = h
		b.save()
	}
	if err := b.track(ctx, top); err != nil {
		return err
	}
	b.save()
	return nil
}

// block fetches a committed block's listing from the first node that has it.
func (b *Bot) block(ctx context.Context, h uint64) (*api.Block, error) {
	var errs []error
	for _, c := range b.m.Nodes() {
		blk, err := c.Block(ctx, h)
		if err == nil {
			return blk, nil
		}
		if ctx.Err() != nil {
			return nil, err
		}
		errs = append(errs, err)
	}
	return nil, errors.Join(errs...)
}

// verdict returns a transfer's final status, waiting for it if the block
// listing had none yet.
func (b *Bot) verdict(ctx context.Context, t api.TransferStatus) (api.TransferStatus, error) {
	if t.Status == api.StatusCommitted || t.Status == api.StatusRejected {
		return t, nil
	}
	wctx, cancel := context.WithTimeout(ctx, b.cfg.VerdictWait)
	defer cancel()
	st, err := b.m.WaitTransfer(wctx, t.ID)
	if err != nil {
		return t, err
	}
	t.Status, t.Code, t.Reason = st.Status, st.Code, st.Reason
	if st.Height != 0 {
		t.Height = st.Height
	}
	return t, nil
}

func (b *Bot) scanBlock(ctx context.Context, h uint64) error {
	blk, err := b.block(ctx, h)
	if err != nil {
		return err
	}
	var apps []Application
	for _, t := range blk.Transfers {
		switch {
		case t.Kind == ledger.OpCheck.String() && t.To == b.pool:
			if _, done := b.state.Applications[t.ID]; done {
				continue
			}
			v, err := b.verdict(ctx, t)
			if err != nil {
				return err
			}
			a := Application{ID: t.ID, Borrower: t.From, Kind: KindCheck, Height: h, Min: t.Min, Policy: t.Policy}
			if v.Status != api.StatusCommitted {
				a.Code, a.Reason = v.Code, v.Reason
			}
			apps = append(apps, a)
		case t.Kind == ledger.OpFund.String() && t.From == b.pool:
			if _, known := b.state.Loans[t.ID]; known {
				continue
			}
			v, err := b.verdict(ctx, t)
			if err != nil {
				return err
			}
			if v.Status == api.StatusCommitted {
				// A loan this pool made that the state does not know (a
				// lost state file, or a verdict the bot did not see).
				b.state.Loans[t.ID] = &LoanTracker{ID: t.ID, Borrower: t.To, Application: t.Application, Amount: b.pol.Cents(), Start: h, Due: t.Due}
				b.log.Info("loan found on chain", "loan", t.ID, "borrower", t.To, "due", t.Due)
			}
		case t.Kind == ledger.OpRepay.String() && t.To == b.pool:
			l := b.state.Loans[t.Loan]
			if l == nil {
				b.log.Info("repayment of a loan this lender does not know", "from", t.From, "loan", t.Loan, "operation", t.ID)
				continue
			}
			if seen(l, t.ID) {
				continue
			}
			v, err := b.verdict(ctx, t)
			if err != nil {
				return err
			}
			if v.Status != api.StatusCommitted {
				b.log.Info("repayment rejected", "borrower", t.From, "loan", t.Loan, "operation", t.ID, "code", v.Code)
				continue
			}
			l.Repayments = append(l.Repayments, SeenRepayment{ID: t.ID, Height: v.Height})
			b.log.Info("repayment received", "borrower", t.From, "loan", t.Loan, "operation", t.ID, "height", v.Height,
				"installment", fmt.Sprintf("%d of %d", min(l.Next()+len(l.Repayments), len(l.Due)), len(l.Due)))
		}
	}
	for _, c := range blk.Consents {
		if c.Lender != b.pool {
			continue
		}
		switch c.Scope {
		case ledger.ScopeRevoke.String():
			b.log.Info("consent revoked", "borrower", c.Owner, "nonce", c.Nonce)
		case ledger.ScopeScore.String():
			if _, done := b.state.Applications[c.ID]; done {
				continue
			}
			apps = append(apps, Application{ID: c.ID, Borrower: c.Owner, Kind: KindConsent, Height: h, Nonce: c.Nonce})
		}
	}
	for _, a := range apps {
		// One application may not stall the bot: a node that stops
		// answering mid-way fails it, and the block is scanned again.
		actx, cancel := context.WithTimeout(ctx, 2*b.cfg.VerdictWait)
		err := b.consider(actx, a)
		cancel()
		if err != nil {
			return err
		}
	}
	return nil
}

func seen(l *LoanTracker, id string) bool {
	for _, r := range l.Repayments {
		if r.ID == id {
			return true
		}
	}
	return false
}

// errRetryLater: the application could not be decided now (a node
// unreachable mid-way); the block is scanned again at the next step.
var errRetryLater = errors.New("retry later")

// consider decides one application and, if approved, funds it.
func (b *Bot) consider(ctx context.Context, a Application) error {
	if a.Kind == KindConsent && b.pol.Mode == ModeScore {
		owner, err := ledger.ParseAccountID(a.Borrower)
		if err != nil {
			return b.decide(a, Refuse, "consent names a malformed owner", "")
		}
		// The consent must be in the book of the nodes asked.
		if _, err := Lending(ctx, b.m, a.Borrower, a.Height); err != nil {
			return err
		}
		sctx, cancel := context.WithTimeout(ctx, b.cfg.VerdictWait)
		sc, err := b.m.LenderScore(sctx, b.cfg.Pool, owner, a.Nonce)
		cancel()
		if err != nil {
			if errors.Is(err, client.ErrUnreachable) || ctx.Err() != nil {
				return fmt.Errorf("%w: reading the score of %s: %w", errRetryLater, short(a.Borrower), err)
			}
			a.ScoreErr = err
		} else {
			a.Score = sc.Value
		}
	}
	lim := Limits{OpenLoans: b.state.OpenLoans(), MaxBorrowerLoans: ledger.MaxLoans}
	decision, reason := Decide(b.pol, b.hashB, a, lim)
	if decision == Refuse {
		return b.decide(a, Refuse, reason, "")
	}
	// The chain is the authority on whether the application is still open
	// and how many loans the borrower has.
	lend, err := Lending(ctx, b.m, a.Borrower, a.Height)
	if err != nil {
		return err
	}
	open := false
	for _, ap := range lend.Applications {
		if ap.ID == a.ID && ap.Lender == b.pool {
			open = true
		}
	}
	if !open {
		if l := b.fundedBy(ctx, a, lend); l != nil {
			return b.decide(a, Refuse, "application already funded by this lender (loan "+short(l.ID)+")", l.ID)
		}
		return b.decide(a, Refuse, "application no longer open on chain (expired, withdrawn, or dropped for newer ones)", "")
	}
	lim.BorrowerOpenLoans = len(lend.Loans)
	if decision, reason = Decide(b.pol, b.hashB, a, lim); decision == Refuse {
		return b.decide(a, Refuse, reason, "")
	}
	return b.fund(ctx, a, reason)
}

// fundedBy returns this lender's loan answering application a: from the
// state, or found among the borrower's open loans on chain (a bot that lost
// its state, or did not see its own loan's verdict), which it then tracks.
func (b *Bot) fundedBy(ctx context.Context, a Application, lend *api.Lending) *LoanTracker {
	for _, l := range b.state.Loans {
		if l.Application == a.ID {
			return l
		}
	}
	for _, ln := range lend.Loans {
		if ln.Lender != b.pool {
			continue
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		st, err := b.m.WaitTransfer(wctx, ln.ID)
		cancel()
		if err != nil || st.Application != a.ID {
			continue
		}
		l := &LoanTracker{ID: ln.ID, Borrower: a.Borrower, Application: a.ID, Amount: b.pol.Cents(), Start: ln.Start,
			Due: append([]uint64(nil), ln.Due...), Paid: ln.Paid, Missed: ln.Missed}
		b.state.Loans[ln.ID] = l
		b.log.Info("loan found on chain", "loan", ln.ID, "borrower", a.Borrower, "due", ln.Due, "paid", ln.Paid, "missed", ln.Missed)
		return l
	}
	return nil
}

// errPoolFunds: the pool cannot pay the loan.
var errPoolFunds = errors.New("pool funds exhausted")

// fund pays an approved application with an OpFund.
func (b *Bot) fund(ctx context.Context, a Application, why string) error {
	borrower, err := ledger.ParseAccountID(a.Borrower)
	if err != nil {
		return b.decide(a, Refuse, "malformed borrower id", "")
	}
	appID, err := client.ParseOpID(a.ID)
	if err != nil {
		return b.decide(a, Refuse, "malformed application id", "")
	}
	cents := b.pol.Cents()
	bal, err := b.actor.Balance(ctx)
	if err != nil {
		return err
	}
	if bal.Amount < cents && bal.Pending > 0 {
		// Repayments land in the pool's pending balance: make them lendable.
		moved, err := b.actor.ApplyPending(ctx)
		if err != nil {
			return err
		}
		b.log.Info("applied received funds (repayments) to the pool's available balance", "amount", wallet.FormatAmount(moved))
	}
	var due []uint64
	st, spec, err := b.actor.Do(ctx, "loan", func(ctx context.Context, acct *api.Account, base wallet.OpBase) (ledger.TransferSpec, error) {
		bal, err := b.m.BalanceAt(ctx, b.cfg.Pool, acct.Height)
		if err != nil {
			return ledger.TransferSpec{}, err
		}
		if bal.Amount < cents {
			return ledger.TransferSpec{}, fmt.Errorf("%w: available %s, loan %s", errPoolFunds, wallet.FormatAmount(bal.Amount), wallet.FormatAmount(cents))
		}
		base.Height = max(base.Height, bal.Height)
		due = b.pol.Schedule(base.Height)
		// A check's application must have proved this policy's minimum
		// under this policy: the chain refuses the loan otherwise, whatever
		// a node reported about the check. A consent's proved nothing.
		var min uint64
		var policy [32]byte
		if a.Kind == KindCheck {
			min, policy = b.pol.MinScore, b.cfg.PolicyHash
		}
		return b.cfg.Pool.FundSpec(base, borrower, cents, bal.Amount, due, appID, min, policy)
	})
	switch {
	case errors.Is(err, errPoolFunds):
		return b.decide(a, Refuse, err.Error(), "")
	case errors.Is(err, ErrAdmission):
		return b.decide(a, Refuse, err.Error(), "")
	case err != nil:
		return err
	}
	if st.Status != api.StatusCommitted {
		reason := fmt.Sprintf("the chain rejected the loan: %s (%s)", st.Reason, st.Code)
		if st.Code == ledger.RejectLoan.Code() {
			reason = fmt.Sprintf("the chain rejected the loan (%s): the application was already funded or has expired, did not prove this policy's minimum under this policy, or the borrower has %d open loans", st.Code, ledger.MaxLoans)
		}
		return b.decide(a, Refuse, reason, "")
	}
	b.state.Loans[st.ID] = &LoanTracker{ID: st.ID, Borrower: a.Borrower, Application: a.ID, Amount: spec.Amount, Start: st.Height, Due: due}
	return b.decide(a, Fund, fmt.Sprintf("%s; lent %s in block %d, installments of %s due at heights %s", why, wallet.FormatAmount(cents), st.Height,
		amountsText(b.pol.InstallmentAmounts()), heightsText(due)), st.ID)
}

func amountsText(a []uint64) string {
	s := make([]string, len(a))
	for i, x := range a {
		s[i] = wallet.FormatAmount(x)
	}
	return strings.Join(s, ", ")
}

func heightsText(h []uint64) string {
	s := make([]string, len(h))
	for i, x := range h {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ", ")
}

// decide records and logs a decision: one line, with its reason.
func (b *Bot) decide(a Application, decision, reason, loan string) error {
	b.state.Applications[a.ID] = &Decided{Borrower: a.Borrower, Kind: a.Kind, Height: a.Height, Decision: decision, Reason: reason, Loan: loan}
	attrs := []any{"applicant", a.Borrower, "mode", b.pol.Mode, "decision", decision, "reason", reason, "application", a.ID, "via", a.Kind}
	if loan != "" {
		attrs = append(attrs, "loan", loan)
	}
	b.log.Info("decision", attrs...)
	return nil
}

// track reconciles the open loans with their borrowers' lending state on
// chain: installments repaid on time, installments missed (defaults), and
// loans closed. It asks the chain only about loans where something may
// have happened: a repayment seen, or an installment past its due height.
func (b *Bot) track(ctx context.Context, top uint64) error {
	for _, l := range b.state.Loans {
		if l.Closed {
			continue
		}
		next := l.Next()
		if next >= len(l.Due) {
			l.Closed = true
			continue
		}
		if len(l.Repayments) == 0 && top <= l.Due[next] {
			continue
		}
		lctx, cancel := context.WithTimeout(ctx, b.cfg.VerdictWait)
		lend, err := Lending(lctx, b.m, l.Borrower, top)
		cancel()
		if err != nil {
			return err
		}
		var on *api.LoanInfo
		for i := range lend.Loans {
			if lend.Loans[i].ID == l.ID {
				on = &lend.Loans[i]
			}
		}
		paid, missed := settled(l, on)
		for i, ok := range order(l, paid-l.Paid, missed-l.Missed) {
			k := l.Next() + i
			inst := fmt.Sprintf("%d of %d", k+1, len(l.Due))
			if ok {
				b.log.Info("installment repaid on time", "borrower", l.Borrower, "loan", l.ID, "installment", inst, "due", l.Due[k])
			} else {
				b.log.Warn("installment missed: default recorded", "borrower", l.Borrower, "loan", l.ID, "installment", inst, "due", l.Due[k],
					"borrower_defaults", lend.Defaults)
			}
		}
		l.Paid, l.Missed = paid, missed
		// Repayments ordered at or before the height just read are counted.
		keep := l.Repayments[:0]
		for _, r := range l.Repayments {
			if r.Height > lend.Height {
				keep = append(keep, r)
			}
		}
		l.Repayments = keep
		if on == nil || l.Next() >= len(l.Due) {
			l.Closed = true
			b.log.Info("loan closed", "borrower", l.Borrower, "loan", l.ID, "paid", l.Paid, "missed", l.Missed, "installments", len(l.Due))
		}
	}
	return nil
}

// settled is a loan's installments repaid on time and missed: the chain's
// counts while the loan is open (on), else, once the chain has closed it
// (every installment settled), the tracker's counts plus what the
// repayments seen since follow by the chain's rule: a repayment counts for
// the next installment, on time if ordered by its due height; every
// installment left without one was missed.
func settled(l *LoanTracker, on *api.LoanInfo) (paid, missed int) {
	if on != nil {
		return on.Paid, on.Missed
	}
	paid, missed = l.Paid, l.Missed
	k := l.Next()
	for _, r := range l.Repayments {
		for k < len(l.Due) && l.Due[k] < r.Height {
			missed++
			k++
		}
		if k < len(l.Due) {
			paid++
			k++
		}
	}
	return paid, missed + len(l.Due) - k
}

// order is the outcome (true: repaid on time) of each installment settled
// since the tracker's counts, paid of them repaid and missed missed, in
// installment order: the order the repayments seen imply by the chain's
// rule, or (if they do not account for the counts) the repaid ones first.
func order(l *LoanTracker, paid, missed int) []bool {
	n := paid + missed
	if n <= 0 {
		return nil
	}
	var out []bool
	k := l.Next()
	for _, r := range l.Repayments {
		for k < len(l.Due) && l.Due[k] < r.Height && len(out) < n {
			out = append(out, false)
			k++
		}
		if k < len(l.Due) && len(out) < n {
			out = append(out, true)
			k++
		}
	}
	for len(out) < n {
		out = append(out, false)
	}
	got := 0
	for _, ok := range out {
		if ok {
			got++
		}
	}
	if got != paid {
		out = out[:0]
		for i := 0; i < n; i++ {
			out = append(out, i < paid)
		}
	}
	return out
}
