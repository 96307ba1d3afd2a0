package chain

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/zkbank/zkbank/consensus"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/store"
)

// snapshotNet is a test chain whose validators snapshot every `every`
// heights.
func snapshotNet(t *testing.T, every uint64, faults ...Faults) *chainNet {
	t.Helper()
	n := newChainNet(t, faults...)
	for i, v := range n.vals {
		v.cfg.SnapshotEvery = every
		app, err := New(v.cfg)
		if err != nil {
			t.Fatal(err)
		}
		n.vals[i].app = app
	}
	return n
}

// stepUntil steps (proposers in turn, a transfer submitted every other
// height, so blocks around every snapshot height carry uploads and decided
// pieces) until height h is finalized.
func (n *chainNet) stepUntil(h uint64) {
	n.t.Helper()
	for n.height < h {
		if n.height%2 == 0 {
			from, to := "alice", "bob"
			if n.height%4 == 0 {
				from, to = "carol", "alice"
			}
			n.submit(n.transfer(from, to, 1, n.users[from].balance))
			n.users[from].balance-- // the payee's pending balance grows
		}
		n.step(int(n.height+1) % len(n.vals))
	}
}

// snapshotOf reads validator i's snapshot of height h and its chunks.
func (n *chainNet) snapshotOf(i int, h uint64) (*SnapshotInfo, [][]byte) {
	n.t.Helper()
	st := n.vals[i].st
	info, err := StoredSnapshot(st, h)
	if err != nil {
		n.t.Fatalf("validator %d: snapshot of height %d: %v", i, h, err)
	}
	var chunks [][]byte
	for k := range info.Chunks {
		c, err := SnapshotChunk(st, h, k)
		if err != nil {
			n.t.Fatalf("validator %d: chunk %d of height %d: %v", i, k, h, err)
		}
		if err := info.CheckChunk(k, c); err != nil {
			n.t.Fatal(err)
		}
		chunks = append(chunks, c)
	}
	return info, chunks
}

// Every validator serializes the same bytes for the same blocks, a
// validator restarted from its store (its book rebuilt from stored states)
// included, and the next block carries that root.
func TestSnapshot_EveryValidatorProducesIdenticalBytes(t *testing.T) {
	n := snapshotNet(t, 4)
	n.stepUntil(6)
	n.restart(2) // its book comes from the store from here on
	n.stepUntil(9)
	for _, h := range []uint64{4, 8} {
		ref, refChunks := n.snapshotOf(0, h)
		if ref.Size == 0 || len(ref.Chunks) < 2 {
			t.Fatalf("snapshot of height %d: %d bytes in %d chunks, want several chunks", h, ref.Size, len(ref.Chunks))
		}
		for i := 1; i < len(n.vals); i++ {
			info, chunks := n.snapshotOf(i, h)
			if info.Root != ref.Root || info.Size != ref.Size {
				t.Fatalf("validator %d: snapshot of height %d has root %x (%d bytes), validator 0 %x (%d bytes)", i, h, info.Root[:8], info.Size, ref.Root[:8], ref.Size)
			}
			for k := range chunks {
				if !bytes.Equal(chunks[k], refChunks[k]) {
					t.Fatalf("validator %d: chunk %d of height %d differs", i, k, h)
				}
			}
		}
		raw, err := n.vals[0].st.Block(h + 1)
		if err != nil {
			t.Fatal(err)
		}
		b, err := DecodeBlock(raw)
		if err != nil {
			t.Fatal(err)
		}
		if b.StateRoot != ref.Root {
			t.Fatalf("block %d carries root %x, the snapshot of %d is %x", h+1, b.StateRoot[:8], h, ref.Root[:8])
		}
	}
	// Non-snapshot heights carry no root.
	raw, _ := n.vals[0].st.Block(7)
	if b, _ := DecodeBlock(raw); b.StateRoot != ([32]byte{}) {
		t.Fatalf("block 7 carries a state root")
	}
	// Two are kept: the third drops the first.
	n.stepUntil(13)
	if _, err := StoredSnapshot(n.vals[0].st, 4); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the snapshot of height 4 is still kept after 8 and 12: %v", err)
	}
	if got := Snapshots(n.vals[0].st); len(got) != KeptSnapshots || got[0].Height != 8 || got[1].Height != 12 {
		t.Fatalf("kept snapshots: %v", got)
	}
	// Past the state window: a book restored from the store holds states
	// below the window's start that a book that never stopped has pruned;
	// their snapshots are the same bytes.
	n.stepUntil(19)
	n.restart(1)
	n.stepUntil(25)
	ref, _ := n.snapshotOf(0, 24)
	for i := 1; i < len(n.vals); i++ {
		if info, _ := n.snapshotOf(i, 24); info.Root != ref.Root {
			t.Fatalf("validator %d: snapshot of height 24 has root %x, validator 0 %x", i, info.Root[:8], ref.Root[:8])
		}
	}
	t.Logf("snapshot of height 24: %d bytes in %d chunks", ref.Size, len(ref.Chunks))
}

