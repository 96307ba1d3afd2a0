package chain

import (
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"github.com/zkbank/zkbank/ledger"
)

// Attacks on sealed uploads and on the piece pipeline, at the chain level:
// each test asserts that money and secrets stay safe (N = 4, f = 1, every
// piece held by 3 validators, decided by f+1 = 2 alike).

// A byzantine holder (validator 1) encrypts one of its pieces of a transfer
// with one unit moved from the new balance to the amount: were that piece
// used, the batch would pay one unit more and still pass every check. Its
// two honest co-holders attest the honest ciphertext, so the piece is
// decided on theirs: the transfer pays exactly the dealt amount, validator 1
// is named in the View of the height that decided the pieces, and it earns
// no credit for that height (whose verdicts of an earlier block credit the
// honest validators).
func TestAttack_ByzantineHolderShiftingAPieceIsOutvotedAndNamed(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	const byz = 1
	n.step(0)
	first := n.transfer("carol", "bob", 10, 50)
	n.submit(first)
	n.step(1) // acks the first
	pay := n.transfer("alice", "bob", 30, 100)
	n.submit(pay)
	n.step(2) // orders the first (honest pieces), acks the payment

	// Validator 1 turns byzantine for the payment's block. The payment is
	// 30 of 100: amount bits 1-4, new balance 70 = bits 1, 2, 6. The shift
	// makes it 31 and 69 (bit 0 set in both, bit 1 cleared in the new
	// balance): still 32-bit values summing to the balance.
	alice, _ := n.vals[0].app.book.Account(n.users["alice"].id)
	k := n.c.sh.Held(byz)[0]
	tm := n.c.p.BGV.PlaintextModulus()
	shifted := 0
	n.vals[byz].app.faults.ShiftPiece = func(shard uint32, piece, lane int, values []uint64) {
		if shard != alice.Shard || lane != alice.Lane || piece != k {
			return
		}
		shifted++
		values[0] = (values[0] + 1) % tm                                          // amount bit 0: 0 -> 1
		values[ledger.AmountBits] = (values[ledger.AmountBits] + 1) % tm          // new balance bit 0: 0 -> 1
		values[ledger.AmountBits+1] = (values[ledger.AmountBits+1] + tm - 2) % tm // new balance bit 1: 1 -> 0
	}
	if b, _ := DecodeBlock(n.step(3)); len(b.Subs) != 1 { // orders the payment
		t.Fatalf("block 4 orders %d uploads, want 1", len(b.Subs))
	}
	if shifted != 1 {
		t.Fatalf("the byzantine holder shifted %d pieces, want 1", shifted)
	}
	co := n.c.sh.Holders(k)[0]
	if co == byz {
		co = n.c.sh.Holders(k)[1]
	}
	honest, _ := DecodeExt(n.last.Sigs[co].Extension)
	bad, _ := DecodeExt(n.last.Sigs[byz].Extension)
	if h, b := attested(honest, k), attested(bad, k); h == nil || b == nil || *h == *b {
		t.Fatal("the byzantine holder's attestation of the shifted piece does not differ from an honest one")
	}

	before := n.vals[0].app.Credits()
	n.step(0) // decides the payment's pieces (and the first transfer's verdicts)
	for i := range n.vals {
		v := lastView(n, i)
		if len(v.Faulty) != 1 || v.Faulty[0] != byz {
			t.Fatalf("validator %d named %v at height %d, want [%d]", i, v.Faulty, v.Height, byz)
		}
		if r, ok := n.verdict(i, first); !ok || r != ledger.Accepted {
			t.Fatalf("validator %d: first transfer %v", i, r)
		}
	}
	after := n.vals[2].app.Credits()
	for v := range after {
		want := int64(1) // one lane decided
		if v == byz {
			want = 0
		}
		if after[v]-before[v] != want {
			t.Fatalf("credits %v -> %v: validator %d earned %d, want %d", before, after, v, after[v]-before[v], want)
		}
	}
	n.vals[byz].app.faults.ShiftPiece = nil
	n.step(1) // decides the payment
	for i := range n.vals {
		if r, ok := n.verdict(i, pay); !ok || r != ledger.Accepted {
			t.Fatalf("validator %d: payment %v", i, r)
		}
	}
	n.assertBalances(map[string]uint64{"alice": 70, "bob": 40, "carol": 40})
	n.assertBooksIdentical()
}

