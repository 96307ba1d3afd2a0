// Package storetest is the contract every store.Backend must meet, as a test
// suite: Run it from an implementation's tests, so that a package tested
// against store.NewMemory behaves the same on Badger.
//
// It imports only store and the standard library (never Badger), so it can be
// used from any package's tests; .ci/layering enforces that.
package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/zkbank/zkbank/store"
)

// Run runs the contract tests as subtests of t. open returns a new, empty
// Backend for each subtest and arranges for it to be closed (t.Cleanup);
// Close must be idempotent, since one subtest closes the Backend itself.
func Run(t *testing.T, open func(t *testing.T) store.Backend) {
	for _, tc := range contract {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, open(t)) })
	}
}

var contract = []struct {
	name string
	test func(t *testing.T, b store.Backend)
}{
	{"RoundTrip", testRoundTrip},
	{"MissingKeysAreErrNotFound", testMissingKeysAreErrNotFound},
	{"EmptyOrHugeIDIsErrInvalid", testEmptyOrHugeIDIsErrInvalid},
	{"InputBuffersAreCopied", testInputBuffersAreCopied},
	{"CommitAppliesHeightsInOrder", testCommitAppliesHeightsInOrder},
	{"FailedCommitWritesNothing", testFailedCommitWritesNothing},
	{"WALKeepsAppendOrderAndTruncates", testWALKeepsAppendOrderAndTruncates},
	{"PruneDropsOnlyOldStates", testPruneDropsOnlyOldStates},
	{"ClosedStoreReturnsErrClosed", testClosedStoreReturnsErrClosed},
	{"CommitDeletesMetaInTheSameTransaction", testCommitDeletesMetaInTheSameTransaction},
	{"BlobsAreContentAddressed", testBlobsAreContentAddressed},
	{"InstallJumpsAheadAllOrNothing", testInstallJumpsAheadAllOrNothing},
}

// BatchFor returns the test batch of height h: a block, a certificate, two
// shard states, a status and the "credits" metadata, all derived from h.
func BatchFor(h uint64) store.Batch {
	return store.Batch{
		Block:    []byte(fmt.Sprintf("block %d", h)),
		Cert:     []byte(fmt.Sprintf("cert %d", h)),
		States:   []store.ShardState{{Shard: 0, Data: []byte(fmt.Sprintf("s0@%d", h))}, {Shard: 1, Data: []byte(fmt.Sprintf("s1@%d", h))}},
		Statuses: []store.Record{{Key: []byte(fmt.Sprintf("tx%d", h)), Value: []byte("ok")}},
		Meta:     []store.Record{{Key: []byte("credits"), Value: []byte{byte(h)}}},
	}
}

// CheckApplied fails t unless b holds everything of BatchFor(h) that a later
// height does not overwrite: block, certificate, states and status.
func CheckApplied(t testing.TB, b store.Backend, h uint64) {
	t.Helper()
	want := BatchFor(h)
	MustGet(t, want.Block)(b.Block(h))
	MustGet(t, want.Cert)(b.Cert(h))
	for _, st := range want.States {
		MustGet(t, st.Data)(b.State(h, st.Shard))
	}
	MustGet(t, want.Statuses[0].Value)(b.Status(want.Statuses[0].Key))
}

func testRoundTrip(t *testing.T, b store.Backend) {
	one := store.Batch{
		Block:    []byte("block"),
		Cert:     []byte("cert"),
		States:   []store.ShardState{{Shard: 2, Data: []byte("ct")}},
		Statuses: []store.Record{{Key: []byte("tx1"), Value: []byte("rejected:overdraft")}},
		Meta:     []store.Record{{Key: []byte("chain-id"), Value: []byte("zk-1")}, {Key: []byte("empty"), Value: nil}},
	}
	Must(t, b.Commit(1, one))
	Must(t, b.PutState(3, 2, []byte("kept")))

	MustGet(t, []byte("zk-1"))(b.GetMeta("chain-id"))
	MustGet(t, []byte("rejected:overdraft"))(b.Status([]byte("tx1")))
	MustGet(t, []byte("ct"))(b.State(1, 2))
	MustGet(t, []byte("kept"))(b.State(3, 2))
	MustGet(t, []byte("block"))(b.Block(1))
	MustGet(t, []byte("cert"))(b.Cert(1))
	MustGet(t, []byte{})(b.GetMeta("empty"))

	// Overwrite wins, in a later Commit and through PutState.
	Must(t, b.Commit(2, store.Batch{Statuses: []store.Record{{Key: []byte("tx1"), Value: []byte("applied")}}}))
	MustGet(t, []byte("applied"))(b.Status([]byte("tx1")))
	Must(t, b.PutState(3, 2, []byte("again")))
	MustGet(t, []byte("again"))(b.State(3, 2))
	// A Commit stores its block and certificate even when they are empty.
	MustGet(t, []byte{})(b.Block(2))
	MustGet(t, []byte{})(b.Cert(2))
}

