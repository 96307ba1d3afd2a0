package testnet

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/client"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/wallet"
)

// LoadConfig describes a load run.
type LoadConfig struct {
	Multi   *client.Multi
	Wallets []*wallet.Wallet // participants: senders and receivers (at least 2)
	N       int              // transfers to make; 0 means until ctx ends
	Rate    float64          // target transfers started per second; 0 means as fast as possible
	Zipf    float64          // 0: uniform counterparties and amounts; > 1: Zipf exponent
	Invalid float64          // fraction of deliberate overdrafts, in [0, 1]
	Seed    uint64           // 0: random

	// Bundle groups transfers of senders that share a shard into one round
	// (each its own sealed upload, submitted concurrently), as a wallet
	// holding several accounts of a shard would; at most BundleMax per round
	// (default 16).
	Bundle    bool
	BundleMax int

	CheckSupply     bool          // decrypt every wallet before and after; compare totals
	TransferTimeout time.Duration // wait for one verdict (default 2 min)
	Progress        io.Writer     // progress report (nil: none; needs N > 0)
	ProgressBar     bool          // Progress is a terminal: draw a bar, else print a line per 10%
	Log             io.Writer     // one line per failure (nil: none)
}

// plan is one transfer the dispatcher decided on; the sender's worker fills
// in the amount once it knows its balance.
type plan struct {
	to      *wallet.Wallet
	invalid bool
}

// sender is one participant's worker state. Only its worker goroutine
// touches it: one debit of an account in flight at a time.
type sender struct {
	w         *wallet.Wallet
	lane      int
	shard     uint32
	minHeight uint64 // the next balance must be read at or after this height
	lastNonce uint64
	r         *rand.Rand
	amounts   amountSampler
	queue     chan plan
}

// outcome of one planned transfer.
type outcome struct {
	invalid   bool
	skipped   bool
	submitted bool
	status    string // api.StatusCommitted / StatusRejected, or "" on error
	code      string // reject code
	errKind   string
	err       error
	start     time.Time
	end       time.Time
	height    uint64
}

// Load runs a load test and returns what it saw. The error is about the run
// itself (bad config, chain unreachable); invariants are in Report.Check.
func Load(ctx context.Context, cfg LoadConfig) (*Report, error) {
	if len(cfg.Wallets) < 2 {
		return nil, fmt.Errorf("load needs at least 2 wallets, got %d", len(cfg.Wallets))
	}
	if cfg.Invalid < 0 || cfg.Invalid > 1 {
		return nil, fmt.Errorf("--invalid %.2f: want a fraction in [0, 1]", cfg.Invalid)
	}
	if cfg.Rate < 0 || cfg.N < 0 {
		return nil, fmt.Errorf("negative rate or count")
	}
	if cfg.TransferTimeout == 0 {
		cfg.TransferTimeout = 2 * time.Minute
	}
	seed := cfg.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	master := rand.New(rand.NewPCG(seed, 0x7a6b62616e6b))
	pick, err := NewSampler(master, len(cfg.Wallets), cfg.Zipf)
	if err != nil {
		return nil, err
	}
	m := cfg.Multi
	if _, err := m.Dealer(); err != nil {
		return nil, err
	}
	rep := newReport()
	rep.Planned = cfg.N
	rep.Wallets = len(cfg.Wallets)

	senders := make([]*sender, len(cfg.Wallets))
	for i, w := range cfg.Wallets {
		a, err := m.Account(ctx, w.ID().String())
		if err != nil {
			return nil, fmt.Errorf("wallet %s (%s): %w", w.Name, w.Path(), err)
		}
		r := rand.New(rand.NewPCG(seed, uint64(i)+1))
		senders[i] = &sender{w: w, lane: a.Lane, shard: a.Shard, minHeight: a.LastDebit, lastNonce: a.Nonce, r: r,
			amounts: amountSampler{r: r, s: cfg.Zipf}, queue: make(chan plan, 64)}
	}

	var maxHeight uint64
	if cfg.CheckSupply {
		total, h, err := supply(ctx, m, cfg.Wallets, 0)
		if err != nil {
			return nil, fmt.Errorf("supply before: %w", err)
		}
		rep.SupplyBefore, rep.SupplyChecked, maxHeight = total, true, h
	}

	var bar *progressbar.ProgressBar
	done := 0
	if cfg.Progress != nil && cfg.N > 0 && cfg.ProgressBar {
		bar = progressbar.NewOptions(cfg.N,
			progressbar.OptionSetWriter(cfg.Progress),
			progressbar.OptionSetDescription("transfers"),
			progressbar.OptionShowCount(),
			progressbar.OptionShowIts(),
			progressbar.OptionSetItsString("tx"),
			progressbar.OptionThrottle(200*time.Millisecond),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionFullWidth(),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(cfg.Progress) }),
		)
	}

	var mu sync.Mutex // guards rep and maxHeight while workers run
	var first, last time.Time
	record := func(o outcome) {
		mu.Lock()
		defer mu.Unlock()
		rep.add(o)
		if o.submitted {
			if first.IsZero() || o.start.Before(first) {
				first = o.start
			}
			if o.end.After(last) {
				last = o.end
			}
		}
		maxHeight = max(maxHeight, o.height)
		if o.err != nil && cfg.Log != nil && ctx.Err() == nil {
			fmt.Fprintf(cfg.Log, "%s %s: %v\n", time.Now().Format(time.TimeOnly), o.errKind, o.err)
		}
		done++
		if bar != nil {
			bar.Add(1)
		} else if cfg.Progress != nil && cfg.N > 0 && (done*10/cfg.N != (done-1)*10/cfg.N) {
			fmt.Fprintf(cfg.Progress, "transfers: %d/%d (%d%%) committed %d, rejected %d\n", done, cfg.N, done*100/cfg.N, rep.Committed, rep.RejectedTotal())
		}
	}

	var wg sync.WaitGroup
	// A sender is owned by its own worker, or in bundle mode by its shard's
	// bundler; the dispatcher routes each plan there.
	var shardQueues map[uint32]chan bplan
	if cfg.Bundle {
		if cfg.BundleMax <= 0 {
			cfg.BundleMax = 16
		}
		shardQueues = map[uint32]chan bplan{}
		for _, s := range senders {
			if shardQueues[s.shard] == nil {
				shardQueues[s.shard] = make(chan bplan, 256)
			}
		}
		for _, q := range shardQueues {
			wg.Add(1)
			go func() {
				defer wg.Done()
				bundleLoop(ctx, m, senders, q, cfg.BundleMax, cfg.TransferTimeout, record)
			}()
		}
	} else {
		for _, s := range senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for pl := range s.queue {
					record(s.run(ctx, m, pl, cfg.TransferTimeout))
				}
			}()
		}
	}

	// The dispatcher paces the run and draws who pays whom.
	start := time.Now()