// attested is an extension's hash of piece k of its first shard batch.
func attested(x *Ext, k int) *[32]byte {
	for _, pa := range x.Pieces {
		if int(pa.Piece) == k {
			h := pa.Hash
			return &h
		}
	}
	return nil
}

// An attacker (carol) copies a victim's (alice's) sealed bytes and signs them
// under its own envelope (its account as sender, the hash of the same
// bytes). Every box is bound to the victim's chain, sender and nonce, so no
// validator's box opens under the copy: nobody acks it, no honest proposer
// orders it, and a byzantine proposer that orders it anyway gets its block
// refused by every honest validator. The victim's own upload then commits
// exactly as dealt.
func TestAttack_CopiedSealedUploadUnderAnotherEnvelopeIsNeverOrdered(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	victim := n.transfer("alice", "bob", 30, 100)
	n.users["carol"].nonce++
	env := victim.Envs[0]
	env.Nonce = n.users["carol"].nonce
	copied := n.resign(victim.Raw, env, "carol", true)
	if copied.Hash != victim.Hash || copied.Envs[0].From != n.users["carol"].id || copied.Envs[0].CTHash != victim.Hash {
		t.Fatal("the copy is not the victim's sealed bytes under carol's envelope")
	}
	n.submit(copied)
	for i, v := range n.vals {
		if u := v.mem.uploads[copied.ID()]; u == nil || u.Sealed == nil || u.Pieces != nil {
			t.Fatalf("validator %d opened its box under the copied envelope", i)
		}
	}
	for k := 0; k < 4; k++ {
		b, _ := DecodeBlock(n.step(int(n.height+1) % 4))
		if len(b.Subs) != 0 {
			t.Fatalf("height %d orders the copied upload", b.Height)
		}
		for _, s := range n.last.Sigs {
			x, _ := DecodeExt(s.Extension)
			for _, h := range x.Acks {
				if h == copied.ID() {
					t.Fatalf("validator %d acked the copied upload at height %d", s.Validator, n.height)
				}
			}
		}
	}
	// A byzantine proposer orders it anyway.
	n.vals[0].app.faults.TamperProposal = func(b *Block) {
		b.Subs = append(b.Subs, SubRef{CTHash: copied.Hash, Envelopes: copied.Envs})
	}
	value := n.propose(0)
	n.vals[0].app.faults.TamperProposal = nil
	for i := 1; i < len(n.vals); i++ {
		err := n.vals[i].app.ValidateProposal(n.height+1, value)
		if !errors.Is(err, ErrBlock) || !strings.Contains(err.Error(), "acked by 0 validators") {
			t.Fatalf("validator %d: the byzantine proposer's block with the copy: %v, want ErrBlock (acked by 0)", i, err)
		}
	}
	// The victim's upload (the same bytes under its own envelope) commits,
	// the copy still waiting in every pool beside it.
	n.submit(victim)
	for k := 0; k < 4; k++ {
		b, _ := DecodeBlock(n.step(int(n.height+1) % 4))
		for _, s := range b.Subs {
			if s.Envelopes[0].ID() == copied.ID() {
				t.Fatalf("height %d orders the copy", b.Height)
			}
		}
	}
	for i := range n.vals {
		if r, ok := n.verdict(i, victim); !ok || r != ledger.Accepted {
			t.Fatalf("validator %d: the victim's transfer %v (published: %v)", i, r, ok)
		}
		if _, ok := n.verdict(i, copied); ok {
			t.Fatalf("validator %d decided the copy", i)
		}
		if n.vals[i].mem.uploads[copied.ID()] == nil {
			t.Fatalf("validator %d dropped the copy with the victim's transfer", i)
		}
	}
	n.assertBalances(map[string]uint64{"alice": 70, "bob": 30, "carol": 50})
	n.assertBooksIdentical()
}

