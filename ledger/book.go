package ledger

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/schemes/bgv"
)

// AccountKind distinguishes deposit accounts from card credit lines. Both are
// validated identically: a card's "balance" is its available credit
// (limit minus spent), so a charge is a transfer that must leave it >= 0.
type AccountKind uint8

const (
	KindDeposit AccountKind = 0
	KindCard    AccountKind = 1
)

func (k AccountKind) String() string {
	if k == KindCard {
		return "card"
	}
	return "deposit"
}

// Account is the plaintext registry entry of an account. Its balances exist
// only inside its shard's two state ciphertexts: the available balance, which
// only the owner's own operations change (payments and applies), and the
// pending balance, where every credit to it lands.
type Account struct {
	ID        AccountID
	SignPub   ed25519.PublicKey
	OwnerPK   []byte // the owner's HE public key (balance re-encryption target)
	Kind      AccountKind
	Shard     uint32
	Lane      int
	Nonce     uint64   // last nonce consumed
	LastOp    [32]byte // ID of the last accepted operation (Envelope.Prev of the next one)
	LastApply uint64   // height whose results last moved this account's pending balance into its available one
	Created   uint64

	// Lending (lending.go), all public: installments missed (D in the
	// score), the last consent nonce, the score consents given (until they
	// expire), and the open loans this account borrowed.
	Defaults     uint32
	ConsentNonce uint64
	Consents     []Consent
	Loans        []Loan
	Applications []Application
}

// Book is the deterministic ledger state a validator replicates: the account
// registry, every shard's encrypted state for the recent heights, and the
// per-account replay and staleness bookkeeping. One goroutine (the node's
// ledger owner) drives it; it is not safe for concurrent use.
type Book struct {
	p       *Params
	eng     *Engine
	chain   string
	window  uint64
	height  uint64
	byID    map[AccountID]*Account
	byLane  map[laneKey]AccountID
	history map[uint32]map[uint64]*rlwe.Ciphertext // shard (or PendingKey(shard), RepaidKey(shard)) -> height -> state
	score   ScoreParams
}

// pendingBit marks the pending plane of a shard in the book's state map:
// shard s's pending balances are kept, persisted and restored as the state
// of shard PendingKey(s). Shards are numbered from 0 by 256 accounts, so a
// real shard never has this bit.
const pendingBit = uint32(1) << 31

// PendingKey is the state key of shard s's pending plane.
func PendingKey(s uint32) uint32 { return s | pendingBit }

// IsPendingKey reports whether a state key is a pending plane.
func IsPendingKey(k uint32) bool { return k&pendingBit != 0 }

type laneKey struct {
	shard uint32
	lane  int
}

// StateWindow is how many recent heights of shard states (both planes) are
// kept: an apply may name a pending balance at most this many heights old,
// and balance queries are answered this far back. Each shard state is 768
// KiB and under load every shard changes every height, so this is most of a
// validator's ledger memory (2 planes x 768 KiB x shards x StateWindow).
const StateWindow = 16

// DefaultWindow is how long a payment stays valid after the height it names
// (it needs no state): 256 heights, about a minute under load and two when
// idle. It was 64, which a pay-many waiting behind others under load could
// outlive.
const DefaultWindow = 256

// GenesisAccount is an account that exists at height 0.
type GenesisAccount struct {
	SignPub ed25519.PublicKey
	OwnerPK []byte
	Kind    AccountKind
	Balance uint64
}

// ErrGenesis reports an invalid genesis.
var ErrGenesis = errors.New("ledger: bad genesis")

