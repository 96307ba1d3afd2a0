package chain

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"sort"
	"time"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/zkbank/zkbank/consensus"
	"github.com/zkbank/zkbank/ledger"
)

// The pipeline (docs/PROTOCOL.md, "Pipeline"). Block h orders sealed
// uploads. Each validator's precommit for h attests its piece ciphertexts of
// h's shard batches. The proposal for h+1 carries those precommits: they
// decide each piece (f+1 holders alike), every validator sums the pieces into
// h's batch ciphertexts, evaluates the checks on the book with h-1's results
// applied, and attaches its decryption shares to its precommit for h+1. The
// proposal for h+2 carries them and decides h's verdicts, which the book
// applies. So block h's results are final at h+2.

// blockEval is this validator's view of one block: what it opened and what
// it decided when preparing it.
type blockEval struct {
	height  uint64
	hash    [32]byte
	block   *Block
	book    *ledger.Book // results through height-2 applied, accounts through height opened
	uploads []*Upload
	opened  []*ledger.Account // accounts this block opens (open in book)
	layout  *layout           // where this block's transfers sit in its shard batches
	mine    *[]PieceAttest    // this validator's piece attestations (computed once, at ExtendVote)

	// Decided by this block's carried precommits (of height-1):
	applied []ledger.Outcome // outcomes of height-2
	credits []int64          // credits after deciding height-2
	faulty  []int            // validators whose carried extensions disagreed with a decision
	prev    *checkEval       // block height-1 evaluated on its decided pieces (nil at height 1)
}

// checkEval is a block evaluated on its decided pieces: its checks wait for
// the decryption shares the next block's precommits carry.
type checkEval struct {
	height  uint64
	hash    [32]byte
	block   *Block
	batches []*ledger.Batch
	early   map[[32]byte]ledger.Reason
	evals   []*ledger.Evaluation
	digest  [32]byte
	pieces  [][32]byte // the decided piece ciphertexts it was evaluated on (a snapshot keeps them)
}

// App is zkbank's consensus application: it turns ordered blocks of
// sealed transfers into decided, applied and persisted results. Consensus
// calls it synchronously from one goroutine (the consensus actor); it is not
// safe for concurrent use. Readers elsewhere get the View it publishes.
type App struct {
	p        *ledger.Params
	eng      *ledger.Engine
	dec      *ledger.Decryptor
	key      *ledger.KeyShare
	pk       *rlwe.PublicKey
	open     *Opener
	sh       *ledger.Sharing
	pieces   *PieceCache
	chain    string
	n, t     int
	self     int
	log      *slog.Logger
	vals     *consensus.ValidatorSet
	mem      Mempool
	evalr    Evaluator
	st       Store
	observer Observer
	now      func() time.Time
	timing   func(string, time.Duration)
	faults   Faults
	follow   bool  // a full node's application: no key share, never votes (follow.go)
	dropped  []int // signers the last FollowCommit dropped (follow.go)

	book      *ledger.Book // results through finalized-2, accounts through finalized
	finalized uint64
	last      *blockEval // the last finalized block (its pieces are decided by the next)
	credits   []int64
	spec      map[[32]byte]*blockEval // proposals at finalized+1 by value hash
	decided   map[[32]byte]*decided   // decisions of the carried precommits, by their encoding

	snapEvery, retention uint64
	snap                 *SnapshotInfo // the snapshot of the finalized height, if it is a snapshot height

	// Validator-set changes (epoch.go).
	verifyChange  func([]byte) error
	proposeChange func() []byte
	epochStart    uint64
	prevVals      *consensus.ValidatorSet
	pending       *PendingChange // committed, not yet in force
}

// Faults injects byzantine behaviour into a validator, for tests of the
// defenses against it. The zero value (what a shipped node uses) is honest.
type Faults struct {
	// FailFinalize, if it returns an error, makes Finalize of that height
	// fail before it changes anything (a write to the store failing).
	FailFinalize func(height uint64) error
	// CorruptShares sends well-formed, correctly attributed decryption
	// shares that decrypt wrongly.
	CorruptShares bool
	// TamperProposal alters the blocks this validator proposes after
	// building them honestly (a byzantine proposer).
	TamperProposal func(b *Block)
	// ShiftPiece alters this validator's pieces before it encrypts them (a
	// byzantine holder moving money between an amount and a new balance).
	ShiftPiece func(shard uint32, piece int, lane int, values []uint64)
	// ShiftMin replaces the public minimum this validator writes in its
	// pieces of a score check (a byzantine holder of piece 0 lowering the
	// bar a borrower must clear).
	ShiftMin func(shard uint32, piece int, lane int, min uint64) uint64
	// ShiftCredit replaces this validator's credits of a group's layer
	// before it encrypts them (a byzantine holder crediting more than was
	// debited).
	ShiftCredit func(shard uint32, piece int, credits []ledger.LaneCredit) []ledger.LaneCredit
	// WithholdWork makes this validator ack nothing and attest no piece,
	// as if no box ever opened for it (a byzantine validator trying to get
	// honest transfers failed closed).
	WithholdWork bool
}

// Config wires an App.
type Config struct {
	Params    *ledger.Params
	Engine    *ledger.Engine
	Decryptor *ledger.Decryptor
	Key       *ledger.KeyShare
	// PK is the collective public key validators encrypt pieces under.
	PK *rlwe.PublicKey
	// Opener opens this validator's sealed boxes (its Self is the
	// validator's index).
	Opener *Opener
	// Pieces is shared with the node, which serves and fetches pieces.
	Pieces *PieceCache
	Chain  string
	N, T   int
	// Validators verify the precommits a block carries.
	Validators *consensus.ValidatorSet
	Logger     *slog.Logger
	Mempool    Mempool
	Evaluator  Evaluator
	Store      Store
	Observer   Observer // may be nil
	Now        func() time.Time
	Faults     Faults
	// Timing, if set, is told how long each stage of the pipeline took
	// (StageDecide, StagePieces, StageShares, StagePersist, StagePropose),
	// for the node's metrics.
	Timing func(stage string, d time.Duration)
	// Follow makes the application a full node's: it holds no key share
	// and no sealing key (Key and Opener.Key nil, Opener.Self -1), never
	// proposes or votes, and finalizes served decisions through
	// FollowCommit (follow.go), re-evaluating every block as validators do.
	Follow bool

	// Restored is the state to resume from (Restore); nil starts at genesis
	// with GenesisBook.
	Restored    *Restored
	GenesisBook *ledger.Book

	// SnapshotEvery is the state snapshot interval (0: DefaultSnapshotEvery;
	// every validator must use the same) and UploadRetention how many
	// heights uploads and pieces are kept (0: UploadRetention). Tests set
	// small ones.
	SnapshotEvery, UploadRetention uint64

	// VerifyChange checks a validator-set change a block carries (an
	// encoded genesis.Change) against the current committee; nil makes
	// every block carrying one invalid.
	VerifyChange func(raw []byte) error
	// ProposeChange returns a change waiting to be proposed (nil if none);
	// the proposer includes it when no change is pending.
	ProposeChange func() []byte
	// EpochStart is the first height the committee of Validators decides
	// (0 for the genesis committee); PrevValidators is the committee that
	// decided height EpochStart-1, whose precommits block EpochStart
	// carries.
	EpochStart     uint64
	PrevValidators *consensus.ValidatorSet
}

// Pipeline stages reported to Config.Timing.
const (
	StageDecide  = "decide"  // verdicts from shares, pieces decided, the block evaluated
	StagePieces  = "pieces"  // this validator's piece ciphertexts encrypted
	StageShares  = "shares"  // decryption shares of the previous block's checks
	StagePersist = "persist" // a finalized height written to the store
	StagePropose = "propose" // a proposal built
)

// timed reports a stage's duration since start.
func (a *App) timed(stage string, start time.Time) {
	if a.timing != nil {
		a.timing(stage, time.Since(start))
	}
}

