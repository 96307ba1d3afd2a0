package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/big"
	"sync"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/ring/ringqp"
	"github.com/tuneinsight/lattigo/v5/schemes/bgv"
	"github.com/tuneinsight/lattigo/v5/utils/sampling"
)

func newEncoder(p *Params) *bgv.Encoder { return bgv.NewEncoder(p.BGV) }

// masks caches the per-lane isolation masks: the 0/1 indicator of one lane's
// 64 slots, encoded at LevelUpload in NTT form and pre-multiplied by T in the
// Montgomery domain, so isolating a client ciphertext is one fused
// multiply-accumulate per coefficient. A level-L mask restricted to its first
// L' primes is the level-L' mask, so one table serves every level.
type masks struct {
	p     *Params
	once  []sync.Once
	lanes []ring.Poly
	tMont ring.RNSScalar
}

func newMasks(p *Params) *masks {
	rq := p.BGV.RingQ()
	tm := rq.NewRNSScalarFromBigint(new(big.Int).Lsh(new(big.Int).SetUint64(p.BGV.PlaintextModulus()), 64))
	rq.MFormRNSScalar(tm, tm)
	return &masks{p: p, once: make([]sync.Once, p.Lanes), lanes: make([]ring.Poly, p.Lanes), tMont: tm}
}

// encodeMask encodes a 0/1 slot vector at level into the fused-multiply form.
func (m *masks) encodeMask(vals []uint64, level int) ring.Poly {
	pt := bgv.NewPlaintext(m.p.BGV, level)
	pt.Scale = m.p.BGV.NewScale(1)
	if err := newEncoder(m.p).Encode(vals, pt); err != nil {
		panic(fmt.Errorf("ledger: encoding mask: %w", err)) // fixed-size vector: a bug if it fails
	}
	rq := m.p.BGV.RingQ().AtLevel(level)
	out := rq.NewPoly()
	rq.MulRNSScalarMontgomery(pt.Value, m.tMont, out)
	return out
}

// laneSlots calls f with every slot of a lane (both rows) and its bit index.
func (p *Params) laneSlots(lane int, f func(slot, j int)) {
	for row := 0; row < p.Rows; row++ {
		for j := 0; j < p.Bits; j++ {
			f(p.Slot(row, j, lane), j)
		}
	}
}

// lane returns lane's isolation mask (both rows, all 32 bit slots).
func (m *masks) lane(lane int) ring.Poly {
	m.once[lane].Do(func() { m.lanes[lane] = m.union([]int{lane}, LevelUpload) })
	return m.lanes[lane]
}

// union returns the isolation mask of several lanes at a level.
func (m *masks) union(lanes []int, level int) ring.Poly {
	vals := make([]uint64, m.p.Slots)
	for _, lane := range lanes {
		m.p.laneSlots(lane, func(slot, _ int) { vals[slot] = 1 })
	}
	return m.encodeMask(vals, level)
}

// Engine evaluates batches. It holds evaluation keys and precomputed
// plaintexts; it is not safe for concurrent use: give each goroutine its own
// via Clone (clones share the read-only tables).
type Engine struct {
	p     *Params
	keys  *PublicKeys
	eval  *bgv.Evaluator
	ecd   *bgv.Encoder
	masks *masks
	bits  *rlwe.Plaintext // c(row, j, lane) = 2^j, at LevelState, scale of the batch at that level
	scale struct {
		checked, state rlwe.Scale
	}
}

// NewEngine prepares an evaluator for the published keys.
func NewEngine(p *Params, keys *PublicKeys) (*Engine, error) {
	if keys == nil || keys.RLK == nil {
		return nil, fmt.Errorf("%w: incomplete evaluation keys", ErrParams)
	}
	if len(keys.GKs) != len(p.GaloisElements()) {
		// 22 keys: a genesis from before credits from pieces (credit.go),
		// whose chain this version cannot continue.
		return nil, fmt.Errorf("%w: the genesis holds %d Galois keys, this version needs %d: it was made by an incompatible version; start a new chain (zkbank testnet, or a new ceremony)", ErrParams, len(keys.GKs), len(p.GaloisElements()))
	}
	e := &Engine{p: p, keys: keys, masks: newMasks(p), ecd: newEncoder(p)}
	e.eval = bgv.NewEvaluator(p.BGV, keys.EvaluationKeys())
	q := p.BGV.Q()
	one := p.BGV.NewScale(1)
	e.scale.checked = one.Div(p.BGV.NewScale(q[LevelUpload]))
	e.scale.state = e.scale.checked.Div(p.BGV.NewScale(q[LevelChecked]))

	vals := make([]uint64, p.Slots)
	for lane := 0; lane < p.Lanes; lane++ {
		p.laneSlots(lane, func(slot, j int) { vals[slot] = 1 << j })
	}
	e.bits = bgv.NewPlaintext(p.BGV, LevelState)
	e.bits.Scale = e.scale.state
	if err := e.ecd.Encode(vals, e.bits); err != nil {
		return nil, fmt.Errorf("ledger: encoding bit pattern: %w", err)
	}
	return e, nil
}

