package ledger

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/zkbank/zkbank/internal/wire"
)

// Review of pay-many (one upload paying 2..32 payees): attacks by a
// malicious client, possibly with byzantine validators, against money,
// secrets, determinism and liveness.

// reviewWorld is a pay world whose genesis places the named accounts at
// the given global indexes (shard = index / Lanes, lane = index % Lanes);
// every other index up to the largest is an unnamed, empty account.
func reviewWorld(t testing.TB, at map[string]int, balances map[string]uint64) *payWorld {
	t.Helper()
	nw := testNet(t, 4, 3)
	w := &world{nw: nw, b: newBuilder(nw.p, nw.keys.PK, "test"), acct: map[string]*account{}}
	top := 0
	byIndex := map[int]string{}
	for n, i := range at {
		byIndex[i] = n
		top = max(top, i)
	}
	var gen []GenesisAccount
	for i := 0; i <= top; i++ {
		if n, ok := byIndex[i]; ok {
			gen = append(gen, w.named(t, n, i%nw.p.Lanes, KindDeposit, balances[n]))
			continue
		}
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		gen = append(gen, GenesisAccount{SignPub: pub})
	}
	w.open(t, gen)
	return payWorldOf(t, w)
}

// A pay-many whose payees live in another shard, at lane numbers equal to
// the lanes lent to it (and to another payment's receiver), beside a single
// payment whose receiver's lane is free (a layer-0 credit): every credit
// lands exactly once in the right shard, the accounts owning the lent lanes
// in the payer's shard are untouched, and the payer loses exactly the total.
func TestReviewPayMany_CrossShardPayeesAtLentLaneNumbers(t *testing.T) {
	L := 256
	at := map[string]int{"alice": 0, "dave": 1, "own50": 50, "own51": 51, "zed50": L + 50, "yan51": L + 51, "xav60": L + 60}
	w := reviewWorld(t, at, map[string]uint64{"alice": 1000, "dave": 300, "own50": 7, "own51": 9, "zed50": 3})
	if w.nw.p.Lanes != L {
		t.Skipf("lanes = %d", w.nw.p.Lanes)
	}
	s := w.many("alice", 1000, map[string]uint64{"zed50": 100, "yan51": 200, "own51": 5}, "zed50", "yan51", "own51")
	pay := w.build(t, s)
	single := w.build(t, w.spec("dave", "xav60", 30, 300))
	res := w.block(t, paySub{sub: pay, subs: []int{50, 51, 52}}, paySub{sub: single})
	for _, s := range []*Submission{pay, single} {
		if r := res[s.Envelopes[0].ID()]; r != Accepted {
			t.Fatalf("%x: %v", s.Envelopes[0].ID(), r)
		}
	}
	w.expectSplit(t, map[string][2]uint64{
		"alice": {695, 0}, "dave": {270, 0},
		"own50": {7, 0}, "own51": {9, 5},
		"zed50": {3, 100}, "yan51": {0, 200}, "xav60": {0, 30},
	})
}

// The Debit recompute path (some lanes rejected): an honest pay-many, a
// pay-many with one non-boolean payee slot, an overdrawn pay-many and an
// honest single payment share one group. Only the honest ones move money;
// the rejected pay-manys move nothing, neither from the payer nor to any
// payee, and nothing is taken from the lent lanes' owners.
func TestReviewPayMany_DebitRecomputeWithRejectedPayMany(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"alice": 100, "mal": 100, "eve": 50, "erin": 40, "bob": 1, "carol": 2, "own": 11},
		"alice", "mal", "eve", "erin", "bob", "carol", "own")
	own, _ := w.book.Account(w.acct["own"].id)
	honest := w.build(t, w.many("alice", 100, map[string]uint64{"bob": 10, "carol": 20}, "bob", "carol"))

	// mal: amounts 30 to bob and 40 to carol, but bob's slot 3 holds 3
	// (not 0 or 8): the totals still balance as integers (3 + 40 + 57 = 100).
	ms := w.many("mal", 100, map[string]uint64{"bob": 0, "carol": 0}, "bob", "carol")
	mv := ManyValues([]uint64{0, 40}, 57)
	mv[SlotValues+3] = 3
	bad, err := w.dealer.BuildValues(ms, mv)
	if err != nil {
		t.Fatal(err)
	}
	// eve overdraws with well-formed bits: 40 + 40 from 50.
	es := w.many("eve", 50, map[string]uint64{"bob": 40, "carol": 40}, "bob", "carol")
	over, err := w.dealer.BuildValues(es, ManyValues([]uint64{40, 40}, (50-80)&MaxAmount))
	if err != nil {
		t.Fatal(err)
	}
	single := w.build(t, w.spec("erin", "own", 15, 40))
	res := w.block(t,
		paySub{sub: honest, subs: []int{200, 201}},
		paySub{sub: bad, subs: []int{own.Lane, 203}},
		paySub{sub: over, subs: []int{204, 205}},
		paySub{sub: single})
	want := map[*Submission]Reason{honest: Accepted, bad: RejectAmountRange, over: RejectBalanceMismatch, single: Accepted}
	for s, r := range want {
		if got := res[s.Envelopes[0].ID()]; got != r {
			t.Errorf("%x: %v, want %v", s.Envelopes[0].ID(), got, r)
		}
	}
	w.expectSplit(t, map[string][2]uint64{
		"alice": {70, 0}, "mal": {100, 0}, "eve": {50, 0}, "erin": {25, 0},
		"bob": {1, 10}, "carol": {2, 20}, "own": {11, 15},
	})
}

