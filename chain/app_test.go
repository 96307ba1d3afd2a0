package chain

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"testing"

	"github.com/zkbank/zkbank/consensus"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/store"
)

// The first height decides nothing: its block carries no extensions, and one
// that does is invalid.
func TestFirstHeightCarriesNoExtensions(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	value := n.propose(0)
	b, err := DecodeBlock(value)
	if err != nil {
		t.Fatal(err)
	}
	if b.Height != 1 || len(b.LastCommit) != 0 || len(b.Subs) != 0 {
		t.Fatalf("first block: height %d, %d extensions, %d uploads", b.Height, len(b.LastCommit), len(b.Subs))
	}
	forged := &Block{Height: 1, LastCommit: []Precommit{{Validator: 1, Ext: []byte("x"), Signature: make([]byte, 64)}}}
	if err := n.vals[1].app.ValidateProposal(1, forged.Encode()); !errors.Is(err, ErrBlock) {
		t.Fatalf("a first block with extensions: %v, want ErrBlock", err)
	}
	n.finalize(value, n.certify(value, 0, n.precommit(value, 0), 0, 1, 2, 3))
	if v := n.vals[2].obs.views; len(v) != 1 || v[0].Height != 1 || v[0].Decided != 0 || len(v[0].Outcomes) != 0 {
		t.Fatalf("views after height 1: %+v", v)
	}
}

// A transfer is ordered at H and decided by the extensions H+1 carries: the
// valid one is accepted, the overdraft (a wallet lying about its balance) is
// rejected, and every validator decides the same.
func TestTransferDecidedByTheNextBlock(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	pay := n.transfer("alice", "bob", 30, 100)
	over := n.transfer("carol", "bob", 150, 200) // carol has 50
	n.submit(pay)
	n.submit(over)
	n.step(1)
	n.step(2)
	for i := range n.vals {
		got := n.outcomes(i)
		if got[idOf(pay)] != ledger.Accepted {
			t.Fatalf("validator %d: payment %v", i, got[idOf(pay)])
		}
		if r := got[idOf(over)]; r == ledger.Accepted || r == ledger.RejectUndecided {
			t.Fatalf("validator %d: overdraft decided %v", i, r)
		}
	}
	ref := bookBytes(t, n.vals[0].app.book)
	for i := 1; i < len(n.vals); i++ {
		if !bytes.Equal(bookBytes(t, n.vals[i].app.book), ref) {
			t.Fatalf("validator %d's book differs from validator 0's", i)
		}
	}
}

// A block must carry a quorum of signed precommits for the previous block:
// a proposer cannot pick two precommits to its liking.
func TestBlockCarryingLessThanAQuorumIsRefused(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	n.submit(n.transfer("alice", "bob", 10, 100))
	n.step(1)
	short := &Block{Height: 3, LastCommit: n.carried(0, 1)}
	for i, v := range n.vals {
		if err := v.app.ValidateProposal(3, short.Encode()); !errors.Is(err, ErrBlock) {
			t.Fatalf("validator %d accepts a block carrying 2 of 4 precommits: %v", i, err)
		}
	}
	if err := n.vals[0].app.ValidateProposal(3, (&Block{Height: 3, LastCommit: n.carried(0, 1, 3)}).Encode()); err != nil {
		t.Fatalf("a block carrying a quorum of 3: %v", err)
	}
}

