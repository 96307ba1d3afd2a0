package ledger

import (
	"fmt"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/schemes/bgv"
)

// Credit is one payment's credit: the decided credit ciphertext of its
// group's layer (LevelUpload, EncryptCreditBatch summed over the pieces)
// and the slot its amount occupies in it (row 0 of the receiver's lane in
// shard TargetShard). SourceLane is the paying lane, whose verdict decides
// whether the credit lands.
type Credit struct {
	SourceLane  int
	TargetShard uint32
	CT          *rlwe.Ciphertext
	Slot        int
}

// Deltas are the state changes of one evaluated batch: Debit is subtracted
// from the source shard's state; Credits[s] is added to shard s's pending
// state. All are at LevelState with the state scale.
type Deltas struct {
	Debit   *rlwe.Ciphertext
	Credits map[uint32]*rlwe.Ciphertext
}

// Apply turns the verdicts of an evaluated batch into state deltas. Only
// accepted lanes move money; a rejected lane changes nothing. Book.Commit
// does the same for a whole block (Debit per batch, CreditDeltas once).
func (e *Engine) Apply(ev *Evaluation, verdicts map[int]Reason, credits []Credit) (*Deltas, error) {
	debit, err := e.Debit(ev, verdicts)
	if err != nil {
		return nil, err
	}
	var acc []Credit
	for _, c := range credits {
		if verdicts[c.SourceLane] == Accepted {
			acc = append(acc, c)
		}
	}
	out := &Deltas{Debit: debit}
	if out.Credits, err = e.CreditDeltas(acc); err != nil {
		return nil, err
	}
	return out, nil
}

// Debit is the delta an evaluated batch takes from its shard: the batch
// over its accepted lanes (amount bits in row 0, the rest bits in row 1),
// at LevelState.
func (e *Engine) Debit(ev *Evaluation, verdicts map[int]Reason) (*rlwe.Ciphertext, error) {
	accepted := map[int]bool{}
	for l, r := range verdicts {
		if r == Accepted {
			accepted[l] = true
		}
	}
	y3 := ev.checked
	if len(accepted) != len(ev.Lanes) {
		// Recompute the isolated batch over accepted lanes only (rejections are
		// the exception, so the common path reuses the evaluation's batch).
		var items []Item
		for _, it := range ev.items {
			var keep []int
			for _, l := range it.Lanes {
				if accepted[l] {
					keep = append(keep, l)
				}
			}
			if len(keep) > 0 {
				items = append(items, Item{CT: it.CT, Lanes: keep})
			}
		}
		y4, err := e.isolate(items, LevelUpload)
		if err != nil {
			return nil, err
		}
		y3 = bgv.NewCiphertext(e.p.BGV, 1, LevelChecked)
		if err := e.eval.Rescale(y4, y3); err != nil {
			return nil, err
		}
	}
	return e.rescaleTo(y3, LevelState)
}

// CreditDeltas adds accepted credits into their receiving shards' deltas:
// per credit ciphertext and receiving shard, one multiply by the indicator
// of the slots of that shard's credits, accumulated per shard at
// LevelUpload and rescaled to LevelState exactly as a debit is (same levels
// and scale, and the same noise). No rotation: the credit ciphertexts
// already hold each amount in its receiver's lane. A slot named twice, or
// outside row 0, is an error.
func (e *Engine) CreditDeltas(credits []Credit) (map[uint32]*rlwe.Ciphertext, error) {
	type key struct {
		shard uint32
		ct    *rlwe.Ciphertext
	}
	masks := map[key][]uint64{} // the 0/1 slot indicator per credit ciphertext and receiving shard
	var order []key
	for _, c := range credits {
		if c.CT == nil || c.CT.Degree() != 1 || c.CT.Level() != LevelUpload {
			return nil, fmt.Errorf("%w: credit ciphertext shape", ErrBatch)
		}
		if c.Slot < 0 || c.Slot >= e.p.RowLen() {
			return nil, fmt.Errorf("%w: credit slot %d outside row 0", ErrBatch, c.Slot)
		}
		k := key{c.TargetShard, c.CT}
		vals, ok := masks[k]
		if !ok {
			vals = make([]uint64, e.p.Slots)
			masks[k] = vals
			order = append(order, k)
		}
		if vals[c.Slot] != 0 {
			return nil, fmt.Errorf("%w: two credits in slot %d", ErrBatch, c.Slot)
		}
		vals[c.Slot] = 1
	}
	rq := e.p.BGV.RingQ().AtLevel(LevelUpload)
	acc := map[uint32]*rlwe.Ciphertext{}
	for _, k := range order {
		m := e.masks.encodeMask(masks[k], LevelUpload)
		a, ok := acc[k.shard]
		if !ok {
			a = bgv.NewCiphertext(e.p.BGV, 1, LevelUpload)
			a.Scale = e.p.BGV.NewScale(1)
			acc[k.shard] = a
		}
		for i := 0; i < 2; i++ {
			rq.MulCoeffsMontgomeryThenAdd(k.ct.Value[i], m, a.Value[i])
		}
	}
	out := make(map[uint32]*rlwe.Ciphertext, len(acc))
	for s, a := range acc {
		d, err := e.rescaleTo(a, LevelState)
		if err != nil {
			return nil, fmt.Errorf("ledger: rescaling a credit: %w", err)
		}
		out[s] = d
	}
	return out, nil
}

