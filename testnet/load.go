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

	// Payees: 0 or 1 for single payments; 2..ledger.MaxPayees makes every
	// transfer a pay-many to that many distinct wallets (one upload, one
	// debit of the total, one credit each).
	Payees int

	// Depth is how many operations one wallet keeps in flight (default 4):
	// each is built on the available balance the previous ones leave, so a
	// wallet never reads its balance between them and can pay in every block.
	Depth int

	CheckSupply     bool          // decrypt every wallet before and after; compare totals
	TransferTimeout time.Duration // wait for one verdict (default 2 min)
	Progress        io.Writer     // progress report (nil: none; needs N > 0)
	ProgressBar     bool          // Progress is a terminal: draw a bar, else print a line per 10%
	Log             io.Writer     // one line per failure (nil: none)
}

// plan is one transfer the dispatcher decided on; the sender's worker fills
// in the amount from the available balance it tracks.
type plan struct {
	to      *wallet.Wallet
	more    []*wallet.Wallet // further payees of a pay-many
	invalid bool
}

// sender is one participant's worker state. Its worker goroutine owns the
// tracked balances and the nonce; the waiters of its operations in flight
// only report back through mu.
type sender struct {
	w       *wallet.Wallet
	r       *rand.Rand
	amounts amountSampler
	queue   chan plan

	avail   uint64   // available balance once every operation sent so far is accepted
	pending uint64   // pending balance as last read, not yet applied
	readAt  uint64   // height pending was read at
	nonce   uint64   // last nonce used
	prev    [32]byte // the last operation sent: the next one's Prev
	synced  bool

	slots    chan struct{} // one per operation in flight
	reads    chan struct{} // shared by every sender: balance reads in flight
	inflight sync.WaitGroup
	mu       sync.Mutex
	broken   bool                          // an operation the tracked balance counts on was not accepted
	top      uint64                        // highest height a verdict of this sender was decided at
	waiting  map[uint64]context.CancelFunc // nonce -> stop waiting for its verdict
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
	apply     bool // moved pending funds into the available balance (not a transfer)
	payees    int  // payments the transfer makes (1, or a pay-many's payees)
	id        string
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
	if cfg.Payees < 0 || cfg.Payees > ledger.MaxPayees {
		return nil, fmt.Errorf("--payees %d: want 0 or 1 (single payments) up to %d", cfg.Payees, ledger.MaxPayees)
	}
	if cfg.Payees >= len(cfg.Wallets) {
		return nil, fmt.Errorf("--payees %d needs at least %d wallets, got %d", cfg.Payees, cfg.Payees+1, len(cfg.Wallets))
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
	stagesBefore := scrapeStages(ctx, m)
	var memMu sync.Mutex // the sampler's writes of rep.Memory
	rep.Memory.Start = stagesBefore.MaxRSS
	mctx, stopMem := context.WithCancel(ctx)
	defer stopMem()
	memDone := make(chan struct{})
	go func() {
		defer close(memDone)
		sampleMemory(mctx, m, 10*time.Second, &memMu, &rep.Memory)
	}()
	rep.Wallets = len(cfg.Wallets)

	if cfg.Depth <= 0 {
		cfg.Depth = 4
	}
	senders := make([]*sender, len(cfg.Wallets))
	// Each balance read costs every validator a re-encryption share: a
	// thousand wallets syncing at once would swamp them.
	reads := make(chan struct{}, maxReads)
	for i, w := range cfg.Wallets {
		r := rand.New(rand.NewPCG(seed, uint64(i)+1))
		senders[i] = &sender{w: w, r: r, amounts: amountSampler{r: r, s: cfg.Zipf}, queue: make(chan plan, 64),
			slots: make(chan struct{}, cfg.Depth), reads: reads}
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
		if o.apply {
			rep.addApply(o)
			maxHeight = max(maxHeight, o.height)
			return
		}
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
			fmt.Fprintf(cfg.Log, "%s %s: %v (transfer %s)\n", time.Now().Format(time.TimeOnly), o.errKind, o.err, o.id)
		}
		done++
		if bar != nil {
			bar.Add(1)
		} else if cfg.Progress != nil && cfg.N > 0 && (done*10/cfg.N != (done-1)*10/cfg.N) {
			fmt.Fprintf(cfg.Progress, "transfers: %d/%d (%d%%) committed %d, rejected %d\n", done, cfg.N, done*100/cfg.N, rep.Committed, rep.RejectedTotal())
		}
	}

	var wg sync.WaitGroup
	for _, s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.loop(ctx, m, cfg.TransferTimeout, record)
		}()
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
		if cfg.Payees >= 2 {
			taken := map[int]bool{from: true, to: true}
			for len(pl.more) < cfg.Payees-1 {
				x := pick.Index()
				if !taken[x] {
					taken[x] = true
					pl.more = append(pl.more, cfg.Wallets[x])
				}
			}
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
	wg.Wait()
	if bar != nil {
		bar.Finish()
	}
	rep.Elapsed = last.Sub(first)
	after := scrapeStages(ctx, m)
	if after.Nodes > 0 && after.Nodes == stagesBefore.Nodes {
		rep.Stages = after.delta(stagesBefore)
	}
	stopMem()
	<-memDone
	rep.Memory.End = after.MaxRSS

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

// addApply counts an apply: not a transfer, but an operation the run needed.
func (r *Report) addApply(o outcome) {
	switch {
	case o.status == api.StatusCommitted:
		r.Applies++
	case o.status == api.StatusRejected:
		r.AppliesRejected++
		r.AppliesRejectedBy[o.code]++
	default:
		r.Errors["apply: "+o.errKind]++
	}
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
		r.Payments += max(1, o.payees)
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

// supply decrypts every wallet's balances at a height >= minHeight and sums
// them (available and pending: money received and not yet applied is still
// the wallet's).
func supply(ctx context.Context, m *client.Multi, ws []*wallet.Wallet, minHeight uint64) (uint64, uint64, error) {
	var (
		mu         sync.Mutex
		total, top uint64
		firstErr   error
		wg         sync.WaitGroup
	)
	next := make(chan *wallet.Wallet)
	for k := 0; k < maxReads; k++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for w := range next {
				b, err := m.BalanceAt(ctx, w, minHeight)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = fmt.Errorf("wallet %s: %w", w.Name, err)
				}
				total += b.Amount + b.Pending
				top = max(top, b.Height)
				mu.Unlock()
			}
		}()
	}
	for _, w := range ws {
		next <- w
	}
	close(next)
	wg.Wait()
	if firstErr != nil {
		return 0, 0, firstErr
	}
	return total, top, nil
}