// NewBook builds height 0 from public genesis balances. Genesis states are
// trivial (noise-free) encryptions of public values, so every validator
// derives byte-identical ciphertexts without exchanging them.
func NewBook(eng *Engine, chain string, accounts []GenesisAccount) (*Book, error) {
	b := &Book{p: eng.p, eng: eng, chain: chain, window: DefaultWindow,
		byID: map[AccountID]*Account{}, byLane: map[laneKey]AccountID{},
		history: map[uint32]map[uint64]*rlwe.Ciphertext{}, score: DefaultScoreParams}
	var supply uint64
	balances := map[uint32]map[int]uint64{}
	for _, g := range accounts {
		a, err := b.open(g.SignPub, g.OwnerPK, g.Kind, 0)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrGenesis, err)
		}
		supply += g.Balance
		if g.Balance > MaxAmount || supply > MaxSupply {
			return nil, fmt.Errorf("%w: total supply exceeds %d", ErrGenesis, uint64(MaxSupply))
		}
		if balances[a.Shard] == nil {
			balances[a.Shard] = map[int]uint64{}
		}
		balances[a.Shard][a.Lane] = g.Balance
	}
	for s, bal := range balances {
		st, err := eng.trivialState(bal)
		if err != nil {
			return nil, err
		}
		pend, err := eng.trivialState(nil)
		if err != nil {
			return nil, err
		}
		b.history[s] = map[uint64]*rlwe.Ciphertext{0: st}
		b.history[PendingKey(s)] = map[uint64]*rlwe.Ciphertext{0: pend}
		b.history[RepaidKey(s)] = map[uint64]*rlwe.Ciphertext{0: pend}
	}
	return b, nil
}

// statePlaintext encodes public lane balances as a state: each balance in its
// lane's anchor slot, at the state level and scale.
func (e *Engine) statePlaintext(balances map[int]uint64) (*rlwe.Plaintext, error) {
	vals := make([]uint64, e.p.Slots)
	for lane, v := range balances {
		if lane < 0 || lane >= e.p.Lanes || v > MaxAmount {
			return nil, fmt.Errorf("%w: balance %d at lane %d", ErrGenesis, v, lane)
		}
		vals[e.p.Slot(0, 0, lane)] = v
	}
	pt := bgv.NewPlaintext(e.p.BGV, LevelState)
	pt.Scale = e.scale.state
	if err := e.ecd.Encode(vals, pt); err != nil {
		return nil, err
	}
	return pt, nil
}

// trivialState is the noise-free encryption (c0 = encoding, c1 = 0) of public
// lane balances at the state level and scale.
func (e *Engine) trivialState(balances map[int]uint64) (*rlwe.Ciphertext, error) {
	pt, err := e.statePlaintext(balances)
	if err != nil {
		return nil, err
	}
	ct := bgv.NewCiphertext(e.p.BGV, 1, LevelState)
	ct.Value[0].CopyLvl(LevelState, pt.Value)
	ct.Scale = e.scale.state
	ct.IsNTT = pt.IsNTT
	return ct, nil
}

// open registers an account in the next free lane (shards fill in order).
func (b *Book) open(pub ed25519.PublicKey, ownerPK []byte, kind AccountKind, height uint64) (*Account, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("%w: signing key size", ErrMalformed)
	}
	if len(ownerPK) > maxField {
		return nil, fmt.Errorf("%w: owner key size", ErrMalformed)
	}
	id := AccountIDOf(pub)
	if _, ok := b.byID[id]; ok {
		return nil, fmt.Errorf("%w: account %s exists", ErrMalformed, id.Short())
	}
	n := len(b.byID)
	a := &Account{ID: id, SignPub: append(ed25519.PublicKey(nil), pub...), OwnerPK: append([]byte(nil), ownerPK...), Kind: kind,
		Shard: uint32(n / b.p.Lanes), Lane: n % b.p.Lanes, Created: height, LastApply: height}
	b.byID[id] = a
	b.byLane[laneKey{a.Shard, a.Lane}] = id
	return a, nil
}