// A validator whose store is empty restores another validator's snapshot,
// resumes at its height, and keeps agreeing with the others: the next
// block's root checks against the installed snapshot, later blocks
// finalize, and its next snapshot is the others' byte for byte.
func TestSnapshot_RestoredValidatorResumesAndAgrees(t *testing.T) {
	n := snapshotNet(t, 4)
	n.stepUntil(8)
	info, chunks := n.snapshotOf(0, 8)
	last, err := StoredCommit(n.vals[0].st, 8)
	if err != nil {
		t.Fatal(err)
	}
	v := n.vals[3]
	fresh := &failingStore{Memory: store.NewMemory()}
	if err := RestoreSnapshot(fresh, n.c.p, testChain, n.c.vals, info, chunks, last); err != nil {
		t.Fatal(err)
	}
	v.st = fresh
	v.cfg.Store = fresh
	n.restart(3)
	n.assertBooksIdentical()
	n.stepUntil(13)
	n.assertBooksIdentical()
	want, _ := n.snapshotOf(0, 12)
	if got, _ := n.snapshotOf(3, 12); got.Root != want.Root {
		t.Fatalf("restored validator's snapshot of 12 has root %x, the others' %x", got.Root[:8], want.Root[:8])
	}
	n.settle()
	for _, name := range []string{"alice", "bob", "carol"} {
		a3, p3 := n.balances(3, name)
		a0, p0 := n.balances(0, name)
		if a3 != a0 || p3 != p0 {
			t.Fatalf("restored validator: %s holds %d+%d pending, validator 0 says %d+%d", name, a3, p3, a0, p0)
		}
	}
	if _, p := n.balances(3, "bob"); p == 0 {
		t.Fatal("bob received nothing: no transfer was decided around the snapshot")
	}
	if a, _ := n.balances(3, "alice"); a != n.users["alice"].balance {
		t.Fatalf("alice holds %d, her wallet counts %d", a, n.users["alice"].balance)
	}
}

// A snapshot whose chunks or decision do not match is not installed.
func TestAttack_SnapshotThatDoesNotMatchItsRootIsNotInstalled(t *testing.T) {
	n := snapshotNet(t, 4)
	n.stepUntil(5)
	info, chunks := n.snapshotOf(0, 4)
	last, err := StoredCommit(n.vals[0].st, 4)
	if err != nil {
		t.Fatal(err)
	}
	other, err := StoredCommit(n.vals[0].st, 5)
	if err != nil {
		t.Fatal(err)
	}
	bad := append([][]byte(nil), chunks...)
	bad[len(bad)-1] = append([]byte(nil), bad[len(bad)-1]...)
	bad[len(bad)-1][0] ^= 1
	cert := *last.Cert
	cert.Sigs = cert.Sigs[:1] // no quorum
	forged := &consensus.Commit{Cert: &cert, Value: last.Value}
	for name, c := range map[string]struct {
		chunks [][]byte
		last   *consensus.Commit
	}{"a tampered chunk": {bad, last}, "the decision of another height": {chunks, other}, "a decision without a quorum": {chunks, forged}} {
		st := &failingStore{Memory: store.NewMemory()}
		err := RestoreSnapshot(st, n.c.p, testChain, n.c.vals, info, c.chunks, c.last)
		if !errors.Is(err, ErrSnapshot) {
			t.Fatalf("%s: RestoreSnapshot = %v, want ErrSnapshot", name, err)
		}
		if h, _ := st.LastApplied(); h != 0 {
			t.Fatalf("%s: the store was written (at %d)", name, h)
		}
	}
}

