package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
)

// Robust threshold decisions.
//
// Shares are subset-independent (threshold.go): any t of them decrypt. With
// at most f byzantine validators, a result is decided only by a set V of at
// least t+f validators every t-subset of which decrypts to that same result.
// V then holds at least t honest validators, so one of its t-subsets is all
// honest and the result is the true one, whatever the byzantine shares were,
// even shares crafted after seeing all the others (a rushing validator): a
// crafted share can only spoil the subsets it is in, which then disagree.
// Liveness needs t+f honest shares: with N = 3f+1 that holds for any
// t <= f+1 when all honest validators answer, and for t = f+1 even with f of
// them down. A larger t buys privacy against more colluders at the price of
// robustness (t = 2f+1 needs all N shares to agree). Deterministic: the same
// shares always give the same decision.

// ErrNoAgreement reports shares among which no t+f validators agree: at
// least one share is wrong and too few others arrived to outvote it. It is a
// liveness failure (nothing is decided), never a wrong decision.
var ErrNoAgreement = errors.New("ledger: no t+f validators agree")

// F is how many byzantine validators the committee tolerates: floor((N-1)/3).
func (c *Committee) F() int { return (c.N - 1) / 3 }

// Agreement is how many validators must agree on a decryption: T + F.
func (c *Committee) Agreement() int { return c.T + c.F() }

// agreement is the outcome of agree.
type agreement struct {
	key    string // the agreed result
	agreed []int  // validators consistent with it (ascending): the deciding set and those that agree with its first t-1
	faulty []int  // validators whose share, combined with any t-1 of the deciding set, gives another result
}

// agree finds the lexicographically first set V of exactly need validators
// among ids whose t-subsets all evaluate to one result, and decides that
// result (any such V is safe: see the top of this file; the smallest size
// keeps the honest case to C(need, t) evaluations). Every other validator is
// then classed by one more evaluation: combined with the first t-1 members of
// V, it agrees (and counts as agreeing) or not (faulty). eval returns a
// result key, or ok = false for a combination that does not decrypt
// consistently. Results are cached per subset, so even when nothing agrees at
// most C(len(ids), t) evaluations run.
func agree(ids []int, t, need int, eval func(sub []int) (string, bool)) (agreement, error) {
	ids = append([]int(nil), ids...)
	sort.Ints(ids)
	for i := 1; i < len(ids); i++ {
		if ids[i] == ids[i-1] {
			return agreement{}, fmt.Errorf("%w: validator %d twice", ErrShare, ids[i])
		}
	}
	if t < 1 || need < t {
		return agreement{}, fmt.Errorf("%w: agreement of %d with threshold %d", ErrShare, need, t)
	}
	type res struct {
		key string
		ok  bool
	}
	cache := map[string]res{}
	get := func(sub []int) res {
		k := subsetKey(sub)
		if r, ok := cache[k]; ok {
			return r
		}
		key, ok := eval(append([]int(nil), sub...))
		r := res{key, ok}
		cache[k] = r
		return r
	}
	var (
		found bool
		key   string
		set   []int
	)
	Subsets(len(ids), need, func(pos []int) {
		if found {
			return
		}
		cand := make([]int, need)
		for i, p := range pos {
			cand[i] = ids[p]
		}
		var k string
		consistent, first := true, true
		Subsets(need, t, func(sp []int) {
			if !consistent {
				return
			}
			sub := make([]int, t)
			for i, p := range sp {
				sub[i] = cand[p]
			}
			r := get(sub)
			switch {
			case !r.ok:
				consistent = false
			case first:
				k, first = r.key, false
			case r.key != k:
				consistent = false
			}
		})
		if consistent && !first {
			found, key, set = true, k, cand
		}
	})
	if !found {
		return agreement{}, fmt.Errorf("%w: %d shares (need %d in agreement)", ErrNoAgreement, len(ids), need)
	}
	out := agreement{key: key}
	in := map[int]bool{}
	for _, v := range set {
		in[v] = true
	}
	for _, v := range ids {
		if in[v] {
			out.agreed = append(out.agreed, v)
			continue
		}
		// v agrees if it does with the first t-1 members of V (one
		// combination, the honest case). It is named faulty only if it
		// disagrees with every t-1 members of V: V holds t honest validators,
		// so some t-1 of them are honest, and disagreeing with them is proof.
		// A mixed result (a byzantine member of V crafted its share against v)
		// names nobody and credits nobody.
		if r := get(sortedWith(set[:t-1], v)); r.ok && r.key == key {
			out.agreed = append(out.agreed, v)
			continue
		}
		agreesWithSome := false
		Subsets(len(set), t-1, func(pos []int) {
			if agreesWithSome {
				return
			}
			sub := make([]int, 0, t)
			for _, p := range pos {
				sub = append(sub, set[p])
			}
			if r := get(sortedWith(sub, v)); r.ok && r.key == key {
				agreesWithSome = true
			}
		})
		if !agreesWithSome {
			out.faulty = append(out.faulty, v)
		}
	}
	return out, nil
}