// An upload only some validators hold (here 2 of 4, fewer than N-f = 3) is
// acked by too few to be ordered: with fewer than f+1 honest holders of some
// piece, its batch could not be decided. No proposer orders it, a byzantine
// proposer that does is refused, and once a third validator holds it, it is
// acked by 3, ordered and decided.
func TestUploadAckedByFewerThanNMinusFValidatorsIsNotOrdered(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	u := n.transfer("alice", "bob", 30, 100)
	n.submit(u, 0, 1)
	for k := 0; k < 4; k++ {
		b, _ := DecodeBlock(n.step(int(n.height+1) % 4))
		if len(b.Subs) != 0 {
			t.Fatalf("height %d orders an upload acked by 2 validators", b.Height)
		}
		if h := n.acksOf(u); h != 2 {
			t.Fatalf("height %d: %d acks, want 2", n.height, h)
		}
	}
	n.vals[1].app.faults.TamperProposal = func(b *Block) {
		b.Subs = append(b.Subs, SubRef{CTHash: u.Hash, Envelopes: u.Envs})
	}
	value := n.propose(1)
	n.vals[1].app.faults.TamperProposal = nil
	for i, v := range n.vals {
		if err := v.app.ValidateProposal(n.height+1, value); !errors.Is(err, ErrBlock) || !strings.Contains(err.Error(), "acked by 2 validators, 3 needed") {
			t.Fatalf("validator %d: a block ordering an upload acked by 2: %v", i, err)
		}
	}
	n.submit(u, 2)
	n.step(int(n.height+1) % 4)
	if h := n.acksOf(u); h != 3 {
		t.Fatalf("%d acks once a third validator holds it, want 3", h)
	}
	n.submit(u, 3) // its node fetches what the next proposal references
	if got := n.settle(); got[idOf(u)] != ledger.Accepted {
		t.Fatalf("once acked by 3: %v", got[idOf(u)])
	}
	n.assertBalances(map[string]uint64{"alice": 70, "bob": 30})
}

// A client deals validator 3 a box that does not open (garbage in its
// place, the envelope re-signed over the new bytes), hoping to stall the
// chain, to make validator 3 abstain on other people's transfers, or to
// have it named for pieces it cannot compute. The other three ack it (N-f),
// so it is ordered, in a group of its own (its ack set differs from that of
// an honest transfer of the same shard and block); validator 3 abstains on
// that group's pieces only, its co-holders decide every piece, both
// transfers commit as dealt, and validator 3 is never named faulty nor
// loses credit.
func TestAttack_InconsistentDealToOneValidatorNeitherBlocksNorFramesIt(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	const victim = 3
	n.step(0)
	u := n.transfer("alice", "bob", 30, 100)
	var st ledger.SealedTransfer
	if err := st.UnmarshalBinary(u.Raw); err != nil {
		t.Fatal(err)
	}
	st.Boxes[victim] = make([]byte, len(st.Boxes[victim]))
	rand.Read(st.Boxes[victim])
	raw, _ := st.MarshalBinary()
	bad := n.resign(raw, u.Envs[0], "alice", false)
	honest := n.transfer("carol", "bob", 10, 50)
	n.submit(bad)
	n.submit(honest)
	for i, v := range n.vals {
		if opened := v.mem.uploads[bad.ID()].Pieces != nil; opened != (i != victim) {
			t.Fatalf("validator %d opened its box: %v", i, opened)
		}
	}
	n.step(1) // acks (three for the bad deal, four for the honest transfer)
	if h, g := n.acksOf(bad), n.acksOf(honest); h != 3 || g != 4 {
		t.Fatalf("%d and %d acks, want 3 and 4", h, g)
	}
	if b, _ := DecodeBlock(n.step(2)); len(b.Subs) != 2 {
		t.Fatalf("block 3 orders %d uploads, want 2", len(b.Subs))
	}
	held := len(n.c.sh.Held(0))
	for _, s := range n.last.Sigs {
		x, _ := DecodeExt(s.Extension)
		groups := map[uint32]bool{}
		for _, pa := range x.Pieces {
			groups[pa.Group] = true
		}
		// Bob, the receiver, sends nothing: both groups carry their credits
		// in their own batch ciphertexts (no separate credit layer).
		want := 2
		if s.Validator == victim {
			want = 1
		}
		if len(groups) != want || len(x.Pieces) != want*held {
			t.Fatalf("validator %d attests %d pieces of %d parts of block 3, want %d of %d", s.Validator, len(x.Pieces), len(groups), want*held, want)
		}
	}
	got := n.settle()
	if got[idOf(bad)] != ledger.Accepted || got[idOf(honest)] != ledger.Accepted {
		t.Fatalf("the transfers were decided %v and %v", got[idOf(bad)], got[idOf(honest)])
	}
	n.assertNobodyNamed()
	if cr := n.vals[0].app.Credits(); cr[victim] != cr[0] || cr[0] == 0 {
		t.Fatalf("credits %v, want the same for every validator", cr)
	}
	n.assertBalances(map[string]uint64{"alice": 70, "bob": 40, "carol": 40})
	n.assertBooksIdentical()
}