// The attack of DESIGN §8.1: a proposer holding no key share writes the
// extensions a block carries (shares crafted to make an overdraft decrypt as
// valid). Every carried extension must be the one its validator signed in
// its precommit for that block, so forged, altered, misattributed,
// reordered or duplicated precommits make the block invalid at every honest
// validator, and no overdraft is ever decided accepted.
func TestByzantineProposerCannotForgeCarriedExtensions(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	over := n.transfer("carol", "bob", 150, 200) // carol has 50
	n.submit(over)
	n.step(1)
	good := n.carried()
	other := n.precommitVote([]byte("another block"), 0, 2, good[2].Ext) // signed, but for another block
	forged, _ := DecodeExt(good[1].Ext)
	forged.Shares[0][1] = append([]byte(nil), forged.Shares[0][1]...)
	forged.Shares[0][1][len(forged.Shares[0][1])-1] ^= 1
	cases := map[string]func(c []Precommit) []Precommit{
		"altered shares": func(c []Precommit) []Precommit { c[1].Ext = forged.Encode(); return c },
		"unsigned":       func(c []Precommit) []Precommit { c[1].Signature = make([]byte, 64); return c },
		"misattributed": func(c []Precommit) []Precommit {
			c[1].Validator, c[2].Validator = c[2].Validator, c[1].Validator
			return c
		},
		"reordered":     func(c []Precommit) []Precommit { c[1], c[2] = c[2], c[1]; return c },
		"duplicated":    func(c []Precommit) []Precommit { return append(c[:3], c[2]) },
		"another round": func(c []Precommit) []Precommit { c[0].Round = 1; return c },
		"another block": func(c []Precommit) []Precommit { c[2].Signature = other.Signature; return c },
	}
	for name, tamper := range cases {
		blk := &Block{Height: 3, LastCommit: tamper(append([]Precommit(nil), good...))}
		for i, v := range n.vals {
			if err := v.app.ValidateProposal(3, blk.Encode()); !errors.Is(err, ErrBlock) {
				t.Fatalf("%s: validator %d accepts the block: %v", name, i, err)
			}
		}
	}
	// What a byzantine proposer's node sends is refused by the others.
	n.vals[0].app.faults.TamperProposal = func(b *Block) { b.LastCommit[1].Ext = forged.Encode() }
	value := n.propose(0)
	for i := 1; i < len(n.vals); i++ {
		if err := n.vals[i].app.ValidateProposal(3, value); !errors.Is(err, ErrBlock) {
			t.Fatalf("validator %d accepts the byzantine proposer's block: %v", i, err)
		}
	}
	n.vals[0].app.faults.TamperProposal = nil
	n.step(2)
	if r := n.outcomes(3)[idOf(over)]; r == ledger.Accepted || r == ledger.RejectUndecided {
		t.Fatalf("overdraft decided %v", r)
	}
}

// A proposal naming an upload this validator holds neither in its mempool
// nor in its store is refused with ErrUnavailable: the application never goes
// to the network (the node fetches before delivering the proposal).
func TestProposalReferencingUnknownUploadIsRefused(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	u := n.transfer("alice", "bob", 5, 100)
	n.submit(u, 0) // only the proposer has it
	value := n.propose(0)
	if err := n.vals[1].app.ValidateProposal(2, value); !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrBlock) {
		t.Fatalf("unknown upload: %v, want ErrBlock wrapping ErrUnavailable", err)
	}
	// Once the upload is there (the node fetched it), the same proposal is valid.
	n.submit(u, 1)
	if err := n.vals[1].app.ValidateProposal(2, value); err != nil {
		t.Fatalf("after the upload arrived: %v", err)
	}
}

