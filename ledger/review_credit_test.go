package ledger

import (
	"crypto/rand"
	"errors"
	"math"
	mrand "math/rand/v2"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
)

// Review of "credits from pieces" (credit.go): attacks on the layout, the
// piece arithmetic, the masking of CreditDeltas, seed separation and the
// noise claim of noise.go, at the ledger level.

// reviewSplit splits slot values into n additive pieces mod t (piece 0
// carries the remainder, as a Dealer's explicit piece does).
func reviewSplit(t testing.TB, p *Params, vals []uint64, n int, rng *mrand.Rand) []*Piece {
	t.Helper()
	tm := p.BGV.PlaintextModulus()
	out := make([]*Piece, n)
	rest := append([]uint64(nil), vals...)
	for k := n - 1; k >= 0; k-- {
		pc := &Piece{Values: make([]uint64, SlotValues)}
		if _, err := rand.Read(pc.Seed[:]); err != nil {
			t.Fatal(err)
		}
		for j := range pc.Values {
			if k == 0 {
				pc.Values[j] = rest[j] % tm
				continue
			}
			pc.Values[j] = rng.Uint64N(tm)
			rest[j] = (rest[j] + tm - pc.Values[j]) % tm
		}
		out[k] = pc
	}
	return out
}

// Many payers to one lane, receivers of two shards sharing a lane, and
// more than 32 credits to a lane: every credit of a group gets its own
// (layer, row-0 slot), indexes stay below Bits, a lane's 33rd credit opens
// a second layer, and lanes are counted across shards (a lane's slot is
// never given twice, whatever shard its receiver is in).
func TestReviewCredit_LayoutNeverSharesASlot(t *testing.T) {
	p := MustParams(ZKB128)
	rng := mrand.New(mrand.NewPCG(1, 2))
	for trial := 0; trial < 200; trial++ {
		n := 1 + rng.IntN(256)
		lanes := make([]int, n)
		hot := rng.IntN(p.Lanes)
		for i := range lanes {
			if rng.IntN(3) > 0 {
				lanes[i] = hot // concentration: many payers, one receiving lane (of any shard)
			} else {
				lanes[i] = rng.IntN(p.Lanes)
			}
		}
		layer, index, extra := p.CreditLayout(lanes, nil)
		layers := extra + 1 // with no senders given, layer 0 is a ciphertext of its own
		type at struct{ layer, slot int }
		used := map[at]bool{}
		count := map[int]int{}
		maxPer := 0
		for i, l := range lanes {
			if index[i] < 0 || index[i] >= p.Bits || layer[i] < 0 || layer[i] >= layers {
				t.Fatalf("credit %d: layer %d index %d of %d layers", i, layer[i], index[i], layers)
			}
			a := at{layer[i], p.Slot(0, index[i], l)}
			if used[a] {
				t.Fatalf("trial %d: two credits at layer %d slot %d", trial, a.layer, a.slot)
			}
			used[a] = true
			count[l]++
			maxPer = max(maxPer, count[l])
		}
		if want := (maxPer + p.Bits - 1) / p.Bits; layers != want {
			t.Fatalf("trial %d: %d layers for %d credits to one lane, want %d", trial, layers, maxPer, want)
		}
	}
}

// A credit piece is the piece's sum of its row-0 values: over all pieces
// it is the sum of the 32 amount slots, which is the amount for an honest
// wallet and, for a forged one, exactly the sum the debit removes from the
// sender's row 0 (so conservation holds even for values the checks reject).
// Row 1 (the new balance) never reaches a credit.
func TestReviewCredit_PiecesSumToTheDebitedRowZero(t *testing.T) {
	p := MustParams(ZKB128)
	tm := p.BGV.PlaintextModulus()
	rng := mrand.New(mrand.NewPCG(3, 4))
	for trial := 0; trial < 100; trial++ {
		amount, nb := rng.Uint64N(1<<32), rng.Uint64N(1<<32)
		vals := TransferValues(amount, nb)
		if trial%2 == 1 { // forged slots: arbitrary values mod t
			for j := range vals {
				vals[j] = rng.Uint64N(tm)
			}
		}
		var row0 uint64
		for j := 0; j < p.Bits; j++ {
			row0 = (row0 + vals[j]) % tm
		}
		var got uint64
		for _, pc := range reviewSplit(t, p, vals, 1+rng.IntN(MaxPieces), rng) {
			got = (got + p.CreditValue(pc)) % tm
		}
		if got != row0 {
			t.Fatalf("trial %d: credit pieces sum to %d, row 0 sums to %d", trial, got, row0)
		}
		if trial%2 == 0 && got != amount {
			t.Fatalf("trial %d: honest credit %d, amount %d", trial, got, amount)
		}
	}
}