// New builds the application from a restored state.
func New(c Config) (*App, error) {
	a := &App{p: c.Params, eng: c.Engine, dec: c.Decryptor, key: c.Key, pk: c.PK, open: c.Opener, pieces: c.Pieces, chain: c.Chain, n: c.N, t: c.T, log: c.Logger, vals: c.Validators,
		mem: c.Mempool, evalr: c.Evaluator, st: c.Store, observer: c.Observer, now: c.Now, faults: c.Faults, timing: c.Timing, follow: c.Follow,
		book: c.GenesisBook, spec: map[[32]byte]*blockEval{}, decided: map[[32]byte]*decided{},
		snapEvery: c.SnapshotEvery, retention: c.UploadRetention,
		verifyChange: c.VerifyChange, proposeChange: c.ProposeChange, epochStart: c.EpochStart, prevVals: c.PrevValidators}
	if a.epochStart > 1 && a.prevVals == nil {
		return nil, fmt.Errorf("chain: epoch starting at height %d without the committee before it", a.epochStart)
	}
	if a.snapEvery == 0 {
		a.snapEvery = DefaultSnapshotEvery
	}
	if a.retention == 0 {
		a.retention = UploadRetention
	}
	if a.now == nil {
		a.now = time.Now
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if a.open == nil || a.open.Sharing == nil || a.pk == nil {
		return nil, errors.New("chain: no opener, sharing or public key")
	}
	a.sh, a.self = a.open.Sharing, a.open.Self
	if a.follow && (a.key != nil || a.open.Key != nil || a.self != -1) {
		return nil, errors.New("chain: a following application holds no key share, no sealing key and no validator index")
	}
	if a.sh.N != a.n || a.sh.F != (a.n-1)/3 {
		return nil, fmt.Errorf("chain: sharing for %d validators and f = %d, committee of %d", a.sh.N, a.sh.F, a.n)
	}
	if f := (a.n - 1) / 3; a.t != f+1 {
		// Uploads are shared among f-subsets: any f+1 validators hold every
		// piece, so a higher threshold would protect nothing more, and a
		// lower one would let f decrypt.
		return nil, fmt.Errorf("chain: threshold %d of %d: sealed uploads need t = f+1 = %d", a.t, a.n, f+1)
	}
	if a.n > 64 {
		return nil, fmt.Errorf("chain: %d validators (acks are a 64-bit set)", a.n)
	}
	if a.pieces == nil {
		a.pieces = NewPieceCache()
	}
	if a.vals == nil || a.vals.Size() != a.n {
		return nil, fmt.Errorf("chain: the validator set does not match the committee of %d", a.n)
	}
	if r := c.Restored; r != nil && r.Finalized > 0 {
		b, err := DecodeBlock(r.LastBlock)
		if err != nil {
			return nil, fmt.Errorf("chain: last block: %w", err)
		}
		a.book, a.finalized, a.credits = r.Book, r.Finalized, r.Credits
		if r.Pending != nil && r.Pending.Start > a.epochStart {
			a.pending = r.Pending // committed, not yet in force
		}
		ups, err := a.uploadsOf(b)
		if err != nil {
			return nil, err
		}
		a.last = &blockEval{height: r.Finalized, hash: Hash(r.LastBlock), block: b, book: a.book, uploads: ups}
		a.last.layout = a.layoutOf(a.book, b, ackSets(b.LastCommit), nil)
		if r.Finalized > 1 {
			// Block finalized-1 was evaluated on this book minus the last
			// block's openings; its pieces were decided by the last block's
			// carried precommits. Re-evaluate it (deterministic).
			pb, err := DecodeBlock(r.PrevBlock)
			if err != nil {
				return nil, fmt.Errorf("chain: previous block: %w", err)
			}
			pups, err := a.uploadsOf(pb)
			if err != nil {
				return nil, err
			}
			prev := &blockEval{height: r.Finalized - 1, hash: Hash(r.PrevBlock), block: pb, uploads: pups}
			prev.layout = a.layoutOf(a.book, pb, ackSets(pb.LastCommit), openedBy(b))
			exts, present, _ := carriedExts(b.LastCommit, prev.height, prev.hash)
			cts, credits, _, used, err := a.decidePieces(prev, exts, present, true)
			if err != nil {
				return nil, fmt.Errorf("chain: re-deciding the pieces of height %d: %w", prev.height, err)
			}
			if a.last.prev, err = a.evaluate(prev, a.book, cts, credits); err != nil {
				return nil, err
			}
			a.last.prev.pieces = used
		}
		if err := a.loadSnapshot(r); err != nil {
			return nil, err
		}
	}
	if a.book == nil {
		return nil, errors.New("chain: no book to start from")
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
	v := &View{Height: a.finalized, Book: a.book, Credits: a.Credits(), Pending: a.pending}
	if a.last != nil {
		v.Block, v.Hash = a.last.block, a.last.hash
	}
	return v
}

// Credits returns per-validator work credits as of the last finalized height.
func (a *App) Credits() []int64 { return append([]int64(nil), a.credits...) }

// uploadsOf resolves a block's uploads from the mempool, else from the
// store (uploads of finalized blocks are kept there). It never goes to the
// network: the node fetched what a proposal references before delivering it.
func (a *App) uploadsOf(b *Block) ([]*Upload, error) {
	out := make([]*Upload, len(b.Subs))
	for i, s := range b.Subs {
		// By transfer id: the copy the pool holds was opened under this very
		// envelope's binding (same signed bytes), never under another
		// envelope that names the same sealed bytes.
		u, err := a.mem.Get(s.Envelopes[0].ID())
		if err != nil {
			return nil, fmt.Errorf("chain: mempool: %w", err)
		}
		if u != nil && u.Hash != s.CTHash {
			u = nil
		}
		if u == nil {
			raw, err := StoredUpload(a.st, s.CTHash)
			if err != nil {
				return nil, fmt.Errorf("%w: %w %x", ErrBlock, ErrUnavailable, s.CTHash[:8])
			}
			u = a.open.NewUpload(raw, s.Envelopes, time.Time{})
		}
		out[i] = u
	}
	return out, nil
}

// layout is where a block's transfers sit, fixed when the block is ordered.
// Each transfer sits in its sender's lane (the first transfer of a sender in
// block order takes the lane). Transfers of one shard are grouped by the
// exact set of validators whose carried precommits acked them: a group's
// pieces are encrypted and decided together, so a dealer that sealed a bad
// box to some validator lands in a group of its own and cannot make honest
// holders abstain on anyone else's transfer. Transfers whose sender or
// receiver did not exist, or that do not reference their own upload, are
// rejected before any group.
type layout struct {
	groups []group // by shard, then by ack set, in order of first appearance
	parts  int     // attestation indexes: the groups' batches, then their credit layers
	early  map[[32]byte]ledger.Reason
	// overfull: some pay-many found too few free lanes in its shard (a
	// block no honest proposer builds: prepare refuses it).
	overfull bool
}

type group struct {
	shard uint32
	kind  uint8  // ledger.Envelope.BatchKind: payments, applies or score checks
	acked uint64 // bitmask of the validators that acked every transfer of the group
	lanes []int  // in order of appearance in the block
	subs  []int  // lanes[i] holds the transfer of block.Subs[subs[i]]
	// many[i] are the payee lanes lent to a pay-many in lanes[i] (nil for
	// any other operation): free lanes of its shard, lowest first, that no
	// operation of the block and no other pay-many uses.
	many [][]int
	// Credits of a payment group (ledger.CreditLayout), one per payee:
	// credit c of member cm[c] (its payee cp[c]) goes to receiver lane
	// to[c], at index[c] of credit layer layer[c]. Layer 0 is the group's
	// own batch ciphertext (lanes no sender or payee lane of the group
	// occupies); the separate layers 1..layers are attested at indexes
	// part, part+1, ... (after the groups).
	to, layer, index, cm, cp []int
	layers, part             int
}

// busy returns every lane the group's transfers take in its batch.
func (g *group) busy() []int {
	out := append([]int(nil), g.lanes...)
	for _, m := range g.many {
		out = append(out, m...)
	}
	return out
}

// openedBy returns the accounts a block opens.
func openedBy(b *Block) map[ledger.AccountID]bool {
	m := map[ledger.AccountID]bool{}
	for _, o := range b.Opens {
		m[ledger.AccountIDOf(ed25519.PublicKey(o.SignPub))] = true
	}
	return m
}

// MaxGroups bounds the groups of one block (each costs every holder one
// piece encryption per piece it holds): groups acked by every validator
// come first, then the others in order of appearance; transfers of groups
// beyond the bound are rejected as undecided before anything is encrypted.
// A dealer sealing bad boxes can open at most the few ack sets of size N-f
// or more per shard, and cannot crowd out transfers every validator acked.
const MaxGroups = 32

// MaxParts bounds a block's attestation indexes: each group's batch and, for
// a payment group, its one credit ciphertext (MaxCreditsPerLane).
const MaxParts = 2 * MaxGroups

// layoutOf lays a block out on book, treating accounts in later as not yet
// open (a restarted validator's book already holds the next block's).
func (a *App) layoutOf(book *ledger.Book, b *Block, acks map[[32]byte]uint64, later map[ledger.AccountID]bool) *layout {
	l := &layout{early: map[[32]byte]ledger.Reason{}}
	type key struct {
		shard uint32
		kind  uint8 // payments, applies and score checks of a shard are separate batches (ledger.Plan)
		acked uint64
	}
	type placed struct {
		sub  int
		key  key
		lane int
	}
	var order []key
	seen := map[key]bool{}
	var all []placed
	taken := map[[2]uint64]bool{}
	for i, s := range b.Subs {
		env := &s.Envelopes[0]
		id := env.ID()
		from, ok1 := book.Account(env.From)
		ok2 := true
		for _, p := range env.Payees() {
			if _, ok := book.Account(p); !ok || later[p] {
				ok2 = false
			}
		}
		switch {
		case !ok1 || !ok2 || later[env.From]:
			l.early[id] = ledger.RejectUnknownAccount
			continue
		case env.CTHash != s.CTHash:
			l.early[id] = ledger.RejectMalformed
			continue
		}
		k := [2]uint64{uint64(from.Shard), uint64(from.Lane)}
		if taken[k] {
			l.early[id] = ledger.RejectLaneBusy
			continue
		}
		taken[k] = true
		gk := key{from.Shard, env.BatchKind(), acks[id]}
		if !seen[gk] {
			seen[gk] = true
			order = append(order, gk)
		}
		all = append(all, placed{sub: i, key: gk, lane: from.Lane})
	}
	full := uint64(1)<<a.n - 1
	sort.SliceStable(order, func(i, j int) bool { return order[i].acked == full && order[j].acked != full })
	idx := map[key]int{}
	for _, gk := range order {
		if len(l.groups) == MaxGroups {
			break
		}
		idx[gk] = len(l.groups)
		l.groups = append(l.groups, group{shard: gk.shard, kind: gk.kind, acked: gk.acked})
	}
	// Payee lanes of pay-many payments: the lowest lanes of the sender's
	// shard that no operation of the block takes, in block order. A
	// pay-many that finds too few is rejected (a proposer never builds such
	// a block: prepare refuses it, laneCap prevents it).
	next := map[uint32]int{}
	lend := func(shard uint32, n int) []int {
		var out []int
		for l := next[shard]; l < a.p.Lanes && len(out) < n; l++ {
			if !taken[[2]uint64{uint64(shard), uint64(l)}] {
				out = append(out, l)
			}
			next[shard] = l + 1
		}
		return out
	}
	for _, p := range all {
		env := &b.Subs[p.sub].Envelopes[0]
		j, ok := idx[p.key]
		if !ok {
			l.early[env.ID()] = ledger.RejectUndecided
			continue
		}
		var many []int
		if env.IsMany() {
			if many = lend(p.key.shard, len(env.Payees())); len(many) < len(env.Payees()) {
				l.early[env.ID()] = ledger.RejectLaneBusy
				l.overfull = true
				continue
			}
		}
		l.groups[j].lanes = append(l.groups[j].lanes, p.lane)
		l.groups[j].subs = append(l.groups[j].subs, p.sub)
		l.groups[j].many = append(l.groups[j].many, many)
	}
	l.parts = len(l.groups)
	for j := range l.groups {
		g := &l.groups[j]
		if g.kind != 0 {
			continue // applies and checks credit nobody
		}
		for m, i := range g.subs {
			for pi, id := range b.Subs[i].Envelopes[0].Payees() {
				to, _ := book.Account(id)
				g.to, g.cm, g.cp = append(g.to, to.Lane), append(g.cm, m), append(g.cp, pi)
			}
		}
		g.layer, g.index, g.layers = a.p.CreditLayout(g.to, g.busy())
		g.part = l.parts
		l.parts += g.layers
	}
	return l
}

// ackQuorum is how many validators must have opened an upload's sealed box
// before a block may include it: N-f, so at least f+1 honest validators
// opened it. Its group (layoutOf) is then decided by the holders among its
// ackers.
func (a *App) ackQuorum() int { return a.n - (a.n-1)/3 }

// maxCandidates is how many waiting uploads a proposer considers.
const maxCandidates = 4096

// ackSets returns, per transfer id, the bitmask of the carried precommits
// that acked it.
func ackSets(carried []Precommit) map[[32]byte]uint64 {
	out := map[[32]byte]uint64{}
	for _, x := range carried {
		ext, err := DecodeExt(x.Ext)
		if err != nil || x.Validator < 0 || x.Validator >= 64 {
			continue
		}
		for _, id := range ext.Acks {
			out[id] |= 1 << x.Validator
		}
	}
	return out
}

// decided is what one set of carried precommits (of height h-1) decides:
// the verdicts of h-2 applied to a clone of the book, and h-1 evaluated.
// Its book is read-only until the proposal carrying them is finalized.
type decided struct {
	book    *ledger.Book
	outs    []ledger.Outcome
	credits []int64
	faulty  []int
	prev    *checkEval
}

// decide computes, from the precommits a proposal for the next height
// carries, the results of the block before the last (from their decryption
// shares) and the last block's batches (from their piece attestations),
// evaluated. The result is shared by every proposal of the height carrying
// the same precommits (the proposer's own, and re-proposals in later
// rounds): applying and evaluating batches costs hundreds of milliseconds.
func (a *App) decide(carried []Precommit) (*decided, error) {
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
	start := time.Now()
	d, err := a.decideUncached(carried)
	if err != nil {
		return nil, err
	}
	a.timed(StageDecide, start)
	a.decided[key] = d
	return d, nil
}

// carry is what a block carries of the last certificate: every precommit,
// late ones included, and every attestation of a validator whose precommit
// the certificate lacks, in validator order. The more extensions, the more
// validators can disagree without stalling a decision (robust.go); the
// attestations are what let an honest validator left out of the
// certificate outvote a wrong share (decideVerdicts, decidePieces).
//
// At an epoch's start (attested false) only the precommits are carried: the
// previous committee's last heights are quiet, so there is nothing to
// outvote, and this committee's attestations would not be the previous
// one's.
func carry(last *consensus.CommitCertificate, attested bool) []Precommit {
	out := make([]Precommit, 0, len(last.Sigs)+len(last.Attested))
	in := map[int]bool{}
	for _, s := range last.Sigs {
		if len(s.Extension) > 0 {
			out = append(out, Precommit{Validator: s.Validator, Round: last.Round, Ext: s.Extension, Signature: s.Signature})
			in[s.Validator] = true
		}
	}
	for _, s := range last.Attested {
		if attested && len(s.Extension) > 0 && !in[s.Validator] {
			out = append(out, Precommit{Validator: s.Validator, Round: consensus.AttestationRound, Ext: s.Extension, Signature: s.Signature, Attested: true})
			in[s.Validator] = true
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Validator < out[j].Validator })
	return out
}

// verifyCarried checks the precommits a block carries for the last block:
// strictly increasing validators, each a precommit (or an attestation) for
// exactly that block and height signed by its validator over exactly this
// extension, the precommits all of one round (attestations name none:
// consensus.AttestationRound) and alone a quorum of voting power (so the
// proposer cannot pick a handful of extensions to its liking). Any failure
// makes the block invalid.
func (a *App) verifyCarried(carried []Precommit) error {
	if a.last == nil {
		if len(carried) != 0 {
			return fmt.Errorf("%w: first block carries precommits", ErrBlock)
		}
		return nil
	}
	vals := a.signersOf(a.last.height)
	var power int64
	prev := -1
	round := consensus.NoRound
	for _, x := range carried {
		if x.Validator <= prev || !vals.Has(x.Validator) {
			return fmt.Errorf("%w: carried precommit of validator %d out of order or unknown", ErrBlock, x.Validator)
		}
		prev = x.Validator
		switch {
		case x.Attested && x.Round != consensus.AttestationRound:
			return fmt.Errorf("%w: carried attestation of validator %d names round %d", ErrBlock, x.Validator, x.Round)
		case !x.Attested && round != consensus.NoRound && x.Round != round:
			return fmt.Errorf("%w: carried precommits of rounds %d and %d", ErrBlock, round, x.Round)
		case !x.Attested:
			round = x.Round
		}
		if len(x.Ext) == 0 || !consensus.VerifyVote(a.chain, vals, x.Vote(a.last.height, consensus.BlockID(a.last.hash))) {
			return fmt.Errorf("%w: carried precommit of validator %d (attested %v) is not its signed vote for height %d", ErrBlock, x.Validator, x.Attested, a.last.height)
		}
		if !x.Attested {
			power += vals.Power(x.Validator)
		}
	}
	if !vals.IsQuorum(power) {
		return fmt.Errorf("%w: carried precommits hold %d of %d voting power", ErrBlock, power, vals.TotalPower())
	}
	return nil
}

// quorumCanDecide reports whether t+f validators fit in the smallest quorum
// (all powers are equal: genesis checks it), that is t <= f+1 for N = 3f+1.
func (a *App) quorumCanDecide() bool {
	quorum := 2*a.n/3 + 1
	return a.t+(a.n-1)/3 <= quorum
}

// decideUncached decides from verified carried precommits.
func (a *App) decideUncached(carried []Precommit) (*decided, error) {
	d := &decided{book: a.book.Clone(), credits: append([]int64(nil), a.credits...)}
	if a.last == nil { // nothing finalized yet: the first block decides nothing
		return d, nil
	}
	exts, present, bad := carriedExts(carried, a.last.height, a.last.hash)
	faulty := map[int]bool{}
	for _, v := range bad {
		faulty[v] = true
	}
	if pe := a.last.prev; pe != nil {
		if err := a.decideVerdicts(d, pe, exts, faulty, len(carried)); err != nil {
			return nil, err
		}
	}
	cts, credits, pieceFaulty, used, err := a.decidePieces(a.last, exts, present, false)
	if err != nil {
		return nil, err
	}
	for _, v := range pieceFaulty {
		faulty[v] = true
	}
	if d.prev, err = a.evaluate(a.last, d.book, cts, credits); err != nil {
		return nil, err
	}
	d.prev.pieces = used
	for v := range faulty {
		d.faulty = append(d.faulty, v)
	}
	sort.Ints(d.faulty)
	if len(d.faulty) > 0 {
		a.log.Warn("validators sent extensions that disagree with the decision", "height", a.last.height, "validators", d.faulty)
	}
	// Credits once every batch and piece has named its faulty validators: a
	// validator named anywhere earns nothing for the height.
	for _, v := range d.faulty {
		if v < len(d.credits) && v < len(a.credits) { // at an epoch's start, signers are the previous committee's
			d.credits[v] = a.credits[v]
		}
	}
	return d, nil
}

// decideVerdicts decides the checks of pe (block height-2) from the
// decryption shares the carried extensions hold, and applies them to d.book.
func (a *App) decideVerdicts(d *decided, pe *checkEval, exts map[int]*Ext, faulty map[int]bool, carried int) error {
	h := pe.height
	// Shares of validators whose digest equals ours: they signed that they
	// computed the same check ciphertexts. Anything else in a signed
	// extension is that validator's fault, not the proposer's.
	shares := make([]map[int]ledger.CheckShares, len(pe.evals))
	for i := range shares {
		shares[i] = map[int]ledger.CheckShares{}
	}
	vs := make([]int, 0, len(exts))
	for v := range exts {
		vs = append(vs, v)
	}
	sort.Ints(vs)
	for _, v := range vs {
		ext := exts[v]
		if ext.Digest != pe.digest || len(ext.Shares) != len(pe.evals) {
			faulty[v] = true
			continue
		}
		got := make([]ledger.CheckShares, 0, len(ext.Shares))
		for _, s := range ext.Shares {
			b, err1 := a.p.DecodeDecShare(s[0])
			e, err2 := a.p.DecodeDecShare(s[1])
			if err1 != nil || err2 != nil || b.Validator != v || e.Validator != v {
				break
			}
			got = append(got, ledger.CheckShares{Bits: b, Eq: e})
		}
		if len(got) != len(pe.evals) {
			faulty[v] = true
			continue
		}
		for i, cs := range got {
			shares[i][v] = cs
		}
	}
	// Each batch is decided by T+F validators whose shares agree (robust.go);
	// a batch with no such agreement fails closed. A credit is one lane
	// evaluated, earned only by validators in the agreeing set: shares that
	// match the decision prove the validator computed the check ciphertexts
	// (a copied digest without them earns nothing), and empty blocks earn
	// nothing.
	verdicts := make([]map[int]ledger.Reason, len(pe.evals))
	decisions := make([]*ledger.Decision, len(pe.evals))
	for i, e := range pe.evals {
		dec, err := a.dec.DecideChecks(e, shares[i])
		switch {
		case errors.Is(err, ledger.ErrNoAgreement) && carried < a.n && a.quorumCanDecide():
			// Some precommit is missing: it may be the one that outvotes a
			// wrong share. Refusing the block (prevote nil) lets a later
			// proposer carry more, rather than letting a proposer pick a
			// quorum that fails the batch closed. (Only when a quorum of
			// honest validators can decide at all, t+f <= quorum: with a
			// higher threshold a validator down would otherwise halt the
			// chain; it fails the batch closed instead.)
			return fmt.Errorf("%w: batch %d of height %d: no t+f of the %d carried validators agree (%w)", ErrBlock, i, h, carried, err)
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
			return fmt.Errorf("chain: deciding height %d batch %d: %w", h, i, err)
		}
		verdicts[i], decisions[i] = dec.Verdicts, dec
		for _, v := range dec.Faulty {
			faulty[v] = true
		}
	}
	for i, dec := range decisions {
		if dec == nil {
			continue
		}
		for _, v := range dec.Agreed {
			if !faulty[v] {
				d.credits[v] += int64(len(pe.evals[i].Lanes))
			}
		}
	}
	var err error
	if len(pe.batches) == 0 {
		err = d.book.Skip(h)
	} else {
		d.outs, err = d.book.Commit(a.eng, h, pe.batches, pe.evals, verdicts)
	}
	if err != nil {
		return err
	}
	for id, r := range pe.early {
		d.outs = append(d.outs, ledger.Outcome{ID: id, Env: envByID(pe.block, id), Reason: r})
	}
	sort.Slice(d.outs, func(i, j int) bool { return bytes.Compare(d.outs[i].ID[:], d.outs[j].ID[:]) < 0 })
	return nil
}

// carriedExts decodes the extensions of carried precommits for block
// (height, hash): those that decode and speak of that block by validator,
// the validators whose extension does not (bad: their fault, signed), and
// the set of every carried validator (heard, whatever it said).
func carriedExts(carried []Precommit, height uint64, hash [32]byte) (exts map[int]*Ext, present uint64, bad []int) {
	exts = make(map[int]*Ext, len(carried))
	for _, x := range carried {
		if x.Validator >= 0 && x.Validator < 64 {
			present |= 1 << x.Validator
		}
		ext, err := DecodeExt(x.Ext)
		if err != nil || ext.Height != height || ext.Block != hash {
			bad = append(bad, x.Validator)
			continue
		}
		exts[x.Validator] = ext
	}
	return exts, present, bad
}

// decidePieces decides every piece of every group of ev from the piece
// attestations the carried extensions (of ev's height) hold: for the
// group's batch and for each of its credit layers, the hash f+1 of the
// piece's holders attested. It returns the summed batch ciphertext per
// group and its summed credit ciphertexts per layer (nil for a group failed
// closed), and the holders that attested another hash. A piece no f+1
// holders agree on makes the block invalid if a holder of it that acked the
// group (so holds the piece) is not carried: its precommit may decide it,
// and a proposer must not choose a quorum that fails honest transfers
// closed. Otherwise, every holder that could attest was heard, and the
// group fails closed: nothing of it moves, credits included. trusted skips
// the refusal: a restart re-decides a block the chain already accepted.
func (a *App) decidePieces(ev *blockEval, exts map[int]*Ext, present uint64, trusted bool) ([]*rlwe.Ciphertext, [][]*rlwe.Ciphertext, []int, [][32]byte, error) {
	out := make([]*rlwe.Ciphertext, len(ev.layout.groups))
	credits := make([][]*rlwe.Ciphertext, len(ev.layout.groups))
	if len(ev.layout.groups) == 0 {
		return out, credits, nil, nil, nil
	}
	var used [][32]byte // every piece ciphertext loaded, in order
	type key struct {
		part  uint32
		piece int
	}
	attests := map[key]map[int][32]byte{}
	for v, ext := range exts {
		for _, pa := range ext.Pieces {
			k := key{pa.Group, int(pa.Piece)}
			if attests[k] == nil {
				attests[k] = map[int][32]byte{}
			}
			attests[k][v] = pa.Hash
		}
	}
	faulty := map[int]bool{}
	// decideHashes decides every piece of one attestation index, naming the
	// holders that attested another hash; ok is false if some piece has no
	// f+1 agreeing holders (the group fails closed).
	decideHashes := func(gi int, g group, part int) (hashes [][32]byte, ok bool, err error) {
		for k := 0; k < a.sh.Pieces(); k++ {
			hash, named, err := a.sh.DecidePiece(k, attests[key{uint32(part), k}])
			if errors.Is(err, ledger.ErrNoPieceMajority) {
				var holders uint64
				for _, v := range a.sh.Holders(k) {
					holders |= 1 << v
				}
				if !trusted && holders&g.acked&^present != 0 {
					return nil, false, fmt.Errorf("%w: group %d (shard %d) part %d piece %d of height %d: no f+1 of the %d carried validators agree (%w)", ErrBlock, gi, g.shard, part, k, ev.height, bits.OnesCount64(present), err)
				}
				a.log.Warn("no f+1 holders agree on a piece; failing its group closed", "height", ev.height, "shard", g.shard, "group", gi, "part", part, "piece", k, "acked", g.acked)
				ok = false
				continue // decide the rest too: every wrong attestation is named
			}
			if err != nil {
				return nil, false, err
			}
			for _, v := range named {
				faulty[v] = true
			}
			hashes = append(hashes, hash)
		}
		return hashes, len(hashes) == a.sh.Pieces(), nil
	}
	// sum loads the decided piece ciphertexts of one index and adds them.
	sum := func(hashes [][32]byte) (*rlwe.Ciphertext, error) {
		cts := make([]*rlwe.Ciphertext, 0, len(hashes))
		for _, hash := range hashes {
			raw := a.pieces.Get(hash)
			if raw == nil {
				var err error
				if raw, err = StoredPiece(a.st, hash); err != nil {
					return nil, fmt.Errorf("%w: %w: piece %x", ErrBlock, ErrUnavailable, hash[:8])
				}
				a.pieces.Put(hash, raw, ev.height)
			}
			if sha256.Sum256(raw) != hash {
				return nil, fmt.Errorf("chain: stored piece %x does not match its hash", hash[:8])
			}
			ct, err := a.p.DecodeUpload(raw)
			if err != nil {
				return nil, fmt.Errorf("%w: piece %x does not decode", ErrBlock, hash[:8])
			}
			cts = append(cts, ct)
			used = append(used, hash)
		}
		return a.p.SumPieces(cts)
	}
	for gi, g := range ev.layout.groups {
		// Every index of the group is decided (and its liars named) before
		// anything is loaded; the group moves only if all of them decide.
		parts := []int{gi} // the batch (credit layer 0), then the separate layers
		for l := 0; l < g.layers; l++ {
			parts = append(parts, g.part+l)
		}
		decided := make([][][32]byte, len(parts))
		complete := true
		for i, part := range parts {
			hs, ok, err := decideHashes(gi, g, part)
			if err != nil {
				return nil, nil, nil, nil, err
			}
			decided[i], complete = hs, complete && ok
		}
		if !complete {
			continue
		}
		cts := make([]*rlwe.Ciphertext, len(parts))
		for i := range parts {
			var err error
			if cts[i], err = sum(decided[i]); err != nil {
				return nil, nil, nil, nil, err
			}
		}
		out[gi], credits[gi] = cts[0], cts // credits[gi][layer]: layer 0 is the batch
	}
	var named []int
	for v := range faulty {
		named = append(named, v)
	}
	sort.Ints(named)
	return out, credits, named, used, nil
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

// evaluate plans ev's transfers on book with their shards' batch
// ciphertexts and evaluates the checks. A transfer whose shard batch failed
// closed is rejected as undecided; nothing of it is evaluated.
func (a *App) evaluate(ev *blockEval, book *ledger.Book, cts []*rlwe.Ciphertext, credits [][]*rlwe.Ciphertext) (*checkEval, error) {
	ce := &checkEval{height: ev.height, hash: ev.hash, block: ev.block, early: map[[32]byte]ledger.Reason{}}
	for id, r := range ev.layout.early {
		ce.early[id] = r
	}
	var pend []ledger.Pending
	for gi, g := range ev.layout.groups {
		ct := cts[gi]
		refs := make([][]ledger.CreditRef, len(g.subs)) // by member, in payee order
		if ct != nil && g.kind == 0 {
			for c := range g.to {
				refs[g.cm[c]] = append(refs[g.cm[c]], ledger.CreditRef{CT: credits[gi][g.layer[c]], Index: g.index[c]})
			}
		}
		for j, i := range g.subs {
			env := &ev.block.Subs[i].Envelopes[0]
			if ct == nil {
				ce.early[env.ID()] = ledger.RejectUndecided
				continue
			}
			// One item per group in its shard's batch: the circuit masks
			// each group's ciphertext to the group's planned lanes.
			pend = append(pend, ledger.Pending{Env: env, CT: ct, Sub: gi, SubLanes: g.many[j], Credits: refs[j]})
		}
	}
	batches, early := book.Plan(pend)
	for id, r := range early {
		ce.early[id] = r
	}
	ce.batches = batches
	if ce.batches == nil {
		ce.batches = []*ledger.Batch{}
	}
	evals, err := a.evalr.Evaluate(book, ce.batches, ev.hash[:])
	if err != nil {
		return nil, err
	}
	ce.evals = evals
	h := sha256.New()
	h.Write([]byte("zkbank/digest/v2\x00"))
	binary.Write(h, binary.BigEndian, ev.height)
	for _, e := range evals {
		dg, err := e.Checks.Digest()
		if err != nil {
			return nil, err
		}
		h.Write(dg[:])
	}
	copy(ce.digest[:], h.Sum(nil))
	return ce, nil
}

// prepare decodes and speculatively executes a proposal for finalized+1:
// decide what its carried precommits decide, then open its accounts and lay
// out its transfers on the resulting book.
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
	if err := checkUnique(b); err != nil {
		return nil, err
	}
	if err := a.checkEpochRules(b); err != nil {
		return nil, err
	}
	if err := a.checkStateRoot(b); err != nil {
		return nil, err
	}
	d, err := a.decide(b.LastCommit)
	if err != nil {
		return nil, err
	}
	acks := ackSets(b.LastCommit)
	prevOps := a.lastOps()
	senders := map[ledger.AccountID]bool{}
	for _, s := range b.Subs {
		env := &s.Envelopes[0]
		id := env.ID()
		// One operation per account and block (the next block is built on
		// it: with two, it could be the one that does not execute).
		if senders[env.From] {
			return nil, fmt.Errorf("%w: two operations of account %s", ErrBlock, env.From.Short())
		}
		senders[env.From] = true
		// An operation must be built on the account's operation in the
		// previous block if it had one, else on its last accepted one: a
		// proposer cannot skip a wallet's operations (which would get the
		// rest of its pipeline rejected) nor order one whose predecessor
		// was already rejected.
		if want, ok := expectedPrev(d.book, prevOps, env.From); ok && env.Prev != want {
			return nil, fmt.Errorf("%w: transfer %x is not built on its account's last operation", ErrBlock, id[:8])
		}
		if n := bits.OnesCount64(acks[id]); n < a.ackQuorum() {
			return nil, fmt.Errorf("%w: transfer %x acked by %d validators, %d needed", ErrBlock, id[:8], n, a.ackQuorum())
		}
		// An envelope the sender did not sign is never proposed by an honest
		// proposer (admission checks it), so a block carrying one is
		// invalid rather than a rejection that evicts the genuine upload.
		if from, ok := d.book.Account(env.From); ok && !env.Verify(from.SignPub) {
			return nil, fmt.Errorf("%w: transfer %x is not signed by its sender", ErrBlock, id[:8])
		}
	}
	ups, err := a.uploadsOf(b)
	if err != nil {
		return nil, err
	}
	opening := map[ledger.AccountID]bool{}
	for _, o := range b.Opens {
		if !o.Valid(a.chain) {
			return nil, fmt.Errorf("%w: account opening with a bad signature", ErrBlock)
		}
		// Openings are replayable (their signature names no height), so a
		// block may only open accounts that do not exist yet, once each:
		// then openedBy(block) is exactly what the block opened, which a
		// restart relies on.
		id := ledger.AccountIDOf(ed25519.PublicKey(o.SignPub))
		if _, exists := d.book.Account(id); exists || opening[id] {
			return nil, fmt.Errorf("%w: account %s is already open", ErrBlock, id.Short())
		}
		opening[id] = true
	}
	// The block's accounts open on this proposal's own copy of the decided
	// book, before its transfers are laid out: the book a block is laid out
	// on is then exactly the one Finalize persists, so a validator that
	// restarts lays the block out the same way.
	book := d.book.Clone()
	var opened []*ledger.Account
	for _, o := range b.Opens {
		acct, err := book.Open(ed25519.PublicKey(o.SignPub), nil, o.Kind)
		if err != nil {
			return nil, fmt.Errorf("%w: opening an account: %w", ErrBlock, err)
		}
		opened = append(opened, acct)
	}
	// Consents are recorded on the same copy, like openings: a bad,
	// replayed or foreign-chain consent makes the block invalid.
	for i := range b.Consents {
		if err := book.RecordConsent(&b.Consents[i]); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrBlock, err)
		}
	}
	ev := &blockEval{height: height, hash: hash, block: b, book: book, opened: opened, uploads: ups,
		applied: d.outs, credits: d.credits, faulty: d.faulty, prev: d.prev}
	ev.layout = a.layoutOf(book, b, acks, nil)
	if ev.layout.overfull {
		return nil, fmt.Errorf("%w: the pay-many payments of a shard need more lanes than it has", ErrBlock)
	}
	lent, credits := map[uint32]int{}, 0
	for _, g := range ev.layout.groups {
		for _, m := range g.many {
			if lent[g.shard] += len(m); lent[g.shard] > MaxLentLanes {
				return nil, fmt.Errorf("%w: pay-many payments of shard %d borrow more than %d lanes", ErrBlock, g.shard, MaxLentLanes)
			}
		}
		if credits += len(g.to); credits > MaxBlockCredits {
			return nil, fmt.Errorf("%w: more than %d payments", ErrBlock, MaxBlockCredits)
		}
	}
	for _, g := range ev.layout.groups {
		if g.layers > 1 {
			return nil, fmt.Errorf("%w: more than %d payments of shard %d into one receiving lane", ErrBlock, MaxCreditsPerLane, g.shard)
		}
	}
	a.spec[hash] = ev
	return ev, nil
}