// A value re-proposed in a later round (Tendermint's validValue) is
// evaluated once and decided once; a different value at round 1 is
// evaluated on the same decided book.
func TestReproposalInALaterRoundReusesTheEvaluation(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	n.submit(n.transfer("alice", "bob", 7, 100))
	value := n.propose(0)
	first := n.precommit(value, 0)
	calls := n.vals[1].ev.calls
	again := n.precommit(value, 1) // round 0 failed; the same value is re-proposed
	if n.vals[1].ev.calls != calls {
		t.Fatalf("re-proposal evaluated again (%d evaluations, then %d)", calls, n.vals[1].ev.calls)
	}
	for i := range first {
		a, _ := DecodeExt(first[i])
		b, _ := DecodeExt(again[i])
		if a.Digest != b.Digest || a.Block != b.Block {
			t.Fatalf("validator %d: digest changed between rounds", i)
		}
	}
	n.finalize(value, n.certify(value, 1, again, 0, 2, 3))
	// A different value at round 1 of the next height decides height 2 the same way.
	n.submit(n.transfer("carol", "alice", 3, 50))
	v0 := n.propose(1)
	n.precommit(v0, 0)
	b, _ := DecodeBlock(v0) // round 0 failed; round 1's proposer proposes another value
	b.TimeMs++
	v1 := b.Encode()
	calls = n.vals[3].ev.calls
	n.finalize(v1, n.certify(v1, 1, n.precommit(v1, 1), 1, 2, 3))
	if n.vals[3].ev.calls != calls+1 {
		t.Fatalf("the round-1 value was evaluated %d times", n.vals[3].ev.calls-calls)
	}
	if got := n.outcomes(0); len(got) != 1 {
		t.Fatalf("height 2 decided %d transfers, want 1", len(got))
	}
}

// Finalize persists exactly what it publishes: the block and certificate,
// a status per decided transfer, the uploads of the block, the registry,
// credits and the applied height, and the shard states of the applied height.
func TestFinalizePersistsExactlyWhatItClaims(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	pay := n.transfer("alice", "bob", 25, 100)
	n.submit(pay)
	value2 := n.step(3)
	value3 := n.step(1)
	v := n.vals[2]
	st := v.st.Memory
	last := v.obs.views[len(v.obs.views)-1]
	if last.Height != 3 || last.Decided != 2 {
		t.Fatalf("view: height %d decided %d", last.Height, last.Decided)
	}
	for h, want := range map[uint64][]byte{2: value2, 3: value3} {
		got, err := st.Block(h)
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("block %d stored: %v", h, err)
		}
		cm, err := StoredCommit(st, h)
		if err != nil || cm.Cert.Height != h || cm.Cert.BlockID != consensus.HashValue(want) || len(cm.Cert.Sigs) != 4 {
			t.Fatalf("certificate %d stored: %v", h, err)
		}
	}
	if len(last.Outcomes) != 1 {
		t.Fatalf("%d outcomes published", len(last.Outcomes))
	}
	rec, err := StoredStatus(st, idOf(pay))
	if err != nil || rec.Status != "committed" || rec.Height != 2 || rec.Decided != 3 {
		t.Fatalf("stored status %+v, %v", rec, err)
	}
	raw, err := StoredUpload(st, pay.Hash)
	if err != nil || sha256.Sum256(raw) != pay.Hash {
		t.Fatalf("stored upload: %v", err)
	}
	ap, err := st.GetMeta(metaApplied)
	if err != nil || binary.BigEndian.Uint64(ap) != last.Book.Height() {
		t.Fatalf("applied height stored %x, book at %d", ap, last.Book.Height())
	}
	var credits []int64
	cb, _ := st.GetMeta(metaCredits)
	if err := json.Unmarshal(cb, &credits); err != nil || len(credits) != 4 {
		t.Fatalf("stored credits %s: %v", cb, err)
	}
	for i, c := range credits {
		if c != last.Credits[i] {
			t.Fatalf("stored credits %v, published %v", credits, last.Credits)
		}
	}
	for shard, ct := range last.Book.StatesAt(last.Book.Height()) {
		got, err := st.State(last.Book.Height()+1, shard)
		want, _ := ct.MarshalBinary()
		if err != nil || !bytes.Equal(got, want) {
			t.Fatalf("state of shard %d: %v", shard, err)
		}
	}
	if _, err := st.Status(make([]byte, 32)); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a status nobody decided: %v", err)
	}
}

