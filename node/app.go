package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/zkbank/zkbank/actors"
	"github.com/zkbank/zkbank/consensus"
	"github.com/zkbank/zkbank/ledger"
)

// Upload is a decoded submission held by the mempool.
type Upload = actors.Upload

// Mempool is what the application needs from the mempool actor.
type Mempool interface {
	// Candidates returns uploads ready to be proposed, oldest first.
	Candidates(max int, minAge time.Duration) []*Upload
	// Opens returns pending account openings.
	Opens(max int) []OpenOp
	// Get returns an upload by ciphertext hash.
	Get(hash [32]byte) (*Upload, bool)
	// Committed removes what a committed block included.
	Committed(b *Block)
}

// Evaluator evaluates a block's batches, in parallel across shards.
type Evaluator interface {
	Evaluate(book *ledger.Book, batches []*ledger.Batch, blockHash []byte) ([]*ledger.Evaluation, error)
}

// Persister makes a finalized height durable (one atomic write).
type Persister interface {
	PersistHeight(h uint64, value []byte, cert *consensus.CommitCertificate, book *ledger.Book, applied uint64, outcomes []ledger.Outcome, opened []*ledger.Account, uploads []*Upload, credits []int64) error
}

// Fetcher gets an upload's bytes from peers when the mempool lacks it.
type Fetcher interface {
	Fetch(ctx context.Context, hash [32]byte) ([]byte, error)
}

// Observer is told what happened, for statuses and metrics.
type Observer interface {
	Included(h uint64, b *Block)
	Decided(h uint64, outcomes []ledger.Outcome)
	Opened(h uint64, accts []*ledger.Account)
}

// blockEval is this validator's evaluation of one block on top of a book.
type blockEval struct {
	height  uint64
	hash    [32]byte
	block   *Block
	book    *ledger.Book // book the block was planned and evaluated on (results of height-1 applied)
	batches []*ledger.Batch
	early   map[[32]byte]ledger.Reason
	evals   []*ledger.Evaluation
	digest  [32]byte
	applied []ledger.Outcome // outcomes of height-1 decided by this block's LastExt
	credits []int64          // credits after deciding height-1
	uploads []*Upload
}

// App is zkbank's consensus application: it turns ordered blocks of
// encrypted transfers into decided, applied results. Consensus calls it
// synchronously from the consensus actor; it is not safe for concurrent use.
type App struct {
	p        *ledger.Params
	eng      *ledger.Engine
	dec      *ledger.Decryptor
	key      *ledger.KeyShare
	chain    string
	n, t     int
	log      *slog.Logger
	mem      Mempool
	evalr    Evaluator
	persist  Persister
	fetch    Fetcher
	observer Observer
	now      func() time.Time

	book      *ledger.Book // results applied up to finalized-1
	finalized uint64
	last      *blockEval // evaluation of the last finalized block (results pending)
	credits   []int64
	spec      map[[32]byte]*blockEval   // proposals at finalized+1 by value hash
	decided   map[[32]byte]*decidedLast // decisions of the last block, by the extensions that made them
	faults    *faults                   // fault injection, set only by tests
}

// AppConfig wires an App.
type AppConfig struct {
	Params    *ledger.Params
	Engine    *ledger.Engine
	Decryptor *ledger.Decryptor
	Key       *ledger.KeyShare
	Chain     string
	N, T      int
	Logger    *slog.Logger
	Mempool   Mempool
	Evaluator Evaluator
	Persister Persister
	Fetcher   Fetcher
	Observer  Observer
	Now       func() time.Time

	Book      *ledger.Book // restored book (results applied up to Finalized-1)
	Finalized uint64
	LastBlock []byte // value of block Finalized, if > 0
	Credits   []int64
}

