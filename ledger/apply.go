package ledger

import (
	"fmt"
	"sort"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/schemes/bgv"
)

// Credit says that the transfer in SourceLane of a batch credits the account
// in (TargetShard, TargetLane).
type Credit struct {
	SourceLane  int
	TargetShard uint32
	TargetLane  int
}

// Deltas are the state changes of one evaluated batch: Debit is subtracted
// from the source shard's state; Credits[s] is added to shard s's state. All
// are at LevelState with the state scale.
type Deltas struct {
	Debit   *rlwe.Ciphertext
	Credits map[uint32]*rlwe.Ciphertext
}

// Apply turns the verdicts of an evaluated batch into state deltas. Only
// accepted lanes move money; a rejected lane changes nothing. Credits are
// derived from the verified debit itself (the receiver gets exactly the
// recomposed amount the sender proved), routed lane-to-lane with a
// baby-step/giant-step rotation schedule: babySteps-1 hoisted rotations shared
// by the batch, one masked multiply-accumulate per credit, and at most
// Lanes/babySteps-1 rotations per receiving shard. Book.Commit routes a
// whole block's batches with one giant-step pass per receiving shard
// (ApplyParts, then Routes.Finish).
func (e *Engine) Apply(ev *Evaluation, verdicts map[int]Reason, credits []Credit) (*Deltas, error) {
	debit, routes, err := e.ApplyParts(ev, verdicts, credits)
	if err != nil {
		return nil, err
	}
	out := &Deltas{Debit: debit}
	if out.Credits, err = routes.Finish(); err != nil {
		return nil, err
	}
	return out, nil
}

// Routes accumulates the baby-step inner sums of credits from any number of
// batches, by receiving shard and giant step; Finish runs the giant steps
// once per receiving shard. Sums are exact, so the result does not depend on
// the order batches were added in.
type Routes struct {
	e     *Engine
	inner map[routeKey]*rlwe.Ciphertext
	top   map[uint32]int // receiving shard -> highest giant step
}

type routeKey struct {
	shard uint32
	k2    int
}

// NewRoutes returns an empty accumulator.
func (e *Engine) NewRoutes() *Routes {
	return &Routes{e: e, inner: map[routeKey]*rlwe.Ciphertext{}, top: map[uint32]int{}}
}