// Clone returns an engine for another goroutine, sharing read-only tables.
func (e *Engine) Clone() *Engine {
	c := *e
	c.eval = e.eval.ShallowCopy()
	c.ecd = e.ecd.ShallowCopy()
	return &c
}

// Params returns the engine's parameters.
func (e *Engine) Params() *Params { return e.p }

// StateScale is the plaintext scale every shard state ciphertext carries.
func (e *Engine) StateScale() rlwe.Scale { return e.scale.state }

// Item is one uploaded ciphertext and the lanes of it that belong to
// transfers in this batch (one lane for a single transfer; several for a
// bundle packed by one wallet). Lanes must be distinct across the batch.
type Item struct {
	CT    *rlwe.Ciphertext
	Lanes []int
	// Subs maps a pay-many payer's lane to its payees' lanes in CT
	// (LanePiece.Subs). The payer's row 0 then holds the total (not bits)
	// and each payee lane's row 0 one amount's bits: booleanness reads the
	// payer's row 1 and the payees' row 0; the balance equation and the
	// debit read the payer's lane as for any payment.
	Subs map[int][]int
	// Fixed marks lanes whose row 0 validators wrote (a public threshold,
	// LanePiece.AtLeast): booleanness reads only their row 1.
	Fixed map[int]bool
}

// Checks are the two ciphertexts a batch's validity is read from, both at
// LevelDecrypt: Bits is zero in every slot of an honest lane (booleanness of
// the 32 amount and 32 new-balance bits); Eq is zero at slot (0,0,lane) of an
// honest lane (amount + new balance = balance at the named height).
type Checks struct {
	Bits *rlwe.Ciphertext
	Eq   *rlwe.Ciphertext
}

// Digest is the hash of the check ciphertexts: a validator's evaluation
// result, compared across validators as proof of work.
func (c *Checks) Digest() ([32]byte, error) {
	h := sha256.New()
	for _, ct := range []*rlwe.Ciphertext{c.Bits, c.Eq} {
		b, err := ct.MarshalBinary()
		if err != nil {
			return [32]byte{}, err
		}
		h.Write(b)
	}
	var d [32]byte
	copy(d[:], h.Sum(nil))
	return d, nil
}

// Evaluation is everything a validator keeps about a batch between
// evaluating it and applying its results.
type Evaluation struct {
	Checks  Checks
	Lanes   []int            // active lanes, ascending
	Subs    map[int][]int    // pay-many payer lane -> its payees' lanes (Item.Subs)
	checked *rlwe.Ciphertext // isolated batch at LevelChecked (for credits)
	items   []Item
}

// ErrBatch reports a batch that cannot be evaluated (caller bug or malformed
// input that admission should have rejected).
var ErrBatch = errors.New("ledger: bad batch")

// isolate computes sum_i mask(lanes_i) * ct_i at the ciphertexts' level,
// ignoring client-supplied metadata (scale 1, NTT) so a hostile header cannot
// change the arithmetic.
func (e *Engine) isolate(items []Item, level int) (*rlwe.Ciphertext, error) {
	rq := e.p.BGV.RingQ().AtLevel(level)
	var sum ring.Poly
	return e.isolateBy(items, level, func(it Item) ring.Poly {
		switch {
		case len(it.Lanes) == 1:
			return e.masks.lane(it.Lanes[0])
		case len(it.Lanes) > 8:
			// Encoding the union directly beats summing many lane masks.
			return e.masks.union(it.Lanes, level)
		}
		if sum.N() == 0 {
			sum = rq.NewPoly()
		}
		rq.MulScalar(sum, 0, sum)
		for _, l := range it.Lanes {
			rq.Add(sum, e.masks.lane(l), sum)
		}
		return sum
	})
}