// ApplyDelta adds (sign=+1) or subtracts (sign=-1) a delta into a shard state.
func (e *Engine) ApplyDelta(state, delta *rlwe.Ciphertext, sign int) (*rlwe.Ciphertext, error) {
	if delta == nil {
		return state, nil
	}
	if state.Level() != LevelState || delta.Level() != LevelState || !state.Scale.Equal(delta.Scale) {
		return nil, fmt.Errorf("%w: delta level/scale does not match the state", ErrBatch)
	}
	out := state.CopyNew()
	var err error
	if sign < 0 {
		err = e.eval.Sub(out, delta, out)
	} else {
		err = e.eval.Add(out, delta, out)
	}
	return out, err
}

// BalanceCiphertext isolates one account's balance from a shard state into a
// single slot (0,0,lane) at LevelDecrypt: the only ciphertext a validator
// re-encrypts to an owner, so no other account's data can leak through it.
func (e *Engine) BalanceCiphertext(state *rlwe.Ciphertext, lane int) (*rlwe.Ciphertext, error) {
	sum, err := e.Recompose(state)
	if err != nil {
		return nil, err
	}
	return e.BalanceFromRecomposed(sum, lane)
}

// Recompose returns a state with every account's balance in every slot of
// its lane (5 rotations). It is deterministic, so a node can compute it once
// per shard and height and answer every balance query of that height from it.
func (e *Engine) Recompose(state *rlwe.Ciphertext) (*rlwe.Ciphertext, error) {
	if state == nil || state.Level() != LevelState {
		return nil, fmt.Errorf("%w: state must be at level %d", ErrBatch, LevelState)
	}
	return e.recompose(state)
}

// BalancesFromRecomposed isolates one account's two balances from its
// shard's recomposed available and pending states into one ciphertext: the
// available balance at slot (0,0,lane), the pending one at (0,1,lane), zero
// elsewhere. It is what a validator re-encrypts to the owner (one share for
// both), so no other account's data and no slot junk can leak through it.
func (e *Engine) BalancesFromRecomposed(avail, pend *rlwe.Ciphertext, lane int) (*rlwe.Ciphertext, error) {
	if lane < 0 || lane >= e.p.Lanes {
		return nil, fmt.Errorf("%w: lane %d", ErrBatch, lane)
	}
	out, err := e.slotOf(avail, e.p.Slot(0, 0, lane))
	if err != nil {
		return nil, err
	}
	p, err := e.slotOf(pend, e.p.Slot(0, 1, lane))
	if err != nil {
		return nil, err
	}
	if err := e.eval.Add(out, p, out); err != nil {
		return nil, err
	}
	return e.rescaleTo(out, LevelDecrypt)
}

// slotOf multiplies a state-level ciphertext by the indicator of one slot.
func (e *Engine) slotOf(sum *rlwe.Ciphertext, slot int) (*rlwe.Ciphertext, error) {
	if sum == nil || sum.Level() != LevelState {
		return nil, fmt.Errorf("%w: state must be at level %d", ErrBatch, LevelState)
	}
	vals := make([]uint64, e.p.Slots)
	vals[slot] = 1
	return e.maskedBy(sum, vals)
}

// BalanceFromRecomposed isolates one lane's balance from a recomposed state.
func (e *Engine) BalanceFromRecomposed(sum *rlwe.Ciphertext, lane int) (*rlwe.Ciphertext, error) {
	if lane < 0 || lane >= e.p.Lanes {
		return nil, fmt.Errorf("%w: lane %d", ErrBatch, lane)
	}
	vals := make([]uint64, e.p.Slots)
	vals[e.p.Slot(0, 0, lane)] = 1
	pt := bgv.NewPlaintext(e.p.BGV, LevelState)
	pt.Scale = e.p.BGV.NewScale(1)
	if err := e.ecd.Encode(vals, pt); err != nil {
		return nil, err
	}
	m, err := e.eval.MulNew(sum, pt)
	if err != nil {
		return nil, err
	}
	return e.rescaleTo(m, LevelDecrypt)
}
