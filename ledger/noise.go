package ledger

import (
	"math"
	"math/big"

	"github.com/tuneinsight/lattigo/v5/ring"
)

// Noise budget of shard states.
//
// A shard state is only ever added to: ApplyDelta adds a credit delta or
// subtracts a debit delta, and nothing multiplies, rotates or rescales the
// state itself. Every delta is computed by Apply from the batch's honestly
// encrypted uploads, never from the state, so its noise does not depend on
// the state's and state noise grows additively: after K deltas its standard
// deviation is at most sigma_fresh + K*sigma_op (every delta carrying the
// same noise polynomial, the worst case), and about sqrt(K)*sigma_op when
// the deltas' noises are independent (distinct ciphertexts). Noise belongs to
// the whole state ciphertext, not to a lane: K counts every delta applied to
// the shard (a debit of any of its lanes, a credit into any of them), at
// most 1 + #shards per block.
//
// All figures are standard deviations per coefficient, in Lattigo's BGV
// (MSB) domain c0 + c1*s = T^-1*[m]_T + e (mod Q_l), where the flooding's
// NoiseBound and checkNoiseBound live. Heuristic (average-case)
// assumptions, the usual ones for RLWE noise: noise coefficients behave as independent zero-mean variables, the
// collective secret is the sum of n ternary secrets (Var(s) = n*2/3), key
// errors are sums of n Gaussians (sigma 3.2), plaintext masks have
// coefficients uniform in [0, T) (Lattigo lifts them uncentred: second moment
// T^2/3), and the images of one polynomial under the 5 recomposition
// automorphisms are uncorrelated.
//
//	rounding  r   = sqrt((1 + N*Var(s))/12)            rescale / ModDown of (c0, c1)
//	key switch ks = sqrt(N*n*3.2^2*sum_d Q_d^2/(12 P^2) + r^2)   digits Q_d of 2 primes
//	debit, credit =  r                                  fresh encryptions masked and
//	                                                    rescaled to LevelState
//	decrypted     e  = sqrt(r^2 + N*T^2/(3*q_2^2) * (32*(sigma_S^2 + 2r^2) + 62*ks^2))
//
// The last line is every ciphertext the committee decrypts or re-encrypts that
// reads the state (the balance-equation check, a balance query): the state
// is recomposed (32 rotated copies, 5 key switches), multiplied by a mask
// (rho or a one-slot indicator) and rescaled by q_2 ~ 2^58. The mask costs
// sqrt(N)*T/sqrt(3) ~ 2^46.2, recomposition sqrt(32), and the rescale gives
// back 2^58: one unit of state noise becomes 2^-9.3 at LevelDecrypt. With a tail factor
// tau = sqrt(2 ln(2N*2^lambda)) ~ 8.7 (all N coefficients, failure 2^-lambda),
// the infinity norm is at most tau*e.
//
// Measured for zkb128, 3-of-4 (TestLaneDecryptsExactlyAfter100000Credits,
// which checks every figure against the model): r = 2^5.9 (fresh state,
// debit, and a credit, which credit.go computes like a debit), the state
// after 10^5 identical credits 2^22.5 (model 2^22.5), its balance ciphertext
// and balance-equation check 2^12.8, max |e| 2^14.8 (bound 2^16.4).
//
// Two properties are bounded. (i) Exactness: every balance and check
// decrypts exactly while t*(D*(tau*e + 1) + L1*B) < Q_1/2, B the half-width
// of the uniform flooding (threshold.go, flooding). (ii) Flooding: B is the
// widest power of two for which (i) still holds with tau*e at NoiseBound =
// B/(2^lambda*sqrt(n)), and the smudging floods tau*e <= NoiseBound with the
// full lambda bits; past it the margin shrinks to lambda -
// log2(tau*e/NoiseBound). For zkb128 and the default committees (2-of-4,
// 3-of-4: B = 2^73, NoiseBound = 2^32) (ii) binds at about 5.1*10^9
// identical deltas, (i) at about 2^75. See MaxStateOps.

// stateNoise is the noise model above for one committee size.
type stateNoise struct {
	round    float64 // rescale / ModDown rounding
	ksState  float64 // one key switch at LevelState
	op       float64 // one state delta (a debit or a credit)
	fresh    float64 // a freshly encrypted state
	upload   float64 // the batch at LevelState (enters the balance equation)
	decGain2 float64 // N*T^2/(3*q_State^2): variance gain of mask product + rescale to LevelDecrypt
	tail     float64 // infinity norm / standard deviation over N coefficients
}