// A byzantine proposer putting a wrong state root in the block after a
// snapshot height (or any root after another height, or none after a
// snapshot height) makes its block invalid at every honest validator;
// the honest block of the same height is valid.
func TestAttack_BlockWithAWrongStateRootIsInvalid(t *testing.T) {
	for _, tc := range []struct {
		name   string
		at     uint64 // the proposal is for at+1
		tamper func(b *Block)
	}{
		{"a flipped root after a snapshot height", 4, func(b *Block) { b.StateRoot[0] ^= 1 }},
		{"no root after a snapshot height", 4, func(b *Block) { b.StateRoot = [32]byte{} }},
		{"a root after another height", 5, func(b *Block) { b.StateRoot[31] = 1 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			n := snapshotNet(t, 4)
			n.stepUntil(tc.at)
			honest := n.propose(1)
			b, err := DecodeBlock(honest)
			if err != nil {
				t.Fatal(err)
			}
			tc.tamper(b) // what a byzantine proposer sends instead
			value := b.Encode()
			for i := range n.vals {
				if err := n.vals[i].app.ValidateProposal(n.height+1, value); !errors.Is(err, ErrBlock) {
					t.Fatalf("validator %d accepts a block with %s: %v", i, tc.name, err)
				}
			}
			for i := range n.vals {
				if err := n.vals[i].app.ValidateProposal(n.height+1, honest); err != nil {
					t.Fatalf("validator %d refuses the honest block: %v", i, err)
				}
			}
		})
	}
}

// TestSnapshot_SizeAndTime measures a snapshot of a small and a larger
// book (every state key holding its window: one state per height, as
// under load) and the time to produce and to restore it. It only logs
// figures: run with ZKBANK_SNAPSHOT_SIZES=1.
func TestSnapshot_SizeAndTime(t *testing.T) {
	if os.Getenv("ZKBANK_SNAPSHOT_SIZES") == "" {
		t.Skip("measurement: set ZKBANK_SNAPSHOT_SIZES=1")
	}
	c := testCommittee(t)
	for _, accounts := range []int{3, 4 * c.p.Lanes} {
		var accts []ledger.GenesisAccount
		for i := 0; i < accounts; i++ {
			pub, _, _ := ed25519.GenerateKey(rand.Reader)
			accts = append(accts, ledger.GenesisAccount{SignPub: pub, Balance: uint64(i % 100)})
		}
		eng := c.eng.Clone()
		book, err := ledger.NewBook(eng, testChain, accts)
		if err != nil {
			t.Fatal(err)
		}
		// A book under load: every state written at every height of the
		// window (the same ciphertext: only the size matters here).
		snap := book.Snapshot()
		snap.Height = ledger.StateWindow + 4
		for _, hs := range snap.States {
			for h := uint64(1); h <= snap.Height; h++ {
				hs[h] = hs[0]
			}
		}
		if book, err = ledger.RestoreBook(eng, testChain, snap); err != nil {
			t.Fatal(err)
		}
		src := &snapSource{chain: testChain, height: book.Height() + 2, book: book, credits: make([]int64, 4),
			block: (&Block{Height: book.Height() + 2}).Encode(), prev: (&Block{Height: book.Height() + 1}).Encode()}
		start := time.Now()
		info, blobs := src.build(true)
		produced := time.Since(start)
		var data []byte
		for _, h := range info.Chunks {
			data = append(data, blobs[h]...)
		}
		start = time.Now()
		d, err := decodeSnapshot(testChain, data, c.p)
		if err != nil {
			t.Fatal(err)
		}
		st := store.NewMemory()
		cert := &consensus.CommitCertificate{Height: src.height, BlockID: consensus.HashValue(src.block), Sigs: []consensus.CommitSig{{Validator: 0, Signature: make([]byte, 64)}}} // not checked here
		if err := installSnapshot(st, info, blobs, d, cert); err != nil {
			t.Fatal(err)
		}
		gbook, _ := ledger.NewBook(c.eng.Clone(), testChain, accts)
		r, err := Restore(st, c.p, eng, testChain, gbook)
		if err != nil {
			t.Fatal(err)
		}
		restored := time.Since(start)
		if !bytes.Equal(bookBytes(t, r.Book), bookBytes(t, book)) {
			t.Fatalf("%d accounts: the restored book differs", accounts)
		}
		t.Logf("%d accounts, %d shards, %d state keys: snapshot %d bytes (%.1f MiB) in %d chunks; produced in %v, decoded+installed+restored in %v",
			accounts, (accounts+c.p.Lanes-1)/c.p.Lanes, len(book.Shards()), info.Size, float64(info.Size)/(1<<20), len(info.Chunks),
			produced.Round(time.Millisecond), restored.Round(time.Millisecond))
	}
}
