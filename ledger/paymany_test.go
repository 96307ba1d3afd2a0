package ledger

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
)

// payWorld is a world whose wallets deal real sealed uploads (Dealer) and
// whose pieces are encrypted the way their holders do (placePiece, credit
// layers), so pay-many runs through the same code as on a chain.
type payWorld struct {
	*world
	sh     *Sharing
	privs  []*ecdh.PrivateKey
	dealer *Dealer
}

func newPayWorld(t testing.TB, balances map[string]uint64, names ...string) *payWorld {
	t.Helper()
	return payWorldOf(t, newWorld(t, balances, nil, names...))
}

// payWorldOf adds a committee's sharing, sealing keys and a dealer to ww.
func payWorldOf(t testing.TB, ww *world) *payWorld {
	t.Helper()
	w := &payWorld{world: ww}
	sh, err := NewSharing(w.nw.com.N, w.nw.com.F())
	if err != nil {
		t.Fatal(err)
	}
	w.sh = sh
	var pubs []*ecdh.PublicKey
	for i := 0; i < sh.N; i++ {
		pub, priv, err := ed25519.GenerateKey(rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		sk, _ := SealKeyFromSeed(priv.Seed())
		pk, _ := SealPublicKey(pub)
		w.privs, pubs = append(w.privs, sk), append(pubs, pk)
	}
	if w.dealer, err = NewDealer(w.nw.p, sh, pubs, "test"); err != nil {
		t.Fatal(err)
	}
	return w
}

// many is an honest pay-many spec from name's wallet view.
func (w *payWorld) many(from string, balance uint64, pay map[string]uint64, order ...string) TransferSpec {
	s := w.spec(from, from, 0, balance)
	s.To = AccountID{}
	for _, n := range order {
		s.Payees = append(s.Payees, Payee{To: w.acct[n].id, Amount: pay[n]})
	}
	return s
}

// paySub is an upload and the payee lanes the chain's layout lends it.
type paySub struct {
	sub  *Submission
	subs []int
}

// pieces opens the upload's box of the first holder of each piece.
func (w *payWorld) pieces(t testing.TB, s *Submission) []*Piece {
	t.Helper()
	env := &s.Envelopes[0]
	var st SealedTransfer
	if err := st.UnmarshalBinary(s.Sealed); err != nil {
		t.Fatal(err)
	}
	bind := SealBinding{Chain: env.Chain, From: env.From, Nonce: env.Nonce, Values: env.ValueCount()}
	out := make([]*Piece, w.sh.Pieces())
	for k := range out {
		v := w.sh.Holders(k)[0]
		ps, err := w.nw.p.Open(w.sh, v, w.privs[v], bind, &st)
		if err != nil {
			t.Fatal(err)
		}
		out[k] = ps[k]
	}
	return out
}

// pending builds the pending operations of the uploads as one group of
// one shard, the way holders encrypt and a block decides it.
func (w *payWorld) pending(t testing.TB, ups ...paySub) []Pending {
	t.Helper()
	p := w.nw.p
	h := w.book.Height() + 1
	pcs := make([][]*Piece, len(ups))
	var busy, to, owner, part []int
	for i, u := range ups {
		pcs[i] = w.pieces(t, u.sub)
		from, _ := w.book.Account(u.sub.Envelopes[0].From)
		busy = append(busy, from.Lane)
		busy = append(busy, u.subs...)
		env := &u.sub.Envelopes[0]
		for pi, id := range env.Payees() {
			acc, _ := w.book.Account(id)
			to, owner = append(to, acc.Lane), append(owner, i)
			if env.IsMany() {
				part = append(part, pi+1)
			} else {
				part = append(part, 0)
			}
		}
	}
	layer, index, layers := p.CreditLayout(to, busy)
	sums := make([][]*rlwe.Ciphertext, layers+1)
	for k := 0; k < w.sh.Pieces(); k++ {
		var lps []LanePiece
		for i, u := range ups {
			from, _ := w.book.Account(u.sub.Envelopes[0].From)
			lps = append(lps, LanePiece{Lane: from.Lane, Piece: pcs[i][k], Subs: u.subs})
		}
		by := make([][]LaneCredit, layers+1)
		for c := range to {
			by[layer[c]] = append(by[layer[c]], LaneCredit{Lane: to[c], Index: index[c], Piece: pcs[owner[c]][k], Part: part[c]})
		}
		ct, err := p.EncryptPieceBatchWithCredits(w.nw.keys.PK, lps, by[0], PieceBatchSeed("test", h, 0, k, lps))
		if err != nil {
			t.Fatal(err)
		}
		sums[0] = append(sums[0], ct)
		for l := 1; l <= layers; l++ {
			ct, err := p.EncryptCreditBatch(w.nw.keys.PK, by[l], CreditBatchSeed("test", h, uint32(l), k, by[l]))
			if err != nil {
				t.Fatal(err)
			}
			sums[l] = append(sums[l], ct)
		}
	}
	cts := make([]*rlwe.Ciphertext, layers+1)
	for l := range cts {
		var err error
		if cts[l], err = p.SumPieces(sums[l]); err != nil {
			t.Fatal(err)
		}
	}
	var pend []Pending
	c := 0
	for _, u := range ups {
		env := &u.sub.Envelopes[0]
		pd := Pending{Env: env, CT: cts[0], SubLanes: u.subs}
		for range env.Payees() {
			pd.Credits = append(pd.Credits, CreditRef{CT: cts[layer[c]], Index: index[c]})
			c++
		}
		pend = append(pend, pd)
	}
	return pend
}

// block runs the uploads as one group of one shard and commits it.
func (w *payWorld) block(t testing.TB, ups ...paySub) map[[32]byte]Reason {
	t.Helper()
	return w.run(t, w.pending(t, ups...))
}

// expectForged deals vals under s (payee lanes 50, 51) and expects want.
func (w *payWorld) expectForged(t testing.TB, s TransferSpec, vals []uint64, want Reason, what string) {
	t.Helper()
	sub, err := w.dealer.BuildValues(s, vals)
	if err != nil {
		t.Fatal(err)
	}
	if r := w.block(t, paySub{sub: sub, subs: []int{50, 51}})[sub.Envelopes[0].ID()]; r != want {
		t.Fatalf("%s: %v, want %v", what, r, want)
	}
}

func (w *payWorld) build(t testing.TB, s TransferSpec) *Submission {
	t.Helper()
	sub, err := w.dealer.Build(s)
	if err != nil {
		t.Fatal(err)
	}
	return sub
}

// One upload debits the payer once and credits every payee its own amount,
// next to an ordinary payment in the same batch; the payer's next pay-many
// is built on the first without any balance read.
func TestPayMany_OneDebitCreditsEveryPayee(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"alice": 100, "bob": 5, "carol": 7, "dave": 0, "erin": 40}, "alice", "bob", "carol", "dave", "erin")
	s := w.many("alice", 100, map[string]uint64{"bob": 10, "carol": 20, "dave": 30}, "bob", "carol", "dave")
	pay := w.build(t, s)
	single := w.build(t, w.spec("erin", "bob", 15, 40))
	res := w.block(t, paySub{sub: pay, subs: []int{200, 201, 202}}, paySub{sub: single})
	if r := res[pay.Envelopes[0].ID()]; r != Accepted {
		t.Fatalf("pay-many: %v", r)
	}
	if r := res[single.Envelopes[0].ID()]; r != Accepted {
		t.Fatalf("single payment beside it: %v", r)
	}
	want := map[string][2]uint64{"alice": {40, 0}, "bob": {5, 25}, "carol": {7, 20}, "dave": {0, 30}, "erin": {25, 0}}
	w.expectSplit(t, want)

	// The wallet knows its available balance (40) and pays again at once.
	s2 := w.many("alice", 40, map[string]uint64{"dave": 1, "erin": 39}, "dave", "erin")
	s2.Prev = pay.Envelopes[0].ID()
	pay2 := w.build(t, s2)
	res = w.block(t, paySub{sub: pay2, subs: []int{10, 11}})
	if r := res[pay2.Envelopes[0].ID()]; r != Accepted {
		t.Fatalf("second pay-many: %v", r)
	}
	want["alice"], want["dave"], want["erin"] = [2]uint64{0, 0}, [2]uint64{0, 31}, [2]uint64{25, 39}
	w.expectSplit(t, want)
}