// Values the dealer writes where holders never read (the payer's row 0,
// each payee block's row 1) change nothing: the payee gets exactly its
// row-0 amount, the payer loses exactly the total.
func TestReviewPayMany_IgnoredSlotsCannotMintOrSteal(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"alice": 100, "bob": 0, "carol": 0}, "alice", "bob", "carol")
	s := w.many("alice", 100, map[string]uint64{"bob": 10, "carol": 20}, "bob", "carol")
	tm := w.nw.p.BGV.PlaintextModulus()
	vals := ManyValues([]uint64{10, 20}, 70)
	for j := 0; j < AmountBits; j++ {
		vals[SlotValues+AmountBits+j] = tm - 1000 // bob's row 1: "-1000" scratch
		vals[2*SlotValues+AmountBits+j] = 1 << 20 // carol's row 1
		vals[j] = tm - 1                          // payer's row 0
	}
	sub, err := w.dealer.BuildValues(s, vals)
	if err != nil {
		t.Fatal(err)
	}
	if r := w.block(t, paySub{sub: sub, subs: []int{60, 61}})[sub.Envelopes[0].ID()]; r != Accepted {
		t.Fatalf("%v", r)
	}
	w.expectSplit(t, map[string][2]uint64{"alice": {70, 0}, "bob": {0, 10}, "carol": {0, 20}})
}

// Largest legal pay-many: 32 payees of MaxAmount each can never be
// afforded (balance < 2^32), and forging new-balance bits so that
// total + b' wraps mod t is impossible: the equation fails.
func TestReviewPayMany_ThirtyTwoMaxPayeesCannotWrap(t *testing.T) {
	names := []string{"alice"}
	bal := map[string]uint64{"alice": MaxAmount}
	for i := 0; i < MaxPayees; i++ {
		n := string(rune('A'+i/26)) + string(rune('a'+i%26))
		names = append(names, n)
	}
	w := newPayWorld(t, bal, names...)
	pay := map[string]uint64{}
	for _, n := range names[1:] {
		pay[n] = MaxAmount
	}
	s := w.many("alice", MaxAmount, pay, names[1:]...)
	if _, err := w.dealer.Build(s); !errors.Is(err, ErrInsufficientFunds) {
		t.Fatalf("built: %v", err)
	}
	amounts := make([]uint64, MaxPayees)
	for i := range amounts {
		amounts[i] = MaxAmount
	}
	sub, err := w.dealer.BuildValues(s, ManyValues(amounts, MaxAmount))
	if err != nil {
		t.Fatal(err)
	}
	subs := make([]int, MaxPayees)
	for i := range subs {
		subs[i] = 100 + i
	}
	if r := w.block(t, paySub{sub: sub, subs: subs})[sub.Envelopes[0].ID()]; r != RejectBalanceMismatch {
		t.Fatalf("%v", r)
	}
	w.expectSplit(t, map[string][2]uint64{"alice": {MaxAmount, 0}, names[1]: {0, 0}, names[32]: {0, 0}})

	// And the honest maximum (32 payees sharing the whole balance) passes.
	for i, n := range names[1:] {
		pay[n] = 0
		if i == 0 {
			pay[n] = MaxAmount - 31
		} else {
			pay[n] = 1
		}
	}
	s = w.many("alice", MaxAmount, pay, names[1:]...)
	sub = w.build(t, s)
	if r := w.block(t, paySub{sub: sub, subs: subs})[sub.Envelopes[0].ID()]; r != Accepted {
		t.Fatalf("honest 32-payee pay-many: %v", r)
	}
	w.expectSplit(t, map[string][2]uint64{"alice": {0, 0}, names[1]: {0, MaxAmount - 31}, names[32]: {0, 1}})
}