// loop is a sender's worker: for each plan it builds a payment on the
// available balance it tracks, submits it and goes on while the verdict is
// awaited (up to Depth in flight). It reads its balances only to start,
// after an operation it counted on was not accepted (then its later ones
// fail too, and it starts over from the chain's view), and to apply pending
// funds when its available balance runs low.
func (s *sender) loop(ctx context.Context, m *client.Multi, timeout time.Duration, record func(outcome)) {
	defer s.inflight.Wait()
	for pl := range s.queue {
		if ctx.Err() != nil {
			continue // drain: the dispatcher stops too
		}
		s.mu.Lock()
		broken := s.broken
		s.mu.Unlock()
		if !s.synced || broken {
			s.inflight.Wait()
			if err := s.sync(ctx, m, timeout); err != nil {
				record(outcome{invalid: pl.invalid, errKind: errKind("balance", err), err: err})
				continue
			}
		}
		if s.pending > 0 && s.avail < s.pending && !pl.invalid {
			s.mu.Lock()
			old := s.top > s.readAt+ledger.StateWindow/2
			s.mu.Unlock()
			if old {
				// An apply names the height its pending balance was read at,
				// which must still be among the chain's retained states
				// (ledger.StateWindow) when it is evaluated: read again
				// (after the operations in flight) rather than send one that
				// would be rejected stale and strand the payments built on it.
				s.inflight.Wait()
				if err := s.sync(ctx, m, timeout); err != nil {
					record(outcome{invalid: pl.invalid, errKind: errKind("balance", err), err: err})
					continue
				}
			}
			if s.pending > 0 && s.avail < s.pending {
				s.apply(ctx, m, timeout, record)
			}
		}
		spec, newBal, o, ok := s.payment(pl)
		if !ok {
			record(o)
			continue
		}
		var counted uint64
		if !pl.invalid {
			counted = spec.Total()
		}
		values := ledger.TransferValues(spec.Amount, newBal)
		if len(spec.Payees) > 0 {
			amounts := make([]uint64, len(spec.Payees))
			for i, p := range spec.Payees {
				amounts[i] = p.Amount
			}
			values = ledger.ManyValues(amounts, newBal)
		}
		payees := max(1, len(spec.Payees))
		s.send(ctx, m, timeout, spec, values, pl.invalid, counted, func(o outcome) {
			o.payees = payees
			record(o)
		})
	}
}