// isolateBy computes sum_i maskOf(item_i) * ct_i at level over the items
// with lanes (isolate; isolateBits), ignoring client-supplied metadata.
func (e *Engine) isolateBy(items []Item, level int, maskOf func(Item) ring.Poly) (*rlwe.Ciphertext, error) {
	rq := e.p.BGV.RingQ().AtLevel(level)
	acc := bgv.NewCiphertext(e.p.BGV, 1, level)
	acc.Scale = e.p.BGV.NewScale(1)
	for _, it := range items {
		if it.CT == nil || it.CT.Degree() != 1 || it.CT.Level() < level {
			return nil, fmt.Errorf("%w: ciphertext degree/level", ErrBatch)
		}
		if len(it.Lanes) == 0 {
			continue
		}
		m := maskOf(it)
		for i := 0; i < 2; i++ {
			rq.MulCoeffsMontgomeryThenAdd(it.CT.Value[i], m, acc.Value[i])
		}
	}
	return acc, nil
}

// Evaluate runs the validation circuit on one batch of a shard whose
// transfers all name the same height, whose state is given. rhoSeed must be
// fixed after the batch is (e.g. derived from the block hash), so submitters
// cannot grind the equality masks. The result is bit-for-bit deterministic.
func (e *Engine) Evaluate(state *rlwe.Ciphertext, items []Item, rhoSeed []byte) (*Evaluation, error) {
	rec, err := e.Recompose(state)
	if err != nil {
		return nil, err
	}
	return e.EvaluateMixed(items, func(int) (*rlwe.Ciphertext, error) { return rec, nil }, rhoSeed)
}

// RecomposedFor returns, for an active lane, the recomposed shard state at
// the height that lane's transfer names (Recompose of that state).
type RecomposedFor func(lane int) (*rlwe.Ciphertext, error)

// EvaluateMixed runs the validation circuit on one batch of a shard whose
// transfers may name different heights. The balance equation reads each
// lane's balance from its own height's recomposed state: the state term only
// enters through the rho-masked product, so
// rho*rec(y + swap(y)) - sum_h rho_h*rec(state_h), with rho_h the lanes
// naming h, costs one plaintext multiplication per distinct height and no
// extra level. One batch per shard and block, whatever heights are named.
func (e *Engine) EvaluateMixed(items []Item, recFor RecomposedFor, rhoSeed []byte) (*Evaluation, error) {
	lanes, subs, err := e.checkLanes(items)
	if err != nil {
		return nil, err
	}
	y4, err := e.isolate(items, LevelUpload)
	if err != nil {
		return nil, err
	}
	y3 := bgv.NewCiphertext(e.p.BGV, 1, LevelChecked)
	if err := e.eval.Rescale(y4, y3); err != nil {
		return nil, fmt.Errorf("ledger: rescale: %w", err)
	}
	y2 := bgv.NewCiphertext(e.p.BGV, 1, LevelState)
	if err := e.eval.Rescale(y3, y2); err != nil {
		return nil, fmt.Errorf("ledger: rescale: %w", err)
	}
	yb := y2
	if ownRowZero(items) {
		// Pay-many or threshold checks: booleanness reads other slots than
		// the equation (a row 0 validators wrote is not bits; a pay-many's
		// payee lanes are). Same mask kind, same levels: the same noise as
		// the main isolation.
		if yb, err = e.isolateBits(items); err != nil {
			return nil, err
		}
	}
	bits, err := e.booleanness(yb)
	if err != nil {
		return nil, err
	}
	eq, err := e.equation(y2, recFor, lanes, rhoSeed)
	if err != nil {
		return nil, err
	}
	return &Evaluation{Checks: Checks{Bits: bits, Eq: eq}, Lanes: lanes, Subs: subs, checked: y3, items: items}, nil
}

// ownRowZero reports whether some lane's row 0 is validators' (Item.Subs,
// Item.Fixed), so booleanness needs its own isolation.
func ownRowZero(items []Item) bool {
	for _, it := range items {
		if len(it.Subs) > 0 || len(it.Fixed) > 0 {
			return true
		}
	}
	return false
}