func testMissingKeysAreErrNotFound(t *testing.T, b store.Backend) {
	WantErr(t, store.ErrNotFound)(b.GetMeta("nope"))
	WantErr(t, store.ErrNotFound)(b.Status([]byte("nope")))
	WantErr(t, store.ErrNotFound)(b.State(1, 0))
	WantErr(t, store.ErrNotFound)(b.Block(1))
	WantErr(t, store.ErrNotFound)(b.Cert(1))
	if h, err := b.LastApplied(); err != nil || h != 0 {
		t.Fatalf("LastApplied of empty store = %d, %v", h, err)
	}
	if recs, err := b.Records(); err != nil || len(recs) != 0 {
		t.Fatalf("Records of empty store = %d, %v", len(recs), err)
	}
}

func testEmptyOrHugeIDIsErrInvalid(t *testing.T, b store.Backend) {
	huge := make([]byte, store.MaxIDLen+1)
	WantErr(t, store.ErrInvalid)(b.Status(nil))
	WantErr(t, store.ErrInvalid)(b.Status(huge))
	WantErr(t, store.ErrInvalid)(b.GetMeta(""))
	WantErr(t, store.ErrInvalid)(b.GetMeta(string(huge)))
	for name, bad := range map[string]store.Batch{
		"empty transfer id": {Statuses: []store.Record{{Key: nil, Value: []byte("x")}}},
		"huge meta key":     {Meta: []store.Record{{Key: huge}}},
		"empty delete key":  {DeleteMeta: [][]byte{{}}},
	} {
		if err := b.Commit(1, bad); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("Commit with %s = %v, want ErrInvalid", name, err)
		}
	}
	// The longest valid id is fine.
	longest := bytes.Repeat([]byte{'k'}, store.MaxIDLen)
	Must(t, b.Commit(1, store.Batch{Statuses: []store.Record{{Key: longest, Value: []byte("ok")}}}))
	MustGet(t, []byte("ok"))(b.Status(longest))
}

func testInputBuffersAreCopied(t *testing.T, b store.Backend) {
	buf := []byte("original")
	Must(t, b.PutState(1, 1, buf))
	key, val := []byte("tx-key"), []byte("status")
	Must(t, b.Commit(1, store.Batch{Block: buf, Statuses: []store.Record{{Key: key, Value: val}}}))
	copy(buf, "XXXXXXXX")
	copy(key, "XXXXXX")
	copy(val, "XXXXXX")
	got, err := b.State(1, 1)
	Must(t, err)
	if string(got) != "original" {
		t.Fatalf("store aliased the caller's buffer: %q", got)
	}
	copy(got, "YYYYYYYY")
	MustGet(t, []byte("original"))(b.State(1, 1))
	MustGet(t, []byte("original"))(b.Block(1))
	MustGet(t, []byte("status"))(b.Status([]byte("tx-key")))
}

func testCommitAppliesHeightsInOrder(t *testing.T, b store.Backend) {
	if err := b.Commit(2, BatchFor(2)); !errors.Is(err, store.ErrOutOfOrder) {
		t.Fatalf("Commit(2) on empty store = %v, want ErrOutOfOrder", err)
	}
	if err := b.Commit(0, BatchFor(0)); !errors.Is(err, store.ErrOutOfOrder) {
		t.Fatalf("Commit(0) = %v, want ErrOutOfOrder (heights start at 1)", err)
	}
	for h := uint64(1); h <= 3; h++ {
		Must(t, b.Commit(h, BatchFor(h)))
	}
	if err := b.Commit(3, BatchFor(3)); !errors.Is(err, store.ErrOutOfOrder) {
		t.Fatalf("second Commit(3) = %v, want ErrOutOfOrder", err)
	}
	for h := uint64(1); h <= 3; h++ {
		CheckApplied(t, b, h)
	}
	MustGet(t, []byte{3})(b.GetMeta("credits"))
	if h, err := b.LastApplied(); err != nil || h != 3 {
		t.Fatalf("LastApplied = %d, %v", h, err)
	}
}