// maxReads bounds the balance reads a load run has in flight.
const maxReads = 8

// sync reads the account and both balances at a height that includes every
// verdict this sender has seen.
func (s *sender) sync(ctx context.Context, m *client.Multi, timeout time.Duration) error {
	cx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	select {
	case s.reads <- struct{}{}:
		defer func() { <-s.reads }()
	case <-cx.Done():
		return cx.Err()
	}
	a, err := m.Account(cx, s.w.ID().String())
	if err != nil {
		return err
	}
	s.mu.Lock()
	top := s.top
	s.mu.Unlock()
	b, err := m.BalanceAt(cx, s.w, max(top, a.Height))
	if err != nil {
		return err
	}
	prev, err := client.ParseOpID(a.LastOp)
	if err != nil {
		return err
	}
	s.avail, s.pending, s.readAt, s.prev = b.Amount, b.Pending, b.Height, prev
	s.nonce = max(s.nonce, a.Nonce)
	s.synced = true
	s.mu.Lock()
	s.broken = false
	s.mu.Unlock()
	return nil
}

// apply moves the pending balance last read into the available one; the
// payments that follow count on it. Pending funds received since are read
// at the next sync.
func (s *sender) apply(ctx context.Context, m *client.Multi, timeout time.Duration, record func(outcome)) {
	p := s.pending
	spec := ledger.TransferSpec{From: s.w.ID(), Key: s.w.SignKey(), To: s.w.ID(), Amount: p, Balance: p, Height: s.readAt}
	s.pending = 0
	s.send(ctx, m, timeout, spec, ledger.TransferValues(p, 0), false, 0, func(o outcome) {
		o.apply = true
		record(o)
	})
	s.avail += p
}

// payment decides a plan's amount: a draw below the available balance, or
// for a deliberate overdraft an amount above it with the new balance as its
// 32-bit wrap-around (so every slot holds a bit, as a hacked wallet would
// send). ok is false when o says why not.
func (s *sender) payment(pl plan) (spec ledger.TransferSpec, newBal uint64, o outcome, ok bool) {
	o.invalid = pl.invalid
	spec = ledger.TransferSpec{From: s.w.ID(), Key: s.w.SignKey(), To: pl.to.ID(), Balance: s.avail}
	if len(pl.more) > 0 {
		return s.payMany(pl, spec)
	}
	if pl.invalid {
		over := 1 + s.r.Uint64N(max(s.avail/10, 1))
		if s.avail+over > ledger.MaxAmount {
			o.errKind, o.err = "build: balance too large to overdraw", errors.New("balance too large to overdraw")
			return spec, 0, o, false
		}
		spec.Amount = s.avail + over
		return spec, (s.avail - spec.Amount) & ledger.MaxAmount, o, true
	}
	spec.Amount = s.amounts.draw(s.avail)
	if spec.Amount == 0 {
		o.skipped = true
		return spec, 0, o, false
	}
	return spec, s.avail - spec.Amount, o, true
}

// payMany is payment for a pay-many: one draw per payee from an equal share
// of the available balance, or for a deliberate overdraft equal shares of an
// amount above it.
func (s *sender) payMany(pl plan, spec ledger.TransferSpec) (ledger.TransferSpec, uint64, outcome, bool) {
	o := outcome{invalid: pl.invalid}
	to := append([]*wallet.Wallet{pl.to}, pl.more...)
	k := uint64(len(to))
	var total uint64
	var over uint64 // a deliberate overdraft's excess
	if pl.invalid {
		over = 1 + s.r.Uint64N(max(s.avail/10, 1))
	}
	for _, w := range to {
		var a uint64
		if pl.invalid {
			a = (s.avail + over + k - 1) / k
			if a > ledger.MaxAmount {
				o.errKind, o.err = "build: balance too large to overdraw", errors.New("balance too large to overdraw")
				return spec, 0, o, false
			}
		} else {
			a = s.amounts.draw(s.avail / k)
		}
		spec.Payees = append(spec.Payees, ledger.Payee{To: w.ID(), Amount: a})
		total += a
	}
	if pl.invalid {
		return spec, (s.avail - total) & ledger.MaxAmount, o, true
	}
	if total == 0 {
		o.skipped = true
		return spec, 0, o, false
	}
	return spec, s.avail - total, o, true
}