// isolateBits isolates the slots booleanness checks, at LevelState: every
// slot of a single transfer's lane; of a pay-many, the payer's row 1 and
// each payee lane's row 0.
func (e *Engine) isolateBits(items []Item) (*rlwe.Ciphertext, error) {
	acc, err := e.isolateBy(items, LevelUpload, func(it Item) ring.Poly {
		vals := make([]uint64, e.p.Slots)
		for _, l := range it.Lanes {
			sub, many := it.Subs[l]
			row := 0
			if many || it.Fixed[l] {
				row = 1 // row 0 is validators' (a total or a threshold), not bits
			}
			for ; row < e.p.Rows; row++ {
				for j := 0; j < e.p.Bits; j++ {
					vals[e.p.Slot(row, j, l)] = 1
				}
			}
			for _, s := range sub {
				for j := 0; j < e.p.Bits; j++ {
					vals[e.p.Slot(0, j, s)] = 1
				}
			}
		}
		return e.masks.encodeMask(vals, LevelUpload)
	})
	if err != nil {
		return nil, err
	}
	return e.rescaleTo(acc, LevelState)
}

// checkLanes returns the batch's active (paying) lanes, ascending, and its
// pay-many payees' lanes. No lane may be used twice in a batch, as a payer
// or a payee: each lane's slots then carry one transfer's values.
func (e *Engine) checkLanes(items []Item) ([]int, map[int][]int, error) {
	used := make([]bool, e.p.Lanes)
	payer := make([]bool, e.p.Lanes)
	var subs map[int][]int
	take := func(l int) error {
		if l < 0 || l >= e.p.Lanes {
			return fmt.Errorf("%w: lane %d out of range", ErrBatch, l)
		}
		if used[l] {
			return fmt.Errorf("%w: lane %d used twice in one batch", ErrBatch, l)
		}
		used[l] = true
		return nil
	}
	for _, it := range items {
		in := map[int]bool{}
		for _, l := range it.Lanes {
			if err := take(l); err != nil {
				return nil, nil, err
			}
			payer[l], in[l] = true, true
		}
		for l := range it.Fixed {
			if _, many := it.Subs[l]; !in[l] || many {
				return nil, nil, fmt.Errorf("%w: threshold check for lane %d", ErrBatch, l)
			}
		}
		for l, sub := range it.Subs {
			if !in[l] || len(sub) < 2 || len(sub) > MaxPayees {
				return nil, nil, fmt.Errorf("%w: pay-many lanes for lane %d", ErrBatch, l)
			}
			for _, s := range sub {
				if err := take(s); err != nil {
					return nil, nil, err
				}
			}
			if subs == nil {
				subs = map[int][]int{}
			}
			subs[l] = append([]int(nil), sub...)
		}
	}
	var lanes []int
	for l, u := range payer {
		if u {
			lanes = append(lanes, l)
		}
	}
	return lanes, subs, nil
}

// booleanness computes y*(y - 2^j) in every slot and brings it to LevelDecrypt.
// It is not masked: honest lanes are exactly zero, idle lanes are zero, and a
// nonzero slot only reveals a function of the cheating submitter's own input.
func (e *Engine) booleanness(y2 *rlwe.Ciphertext) (*rlwe.Ciphertext, error) {
	ev := e.eval
	d, err := ev.SubNew(y2, e.bits)
	if err != nil {
		return nil, fmt.Errorf("ledger: booleanness: %w", err)
	}
	prod, err := ev.MulRelinNew(y2, d)
	if err != nil {
		return nil, fmt.Errorf("ledger: booleanness: %w", err)
	}
	return e.rescaleTo(prod, LevelDecrypt)
}

func (e *Engine) rescaleTo(ct *rlwe.Ciphertext, level int) (*rlwe.Ciphertext, error) {
	for ct.Level() > level {
		out := bgv.NewCiphertext(e.p.BGV, ct.Degree(), ct.Level()-1)
		if err := e.eval.Rescale(ct, out); err != nil {
			return nil, fmt.Errorf("ledger: rescale: %w", err)
		}
		ct = out
	}
	return ct, nil
}

// recompose sums each lane's 32 bit slots within each row, leaving the sum in
// every bit slot of the lane (the row is exactly 32 lanes-strides long, so the
// log-depth rotation sum is a full cyclic sum).
func (e *Engine) recompose(ct *rlwe.Ciphertext) (*rlwe.Ciphertext, error) {
	x := ct.CopyNew()
	tmp := bgv.NewCiphertext(e.p.BGV, 1, ct.Level())
	for m := 0; (1 << m) < e.p.Bits; m++ {
		if err := e.eval.RotateColumns(x, e.p.Lanes<<m, tmp); err != nil {
			return nil, fmt.Errorf("ledger: recompose: %w", err)
		}
		if err := e.eval.Add(x, tmp, x); err != nil {
			return nil, fmt.Errorf("ledger: recompose: %w", err)
		}
	}
	return x, nil
}