func (w *payWorld) expectSplit(t testing.TB, want map[string][2]uint64) {
	t.Helper()
	for n, v := range want {
		a, p := w.balances(t, n)
		if a != v[0] || p != v[1] {
			t.Errorf("%s: available %d pending %d, want %d %d", n, a, p, v[0], v[1])
		}
	}
}

// A payee lane borrowed from an account that is itself a payee (or just
// idle) changes nothing of that account: its credit goes to a separate
// credit layer, and the borrowed slots are never debited or credited.
func TestPayMany_BorrowedLanesBelongToNobody(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"alice": 100, "bob": 5, "carol": 7}, "alice", "bob", "carol")
	bob, _ := w.book.Account(w.acct["bob"].id)
	carol, _ := w.book.Account(w.acct["carol"].id)
	s := w.many("alice", 100, map[string]uint64{"bob": 11, "carol": 22}, "bob", "carol")
	pay := w.build(t, s)
	if r := w.block(t, paySub{sub: pay, subs: []int{carol.Lane, bob.Lane}})[pay.Envelopes[0].ID()]; r != Accepted {
		t.Fatalf("pay-many in borrowed lanes: %v", r)
	}
	w.expectSplit(t, map[string][2]uint64{"alice": {67, 0}, "bob": {5, 11}, "carol": {7, 22}})
}

