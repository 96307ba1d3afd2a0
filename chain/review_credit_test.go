package chain

import (
	"crypto/ed25519"
	"fmt"
	"sort"
	"testing"

	"github.com/zkbank/zkbank/ledger"
)

// Review of "credits from pieces" at the chain level: the attestation
// indexes of credit layers, their decision, restarts, and what a client or a
// byzantine validator can make of them.

// reviewParts returns, per validator of the last certificate, the
// attestation indexes (parts) its extension attests and how many
// attestations it holds.
func reviewParts(t *testing.T, n *chainNet) (parts map[int]map[uint32]bool, count map[int]int) {
	t.Helper()
	parts, count = map[int]map[uint32]bool{}, map[int]int{}
	for _, s := range n.last.Sigs {
		x, err := DecodeExt(s.Extension)
		if err != nil {
			t.Fatal(err)
		}
		parts[s.Validator] = map[uint32]bool{}
		for _, pa := range x.Pieces {
			parts[s.Validator][pa.Group] = true
		}
		count[s.Validator] = len(x.Pieces)
	}
	return parts, count
}

// payEachOther submits alice -> carol 30 and carol -> alice 10 and lets a
// block ack them: each receiver's lane is a sender's, so the group the next
// block orders them in needs its separate credit layer.
func payEachOther(n *chainNet) (pay, back *Upload) {
	pay, back = n.transfer("alice", "carol", 30, 100), n.transfer("carol", "alice", 10, 50)
	n.submitAll([]*Upload{pay, back})
	n.step(1) // acks
	return pay, back
}

// 40 payers of shard 0 and alice pay into lane 1: 36 payments to bob
// (shard 0, lane 1) and 5 to bob2 (shard 1, lane 1), so two receivers of
// different shards share the lane's credit slots. A block carries at most
// MaxCreditsPerLane of them (one credit ciphertext); the rest follow in the
// next block. One payment to each is an overdraft (rejected: its credit
// must not land). Two validators restart
// in the pipeline: one right after attesting the credits (it lost its piece
// cache), one right after the credits were decided (New re-decides them
// with trusted=true from its store). Every verdict is right, exactly the
// accepted amounts land in the receivers' pending balances, nobody is
// named, and every book is identical.
func TestReviewCredit_ManyPayersTwoShardsOneLaneAcrossRestarts(t *testing.T) {
	t.Parallel()
	const payers = 40
	users := []genesisUser{{"alice", 100}, {"bob", 0}}
	for i := 0; i < payers; i++ {
		users = append(users, genesisUser{fmt.Sprintf("p%02d", i), 10})
	}
	for len(users) < 256 {
		users = append(users, genesisUser{fmt.Sprintf("fill%03d", len(users)), 0})
	}
	users = append(users, genesisUser{"zed", 0}, genesisUser{"bob2", 0})
	n := newChainNetGenesis(t, testCommittee(t), users)
	bob, _ := n.vals[0].app.book.Account(n.users["bob"].id)
	bob2, _ := n.vals[0].app.book.Account(n.users["bob2"].id)
	if bob.Lane != bob2.Lane || bob.Shard == bob2.Shard {
		t.Fatalf("bob at (%d, %d), bob2 at (%d, %d): want one lane in two shards", bob.Shard, bob.Lane, bob2.Shard, bob2.Lane)
	}
	n.step(0)
	var ups []*Upload
	wantBob, wantBob2 := uint64(0), uint64(30)
	rejected := map[[32]byte]bool{}
	for i := 0; i < payers; i++ {
		name := fmt.Sprintf("p%02d", i)
		var u *Upload
		switch {
		case i < 35:
			amt := uint64(i%9 + 1)
			u = n.transfer(name, "bob", amt, 10)
			wantBob += amt
		case i < 38:
			u = n.transfer(name, "bob2", 4, 10)
			wantBob2 += 4
		case i == 38:
			u = n.transfer(name, "bob", 50, 50) // overdraft: holds 10
			rejected[idOf(u)] = true
		default:
			u = n.transfer(name, "bob2", 5, 9) // wrong claimed balance
			rejected[idOf(u)] = true
		}
		ups = append(ups, u)
	}
	ups = append(ups, n.transfer("alice", "bob2", 30, 100))
	n.submitAll(ups)
	n.step(1) // acks
	b, _ := DecodeBlock(n.step(2))
	if len(b.Subs) != MaxCreditsPerLane {
		t.Fatalf("block 3 orders %d of %d uploads, want %d", len(b.Subs), len(ups), MaxCreditsPerLane)
	}
	parts, _ := reviewParts(t, n)
	for v, ps := range parts {
		if len(ps) != 1 {
			t.Fatalf("validator %d attests %d parts of block 3, want 1 (one group; bob and bob2 send nothing, so their lane is free in the batch ciphertext)", v, len(ps))
		}
	}
	n.restart(2) // lost its cache right after attesting the credits
	n.step(3)    // the credits are decided
	n.restart(3) // re-decides them (trusted) from its store
	n.settle()
	for _, u := range ups {
		want := ledger.Accepted
		if rejected[idOf(u)] {
			want = ledger.RejectBalanceMismatch
		}
		for i := range n.vals {
			r, ok := n.verdict(i, u)
			if !ok || (want == ledger.Accepted) != (r == ledger.Accepted) {
				t.Fatalf("validator %d: %s decided %v (published %v), want %v", i, u.Envs[0].From.Short(), r, ok, want)
			}
		}
	}
	n.assertNobodyNamed()
	n.assertHolds("bob", 0, wantBob)
	n.assertHolds("bob2", 0, wantBob2)
	n.assertHolds("alice", 70, 0)
	n.assertHolds("p00", 9, 0)
	n.assertHolds("p38", 10, 0)
	n.assertHolds("p39", 10, 0)
	n.assertBooksIdentical()
}