// checkSlots runs one block like world.run, but also decrypts every
// batch's check ciphertexts with the collective secret and returns their
// slots (what the combined threshold decryption publishes).
func (w *payWorld) checkSlots(t testing.TB, pend []Pending) (bits, eq [][]uint64, evs []*Evaluation) {
	t.Helper()
	if w.sk == nil {
		w.sk = collectiveSecret(t, w.nw)
	}
	batches, _ := w.book.Plan(pend)
	dec := rlwe.NewDecryptor(w.nw.p.BGV, w.sk)
	for i, bt := range batches {
		ev, err := w.book.EvaluateBatch(w.nw.eng, bt, []byte("block"), i)
		if err != nil {
			t.Fatal(err)
		}
		d := func(ct *rlwe.Ciphertext) []uint64 {
			v := make([]uint64, w.nw.p.Slots)
			if err := newEncoder(w.nw.p).Decode(dec.DecryptNew(ct), v); err != nil {
				t.Fatal(err)
			}
			return v
		}
		bits, eq, evs = append(bits, d(ev.Checks.Bits)), append(eq, d(ev.Checks.Eq)), append(evs, ev)
	}
	return bits, eq, evs
}

// What the checks publish. For honest pay-manys every decrypted slot is 0.
// For a cheating pay-many, nonzero booleanness slots lie only in its own
// lent lanes and the equation only at its own anchor, and the equation
// (rho divided out) is its own total + b' - balance: nothing about the
// payees' balances, another pay-many's amounts, or an honest total.
func TestReviewPayMany_ChecksRevealOnlyTheCheatersOwnValues(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"alice": 100, "mal": 90, "bob": 1234, "carol": 77}, "alice", "mal", "bob", "carol")
	honest := w.build(t, w.many("alice", 100, map[string]uint64{"bob": 10, "carol": 20}, "bob", "carol"))
	ms := w.many("mal", 90, map[string]uint64{"bob": 0, "carol": 0}, "bob", "carol")
	mv := ManyValues([]uint64{5, 6}, 1) // 5 + 6 + 1 != 90
	mv[SlotValues+7] = 3                // non-boolean
	bad, err := w.dealer.BuildValues(ms, mv)
	if err != nil {
		t.Fatal(err)
	}
	pend := w.pending(t, paySub{sub: honest, subs: []int{100, 101}}, paySub{sub: bad, subs: []int{102, 103}})
	bits, eq, evs := w.checkSlots(t, pend)
	if len(evs) != 1 {
		t.Fatalf("%d batches", len(evs))
	}
	p := w.nw.p
	alice, _ := w.book.Account(w.acct["alice"].id)
	mal, _ := w.book.Account(w.acct["mal"].id)
	allowedBits := map[int]bool{102: true, 103: true, mal.Lane: true}
	for s, v := range bits[0] {
		if v != 0 && !allowedBits[s%p.Lanes] {
			t.Errorf("booleanness slot %d (lane %d) = %d: outside the cheater's lanes", s, s%p.Lanes, v)
		}
	}
	tm := p.BGV.PlaintextModulus()
	if bits[0][p.Slot(0, 7, 102)] == 0 {
		t.Error("the forged slot decrypts to 0")
	}
	for s, v := range eq[0] {
		if v != 0 && s != p.Slot(0, 0, mal.Lane) {
			t.Errorf("equation slot %d = %d", s, v)
		}
	}
	if eq[0][p.Slot(0, 0, alice.Lane)] != 0 {
		t.Error("the honest pay-many's equation is not 0")
	}
	batches, _ := w.book.Plan(pend)
	rho := w.nw.eng.rho(evs[0].Lanes, batches[0].RhoSeed([]byte("block"), 0))
	r := rho[p.Slot(0, 0, mal.Lane)]
	got := mulmod(eq[0][p.Slot(0, 0, mal.Lane)], invmod(r, tm), tm)
	// The cheater's claim: total = the sum of bob's and carol's slots.
	var total uint64
	for j := 0; j < AmountBits; j++ {
		total = (total + mv[SlotValues+j] + mv[2*SlotValues+j]) % tm
	}
	want := (total + 1 + tm - 90) % tm
	if got != want {
		t.Errorf("equation reveals %d, want the cheater's own total + b' - balance = %d", got, want)
	}
}

