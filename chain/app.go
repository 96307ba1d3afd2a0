package chain

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/zkbank/zkbank/consensus"
	"github.com/zkbank/zkbank/ledger"
)

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
	applied []ledger.Outcome  // outcomes of height-1 decided by this block's LastCommit
	credits []int64           // credits after deciding height-1
	faulty  []int             // validators whose height-1 extensions disagreed with the decision
	opened  []*ledger.Account // accounts this block opens (open in book)
	uploads []*Upload
}

// App is zkbank's consensus application: it turns ordered blocks of
// encrypted transfers into decided, applied and persisted results. Consensus
// calls it synchronously from one goroutine (the consensus actor); it is not
// safe for concurrent use. Readers elsewhere get the View it publishes.
type App struct {
	p        *ledger.Params
	eng      *ledger.Engine
	dec      *ledger.Decryptor
	key      *ledger.KeyShare
	chain    string
	n, t     int
	log      *slog.Logger
	vals     *consensus.ValidatorSet
	mem      Mempool
	evalr    Evaluator
	st       Store
	observer Observer
	now      func() time.Time
	faults   Faults

	book      *ledger.Book // results applied up to finalized-1
	finalized uint64
	last      *blockEval // evaluation of the last finalized block (results pending)
	credits   []int64
	spec      map[[32]byte]*blockEval   // proposals at finalized+1 by value hash
	decided   map[[32]byte]*decidedLast // decisions of the last block, by the extensions that made them
}

// Faults injects byzantine behaviour into a validator, for tests of the
// defenses against it. The zero value (what a shipped node uses) is honest.
type Faults struct {
	// CorruptShares sends well-formed, correctly attributed decryption
	// shares that decrypt wrongly.
	CorruptShares bool
	// TamperProposal alters the blocks this validator proposes after
	// building them honestly (a byzantine proposer).
	TamperProposal func(b *Block)
}

// Config wires an App.
type Config struct {
	Params    *ledger.Params
	Engine    *ledger.Engine
	Decryptor *ledger.Decryptor
	Key       *ledger.KeyShare
	Chain     string
	N, T      int
	// Validators verify the precommits a block carries.
	Validators *consensus.ValidatorSet
	Logger     *slog.Logger
	Mempool    Mempool
	Evaluator  Evaluator
	Store      Store
	Observer   Observer // may be nil
	Now        func() time.Time
	Faults     Faults

	// Restored is the state to resume from (Restore); nil starts at genesis
	// with GenesisBook.
	Restored    *Restored
	GenesisBook *ledger.Book
}

// New builds the application from a restored state.
func New(c Config) (*App, error) {
	a := &App{p: c.Params, eng: c.Engine, dec: c.Decryptor, key: c.Key, chain: c.Chain, n: c.N, t: c.T, log: c.Logger, vals: c.Validators,
		mem: c.Mempool, evalr: c.Evaluator, st: c.Store, observer: c.Observer, now: c.Now, faults: c.Faults,
		book: c.GenesisBook, spec: map[[32]byte]*blockEval{}, decided: map[[32]byte]*decidedLast{}}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if r := c.Restored; r != nil && r.Finalized > 0 {
		b, err := DecodeBlock(r.LastBlock)
		if err != nil {
			return nil, fmt.Errorf("chain: last block: %w", err)
		}
		a.book, a.finalized, a.credits = r.Book, r.Finalized, r.Credits
		// The last block's evaluation is recomputed lazily when its results
		// are needed (its book is the restored one).
		a.last = &blockEval{height: r.Finalized, hash: Hash(r.LastBlock), block: b, book: a.book}
	}
	if a.book == nil {
		return nil, errors.New("chain: no book to start from")
	}
	if a.vals == nil || a.vals.Size() != a.n {
		return nil, fmt.Errorf("chain: the validator set does not match the committee of %d", a.n)
	}
	if len(a.credits) != a.n {
		a.credits = make([]int64, a.n)
	}
	return a, nil
}

// View returns what the last finalized height published (before any height
// is finalized: the restored state). Call it before consensus starts; later,
// readers get views from the Observer.
func (a *App) View() *View {
	v := &View{Height: a.finalized, Book: a.book, Credits: a.Credits()}
	if a.last != nil {
		v.Block, v.Hash = a.last.block, a.last.hash
	}
	return v
}

// Credits returns per-validator work credits as of the last finalized height.
func (a *App) Credits() []int64 { return append([]int64(nil), a.credits...) }

