package consensus

import (
	"crypto/ed25519"
	"math/rand/v2"
	"testing"
)

// Lemma 1: any two sets holding more than 2/3 of the voting power intersect
// in more than 1/3 of it, so in a correct validator when byzantine power is
// below 1/3. Checked on random weighted sets with the int64 quorum math.
func TestLemma1_TwoQuorumsShareACorrectValidator(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		n := 1 + rng.IntN(12)
		vs := make([]Validator, n)
		keys, _ := testKeys(n)
		for i := range vs {
			vs[i] = Validator{PubKey: keys[i].Public().(ed25519.PublicKey), Power: 1 + rng.Int64N(1<<40)}
		}
		set, err := NewValidatorSet(vs)
		if err != nil {
			t.Fatal(err)
		}
		var a, b, both int64
		for i := range n {
			inA, inB := rng.IntN(4) > 0, rng.IntN(4) > 0
			p := set.Power(i)
			if inA {
				a += p
			}
			if inB {
				b += p
			}
			if inA && inB {
				both += p
			}
		}
		if set.IsQuorum(a) && set.IsQuorum(b) && !set.IsOneThird(both) {
			t.Fatalf("quorums %d and %d of %d share only %d", a, b, set.TotalPower(), both)
		}
	}
}

// Lemma 2: a correct validator locked on v in round r0 prevotes in later
// rounds only v or nil, unless it sees a proof-of-lock for another value in
// a round >= its lockedRound (line 28). Random later rounds with random
// proposals and stale proofs-of-lock must never draw a prevote for Y.
func TestLemma2_LockedValidatorPrevotesOnlyItsValueOrNil(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 200 {
		h := newHarness(t, 4, 3)
		h.start(1, nil, nil)
		h.nextRound(0, 1, 2)
		h.lockOn(valX, 0, 1, 2) // locked X in round 1
		h.votes(Prevote, 0, valY, 0, 1, 2)
		for range 4 {
			h.nextRound(0, 1, 2)
			r := h.m.round
			var p *Proposal
			switch rng.IntN(3) {
			case 0:
				p = h.proposal(int(r)%4, r, NoRound, valY)
			case 1:
				p = h.proposal(int(r)%4, r, 0, valY) // proof-of-lock in round 0 < lockedRound 1
			default:
				p = h.proposal(int(r)%4, r, NoRound, valX)
			}
			if int(r)%4 != 3 {
				h.mustStep(p)
			}
		}
		for _, v := range h.ownVotes(Prevote) {
			if v.Round > 1 && v.BlockID == HashValue(valY) {
				t.Fatalf("trial %d: locked on X, prevoted Y in round %d", trial, v.Round)
			}
		}
		if st := h.m.State(); st.LockedID != HashValue(valX) || st.LockedRound != 1 {
			t.Fatalf("trial %d: lock moved: %+v", trial, st)
		}
	}
}