dispatch:
	for i := 0; cfg.N == 0 || i < cfg.N; i++ {
		if cfg.Rate > 0 {
			due := start.Add(time.Duration(float64(i) / cfg.Rate * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
					break dispatch
				case <-time.After(d):
				}
			}
		}
		from := pick.Index()
		to := pick.Index()
		for to == from {
			to = pick.Index()
		}
		pl := plan{to: cfg.Wallets[to], invalid: master.Float64() < cfg.Invalid}
		if cfg.Bundle {
			select {
			case <-ctx.Done():
				break dispatch
			case shardQueues[senders[from].shard] <- bplan{from: from, plan: pl}:
			}
			continue
		}
		select {
		case <-ctx.Done():
			break dispatch
		case senders[from].queue <- pl:
		}
	}
	for _, s := range senders {
		close(s.queue)
	}
	for _, q := range shardQueues {
		close(q)
	}
	wg.Wait()
	if bar != nil {
		bar.Finish()
	}
	rep.Elapsed = last.Sub(first)

	if cfg.CheckSupply && ctx.Err() != nil {
		// Interrupted: transfers abandoned in flight may still commit between
		// two balance reads, so a total now would prove nothing.
		rep.SupplyChecked = false
	} else if cfg.CheckSupply {
		// Every transfer of the run has its verdict: read every balance at or
		// after the last height any was decided at, so every move is in.
		cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		defer cancel()
		total, _, err := supply(cctx, m, cfg.Wallets, maxHeight)
		if err != nil {
			return rep, fmt.Errorf("supply after: %w", err)
		}
		rep.SupplyAfter = total
	}
	return rep, nil
}

func (r *Report) add(o outcome) {
	if o.invalid && o.submitted {
		r.InvalidSubmitted++
	}
	if o.submitted {
		r.Submitted++
	}
	switch {
	case o.skipped:
		r.Skipped++
	case o.status == api.StatusCommitted:
		r.Committed++
		r.Latencies = append(r.Latencies, o.end.Sub(o.start))
		if o.invalid {
			r.InvalidAccepted++
		}
	case o.status == api.StatusRejected:
		code := o.code
		if code == "" {
			code = "unspecified"
		}
		r.Rejected[code]++
		if o.invalid {
			r.InvalidRejected++
		} else {
			r.ValidRejected++
		}
	default:
		r.Errors[o.errKind]++
		if o.submitted {
			r.Unsettled++
		}
	}
}