// A payee amount that is "negative" (t - 50, so the amounts still sum to
// the debited total mod t) would take 50 from one payee's pending balance
// and give it to another. Its slots are not bits: booleanness rejects it,
// and nothing moves.
func TestAttack_PayManyNegativeAmountToOnePayeeIsRejected(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"alice": 100, "bob": 60, "carol": 0}, "alice", "bob", "carol")
	tm := w.nw.p.BGV.PlaintextModulus()
	s := w.many("alice", 100, map[string]uint64{"bob": 0, "carol": 0}, "bob", "carol")
	vals := ManyValues([]uint64{0, 80}, 70) // 80 - 50 = 30 debited, 100 - 30 = 70 left
	vals[SlotValues] = tm - 50              // bob's amount: -50 in slot 0
	w.expectForged(t, s, vals, RejectAmountRange, "negative payee amount")
	w.expectSplit(t, map[string][2]uint64{"alice": {100, 0}, "bob": {60, 0}, "carol": {0, 0}})
}

// Payees summing to more than the balance: a wallet refuses to build it;
// forged with well-formed bits of the wrapped new balance it fails the
// balance equation, since the validators, not the dealer, write the total.
func TestAttack_PayManyOverdraftIsRejected(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"alice": 100, "bob": 0, "carol": 0}, "alice", "bob", "carol")
	s := w.many("alice", 100, map[string]uint64{"bob": 60, "carol": 60}, "bob", "carol")
	if _, err := w.dealer.Build(s); !errors.Is(err, ErrInsufficientFunds) {
		t.Fatalf("wallet built an overdrawn pay-many: %v", err)
	}
	w.expectForged(t, s, ManyValues([]uint64{60, 60}, (100-120)&MaxAmount), RejectBalanceMismatch, "overdrawn pay-many")
	w.expectSplit(t, map[string][2]uint64{"alice": {100, 0}, "bob": {0, 0}, "carol": {0, 0}})
}