func testFailedCommitWritesNothing(t *testing.T, b store.Backend) {
	Must(t, b.Commit(1, BatchFor(1)))
	for name, edit := range map[string]func(*store.Batch){
		"a bad status id last":   func(bad *store.Batch) { bad.Statuses = append(bad.Statuses, store.Record{Value: []byte("x")}) },
		"a bad meta key last":    func(bad *store.Batch) { bad.Meta = append(bad.Meta, store.Record{}) },
		"a bad delete key last":  func(bad *store.Batch) { bad.DeleteMeta = [][]byte{[]byte("credits"), nil} },
		"a bad delete key alone": func(bad *store.Batch) { bad.DeleteMeta = [][]byte{nil} },
	} {
		bad := BatchFor(2)
		edit(&bad)
		if err := b.Commit(2, bad); !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("Commit with %s = %v, want ErrInvalid", name, err)
		}
		WantErr(t, store.ErrNotFound)(b.Block(2))
		WantErr(t, store.ErrNotFound)(b.Cert(2))
		WantErr(t, store.ErrNotFound)(b.State(2, 0))
		WantErr(t, store.ErrNotFound)(b.Status(bad.Statuses[0].Key))
		MustGet(t, []byte{1})(b.GetMeta("credits")) // neither overwritten nor deleted
		if h, _ := b.LastApplied(); h != 1 {
			t.Fatalf("LastApplied after a failed commit with %s = %d", name, h)
		}
	}
	Must(t, b.Commit(2, BatchFor(2)))
	CheckApplied(t, b, 2)
}

func testWALKeepsAppendOrderAndTruncates(t *testing.T, b store.Backend) {
	var want [][]byte
	for _, h := range []uint64{1, 1, 2, 2, 2, 3} {
		rec := []byte(fmt.Sprintf("h%d #%d", h, len(want)))
		Must(t, b.Append(h, rec))
		want = append(want, rec)
	}
	if err := b.Append(2, []byte("late")); !errors.Is(err, store.ErrOutOfOrder) {
		t.Fatalf("Append at a lower height = %v, want ErrOutOfOrder", err)
	}
	got, err := b.Records()
	Must(t, err)
	if !slices.EqualFunc(got, want, bytes.Equal) {
		t.Fatalf("Records = %q, want %q", got, want)
	}
	Must(t, b.TruncateBefore(2))
	got, err = b.Records()
	Must(t, err)
	if !slices.EqualFunc(got, want[2:], bytes.Equal) {
		t.Fatalf("after TruncateBefore(2): %q, want %q", got, want[2:])
	}
	Must(t, b.TruncateBefore(10))
	if got, _ := b.Records(); len(got) != 0 {
		t.Fatalf("after TruncateBefore(10): %q", got)
	}
	// Truncation does not lower the height the next record must reach.
	if err := b.Append(2, []byte("late")); !errors.Is(err, store.ErrOutOfOrder) {
		t.Fatalf("Append at a lower height after truncation = %v, want ErrOutOfOrder", err)
	}
}