// supply decrypts every wallet's balance at a height >= minHeight and sums.
func supply(ctx context.Context, m *client.Multi, ws []*wallet.Wallet, minHeight uint64) (uint64, uint64, error) {
	var total, top uint64
	for _, w := range ws {
		b, err := m.BalanceAt(ctx, w, minHeight)
		if err != nil {
			return 0, 0, fmt.Errorf("wallet %s: %w", w.Name, err)
		}
		total += b.Amount
		top = max(top, b.Height)
	}
	return total, top, nil
}

// prepared is a transfer ready to encrypt: the spec (amount, balance,
// height, nonce) and the new balance the upload will claim.
type prepared struct {
	spec    ledger.TransferSpec
	newBal  uint64
	invalid bool
}

// prepare reads the sender's account and balance and decides the amount: a
// draw below the balance, or for a deliberate overdraft an amount above it
// with the new balance as its 32-bit wrap-around (so every slot holds a bit,
// as a hacked wallet would send). ok is false when o says why not.
func (s *sender) prepare(ctx context.Context, m *client.Multi, pl plan) (pr prepared, o outcome, ok bool) {
	o.invalid = pl.invalid
	a, err := m.Account(ctx, s.w.ID().String())
	if err != nil {
		o.errKind, o.err = errKind("account", err), err
		return pr, o, false
	}
	bal, err := m.BalanceAt(ctx, s.w, max(a.LastDebit, s.minHeight))
	if err != nil {
		o.errKind, o.err = errKind("balance", err), err
		return pr, o, false
	}
	pr.invalid = pl.invalid
	pr.spec = ledger.TransferSpec{
		From: s.w.ID(), Lane: a.Lane, Key: s.w.SignKey(), To: pl.to.ID(),
		Balance: bal.Amount, Height: bal.Height, Nonce: max(a.Nonce, s.lastNonce) + 1,
	}
	if pl.invalid {
		over := 1 + s.r.Uint64N(max(bal.Amount/10, 1))
		if bal.Amount+over > ledger.MaxAmount {
			o.errKind, o.err = "build: balance too large to overdraw", errors.New("balance too large to overdraw")
			return pr, o, false
		}
		pr.spec.Amount = bal.Amount + over
		pr.newBal = (bal.Amount - pr.spec.Amount) & ledger.MaxAmount
		return pr, o, true
	}
	pr.spec.Amount = s.amounts.draw(bal.Amount)
	if pr.spec.Amount == 0 {
		o.skipped = true
		return pr, o, false
	}
	pr.newBal = bal.Amount - pr.spec.Amount
	return pr, o, true
}

// seal builds each prepared transfer's upload (sealed shares): through the
// wallet's Build when it is honest, else with the forged slot values.
func seal(d *ledger.Dealer, prs []prepared) ([]*ledger.Submission, error) {
	subs := make([]*ledger.Submission, len(prs))
	for i, pr := range prs {
		var err error
		if pr.invalid {
			subs[i], err = d.BuildValues(pr.spec, ledger.TransferValues(pr.spec.Amount, pr.newBal))
		} else {
			subs[i], err = d.Build(pr.spec)
		}
		if err != nil {
			return nil, err
		}
	}
	return subs, nil
}

// submitAndWait uploads each transfer's submission and waits for every
// verdict. The returned outcomes are in the order of prs.
func submitAndWait(ctx context.Context, m *client.Multi, subs []*ledger.Submission, prs []prepared) []outcome {
	out := make([]outcome, len(prs))
	start := time.Now()
	var wg sync.WaitGroup
	for i := range out {
		out[i].invalid = prs[i].invalid
		out[i].start = start
		wg.Add(1)
		go func() {
			defer wg.Done()
			ids, err := m.Submit(ctx, subs[i])
			if err != nil {
				var ae *client.APIError
				if errors.As(err, &ae) && ae.Status/100 == 4 && ae.Code != "" {
					// Refused at admission: a verdict, not a failure of the run.
					out[i].submitted, out[i].status, out[i].code, out[i].end = true, api.StatusRejected, ae.Code, time.Now()
				} else {
					out[i].errKind, out[i].err = errKind("submit", err), err
				}
				return
			}
			out[i].submitted = true
			st, err := m.WaitTransfer(ctx, ids[0])
			out[i].end = time.Now()
			if err != nil {
				out[i].errKind, out[i].err = errKind("verdict", err), err
				return
			}
			out[i].status, out[i].code, out[i].height = st.Status, st.Code, st.Height
		}()
	}
	wg.Wait()
	return out
}

