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

// A transfer is acked in the precommits of H-1, ordered at H, its pieces
// decided by the precommits H+1 carries and its verdict by those H+2
// carries: the valid one is accepted, the overdraft (a wallet lying about
// its balance) is rejected, and every validator decides the same.
func TestTransferDecidedTwoBlocksLater(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	pay := n.transfer("alice", "bob", 30, 100)
	over := n.transfer("carol", "bob", 150, 200) // carol has 50
	n.submit(pay)
	n.submit(over)
	n.step(1) // acks
	if b, _ := DecodeBlock(n.step(2)); len(b.Subs) != 2 {
		t.Fatalf("block 3 orders %d uploads, want 2", len(b.Subs))
	}
	n.step(3) // pieces decided, checks evaluated and shared
	n.step(0) // verdicts decided and applied
	for i := range n.vals {
		got := n.outcomes(i)
		if got[idOf(pay)] != ledger.Accepted {
			t.Fatalf("validator %d: payment %v", i, got[idOf(pay)])
		}
		if r := got[idOf(over)]; r == ledger.Accepted || r == ledger.RejectUndecided {
			t.Fatalf("validator %d: overdraft decided %v", i, r)
		}
	}
	n.assertBooksIdentical()
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
	n.assertRefused(3, short.Encode(), "a block carrying 2 of 4 precommits")
	if err := n.vals[0].app.ValidateProposal(3, (&Block{Height: 3, LastCommit: n.carried(0, 1, 3)}).Encode()); err != nil {
		t.Fatalf("a block carrying a quorum of 3: %v", err)
	}
}

// The attack of DESIGN §8.1: a proposer holding no key share writes the
// extensions a block carries (shares crafted to make an overdraft decrypt as
// valid, or piece attestations naming ciphertexts of its choosing). Every
// carried extension must be the one its validator signed in its precommit
// for that block, so forged, altered, misattributed, reordered or duplicated
// precommits make the block invalid at every honest validator, and no
// overdraft is ever decided accepted.
func TestByzantineProposerCannotForgeCarriedExtensions(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	over := n.transfer("carol", "bob", 150, 200) // carol has 50
	n.submit(over)
	n.step(1) // acks
	n.step(2) // orders the overdraft: the precommits of 3 attest its pieces

	// Height 4 carries the piece attestations of block 3.
	withPieces := n.carried()
	fp, _ := DecodeExt(withPieces[1].Ext)
	if len(fp.Pieces) == 0 {
		t.Fatal("validator 1 attests no piece of block 3")
	}
	fp.Pieces[0].Hash[0] ^= 1
	n.refusedEverywhere(t, "altered piece attestation", &Block{Height: 4, LastCommit: withPieces}, func(c []Precommit) []Precommit { c[1].Ext = fp.Encode(); return c })
	n.step(3) // decides the pieces: the precommits of 4 carry the shares of 3

	good := n.carried()
	other := n.precommitVote([]byte("another block"), 0, 2, good[2].Ext) // signed, but for another block
	forged, _ := DecodeExt(good[1].Ext)
	if len(forged.Shares) == 0 {
		t.Fatal("validator 1 shares no check of block 3")
	}
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
		n.refusedEverywhere(t, name, &Block{Height: 5, LastCommit: good}, tamper)
	}
	// What a byzantine proposer's node sends is refused by the others.
	n.vals[0].app.faults.TamperProposal = func(b *Block) { b.LastCommit[1].Ext = forged.Encode() }
	value := n.propose(0)
	for i := 1; i < len(n.vals); i++ {
		if err := n.vals[i].app.ValidateProposal(5, value); !errors.Is(err, ErrBlock) {
			t.Fatalf("validator %d accepts the byzantine proposer's block: %v", i, err)
		}
	}
	n.vals[0].app.faults.TamperProposal = nil
	n.step(0)
	if r, ok := n.outcomes(3)[idOf(over)]; !ok || r == ledger.Accepted || r == ledger.RejectUndecided {
		t.Fatalf("overdraft decided %v (published: %v)", r, ok)
	}
}

// refusedEverywhere checks every validator refuses blk with its carried
// precommits tampered (on a copy).
func (n *chainNet) refusedEverywhere(t *testing.T, name string, blk *Block, tamper func(c []Precommit) []Precommit) {
	t.Helper()
	b := *blk
	b.LastCommit = tamper(append([]Precommit(nil), blk.LastCommit...))
	n.assertRefused(b.Height, b.Encode(), name)
}