// A failed store commit fails Finalize and changes nothing: the application
// is still at the previous height, publishes nothing, and the mempool keeps
// the block's uploads; once the store works, the same height finalizes.
func TestFailedPersistChangesNothing(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	u := n.transfer("alice", "bob", 1, 100)
	n.submit(u)
	value := n.propose(0)
	exts := n.precommit(value, 0)
	cert := n.certify(value, 0, exts, 0, 1, 2, 3)
	v := n.vals[1]
	v.st.fail = true
	views := len(v.obs.views)
	if err := v.app.Finalize(2, value, cert); !errors.Is(err, errDiskFull) {
		t.Fatalf("finalize with a failing store: %v", err)
	}
	if v.app.finalized != 1 || len(v.obs.views) != views || v.mem.uploads[u.Hash] == nil {
		t.Fatalf("a failed finalize changed state: finalized %d, views %d->%d", v.app.finalized, views, len(v.obs.views))
	}
	if h, _ := v.st.LastApplied(); h != 1 {
		t.Fatalf("store at %d after a failed commit", h)
	}
	v.st.fail = false
	n.finalize(value, cert)
}

// A validator restarted from its store resumes with the same book, byte for
// byte, and decides the next height exactly as the validators that kept
// running.
func TestRestartFromTheStoreGivesTheSameBook(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	n.submit(n.transfer("alice", "bob", 40, 100))
	n.submit(n.transfer("carol", "alice", 10, 50))
	n.step(1)
	n.submit(n.transfer("bob", "carol", 15, 0+40))
	n.step(2)
	n.step(3) // decides the last transfer

	v := n.vals[3]
	running := v.app
	restarted := n.restart(3)
	if !bytes.Equal(bookBytes(t, restarted.book), bookBytes(t, running.book)) {
		t.Fatal("restored book differs from the running one")
	}
	if got, want := restarted.Credits(), running.Credits(); len(got) != len(want) || got[0] != want[0] || got[3] != want[3] {
		t.Fatalf("restored credits %v, running %v", got, want)
	}
	n.submit(n.transfer("alice", "carol", 5, 100-40+10))
	n.step(0)
	n.step(1)
	if !bytes.Equal(bookBytes(t, restarted.book), bookBytes(t, n.vals[0].app.book)) {
		t.Fatal("after two more heights the restarted validator's book differs")
	}
}

// A mempool that fails is an error, not an empty mempool: the proposer
// proposes nothing rather than an empty block that hides the failure.
func TestMempoolFailureIsAnErrorNotAnEmptyBlock(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.vals[0].mem.fail = errors.New("mempool actor stopped")
	if _, err := n.vals[0].app.BuildProposal(1, nil); err == nil {
		t.Fatal("BuildProposal with a failing mempool succeeded")
	}
	if !n.vals[0].app.HasWork(1) {
		t.Fatal("a failing mempool reads as idle")
	}
	n.vals[1].mem.fail = nil
	if n.vals[1].app.HasWork(1) {
		t.Fatal("an empty mempool has work")
	}
}

// Account openings are proposed only when signed by the account's key; a
// block that carries a forged one is invalid.
func TestForgedAccountOpeningIsNeitherProposedNorAccepted(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	good, bad := newOpen(t, n, true), newOpen(t, n, false)
	n.vals[0].mem.opens[string(good.SignPub)] = good
	n.vals[0].mem.opens[string(bad.SignPub)] = bad
	value := n.propose(0)
	b, _ := DecodeBlock(value)
	if len(b.Opens) != 1 || !bytes.Equal(b.Opens[0].SignPub, good.SignPub) {
		t.Fatalf("proposed openings: %d", len(b.Opens))
	}
	forged := &Block{Height: 1, Opens: []Open{bad}}
	if err := n.vals[1].app.ValidateProposal(1, forged.Encode()); !errors.Is(err, ErrBlock) {
		t.Fatalf("a block with a forged opening: %v", err)
	}
	n.finalize(value, n.certify(value, 0, n.precommit(value, 0), 1, 2, 3))
	if v := n.vals[3].obs.views[0]; len(v.Opened) != 1 {
		t.Fatalf("%d accounts opened", len(v.Opened))
	}
}
