package ledger

import (
	"fmt"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/schemes/bgv"
)

// Linear scores over encrypted planes (groundwork for lending's credit
// score; the formula and its planes are not wired into the chain yet).
//
// A score that is linear in per-account encrypted values, with public
// non-negative integer weights and a public per-account constant, needs no
// plane of its own: it is computed when asked, from the recomposed planes
// holding its inputs, in the same shape a recomposed state has. So the
// owner can read it like a balance (BalanceFromRecomposed, re-encrypted to
// its key) and a lender can get the one-bit answer "score >= Min" from a
// threshold check (atleast.go) evaluated against it.

// MaxScoreWeight bounds a weight: the score of values below 2^32 stays far
// below the plaintext modulus (so a threshold check stays exact), and a
// weight multiplies the plane's noise: 2^24.5 after 100,000 credits
// (docs/PERFORMANCE.md) times 16 stays under 2^29, below the 2^32 the
// decryption shares' flooding assumes.
const MaxScoreWeight = 1 << 4

// ScoreTerm is one input of a linear score: Weight times a recomposed plane
// (Engine.Recompose of a shard state).
type ScoreTerm struct {
	Plane  *rlwe.Ciphertext
	Weight uint64
}

// LinearScore returns, at LevelState with the state scale, a ciphertext
// whose anchor slot (0,0,lane) holds sum_i Weight_i * plane_i(lane) +
// base[lane] for every lane: what Recompose returns for a state, so
// BalanceFromRecomposed and threshold checks read it unchanged.
func (e *Engine) LinearScore(terms []ScoreTerm, base map[int]uint64) (*rlwe.Ciphertext, error) {
	if len(terms) == 0 {
		return nil, fmt.Errorf("%w: a score needs at least one plane", ErrBatch)
	}
	var out *rlwe.Ciphertext
	for _, t := range terms {
		if t.Plane == nil || t.Plane.Level() != LevelState || !t.Plane.Scale.Equal(e.scale.state) || t.Weight > MaxScoreWeight {
			return nil, fmt.Errorf("%w: score term (level, scale or weight)", ErrBatch)
		}
		// The coefficients times the weight: the plaintext times the weight,
		// the scale unchanged (Lattigo's scalar product changes the scale,
		// which the circuit's scale checks refuse).
		w := t.Plane.CopyNew()
		rq := e.p.BGV.RingQ().AtLevel(w.Level())
		for i := range w.Value {
			rq.MulScalar(w.Value[i], t.Weight, w.Value[i])
		}
		if out == nil {
			out = w
		} else if err := e.eval.Add(out, w, out); err != nil {
			return nil, fmt.Errorf("ledger: score: %w", err)
		}
	}
	if len(base) > 0 {
		vals := make([]uint64, e.p.Slots)
		for lane, v := range base {
			if lane < 0 || lane >= e.p.Lanes || v > MaxAmount {
				return nil, fmt.Errorf("%w: score base for lane %d", ErrBatch, lane)
			}
			vals[e.p.Slot(0, 0, lane)] = v
		}
		pt := bgv.NewPlaintext(e.p.BGV, LevelState)
		pt.Scale = out.Scale
		if err := e.ecd.Encode(vals, pt); err != nil {
			return nil, fmt.Errorf("ledger: score: %w", err)
		}
		if err := e.eval.Add(out, pt, out); err != nil {
			return nil, fmt.Errorf("ledger: score: %w", err)
		}
	}
	return out, nil
}
