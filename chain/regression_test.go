package chain

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/zkbank/zkbank/ledger"
)

// Regressions found by an adversarial review of the carried-precommit and
// robust-decision code.

// A block that opens account X and orders a transfer to X is laid out on
// the book with X open, by live validators and by one restarted between
// that block and the next, or between the next (which evaluates it on its
// decided pieces) and the one after (a restarted validator re-evaluates it
// on a book that already holds X): no divergence after a restart.
func TestOpenAndPayInOneBlockDecideTheSameAfterARestart(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	n.users["xavier"] = &user{key: key, pub: pub, id: ledger.AccountIDOf(pub)}
	o := Open{SignPub: pub, Kind: ledger.KindDeposit, Sig: ed25519.Sign(key, ledger.OpenAccountBytes(testChain, ledger.KindDeposit))}
	u := n.transfer("alice", "xavier", 10, 100)
	n.submit(u)
	n.step(1) // acks
	for _, v := range n.vals {
		v.mem.opens[string(pub)] = o
	}
	b, _ := DecodeBlock(n.step(2)) // height 3 opens X and orders alice -> X
	if len(b.Opens) != 1 || len(b.Subs) != 1 {
		t.Fatalf("block 3 opens %d accounts and orders %d uploads, want 1 and 1", len(b.Opens), len(b.Subs))
	}

	n.restart(3)
	n.step(3) // decides the pieces of height 3, evaluates it
	restarted := n.restart(3)
	n.step(0) // decides height 3
	if got := n.outcomes(0)[idOf(u)]; got != ledger.Accepted {
		t.Fatalf("payment to an account opened in the same block: %v", got)
	}
	if got := n.outcomes(3)[idOf(u)]; got != ledger.Accepted {
		t.Fatalf("restarted validator decided %v", got)
	}
	for h := 4; h <= 5; h++ {
		if f := n.vals[3].obs.views[h-1].Faulty; len(f) != 0 {
			t.Fatalf("restarted validator named %v faulty at %d", f, h)
		}
	}
	if !bytes.Equal(bookBytes(t, restarted.book), bookBytes(t, n.vals[0].app.book)) {
		t.Fatal("restarted validator's book diverged from the others")
	}
	n.assertBalances(map[string]uint64{"alice": 90, "xavier": 10})
}

// Two carried lists whose fields, concatenated without lengths, give the same
// bytes must not share a decision: precommits are verified before the cache
// is consulted, under a length-prefixed key.
func TestCarriedPrecommitsAreVerifiedBeforeACachedDecisionIsReused(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	value, _ := n.vals[0].st.Block(n.height)
	honest3 := n.last.Sigs[3].Extension
	var x []byte // validator 3 (byzantine) signs an extension embedding a fake record header
	x = binary.BigEndian.AppendUint32(x, 3)
	x = binary.BigEndian.AppendUint32(x, 0)
	x = binary.BigEndian.AppendUint32(x, uint32(len(honest3)))
	x = append(x, honest3...)
	n.height--
	v3 := n.precommitVote(value, n.last.Round, 3, x)
	n.height++
	a := append(n.carried(0, 1, 2), Precommit{Validator: 3, Round: n.last.Round, Ext: x, Signature: v3.Signature})
	var hdr []byte
	hdr = binary.BigEndian.AppendUint32(hdr, 3)
	hdr = binary.BigEndian.AppendUint32(hdr, uint32(n.last.Round))
	hdr = binary.BigEndian.AppendUint32(hdr, uint32(len(x)))
	b := append([]Precommit(nil), a[:2]...)
	b = append(b, Precommit{Validator: 2, Round: a[2].Round, Ext: a[2].Ext, Signature: append(append([]byte(nil), a[2].Signature...), hdr...)})
	b = append(b, Precommit{Validator: 3, Round: 0, Ext: honest3, Signature: v3.Signature})
	if err := n.vals[0].app.ValidateProposal(2, (&Block{Height: 2, LastCommit: a}).Encode()); err != nil {
		t.Fatalf("the signed list: %v", err)
	}
	if err := n.vals[0].app.ValidateProposal(2, (&Block{Height: 2, LastCommit: b}).Encode()); !errors.Is(err, ErrBlock) {
		t.Fatalf("a list with a forged signature accepted after a colliding list was decided: %v", err)
	}
}

// A block listing an upload (and so its transfers) twice is invalid: the
// duplicate would be evaluated once and rejected once under the same id.
func TestBlockListingATransferTwiceIsRefused(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	n.submit(n.transfer("alice", "bob", 20, 100))
	n.step(1) // acks
	n.vals[1].app.faults.TamperProposal = func(b *Block) { b.Subs = append(b.Subs, b.Subs[0]) }
	value := n.propose(1)
	n.vals[1].app.faults.TamperProposal = nil
	n.assertRefused(3, value, "a block listing a transfer twice")
}