// noiseModel evaluates the model for a committee of n parties. ok is false
// if the parameters use distributions the model does not cover.
func (p *Params) noiseModel(n int) (m stateNoise, ok bool) {
	rp := p.BGV
	N := float64(rp.N())
	varS := 0.0
	switch xs := rp.Xs().(type) {
	case ring.Ternary:
		if xs.H > 0 {
			varS = float64(xs.H) / N
		} else {
			varS = xs.P
		}
	default:
		return m, false
	}
	xe, isGauss := rp.Xe().(ring.DiscreteGaussian)
	if !isGauss || rp.RingP() == nil || n < 1 {
		return m, false
	}
	varS *= float64(n)
	varE := float64(n) * xe.Sigma * xe.Sigma
	t := float64(rp.PlaintextModulus())
	q, pp := rp.Q(), rp.P()

	r2 := (1 + N*varS) / 12
	ks2 := func(level int) float64 {
		logP := 0.0
		for _, v := range pp {
			logP += math.Log2(float64(v))
		}
		sum := 0.0
		for d := 0; d <= level; d += len(pp) {
			logQd := 0.0
			for i := d; i < d+len(pp) && i <= level; i++ {
				logQd += math.Log2(float64(q[i]))
			}
			sum += math.Exp2(2*(logQd-logP)) / 12
		}
		return N*varE*sum + r2
	}
	// Mask product then rescale by q_level: variance gain N*T^2/(3*q_level^2).
	gain := func(level int) float64 { return N * t * t / (3 * float64(q[level]) * float64(q[level])) }

	// A batch is the sum of at most MaxPieces fresh encryptions (sealed.go),
	// each with rounding-sized noise; masked and rescaled to LevelChecked.
	y3 := r2 + gain(LevelUpload)*MaxPieces*r2
	// A debit or a credit (credit.go: the same shape, a sum of fresh
	// encryptions masked and rescaled) at LevelState.
	debit := r2 + y3/(float64(q[LevelChecked])*float64(q[LevelChecked]))
	lambda := float64(p.Set.SmudgingLogLambda)
	return stateNoise{
		round:    math.Sqrt(r2),
		ksState:  math.Sqrt(ks2(LevelState)),
		op:       math.Sqrt(debit),
		fresh:    math.Sqrt(r2),
		upload:   math.Sqrt(r2 + y3/(float64(q[LevelChecked])*float64(q[LevelChecked]))),
		decGain2: gain(LevelState),
		tail:     math.Sqrt(2 * (math.Log(2*N) + lambda*math.Ln2)),
	}, true
}

// stateStd is the state's noise after ops deltas: coherent is the worst case
// (identical noise, adding linearly), otherwise independent deltas.
func (m stateNoise) stateStd(ops float64, coherent bool) float64 {
	if coherent {
		return m.fresh + ops*m.op
	}
	return math.Sqrt(m.fresh*m.fresh + ops*m.op*m.op)
}

// decryptStd is the noise of a LevelDecrypt ciphertext read from a state of
// noise sigmaS (recomposed, masked, rescaled), including the upload's share
// of the balance equation.
func (m stateNoise) decryptStd(sigmaS float64) float64 {
	bits := float64(AmountBits)
	pre := bits*(sigmaS*sigmaS+2*m.upload*m.upload) + 2*(bits-1)*m.ksState*m.ksState
	return math.Sqrt(m.round*m.round + m.decGain2*pre)
}

// decryptBound bounds the infinity norm of that noise after ops deltas.
func (m stateNoise) decryptBound(ops float64, coherent bool) float64 {
	return m.tail * m.decryptStd(m.stateStd(ops, coherent))
}

// stateBudget is what MaxStateOps and FloodingMargin share.
type stateBudget struct {
	m      stateNoise
	flood  flooding
	exact  func(bound float64) bool
	lambda float64
}

func (c *Committee) stateBudget(p *Params) (stateBudget, bool) {
	m, ok := p.noiseModel(c.N)
	if !ok {
		return stateBudget{}, false
	}
	fl, err := c.smudging(p)
	if err != nil {
		return stateBudget{}, false
	}
	fits, _ := c.exactness(p)
	exact := func(bound float64) bool {
		// t * (D*(e + 1) + L1*B) < Q_1/2, as Committee.smudging checks for
		// e = NoiseBound; the state itself (at Q_2) has more room.
		if math.IsNaN(bound) || math.IsInf(bound, 0) || bound < 0 {
			return false
		}
		e, _ := new(big.Float).SetFloat64(math.Ceil(bound)).Int(nil)
		return fits(fl.LogB, e)
	}
	return stateBudget{m: m, flood: fl, exact: exact, lambda: float64(p.Set.SmudgingLogLambda)}, true
}

// MaxStateOps is the number of deltas (debits and credits, of any lane) a
// shard state can absorb, in the worst case of identical noise adding up
// linearly, while (i) every balance and check still decrypts exactly and
// (ii) the noise of every state-derived ciphertext the committee decrypts
// stays within the committee's flooding NoiseBound, so the smudging floods
// it with the full SmudgingLogLambda bits of margin. It follows the noise
// model above; 0 if the parameters or committee are outside it. (ii) is
// what binds: (i) allows 2^58 to 2^79 deltas, depending on the committee.
//
// For zkb128: 6.5*10^11 (1-of-1), 5.1*10^9 (2-of-4 and 3-of-4),
// 5.7*10^6 (3-of-7), 1.4*10^6 (5-of-7), 1.2*10^6 (16-of-16). Independent
// deltas (distinct ciphertexts, noise adding in quadrature) allow about
// 2^62 for 2-of-4. Past MaxStateOps the margin shrinks as FloodingMargin
// says (39.0 bits after 10^10 deltas for 2-of-4).
func (c *Committee) MaxStateOps(p *Params) uint64 {
	b, ok := c.stateBudget(p)
	if !ok {
		return 0
	}
	fits := func(k uint64) bool {
		e := b.m.decryptBound(float64(k), true)
		return e <= b.flood.NoiseBound && b.exact(e)
	}
	if !fits(0) {
		return 0
	}
	lo, hi := uint64(0), uint64(1)<<63 // fits(lo); hi is the answer's cap
	if fits(hi) {
		return hi
	}
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		if fits(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return lo
}

// FloodingMargin is the statistical margin, in bits, with which the
// smudging floods a state-derived ciphertext after ops deltas (worst case,
// coherent noise): SmudgingLogLambda up to MaxStateOps, then
// SmudgingLogLambda - log2(bound/NoiseBound). It is -Inf if the balances
// no longer decrypt exactly, NaN if the model does not apply.
func (c *Committee) FloodingMargin(p *Params, ops uint64) float64 {
	b, ok := c.stateBudget(p)
	if !ok {
		return math.NaN()
	}
	e := b.m.decryptBound(float64(ops), true)
	if !b.exact(e) {
		return math.Inf(-1)
	}
	return b.lambda - math.Max(0, math.Log2(e/b.flood.NoiseBound))
}
