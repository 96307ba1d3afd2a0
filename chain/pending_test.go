package chain

import (
	"testing"
	"time"

	"github.com/zkbank/zkbank/ledger"
)

// runUntil steps (proposers in turn) until validator 0 has published a
// verdict for every upload, at most max heights, and returns them.
func (n *chainNet) runUntil(ups []*Upload, max int) []ledger.Reason {
	n.t.Helper()
	for k := 0; k < max; k++ {
		done := true
		for _, u := range ups {
			if _, ok := n.verdict(0, u); !ok {
				done = false
			}
		}
		if done {
			break
		}
		n.step(int(n.height+1) % len(n.vals))
	}
	out := make([]ledger.Reason, len(ups))
	for i, u := range ups {
		r, ok := n.verdict(0, u)
		if !ok {
			n.t.Fatalf("operation %d of %d has no verdict after %d heights", i+1, len(ups), max)
		}
		out[i] = r
	}
	return out
}

// paySettled has from pay to, on a balance of claimed, and settles.
func (n *chainNet) paySettled(from, to string, amount, claimed uint64) {
	n.t.Helper()
	u := n.transfer(from, to, amount, claimed)
	n.submit(u)
	if r := n.runUntil([]*Upload{u}, 8)[0]; r != ledger.Accepted {
		n.t.Fatalf("payment decided %v", r)
	}
	n.settle()
}

// assertHolds checks every validator's book holds these balances of name.
func (n *chainNet) assertHolds(name string, avail, pending uint64) {
	n.t.Helper()
	for i := range n.vals {
		if a, p := n.balances(i, name); a != avail || p != pending {
			n.t.Fatalf("validator %d: %s holds %d available, %d pending; want %d, %d", i, name, a, p, avail, pending)
		}
	}
}

// A wallet sends 20 payments back to back, each built on the available
// balance its previous ones leave, without a single balance read: one per
// block, every one commits, and the money is where it should be.
func TestWalletSendsTwentyPaymentsBackToBackWithoutReading(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	avail := uint64(100) // alice's wallet knows it from genesis and tracks it
	var ups []*Upload
	var sent uint64
	for i := 0; i < 20; i++ {
		amount := uint64(1 + i%4)
		ups = append(ups, n.transfer("alice", "bob", amount, avail))
		avail -= amount
		sent += amount
	}
	n.submitAll(ups)
	for i, r := range n.runUntil(ups, 40) {
		if r != ledger.Accepted {
			t.Fatalf("payment %d decided %v", i+1, r)
		}
	}
	n.settle()
	n.assertHolds("alice", 100-sent, 0)
	n.assertHolds("bob", 0, sent)
	n.assertBooksIdentical()
}

// Credits land in the receiver's pending balance, and only the receiver's
// own apply moves them into its available balance, from which it can pay.
func TestApplyMovesPendingFundsIntoTheAvailableBalance(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.paySettled("alice", "bob", 30, 100)
	if a, p := n.balances(0, "bob"); a != 0 || p != 30 {
		t.Fatalf("bob holds %d available, %d pending after a credit; want 0, 30", a, p)
	}
	// bob moves 20 of his 30 pending: 10 stay pending.
	ap := n.apply("bob", 20, 30)
	spend := n.transfer("bob", "carol", 20, 20) // built on the apply, sent with it
	n.submitAll([]*Upload{ap, spend})
	for i, r := range n.runUntil([]*Upload{ap, spend}, 16) {
		if r != ledger.Accepted {
			t.Fatalf("operation %d decided %v", i, r)
		}
	}
	n.settle()
	n.assertHolds("bob", 0, 10)
	n.assertHolds("carol", 50, 20)
}

// The attack pending balances exist to stop: crediting a victim dust while
// its payment is in flight used to change the balance the payment was built
// against and get it rejected. Credits now land in pending; the payment
// commits.
func TestAttack_DustCreditCannotInvalidateAnInFlightPayment(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	dust := n.transfer("carol", "alice", 1, 50)
	pay := n.transfer("alice", "bob", 60, 100)
	n.submitAll([]*Upload{dust, pay})
	dust2 := n.transfer("carol", "alice", 1, 49)
	n.submit(dust2)
	for i, r := range n.runUntil([]*Upload{dust, pay, dust2}, 12) {
		if r != ledger.Accepted {
			t.Fatalf("operation %d decided %v", i, r)
		}
	}
	n.settle()
	if a, p := n.balances(0, "alice"); a != 40 || p != 2 {
		t.Fatalf("alice holds %d available, %d pending; want 40, 2", a, p)
	}
}

// An apply claiming more than the pending balance (its "remaining pending"
// wrapped around, as a hacked wallet would send) is rejected and moves
// nothing; so is one whose claim does not add up to the pending balance.
func TestAttack_ApplyClaimingMoreThanPendingIsRejected(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.paySettled("alice", "bob", 30, 100)

	bob := n.users["bob"]
	bob.nonce++
	over, err := n.b.BuildValues(ledger.TransferSpec{From: bob.id, Key: bob.key, To: bob.id, Height: n.vals[0].app.book.Height(), Nonce: bob.nonce},
		ledger.TransferValues(1000, (30-1000)&ledger.MaxAmount))
	if err != nil {
		t.Fatal(err)
	}
	overU := n.vals[0].open.NewUpload(over.Sealed, over.Envelopes, time.Now())
	n.submit(overU)
	lie := n.apply("bob", 35, 40) // claims 40 pending: 35 + 5 != 30
	n.submitAll([]*Upload{lie})
	got := n.runUntil([]*Upload{overU, lie}, 16)
	if got[0] == ledger.Accepted || got[1] != ledger.RejectBalanceMismatch {
		t.Fatalf("overclaiming applies decided %v, %v", got[0], got[1])
	}
	n.settle()
	n.assertHolds("bob", 0, 30)
}

// Two applies built on the same pending read would claim the same funds
// twice: the second names a height older than the first one's commit and is
// rejected as stale before anything is evaluated.
func TestAttack_SecondApplyOfTheSamePendingReadIsStale(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.paySettled("alice", "bob", 30, 100)
	first := n.apply("bob", 30, 30)
	second := n.apply("bob", 30, 30) // same read, next nonce
	n.submitAll([]*Upload{first, second})
	got := n.runUntil([]*Upload{first, second}, 16)
	if got[0] != ledger.Accepted || got[1] != ledger.RejectStaleHeight {
		t.Fatalf("applies decided %v, %v; want accepted, stale", got[0], got[1])
	}
	n.settle()
	n.assertHolds("bob", 30, 0)
}

// A payment that expires while it waits in the pools (a wallet's upload
// deferred behind others, or submitted long after it was built) is still
// proposed, and rejected as stale_height in plaintext: its wallet gets a
// verdict instead of waiting for one that never comes. Nothing moves.
func TestStalePaymentInThePoolGetsAVerdict(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	old := n.transfer("alice", "bob", 10, 100) // made at height 0
	for n.height < ledger.DefaultWindow {
		n.step(int(n.height+1) % len(n.vals))
	}
	n.submitAll([]*Upload{old})
	if got := n.runUntil([]*Upload{old}, 8); got[0] != ledger.RejectStaleHeight {
		t.Fatalf("expired payment decided %v, want stale_height", got[0])
	}
	n.assertHolds("alice", 100, 0)
	n.assertHolds("bob", 0, 0)
}