func mulmod(a, b, m uint64) uint64 {
	var r uint64
	a %= m
	for b > 0 {
		if b&1 == 1 {
			r = (r + a) % m
		}
		a = (a + a) % m
		b >>= 1
	}
	return r
}

func invmod(a, m uint64) uint64 {
	// m is prime: a^(m-2).
	r, e := uint64(1), m-2
	for e > 0 {
		if e&1 == 1 {
			r = mulmod(r, a, m)
		}
		a = mulmod(a, a, m)
		e >>= 1
	}
	return r
}

// Holders refuse, as a batch error and never a panic, pieces whose value
// count does not fit the lanes lent (a pay-many's piece in a single lane,
// a single payment's piece with lent lanes, one lent lane, a part beyond
// the piece).
func TestReviewPayMany_PlacementRefusesMismatchedPieces(t *testing.T) {
	nw := testNet(t, 4, 3)
	p := nw.p
	one := &Piece{Values: make([]uint64, SlotValues)}
	three := &Piece{Values: make([]uint64, ValuesFor(2))}
	for _, lp := range []LanePiece{
		{Lane: 1, Piece: three},
		{Lane: 1, Piece: one, Subs: []int{2, 3}},
		{Lane: 1, Piece: three, Subs: []int{2}},
		{Lane: 1, Piece: three, Subs: []int{2, 2}},
		{Lane: 1, Piece: three, Subs: []int{1, 2}},
		{Lane: 1, Piece: three, Subs: []int{2, p.Lanes}},
		{Lane: 1, Piece: three, Subs: []int{-1, 2}},
		{Lane: 1, Piece: nil, Subs: []int{2, 3}},
	} {
		vals := make([]uint64, p.Slots)
		if err := p.placePiece(vals, lp, map[int]bool{}); !errors.Is(err, ErrBatch) {
			t.Errorf("%+v placed: %v", lp, err)
		}
	}
	for _, c := range []LaneCredit{
		{Lane: 5, Piece: three, Part: 0},
		{Lane: 5, Piece: three, Part: 3},
		{Lane: 5, Piece: one, Part: 1},
		{Lane: 5, Piece: three, Part: -1},
	} {
		vals := make([]uint64, p.Slots)
		if err := p.placeCredits(vals, []LaneCredit{c}, nil); !errors.Is(err, ErrBatch) {
			t.Errorf("credit %+v placed: %v", c, err)
		}
	}
	// A lent lane is busy for a layer-0 credit.
	vals := make([]uint64, p.Slots)
	used := map[int]bool{}
	if err := p.placePiece(vals, LanePiece{Lane: 1, Piece: three, Subs: []int{7, 8}}, used); err != nil {
		t.Fatal(err)
	}
	if err := p.placeCredits(vals, []LaneCredit{{Lane: 8, Piece: one}}, used); !errors.Is(err, ErrBatch) {
		t.Errorf("a credit in a lent lane: %v", err)
	}
}

// Recovered pieces of another value count than the dealer's never verify
// (even as a prefix or extension of the true expansion), and
// UnmarshalPieces refuses counts that are not whole lanes within MaxValues.
func TestReviewPayMany_PiecesOfAnotherValueCountNeverVerify(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"alice": 100, "bob": 0, "carol": 0}, "alice", "bob", "carol")
	pay := w.build(t, w.many("alice", 100, map[string]uint64{"bob": 1, "carol": 2}, "bob", "carol"))
	var st SealedTransfer
	if err := st.UnmarshalBinary(pay.Sealed); err != nil {
		t.Fatal(err)
	}
	pcs := w.pieces(t, pay)
	tm := w.nw.p.BGV.PlaintextModulus()
	for k, pc := range pcs {
		if err := w.nw.p.VerifyPiece(&st, k, pc); err != nil {
			t.Fatalf("genuine piece %d: %v", k, err)
		}
		for _, n := range []int{SlotValues, ValuesFor(3), MaxValues} {
			var vals []uint64
			if k == 0 {
				vals = make([]uint64, n)
				copy(vals, pc.Values)
			} else {
				var err error
				if vals, err = expandPiece(tm, k, pc.Seed, n); err != nil {
					t.Fatal(err)
				}
			}
			if err := w.nw.p.VerifyPiece(&st, k, &Piece{Values: vals, Seed: pc.Seed}); !errors.Is(err, ErrSealed) {
				t.Errorf("piece %d with %d values verified: %v", k, n, err)
			}
		}
	}
	for _, nv := range []int{0, 1, SlotValues + 1, MaxValues + SlotValues, 1 << 30} {
		var wr wire.Writer
		wr.U32(1)
		wr.U32(1)
		wr.Fixed(make([]byte, 32))
		wr.U32(uint32(nv))
		for i := 0; i < nv && i < MaxValues+SlotValues; i++ {
			wr.U64(0)
		}
		if _, err := w.nw.p.UnmarshalPieces(wr.B); err == nil {
			t.Errorf("%d piece values decoded", nv)
		}
	}
}