// A proposal naming an upload this validator holds neither in its mempool
// nor in its store is refused with ErrUnavailable: the application never goes
// to the network (the node fetches before delivering the proposal).
func TestProposalReferencingUnknownUploadIsRefused(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	u := n.transfer("alice", "bob", 5, 100)
	n.submit(u, 0, 1, 2) // N-f validators ack it; validator 3 never saw it
	n.step(1)
	value := n.propose(0)
	if b, _ := DecodeBlock(value); len(b.Subs) != 1 {
		t.Fatalf("the proposal orders %d uploads, want 1", len(b.Subs))
	}
	if err := n.vals[3].app.ValidateProposal(3, value); !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrBlock) {
		t.Fatalf("unknown upload: %v, want ErrBlock wrapping ErrUnavailable", err)
	}
	// Once the upload is there (the node fetched it), the same proposal is valid.
	n.submit(u, 3)
	if err := n.vals[3].app.ValidateProposal(3, value); err != nil {
		t.Fatalf("after the upload arrived: %v", err)
	}
}

// A value re-proposed in a later round (Tendermint's validValue) carries the
// same precommits, so the previous block is evaluated once and decided once;
// a different value at round 1 carrying the same precommits reuses that
// evaluation too, and only a different set of carried precommits is decided
// afresh.
func TestReproposalInALaterRoundReusesTheEvaluation(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	pay := n.transfer("alice", "bob", 7, 100)
	n.submit(pay)
	n.step(1)             // acks
	n.step(2)             // orders the payment
	value := n.propose(3) // carries the pieces of block 3: evaluates it
	first := n.precommit(value, 0)
	calls := n.vals[1].ev.calls
	if calls != 1 {
		t.Fatalf("block 3 evaluated %d times, want 1", calls)
	}
	again := n.precommit(value, 1) // round 0 failed; the same value is re-proposed
	if n.vals[1].ev.calls != calls {
		t.Fatalf("re-proposal evaluated again (%d evaluations, then %d)", calls, n.vals[1].ev.calls)
	}
	for i := range first {
		a, _ := DecodeExt(first[i])
		b, _ := DecodeExt(again[i])
		if a.Digest == ([32]byte{}) || a.Digest != b.Digest || a.Block != b.Block || len(a.Shares) != 1 {
			t.Fatalf("validator %d: digest changed between rounds, or no checks shared", i)
		}
	}
	// Round 1's proposer proposes another value carrying the same precommits.
	b, _ := DecodeBlock(value)
	b.TimeMs++
	v1 := b.Encode()
	again = n.precommit(v1, 1)
	if n.vals[1].ev.calls != calls {
		t.Fatalf("another value carrying the same precommits evaluated block 3 again")
	}
	// One carrying another quorum of them is decided afresh.
	b.LastCommit = n.carried(0, 1, 2)
	if err := n.vals[1].app.ValidateProposal(4, b.Encode()); err != nil {
		t.Fatal(err)
	}
	if n.vals[1].ev.calls != calls+1 {
		t.Fatalf("another set of carried precommits: %d evaluations, want 1", n.vals[1].ev.calls-calls)
	}
	n.finalize(v1, n.certify(v1, 1, again, 0, 2, 3))
	n.step(0)
	if got := n.outcomes(0); len(got) != 1 || got[idOf(pay)] != ledger.Accepted {
		t.Fatalf("height 3 decided %v, want the payment accepted", got)
	}
}

