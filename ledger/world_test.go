package ledger

import (
	"crypto/ed25519"
	"crypto/sha256"
	"testing"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
)

// world is a ledger with genesis accounts driven block by block through the
// same path a validator uses: Plan, EvaluateBatch, ShareChecks from t
// validators, DecryptChecks, Commit.
type world struct {
	nw   *net
	book *Book
	b    *builder
	acct map[string]*account
	sk   *rlwe.SecretKey // the collective secret, to play the pieces' holders (credits)
}

func newWorld(t testing.TB, balances map[string]uint64, kinds map[string]AccountKind, names ...string) *world {
	t.Helper()
	nw := testNet(t, 4, 3)
	w := &world{nw: nw, b: newBuilder(nw.p, nw.keys.PK, "test"), acct: map[string]*account{}}
	var gen []GenesisAccount
	for i, n := range names {
		gen = append(gen, w.named(t, n, i, kinds[n], balances[n]))
	}
	w.open(t, gen)
	return w
}

// named makes the genesis account of a named wallet at lane index lane.
func (w *world) named(t testing.TB, name string, lane int, kind AccountKind, balance uint64) GenesisAccount {
	t.Helper()
	a := newAccount(t, w.nw.p, lane)
	w.acct[name] = a
	pk, _ := a.own.PK.MarshalBinary()
	return GenesisAccount{SignPub: a.key.Public().(ed25519.PublicKey), OwnerPK: pk, Kind: kind, Balance: balance}
}

// open starts the world's book from gen and records the named lanes.
func (w *world) open(t testing.TB, gen []GenesisAccount) {
	t.Helper()
	book, err := NewBook(w.nw.eng, "test", gen)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range w.acct {
		got, _ := book.Account(a.id)
		a.lane = got.Lane
	}
	w.book = book
}

// spec builds an honest transfer spec from the wallet's view.
func (w *world) spec(from, to string, amount, balance uint64) TransferSpec {
	a := w.acct[from]
	acc, _ := w.book.Account(a.id)
	return TransferSpec{From: a.id, Lane: acc.Lane, Key: a.key, To: w.acct[to].id, Amount: amount, Balance: balance, Height: w.book.Height(), Nonce: acc.Nonce + 1, Prev: acc.LastOp}
}

// applySpec moves amount of name's pending balance (pending at the book's
// height) into its available one.
func (w *world) applySpec(name string, amount, pending uint64) TransferSpec {
	s := w.spec(name, name, amount, pending)
	return s
}

// block runs one block of submissions and returns each transfer's outcome by id.
func (w *world) block(t testing.TB, subs ...*testSub) map[[32]byte]Reason {
	t.Helper()
	var pend []Pending
	for i, s := range subs {
		ct, err := w.nw.p.DecodeUpload(s.Ciphertext)
		var credits []Pending
		if err == nil {
			credits = w.credits(t, ct, s)
		}
		for k := range s.Envelopes {
			e := &s.Envelopes[k]
			if err != nil || sha256.Sum256(s.Ciphertext) != e.CTHash {
				pend = append(pend, Pending{Env: e, Sub: i})
				continue
			}
			pend = append(pend, Pending{Env: e, CT: ct, Sub: i, Credits: credits[k].Credits})
		}
	}
	return w.run(t, pend)
}

// run plans, evaluates, decrypts (t validators) and commits one block.
func (w *world) run(t testing.TB, pend []Pending) map[[32]byte]Reason {
	t.Helper()
	h := w.book.Height() + 1
	batches, early := w.book.Plan(pend)
	var evals []*Evaluation
	var verdicts []map[int]Reason
	for i, bt := range batches {
		ev, err := w.book.EvaluateBatch(w.nw.eng, bt, []byte("block"), i)
		if err != nil {
			t.Fatal(err)
		}
		bs, es := w.nw.checkShares(t, ev)
		vd, err := w.nw.dec.DecryptChecks(ev, bs, es)
		if err != nil {
			t.Fatal(err)
		}
		evals, verdicts = append(evals, ev), append(verdicts, vd)
	}
	var outs []Outcome
	var err error
	if len(batches) == 0 {
		err = w.book.Skip(h)
	} else {
		outs, err = w.book.Commit(w.nw.eng, h, batches, evals, verdicts)
	}
	if err != nil {
		t.Fatal(err)
	}
	res := map[[32]byte]Reason{}
	for id, r := range early {
		res[id] = r
	}
	for _, o := range outs {
		res[o.ID] = o.Reason
	}
	return res
}

// checkShares are the first t validators' decryption shares of a batch's
// checks.
func (nw *net) checkShares(t testing.TB, ev *Evaluation) (bits, eq []*DecShare) {
	t.Helper()
	for v := 0; v < nw.com.T; v++ {
		b, e, err := nw.dec.ShareChecks(nw.shares[v], &ev.Checks)
		if err != nil {
			t.Fatal(err)
		}
		bits, eq = append(bits, b), append(eq, e)
	}
	return bits, eq
}