// The credit seed is domain-separated from the batch seed with the same
// inputs, and changes with the part, the piece, the height and the place
// of any credit: no two ciphertexts of a block share randomness.
func TestReviewCredit_SeedsNeverRepeat(t *testing.T) {
	pc := &Piece{Values: make([]uint64, SlotValues)}
	pc.Seed[0] = 7
	base := []LaneCredit{{Lane: 3, Index: 0, Piece: pc}}
	s := CreditBatchSeed("c", 5, 2, 1, base)
	if b := PieceBatchSeed("c", 5, 2, 1, []LanePiece{{Lane: 3, Piece: pc}}); b == s {
		t.Fatal("credit and batch seeds coincide")
	}
	for name, o := range map[string][32]byte{
		"part":   CreditBatchSeed("c", 5, 3, 1, base),
		"piece":  CreditBatchSeed("c", 5, 2, 2, base),
		"height": CreditBatchSeed("c", 6, 2, 1, base),
		"chain":  CreditBatchSeed("d", 5, 2, 1, base),
		"index":  CreditBatchSeed("c", 5, 2, 1, []LaneCredit{{Lane: 3, Index: 1, Piece: pc}}),
		"lane":   CreditBatchSeed("c", 5, 2, 1, []LaneCredit{{Lane: 4, Index: 0, Piece: pc}}),
	} {
		if o == s {
			t.Fatalf("changing the %s does not change the seed", name)
		}
	}
}

// A group of 42 payments into lane 7 (36 to shard 0, 6 to shard 1, so the
// lane spills into a second layer), 3 into lane 9 of shard 1, and 30 more
// groups of one payment each into lane 7 of shard 0, every credit encrypted
// piece by piece as its holders do and decided as the sum of the pieces;
// two payments are rejected. Each receiving shard's delta holds exactly the
// accepted amounts in its receivers' lanes (the rejected ones and the other
// shard's credits masked away, nothing anywhere else), and its noise, after
// masking and accumulating 32 credit ciphertexts, is still one delta's noise
// of the model (noise.go).
func TestReviewCredit_DeltasLandExactlyAndWithinTheNoiseModel(t *testing.T) {
	nw := testNet(t, 4, 3)
	p, eng := nw.p, nw.eng.Clone()
	sk := collectiveSecret(t, nw)
	sh, err := NewSharing(4, 1)
	if err != nil {
		t.Fatal(err)
	}
	rng := mrand.New(mrand.NewPCG(5, 6))
	type pay struct {
		source int
		shard  uint32
		lane   int
		amount uint64
		ok     bool
	}
	var groups [][]pay
	var g0 []pay
	for i := 0; i < 45; i++ {
		py := pay{source: i, amount: rng.Uint64N(1 << 20), ok: i != 3 && i != 40}
		switch {
		case i < 36:
			py.shard, py.lane = 0, 7
		case i < 42:
			py.shard, py.lane = 1, 7
		default:
			py.shard, py.lane = 1, 9
		}
		g0 = append(g0, py)
	}
	groups = append(groups, g0)
	for i := 0; i < 30; i++ {
		groups = append(groups, []pay{{source: 100 + i, shard: 0, lane: 7, amount: rng.Uint64N(1 << 20), ok: true}})
	}
	want := map[uint32]map[int]uint64{0: {}, 1: {}}
	var credits []Credit
	part := uint32(len(groups))
	cts := 0
	for _, g := range groups {
		lanes := make([]int, len(g))
		pieces := make([][]*Piece, len(g))
		for i, py := range g {
			lanes[i] = py.lane
			pieces[i] = reviewSplit(t, p, TransferValues(py.amount, 0), sh.Pieces(), rng)
		}
		layer, index, extra := p.CreditLayout(lanes, nil)
		layers := extra + 1 // with no senders given, layer 0 is a ciphertext of its own
		layerCT := make([]*rlwe.Ciphertext, layers)
		for l := range layerCT {
			var per []*rlwe.Ciphertext
			for k := 0; k < sh.Pieces(); k++ {
				var lcs []LaneCredit
				for i := range g {
					if layer[i] == l {
						lcs = append(lcs, LaneCredit{Lane: lanes[i], Index: index[i], Piece: pieces[i][k]})
					}
				}
				ct, err := p.EncryptCreditBatch(nw.keys.PK, lcs, CreditBatchSeed("review", 9, part, k, lcs))
				if err != nil {
					t.Fatal(err)
				}
				per = append(per, ct)
			}
			part++
			if layerCT[l], err = p.SumPieces(per); err != nil {
				t.Fatal(err)
			}
			cts++
		}
		for i, py := range g {
			if !py.ok {
				continue // Commit passes only accepted credits
			}
			slot := p.Slot(0, index[i], py.lane)
			credits = append(credits, Credit{SourceLane: py.source, TargetShard: py.shard, CT: layerCT[layer[i]], Slot: slot})
			want[py.shard][slot] += py.amount
		}
	}
	deltas, err := eng.CreditDeltas(credits)
	if err != nil {
		t.Fatal(err)
	}
	if len(deltas) != 2 {
		t.Fatalf("%d receiving shards, want 2", len(deltas))
	}
	m, ok := p.noiseModel(nw.com.N)
	if !ok {
		t.Fatal("no noise model")
	}
	dec := rlwe.NewDecryptor(p.BGV, sk)
	ecd := newEncoder(p)
	for s, d := range deltas {
		if d.Level() != LevelState {
			t.Fatalf("shard %d: delta at level %d", s, d.Level())
		}
		vals := make([]uint64, p.Slots)
		if err := ecd.Decode(dec.DecryptNew(d), vals); err != nil {
			t.Fatal(err)
		}
		for slot, v := range vals {
			if v != want[s][slot] {
				t.Fatalf("shard %d slot %d (row 0 index %d lane %d): %d, want %d", s, slot, slot/p.Lanes, slot%p.Lanes, v, want[s][slot])
			}
		}
		n := measureNoise(t, p, sk, d)
		t.Logf("shard %d credit delta from %d credit ciphertexts: max |e| 2^%.1f std 2^%.1f (model one delta 2^%.1f, bound 2^%.1f)", s, cts, n.Max, n.Std, math.Log2(m.op), math.Log2(m.tail*m.op))
		if n.Std > math.Log2(m.op)+0.5 || n.Max > math.Log2(m.tail*m.op) {
			t.Fatalf("shard %d: credit delta noise std 2^%.2f max 2^%.2f exceeds one delta of the model (2^%.2f, bound 2^%.2f)", s, n.Std, n.Max, math.Log2(m.op), math.Log2(m.tail*m.op))
		}
	}
}