// lastOp is an account's operation in the last finalized block.
type lastOp struct {
	id    [32]byte
	nonce uint64
}

// lastOps maps each account with an operation in the last finalized block to
// that operation: its results are not in the book yet.
func (a *App) lastOps() map[ledger.AccountID]lastOp {
	out := map[ledger.AccountID]lastOp{}
	if a.last != nil && a.last.block != nil {
		for _, s := range a.last.block.Subs {
			e := &s.Envelopes[0]
			out[e.From] = lastOp{id: e.ID(), nonce: e.Nonce}
		}
	}
	return out
}

// expectedPrev is the Prev an account's next operation must name: its
// operation in the last block if any (prevOps), else its last accepted one.
// ok is false for an unknown account (rejected as such later).
func expectedPrev(book *ledger.Book, prevOps map[ledger.AccountID]lastOp, from ledger.AccountID) ([32]byte, bool) {
	if op, ok := prevOps[from]; ok {
		return op.id, true
	}
	acct, ok := book.Account(from)
	if !ok {
		return [32]byte{}, false
	}
	return acct.LastOp, true
}

// HasWork implements consensus.WorkSignaler: the proposer of a height waits
// (up to the commit timeout) for something to propose before proposing an
// empty block. Blocks still in the pipeline count: their pieces and verdicts
// are decided by the next two blocks. A mempool that cannot answer counts
// as having work, so a failure shows up in BuildProposal rather than as an
// idle chain.
func (a *App) HasWork(uint64) bool {
	if a.last != nil && (len(a.last.block.Subs) > 0 || a.last.prev != nil && len(a.last.prev.block.Subs) > 0) {
		return true
	}
	ok, err := a.mem.HasWork()
	if err != nil {
		a.log.Warn("mempool did not answer", "err", err)
		return true
	}
	return ok
}