// credits builds the credit ciphertexts of a submission the way its
// pieces' holders do (credit.go): each payment's credit value is the sum of
// its lane's row-0 slot values as uploaded (forged or not), placed by
// CreditLayout in its receiver's lane. The test reads the slot values with
// the collective secret; validators hold them as pieces.
func (w *world) credits(t testing.TB, ct *rlwe.Ciphertext, s *testSub) []Pending {
	t.Helper()
	p := w.nw.p
	if w.sk == nil {
		w.sk = collectiveSecret(t, w.nw)
	}
	vals := make([]uint64, p.Slots)
	pt := rlwe.NewDecryptor(p.BGV, w.sk).DecryptNew(ct)
	if err := newEncoder(p).Decode(pt, vals); err != nil {
		t.Fatal(err)
	}
	out := make([]Pending, len(s.Envelopes))
	var lanes, idx []int
	for k := range s.Envelopes {
		e := &s.Envelopes[k]
		to, ok1 := w.book.Account(e.To)
		_, ok2 := w.book.Account(e.From)
		if e.IsApply() || !ok1 || !ok2 {
			continue
		}
		lanes, idx = append(lanes, to.Lane), append(idx, k)
	}
	layer, index, extra := p.CreditLayout(lanes, nil)
	layers := extra + 1 // with no senders given, layer 0 is a ciphertext of its own
	at := make([]map[int]uint64, layers)
	for i := range at {
		at[i] = map[int]uint64{}
	}
	tm := p.BGV.PlaintextModulus()
	for i, k := range idx {
		from, _ := w.book.Account(s.Envelopes[k].From)
		var v uint64
		for j := 0; j < p.Bits; j++ {
			v = (v + vals[p.Slot(0, j, from.Lane)]) % tm
		}
		at[layer[i]][p.Slot(0, index[i], lanes[i])] = v
		out[k].Credits = []CreditRef{{Index: index[i]}}
	}
	cts := make([]*rlwe.Ciphertext, layers)
	for i := range cts {
		cts[i] = w.b.creditCT(t, at[i])
	}
	for i, k := range idx {
		out[k].Credits[0].CT = cts[layer[i]]
	}
	return out
}

// reason is the outcome of a single-envelope submission.
func reason(t testing.TB, res map[[32]byte]Reason, s *testSub) Reason {
	t.Helper()
	r, ok := res[s.Envelopes[0].ID()]
	if !ok {
		t.Fatalf("no outcome for transfer")
	}
	return r
}

// balance decrypts an account's current balance the way its owner does.
func (w *world) balance(t testing.TB, name string) uint64 {
	t.Helper()
	a, p := w.balances(t, name)
	return a + p
}

// balances is an account's available and pending balance, as its owner
// reads them (t validators re-encrypt one ciphertext holding both).
func (w *world) balances(t testing.TB, name string) (avail, pending uint64) {
	t.Helper()
	a := w.acct[name]
	acc, _ := w.book.Account(a.id)
	st, ok1 := w.book.State(acc.Shard, w.book.Height())
	pst, ok2 := w.book.PendingState(acc.Shard, w.book.Height())
	if !ok1 || !ok2 {
		t.Fatal("no state")
	}
	eng := w.nw.eng
	sum, err := eng.Recompose(st)
	if err != nil {
		t.Fatal(err)
	}
	psum, err := eng.Recompose(pst)
	if err != nil {
		t.Fatal(err)
	}
	ct, err := eng.BalancesFromRecomposed(sum, psum, a.lane)
	if err != nil {
		t.Fatal(err)
	}
	var replies []*BalanceReply
	for i := 0; i < w.nw.com.N; i++ {
		s, err := w.nw.dec.ReencShare(w.nw.shares[i], ct, a.own.PK)
		if err != nil {
			t.Fatal(err)
		}
		replies = append(replies, &BalanceReply{Validator: i, Height: w.book.Height(), Lane: a.lane, CT: ct, Share: s})
	}
	b, _, err := w.nw.dec.CombineBalances(a.own, replies)
	if err != nil {
		t.Fatal(err)
	}
	return b.Available, b.Pending
}

func (w *world) expectBalances(t testing.TB, want map[string]uint64) {
	t.Helper()
	for n, v := range want {
		if got := w.balance(t, n); got != v {
			t.Errorf("%s balance = %d, want %d", n, got, v)
		}
	}
}

// forged encrypts an arbitrary slot vector and signs it as a transfer spec.
func (w *world) forged(t testing.TB, vals []uint64, specs ...TransferSpec) *testSub {
	t.Helper()
	ctb, err := w.b.EncryptSlots(vals)
	if err != nil {
		t.Fatal(err)
	}
	return w.b.Seal(ctb, specs...)
}
