package chain

import (
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/zkbank/zkbank/ledger"
)

// Review of pay-many on a chain.

// A pay-many whose payees sit in another shard at the very lane numbers
// lent to it, one payee being the owner of a lent lane in the payer's own
// shard, beside a single payment whose credit rides in layer 0; a validator
// restarts between ordering and evaluation. Every credit lands once, the
// lent lanes' owners lose nothing, every book is identical, nobody is named.
func TestReviewPayMany_CrossShardPayeesAtLentLanesAcrossARestart(t *testing.T) {
	t.Parallel()
	// Shard 0: alice (lane 0), dave (lane 1), bob (lane 3), fillers.
	// alice's pay-many of 3 borrows lanes 2, 3, 4 (the lowest not taken).
	// Shard 1: zed (lane 2), yan (lane 4), xav (lane 9).
	users := []genesisUser{{"alice", 1000}, {"dave", 300}, {"f002", 0}, {"bob", 8}}
	for i := len(users); i < 256; i++ {
		users = append(users, genesisUser{fmt.Sprintf("f%03d", i), 0})
	}
	for i := 0; i < 10; i++ {
		name := fmt.Sprintf("g%03d", i)
		switch i {
		case 2:
			name = "zed"
		case 4:
			name = "yan"
		case 9:
			name = "xav"
		}
		users = append(users, genesisUser{name, uint64(i)})
	}
	n := newChainNetGenesis(t, testCommittee(t), users)
	for name, want := range map[string][2]uint64{"bob": {0, 3}, "zed": {1, 2}, "yan": {1, 4}, "xav": {1, 9}} {
		a, _ := n.vals[0].app.book.Account(n.users[name].id)
		if a.Shard != uint32(want[0]) || a.Lane != int(want[1]) {
			t.Fatalf("%s at shard %d lane %d", name, a.Shard, a.Lane)
		}
	}
	n.step(0)
	pay := n.payMany("alice", 1000, "zed", 100, "bob", 200, "yan", 300)
	single := n.transfer("dave", "xav", 30, 300)
	n.submitAll([]*Upload{pay, single})
	n.step(1) // acks
	n.step(2) // ordered
	n.restart(3)
	out := n.settle()
	for _, u := range []*Upload{pay, single} {
		if r := out[idOf(u)]; r != ledger.Accepted {
			t.Fatalf("%x: %v", u.Hash[:4], r)
		}
	}
	n.assertHolds("alice", 400, 0)
	n.assertHolds("dave", 270, 0)
	n.assertHolds("bob", 8, 200)
	n.assertHolds("f002", 0, 0)
	n.assertHolds("zed", 2, 100)
	n.assertHolds("yan", 4, 300)
	n.assertHolds("xav", 9, 30)
	n.assertBooksIdentical()
	n.assertNobodyNamed()
}

// A cheating pay-many (non-boolean payee slot) beside an honest pay-many of
// the same shard: the cheater's payees get nothing, the honest ones are
// paid, and nothing else moves.
func TestReviewPayMany_ForgedPayeeSlotOnAChain(t *testing.T) {
	t.Parallel()
	users := []genesisUser{{"alice", 100}, {"mal", 100}, {"bob", 0}, {"carol", 0}}
	n := newChainNetGenesis(t, testCommittee(t), users)
	n.step(0)
	honest := n.payMany("alice", 100, "bob", 10, "carol", 20)
	f := n.users["mal"]
	f.nonce++
	s := ledger.TransferSpec{From: f.id, Key: f.key, Balance: 100, Height: n.vals[0].app.book.Height(), Prev: n.prev(f), Nonce: f.nonce,
		Payees: []ledger.Payee{{To: n.users["bob"].id}, {To: n.users["carol"].id}}}
	vals := ledger.ManyValues([]uint64{0, 40}, 57)
	vals[ledger.SlotValues+3] = 3 // 3 + 40 + 57 = 100, but 3 is not a bit of slot 3
	sub, err := n.b.BuildValues(s, vals)
	if err != nil {
		t.Fatal(err)
	}
	bad := n.vals[0].open.NewUpload(sub.Sealed, sub.Envelopes, n.vals[0].cfg.Now())
	n.submitAll([]*Upload{honest, bad})
	out := n.settle()
	if r := out[idOf(honest)]; r != ledger.Accepted {
		t.Fatalf("honest: %v", r)
	}
	if r := out[idOf(bad)]; r != ledger.RejectAmountRange {
		t.Fatalf("forged: %v", r)
	}
	n.assertHolds("alice", 70, 0)
	n.assertHolds("mal", 100, 0)
	n.assertHolds("bob", 0, 10)
	n.assertHolds("carol", 0, 20)
	n.assertBooksIdentical()
	n.assertNobodyNamed()
}

