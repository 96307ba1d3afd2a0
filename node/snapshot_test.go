package node

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/chain"
	"github.com/zkbank/zkbank/ledger"
)

// fakeSnapshotPeers answers chunk requests of the snapshot protocol for
// test peers: honest ones from chunks, lying ones with a byte flipped.
func fakeSnapshotPeers(chunks [][]byte, liars map[peer.ID]bool, asked map[peer.ID]int) func(ctx context.Context, to peer.ID, proto protocol.ID, req []byte) ([]byte, error) {
	return func(_ context.Context, to peer.ID, proto protocol.ID, req []byte) ([]byte, error) {
		if proto != protoSnapshot || len(req) != 13 || req[0] != snapReqChunk {
			return nil, fmt.Errorf("unexpected request %x", req)
		}
		asked[to]++
		i := binary.BigEndian.Uint32(req[9:])
		if int(i) >= len(chunks) {
			return nil, errors.New("no such chunk")
		}
		c := append([]byte(nil), chunks[i]...)
		if liars[to] {
			c[len(c)/3] ^= 0x40
		}
		return c, nil
	}
}

// A peer serving snapshot chunks that do not hash to the certified chunk
// list is refused, not asked again, and every chunk comes from an honest
// peer; with only liars left, the fetch fails rather than install
// anything.
func TestAttack_SnapshotChunkFromALyingPeerIsRefused(t *testing.T) {
	data := make([]byte, 2*chain.SnapshotChunkSize+1000)
	if _, err := rand.Read(data); err != nil {
		t.Fatal(err)
	}
	var chunks [][]byte
	var hashes [][32]byte
	for off := 0; off < len(data); off += chain.SnapshotChunkSize {
		c := data[off:min(off+chain.SnapshotChunkSize, len(data))]
		chunks = append(chunks, c)
		hashes = append(hashes, sha256.Sum256(c))
	}
	info := &chain.SnapshotInfo{Height: 64, Size: uint64(len(data)), Chunks: hashes, Root: chain.SnapshotRoot("zkbank-test", 64, uint64(len(data)), hashes)}
	if err := info.Verify("zkbank-test"); err != nil {
		t.Fatal(err)
	}
	liar, honest := peer.ID("liar"), peer.ID("honest")
	asked := map[peer.ID]int{}
	var refused atomic.Int64
	f := &snapshotFetch{request: fakeSnapshotPeers(chunks, map[peer.ID]bool{liar: true}, asked), chainID: "zkbank-test",
		log: slog.New(slog.DiscardHandler), refused: &refused}
	got, err := f.chunks(context.Background(), info, []peer.ID{liar, honest})
	if err != nil {
		t.Fatal(err)
	}
	for i := range chunks {
		if !bytes.Equal(got[i], chunks[i]) {
			t.Fatalf("chunk %d is not the certified one", i)
		}
	}
	if refused.Load() != 1 || asked[liar] != 1 || asked[honest] != len(chunks) {
		t.Fatalf("refused %d chunks, asked the liar %d times and the honest peer %d times; want 1, 1 and %d", refused.Load(), asked[liar], asked[honest], len(chunks))
	}

	f.request = fakeSnapshotPeers(chunks, map[peer.ID]bool{liar: true, honest: true}, map[peer.ID]int{})
	if _, err := f.chunks(context.Background(), info, []peer.ID{liar, honest}); !errors.Is(err, chain.ErrSnapshot) {
		t.Fatalf("fetching from liars only = %v, want ErrSnapshot", err)
	}
}

