package ledger

import (
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"testing"
)

// Robust decisions (robust.go) with the default threshold t = f+1, for
// N = 4 (f = 1, t = 2) and N = 7 (f = 2, t = 3): privacy against f colluders,
// liveness with f validators down, and safety against f validators sending
// wrong shares.

// robustBatch evaluates one batch holding a payment and an overdraft on a
// fresh book; it returns the evaluation, every validator's check shares and
// the true verdicts (decrypted by the first t honest validators).
func robustBatch(t testing.TB, nw *net) (*Evaluation, map[int]CheckShares, map[int]Reason) {
	t.Helper()
	var gen []GenesisAccount
	accts := map[string]*account{}
	for i, name := range []string{"alice", "bob", "carol"} {
		a := newAccount(t, nw.p, i)
		accts[name] = a
		gen = append(gen, GenesisAccount{SignPub: a.key.Public().(ed25519.PublicKey), Balance: map[string]uint64{"alice": 100, "carol": 50}[name]})
	}
	book, err := NewBook(nw.eng, "robust", gen)
	if err != nil {
		t.Fatal(err)
	}
	b := newBuilder(nw.p, nw.keys.PK, "robust")
	var pend []Pending
	for i, tr := range []struct {
		from, to        string
		amount, claimed uint64
	}{{"alice", "bob", 20, 100}, {"carol", "bob", 80, 100}} {
		a := accts[tr.from]
		acc, _ := book.Account(a.id)
		sub, err := b.Build(TransferSpec{From: a.id, Lane: acc.Lane, Key: a.key, To: accts[tr.to].id, Amount: tr.amount, Balance: tr.claimed, Nonce: 1})
		if err != nil {
			t.Fatal(err)
		}
		to, _ := book.Account(accts[tr.to].id)
		credit := b.creditCT(t, map[int]uint64{nw.p.Slot(0, 0, to.Lane): tr.amount})
		pend = append(pend, Pending{Env: &sub.Envelopes[0], CT: nw.upload(t, sub), Sub: i, Credits: []CreditRef{{CT: credit}}})
	}
	batches, early := book.Plan(pend)
	if len(batches) != 1 || len(early) != 0 {
		t.Fatalf("plan: %d batches, %d early", len(batches), len(early))
	}
	ev, err := book.EvaluateBatch(nw.eng, batches[0], []byte("robust-block"), 0)
	if err != nil {
		t.Fatal(err)
	}
	shares := map[int]CheckShares{}
	for i := 0; i < nw.com.N; i++ {
		bs, es, err := nw.dec.ShareChecks(nw.shares[i], &ev.Checks)
		if err != nil {
			t.Fatal(err)
		}
		shares[i] = CheckShares{Bits: bs, Eq: es}
	}
	var bs, es []*DecShare
	for i := 0; i < nw.com.T; i++ {
		bs, es = append(bs, shares[i].Bits), append(es, shares[i].Eq)
	}
	truth, err := nw.dec.DecryptChecks(ev, bs, es)
	if err != nil {
		t.Fatal(err)
	}
	accepted, rejected := 0, 0
	for _, r := range truth {
		if r == Accepted {
			accepted++
		} else {
			rejected++
		}
	}
	if accepted != 1 || rejected != 1 {
		t.Fatalf("true verdicts %v: want one accepted, one rejected", truth)
	}
	return ev, shares, truth
}

// wrongShare is a well-formed, correctly attributed share that decrypts wrongly.
func wrongShare(s *DecShare) *DecShare {
	out := &DecShare{Validator: s.Validator, Share: s.Share}
	out.Share.Value = *s.Share.Value.CopyNew()
	out.Share.Value.Coeffs[0][7] ^= 0x5a5a5a
	return out
}

func sameVerdicts(a, b map[int]Reason) bool { return verdictKey(a) == verdictKey(b) }

func robustCommittees(t *testing.T) []*net {
	nets := []*net{testNet(t, 4, 2)}
	if !testing.Short() {
		nets = append(nets, testNet(t, 7, 3))
	}
	return nets
}

func TestRobust_DefaultThresholdIsFPlusOne_AnyTDecryptTMinusOneLearnNothing(t *testing.T) {
	testThreshold(t, 4, 2)
	if !testing.Short() {
		testThreshold(t, 7, 3)
	}
}

// Liveness: with f validators down, the 2f+1 others (= t+f) decide.
func TestRobust_DecidesWithFValidatorsDown(t *testing.T) {
	for _, nw := range robustCommittees(t) {
		t.Run(fmt.Sprintf("N=%d,t=%d", nw.com.N, nw.com.T), func(t *testing.T) {
			ev, shares, truth := robustBatch(t, nw)
			for down := 0; down <= nw.com.N-nw.com.F(); down++ { // any f consecutive validators down
				up := map[int]CheckShares{}
				for i, s := range shares {
					if (i-down+nw.com.N)%nw.com.N >= nw.com.F() {
						up[i] = s
					}
				}
				d, err := nw.dec.DecideChecks(ev, up)
				if err != nil {
					t.Fatalf("%d of %d up: %v", len(up), nw.com.N, err)
				}
				if !sameVerdicts(d.Verdicts, truth) || len(d.Faulty) != 0 || len(d.Agreed) != len(up) {
					t.Fatalf("%d up: verdicts %v (want %v), faulty %v, agreed %v", len(up), d.Verdicts, truth, d.Faulty, d.Agreed)
				}
			}
		})
	}
}

