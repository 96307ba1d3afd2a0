package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// Contract tests: both Backends must pass them, so a node tested against
// NewMemory behaves the same on Badger.

func TestRoundTrip(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		must(t, b.PutMeta("chain-id", []byte("zk-1")))
		must(t, b.PutStatus([]byte("tx1"), []byte("rejected:overdraft")))
		must(t, b.PutAccount([]byte("acct"), []byte{0, 7}))
		must(t, b.PutState(3, 2, []byte("ct")))
		must(t, b.SaveBlock(3, []byte("block"), []byte("cert")))
		must(t, b.PutMeta("empty", nil))

		mustGet(t, []byte("zk-1"))(b.GetMeta("chain-id"))
		mustGet(t, []byte("rejected:overdraft"))(b.Status([]byte("tx1")))
		mustGet(t, []byte{0, 7})(b.Account([]byte("acct")))
		mustGet(t, []byte("ct"))(b.State(3, 2))
		mustGet(t, []byte("block"))(b.Block(3))
		mustGet(t, []byte("cert"))(b.Cert(3))
		mustGet(t, []byte{})(b.GetMeta("empty"))

		// Overwrite wins.
		must(t, b.PutStatus([]byte("tx1"), []byte("applied")))
		mustGet(t, []byte("applied"))(b.Status([]byte("tx1")))
	})
}

func TestMissingKeysAreErrNotFound(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		wantErr(t, ErrNotFound)(b.GetMeta("nope"))
		wantErr(t, ErrNotFound)(b.Status([]byte("nope")))
		wantErr(t, ErrNotFound)(b.Account([]byte("nope")))
		wantErr(t, ErrNotFound)(b.State(1, 0))
		wantErr(t, ErrNotFound)(b.Block(1))
		wantErr(t, ErrNotFound)(b.Cert(1))
		if h, err := b.LastHeight(); err != nil || h != 0 {
			t.Fatalf("LastHeight of empty store = %d, %v", h, err)
		}
		if h, err := b.LastApplied(); err != nil || h != 0 {
			t.Fatalf("LastApplied of empty store = %d, %v", h, err)
		}
		if recs, err := b.Records(); err != nil || len(recs) != 0 {
			t.Fatalf("Records of empty store = %d, %v", len(recs), err)
		}
	})
}

func TestEmptyOrHugeIDIsErrInvalid(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		if err := b.PutStatus(nil, []byte("x")); !errors.Is(err, ErrInvalid) {
			t.Fatalf("PutStatus(nil) = %v", err)
		}
		if err := b.PutAccount(make([]byte, maxIDLen+1), nil); !errors.Is(err, ErrInvalid) {
			t.Fatalf("PutAccount(huge) = %v", err)
		}
		wantErr(t, ErrInvalid)(b.GetMeta(""))
	})
}

func TestInputBuffersAreCopied(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		buf := []byte("original")
		must(t, b.PutState(1, 1, buf))
		copy(buf, "XXXXXXXX")
		got, err := b.State(1, 1)
		must(t, err)
		if string(got) != "original" {
			t.Fatalf("store aliased the caller's buffer: %q", got)
		}
		copy(got, "YYYYYYYY")
		mustGet(t, []byte("original"))(b.State(1, 1))
	})
}

func batchFor(h uint64) Batch {
	return Batch{
		Block:    []byte(fmt.Sprintf("block %d", h)),
		Cert:     []byte(fmt.Sprintf("cert %d", h)),
		States:   []ShardState{{0, []byte(fmt.Sprintf("s0@%d", h))}, {1, []byte(fmt.Sprintf("s1@%d", h))}},
		Statuses: []Record{{[]byte(fmt.Sprintf("tx%d", h)), []byte("ok")}},
		Accounts: []Record{{[]byte(fmt.Sprintf("acct%d", h)), []byte{byte(h)}}},
		Meta:     []Record{{[]byte("credits"), []byte{byte(h)}}},
	}
}

func checkApplied(t testing.TB, b Backend, h uint64) {
	t.Helper()
	want := batchFor(h)
	mustGet(t, want.Block)(b.Block(h))
	mustGet(t, want.Cert)(b.Cert(h))
	for _, st := range want.States {
		mustGet(t, st.Data)(b.State(h, st.Shard))
	}
	mustGet(t, want.Statuses[0].Value)(b.Status(want.Statuses[0].Key))
	mustGet(t, want.Accounts[0].Value)(b.Account(want.Accounts[0].Key))
}