func testPruneDropsOnlyOldStates(t *testing.T, b store.Backend) {
	for h := uint64(1); h <= 5; h++ {
		Must(t, b.Commit(h, BatchFor(h)))
	}
	Must(t, b.Prune(4))
	for h := uint64(1); h <= 5; h++ {
		for shard := uint32(0); shard < 2; shard++ {
			got, err := b.State(h, shard)
			switch {
			case h < 4 && !errors.Is(err, store.ErrNotFound):
				t.Errorf("state %d/%d survived Prune(4): %q, %v", h, shard, got, err)
			case h >= 4 && err != nil:
				t.Errorf("state %d/%d lost by Prune(4): %v", h, shard, err)
			}
		}
		// Blocks, certificates and statuses are not pruned.
		MustGet(t, BatchFor(h).Block)(b.Block(h))
		MustGet(t, BatchFor(h).Cert)(b.Cert(h))
		MustGet(t, BatchFor(h).Statuses[0].Value)(b.Status(BatchFor(h).Statuses[0].Key))
	}
	Must(t, b.Prune(4)) // idempotent
	Must(t, b.Commit(6, BatchFor(6)))
	CheckApplied(t, b, 6)
	if _, err := b.RunGC(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func testClosedStoreReturnsErrClosed(t *testing.T, b store.Backend) {
	Must(t, b.Close())
	Must(t, b.Close()) // idempotent
	WantErr(t, store.ErrClosed)(b.Block(1))
	WantErr(t, store.ErrClosed)(b.GetMeta("credits"))
	if err := b.Append(1, nil); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Append after Close = %v", err)
	}
	if err := b.Commit(1, store.Batch{}); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("Commit after Close = %v", err)
	}
	if _, err := b.LastApplied(); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("LastApplied after Close = %v", err)
	}
	if _, err := b.RunGC(context.Background()); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("RunGC after Close = %v", err)
	}
	if err := b.PutBlobs(map[[32]byte][]byte{sha256.Sum256(nil): nil}); !errors.Is(err, store.ErrClosed) {
		t.Fatalf("PutBlobs after Close = %v", err)
	}
	WantErr(t, store.ErrClosed)(b.Blob(sha256.Sum256(nil)))
}

// testBlobsAreContentAddressed: a blob is stored under its SHA-256 only, read
// back as written (a copy), stored once, and deleted idempotently.
func testBlobsAreContentAddressed(t *testing.T, b store.Backend) {
	data := bytes.Repeat([]byte("piece ciphertext "), 1<<12)
	h := sha256.Sum256(data)
	WantErr(t, store.ErrNotFound)(b.Blob(h))
	if err := b.PutBlobs(map[[32]byte][]byte{sha256.Sum256([]byte("other")): data}); !errors.Is(err, store.ErrInvalid) {
		t.Fatalf("PutBlobs under a hash that is not the data's = %v, want ErrInvalid", err)
	}
	small := []byte("another blob")
	Must(t, b.PutBlobs(map[[32]byte][]byte{h: data, sha256.Sum256(small): small}))
	Must(t, b.PutBlobs(map[[32]byte][]byte{h: data})) // again: nothing changes
	MustGet(t, small)(b.Blob(sha256.Sum256(small)))
	got, err := b.Blob(h)
	Must(t, err)
	if !bytes.Equal(got, data) {
		t.Fatal("blob read back differs")
	}
	got[0] ^= 1
	MustGet(t, data)(b.Blob(h))
	Must(t, b.DeleteBlob(h))
	Must(t, b.DeleteBlob(h))
	WantErr(t, store.ErrNotFound)(b.Blob(h))
}

func testCommitDeletesMetaInTheSameTransaction(t *testing.T, b store.Backend) {
	one := BatchFor(1)
	one.Meta = append(one.Meta, store.Record{Key: []byte("upload/aa"), Value: []byte("ciphertext")})
	Must(t, b.Commit(1, one))
	MustGet(t, []byte("ciphertext"))(b.GetMeta("upload/aa"))
	two := BatchFor(2)
	two.Meta = append(two.Meta, store.Record{Key: []byte("upload/bb"), Value: []byte("written and deleted")})
	two.DeleteMeta = [][]byte{[]byte("upload/aa"), []byte("upload/never-written"), []byte("upload/bb")}
	Must(t, b.Commit(2, two))
	if _, err := b.GetMeta("upload/aa"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted meta still readable: %v", err)
	}
	if _, err := b.GetMeta("upload/bb"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("meta both written and deleted in one Commit is readable: %v", err)
	}
	CheckApplied(t, b, 2)
}

// Must fails the test on a non-nil error.
func Must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// MustGet returns a check that a read returned want.
func MustGet(t testing.TB, want []byte) func([]byte, error) {
	t.Helper()
	return func(got []byte, err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("got %d bytes %.16x..., want %d bytes %.16x...", len(got), got, len(want), want)
		}
	}
}

// WantErr returns a check that a read failed with target.
func WantErr(t testing.TB, target error) func([]byte, error) {
	t.Helper()
	return func(got []byte, err error) {
		t.Helper()
		if !errors.Is(err, target) {
			t.Fatalf("got (%d bytes, %v), want %v", len(got), err, target)
		}
	}
}