// uploadsOf resolves a block's ciphertexts from the mempool, else from the
// store (uploads of finalized blocks are kept there). It never goes to the
// network: the node fetched what a proposal references before delivering it.
func (a *App) uploadsOf(b *Block) ([]*Upload, error) {
	out := make([]*Upload, len(b.Subs))
	for i, s := range b.Subs {
		u, err := a.mem.Get(s.CTHash)
		if err != nil {
			return nil, fmt.Errorf("chain: mempool: %w", err)
		}
		if u == nil {
			raw, err := StoredUpload(a.st, s.CTHash)
			if err != nil {
				return nil, fmt.Errorf("%w: %w %x", ErrBlock, ErrUnavailable, s.CTHash[:8])
			}
			u = NewUpload(a.p, raw, nil, time.Time{})
		}
		out[i] = u
	}
	return out, nil
}

// decidedLast is the last block decided by one set of carried precommits.
// Its book is read-only until the proposal carrying them is finalized.
type decidedLast struct {
	book    *ledger.Book
	outs    []ledger.Outcome
	credits []int64
	faulty  []int // validators whose shares disagreed with the decision
}

// decideLast computes the outcomes of the last finalized block from the
// precommits a proposal for the next height carries, on a clone of the book.
// The result is shared by every proposal of the height carrying the same
// precommits (the proposer's own, and re-proposals in later rounds): applying
// a batch costs hundreds of milliseconds.
func (a *App) decideLast(carried []Precommit) (*decidedLast, error) {
	// Verified before the cache is consulted: a decision is reused only for
	// precommits that verify, under a key that encodes them unambiguously.
	if err := a.verifyCarried(carried); err != nil {
		return nil, err
	}
	h := sha256.New() // length-prefixed fields, streamed: extensions are megabytes
	for _, x := range carried {
		var hdr [16]byte
		binary.BigEndian.PutUint32(hdr[0:], uint32(x.Validator))
		binary.BigEndian.PutUint32(hdr[4:], uint32(x.Round))
		binary.BigEndian.PutUint32(hdr[8:], uint32(len(x.Ext)))
		binary.BigEndian.PutUint32(hdr[12:], uint32(len(x.Signature)))
		h.Write(hdr[:])
		h.Write(x.Ext)
		h.Write(x.Signature)
	}
	var key [32]byte
	h.Sum(key[:0])
	if d, ok := a.decided[key]; ok {
		return d, nil
	}
	d, err := a.decide(carried)
	if err != nil {
		return nil, err
	}
	a.decided[key] = d
	return d, nil
}

// verifyCarried checks the precommits a block carries for the last block:
// strictly increasing validators, each a precommit for exactly that block
// and height signed by its validator over exactly this extension, and
// together a quorum of voting power (so the proposer cannot pick a handful of
// precommits to its liking). Any failure makes the block invalid.
func (a *App) verifyCarried(carried []Precommit) error {
	if a.last == nil {
		if len(carried) != 0 {
			return fmt.Errorf("%w: first block carries precommits", ErrBlock)
		}
		return nil
	}
	var power int64
	prev := -1
	for _, x := range carried {
		if x.Validator <= prev || !a.vals.Has(x.Validator) {
			return fmt.Errorf("%w: carried precommit of validator %d out of order or unknown", ErrBlock, x.Validator)
		}
		prev = x.Validator
		if len(x.Ext) == 0 || !consensus.VerifyVote(a.chain, a.vals, x.Vote(a.last.height, consensus.BlockID(a.last.hash))) {
			return fmt.Errorf("%w: carried precommit of validator %d is not its signed precommit for height %d", ErrBlock, x.Validator, a.last.height)
		}
		power += a.vals.Power(x.Validator)
	}
	if !a.vals.IsQuorum(power) {
		return fmt.Errorf("%w: carried precommits hold %d of %d voting power", ErrBlock, power, a.vals.TotalPower())
	}
	return nil
}

// quorumCanDecide reports whether t+f validators fit in the smallest quorum
// (all powers are equal: genesis checks it), that is t <= f+1 for N = 3f+1.
func (a *App) quorumCanDecide() bool {
	quorum := 2*a.n/3 + 1
	return a.t+(a.n-1)/3 <= quorum
}