// ApplyParts is Apply without the giant steps: the debit of the batch's
// accepted lanes, and its credits' inner sums, to be added to a Routes with
// those of the block's other batches.
func (e *Engine) ApplyParts(ev *Evaluation, verdicts map[int]Reason, credits []Credit) (*rlwe.Ciphertext, *Routes, error) {
	routes := e.NewRoutes()
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
			return nil, nil, err
		}
		y3 = bgv.NewCiphertext(e.p.BGV, 1, LevelChecked)
		if err := e.eval.Rescale(y4, y3); err != nil {
			return nil, nil, err
		}
	}
	debit, err := e.rescaleTo(y3, LevelState)
	if err != nil {
		return nil, nil, err
	}

	// Group accepted credits by receiving shard and giant step.
	groups := map[routeKey][]Credit{}
	needBaby := map[int]bool{}
	for _, c := range credits {
		if !accepted[c.SourceLane] {
			continue
		}
		if c.TargetLane < 0 || c.TargetLane >= e.p.Lanes {
			return nil, nil, fmt.Errorf("%w: credit target lane %d", ErrBatch, c.TargetLane)
		}
		k := ((c.SourceLane-c.TargetLane)%e.p.Lanes + e.p.Lanes) % e.p.Lanes // left rotation moving source onto target
		k1, k2 := k%babySteps, k/babySteps
		groups[routeKey{c.TargetShard, k2}] = append(groups[routeKey{c.TargetShard, k2}], c)
		needBaby[k1] = true
	}
	if len(groups) == 0 {
		return debit, routes, nil
	}

	// Baby steps: hoisted rotations of the accepted batch by k1 in [0, babySteps).
	baby := make([]*rlwe.Ciphertext, babySteps)
	baby[0] = y3
	decomp := e.decompose(y3)
	for k1 := 1; k1 < babySteps; k1++ {
		if !needBaby[k1] {
			continue
		}
		baby[k1] = bgv.NewCiphertext(e.p.BGV, 1, LevelChecked)
		g := e.p.BGV.GaloisElementForColRotation(k1)
		if err := e.eval.AutomorphismHoisted(LevelChecked, y3, decomp, g, baby[k1]); err != nil {
			return nil, nil, fmt.Errorf("ledger: baby-step rotation: %w", err)
		}
	}

	// Inner sums per (shard, k2): mask(lane s - k1) * rot_k1(batch), accumulated.
	rq := e.p.BGV.RingQ().AtLevel(LevelChecked)
	for g, cs := range groups {
		acc := bgv.NewCiphertext(e.p.BGV, 1, LevelChecked)
		acc.Scale = y3.Scale
		for _, c := range cs {
			k := ((c.SourceLane-c.TargetLane)%e.p.Lanes + e.p.Lanes) % e.p.Lanes
			k1 := k % babySteps
			// Rotating left by k1 moves lane s onto lane s-k1 (mod Lanes), so the
			// pre-rotated mask is simply that lane's mask.
			m := e.masks.lane(((c.SourceLane-k1)%e.p.Lanes + e.p.Lanes) % e.p.Lanes)
			for i := 0; i < 2; i++ {
				rq.MulCoeffsMontgomeryThenAdd(baby[k1].Value[i], m, acc.Value[i])
			}
		}
		r, err := e.rescaleTo(acc, LevelState)
		if err != nil {
			return nil, nil, err
		}
		if err := routes.add(g, r); err != nil {
			return nil, nil, err
		}
	}
	return debit, routes, nil
}

func (r *Routes) add(k routeKey, ct *rlwe.Ciphertext) error {
	if cur, ok := r.inner[k]; ok {
		return r.e.eval.Add(cur, ct, cur)
	}
	r.inner[k] = ct
	if top, ok := r.top[k.shard]; !ok || k.k2 > top {
		r.top[k.shard] = k.k2
	}
	return nil
}

// Merge adds another batch's inner sums into r (same engine parameters).
func (r *Routes) Merge(o *Routes) error {
	keys := make([]routeKey, 0, len(o.inner))
	for k := range o.inner {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].shard < keys[j].shard || keys[i].shard == keys[j].shard && keys[i].k2 < keys[j].k2
	})
	for _, k := range keys {
		if err := r.add(k, o.inner[k]); err != nil {
			return err
		}
	}
	return nil
}

// Finish runs the giant steps, per receiving shard, Horner:
// H = inner_max; H = rot_babySteps(H) + inner_k2, and returns each receiving
// shard's credit delta at LevelState.
func (r *Routes) Finish() (map[uint32]*rlwe.Ciphertext, error) {
	out := map[uint32]*rlwe.Ciphertext{}
	ids := make([]uint32, 0, len(r.top))
	for s := range r.top {
		ids = append(ids, s)
	}
	sort.Slice(ids, func(a, b int) bool { return ids[a] < ids[b] })
	for _, s := range ids {
		var h *rlwe.Ciphertext
		for k2 := r.top[s]; k2 >= 0; k2-- {
			if h != nil {
				rot := bgv.NewCiphertext(r.e.p.BGV, 1, LevelState)
				if err := r.e.eval.RotateColumns(h, babySteps, rot); err != nil {
					return nil, fmt.Errorf("ledger: giant-step rotation: %w", err)
				}
				h = rot
			}
			if in, ok := r.inner[routeKey{s, k2}]; ok {
				if h == nil {
					h = in.CopyNew()
				} else if err := r.e.eval.Add(h, in, h); err != nil {
					return nil, err
				}
			}
		}
		out[s] = h
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