// The dealer's own row 0 for the payer (a claimed debit of 1 while paying
// 90 out) is ignored: holders write the sum of the payees' amounts there,
// so the claim fails the balance equation instead of minting 89.
func TestAttack_PayManyUnderstatedDebitIsIgnored(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"alice": 100, "bob": 0, "carol": 0}, "alice", "bob", "carol")
	s := w.many("alice", 100, map[string]uint64{"bob": 50, "carol": 40}, "bob", "carol")
	vals := ManyValues([]uint64{50, 40}, 99)
	copy(vals, TransferValues(1, 99)) // the payer's lane claims a debit of 1
	w.expectForged(t, s, vals, RejectBalanceMismatch, "understated debit")
	w.expectSplit(t, map[string][2]uint64{"alice": {100, 0}, "bob": {0, 0}, "carol": {0, 0}})
}

// Soundness of the equation with the total written by validators: the
// largest total plus the largest new balance stays below t, so
// total + b' = balance mod t holds only as integers.
func TestPayManyTotalsStayBelowThePlaintextModulus(t *testing.T) {
	p := MustParams(ZKB128)
	worst := uint64(MaxPayees)*uint64(MaxAmount) + uint64(MaxAmount)
	if worst >= p.BGV.PlaintextModulus() {
		t.Fatalf("%d payees of %d plus a balance reach %d >= t = %d", MaxPayees, uint64(MaxAmount), worst, p.BGV.PlaintextModulus())
	}
}

// Malformed payee lists never decode, and the signature covers the payees.
func TestPayMany_EnvelopeRules(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"alice": 100, "bob": 0, "carol": 0}, "alice", "bob", "carol")
	pay := w.build(t, w.many("alice", 100, map[string]uint64{"bob": 1, "carol": 2}, "bob", "carol"))
	env := pay.Envelopes[0]
	if r := w.book.Check(&env); r != Accepted {
		t.Fatalf("honest pay-many: %v", r)
	}
	roundTrip := func(e Envelope) error {
		b, _ := e.MarshalBinary()
		var got Envelope
		return got.UnmarshalBinary(b)
	}
	if err := roundTrip(env); err != nil {
		t.Fatal(err)
	}
	bad := map[string]func(e *Envelope){
		"repeated payee":       func(e *Envelope) { e.More = []AccountID{e.To} },
		"payer among payees":   func(e *Envelope) { e.More = []AccountID{e.From} },
		"apply paying someone": func(e *Envelope) { e.To = e.From },
		"too many payees": func(e *Envelope) {
			e.More = nil
			for i := 0; i < MaxPayees; i++ {
				e.More = append(e.More, AccountID{byte(i), 9})
			}
		},
	}
	for name, f := range bad {
		e := env
		e.More = append([]AccountID(nil), env.More...)
		f(&e)
		if err := roundTrip(e); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: decoded (%v)", name, err)
		}
		if r := w.book.CheckVerified(&e); r != RejectMalformed {
			t.Errorf("%s: %v, want malformed", name, r)
		}
	}
	e := env
	e.More = []AccountID{w.acct["bob"].id}
	e.To = w.acct["carol"].id
	if r := w.book.Check(&e); r != RejectBadSignature {
		t.Fatalf("payees swapped after signing: %v", r)
	}
	e = env
	e.More = []AccountID{{7, 7, 7}}
	if r := w.book.CheckVerified(&e); r != RejectUnknownAccount {
		t.Fatalf("unknown payee: %v", r)
	}
}