// send seals and submits one operation with the next nonce, takes counted
// off the tracked available balance, and leaves a waiter for its verdict.
// An operation the balance counts on (every one but a deliberate overdraft)
// that is not accepted marks the sender broken: its successors were built
// on it.
func (s *sender) send(ctx context.Context, m *client.Multi, timeout time.Duration, spec ledger.TransferSpec, values []uint64, invalid bool, counted uint64, record func(outcome)) {
	select {
	case s.slots <- struct{}{}:
	case <-ctx.Done():
		record(outcome{invalid: invalid, errKind: errKind("submit", ctx.Err()), err: ctx.Err()})
		return
	}
	s.nonce++
	if spec.To != spec.From || len(spec.Payees) > 0 {
		// A payment expires a window after its height: the newest one known.
		// An apply keeps the height its pending balance was read at (a later
		// one may hold more pending funds than it claims).
		s.mu.Lock()
		spec.Height = max(s.readAt, s.top)
		s.mu.Unlock()
	}
	spec.Nonce, spec.Prev = s.nonce, s.prev
	s.avail -= counted
	fail := func(o outcome) {
		<-s.slots
		s.mu.Lock()
		if !invalid {
			s.broken = true
		}
		s.mu.Unlock()
		record(o)
	}
	d, err := m.Dealer()
	if err != nil {
		fail(outcome{invalid: invalid, errKind: errKind("dealer", err), err: err})
		return
	}
	sub, err := d.BuildValues(spec, values)
	if err != nil {
		fail(outcome{invalid: invalid, errKind: "build", err: err})
		return
	}
	if !invalid {
		// The next operation is built on this one; a deliberate overdraft
		// is expected to be rejected, so the next one skips it.
		s.prev = sub.Envelopes[0].ID()
	}
	o := outcome{invalid: invalid, start: time.Now()}
	cx, cancel := context.WithTimeout(ctx, timeout)
	ids, err := m.Submit(cx, sub)
	if err != nil {
		cancel()
		var ae *client.APIError
		if errors.As(err, &ae) && ae.Status/100 == 4 && ae.Code != "" {
			// Refused at admission: a verdict, not a failure of the run.
			o.submitted, o.status, o.code, o.end = true, api.StatusRejected, ae.Code, time.Now()
		} else {
			o.errKind, o.err = errKind("submit", err), err
		}
		fail(o)
		return
	}
	o.submitted, o.id = true, ids[0]
	s.inflight.Add(1)
	nonce := spec.Nonce
	s.mu.Lock()
	if s.waiting == nil {
		s.waiting = map[uint64]context.CancelFunc{}
	}
	superseded := false
	stop := func() { superseded = true; cancel() } // under s.mu
	s.waiting[nonce] = stop
	s.mu.Unlock()
	go func() {
		defer s.inflight.Done()
		defer cancel()
		st, err := m.WaitTransfer(cx, ids[0])
		o.end = time.Now()
		s.mu.Lock()
		delete(s.waiting, nonce)
		switch {
		case err == nil:
			o.status, o.code, o.height = st.Status, st.Code, st.Height
			// Operations built on one that was not accepted can never be
			// ordered (each names its predecessor): stop waiting for them.
			if st.Status != api.StatusCommitted && !invalid {
				for n, stop := range s.waiting {
					if n > nonce {
						stop()
					}
				}
			}
		case superseded:
			o.errKind, o.err = "verdict: dropped (built on an operation that was rejected)", err
		default:
			o.errKind, o.err = errKind("verdict", err), err
		}
		s.top = max(s.top, o.height)
		if o.status != api.StatusCommitted && !invalid {
			s.broken = true
		}
		s.mu.Unlock()
		<-s.slots
		record(o)
	}()
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