// A byzantine validator (1) attests its pieces of a payment's batch but
// withholds its credit attestations, hoping a proposer carrying a bare
// quorum without an honest holder (2) fails the honest payment closed (a
// credit piece then has a single attestation). Such a block is refused;
// with every precommit carried the payment commits, and withholding names
// nobody.
func TestReviewCredit_WithheldCreditAttestationsCannotFailAnHonestPayment(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	const byz = 1
	n.step(0)
	pay, back := payEachOther(n)
	value := n.propose(2)
	exts := n.precommit(value, 0)
	x, err := DecodeExt(exts[byz])
	if err != nil {
		t.Fatal(err)
	}
	var kept []PieceAttest
	for _, pa := range x.Pieces {
		if pa.Group == 0 { // the group's batch; parts >= 1 are its credit layers
			kept = append(kept, pa)
		}
	}
	if len(kept) == len(x.Pieces) || len(kept) == 0 {
		t.Fatalf("validator %d attests %d pieces, %d of the batch", byz, len(x.Pieces), len(kept))
	}
	x.Pieces = kept
	exts[byz] = x.Encode()
	for i := range n.vals {
		if i != byz {
			if err := n.vals[i].app.VerifyExtension(n.height+1, byz, value, exts[byz]); err != nil {
				t.Fatalf("validator %d refuses the withholding extension: %v", i, err)
			}
		}
	}
	n.finalize(value, n.certify(value, 0, exts, 0, 1, 2, 3))
	// A proposer carrying a bare quorum without validator 2.
	full := n.propose(3)
	bl, err := DecodeBlock(full)
	if err != nil {
		t.Fatal(err)
	}
	var lc []Precommit
	for _, p := range bl.LastCommit {
		if p.Validator != 2 {
			lc = append(lc, p)
		}
	}
	bl.LastCommit = lc
	n.assertRefused(n.height+1, bl.Encode(), "a quorum without an honest holder of a withheld credit piece")
	// Every precommit carried: decided.
	exts = n.precommit(full, 0)
	n.finalize(full, n.certify(full, 0, exts, 0, 1, 2, 3))
	n.settle()
	for i := range n.vals {
		for _, u := range []*Upload{pay, back} {
			if r, ok := n.verdict(i, u); !ok || r != ledger.Accepted {
				t.Fatalf("validator %d: an honest payment decided %v", i, r)
			}
		}
	}
	n.assertNobodyNamed()
	n.assertHolds("alice", 70, 10)
	n.assertHolds("carol", 40, 30)
	n.assertBooksIdentical()
}

// VerifyExtension bounds attestation indexes by the block's parts: a
// credit part of a piece the validator holds is accepted, an index past
// the last credit layer or a credit part of a piece it does not hold is
// refused.
func TestReviewCredit_ExtensionAttestationIndexesAreBounded(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	payEachOther(n)
	value := n.step(2) // one group (part 0) and its credit layer (part 1)
	const v = 1
	var raw []byte
	for _, s := range n.last.Sigs {
		if s.Validator == v {
			raw = s.Extension
		}
	}
	with := func(pa PieceAttest) []byte {
		x, err := DecodeExt(raw)
		if err != nil {
			t.Fatal(err)
		}
		var ps []PieceAttest
		for _, q := range x.Pieces {
			if q.Group != pa.Group || q.Piece != pa.Piece {
				ps = append(ps, q)
			}
		}
		ps = append(ps, pa)
		sort.Slice(ps, func(i, j int) bool {
			return ps[i].Group < ps[j].Group || ps[i].Group == ps[j].Group && ps[i].Piece < ps[j].Piece
		})
		x.Pieces = ps
		return x.Encode()
	}
	held := n.c.sh.Held(v)
	var notHeld uint32
	for k := 0; k < n.c.sh.Pieces(); k++ {
		if !n.c.sh.Holds(v, k) {
			notHeld = uint32(k)
		}
	}
	app := n.vals[0].app
	h := n.height
	if err := app.VerifyExtension(h, v, value, raw); err != nil {
		t.Fatalf("the genuine extension is refused: %v", err)
	}
	if err := app.VerifyExtension(h, v, value, with(PieceAttest{Group: 1, Piece: uint32(held[0])})); err != nil {
		t.Fatalf("a credit part of a held piece is refused: %v", err)
	}
	if err := app.VerifyExtension(h, v, value, with(PieceAttest{Group: 2, Piece: uint32(held[0])})); err == nil {
		t.Fatal("an attestation past the last credit layer is accepted")
	}
	if err := app.VerifyExtension(h, v, value, with(PieceAttest{Group: 1, Piece: notHeld})); err == nil {
		t.Fatal("a credit attestation of a piece the validator does not hold is accepted")
	}
}