// A validator restarted right after the block ordering a transfer (its
// pieces not yet decided) and again right after the block deciding them
// (its checks evaluated but not decided), each time with an empty piece
// cache, continues from its store and ends with a book byte-identical to
// the others', having decided both transfers in flight as they did.
func TestRestartMidPipelineGivesTheSameBook(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	const r = 2
	n.step(0)
	a := n.transfer("alice", "bob", 30, 100)
	n.submit(a)
	n.step(1) // acks a
	b := n.transfer("carol", "alice", 20, 50)
	n.submit(b)
	n.step(2) // orders a, acks b
	n.restart(r)
	n.step(3) // orders b, decides a's pieces
	n.restart(r)
	n.step(0) // decides a, decides b's pieces
	n.restart(r)
	n.settle()
	for _, u := range []*Upload{a, b} {
		for i := range n.vals {
			if got, ok := n.verdict(i, u); !ok || got != ledger.Accepted {
				t.Fatalf("validator %d decided %v (published: %v)", i, got, ok)
			}
		}
	}
	n.assertNobodyNamed()
	n.assertBooksIdentical()
	n.assertBalances(map[string]uint64{"alice": 90, "bob": 30, "carol": 30})
}

// A byzantine proposer, colluding with an account holder (carol), swaps the
// envelope of a victim's upload that every validator acked for carol's
// envelope over the same sealed bytes. Were the block decided on the pieces
// validators opened under the victim's envelope, placed in carol's lane,
// carol's transfer would be accepted exactly when carol's balance equals
// the victim's (amount + new balance), and carol's balance would then drop
// by the victim's amount, which carol reads back: the victim's secrets would
// leak, and its transfer would be dropped from every mempool. Acks name the
// transfer (its envelope's id), not the sealed bytes: carol's envelope was
// acked by nobody, so every honest validator refuses the block, and the
// victim's transfer is then ordered and decided as dealt.
func TestAttack_ByzantineProposerSwappingTheEnvelopeOfAnAckedUploadLearnsNothing(t *testing.T) {
	t.Parallel()
	n := newChainNetGenesis(t, testCommittee(t), []genesisUser{{"alice", 100}, {"bob", 0}, {"carol", 100}})
	n.step(0)
	victim := n.transfer("alice", "bob", 30, 100)
	n.users["carol"].nonce++
	env := victim.Envs[0]
	env.Nonce = n.users["carol"].nonce
	copied := n.resign(victim.Raw, env, "carol", true)
	n.submit(victim)
	n.step(1) // acks the victim's transfer
	if h := n.acksOf(victim); h != 4 {
		t.Fatalf("the victim's transfer acked by %d, want 4", h)
	}
	n.vals[2].app.faults.TamperProposal = func(b *Block) {
		for i := range b.Subs {
			if b.Subs[i].CTHash == copied.Hash {
				b.Subs[i].Envelopes = copied.Envs
			}
		}
	}
	value := n.propose(2)
	n.vals[2].app.faults.TamperProposal = nil
	if b, _ := DecodeBlock(value); len(b.Subs) != 1 || b.Subs[0].Envelopes[0].From != n.users["carol"].id {
		t.Fatal("the byzantine proposer did not swap the envelope")
	}
	for i, v := range n.vals {
		if i == 2 {
			continue
		}
		if err := v.app.ValidateProposal(n.height+1, value); !errors.Is(err, ErrBlock) {
			t.Fatalf("validator %d accepts the block with the swapped envelope: %v", i, err)
		}
	}
	if got := n.settle(); got[idOf(victim)] != ledger.Accepted || len(got) != 1 {
		t.Fatalf("decided %v, want only the victim's transfer, accepted", got)
	}
	n.assertBalances(map[string]uint64{"alice": 70, "bob": 30, "carol": 100})
	n.assertBooksIdentical()
}