// Envelope decoding edge cases: 32 payees decode; 33 do not; an explicit
// zero count is a single payment; trailing or truncated payee lists fail;
// a pay-many whose first payee is the payer, or whose To repeats in More,
// fails; a single payment and a pay-many with the same fields have
// different ids.
func TestReviewPayMany_EnvelopeDecodingEdges(t *testing.T) {
	from, to := AccountID{1}, AccountID{2}
	base := Envelope{Chain: "c", From: from, To: to, Nonce: 1, Sig: make([]byte, ed25519.SignatureSize)}
	dec := func(e Envelope) (Envelope, error) {
		b, _ := e.MarshalBinary()
		var got Envelope
		err := got.UnmarshalBinary(b)
		return got, err
	}
	e := base
	for i := 0; i < MaxPayees-1; i++ {
		e.More = append(e.More, AccountID{3, byte(i)})
	}
	if got, err := dec(e); err != nil || len(got.Payees()) != MaxPayees {
		t.Fatalf("32 payees: %v", err)
	}
	e.More = append(e.More, AccountID{4})
	if _, err := dec(e); !errors.Is(err, ErrMalformed) {
		t.Fatalf("33 payees: %v", err)
	}
	if got, err := dec(base); err != nil || got.IsMany() || got.More != nil {
		t.Fatalf("single: %v %+v", err, got.More)
	}
	m := base
	m.More = []AccountID{{5}}
	b, _ := m.MarshalBinary()
	for cut := 1; cut < 32+64+8; cut++ {
		var got Envelope
		if err := got.UnmarshalBinary(b[:len(b)-cut]); err == nil {
			t.Fatalf("truncated by %d decoded", cut)
		}
	}
	var got Envelope
	if err := got.UnmarshalBinary(append(append([]byte(nil), b...), 0)); err == nil {
		t.Fatal("trailing byte decoded")
	}
	for _, bad := range []Envelope{
		{Chain: "c", From: from, To: from, Nonce: 1, More: []AccountID{to}, Sig: base.Sig},
		{Chain: "c", From: from, To: to, Nonce: 1, More: []AccountID{to}, Sig: base.Sig},
		{Chain: "c", From: from, To: to, Nonce: 1, More: []AccountID{from}, Sig: base.Sig},
	} {
		if _, err := dec(bad); !errors.Is(err, ErrMalformed) {
			t.Errorf("%+v decoded: %v", bad.More, err)
		}
	}
	if m.ID() == base.ID() {
		t.Fatal("a pay-many and a single payment share an id")
	}
	if m.ValueCount() != ValuesFor(2) || base.ValueCount() != SlotValues {
		t.Fatal("value counts")
	}
}

// The verdicts of a batch never accept a payer whose lent lanes carry a
// non-boolean slot, and a nonzero booleanness slot in a lane that is
// neither active nor lent is a decryption inconsistency (not a verdict).
func TestReviewPayMany_VerdictsReadEveryLentLane(t *testing.T) {
	p := testNet(t, 4, 3).p
	bits, eq := make([]uint64, p.Slots), make([]uint64, p.Slots)
	subs := map[int][]int{1: {10, 11}, 2: {12, 13}}
	bits[p.Slot(0, 31, 11)] = 5
	v, err := p.Verdicts([]int{1, 2}, subs, bits, eq)
	if err != nil {
		t.Fatal(err)
	}
	if v[1] != RejectAmountRange || v[2] != Accepted {
		t.Fatalf("%v", v)
	}
	bits[p.Slot(0, 3, 14)] = 1
	if _, err := p.Verdicts([]int{1, 2}, subs, bits, eq); !errors.Is(err, ErrInconsistentDecryption) {
		t.Fatalf("a nonzero slot in an unlent lane: %v", err)
	}
}