// Open registers a new account at the current height (a signed plaintext
// operation the node orders like any other). Its balance starts at zero.
func (b *Book) Open(pub ed25519.PublicKey, ownerPK []byte, kind AccountKind) (*Account, error) {
	a, err := b.open(pub, ownerPK, kind, b.height)
	if err != nil {
		return nil, err
	}
	if _, ok := b.history[a.Shard]; !ok {
		st, err := b.eng.trivialState(nil)
		if err != nil {
			return nil, err
		}
		b.history[a.Shard] = map[uint64]*rlwe.Ciphertext{b.height: st}
		b.history[PendingKey(a.Shard)] = map[uint64]*rlwe.Ciphertext{b.height: st}
		b.history[RepaidKey(a.Shard)] = map[uint64]*rlwe.Ciphertext{b.height: st}
	}
	return a, nil
}

// Account looks an account up.
func (b *Book) Account(id AccountID) (*Account, bool) {
	a, ok := b.byID[id]
	return a, ok
}

// Accounts returns every account ordered by (shard, lane).
func (b *Book) Accounts() []*Account {
	out := make([]*Account, 0, len(b.byID))
	for _, a := range b.byID {
		out = append(out, a)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Shard != out[j].Shard {
			return out[i].Shard < out[j].Shard
		}
		return out[i].Lane < out[j].Lane
	})
	return out
}

// Height is the last height whose results were applied.
func (b *Book) Height() uint64 { return b.height }

// Chain is the chain id envelopes must name.
func (b *Book) Chain() string { return b.chain }