// Finalize persists exactly what it publishes: the block and certificate,
// a status per decided transfer, the uploads of the block, this validator's
// piece ciphertexts and the decided pieces it used, the registry, credits
// and the applied height, and the shard states of the applied height.
func TestFinalizePersistsExactlyWhatItClaims(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	pay := n.transfer("alice", "bob", 25, 100)
	n.submit(pay)
	n.step(3)           // acks
	value3 := n.step(1) // orders
	n.step(2)           // decides the pieces
	value5 := n.step(0) // decides the verdicts
	v := n.vals[2]
	st := v.st.Memory
	last := v.obs.views[len(v.obs.views)-1]
	if last.Height != 5 || last.Decided != 3 {
		t.Fatalf("view: height %d decided %d", last.Height, last.Decided)
	}
	for h, want := range map[uint64][]byte{3: value3, 5: value5} {
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
	if err != nil || rec.Status != "committed" || rec.Height != 3 || rec.Decided != 5 {
		t.Fatalf("stored status %+v, %v", rec, err)
	}
	raw, err := StoredUpload(st, pay.Hash)
	if err != nil || sha256.Sum256(raw) != pay.Hash {
		t.Fatalf("stored upload: %v", err)
	}
	// Its own pieces of block 3 (attested in its precommit, carried by 4),
	// and the decided pieces of block 3 that block 4's decision used.
	b4 := n.blocks(4, 4)[0]
	own, _ := DecodeExt(b4.LastCommit[2].Ext)
	wanted := WantedPieces(b4, n.c.sh)
	// One payment, its credit inside its batch ciphertext (bob sends
	// nothing): one ciphertext per piece.
	if len(own.Pieces) != len(n.c.sh.Held(2)) || len(wanted) != n.c.sh.Pieces() {
		t.Fatalf("validator 2 attests %d pieces, block 4 decides %d", len(own.Pieces), len(wanted))
	}
	for _, pa := range own.Pieces {
		if raw, err := StoredPiece(st, pa.Hash); err != nil || sha256.Sum256(raw) != pa.Hash {
			t.Fatalf("own piece %d stored: %v", pa.Piece, err)
		}
	}
	for _, pw := range wanted {
		if raw, err := StoredPiece(st, pw.Hash); err != nil || sha256.Sum256(raw) != pw.Hash {
			t.Fatalf("decided piece %d stored: %v", pw.Piece, err)
		}
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
	states := last.Book.StatesAt(last.Book.Height())
	if len(states) == 0 {
		t.Fatal("no shard state at the applied height")
	}
	for shard, ct := range states {
		got, err := st.State(last.Book.Height()+lag, shard)
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
// the block's uploads; once the store works, the same height finalizes and
// the transfer is decided as everywhere else.
func TestFailedPersistChangesNothing(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	u := n.transfer("alice", "bob", 1, 100)
	n.submit(u)
	n.step(1) // acks
	value := n.propose(0)
	if b, _ := DecodeBlock(value); len(b.Subs) != 1 {
		t.Fatalf("the block orders %d uploads, want 1", len(b.Subs))
	}
	exts := n.precommit(value, 0)
	cert := n.certify(value, 0, exts, 0, 1, 2, 3)
	v := n.vals[1]
	v.st.fail = true
	views := len(v.obs.views)
	if err := v.app.Finalize(3, value, cert); !errors.Is(err, errDiskFull) {
		t.Fatalf("finalize with a failing store: %v", err)
	}
	if v.app.finalized != 2 || len(v.obs.views) != views || v.mem.uploads[u.ID()] == nil {
		t.Fatalf("a failed finalize changed state: finalized %d, views %d->%d", v.app.finalized, views, len(v.obs.views))
	}
	if h, _ := v.st.LastApplied(); h != 2 {
		t.Fatalf("store at %d after a failed commit", h)
	}
	v.st.fail = false
	n.finalize(value, cert)
	if got := n.settle(); got[idOf(u)] != ledger.Accepted {
		t.Fatalf("the transfer was decided %v", got[idOf(u)])
	}
	n.assertBooksIdentical()
}

// A validator restarted from its store resumes with the same book, byte for
// byte, and the same credits, and decides the next heights exactly as the
// validators that kept running.
func TestRestartFromTheStoreGivesTheSameBook(t *testing.T) {
	t.Parallel()
	n := newChainNet(t)
	n.step(0)
	a := n.transfer("alice", "bob", 40, 100)
	c := n.transfer("carol", "alice", 10, 50)
	n.submit(a)
	n.submit(c)
	n.step(1) // acks
	n.step(2) // orders both
	got := n.settle()
	// bob's 40 landed in his pending balance: he applies it, then spends.
	ap := n.apply("bob", 40, 40)
	n.submit(ap)
	for k, v := range n.settle() {
		got[k] = v
	}
	b := n.transfer("bob", "carol", 15, 40)
	n.submit(b)
	for k, v := range n.settle() {
		got[k] = v
	}
	for _, u := range []*Upload{a, c, ap, b} {
		if got[idOf(u)] != ledger.Accepted {
			t.Fatalf("transfer decided %v", got[idOf(u)])
		}
	}

	v := n.vals[3]
	running := v.app
	restarted := n.restart(3)
	if !bytes.Equal(bookBytes(t, restarted.book), bookBytes(t, running.book)) {
		t.Fatal("restored book differs from the running one")
	}
	if got, want := restarted.Credits(), running.Credits(); len(got) != len(want) || got[0] != want[0] || got[3] != want[3] || got[0] == 0 {
		t.Fatalf("restored credits %v, running %v", got, want)
	}
	d := n.transfer("alice", "carol", 5, 100-40) // carol's 10 is still pending at alice
	n.submit(d)
	n.settle()
	if r, ok := n.verdict(3, d); !ok || r != ledger.Accepted {
		t.Fatalf("the restarted validator decided the next transfer %v (published: %v)", r, ok)
	}
	n.assertBooksIdentical()
	n.assertBalances(map[string]uint64{"alice": 65, "bob": 25, "carol": 60})
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