func TestCommitAppliesHeightsInOrder(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		if err := b.Commit(2, batchFor(2)); !errors.Is(err, ErrOutOfOrder) {
			t.Fatalf("Commit(2) on empty store = %v, want ErrOutOfOrder", err)
		}
		if err := b.Commit(0, batchFor(0)); !errors.Is(err, ErrOutOfOrder) {
			t.Fatalf("Commit(0) = %v, want ErrOutOfOrder (heights start at 1)", err)
		}
		for h := uint64(1); h <= 3; h++ {
			must(t, b.Commit(h, batchFor(h)))
		}
		if err := b.Commit(3, batchFor(3)); !errors.Is(err, ErrOutOfOrder) {
			t.Fatalf("second Commit(3) = %v, want ErrOutOfOrder", err)
		}
		for h := uint64(1); h <= 3; h++ {
			checkApplied(t, b, h)
		}
		mustGet(t, []byte{3})(b.GetMeta("credits"))
		if h, err := b.LastApplied(); err != nil || h != 3 {
			t.Fatalf("LastApplied = %d, %v", h, err)
		}
		if h, err := b.LastHeight(); err != nil || h != 3 {
			t.Fatalf("LastHeight = %d, %v", h, err)
		}
	})
}

func TestFailedCommitWritesNothing(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		bad := batchFor(1)
		bad.Accounts = append(bad.Accounts, Record{Key: nil, Value: []byte("x")})
		if err := b.Commit(1, bad); !errors.Is(err, ErrInvalid) {
			t.Fatalf("Commit with empty account id = %v, want ErrInvalid", err)
		}
		wantErr(t, ErrNotFound)(b.Block(1))
		wantErr(t, ErrNotFound)(b.State(1, 0))
		wantErr(t, ErrNotFound)(b.Status(bad.Statuses[0].Key))
		if h, _ := b.LastApplied(); h != 0 {
			t.Fatalf("LastApplied after failed commit = %d", h)
		}
		must(t, b.Commit(1, batchFor(1)))
	})
}

func TestWALKeepsAppendOrderAndTruncates(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		var want [][]byte
		for _, h := range []uint64{1, 1, 2, 2, 2, 3} {
			rec := []byte(fmt.Sprintf("h%d #%d", h, len(want)))
			must(t, b.Append(h, rec))
			want = append(want, rec)
		}
		if err := b.Append(2, []byte("late")); !errors.Is(err, ErrOutOfOrder) {
			t.Fatalf("Append at a lower height = %v, want ErrOutOfOrder", err)
		}
		got, err := b.Records()
		must(t, err)
		if !slices.EqualFunc(got, want, bytes.Equal) {
			t.Fatalf("Records = %q, want %q", got, want)
		}
		must(t, b.TruncateBefore(2))
		got, err = b.Records()
		must(t, err)
		if !slices.EqualFunc(got, want[2:], bytes.Equal) {
			t.Fatalf("after TruncateBefore(2): %q, want %q", got, want[2:])
		}
		must(t, b.TruncateBefore(10))
		if got, _ := b.Records(); len(got) != 0 {
			t.Fatalf("after TruncateBefore(10): %q", got)
		}
	})
}

func TestPruneDropsOnlyOldStates(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		for h := uint64(1); h <= 5; h++ {
			must(t, b.Commit(h, batchFor(h)))
		}
		must(t, b.Prune(4))
		for h := uint64(1); h <= 5; h++ {
			for shard := uint32(0); shard < 2; shard++ {
				got, err := b.State(h, shard)
				switch {
				case h < 4 && !errors.Is(err, ErrNotFound):
					t.Errorf("state %d/%d survived Prune(4): %q, %v", h, shard, got, err)
				case h >= 4 && err != nil:
					t.Errorf("state %d/%d lost by Prune(4): %v", h, shard, err)
				}
			}
			// Blocks, statuses and accounts are not pruned.
			mustGet(t, batchFor(h).Block)(b.Block(h))
			mustGet(t, batchFor(h).Statuses[0].Value)(b.Status(batchFor(h).Statuses[0].Key))
		}
		must(t, b.Prune(4)) // idempotent
		must(t, b.Commit(6, batchFor(6)))
		checkApplied(t, b, 6)
		if _, err := b.RunGC(context.Background()); err != nil {
			t.Fatal(err)
		}
	})
}

func TestClosedStoreReturnsErrClosed(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		must(t, b.Close())
		must(t, b.Close()) // idempotent
		wantErr(t, ErrClosed)(b.Block(1))
		if err := b.Append(1, nil); !errors.Is(err, ErrClosed) {
			t.Fatalf("Append after Close = %v", err)
		}
		if err := b.Commit(1, Batch{}); !errors.Is(err, ErrClosed) {
			t.Fatalf("Commit after Close = %v", err)
		}
	})
}

func TestCommitDeletesMetaInTheSameTransaction(t *testing.T) {
	forEachBackend(t, func(t *testing.T, b Backend) {
		one := batchFor(1)
		one.Meta = append(one.Meta, Record{Key: []byte("upload/aa"), Value: []byte("ciphertext")})
		must(t, b.Commit(1, one))
		mustGet(t, []byte("ciphertext"))(b.GetMeta("upload/aa"))
		two := batchFor(2)
		two.DeleteMeta = [][]byte{[]byte("upload/aa"), []byte("upload/never-written")}
		must(t, b.Commit(2, two))
		if _, err := b.GetMeta("upload/aa"); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted meta still readable: %v", err)
		}
		checkApplied(t, b, 2)
	})
}
