package badgerstore

import (
	"log/slog"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/zkbank/zkbank/store"
)

// Benchmarks of the Badger store on its default options: every write is
// synced (see Options.badger), so these measure the disk's fsync as much as
// Badger.

func benchStore(b *testing.B) *Store {
	b.Helper()
	return openBadger(b, b.TempDir(), Options{Logger: slog.New(slog.DiscardHandler)})
}

// One height: block, certificate and six shard states, 1 MiB each, written
// in one transaction and synced.
func BenchmarkCommit8x1MiB(b *testing.B) {
	s := benchStore(b)
	batch := store.Batch{Block: fill(mib, 1), Cert: fill(mib, 2)}
	for shard := range uint32(6) {
		batch.States = append(batch.States, store.ShardState{Shard: shard, Data: fill(mib, 3, uint64(shard))})
	}
	b.SetBytes(8 * mib)
	b.ReportAllocs()
	h := uint64(0)
	for b.Loop() {
		h++
		if err := s.Commit(h, batch); err != nil {
			b.Fatal(err)
		}
	}
}

// A 1 MiB state read back (page cache warm) and checksummed.
func BenchmarkReadState1MiB(b *testing.B) {
	s := benchStore(b)
	must(b, s.PutState(1, 0, fill(mib, 1)))
	b.SetBytes(mib)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.State(1, 0); err != nil {
			b.Fatal(err)
		}
	}
}

// A 200-byte consensus record, synced before Append returns.
func BenchmarkWALAppend(b *testing.B) {
	s := benchStore(b)
	rec := fill(200, 1)
	b.ReportAllocs()
	h := uint64(0)
	for b.Loop() {
		h++
		if err := s.Append(h, rec); err != nil {
			b.Fatal(err)
		}
	}
}

// Live heap an open store adds after four commits of a 1 MiB block and a
// 768 KiB state, against Badger's DefaultOptions doing the same. Reported as
// heap-MiB; ns/op is Open, the writes and Close.
func BenchmarkIdleHeap(b *testing.B) {
	b.Run("store", func(b *testing.B) {
		var sum uint64
		n := 0
		for b.Loop() {
			heap, closeFn := heapAfterOpen(b, b.TempDir(), Options{Logger: slog.New(slog.DiscardHandler)}, func(s *Store) {
				for h := uint64(1); h <= 4; h++ {
					must(b, s.Commit(h, store.Batch{Block: fill(mib, h), States: []store.ShardState{{Shard: 0, Data: fill(768<<10, h)}}}))
				}
			})
			closeFn()
			sum += heap
			n++
		}
		b.ReportMetric(float64(sum)/float64(n)/mib, "heap-MiB")
	})
	b.Run("badger-defaults", func(b *testing.B) {
		var sum uint64
		n := 0
		for b.Loop() {
			var db *badger.DB
			heap := heapAround(func() {
				var err error
				db, err = badger.Open(badger.DefaultOptions(b.TempDir()).WithLogger(nil))
				must(b, err)
				for h := uint64(1); h <= 4; h++ {
					must(b, db.Update(func(txn *badger.Txn) error {
						if err := txn.Set(blockKey(h), fill(mib, h)); err != nil {
							return err
						}
						return txn.Set(stateKey(h, 0), fill(768<<10, h))
					}))
				}
			})
			_ = db.Close()
			sum += heap
			n++
		}
		b.ReportMetric(float64(sum)/float64(n)/mib, "heap-MiB")
	})
}
