package chain

import (
	"fmt"
	"testing"
	"time"

	"github.com/zkbank/zkbank/ledger"
)

// payMany builds a user's next pay-many as its wallet would.
func (n *chainNet) payMany(from string, balance uint64, pay ...any) *Upload {
	n.t.Helper()
	f := n.users[from]
	f.nonce++
	s := ledger.TransferSpec{From: f.id, Key: f.key, Balance: balance, Height: n.vals[0].app.book.Height(), Prev: n.prev(f), Nonce: f.nonce}
	for i := 0; i < len(pay); i += 2 {
		s.Payees = append(s.Payees, ledger.Payee{To: n.users[pay[i].(string)].id, Amount: uint64(pay[i+1].(int))})
	}
	sub, err := n.b.Build(s)
	if err != nil {
		n.t.Fatal(err)
	}
	f.last = n.vals[0].open.NewUpload(sub.Sealed, sub.Envelopes, time.Now())
	return f.last
}

// A pay-many commits on a chain beside an ordinary payment whose sender is
// one of its payees (that payee's credit needs the group's separate credit
// layer), across a restart; the payer's second pay-many is built on the
// first without a balance read. Every book is identical and nobody is named.
func TestPayMany_CommitsOnAChainAcrossARestart(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	pay := n.payMany("alice", 100, "bob", 10, "carol", 20)
	back := n.transfer("carol", "alice", 5, 50)
	n.submitAll([]*Upload{pay, back})
	n.step(1) // acks
	n.step(2) // ordered
	n.restart(3)
	out := n.settle()
	for _, u := range []*Upload{pay, back} {
		if r := out[idOf(u)]; r != ledger.Accepted {
			t.Fatalf("transfer %x: %v", u.Hash[:4], r)
		}
	}
	n.assertHolds("alice", 70, 5)
	n.assertHolds("bob", 0, 10)
	n.assertHolds("carol", 45, 20)

	pay2 := n.payMany("alice", 70, "bob", 1, "carol", 69)
	n.submitAll([]*Upload{pay2})
	if r := n.settle()[idOf(pay2)]; r != ledger.Accepted {
		t.Fatalf("second pay-many: %v", r)
	}
	n.assertHolds("alice", 0, 5)
	n.assertHolds("bob", 0, 11)
	n.assertHolds("carol", 45, 89)
	n.assertBooksIdentical()
	n.assertNobodyNamed()
}

// Pay-many payments borrow a lane of their shard per payee: a proposer
// defers those that would borrow more than MaxLentLanes of a shard (5 x 32
// payees: 160 > 128) or that do not fit the shard's 256 lanes at all
// (8 x (1 + 32) = 264), and a block that orders them all anyway is refused
// by every validator. The deferred ones commit in later blocks.
func TestAttack_PayManyOverfillingAShardIsRefused(t *testing.T) {
	t.Parallel()
	for _, payers := range []int{5, 8} {
		t.Run(fmt.Sprint(payers), func(t *testing.T) {
			t.Parallel()
			var users []genesisUser
			for i := 0; i < payers; i++ {
				users = append(users, genesisUser{fmt.Sprintf("p%d", i), 1000})
			}
			for i := 0; i < ledger.MaxPayees; i++ {
				users = append(users, genesisUser{fmt.Sprintf("r%02d", i), 0})
			}
			n := newChainNetGenesis(t, testCommittee(t), users)
			n.step(0)
			var ups []*Upload
			for i := 0; i < payers; i++ {
				var pay []any
				for j := 0; j < ledger.MaxPayees; j++ {
					pay = append(pay, fmt.Sprintf("r%02d", j), 1)
				}
				ups = append(ups, n.payMany(fmt.Sprintf("p%d", i), 1000, pay...))
			}
			n.submitAll(ups)
			n.step(1)
			n.assertRefused(n.height+1, n.orderingAll(2, ups), fmt.Sprintf("%d pay-many payments of 32 payees in one shard", payers))
			b, _ := DecodeBlock(n.step(2))
			if len(b.Subs) != MaxLentLanes/ledger.MaxPayees {
				t.Fatalf("proposer ordered %d of %d pay-many payments, want %d", len(b.Subs), payers, MaxLentLanes/ledger.MaxPayees)
			}
			out := map[[32]byte]ledger.Reason{}
			for k := 0; k < 4 && len(out) < payers; k++ {
				for id, r := range n.settle() {
					out[id] = r
				}
			}
			for _, u := range ups {
				if r := out[idOf(u)]; r != ledger.Accepted {
					t.Fatalf("pay-many %x: %v", u.Hash[:4], r)
				}
			}
			n.assertHolds("r00", 0, uint64(payers))
			n.assertBooksIdentical()
		})
	}
}