// Two accepted credits naming one slot of one credit ciphertext would be a
// double credit: CreditDeltas refuses (a layout never produces one: see
// TestReviewCredit_LayoutNeverSharesASlot), and it refuses a credit outside
// row 0 or at the wrong level.
func TestReviewCredit_DeltasRefuseDoubleSlotsAndBadShapes(t *testing.T) {
	nw := testNet(t, 4, 3)
	p, eng := nw.p, nw.eng.Clone()
	b := newBuilder(p, nw.keys.PK, "review")
	c := b.credit(t, 1, 0, 5, 10)
	for name, cs := range map[string][]Credit{
		"same slot twice": {c, {SourceLane: 2, TargetShard: 0, CT: c.CT, Slot: c.Slot}},
		"row 1":           {{SourceLane: 1, TargetShard: 0, CT: c.CT, Slot: p.Slot(1, 0, 5)}},
		"no ciphertext":   {{SourceLane: 1, TargetShard: 0, Slot: c.Slot}},
		"negative slot":   {{SourceLane: 1, TargetShard: 0, CT: c.CT, Slot: -1}},
	} {
		if _, err := eng.CreditDeltas(cs); !errors.Is(err, ErrBatch) {
			t.Fatalf("%s: %v, want ErrBatch", name, err)
		}
	}
	// The same slot of one ciphertext for two receiving shards is two
	// receivers sharing a lane and an index: CreditLayout never does it,
	// and CreditDeltas would credit both (documenting the trust it places
	// in the layout).
	if _, err := eng.CreditDeltas([]Credit{c, {SourceLane: 2, TargetShard: 1, CT: c.CT, Slot: c.Slot}}); err != nil {
		t.Logf("same slot in two shards refused: %v", err)
	} else {
		t.Logf("same slot in two shards accepted (the layout must keep indexes per lane across shards, which it does)")
	}
}