// decide decides the last block from verified carried precommits.
func (a *App) decide(carried []Precommit) (*decidedLast, error) {
	d := &decidedLast{book: a.book.Clone(), credits: append([]int64(nil), a.credits...)}
	if a.last == nil { // nothing finalized yet: the first block decides nothing
		return d, nil
	}
	ev, err := a.ensureEval(a.last)
	if err != nil {
		return nil, err
	}
	h := ev.height
	// Shares of validators whose digest equals ours: they signed that they
	// computed the same check ciphertexts. Anything else in a signed
	// extension is that validator's fault, not the proposer's.
	shares := make([]map[int]ledger.CheckShares, len(ev.evals))
	for i := range shares {
		shares[i] = map[int]ledger.CheckShares{}
	}
	faulty := map[int]bool{}
	for _, x := range carried {
		ext, err := DecodeExt(x.Ext)
		if err != nil || ext.Height != h || ext.Block != ev.hash || ext.Digest != ev.digest || len(ext.Shares) != len(ev.evals) {
			faulty[x.Validator] = true
			continue
		}
		got := make([]ledger.CheckShares, 0, len(ext.Shares))
		for _, s := range ext.Shares {
			b, err1 := a.p.DecodeDecShare(s[0])
			e, err2 := a.p.DecodeDecShare(s[1])
			if err1 != nil || err2 != nil || b.Validator != x.Validator || e.Validator != x.Validator {
				break
			}
			got = append(got, ledger.CheckShares{Bits: b, Eq: e})
		}
		if len(got) != len(ev.evals) {
			faulty[x.Validator] = true
			continue
		}
		for i, cs := range got {
			shares[i][x.Validator] = cs
		}
	}
	// Each batch is decided by T+F validators whose shares agree (robust.go);
	// a batch with no such agreement fails closed. A credit is one lane
	// evaluated, earned only by validators in the agreeing set: shares that
	// match the decision prove the validator computed the check ciphertexts
	// (a copied digest without them earns nothing), and empty blocks earn
	// nothing.
	verdicts := make([]map[int]ledger.Reason, len(ev.evals))
	decisions := make([]*ledger.Decision, len(ev.evals))
	for i, e := range ev.evals {
		dec, err := a.dec.DecideChecks(e, shares[i])
		switch {
		case errors.Is(err, ledger.ErrNoAgreement) && len(carried) < a.n && a.quorumCanDecide():
			// Some precommit is missing: it may be the one that outvotes a
			// wrong share. Refusing the block (prevote nil) lets a later
			// proposer carry more, rather than letting a proposer pick a
			// quorum that fails the batch closed. (Only when a quorum of
			// honest validators can decide at all, t+f <= quorum: with a
			// higher threshold a validator down would otherwise halt the
			// chain; it fails the batch closed instead.)
			return nil, fmt.Errorf("%w: batch %d of height %d: no t+f of the %d carried validators agree (%w)", ErrBlock, i, h, len(carried), err)
		case errors.Is(err, ledger.ErrNoAgreement):
			// Every validator's precommit is carried and still no t+f
			// agree: more than f are faulty. Fail closed: nothing moves.
			a.log.Warn("no t+f validators agree on a batch although all are carried; failing it closed", "height", h, "batch", i, "err", err)
			v := map[int]ledger.Reason{}
			for _, l := range e.Lanes {
				v[l] = ledger.RejectUndecided
			}
			verdicts[i] = v
			continue
		case err != nil:
			return nil, fmt.Errorf("chain: deciding height %d batch %d: %w", h, i, err)
		}
		verdicts[i], decisions[i] = dec.Verdicts, dec
		for _, v := range dec.Faulty {
			faulty[v] = true
		}
	}
	// Credits once every batch has named its faulty validators: a validator
	// named in any batch earns nothing for the height.
	for i, dec := range decisions {
		if dec == nil {
			continue
		}
		for _, v := range dec.Agreed {
			if !faulty[v] {
				d.credits[v] += int64(len(ev.evals[i].Lanes))
			}
		}
	}
	for v := range faulty {
		d.faulty = append(d.faulty, v)
	}
	sort.Ints(d.faulty)
	if len(d.faulty) > 0 {
		a.log.Warn("validators sent extensions that disagree with the decision", "height", h, "validators", d.faulty)
	}
	if len(ev.batches) == 0 {
		err = d.book.Skip(h)
	} else {
		d.outs, err = d.book.Commit(a.eng, h, ev.batches, ev.evals, verdicts)
	}
	if err != nil {
		return nil, err
	}
	for id, r := range ev.early {
		d.outs = append(d.outs, ledger.Outcome{ID: id, Env: envByID(ev.block, id), Reason: r})
	}
	sort.Slice(d.outs, func(i, j int) bool { return bytes.Compare(d.outs[i].ID[:], d.outs[j].ID[:]) < 0 })
	return d, nil
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
	d, err := a.decideLast(b.LastCommit)
	if err != nil {
		return nil, err
	}
	if err := checkUnique(b); err != nil {
		return nil, err
	}
	ups, err := a.uploadsOf(b)
	if err != nil {
		return nil, err
	}
	for _, o := range b.Opens {
		if !o.Valid(a.chain) {
			return nil, fmt.Errorf("%w: account opening with a bad signature", ErrBlock)
		}
	}
	// The block's accounts open before its transfers are planned, on this
	// proposal's own copy of the decided book: the book a block is planned
	// on is then exactly the one Finalize persists, so a validator that
	// restarts and re-plans the block gets the same batches.
	book := d.book.Clone()
	var opened []*ledger.Account
	for _, o := range b.Opens {
		acct, err := book.Open(ed25519.PublicKey(o.SignPub), nil, o.Kind)
		if err != nil {
			a.log.Debug("account opening skipped", "height", height, "err", err)
			continue
		}
		opened = append(opened, acct)
	}
	ev := &blockEval{height: height, hash: hash, block: b, book: book, opened: opened, applied: d.outs, credits: d.credits, faulty: d.faulty, uploads: ups}
	a.spec[hash] = ev
	return ev, nil
}