// NewApp builds the application from a restored state.
func NewApp(c AppConfig) (*App, error) {
	a := &App{p: c.Params, eng: c.Engine, dec: c.Decryptor, key: c.Key, chain: c.Chain, n: c.N, t: c.T, log: c.Logger,
		mem: c.Mempool, evalr: c.Evaluator, persist: c.Persister, fetch: c.Fetcher, observer: c.Observer, now: c.Now,
		book: c.Book, finalized: c.Finalized, credits: c.Credits, spec: map[[32]byte]*blockEval{}, decided: map[[32]byte]*decidedLast{}}
	if a.now == nil {
		a.now = time.Now
	}
	if len(a.credits) != a.n {
		a.credits = make([]int64, a.n)
	}
	if c.Finalized > 0 {
		b, err := DecodeBlock(c.LastBlock)
		if err != nil {
			return nil, fmt.Errorf("node: last block: %w", err)
		}
		// The last block's evaluation is recomputed lazily when its results
		// are needed (its book is the restored one).
		a.last = &blockEval{height: c.Finalized, hash: Hash(c.LastBlock), block: b, book: a.book}
	}
	return a, nil
}

// Book returns the applied book (read-only use by the owner goroutine).
func (a *App) Book() *ledger.Book { return a.book }

// Finalized returns the last finalized height.
func (a *App) Finalized() uint64 { return a.finalized }

// Credits returns per-validator work credits.
func (a *App) Credits() []int64 { return append([]int64(nil), a.credits...) }