// settle records what a verdict means for the sender's next transfer.
func (s *sender) settle(pr prepared, o outcome) {
	if o.submitted {
		s.lastNonce = max(s.lastNonce, pr.spec.Nonce)
	}
	if o.status == api.StatusCommitted {
		s.minHeight = max(s.minHeight, o.height)
	}
}

// run makes one transfer: prepare, encrypt, submit, wait for the verdict.
func (s *sender) run(ctx context.Context, m *client.Multi, pl plan, timeout time.Duration) outcome {
	cx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	pr, o, ok := s.prepare(cx, m, pl)
	if !ok {
		return o
	}
	d, err := m.Dealer()
	if err != nil {
		o.errKind, o.err = errKind("dealer", err), err
		return o
	}
	subs, err := seal(d, []prepared{pr})
	if err != nil {
		o.errKind, o.err = "build", err
		return o
	}
	o = submitAndWait(cx, m, subs, []prepared{pr})[0]
	s.settle(pr, o)
	return o
}

// bplan is a plan queued for a shard's bundler.
type bplan struct {
	from int
	plan plan
}

// nextBundle takes the first plan of each distinct sender, up to max, in
// queue order; the others wait for a later bundle (one debit of an account
// per block, and per upload).
func nextBundle(pending []bplan, max int) (bundle, rest []bplan) {
	seen := map[int]bool{}
	for _, p := range pending {
		if len(bundle) < max && !seen[p.from] {
			seen[p.from] = true
			bundle = append(bundle, p)
		} else {
			rest = append(rest, p)
		}
	}
	return bundle, rest
}

// bundleLoop owns the senders of one shard: it gathers what is queued,
// prepares one transfer per distinct sender, encrypts them into one upload,
// and waits for every verdict before the next bundle.
func bundleLoop(ctx context.Context, m *client.Multi, senders []*sender, q <-chan bplan, max int, timeout time.Duration, record func(outcome)) {
	var pending []bplan
	closed := false
	for {
		if len(pending) == 0 {
			p, ok := <-q
			if !ok {
				return
			}
			pending = append(pending, p)
		}
	drain:
		for !closed {
			select {
			case p, ok := <-q:
				if !ok {
					closed = true
					break drain
				}
				pending = append(pending, p)
			default:
				break drain
			}
		}
		var round []bplan
		round, pending = nextBundle(pending, max)
		runBundle(ctx, m, senders, round, timeout, record)
		if closed && len(pending) == 0 {
			return
		}
	}
}

func runBundle(ctx context.Context, m *client.Multi, senders []*sender, round []bplan, timeout time.Duration, record func(outcome)) {
	cx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	prs := make([]prepared, len(round))
	outs := make([]outcome, len(round))
	oks := make([]bool, len(round))
	var wg sync.WaitGroup
	for i, bp := range round {
		wg.Add(1)
		go func() { // distinct senders: each goroutine touches its own
			defer wg.Done()
			prs[i], outs[i], oks[i] = senders[bp.from].prepare(cx, m, bp.plan)
		}()
	}
	wg.Wait()
	var ready []prepared
	var from []*sender
	for i := range round {
		if !oks[i] {
			record(outs[i])
			continue
		}
		ready = append(ready, prs[i])
		from = append(from, senders[round[i].from])
	}
	if len(ready) == 0 {
		return
	}
	fail := func(kind string, err error) {
		for _, pr := range ready {
			record(outcome{invalid: pr.invalid, errKind: kind, err: err})
		}
	}
	d, err := m.Dealer()
	if err != nil {
		fail(errKind("dealer", err), err)
		return
	}
	subs, err := seal(d, ready)
	if err != nil {
		fail("build", err)
		return
	}
	for i, o := range submitAndWait(cx, m, subs, ready) {
		from[i].settle(ready[i], o)
		record(o)
	}
}

// errKind names a failure for the report's error table.
func errKind(stage string, err error) string {
	var ae *client.APIError
	switch {
	case errors.Is(err, client.ErrUnreachable):
		return stage + ": unreachable"
	case errors.Is(err, context.DeadlineExceeded):
		return stage + ": timeout"
	case errors.Is(err, context.Canceled):
		return stage + ": canceled"
	case errors.Is(err, client.ErrUnknownAccount):
		return stage + ": unknown account"
	case errors.As(err, &ae):
		if ae.Code != "" {
			return fmt.Sprintf("%s: http %d %s", stage, ae.Status, ae.Code)
		}
		return fmt.Sprintf("%s: http %d", stage, ae.Status)
	}
	return stage + ": other"
}