// A box opens only for the value count it was dealt for: the count is
// bound, so a pay-many's boxes cannot be opened as a single payment's.
func TestPayMany_SealedValueCountIsBound(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"alice": 100, "bob": 0, "carol": 0}, "alice", "bob", "carol")
	pay := w.build(t, w.many("alice", 100, map[string]uint64{"bob": 1, "carol": 2}, "bob", "carol"))
	env := &pay.Envelopes[0]
	var st SealedTransfer
	if err := st.UnmarshalBinary(pay.Sealed); err != nil {
		t.Fatal(err)
	}
	bind := SealBinding{Chain: env.Chain, From: env.From, Nonce: env.Nonce}
	if _, err := w.nw.p.Open(w.sh, 0, w.privs[0], bind, &st); !errors.Is(err, ErrSealed) {
		t.Fatalf("opened as a single payment: %v", err)
	}
	bind.Values = env.ValueCount()
	ps, err := w.nw.p.Open(w.sh, 0, w.privs[0], bind, &st)
	if err != nil {
		t.Fatal(err)
	}
	got, err := w.nw.p.UnmarshalPieces(MarshalPieces(ps))
	if err != nil {
		t.Fatal(err)
	}
	for k, pc := range got {
		if err := w.nw.p.VerifyPiece(&st, k, pc); err != nil {
			t.Fatalf("piece %d after a round trip: %v", k, err)
		}
	}
}

// No lane carries two transfers' values: a payee lane that is another
// payer's lane (or another pay-many's) is refused before evaluation.
func TestPayMany_PayeeLaneCannotBeAPayersLane(t *testing.T) {
	nw := testNet(t, 4, 3)
	ct := bgvZero(t, nw)
	for _, items := range [][]Item{
		{{CT: ct, Lanes: []int{1, 2}, Subs: map[int][]int{1: {2, 3}}}},
		{{CT: ct, Lanes: []int{1}, Subs: map[int][]int{1: {5, 6}}}, {CT: ct, Lanes: []int{2}, Subs: map[int][]int{2: {6, 7}}}},
		{{CT: ct, Lanes: []int{1}, Subs: map[int][]int{1: {5}}}},
		{{CT: ct, Lanes: []int{1}, Subs: map[int][]int{4: {5, 6}}}},
	} {
		if _, _, err := nw.eng.checkLanes(items); !errors.Is(err, ErrBatch) {
			t.Fatalf("lanes %+v accepted", items)
		}
	}
}

func bgvZero(t testing.TB, nw *net) *rlwe.Ciphertext {
	t.Helper()
	ct := rlwe.NewCiphertext(nw.p.BGV, 1, LevelUpload)
	return ct
}

// A pay-many planned without a decided credit for every payee (a credit
// layer that failed to decide, or a payee lane missing) is rejected before
// evaluation: no payee is paid and nothing is debited.
func TestAttack_PayManyWithoutEveryCreditIsNeverDebited(t *testing.T) {
	w := newPayWorld(t, map[string]uint64{"alice": 100, "bob": 0, "carol": 0}, "alice", "bob", "carol")
	pay := w.build(t, w.many("alice", 100, map[string]uint64{"bob": 10, "carol": 20}, "bob", "carol"))
	full := w.pending(t, paySub{sub: pay, subs: []int{50, 51}})[0]
	id := pay.Envelopes[0].ID()
	for name, pd := range map[string]Pending{
		"one credit missing":   {Env: full.Env, CT: full.CT, SubLanes: full.SubLanes, Credits: full.Credits[:1]},
		"one credit undecided": {Env: full.Env, CT: full.CT, SubLanes: full.SubLanes, Credits: []CreditRef{full.Credits[0], {Index: full.Credits[1].Index}}},
		"one payee lane short": {Env: full.Env, CT: full.CT, SubLanes: full.SubLanes[:1], Credits: full.Credits},
	} {
		if batches, early := w.book.Plan([]Pending{pd}); len(batches) != 0 || early[id] != RejectUndecided {
			t.Fatalf("%s: %d batches, early %v", name, len(batches), early[id])
		}
	}
	if r := w.run(t, []Pending{full})[id]; r != Accepted {
		t.Fatalf("with every credit: %v", r)
	}
	w.expectSplit(t, map[string][2]uint64{"alice": {70, 0}, "bob": {0, 10}, "carol": {0, 20}})
}