// uploadsOf resolves a block's ciphertexts from the mempool or peers.
func (a *App) uploadsOf(b *Block) ([]*Upload, error) {
	out := make([]*Upload, len(b.Subs))
	for i, s := range b.Subs {
		if u, ok := a.mem.Get(s.CTHash); ok {
			out[i] = u
			continue
		}
		if a.fetch == nil {
			return nil, fmt.Errorf("%w: upload %x unavailable", ErrBlock, s.CTHash[:8])
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		raw, err := a.fetch.Fetch(ctx, s.CTHash)
		cancel()
		if err != nil {
			return nil, fmt.Errorf("%w: fetching upload %x: %w", ErrBlock, s.CTHash[:8], err)
		}
		if sha256.Sum256(raw) != s.CTHash {
			return nil, fmt.Errorf("%w: fetched upload %x has another hash", ErrBlock, s.CTHash[:8])
		}
		u := &Upload{Hash: s.CTHash, Raw: raw, Envs: s.Envelopes}
		if ct, err := a.p.DecodeUpload(raw); err == nil {
			u.CT = ct
		}
		out[i] = u
	}
	return out, nil
}

// decidedLast is the last block decided by one set of extensions. Its book is
// read-only until the proposal carrying those extensions is finalized.
type decidedLast struct {
	book    *ledger.Book
	outs    []ledger.Outcome
	credits []int64
}

// decideLast computes the outcomes of the last finalized block from the
// extensions a proposal for the next height carries, on a clone of the book.
// The result is shared by every proposal of the height carrying the same
// extensions (the proposer's own, and re-proposals in later rounds): applying
// a batch costs hundreds of milliseconds.
func (a *App) decideLast(exts []ValidatorExt) (*ledger.Book, []ledger.Outcome, []int64, error) {
	h := sha256.New()
	for _, x := range exts {
		binary.Write(h, binary.BigEndian, uint32(x.Validator))
		binary.Write(h, binary.BigEndian, uint32(len(x.Ext)))
		h.Write(x.Ext)
	}
	var key [32]byte
	copy(key[:], h.Sum(nil))
	if d, ok := a.decided[key]; ok {
		return d.book, d.outs, d.credits, nil
	}
	book, outs, credits, err := a.decide(exts)
	if err != nil {
		return nil, nil, nil, err
	}
	a.decided[key] = &decidedLast{book: book, outs: outs, credits: credits}
	return book, outs, credits, nil
}

func (a *App) decide(exts []ValidatorExt) (*ledger.Book, []ledger.Outcome, []int64, error) {
	book := a.book.Clone()
	credits := append([]int64(nil), a.credits...)
	if a.last == nil { // nothing finalized yet: the first block decides nothing
		if len(exts) != 0 {
			return nil, nil, nil, fmt.Errorf("%w: first block carries extensions", ErrBlock)
		}
		return book, nil, credits, nil
	}
	ev, err := a.ensureEval(a.last)
	if err != nil {
		return nil, nil, nil, err
	}
	h := ev.height
	// Shares of validators whose digest equals ours: they computed the same
	// check ciphertexts, so their shares decrypt them. Each earns a credit.
	type vs struct {
		v      int
		shares [][2]*ledger.DecShare
	}
	var good []vs
	seen := map[int]bool{}
	for _, x := range exts {
		if x.Validator < 0 || x.Validator >= a.n || seen[x.Validator] {
			return nil, nil, nil, fmt.Errorf("%w: extension from validator %d", ErrBlock, x.Validator)
		}
		seen[x.Validator] = true
		ext, err := DecodeExt(x.Ext)
		if err != nil || ext.Height != h || ext.Block != ev.hash || ext.Digest != ev.digest || len(ext.Shares) != len(ev.evals) {
			continue
		}
		g := vs{v: x.Validator}
		ok := true
		for _, s := range ext.Shares {
			b, err1 := a.p.DecodeDecShare(s[0])
			e, err2 := a.p.DecodeDecShare(s[1])
			if err1 != nil || err2 != nil || b.Validator != x.Validator || e.Validator != x.Validator {
				ok = false
				break
			}
			g.shares = append(g.shares, [2]*ledger.DecShare{b, e})
		}
		if ok {
			good = append(good, g)
		}
	}
	if len(ev.evals) > 0 && len(good) < a.t {
		return nil, nil, nil, fmt.Errorf("%w: %d matching extensions for height %d, need %d", ErrBlock, len(good), h, a.t)
	}
	for _, g := range good {
		credits[g.v]++
	}
	verdicts := make([]map[int]ledger.Reason, len(ev.evals))
	for i, e := range ev.evals {
		var bs, es []*ledger.DecShare
		for _, g := range good {
			bs, es = append(bs, g.shares[i][0]), append(es, g.shares[i][1])
		}
		v, err := a.dec.DecryptChecks(e, bs, es)
		if errors.Is(err, ledger.ErrShare) {
			v, err = a.majorityVerdicts(e, bs, es)
		}
		if err != nil {
			return nil, nil, nil, fmt.Errorf("node: deciding height %d batch %d: %w", h, i, err)
		}
		verdicts[i] = v
	}
	var outs []ledger.Outcome
	if len(ev.batches) == 0 {
		err = book.Skip(h)
	} else {
		outs, err = book.Commit(a.eng, h, ev.batches, ev.evals, verdicts)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	for id, r := range ev.early {
		outs = append(outs, ledger.Outcome{ID: id, Env: envByID(ev.block, id), Reason: r})
	}
	sort.Slice(outs, func(i, j int) bool { return bytes.Compare(outs[i].ID[:], outs[j].ID[:]) < 0 })
	return book, outs, credits, nil
}

// majorityVerdicts handles shares that disagree or decrypt inconsistently
// (some validator sent a wrong one). It decrypts with every t-subset and keeps
// the results that pass the layout integrity check (a wrong share fails it
// with overwhelming probability). Exactly one distinct surviving result is
// used; none, or several, fail the batch closed: every transfer is
// RejectUndecided (a wrong share can delay transfers, never make an invalid
// one valid). Deterministic for a given extension set.
func (a *App) majorityVerdicts(e *ledger.Evaluation, bs, es []*ledger.DecShare) (map[int]ledger.Reason, error) {
	results := map[string]map[int]ledger.Reason{}
	ledger.Subsets(len(bs), a.t, func(idx []int) {
		var sb, se []*ledger.DecShare
		for _, i := range idx {
			sb, se = append(sb, bs[i]), append(se, es[i])
		}
		if v, err := a.dec.DecryptChecks(e, sb, se); err == nil {
			results[verdictKey(v)] = v
		}
	})
	if len(results) == 1 {
		for _, v := range results {
			a.log.Warn("a validator sent wrong decryption shares; decided with the consistent subset")
			return v, nil
		}
	}
	a.log.Warn("no unique consistent decryption; failing the batch closed", "consistent_results", len(results))
	v := map[int]ledger.Reason{}
	for _, l := range e.Lanes {
		v[l] = ledger.RejectUndecided
	}
	return v, nil
}

func verdictKey(v map[int]ledger.Reason) string {
	lanes := make([]int, 0, len(v))
	for l := range v {
		lanes = append(lanes, l)
	}
	sort.Ints(lanes)
	var b []byte
	for _, l := range lanes {
		b = binary.BigEndian.AppendUint32(b, uint32(l))
		b = append(b, byte(v[l]))
	}
	return string(b)
}

func envByID(b *Block, id [32]byte) *ledger.Envelope {
	for i := range b.Subs {
		for j := range b.Subs[i].Envelopes {
			if b.Subs[i].Envelopes[j].ID() == id {
				return &b.Subs[i].Envelopes[j]
			}
		}
	}
	return nil
}

// ensureEval evaluates a block if it was not evaluated yet (after a restart,
// or when this validator did not precommit it).
func (a *App) ensureEval(ev *blockEval) (*blockEval, error) {
	if ev.evals != nil || ev.batches != nil {
		return ev, nil
	}
	ups, err := a.uploadsOf(ev.block)
	if err != nil {
		return nil, err
	}
	ev.uploads = ups
	if err := a.evaluate(ev); err != nil {
		return nil, err
	}
	return ev, nil
}

// plan turns a block into batches on ev.book.
func (a *App) plan(ev *blockEval) {
	var pend []ledger.Pending
	for i, s := range ev.block.Subs {
		u := ev.uploads[i]
		for k := range s.Envelopes {
			env := &s.Envelopes[k]
			var ct *rlwe.Ciphertext
			if u != nil && u.CT != nil && env.CTHash == s.CTHash {
				ct = u.CT
			}
			pend = append(pend, ledger.Pending{Env: env, CT: ct, Sub: i})
		}
	}
	ev.batches, ev.early = ev.book.Plan(pend)
	if ev.batches == nil {
		ev.batches = []*ledger.Batch{}
	}
}

// evaluate plans and evaluates a block; sets digest.
func (a *App) evaluate(ev *blockEval) error {
	a.plan(ev)
	evals, err := a.evalr.Evaluate(ev.book, ev.batches, ev.hash[:])
	if err != nil {
		return err
	}
	ev.evals = evals
	h := sha256.New()
	h.Write([]byte("zkbank/digest/v1\x00"))
	binary.Write(h, binary.BigEndian, ev.height)
	for _, e := range evals {
		d, err := e.Checks.Digest()
		if err != nil {
			return err
		}
		h.Write(d[:])
	}
	copy(ev.digest[:], h.Sum(nil))
	return nil
}

// prepare decodes and speculatively executes a proposal for finalized+1:
// decide the last block with the proposal's extensions, then plan the
// proposal's own transfers on the resulting book.
func (a *App) prepare(height uint64, value []byte) (*blockEval, error) {
	hash := Hash(value)
	if ev, ok := a.spec[hash]; ok {
		return ev, nil
	}
	if height != a.finalized+1 {
		return nil, fmt.Errorf("%w: proposal for %d at finalized %d", ErrBlock, height, a.finalized)
	}
	b, err := DecodeBlock(value)
	if err != nil {
		return nil, err
	}
	if b.Height != height {
		return nil, fmt.Errorf("%w: block says height %d", ErrBlock, b.Height)
	}
	book, outs, credits, err := a.decideLast(b.LastExt)
	if err != nil {
		return nil, err
	}
	ups, err := a.uploadsOf(b)
	if err != nil {
		return nil, err
	}
	for _, o := range b.Opens {
		if !a.validOpen(o) {
			return nil, fmt.Errorf("%w: account opening with a bad signature", ErrBlock)
		}
	}
	ev := &blockEval{height: height, hash: hash, block: b, book: book, applied: outs, credits: credits, uploads: ups}
	a.spec[hash] = ev
	return ev, nil
}

// EmptyBlockWait is how long a proposer with nothing to propose waits for
// work before proposing an empty block (it must stay below the propose
// timeout, or the round fails).
var EmptyBlockWait = 500 * time.Millisecond

// BuildProposal proposes the mempool's ready transfers (at most one debit
// per sender) and carries the previous height's precommit extensions.
func (a *App) BuildProposal(height uint64, last *consensus.CommitCertificate) ([]byte, error) {
	b := &Block{Height: height, TimeMs: uint64(a.now().UnixMilli())}
	if last != nil {
		for i := range last.Sigs {
			s := last.Sigs[i]
			if len(s.Extension) > 0 {
				b.LastExt = append(b.LastExt, ValidatorExt{Validator: s.Validator, Ext: s.Extension})
			}
		}
	}
	// Decide the previous height first, so proposed transfers are checked
	// against the book they will be evaluated on.
	book, _, _, err := a.decideLast(b.LastExt)
	if err != nil {
		return nil, err
	}
	// An idle chain does not need a block every few hundred milliseconds: wait
	// (briefly, in steps) for work before proposing an empty block.
	cands := a.mem.Candidates(MaxBlockSubs, 50*time.Millisecond)
	for waited := time.Duration(0); len(cands) == 0 && waited < EmptyBlockWait; waited += 50 * time.Millisecond {
		if len(a.mem.Opens(1)) > 0 {
			break
		}
		time.Sleep(50 * time.Millisecond)
		cands = a.mem.Candidates(MaxBlockSubs, 50*time.Millisecond)
	}
	senders := map[ledger.AccountID]bool{}
	total := 0
	for _, u := range cands {
		if total+len(u.Envs) > MaxBlockTransfers {
			break
		}
		ok := true
		for i := range u.Envs {
			e := &u.Envs[i]
			if senders[e.From] || book.Check(e) == ledger.RejectReplay {
				ok = false
			}
		}
		if !ok {
			continue
		}
		for i := range u.Envs {
			senders[u.Envs[i].From] = true
		}
		b.Subs = append(b.Subs, SubRef{CTHash: u.Hash, Envelopes: u.Envs})
		total += len(u.Envs)
	}
	for _, o := range a.mem.Opens(MaxBlockOpens) {
		if a.validOpen(o) { // openings relayed by peers are not checked on arrival
			b.Opens = append(b.Opens, o)
		}
	}
	return b.Encode(), nil
}

// validOpen checks an account opening is signed by the account's key.
func (a *App) validOpen(o OpenOp) bool {
	return len(o.SignPub) == ed25519.PublicKeySize && ed25519.Verify(o.SignPub, ledger.OpenAccountBytes(a.chain, o.Kind), o.Sig)
}

// ValidateProposal checks a proposal can be executed: it decodes, its
// extensions decide the previous height, and its uploads are available.
// Individual invalid transfers do not invalidate a block: they are rejected.
func (a *App) ValidateProposal(height uint64, value []byte) error {
	_, err := a.prepare(height, value)
	return err
}

// ExtendVote evaluates the block homomorphically and returns this
// validator's digest and decryption shares. It only ever decrypts
// ciphertexts it computed itself.
func (a *App) ExtendVote(height uint64, round consensus.Round, value []byte) ([]byte, error) {
	ev, err := a.prepare(height, value)
	if err != nil {
		return nil, err
	}
	if ev.evals == nil {
		start := a.now()
		if err := a.evaluate(ev); err != nil {
			return nil, err
		}
		a.log.Debug("evaluated block", "height", height, "batches", len(ev.evals), "took", a.now().Sub(start))
	}
	x := &Ext{Height: height, Block: ev.hash, Digest: ev.digest}
	for _, e := range ev.evals {
		bs, es, err := a.dec.ShareChecks(a.key, &e.Checks)
		if err != nil {
			return nil, err
		}
		if a.faults != nil && a.faults.corruptShares {
			corrupt(bs, es)
		}
		bb, _ := bs.MarshalBinary()
		eb, _ := es.MarshalBinary()
		x.Shares = append(x.Shares, [2][]byte{bb, eb})
	}
	return x.Encode(), nil
}

// VerifyExtension accepts another validator's extension only if its digest
// equals ours (it computed the same checks) and its shares are well-formed.
// Share correctness cannot be checked (passive security, see docs/PROTOCOL.md);
// extra shares are cross-checked when results are decided.
func (a *App) VerifyExtension(height uint64, validator int, value []byte, ext []byte) error {
	var ev *blockEval
	if a.last != nil && height == a.finalized && Hash(value) == a.last.hash {
		// A late precommit for the block just decided.
		ev = a.last
		if _, err := a.ensureEval(ev); err != nil {
			return err
		}
	} else {
		var err error
		if ev, err = a.prepare(height, value); err != nil {
			return err
		}
	}
	if ev.evals == nil {
		if err := a.evaluate(ev); err != nil {
			return err
		}
	}
	x, err := DecodeExt(ext)
	if err != nil {
		return err
	}
	if x.Height != height || x.Block != ev.hash || x.Digest != ev.digest || len(x.Shares) != len(ev.evals) {
		return fmt.Errorf("%w: extension of validator %d does not match our evaluation", ErrBlock, validator)
	}
	for _, s := range x.Shares {
		for _, raw := range s {
			sh, err := a.p.DecodeDecShare(raw)
			if err != nil {
				return err
			}
			if sh.Validator != validator {
				return fmt.Errorf("%w: share signed as %d inside %d's extension", ErrBlock, sh.Validator, validator)
			}
		}
	}
	return nil
}

// Finalize applies a decided block: the previous height's results become
// final (decided by this block's extensions), accounts open, and everything
// is persisted atomically before returning.
func (a *App) Finalize(height uint64, value []byte, cert *consensus.CommitCertificate) error {
	if height != a.finalized+1 {
		return fmt.Errorf("node: finalize %d after %d", height, a.finalized)
	}
	ev, err := a.prepare(height, value)
	if err != nil {
		return err
	}
	var opened []*ledger.Account
	for _, o := range ev.block.Opens {
		acct, err := ev.book.Open(ed25519.PublicKey(o.SignPub), nil, o.Kind)
		if err != nil {
			a.log.Info("account opening skipped", "height", height, "err", err)
			continue
		}
		opened = append(opened, acct)
	}
	if err := a.persist.PersistHeight(height, value, cert, ev.book, ev.book.Height(), ev.applied, opened, ev.uploads, ev.credits); err != nil {
		return fmt.Errorf("node: persisting height %d: %w", height, err)
	}
	prevHeight := a.finalized
	a.book, a.credits, a.finalized, a.last = ev.book, ev.credits, height, ev
	a.spec = map[[32]byte]*blockEval{}
	a.decided = map[[32]byte]*decidedLast{}
	a.mem.Committed(ev.block)
	if a.observer != nil {
		a.observer.Included(height, ev.block)
		if prevHeight > 0 {
			a.observer.Decided(prevHeight, ev.applied)
		}
		if len(opened) > 0 {
			a.observer.Opened(height, opened)
		}
	}
	return nil
}

// CreditSelector is proposer(h, r) weighted by verified homomorphic work: a
// validator's weight is 1 + its work credits as of the last finalized height,
// and the pick is a deterministic hash of (h, r) into the cumulative weights.
type CreditSelector struct {
	credits func() []int64
}

// Proposer implements consensus.ProposerSelector.
func (s CreditSelector) Proposer(h uint64, r consensus.Round) int {
	cr := s.credits()
	var total uint64
	for _, c := range cr {
		total += uint64(1 + c)
	}
	var buf [12]byte
	binary.BigEndian.PutUint64(buf[:8], h)
	binary.BigEndian.PutUint32(buf[8:], uint32(r))
	d := sha256.Sum256(buf[:])
	x := binary.BigEndian.Uint64(d[:8]) % total
	for i, c := range cr {
		w := uint64(1 + c)
		if x < w {
			return i
		}
		x -= w
	}
	return 0
}