// HasWork implements consensus.WorkSignaler: the proposer of a height waits
// (up to the commit timeout) for something to propose before proposing an
// empty block. A mempool that cannot answer counts as having work, so a
// failure shows up in BuildProposal rather than as an idle chain.
func (a *App) HasWork(uint64) bool {
	ok, err := a.mem.HasWork()
	if err != nil {
		a.log.Warn("mempool did not answer", "err", err)
		return true
	}
	return ok
}

// BuildProposal proposes the mempool's ready transfers (at most one debit
// per sender) and carries the previous height's precommit extensions.
func (a *App) BuildProposal(height uint64, last *consensus.CommitCertificate) ([]byte, error) {
	b := &Block{Height: height, TimeMs: uint64(a.now().UnixMilli())}
	if last != nil {
		// Every precommit of the certificate, late ones included: the more
		// shares, the more validators can disagree without stalling a
		// decision (robust.go).
		for _, s := range last.Sigs {
			if len(s.Extension) > 0 {
				b.LastCommit = append(b.LastCommit, Precommit{Validator: s.Validator, Round: last.Round, Ext: s.Extension, Signature: s.Signature})
			}
		}
	}
	// Decide the previous height first, so proposed transfers are checked
	// against the book they will be evaluated on.
	d, err := a.decideLast(b.LastCommit)
	if err != nil {
		return nil, err
	}
	book := d.book
	cands, err := a.mem.Candidates(MaxBlockSubs)
	if err != nil {
		return nil, fmt.Errorf("chain: mempool: %w", err)
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
	opens, err := a.mem.Opens(MaxBlockOpens)
	if err != nil {
		return nil, fmt.Errorf("chain: mempool: %w", err)
	}
	for _, o := range opens {
		if o.Valid(a.chain) { // a block with a bad opening is invalid: never propose one
			b.Opens = append(b.Opens, o)
		}
	}
	if a.faults.TamperProposal != nil {
		a.faults.TamperProposal(b)
	}
	return b.Encode(), nil
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
		if a.faults.CorruptShares {
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
// is persisted in one atomic store commit before it returns. Then the mempool
// forgets what the block included and the observer gets the new View.
func (a *App) Finalize(height uint64, value []byte, cert *consensus.CommitCertificate) error {
	if height != a.finalized+1 {
		return fmt.Errorf("chain: finalize %d after %d", height, a.finalized)
	}
	ev, err := a.prepare(height, value)
	if err != nil {
		return err
	}
	rec := &heightRecord{height: height, value: value, cert: cert, book: ev.book, outcomes: ev.applied, uploads: ev.uploads, credits: ev.credits}
	if err := persistHeight(a.st, rec); err != nil {
		return fmt.Errorf("chain: persisting height %d: %w", height, err)
	}
	prev := a.finalized
	a.book, a.credits, a.finalized, a.last = ev.book, ev.credits, height, ev
	a.spec = map[[32]byte]*blockEval{}
	a.decided = map[[32]byte]*decidedLast{}
	a.mem.Committed(ev.block)
	if a.observer != nil {
		v := &View{Height: height, Book: ev.book, Credits: a.Credits(), Block: ev.block, Hash: ev.hash, Outcomes: ev.applied, Opened: ev.opened, Faulty: ev.faulty}
		if prev > 0 {
			v.Decided = prev
		}
		a.observer.Finalized(v)
	}
	return nil
}

// corrupt turns shares into wrong ones: one coefficient is altered, so the
// share is still well-formed and correctly attributed but decrypts wrongly.
func corrupt(bs, es *ledger.DecShare) {
	bs.Share.Value.Coeffs[0][0] ^= 0x5a5a
	es.Share.Value.Coeffs[0][0] ^= 0x5a5a
}

// checkUnique refuses a block that names an upload or a transfer twice: a
// duplicate would be evaluated once and rejected once under the same id.
func checkUnique(b *Block) error {
	subs := map[[32]byte]bool{}
	ids := map[[32]byte]bool{}
	for _, s := range b.Subs {
		if subs[s.CTHash] {
			return fmt.Errorf("%w: upload %x named twice", ErrBlock, s.CTHash[:8])
		}
		subs[s.CTHash] = true
		for i := range s.Envelopes {
			id := s.Envelopes[i].ID()
			if ids[id] {
				return fmt.Errorf("%w: transfer %x listed twice", ErrBlock, id[:8])
			}
			ids[id] = true
		}
	}
	return nil
}