// A validator offline for several times the retained window (uploads and
// pieces kept 16 heights, a snapshot every 8) comes back: it restores the
// newest certified snapshot (refusing the chunks of a lying peer), catches
// up block by block, reads the same balances and accounts as the others,
// and votes again: the chain commits with another validator down, which
// needs it for the quorum.
func TestSnapshot_ValidatorOfflineLongerThanTheRetainedWindowRejoins(t *testing.T) {
	c, b := snapshotCluster(t)
	tuning := func(i int) *snapshotTuning { return tuningOf(filepath.Join(c.dir, fmt.Sprintf("v%d", i))) }

	// Alice only sends, so her wallet knows her available balance.
	alice := uint64(10_000)
	pay := func(to string, amount uint64, node int) api.TransferStatus {
		st := c.send(b, "alice", to, amount, alice, c.status(node).AppliedHeight, nil, node)
		if st.Status == api.StatusCommitted {
			alice -= amount
		}
		return st
	}
	if st := pay("bob", 1_000, 0); st.Status != api.StatusCommitted {
		t.Fatalf("transfer: %+v", st)
	}
	c.stop(3)
	left := c.status(0).Height
	sent := uint64(0)
	for c.status(0).Height < left+4*snapRetention {
		if st := pay("carol", 10, int(sent%3)); st.Status != api.StatusCommitted {
			t.Fatalf("transfer with validator 3 down: %+v", st)
		}
		sent++
	}
	t.Logf("validator 3 left at height %d; the others reached %d with %d transfers", left, c.status(0).Height, sent)
	tuning(0).lieChunks.Store(true) // validator 0 now serves corrupt chunks

	c.start(3)
	c.waitFor("validator 3 restores a snapshot and catches up", 3*time.Minute, func() bool {
		st := c.status(3)
		return st.Ready && st.Height >= c.status(0).Height
	})
	t3 := tuning(3)
	if r := t3.restored.Load(); r <= left || r%snapEvery != 0 {
		t.Fatalf("validator 3 restored the snapshot of height %d (left at %d)", r, left)
	}
	if t3.refused.Load() < 1 {
		t.Fatalf("validator 3 refused no chunk of the lying validator 0")
	}
	t.Logf("validator 3 restored the snapshot of height %d, refused %d chunks, caught up to %d", t3.restored.Load(), t3.refused.Load(), c.status(3).Height)
	tuning(0).lieChunks.Store(false)

	c.waitFor("balances read through validator 3", time.Minute, func() bool {
		v, _ := c.balance("carol", 1, 2, 3)
		return v == 10*sent
	})
	for _, name := range []string{"alice", "bob", "carol"} {
		v1, _ := c.balance(name, 0, 1, 2)
		v2, _ := c.balance(name, 1, 2, 3)
		if v1 != v2 {
			t.Fatalf("%s: %d through validators 0-2, %d through 1-3", name, v1, v2)
		}
		sameAccount(t, c, name, 0, 3)
	}

	// Validator 3 votes: with validator 2 down, 0, 1 and 3 are the quorum.
	c.stop(2)
	if st := pay("bob", 100, 3); st.Status != api.StatusCommitted {
		t.Fatalf("transfer needing validator 3's votes: %+v", st)
	}
}

// A validator cut off while running (no consensus message in or out) falls
// further behind than the others keep what its missed blocks need; it
// notices (the validators' heads are far ahead and it does not advance),
// stops, and starts again, restoring their newest snapshot, without an
// operator: once the partition heals it is back at the validators' height
// and reads the same accounts.
func TestSnapshot_ValidatorCutOffWhileRunningRestoresBySelf(t *testing.T) {
	var cut *faults
	c, b := snapshotCluster(t, func(i int) *faults {
		if i == 3 {
			cut = &faults{}
			return cut
		}
		return nil
	})
	cut.partitioned.Store(true)
	left := c.status(3).Height
	alice, sent := uint64(10_000), uint64(0)
	for c.status(0).Height < left+4*snapRetention {
		st := c.send(b, "alice", "carol", 10, alice, c.status(int(sent%3)).AppliedHeight, nil, int(sent%3))
		if st.Status != api.StatusCommitted {
			t.Fatalf("transfer with validator 3 cut off: %+v", st)
		}
		alice -= 10
		sent++
	}
	c.waitFor("validator 3 restores a snapshot by itself", 3*time.Minute, func() bool {
		t3 := tuningOf(filepath.Join(c.dir, "v3"))
		return t3 != nil && t3.restored.Load() > left
	})
	cut.partitioned.Store(false)
	c.waitFor("validator 3 back at the validators' height", 3*time.Minute, func() bool {
		st := c.status(3)
		return st.Ready && st.Height >= c.status(0).Height
	})
	t.Logf("validator 3 cut off at %d restored the snapshot of %d; the others at %d after %d transfers",
		left, tuningOf(filepath.Join(c.dir, "v3")).restored.Load(), c.status(0).Height, sent)
	for _, name := range []string{"alice", "carol"} {
		sameAccount(t, c, name, 0, 3)
	}
}