// Safety: f validators sending wrong shares, all N present: the verdicts are
// the true ones and exactly the f are named.
func TestRobust_FWrongSharesAreOutvotedAndNamed(t *testing.T) {
	for _, nw := range robustCommittees(t) {
		t.Run(fmt.Sprintf("N=%d,t=%d", nw.com.N, nw.com.T), func(t *testing.T) {
			ev, shares, truth := robustBatch(t, nw)
			bad := map[int]CheckShares{}
			for i, s := range shares {
				bad[i] = s
			}
			var liars []int
			for i := 0; i < nw.com.F(); i++ {
				v := 1 + 2*i // spread among the honest
				bad[v] = CheckShares{Bits: wrongShare(shares[v].Bits), Eq: wrongShare(shares[v].Eq)}
				liars = append(liars, v)
			}
			d, err := nw.dec.DecideChecks(ev, bad)
			if err != nil {
				t.Fatal(err)
			}
			if !sameVerdicts(d.Verdicts, truth) {
				t.Fatalf("verdicts %v, want %v", d.Verdicts, truth)
			}
			if fmt.Sprint(d.Faulty) != fmt.Sprint(liars) {
				t.Fatalf("named %v, want %v", d.Faulty, liars)
			}
		})
	}
}

// With exactly t+f shares of which one is wrong, nobody decides (a liveness
// failure the caller turns into "undecided"), rather than deciding wrongly.
func TestRobust_TooFewAgreeingSharesDecideNothing(t *testing.T) {
	nw := testNet(t, 4, 2)
	ev, shares, _ := robustBatch(t, nw)
	three := map[int]CheckShares{0: shares[0], 1: shares[1], 2: {Bits: wrongShare(shares[2].Bits), Eq: wrongShare(shares[2].Eq)}}
	if _, err := nw.dec.DecideChecks(ev, three); !errors.Is(err, ErrNoAgreement) {
		t.Fatalf("2 good + 1 wrong of t+f = 3: %v, want ErrNoAgreement", err)
	}
	mislabeled := map[int]CheckShares{0: shares[1], 1: shares[1], 2: shares[2]}
	if _, err := nw.dec.DecideChecks(ev, mislabeled); !errors.Is(err, ErrShare) {
		t.Fatalf("a share filed under another validator: %v, want ErrShare", err)
	}
}

// A balance read by its owner is decided like checks: a validator sending a
// wrong re-encryption share cannot change what the owner reads, and without
// t+f agreeing replies the owner gets an error, not a wrong balance.
func TestRobust_WrongReencryptionShareCannotChangeABalance(t *testing.T) {
	nw := testNet(t, 4, 2)
	a := newAccount(t, nw.p, 0)
	pk, _ := a.own.PK.MarshalBinary()
	book, err := NewBook(nw.eng, "robust", []GenesisAccount{{SignPub: a.key.Public().(ed25519.PublicKey), OwnerPK: pk, Balance: 4242}})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := book.State(0, 0)
	ct, err := nw.eng.BalanceCiphertext(st, 0)
	if err != nil {
		t.Fatal(err)
	}
	var replies []*BalanceReply
	for i := 0; i < 4; i++ {
		s, err := nw.dec.ReencShare(nw.shares[i], ct, a.own.PK)
		if err != nil {
			t.Fatal(err)
		}
		replies = append(replies, &BalanceReply{Validator: i, Lane: 0, CT: ct, Share: s})
	}
	bad := *replies[2].Share
	bad.Share.Value[0] = *bad.Share.Value[0].CopyNew()
	bad.Share.Value[0].Coeffs[0][3] ^= 0x77777
	replies[2] = &BalanceReply{Validator: 2, Lane: 0, CT: ct, Share: &bad}
	v, _, err := nw.dec.CombineBalance(a.own, replies)
	if err != nil || v != 4242 {
		t.Fatalf("balance %d, %v; want 4242", v, err)
	}
	if _, _, err := nw.dec.CombineBalance(a.own, replies[1:]); err == nil {
		t.Fatal("two good replies and a wrong one (fewer than t+f agreeing) gave a balance")
	}
}

// BenchmarkDecideChecks is the robust decision of one batch from all N
// shares (every t-subset combined) against a plain decryption from t shares.
func BenchmarkDecideChecks(b *testing.B) {
	for _, c := range []struct{ n, t int }{{4, 2}, {7, 3}} {
		nw := testNet(b, c.n, c.t)
		ev, shares, _ := robustBatch(b, nw)
		b.Run(fmt.Sprintf("robust/N=%d,t=%d", c.n, c.t), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				if _, err := nw.dec.DecideChecks(ev, shares); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("plain/N=%d,t=%d", c.n, c.t), func(b *testing.B) {
			var bs, es []*DecShare
			for i := 0; i < c.t; i++ {
				bs, es = append(bs, shares[i].Bits), append(es, shares[i].Eq)
			}
			for i := 0; i < b.N; i++ {
				if _, err := nw.dec.DecryptChecks(ev, bs, es); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// verdictKey is a canonical encoding of a verdict map.
func verdictKey(v map[int]Reason) string {
	lanes := make([]int, 0, len(v))
	for l := range v {
		lanes = append(lanes, l)
	}
	sort.Ints(lanes)
	b := make([]byte, 0, 5*len(lanes))
	for _, l := range lanes {
		b = binary.BigEndian.AppendUint32(b, uint32(l))
		b = append(b, byte(v[l]))
	}
	return string(b)
}