// An apply (To == From) has no credit: its group is one part, no credit
// layer; it moves exactly the pending amount.
func TestReviewCredit_ApplyGroupsHaveNoCreditLayer(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	n.submit(n.transfer("alice", "bob", 30, 100))
	n.settle()
	n.assertHolds("bob", 0, 30)
	n.submit(n.apply("bob", 30, 30))
	n.step(int(n.height+1) % 4) // acks
	b, _ := DecodeBlock(n.step(int(n.height+1) % 4))
	if len(b.Subs) != 1 {
		t.Fatalf("the block orders %d uploads", len(b.Subs))
	}
	parts, count := reviewParts(t, n)
	for v, ps := range parts {
		if len(ps) != 1 || count[v] != len(n.c.sh.Held(v)) {
			t.Fatalf("validator %d attests %d parts (%d pieces) for an apply, want 1 part", v, len(ps), count[v])
		}
	}
	n.settle()
	n.assertHolds("bob", 30, 0)
	n.assertHolds("alice", 70, 0)
	n.assertNobodyNamed()
	n.assertBooksIdentical()
}

// DoS: the encryption (and storage and fetching) a group costs would depend
// on how many of its payments go to one receiving lane, were a group's
// credits to one lane allowed past the 32 slots a ciphertext has there (256
// zero-value payments to one receiver would cost 1 + 8 ciphertexts per
// piece held). Proposers order at most MaxCreditsPerLane payments of one
// shard into one receiving lane per block: 65 payers to one receiver get
// 32, 32 and 1 ordered in three blocks, each group costing at most two
// ciphertexts per piece held. A block needing more than one separate credit
// ciphertext for a group (here: all 65 at once, 32 in the batch and 33
// beyond) is refused by every validator.
func TestReviewCredit_PayeeConcentrationMultipliesPieceWork(t *testing.T) {
	t.Parallel()
	const payers = 2*MaxCreditsPerLane + 1
	users := []genesisUser{{"dave", 0}}
	for i := 0; i < payers; i++ {
		users = append(users, genesisUser{fmt.Sprintf("s%02d", i), 0})
	}
	n := newChainNetGenesis(t, testCommittee(t), users)
	n.step(0)
	var ups []*Upload
	for i := 0; i < payers; i++ {
		ups = append(ups, n.transfer(fmt.Sprintf("s%02d", i), "dave", 0, 0))
	}
	n.submitAll(ups)
	n.step(1)
	over := n.orderingAll(2, ups)
	if b, _ := DecodeBlock(over); len(b.Subs) != payers {
		t.Fatalf("tampered block orders %d, want %d", len(b.Subs), payers)
	}
	n.assertRefused(n.height+1, over, "65 payments of one shard into one lane")
	for i, want := range []int{MaxCreditsPerLane, MaxCreditsPerLane, 1} {
		b, _ := DecodeBlock(n.step((2 + i) % len(n.vals)))
		if len(b.Subs) != want {
			t.Fatalf("block %d orders %d, want %d", i, len(b.Subs), want)
		}
		parts, count := reviewParts(t, n)
		for v := range parts {
			if held := len(n.c.sh.Held(v)); count[v] > 2*held {
				t.Errorf("validator %d encrypts %d piece ciphertexts for one group: more than 2 per piece held", v, count[v])
			}
		}
	}
}

// A payment to an account the same block opens: its credit is laid out on
// the book with the block's openings (the receiver's new lane), and two
// validators restart around it (one lays the block out as its last, one
// re-decides it as the previous block with the next block's openings held
// back). The credit lands in the new account, and every book is identical.
func TestReviewCredit_PaymentToAnAccountOpenedInTheSameBlockAcrossRestarts(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	o := newOpen(t, n, true)
	id := ledger.AccountIDOf(ed25519.PublicKey(o.SignPub))
	pay := n.operation("alice", id, 25, 100)
	n.submit(pay)
	n.step(1) // acks
	for _, v := range n.vals {
		v.mem.opens[string(o.SignPub)] = o
	}
	b, _ := DecodeBlock(n.step(2))
	if len(b.Opens) != 1 || len(b.Subs) != 1 {
		t.Fatalf("block 3 opens %d accounts and orders %d uploads, want 1 and 1", len(b.Opens), len(b.Subs))
	}
	n.restart(1)
	n.step(3)
	n.restart(2)
	n.settle()
	for i := range n.vals {
		if r, ok := n.verdict(i, pay); !ok || r != ledger.Accepted {
			t.Fatalf("validator %d: payment to the new account decided %v", i, r)
		}
	}
	n.users["newbie"] = &user{id: id}
	n.assertHolds("newbie", 0, 25)
	n.assertHolds("alice", 75, 0)
	n.assertNobodyNamed()
	n.assertBooksIdentical()
}