// A full node joining a chain whose validators no longer keep the uploads
// and pieces of its first blocks starts from their newest certified
// snapshot, then verifies block by block from there, and reads the same
// accounts as a validator.
func TestFullNode_JoinsThroughASnapshot(t *testing.T) {
	c, b := snapshotCluster(t)
	alice, sent := uint64(10_000), uint64(0)
	for c.status(0).Height < 3*snapRetention {
		st := c.send(b, "alice", "carol", 10, alice, c.status(int(sent%4)).AppliedHeight, nil, int(sent%4))
		if st.Status != api.StatusCommitted {
			t.Fatalf("transfer: %+v", st)
		}
		alice -= 10
		sent++
	}
	target := c.status(0).Height
	f, stop := c.startFull("full0", fullOpts{})
	defer stop()
	c.waitFor("the full node restores a snapshot and catches up", 3*time.Minute, func() bool {
		st := c.status(f)
		return st.Ready && st.VerifiedHeight >= target
	})
	tf := tuningOf(filepath.Join(c.dir, "full0"))
	if tf == nil || tf.restored.Load() == 0 || tf.restored.Load()%snapEvery != 0 {
		t.Fatalf("the full node restored no snapshot (tuning %v)", tf)
	}
	t.Logf("full node restored the snapshot of height %d and verified up to %d (%d transfers)", tf.restored.Load(), c.status(f).VerifiedHeight, sent)
	for _, name := range []string{"alice", "carol"} {
		sameAccount(t, c, name, f, 0)
	}
}

// The snapshot interval and upload retention of snapshotCluster.
const snapEvery, snapRetention = 8, 16

// snapshotCluster starts four validators that take a snapshot every
// snapEvery heights and keep uploads and pieces snapRetention heights (as
// does every node started until the test ends), with alice, bob and carol
// holding 10 000, 500 and 0, and waits until they are ready.
func snapshotCluster(t *testing.T, fault ...func(i int) *faults) (*cluster, *ledger.Dealer) {
	t.Helper()
	if testing.Short() {
		t.Skip("multi-validator cluster in -short mode")
	}
	tuningMu.Lock()
	tuningDefault = &snapshotTuning{every: snapEvery, retention: snapRetention}
	tuningMu.Unlock()
	t.Cleanup(func() {
		tuningMu.Lock()
		tuningDefault = nil
		tuningMu.Unlock()
	})
	c := newCluster(t, 4, map[string]uint64{"alice": 10_000, "bob": 500, "carol": 0}, fault...)
	c.waitReady(0, 1, 2, 3)
	return c, c.dealer()
}

// tuningOf is the snapshot tuning of the node in home (nil until it starts).
func tuningOf(home string) *snapshotTuning {
	tuningMu.Lock()
	defer tuningMu.Unlock()
	return tuningByHome[home]
}

// sameAccount fails the test unless nodes a and b read the same public
// account facts of name.
func sameAccount(t *testing.T, c *cluster, name string, a, b int) {
	t.Helper()
	var aa, ab api.Account
	if err := c.getJSON(a, api.PathAccount+c.users[name].id.String(), &aa); err != nil {
		t.Fatal(err)
	}
	if err := c.getJSON(b, api.PathAccount+c.users[name].id.String(), &ab); err != nil {
		t.Fatal(err)
	}
	if aa.Nonce != ab.Nonce || aa.LastOp != ab.LastOp || aa.Shard != ab.Shard || aa.Lane != ab.Lane {
		t.Fatalf("%s: node %d reads %+v, node %d %+v", name, a, aa, b, ab)
	}
}