// sortedWith returns sub plus v, ascending, in a new slice.
func sortedWith(sub []int, v int) []int {
	out := append(append(make([]int, 0, len(sub)+1), sub...), v)
	sort.Ints(out)
	return out
}

func subsetKey(sub []int) string {
	b := make([]byte, 0, 2*len(sub))
	for _, v := range sub {
		b = binary.BigEndian.AppendUint16(b, uint16(v))
	}
	return string(b)
}

// CheckShares is one validator's decryption shares of a batch's two check
// ciphertexts.
type CheckShares struct {
	Bits, Eq *DecShare
}

// Decision is a robustly decided batch.
type Decision struct {
	Verdicts map[int]Reason // by lane
	// Agreed are the validators whose shares decrypt to Verdicts: a set of
	// T+F every t-subset of which does, and the others that agree with it.
	Agreed []int
	// Faulty are validators whose shares, combined with any T-1 of the
	// deciding set, decrypt to something else: they sent wrong shares.
	Faulty []int
}

// DecideChecks decides a batch's verdicts from the check shares of the
// validators that sent them (map key: validator index; each share must be
// attributed to that validator). It needs T+F validators whose shares agree
// in every t-subset (see the comment at the top of this file); otherwise it
// returns ErrNoAgreement and the caller fails the batch closed.
func (d *Decryptor) DecideChecks(ev *Evaluation, shares map[int]CheckShares) (*Decision, error) {
	ids := make([]int, 0, len(shares))
	for v, s := range shares {
		if v < 0 || v >= d.com.N || s.Bits == nil || s.Eq == nil || s.Bits.Validator != v || s.Eq.Validator != v {
			return nil, fmt.Errorf("%w: check shares filed under validator %d", ErrShare, v)
		}
		ids = append(ids, v)
	}
	verdicts := map[string]map[int]Reason{}
	// Subsets are compared on the decrypted check values themselves, not on
	// the verdicts they imply: every honest t-subset decrypts exactly the
	// same values, while a crafted share that only scales them (keeping
	// which slots are zero, hence the verdicts) still disagrees and is named.
	ag, err := agree(ids, d.com.T, d.com.Agreement(), func(sub []int) (string, bool) {
		bs, es := make([]*DecShare, len(sub)), make([]*DecShare, len(sub))
		for i, v := range sub {
			bs[i], es[i] = shares[v].Bits, shares[v].Eq
		}
		bits, err := d.Combine(ev.Checks.Bits, bs)
		if err != nil {
			return "", false
		}
		eq, err := d.Combine(ev.Checks.Eq, es)
		if err != nil {
			return "", false
		}
		v, err := d.p.Verdicts(ev.Lanes, ev.Subs, bits, eq)
		if err != nil {
			return "", false
		}
		buf := make([]byte, 0, 8*(len(bits)+len(eq)))
		for _, x := range [][]uint64{bits, eq} {
			for _, y := range x {
				buf = binary.BigEndian.AppendUint64(buf, y)
			}
		}
		sum := sha256.Sum256(buf)
		k := string(sum[:])
		verdicts[k] = v
		return k, true
	})
	if err != nil {
		return nil, err
	}
	return &Decision{Verdicts: verdicts[ag.key], Agreed: ag.agreed, Faulty: ag.faulty}, nil
}