// A byzantine proposer cannot move lent lanes onto another payer's lane or
// give a pay-many fewer lanes: lanes are not in the block at all (every
// validator derives them from block order), so the only lever is the
// order, and reordering two pay-manys only swaps their lanes.
func TestReviewPayMany_LentLanesDependOnlyOnTheBlock(t *testing.T) {
	t.Parallel()
	c := testCommittee(t)
	var accts []ledger.GenesisAccount
	var ids []ledger.AccountID
	var keys []ed25519.PrivateKey
	for i := 0; i < 8; i++ {
		pub, key, _ := ed25519.GenerateKey(rand.Reader)
		accts = append(accts, ledger.GenesisAccount{SignPub: pub, Balance: 100})
		ids, keys = append(ids, ledger.AccountIDOf(pub)), append(keys, key)
	}
	book, err := ledger.NewBook(c.eng.Clone(), testChain, accts)
	if err != nil {
		t.Fatal(err)
	}
	a := &App{p: c.p, n: c.com.N}
	env := func(from int, to ...int) ledger.Envelope {
		e := ledger.Envelope{Chain: testChain, From: ids[from], To: ids[to[0]], Nonce: 1}
		for _, x := range to[1:] {
			e.More = append(e.More, ids[x])
		}
		e.Sig = ed25519.Sign(keys[from], e.SigningBytes())
		return e
	}
	blk := &Block{Height: 1, Subs: []SubRef{
		{Envelopes: []ledger.Envelope{env(0, 5, 6, 7)}},
		{Envelopes: []ledger.Envelope{env(2, 1)}},
		{Envelopes: []ledger.Envelope{env(4, 5, 6)}},
	}}
	acks := map[[32]byte]uint64{}
	for _, s := range blk.Subs {
		acks[s.Envelopes[0].ID()] = 1<<c.com.N - 1
	}
	l := a.layoutOf(book, blk, acks, nil)
	if l.overfull || len(l.groups) != 1 {
		t.Fatalf("layout %+v", l)
	}
	g := l.groups[0]
	used := map[int]bool{}
	for i, lane := range g.lanes {
		if used[lane] {
			t.Fatalf("lane %d twice", lane)
		}
		used[lane] = true
		for _, m := range g.many[i] {
			if used[m] {
				t.Fatalf("lent lane %d twice or a payer's", m)
			}
			used[m] = true
		}
	}
	if fmt.Sprint(g.many) != "[[1 3 5] [] [6 7]]" {
		t.Fatalf("lent lanes %v", g.many)
	}
	// Layer 0 never holds a credit in a lent or paying lane.
	busy := map[int]bool{}
	for _, b := range g.busy() {
		busy[b] = true
	}
	for c := range g.to {
		if g.layer[c] == 0 && busy[g.to[c]] {
			t.Fatalf("credit %d in busy lane %d of layer 0", c, g.to[c])
		}
	}
	if g.layers > 1 {
		t.Fatalf("%d credit layers", g.layers)
	}
}

// Liveness (not safety): a pay-many borrows one lane of its shard per
// payee, and zero amounts cost its sender nothing, so a few accounts paying
// 32 payees each could fill a shard's 256 lanes and defer the operations of
// every other account of that shard (before pay-many an attacker needed an
// account per lane). MaxLentLanes caps the lanes pay-many payments of a
// shard borrow per block at half the shard: 4 attacker pay-manys, and the
// other half stays for everyone else's operations.
func TestReviewPayMany_FewPayManysCannotCrowdOutTheirShard(t *testing.T) {
	c := testCommittee(t)
	var accts []ledger.GenesisAccount
	var ids []ledger.AccountID
	for i := 0; i < 256+ledger.MaxPayees; i++ {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		accts = append(accts, ledger.GenesisAccount{SignPub: pub})
		ids = append(ids, ledger.AccountIDOf(pub))
	}
	book, err := ledger.NewBook(c.eng.Clone(), testChain, accts)
	if err != nil {
		t.Fatal(err)
	}
	lc := newLaneCap(c.p.Lanes)
	attackers := 0
	for i := 0; i < 8; i++ {
		e := ledger.Envelope{From: ids[i], To: ids[256]}
		for j := 1; j < ledger.MaxPayees; j++ {
			e.More = append(e.More, ids[256+j])
		}
		if lc.admit(book, &e) {
			attackers++
		}
	}
	honest := 0
	for i := 8; i < 256; i++ {
		e := ledger.Envelope{From: ids[i], To: ids[(i+1)%256]}
		if lc.admit(book, &e) {
			honest++
		}
	}
	t.Logf("%d attacker pay-manys admitted, then %d of 248 honest payments of the same shard", attackers, honest)
	if attackers != MaxLentLanes/ledger.MaxPayees || honest != 256-attackers*(1+ledger.MaxPayees) || honest < c.p.Lanes-MaxLentLanes-attackers {
		t.Fatalf("attackers %d honest %d", attackers, honest)
	}
	// A block's payments are bounded too: pay-many payments count one per
	// payee against MaxBlockCredits, whatever shards they come from.
	var many []ledger.GenesisAccount
	var mids []ledger.AccountID
	for i := 0; i < 9*c.p.Lanes; i++ {
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		many = append(many, ledger.GenesisAccount{SignPub: pub})
		mids = append(mids, ledger.AccountIDOf(pub))
	}
	if book, err = ledger.NewBook(c.eng.Clone(), testChain, many); err != nil {
		t.Fatal(err)
	}
	lc = newLaneCap(c.p.Lanes)
	admitted := 0
	for shard := 1; shard < 9; shard++ {
		for k := 0; k < MaxLentLanes/ledger.MaxPayees+1; k++ {
			e := ledger.Envelope{From: mids[shard*c.p.Lanes+k], To: mids[0]}
			for j := 1; j < ledger.MaxPayees; j++ {
				e.More = append(e.More, mids[j])
			}
			if lc.admit(book, &e) {
				admitted += len(e.Payees())
			}
		}
	}
	if admitted != MaxBlockCredits {
		t.Fatalf("%d payments admitted in one block, bound %d", admitted, MaxBlockCredits)
	}
}