// rho derives the random nonzero equality masks for the active lanes.
func (e *Engine) rho(lanes []int, seed []byte) []uint64 {
	h := sha256.Sum256(append([]byte("zkbank/rho/v1\x00"), seed...))
	prng, _ := sampling.NewKeyedPRNG(h[:])
	t := e.p.BGV.PlaintextModulus()
	vals := make([]uint64, e.p.Slots)
	var b [8]byte
	for _, l := range lanes {
		for {
			if _, err := prng.Read(b[:]); err != nil {
				panic(err)
			}
			v := binary.BigEndian.Uint64(b[:]) >> 23 // 41 bits, rejection-sampled below t
			if v != 0 && v < t {
				vals[e.p.Slot(0, 0, l)] = v
				break
			}
		}
	}
	return vals
}

// equation computes rho * (a + b' - balance_h) at slot (0,0,lane) of each
// active lane (balance_h read at the height the lane's transfer names) and
// zero elsewhere, at LevelDecrypt.
func (e *Engine) equation(y2 *rlwe.Ciphertext, recFor RecomposedFor, lanes []int, seed []byte) (*rlwe.Ciphertext, error) {
	ev := e.eval
	// rec and the row swap are linear and commute:
	// rec(y) + swap(rec(y)) = rec(y + swap(y)), 6 rotations.
	sw, err := ev.RotateRowsNew(y2)
	if err != nil {
		return nil, fmt.Errorf("ledger: row swap: %w", err)
	}
	x := y2.CopyNew()
	if err := ev.Add(x, sw, x); err != nil {
		return nil, err
	}
	if x, err = e.recompose(x); err != nil {
		return nil, err
	}
	rho := e.rho(lanes, seed)
	acc, err := e.maskedBy(x, rho)
	if err != nil {
		return nil, err
	}
	// Group lanes by the recomposed state they read, in lane order.
	type group struct {
		rec  *rlwe.Ciphertext
		vals []uint64
	}
	var groups []*group
	byRec := map[*rlwe.Ciphertext]*group{}
	for _, l := range lanes {
		rec, err := recFor(l)
		if err != nil {
			return nil, err
		}
		if rec == nil || rec.Level() != LevelState || !rec.Scale.Equal(y2.Scale) {
			return nil, fmt.Errorf("%w: state for lane %d does not match the circuit", ErrBatch, l)
		}
		g, ok := byRec[rec]
		if !ok {
			g = &group{rec: rec, vals: make([]uint64, e.p.Slots)}
			byRec[rec] = g
			groups = append(groups, g)
		}
		s := e.p.Slot(0, 0, l)
		g.vals[s] = rho[s]
	}
	for _, g := range groups {
		m, err := e.maskedBy(g.rec, g.vals)
		if err != nil {
			return nil, err
		}
		if err := ev.Sub(acc, m, acc); err != nil {
			return nil, err
		}
	}
	return e.rescaleTo(acc, LevelDecrypt)
}

// maskedBy multiplies ct (at LevelState) by a slot vector encoded at scale 1.
func (e *Engine) maskedBy(ct *rlwe.Ciphertext, vals []uint64) (*rlwe.Ciphertext, error) {
	pt := bgv.NewPlaintext(e.p.BGV, LevelState)
	pt.Scale = e.p.BGV.NewScale(1)
	if err := e.ecd.Encode(vals, pt); err != nil {
		return nil, err
	}
	return e.eval.MulNew(ct, pt)
}

// decompose prepares hoisted rotations of ct.
func (e *Engine) decompose(ct *rlwe.Ciphertext) []ringqp.Poly {
	rp := e.p.BGV.GetRLWEParameters()
	levelP := rp.MaxLevelP()
	n := rp.BaseRNSDecompositionVectorSize(ct.Level(), levelP)
	buf := make([]ringqp.Poly, n)
	for i := range buf {
		buf[i] = rp.RingQP().AtLevel(ct.Level(), levelP).NewPoly()
	}
	e.eval.DecomposeNTT(ct.Level(), levelP, levelP+1, ct.Value[1], ct.IsNTT, buf)
	return buf
}