// BuildProposal proposes the mempool's ready transfers (acked by N-f
// validators, at most one debit per sender) and carries the previous
// height's precommits.
func (a *App) BuildProposal(height uint64, last *consensus.CommitCertificate) ([]byte, error) {
	if a.follow {
		return nil, errFollower
	}
	defer a.timed(StagePropose, time.Now())
	if a.pending != nil && height >= a.pending.Start {
		return nil, fmt.Errorf("%w: height %d belongs to the committee that takes over at height %d", ErrEpochEnded, height, a.pending.Start)
	}
	b := &Block{Height: height, TimeMs: uint64(a.now().UnixMilli()), StateRoot: a.stateRoot()}
	if last != nil {
		b.LastCommit = carry(last, !a.atEpochStart(height))
	}
	d, err := a.decide(b.LastCommit)
	if err != nil {
		return nil, err
	}
	book := d.book
	acks := ackSets(b.LastCommit)
	// Every waiting upload is considered, oldest first, and those not yet
	// acked by N-f validators are skipped: uploads nobody can open never
	// crowd out ordered ones.
	quiet := a.pending != nil // the committee is changing: nothing may span the switch
	var cands []*Upload
	if !quiet && !a.atEpochStart(height) {
		if cands, err = a.mem.Candidates(maxCandidates); err != nil {
			return nil, fmt.Errorf("chain: mempool: %w", err)
		}
	}
	// One operation per account and block: the one built on the account's
	// operation in the last block, else on its last accepted one (prepare
	// refuses anything else). A wallet's later operations wait for their
	// predecessors; one whose predecessor was rejected is never ordered.
	// Several operations may name the same Prev (a wallet's deliberate or
	// rebuilt ones): the lowest nonce goes first, or it would become a
	// replay of the higher one.
	prevOps := a.lastOps()
	pick := map[ledger.AccountID]*Upload{}
	var order []ledger.AccountID
	for _, u := range cands {
		if len(u.Envs) != 1 {
			continue
		}
		e := &u.Envs[0]
		if bits.OnesCount64(acks[u.ID()]) < a.ackQuorum() {
			continue
		}
		want, ok := expectedPrev(book, prevOps, e.From)
		if !ok || e.Prev != want {
			continue
		}
		if op, ok := prevOps[e.From]; ok && e.Nonce <= op.nonce {
			continue // consumed by the last block's operation
		}
		// Admission verified the signature; the other plaintext checks are
		// cheap. A replayed operation is never proposed. An expired one is:
		// it is rejected (stale_height) in plaintext, so its wallet gets a
		// verdict rather than waiting for one that never comes.
		if r := book.CheckVerified(e); r == ledger.RejectReplay {
			continue
		}
		cur, seen := pick[e.From]
		if !seen {
			order = append(order, e.From)
		}
		if !seen || e.Nonce < cur.Envs[0].Nonce {
			pick[e.From] = u
		}
	}
	lanes := newLaneCap(a.p.Lanes)
	for _, from := range order {
		if len(b.Subs) >= MaxBlockSubs {
			break
		}
		u := pick[from]
		if !lanes.admit(book, &u.Envs[0]) {
			continue // waits for the next block
		}
		b.Subs = append(b.Subs, SubRef{CTHash: u.Hash, Envelopes: u.Envs})
	}
	var opens []Open
	if !quiet {
		if opens, err = a.mem.Opens(MaxBlockOpens); err != nil {
			return nil, fmt.Errorf("chain: mempool: %w", err)
		}
	}
	opening := map[ledger.AccountID]bool{}
	for _, o := range opens {
		// A block with a bad, repeated or replayed opening is invalid: never
		// propose one.
		id := ledger.AccountIDOf(ed25519.PublicKey(o.SignPub))
		if _, exists := book.Account(id); !o.Valid(a.chain) || exists || opening[id] {
			continue
		}
		opening[id] = true
		b.Opens = append(b.Opens, o)
	}
	var consents []ledger.Consent
	if !quiet {
		if consents, err = a.mem.Consents(MaxBlockConsents); err != nil {
			return nil, fmt.Errorf("chain: mempool: %w", err)
		}
	}
	if !quiet && a.proposeChange != nil && a.verifyChange != nil {
		if raw := a.proposeChange(); raw != nil && len(raw) <= MaxSetChangeBytes && a.verifyChange(raw) == nil {
			b.SetChange = raw
		}
	}
	if len(consents) > 0 {
		// Recorded on a scratch copy with this block's openings, as prepare
		// will: never propose one that would make the block invalid.
		scratch := book.Clone()
		for _, o := range b.Opens {
			_, _ = scratch.Open(ed25519.PublicKey(o.SignPub), nil, o.Kind)
		}
		for i := range consents {
			if scratch.RecordConsent(&consents[i]) == nil {
				b.Consents = append(b.Consents, consents[i])
			}
		}
	}
	if a.faults.TamperProposal != nil {
		a.faults.TamperProposal(b)
	}
	return b.Encode(), nil
}

