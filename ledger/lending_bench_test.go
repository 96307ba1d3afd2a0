package ledger

import (
	"fmt"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
)

// Benchmarks behind the lending figures in docs/PERFORMANCE.md:
//
//	go test ./ledger -run '^$' -bench 'Score|Repaid|DecisionCheck' -benchtime 5x -count 5

// benchPlanes returns a shard's available and repaid planes with every lane
// set.
func benchPlanes(b *testing.B, nw *net) (avail, repaid *rlwe.Ciphertext) {
	a, r := map[int]uint64{}, map[int]uint64{}
	for l := 0; l < nw.p.Lanes; l++ {
		a[l], r[l] = 1_000_000+uint64(l), uint64(l)*10
	}
	avail, err := nw.eng.trivialState(a)
	if err != nil {
		b.Fatal(err)
	}
	if repaid, err = nw.eng.trivialState(r); err != nil {
		b.Fatal(err)
	}
	return avail, repaid
}

// benchScore is what Book.ScoreAt computes for one shard.
func benchScore(b *testing.B, nw *net, avail, repaid *rlwe.Ciphertext) *rlwe.Ciphertext {
	ra, err := nw.eng.Recompose(avail)
	if err != nil {
		b.Fatal(err)
	}
	rr, err := nw.eng.Recompose(repaid)
	if err != nil {
		b.Fatal(err)
	}
	base := map[int]uint64{}
	for l := 0; l < nw.p.Lanes; l++ {
		base[l] = DefaultScoreParams.PublicPart(0)
	}
	sc, err := nw.eng.LinearScore([]ScoreTerm{{Plane: ra, Weight: DefaultScoreParams.Avail}, {Plane: rr, Weight: DefaultScoreParams.Repaid}}, base)
	if err != nil {
		b.Fatal(err)
	}
	return sc
}

// BenchmarkScoreShard is a shard's 256 scores at one height (two
// recompositions and the weighted sum): what a validator computes once per
// shard and height that is queried or checked.
func BenchmarkScoreShard(b *testing.B) {
	nw := testNet(b, 4, 2)
	avail, repaid := benchPlanes(b, nw)
	for b.Loop() {
		benchScore(b, nw, avail, repaid)
	}
}

// BenchmarkScoreQuery is one score query end to end, the shard's scores
// already computed: each of t+f validators masks the lane and makes its
// re-encryption share; the requester combines and decrypts.
func BenchmarkScoreQuery(b *testing.B) {
	nw := testNet(b, 4, 2)
	avail, repaid := benchPlanes(b, nw)
	sc := benchScore(b, nw, avail, repaid)
	a := newAccount(b, nw.p, 5)
	want := DefaultScoreParams.Score(1_000_005, 50, 0)
	for b.Loop() {
		ct, err := nw.eng.BalanceFromRecomposed(sc, 5)
		if err != nil {
			b.Fatal(err)
		}
		var shares []*ReencShare
		for v := 0; v < 3; v++ {
			s, err := nw.dec.ReencShare(nw.shares[v], ct, a.own.PK)
			if err != nil {
				b.Fatal(err)
			}
			shares = append(shares, s)
		}
		out, err := nw.dec.CombineReenc(ct, shares[:2])
		if err != nil {
			b.Fatal(err)
		}
		if got, _ := nw.p.DecryptBalance(a.own, out, 5); got != want {
			b.Fatalf("score %d, want %d", got, want)
		}
	}
}

// BenchmarkRepaidUpdate is the extra work repayments add to applying a
// payment batch of 256: the debit of just the on-time repayments' lanes
// (one more isolation and two rescales), added to the repaid plane.
func BenchmarkRepaidUpdate(b *testing.B) {
	nw, ev := benchEval(b)
	for _, n := range []int{1, 256} {
		b.Run(fmt.Sprintf("repayments=%d", n), func(b *testing.B) {
			v := map[int]Reason{}
			for _, l := range ev.Lanes[:n] {
				v[l] = Accepted
			}
			z, err := nw.eng.trivialState(nil)
			if err != nil {
				b.Fatal(err)
			}
			for b.Loop() {
				d, err := nw.eng.Debit(ev, v)
				if err != nil {
					b.Fatal(err)
				}
				if _, err := nw.eng.ApplyDelta(z, d, +1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecisionCheck evaluates a batch of 256 score checks against the
// shard's scores (computed once per height and shard, included here): the
// same circuit as a payment batch with row 0 fixed.
func BenchmarkDecisionCheck(b *testing.B) {
	if benchBundle == nil {
		benchBundle = makeBench(b, true)
	}
	nw := benchBundle.nw
	avail, repaid := benchPlanes(b, nw)
	items := make([]Item, len(benchBundle.items))
	for i, it := range benchBundle.items {
		fixed := map[int]bool{}
		for _, l := range it.Lanes {
			fixed[l] = true
		}
		items[i] = Item{CT: it.CT, Lanes: it.Lanes, Fixed: fixed}
	}
	for b.Loop() {
		sc := benchScore(b, nw, avail, repaid)
		if _, err := nw.eng.EvaluateMixed(items, func(int) (*rlwe.Ciphertext, error) { return sc, nil }, []byte("bench")); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(benchBundle.lanes)*b.N)/b.Elapsed().Seconds(), "checks/s")
}