// Shards lists the state keys in order: every shard, then every shard's
// repaid plane (RepaidKey), then every shard's pending plane (PendingKey).
func (b *Book) Shards() []uint32 {
	out := make([]uint32, 0, len(b.history))
	for s := range b.history {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

// State returns a shard's state ciphertext as of height h (the newest state
// at or below h that is still retained).
func (b *Book) State(shard uint32, h uint64) (*rlwe.Ciphertext, bool) {
	hs, ok := b.history[shard]
	if !ok {
		return nil, false
	}
	best, found := uint64(0), false
	for k := range hs {
		if k <= h && (!found || k > best) {
			best, found = k, true
		}
	}
	if !found {
		return nil, false
	}
	return hs[best], true
}

// PendingState returns a shard's pending plane as of height h.
func (b *Book) PendingState(shard uint32, h uint64) (*rlwe.Ciphertext, bool) {
	return b.State(PendingKey(shard), h)
}

func (b *Book) stateAt(shard uint32, h uint64) (*rlwe.Ciphertext, error) {
	st, ok := b.State(shard, h)
	if !ok {
		return nil, fmt.Errorf("%w: no state for shard %d at %d", ErrBatch, shard, h)
	}
	return st, nil
}

// Check runs the plaintext admission checks on one envelope against the
// current book: signature, chain, accounts, replay, the operation it was
// built on, and its height. It returns Accepted or the reason.
//
// An operation names the account's last accepted operation it was built on
// (Prev). The available balance changes only through the account's own
// accepted operations, so a wallet knows exactly what each one spends from
// and can send in every block without reading its balance; an operation
// whose Prev is not the account's last accepted one (an earlier one it
// counted on was rejected or never ordered) is rejected here, in plaintext,
// before anything about it is evaluated or decrypted.
//
// A payment (To != From) names the height it was made at and expires a
// window later, so a payment a wallet gave up on cannot be ordered long
// after. An apply (To == From) moves part of the pending balance into the
// available one; it names the height of the pending balance it was built
// against, which must be no older than the account's last apply (else the
// same pending funds would be claimed twice) and inside the window.
func (b *Book) Check(e *Envelope) Reason {
	from, ok := b.byID[e.From]
	if !ok {
		return RejectUnknownAccount
	}
	if e.Chain != b.chain || !e.Verify(from.SignPub) {
		return RejectBadSignature
	}
	return b.CheckVerified(e)
}

// CheckVerified is Check for an envelope whose signature was verified
// before (a proposer filtering its mempool).
func (b *Book) CheckVerified(e *Envelope) Reason {
	from, ok := b.byID[e.From]
	if !ok {
		return RejectUnknownAccount
	}
	if !e.wellFormed() {
		return RejectMalformed
	}
	for _, p := range e.Payees() {
		if _, ok := b.byID[p]; !ok {
			return RejectUnknownAccount
		}
	}
	if e.Nonce <= from.Nonce {
		return RejectReplay
	}
	if e.Height > b.height {
		return RejectFutureHeight
	}
	if e.Height+b.window <= b.height {
		return RejectStaleHeight
	}
	if e.IsApply() && (e.Height < from.LastApply || e.Height+StateWindow <= b.height) {
		return RejectStaleHeight
	}
	// A score check names the height of the score it was built on, which
	// must still be retained, and not before the account was opened (its
	// shard may have no state before: the block could not be evaluated).
	if e.IsCheck() && (e.Height < from.Created || e.Height+StateWindow <= b.height) {
		return RejectStaleHeight
	}
	if e.Prev != from.LastOp {
		return RejectPredecessor
	}
	return b.checkLoanOp(e)
}

// Pending is one envelope of a block with its decoded ciphertext.
type Pending struct {
	Env *Envelope
	CT  *rlwe.Ciphertext
	Sub int // index of the submission in the block (envelopes of a bundle share it)
	// A payment's credits, one per payee (Envelope.Payees): the decided
	// credit ciphertext of its group's layer and the index (row-0 slot) in
	// the payee's lane there (Params.CreditLayout). A payment without all of
	// them cannot move money: it is rejected as undecided.
	Credits []CreditRef
	// A pay-many's payee lanes in CT (LanePiece.Subs), one per payee.
	SubLanes []int
}

// CreditRef is where one payee's credit sits: a decided credit ciphertext
// and the row-0 slot index in the payee's lane.
type CreditRef struct {
	CT    *rlwe.Ciphertext
	Index int
}

// Batch is the set of operations of one kind (payments or applies) of one
// shard in a block. A payment is checked against its sender's available
// balance as the block is evaluated; an apply against its pending balance at
// the height it names (EvaluateMixed), so one batch serves any mix of named
// heights.
type Batch struct {
	Shard   uint32
	Apply   bool           // applies (pending into available) rather than payments
	Check   bool           // score checks (lending.go): nothing moves
	Heights map[int]uint64 // apply and check batches: lane -> named pending (or score) height
	Items   []Item
	Credits []Credit
	Envs    []*Envelope // by lane order of first appearance
	lanes   map[int]*Envelope
}

// Plan groups a block's operations into batches and returns early verdicts
// for those rejected by plaintext checks (keyed by transfer id). Within a
// block an account has at most one operation; later ones are RejectLaneBusy.
func (b *Book) Plan(block []Pending) ([]*Batch, map[[32]byte]Reason) {
	early := map[[32]byte]Reason{}
	type bk struct {
		shard uint32
		kind  uint8 // Envelope.BatchKind
	}
	loans := map[AccountID]int{} // loans funded in this block, per borrower
	batches := map[bk]*Batch{}
	bySub := map[bk]map[int]int{}
	busy := map[AccountID]bool{}
	var order []bk
	for _, pd := range block {
		id := pd.Env.ID()
		if r := b.Check(pd.Env); r != Accepted {
			early[id] = r
			continue
		}
		if pd.CT == nil {
			early[id] = RejectMalformed
			continue
		}
		if pd.Env.Pays() && !b.creditsComplete(pd) {
			early[id] = RejectUndecided
			continue
		}
		if busy[pd.Env.From] {
			early[id] = RejectLaneBusy
			continue
		}
		if pd.Env.Kind == OpFund {
			// Loans to one borrower in one block count against its limit
			// together.
			if len(b.byID[pd.Env.To].Loans)+loans[pd.Env.To] >= MaxLoans {
				early[id] = RejectLoan
				continue
			}
			loans[pd.Env.To]++
		}
		busy[pd.Env.From] = true
		from := b.byID[pd.Env.From]
		k := bk{from.Shard, pd.Env.BatchKind()}
		bt, ok := batches[k]
		if !ok {
			bt = &Batch{Shard: from.Shard, Apply: k.kind == 1, Check: k.kind == 2, Heights: map[int]uint64{}, lanes: map[int]*Envelope{}}
			batches[k] = bt
			bySub[k] = map[int]int{}
			order = append(order, k)
		}
		ix, ok := bySub[k][pd.Sub]
		if !ok {
			bt.Items = append(bt.Items, Item{CT: pd.CT})
			ix = len(bt.Items) - 1
			bySub[k][pd.Sub] = ix
		}
		bt.Items[ix].Lanes = append(bt.Items[ix].Lanes, from.Lane)
		if pd.Env.IsMany() {
			if bt.Items[ix].Subs == nil {
				bt.Items[ix].Subs = map[int][]int{}
			}
			bt.Items[ix].Subs[from.Lane] = append([]int(nil), pd.SubLanes...)
		}
		if bt.Check {
			// The holders wrote the public minimum in row 0: booleanness
			// reads row 1 only.
			if bt.Items[ix].Fixed == nil {
				bt.Items[ix].Fixed = map[int]bool{}
			}
			bt.Items[ix].Fixed[from.Lane] = true
		}
		bt.lanes[from.Lane] = pd.Env
		bt.Envs = append(bt.Envs, pd.Env)
		if bt.Apply || bt.Check {
			bt.Heights[from.Lane] = pd.Env.Height
		} else {
			for i, p := range pd.Env.Payees() {
				to := b.byID[p]
				c := pd.Credits[i]
				bt.Credits = append(bt.Credits, Credit{SourceLane: from.Lane, TargetShard: to.Shard, CT: c.CT, Slot: b.p.Slot(0, c.Index, to.Lane)})
			}
		}
	}
	out := make([]*Batch, 0, len(order))
	for _, k := range order {
		out = append(out, batches[k])
	}
	return out, early
}

// creditsComplete reports whether a payment has a decided credit for every
// payee and, for a pay-many, a lane per payee: nothing is debited that is
// not credited.
func (b *Book) creditsComplete(pd Pending) bool {
	n := len(pd.Env.Payees())
	if len(pd.Credits) != n || pd.Env.IsMany() != (len(pd.SubLanes) > 0) || pd.Env.IsMany() && len(pd.SubLanes) != n {
		return false
	}
	for _, r := range pd.Credits {
		if r.CT == nil || r.Index < 0 || r.Index >= b.p.Bits {
			return false
		}
	}
	return true
}

// Envelope returns the envelope evaluated in lane l of the batch.
func (bt *Batch) Envelope(lane int) *Envelope { return bt.lanes[lane] }

// RhoSeed derives the batch's equality-mask seed from the block hash, so no
// submitter can know the masks before its transfer is fixed in a block.
func (bt *Batch) RhoSeed(blockHash []byte, index int) []byte {
	h := sha256.New()
	h.Write(blockHash)
	var x [8]byte
	binary.BigEndian.PutUint32(x[:4], bt.Shard)
	if bt.Apply {
		x[0] |= 0x80 // a pending key: payments and applies of a shard draw different masks
	}
	if bt.Check {
		x[0] |= 0x40 // and score checks others again
	}
	binary.BigEndian.PutUint32(x[4:], uint32(index))
	h.Write(x[:])
	return h.Sum(nil)
}

// recCacheMax bounds a RecCache.
const recCacheMax = 8

// RecCache remembers recomposed states (keyed by the state ciphertext, which
// the book never mutates). Not safe for concurrent use: one per shard actor.
type RecCache struct {
	m map[*rlwe.Ciphertext]*rlwe.Ciphertext
}

// EvaluateBatch evaluates a planned batch: payments against the shard's
// available state now, applies against its pending plane at the height each
// names. cache may be nil.
func (b *Book) EvaluateBatch(eng *Engine, bt *Batch, blockHash []byte, index int, cache ...*RecCache) (*Evaluation, error) {
	var rc *RecCache
	if len(cache) > 0 {
		rc = cache[0]
	}
	local := map[*rlwe.Ciphertext]*rlwe.Ciphertext{}
	scores := map[uint64]*rlwe.Ciphertext{}
	var checkLanes []int // a check batch's lanes: the only public parts its scores carry (ScoreAt)
	if bt.Check {
		for lane := range bt.Heights {
			checkLanes = append(checkLanes, lane)
		}
		sort.Ints(checkLanes)
	}
	recFor := func(lane int) (*rlwe.Ciphertext, error) {
		if bt.Check {
			h, ok := bt.Heights[lane]
			if !ok {
				return nil, fmt.Errorf("%w: lane %d has no named height", ErrBatch, lane)
			}
			if sc, ok := scores[h]; ok {
				return sc, nil
			}
			sc, err := b.ScoreAt(eng, bt.Shard, h, checkLanes)
			if err != nil {
				return nil, err
			}
			scores[h] = sc
			return sc, nil
		}
		key, h := bt.Shard, b.height
		if bt.Apply {
			var ok bool
			if h, ok = bt.Heights[lane]; !ok {
				return nil, fmt.Errorf("%w: lane %d has no named height", ErrBatch, lane)
			}
			key = PendingKey(bt.Shard)
		}
		st, err := b.stateAt(key, h)
		if err != nil {
			return nil, err
		}
		if r, ok := local[st]; ok {
			return r, nil
		}
		if rc != nil {
			if r, ok := rc.m[st]; ok {
				local[st] = r
				return r, nil
			}
		}
		r, err := eng.Recompose(st)
		if err != nil {
			return nil, err
		}
		local[st] = r
		if rc != nil {
			// Payments read the newest state only, applies a few recent
			// pending planes: a handful of entries (768 KiB each) serves
			// both; more only held memory (it was up to 256 per shard).
			if rc.m == nil || len(rc.m) >= recCacheMax {
				rc.m = map[*rlwe.Ciphertext]*rlwe.Ciphertext{}
			}
			rc.m[st] = r
		}
		return r, nil
	}
	return eng.EvaluateMixed(bt.Items, recFor, bt.RhoSeed(blockHash, index))
}

// Outcome is the decided result of one transfer in a block.
type Outcome struct {
	ID     [32]byte
	Env    *Envelope
	Reason Reason
}

// Commit applies a block's decided batches at height h. An accepted payment
// leaves its sender's available balance and lands in its receiver's pending
// one; an accepted apply leaves the pending balance and lands in the
// available one. Every judged operation consumes its nonce; accepted applies
// record their height. It returns one outcome per judged operation in block
// order of batches.
func (b *Book) Commit(eng *Engine, h uint64, batches []*Batch, evals []*Evaluation, verdicts []map[int]Reason) ([]Outcome, error) {
	if h != b.height+1 {
		return nil, fmt.Errorf("%w: commit height %d after %d", ErrBatch, h, b.height)
	}
	if len(batches) != len(evals) || len(evals) != len(verdicts) {
		return nil, fmt.Errorf("%w: %d batches, %d evaluations, %d verdicts", ErrBatch, len(batches), len(evals), len(verdicts))
	}
	next := map[uint32]*rlwe.Ciphertext{}
	cur := func(k uint32) *rlwe.Ciphertext {
		if st, ok := next[k]; ok {
			return st
		}
		st, _ := b.State(k, b.height)
		return st
	}
	move := func(k uint32, d *rlwe.Ciphertext, sign int) error {
		base := cur(k)
		if base == nil {
			return fmt.Errorf("%w: no state %#x", ErrBatch, k)
		}
		st, err := eng.ApplyDelta(base, d, sign)
		if err != nil {
			return err
		}
		next[k] = st
		return nil
	}
	var out []Outcome
	// Credits of every payment batch land together: one masked product per
	// credit ciphertext and receiving shard, two rescales per receiving shard.
	var credits []Credit
	for i, bt := range batches {
		if bt.Check {
			// A score check moves nothing: its verdict is the answer.
			for _, l := range evals[i].Lanes {
				env := bt.lanes[l]
				r := verdicts[i][l]
				a := b.byID[env.From]
				a.Nonce = env.Nonce
				if r == Accepted {
					a.LastOp = env.ID()
					a.addApplication(Application{ID: env.ID(), Lender: env.To, Height: h, Min: env.Min, Policy: env.Policy}, h)
				}
				out = append(out, Outcome{ID: env.ID(), Env: env, Reason: r})
			}
			continue
		}
		debit, err := eng.Debit(evals[i], verdicts[i])
		if err != nil {
			return nil, err
		}
		if bt.Apply {
			if err := move(PendingKey(bt.Shard), debit, -1); err != nil {
				return nil, err
			}
			if err := move(bt.Shard, debit, +1); err != nil {
				return nil, err
			}
		} else {
			if err := move(bt.Shard, debit, -1); err != nil {
				return nil, err
			}
			for _, c := range bt.Credits {
				if verdicts[i][c.SourceLane] == Accepted {
					credits = append(credits, c)
				}
			}
			if err := b.settleLending(eng, h, bt, evals[i], verdicts[i], move); err != nil {
				return nil, err
			}
		}
		for _, l := range evals[i].Lanes {
			env := bt.lanes[l]
			r := verdicts[i][l]
			a := b.byID[env.From]
			a.Nonce = env.Nonce
			if r == Accepted {
				a.LastOp = env.ID()
				if bt.Apply {
					a.LastApply = h
				}
			}
			out = append(out, Outcome{ID: env.ID(), Env: env, Reason: r})
		}
	}
	deltas, err := eng.CreditDeltas(credits)
	if err != nil {
		return nil, err
	}
	for s, c := range deltas {
		if err := move(PendingKey(s), c, +1); err != nil {
			return nil, err
		}
	}
	b.height = h
	for k, st := range next {
		b.history[k][h] = st
	}
	b.settleLoans(h)
	b.prune()
	return out, nil
}

// Skip advances the height for a block with no transfers.
func (b *Book) Skip(h uint64) error {
	if h != b.height+1 {
		return fmt.Errorf("%w: height %d after %d", ErrBatch, h, b.height)
	}
	b.height = h
	b.settleLoans(h)
	b.prune()
	return nil
}

// prune drops states older than the window (keeping the newest one at or
// below the window's start, which is still that height's state).
func (b *Book) prune() {
	if b.height < StateWindow {
		return
	}
	floor := b.height - StateWindow + 1
	for _, hs := range b.history {
		keep := uint64(0)
		for k := range hs {
			if k <= floor && k > keep {
				keep = k
			}
		}
		for k := range hs {
			if k < keep {
				delete(hs, k)
			}
		}
	}
}

// newStateCT allocates a state-shaped ciphertext for decoding.
func newStateCT(p *Params) *rlwe.Ciphertext { return rlwe.NewCiphertext(p.BGV, 1, LevelState) }

// DecodeState decodes a persisted shard state.
func (p *Params) DecodeState(b []byte) (*rlwe.Ciphertext, error) {
	ct := newStateCT(p)
	if err := strictDecode(ct, b); err != nil {
		return nil, fmt.Errorf("%w: state: %w", ErrMalformed, err)
	}
	if ct.Level() != LevelState || ct.Degree() != 1 {
		return nil, fmt.Errorf("%w: state shape", ErrMalformed)
	}
	return ct, nil
}