// A byzantine holder (validator 1) encrypts its piece of a payment's credit
// with 1,000 more than its piece of the amount: were it used, bob would
// receive 1,030 for alice's 30. Its two honest co-holders attest the honest
// credit ciphertext (the same pieces placed in bob's lane), so the credit is
// decided on theirs: bob's pending balance gains exactly 30, validator 1 is
// named, and every validator's book is the same.
func TestAttack_ByzantineHolderCreditingMoreThanTheDebitIsOutvotedAndNamed(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	const byz = 1
	n.step(0)
	pay := n.transfer("alice", "bob", 30, 100)
	n.submit(pay)
	n.step(1) // acks the payment
	k := n.c.sh.Held(byz)[0]
	tm := n.c.p.BGV.PlaintextModulus()
	shifted := 0
	n.vals[byz].app.faults.ShiftCredit = func(shard uint32, piece int, credits []ledger.LaneCredit) []ledger.LaneCredit {
		if piece != k {
			return credits
		}
		out := make([]ledger.LaneCredit, len(credits))
		for i, c := range credits {
			v := append([]uint64(nil), c.Piece.Values...)
			v[0] = (v[0] + 1000) % tm
			out[i] = ledger.LaneCredit{Lane: c.Lane, Index: c.Index, Piece: &ledger.Piece{Values: v, Seed: c.Piece.Seed}}
			shifted++
		}
		return out
	}
	if b, _ := DecodeBlock(n.step(2)); len(b.Subs) != 1 { // orders the payment
		t.Fatalf("the block orders %d uploads, want 1", len(b.Subs))
	}
	if shifted != 1 {
		t.Fatalf("the byzantine holder shifted %d credits, want 1", shifted)
	}
	n.step(3) // decides the payment's pieces and credit
	for i := range n.vals {
		v := lastView(n, i)
		if len(v.Faulty) != 1 || v.Faulty[0] != byz {
			t.Fatalf("validator %d named %v at height %d, want [%d]", i, v.Faulty, v.Height, byz)
		}
	}
	n.vals[byz].app.faults.ShiftCredit = nil
	n.step(0) // decides the payment
	for i := range n.vals {
		if r, ok := n.verdict(i, pay); !ok || r != ledger.Accepted {
			t.Fatalf("validator %d: payment %v", i, r)
		}
	}
	n.assertHolds("alice", 70, 0)
	n.assertHolds("bob", 0, 30)
	n.assertBooksIdentical()
}