// MaxCreditsPerLane bounds the payments of one shard in a block into one
// receiving lane (of any shard): a group's credits to one lane then fit one
// credit ciphertext (ledger.CreditLayout gives a lane 32 slots), so every
// group costs its holders at most two encryptions per piece, however a
// client concentrates its payments. A block exceeding it is invalid
// (prepare); proposers defer the excess to later blocks.
const MaxCreditsPerLane = ledger.AmountBits

// MaxLentLanes bounds the payee lanes pay-many payments of one shard borrow
// in a block: half the shard, so a few accounts sending pay-many payments
// (zero amounts cost them nothing) leave the other half of the shard's lanes
// to everyone else's operations. A block exceeding it is invalid (prepare).
const MaxLentLanes = 128

// MaxBlockCredits bounds the payments (credits) of one block: a pay-many
// counts one per payee. Applying a block costs a masked product per credit
// ciphertext and receiving shard; without the bound 256 pay-many payments of
// 32 payees would make it 8,192. A block exceeding it is invalid (prepare).
const MaxBlockCredits = 1024

// laneCap is a proposer's count of payments per sending shard and receiving
// lane. A payment to an account not open yet (its opening may be in the
// block, landing in any lane) counts against every lane of its shard.
type laneCap struct {
	lanes   int
	count   map[[2]uint64]int // (sending shard, receiving lane) -> payments
	max     map[uint32]int    // sending shard -> highest count of any lane
	unknown map[uint32]int    // sending shard -> payments to accounts not open yet
	used    map[uint32]int    // sending shard -> lanes its operations take (payers, pay-many payees)
	lent    map[uint32]int    // sending shard -> pay-many payee lanes
	credits int
}

func newLaneCap(lanes int) *laneCap {
	return &laneCap{lanes: lanes, count: map[[2]uint64]int{}, max: map[uint32]int{}, unknown: map[uint32]int{}, used: map[uint32]int{}, lent: map[uint32]int{}}
}

// admit counts e if it keeps every lane within MaxCreditsPerLane and its
// shard's operations within the shard's lanes (a pay-many borrows a lane
// per payee).
func (c *laneCap) admit(book *ledger.Book, e *ledger.Envelope) bool {
	from, ok := book.Account(e.From)
	if !ok {
		return true // rejected before any group
	}
	s := from.Shard
	need, lent := 1, 0
	if e.IsMany() {
		lent = len(e.Payees())
		need += lent
	}
	if c.used[s]+need > c.lanes || c.lent[s]+lent > MaxLentLanes {
		return false
	}
	if e.Pays() && c.credits+len(e.Payees()) > MaxBlockCredits {
		return false
	}
	if !e.Pays() {
		c.used[s] += need
		return true // no credit
	}
	var keys [][2]uint64
	unknown := 0
	for _, p := range e.Payees() {
		if to, known := book.Account(p); known {
			keys = append(keys, [2]uint64{uint64(s), uint64(to.Lane)})
		} else {
			unknown++
		}
	}
	// Payees of one payment are distinct accounts, but two may share a lane
	// number in different shards: count per key.
	add := map[[2]uint64]int{}
	for _, k := range keys {
		add[k]++
	}
	hi := c.max[s]
	for k, n := range add {
		if c.count[k]+n+c.unknown[s]+unknown > MaxCreditsPerLane {
			return false
		}
		hi = max(hi, c.count[k]+n)
	}
	if unknown > 0 && hi+c.unknown[s]+unknown > MaxCreditsPerLane {
		return false
	}
	for k, n := range add {
		c.count[k] += n
	}
	c.max[s], c.unknown[s], c.used[s] = hi, c.unknown[s]+unknown, c.used[s]+need
	c.lent[s] += lent
	c.credits += len(e.Payees())
	return true
}

// ValidateProposal checks a proposal can be executed: it decodes, its
// carried precommits decide what they must, its uploads were acked and are
// available. Individual invalid transfers do not invalidate a block: they
// are rejected.
func (a *App) ValidateProposal(height uint64, value []byte) error {
	_, err := a.prepare(height, value)
	return err
}

// myPieces encrypts the pieces this validator holds of every group of ev
// (once) and returns their attestations. It abstains on a group in which
// any upload's box did not open for it: it cannot compute that piece, and
// the group's other holders decide it.
func (a *App) myPieces(ev *blockEval) ([]PieceAttest, error) {
	if ev.mine != nil {
		return *ev.mine, nil
	}
	if a.follow { // a full node holds no piece
		ev.mine = &[]PieceAttest{}
		return nil, nil
	}
	defer a.timed(StagePieces, time.Now())
	var out []PieceAttest
	for gi, g := range ev.layout.groups {
		complete := true
		for _, i := range g.subs {
			if ev.uploads[i] == nil || ev.uploads[i].Pieces == nil {
				complete = false
			}
		}
		if !complete {
			continue
		}
		for _, k := range a.sh.Held(a.self) {
			lps := make([]ledger.LanePiece, len(g.subs))
			for j, i := range g.subs {
				pc := ev.uploads[i].Pieces[k]
				if a.faults.ShiftPiece != nil {
					c := &ledger.Piece{Values: append([]uint64(nil), pc.Values...), Seed: pc.Seed}
					a.faults.ShiftPiece(g.shard, k, g.lanes[j], c.Values)
					pc = c
				}
				lps[j] = ledger.LanePiece{Lane: g.lanes[j], Piece: pc, Subs: g.many[j]}
				if env := &ev.block.Subs[i].Envelopes[0]; env.IsCheck() {
					// A score check: row 0 is the public minimum, written by
					// the holders of piece 0 (ledger/atleast.go).
					lps[j].AtLeast, lps[j].Min, lps[j].First = true, env.Min, k == 0
					if a.faults.ShiftMin != nil {
						lps[j].Min = a.faults.ShiftMin(g.shard, k, g.lanes[j], lps[j].Min)
					}
				}
			}
			// The group's credits: the same pieces placed in the receivers'
			// lanes, in the batch ciphertext itself where the lane is free
			// (layer 0), else in separate credit ciphertexts.
			byLayer := make([][]ledger.LaneCredit, g.layers+1)
			for c := range g.layer {
				part := 0
				if len(g.many[g.cm[c]]) > 0 {
					part = 1 + g.cp[c] // the payee's lane block of a pay-many's piece
				}
				byLayer[g.layer[c]] = append(byLayer[g.layer[c]], ledger.LaneCredit{Lane: g.to[c], Index: g.index[c], Piece: lps[g.cm[c]].Piece, Part: part})
			}
			if a.faults.ShiftCredit != nil {
				for l := range byLayer {
					byLayer[l] = a.faults.ShiftCredit(g.shard, k, byLayer[l])
				}
			}
			ct, err := a.p.EncryptPieceBatchWithCredits(a.pk, lps, byLayer[0], ledger.PieceBatchSeed(a.chain, ev.height, uint32(gi), k, lps))
			if err != nil {
				return nil, err
			}
			pa, err := a.attestPiece(ev.height, uint32(gi), k, ct)
			if err != nil {
				return nil, err
			}
			out = append(out, pa)
			for l := 1; l <= g.layers; l++ {
				part := uint32(g.part + l - 1)
				ct, err := a.p.EncryptCreditBatch(a.pk, byLayer[l], ledger.CreditBatchSeed(a.chain, ev.height, part, k, byLayer[l]))
				if err != nil {
					return nil, err
				}
				pa, err := a.attestPiece(ev.height, part, k, ct)
				if err != nil {
					return nil, err
				}
				out = append(out, pa)
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		return out[i].Group < out[j].Group || out[i].Group == out[j].Group && out[i].Piece < out[j].Piece
	})
	ev.mine = &out
	return out, nil
}

// attestPiece caches a piece ciphertext this validator computed and returns
// its attestation.
func (a *App) attestPiece(height uint64, part uint32, k int, ct *rlwe.Ciphertext) (PieceAttest, error) {
	raw, err := ct.MarshalBinary()
	if err != nil {
		return PieceAttest{}, err
	}
	h := sha256.Sum256(raw)
	a.pieces.Put(h, raw, height)
	return PieceAttest{Group: part, Piece: uint32(k), Hash: h}, nil
}

// ExtendVote returns this validator's extension for a block: its piece
// ciphertexts of the block's batches, its acks, and the digest and
// decryption shares of the previous block's checks. It only ever decrypts
// ciphertexts it computed itself.
func (a *App) ExtendVote(height uint64, round consensus.Round, value []byte) ([]byte, error) {
	if a.follow {
		return nil, errFollower
	}
	var ev *blockEval
	if a.last != nil && height == a.finalized && Hash(value) == a.last.hash {
		// An attestation for the block just finalized (consensus.Attestation),
		// never across an epoch switch: that block was the previous
		// committee's, whose indexes and keys are not ours.
		if a.atEpochStart(height + 1) {
			return nil, fmt.Errorf("%w: %w: the previous committee's last block", ErrEpochEnded, consensus.ErrNoAttestation)
		}
		ev = a.last
	} else {
		var err error
		if ev, err = a.prepare(height, value); err != nil {
			return nil, err
		}
	}
	start := a.now()
	mine, err := a.myPieces(ev)
	if err != nil {
		return nil, err
	}
	x := &Ext{Height: height, Block: ev.hash, Pieces: mine}
	if x.Acks, err = a.mem.Acks(MaxAcks); err != nil {
		return nil, fmt.Errorf("chain: mempool: %w", err)
	}
	if a.faults.WithholdWork {
		x.Acks, x.Pieces = nil, nil
	}
	if pe := ev.prev; pe != nil {
		x.Digest = pe.digest
		defer a.timed(StageShares, time.Now())
		for _, e := range pe.evals {
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
	}
	a.log.Debug("extended vote", "height", height, "pieces", len(mine), "took", a.now().Sub(start))
	return x.Encode(), nil
}

// VerifyExtension accepts another validator's extension only if it speaks
// of this block, its digest equals ours (it computed the same checks of the
// previous block), its shares are well-formed and its own, and it attests
// only pieces that validator holds of batches this block has. Whether a
// piece hash or a share is right is settled when the next block decides.
func (a *App) VerifyExtension(height uint64, validator int, value []byte, ext []byte) error {
	var ev *blockEval
	if a.last != nil && height == a.finalized && Hash(value) == a.last.hash {
		ev = a.last // a late precommit for the block just finalized
	} else {
		var err error
		if ev, err = a.prepare(height, value); err != nil {
			return err
		}
	}
	x, err := DecodeExt(ext)
	if err != nil {
		return err
	}
	if x.Height != height || x.Block != ev.hash {
		return fmt.Errorf("%w: extension of validator %d is for another block", ErrBlock, validator)
	}
	if pe := ev.prev; pe != nil {
		if x.Digest != pe.digest || len(x.Shares) != len(pe.evals) {
			return fmt.Errorf("%w: extension of validator %d does not match our evaluation of height %d", ErrBlock, validator, pe.height)
		}
	} else if len(x.Shares) != 0 {
		return fmt.Errorf("%w: extension of validator %d carries shares of no block", ErrBlock, validator)
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
	for _, pa := range x.Pieces {
		if int(pa.Group) >= ev.layout.parts || int(pa.Piece) >= a.sh.Pieces() || !a.sh.Holds(validator, int(pa.Piece)) {
			return fmt.Errorf("%w: validator %d attests piece %d of group %d, which it does not hold or the block does not have", ErrBlock, validator, pa.Piece, pa.Group)
		}
	}
	return nil
}

// Finalize applies a decided block: the results of the block before the
// previous one become final (decided by this block's carried precommits),
// accounts open, and everything is persisted in one atomic store commit
// before it returns. Then the mempool forgets what the block included and
// the observer gets the new View.
func (a *App) Finalize(height uint64, value []byte, cert *consensus.CommitCertificate) error {
	if height != a.finalized+1 {
		return fmt.Errorf("chain: finalize %d after %d", height, a.finalized)
	}
	if a.faults.FailFinalize != nil {
		if err := a.faults.FailFinalize(height); err != nil {
			return err
		}
	}
	ev, err := a.prepare(height, value)
	if err != nil {
		return err
	}
	// This validator's own pieces of the block are computed even if it did
	// not precommit it: the next block's decision may need them, and peers
	// fetch them.
	if _, err := a.myPieces(ev); err != nil {
		return err
	}
	pending := a.pending
	if ev.block.SetChange != nil {
		pending = &PendingChange{Raw: ev.block.SetChange, Height: height, Start: height + SwitchDelay}
		a.log.Info("validator-set change committed", "height", height, "switch_height", pending.Start)
	}
	rec := &heightRecord{height: height, value: value, cert: cert, book: ev.book, outcomes: ev.applied, uploads: ev.uploads, credits: ev.credits,
		pieces: a.piecesToPersist(ev), retention: a.retention, pending: pending}
	rec.snapshot, rec.chunks = a.produceSnapshot(height, value, ev, pending)
	pstart := time.Now()
	if err := persistHeight(a.st, rec); err != nil {
		return fmt.Errorf("chain: persisting height %d: %w", height, err)
	}
	a.timed(StagePersist, pstart)
	a.book, a.credits, a.finalized, a.last, a.snap, a.pending = ev.book, ev.credits, height, ev, rec.snapshot, pending
	a.spec = map[[32]byte]*blockEval{}
	a.decided = map[[32]byte]*decided{}
	if height > 4 {
		a.pieces.forget(height - 4)
	}
	a.mem.Committed(ev.block, ev.book)
	if a.observer != nil {
		v := &View{Height: height, Book: ev.book, Credits: a.Credits(), Block: ev.block, Hash: ev.hash, Outcomes: ev.applied, Opened: ev.opened, Faulty: ev.faulty, Pending: pending}
		if height > 2 {
			v.Decided = height - 2
		}
		a.observer.Finalized(v)
	}
	return nil
}

// piecesToPersist are the piece ciphertexts a finalized height stores: this
// validator's own pieces of the block, and the decided pieces of the
// previous block it used (a restart re-evaluates that block from them).
func (a *App) piecesToPersist(ev *blockEval) map[[32]byte][]byte {
	out := map[[32]byte][]byte{}
	if ev.mine != nil {
		for _, pa := range *ev.mine {
			if raw := a.pieces.Get(pa.Hash); raw != nil {
				out[pa.Hash] = raw
			}
		}
	}
	for _, pw := range WantedPieces(ev.block, a.sh) {
		if raw := a.pieces.Get(pw.Hash); raw != nil {
			out[pw.Hash] = raw
		}
	}
	return out
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
		if len(s.Envelopes) != 1 {
			return fmt.Errorf("%w: upload %x with %d envelopes", ErrBlock, s.CTHash[:8], len(s.Envelopes))
		}
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
