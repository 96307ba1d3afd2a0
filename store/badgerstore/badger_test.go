package badgerstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/zkbank/zkbank/store"
	"github.com/zkbank/zkbank/store/storetest"
)

const mib = 1 << 20

func vlogBytes(t testing.TB, dir string) (total int64, files int) {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
	must(t, err)
	for _, p := range paths {
		fi, err := os.Stat(p)
		must(t, err)
		total += fi.Size()
	}
	return total, len(paths)
}

// Large values stay out of the LSM tree: states go to the value log, and
// blocks and certificates over bigValue to blob files (neither in the value
// log nor in the LSM); small blocks stay in the value log.
func TestLargeValuesGoToTheValueLog(t *testing.T) {
	dir := t.TempDir()
	s := openBadger(t, dir, Options{})
	block, cert, state := fill(mib, 1), fill(mib, 2), fill(768<<10, 3)
	small := fill(bigValue, 4)
	must(t, s.Commit(1, store.Batch{Block: block, Cert: cert, States: []store.ShardState{{Shard: 7, Data: state}}}))
	must(t, s.Commit(2, store.Batch{Block: small, Cert: small}))
	mustGet(t, block)(s.Block(1))
	mustGet(t, cert)(s.Cert(1))
	mustGet(t, state)(s.State(1, 7))
	mustGet(t, small)(s.Block(2))
	must(t, s.Close())
	vlogs := readAll(t, dir, "*.vlog")
	lsm := readAll(t, dir, "*.mem") + readAll(t, dir, "*.sst")
	blobs := readAll(t, filepath.Join(dir, blobDir), "*")
	for name, v := range map[string][]byte{"block": block, "cert": cert, "state": state, "small block": small} {
		inBlobs := name == "block" || name == "cert"
		if strings.Contains(vlogs, string(v[:256])) == inBlobs {
			t.Errorf("%s: in the value log %v, want %v", name, !inBlobs, inBlobs)
		}
		if strings.Contains(blobs, string(v[:256])) != inBlobs {
			t.Errorf("%s: in a blob file %v, want %v", name, !inBlobs, inBlobs)
		}
		if strings.Contains(lsm, string(v[:256])) {
			t.Errorf("%s copied into the LSM tree", name)
		}
	}
	// A large block whose blob is gone is corruption, not a missing block.
	h := sha256.Sum256(block)
	must(t, os.Remove(filepath.Join(dir, blobDir, hex.EncodeToString(h[:]))))
	s = openBadger(t, dir, Options{})
	if _, err := s.Block(1); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("block whose blob is gone: %v, want ErrCorrupt", err)
	}
}

func readAll(t *testing.T, dir, glob string) string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, glob))
	must(t, err)
	var sb strings.Builder
	for _, p := range paths {
		data, err := os.ReadFile(p)
		must(t, err)
		sb.Write(data)
	}
	return sb.String()
}

func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	s := openBadger(t, dir, Options{})
	for h := uint64(1); h <= 3; h++ {
		must(t, s.Append(h, []byte{byte(h)}))
		must(t, s.Commit(h, batchFor(h)))
	}
	four := batchFor(4)
	four.Meta = append(four.Meta, store.Record{Key: []byte("genesis"), Value: []byte("hash")})
	must(t, s.Commit(4, four))
	big := fill(mib, 9)
	must(t, s.PutState(3, 9, big))
	must(t, s.Close())

	s = openBadger(t, dir, Options{})
	for h := uint64(1); h <= 4; h++ {
		checkApplied(t, s, h)
	}
	mustGet(t, big)(s.State(3, 9))
	mustGet(t, []byte("hash"))(s.GetMeta("genesis"))
	mustGet(t, []byte{4})(s.GetMeta("credits"))
	if h, err := s.LastApplied(); err != nil || h != 4 {
		t.Fatalf("LastApplied after reopen = %d, %v", h, err)
	}
	// The WAL resumes after its last record and still refuses to go back.
	if err := s.Append(2, []byte("old")); !errors.Is(err, store.ErrOutOfOrder) {
		t.Fatalf("Append(2) after reopen = %v, want ErrOutOfOrder", err)
	}
	must(t, s.Append(3, []byte("after")))
	recs, err := s.Records()
	must(t, err)
	if len(recs) != 4 || string(recs[3]) != "after" {
		t.Fatalf("Records after reopen = %q", recs)
	}
	must(t, s.Commit(5, batchFor(5)))
}

// A reader must never see a height as applied without all of its records,
// nor any record of a height before it is applied.
func TestCommitIsAtomicForConcurrentReaders(t *testing.T) {
	s := openBadger(t, t.TempDir(), Options{})
	const heights = 40
	var done atomic.Bool
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	wg.Add(2)
	go func() { // applied => complete
		defer wg.Done()
		for !done.Load() {
			h, err := s.LastApplied()
			if err != nil || h == 0 {
				continue
			}
			for _, st := range batchFor(h).States {
				if _, err := s.State(h, st.Shard); err != nil {
					errs <- err
					return
				}
			}
			if _, err := s.Status(batchFor(h).Statuses[0].Key); err != nil {
				errs <- err
				return
			}
		}
	}()
	go func() { // visible => applied
		defer wg.Done()
		for h := uint64(1); h <= heights && !done.Load(); {
			if _, err := s.State(h, 1); errors.Is(err, store.ErrNotFound) {
				continue
			} else if err != nil {
				errs <- err
				return
			}
			if last, _ := s.LastApplied(); last < h {
				errs <- errors.New("state visible before its height is applied")
				return
			}
			h++
		}
	}()
	for h := uint64(1); h <= heights; h++ {
		b := batchFor(h)
		b.States = append(b.States, store.ShardState{Shard: 2, Data: fill(64<<10, h)})
		must(t, s.Commit(h, b))
	}
	done.Store(true)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

func TestCommitTooLargeIsErrTooLargeAndWritesNothing(t *testing.T) {
	s := openBadger(t, t.TempDir(), Options{MemTableSize: 1 * mib})
	b := batchFor(1)
	for i := range 5000 {
		b.Statuses = append(b.Statuses, store.Record{Key: []byte("transfer-" + strings.Repeat("x", 20) + string(rune(i))), Value: []byte("applied at 1")})
	}
	if err := s.Commit(1, b); !errors.Is(err, store.ErrTooLarge) {
		t.Fatalf("Commit of 5000 statuses with 1 MiB memtables = %v, want ErrTooLarge", err)
	}
	wantErr(t, store.ErrNotFound)(s.Block(1))
	if h, _ := s.LastApplied(); h != 0 {
		t.Fatalf("LastApplied = %d after a failed commit", h)
	}
}

// rawPut writes bytes under a key without an envelope: the test hook for
// garbage and torn values.
func rawPut(t testing.TB, s *Store, key, raw []byte) {
	t.Helper()
	must(t, s.db.Update(func(txn *badger.Txn) error { return txn.Set(key, raw) }))
}

func TestGarbageValuesAreErrCorrupt(t *testing.T) {
	s := openBadger(t, t.TempDir(), Options{})
	must(t, s.Commit(1, batchFor(1)))
	must(t, s.PutState(2, 0, fill(4096, 2)))

	good, err := s.db.NewTransaction(false).Get(stateKey(2, 0))
	must(t, err)
	sealed, err := good.ValueCopy(nil)
	must(t, err)

	torn := bytes.Clone(sealed)
	torn[len(torn)/2] ^= 0x01
	rawPut(t, s, stateKey(2, 0), torn)
	wantErr(t, store.ErrCorrupt)(s.State(2, 0))

	rawPut(t, s, stateKey(2, 1), sealed[:3]) // shorter than the header
	wantErr(t, store.ErrCorrupt)(s.State(2, 1))

	rawPut(t, s, stateKey(2, 2), sealed) // valid envelope, wrong key
	wantErr(t, store.ErrCorrupt)(s.State(2, 2))

	v2 := bytes.Clone(sealed)
	v2[0] = 2 // a format this build does not know
	rawPut(t, s, stateKey(2, 3), v2)
	wantErr(t, store.ErrCorrupt)(s.State(2, 3))

	rawPut(t, s, blockKey(1), []byte("garbage garbage garbage"))
	wantErr(t, store.ErrCorrupt)(s.Block(1))

	rawPut(t, s, walKey(5, 1), []byte("garbage garbage"))
	if _, err := s.Records(); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("Records over a garbage record = %v, want ErrCorrupt", err)
	}

	rawPut(t, s, keyLastApplied, []byte{1, 2, 3, 4, 5, 6, 7, 8, 9})
	if _, err := s.LastApplied(); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("LastApplied over garbage = %v, want ErrCorrupt", err)
	}
	if err := s.Commit(2, batchFor(2)); !errors.Is(err, store.ErrCorrupt) {
		t.Fatalf("Commit over a garbage last-applied = %v, want ErrCorrupt", err)
	}
}

// flipInValueLog flips one bit in the middle of the first copy of payload
// found in dir's value-log files and returns the file's name.
func flipInValueLog(t *testing.T, dir string, payload []byte) string {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join(dir, "*.vlog"))
	must(t, err)
	for _, p := range paths {
		data, err := os.ReadFile(p)
		must(t, err)
		if i := bytes.Index(data, payload[:64]); i >= 0 {
			at := i + len(payload)/2
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			must(t, err)
			_, err = f.WriteAt([]byte{data[at] ^ 0x80}, int64(at))
			must(t, err)
			must(t, f.Close())
			return filepath.Base(p)
		}
	}
	t.Fatal("payload not found in any value-log file")
	return ""
}

// A bit flipped on disk must surface as ErrCorrupt. Badger helps little: it
// does not verify value checksums on read, and when it cannot read a value
// it logs and returns an empty value with a nil error.
func TestBitFlipOnDiskIsErrCorrupt(t *testing.T) {
	t.Run("sealed value-log file", func(t *testing.T) {
		// Badger reads the flipped bytes back as they are.
		dir := t.TempDir()
		s := openBadger(t, dir, Options{ValueLogFileSize: 2 * mib})
		state := fill(mib, 42)
		must(t, s.PutState(1, 0, state))
		for h := uint64(2); h <= 4; h++ { // rotate past the file holding it
			must(t, s.PutState(h, 0, fill(mib, h)))
		}
		must(t, s.Close())
		t.Logf("flipped a bit in %s", flipInValueLog(t, dir, state))
		s = openBadger(t, dir, Options{ValueLogFileSize: 2 * mib})
		wantErr(t, store.ErrCorrupt)(s.State(1, 0))
		mustGet(t, fill(mib, 4))(s.State(4, 0))
	})
	t.Run("newest value-log file", func(t *testing.T) {
		// On open Badger truncates the newest file at the first entry whose
		// checksum fails, as it would a torn tail, so the value and every
		// later one in that file read back empty.
		dir := t.TempDir()
		s := openBadger(t, dir, Options{})
		state, later := fill(mib, 42), fill(mib, 43)
		must(t, s.PutState(1, 0, state))
		must(t, s.PutState(2, 0, later))
		must(t, s.Close())
		flipInValueLog(t, dir, state)
		s = openBadger(t, dir, Options{Logger: slog.New(slog.DiscardHandler)})
		wantErr(t, store.ErrCorrupt)(s.State(1, 0))
		wantErr(t, store.ErrCorrupt)(s.State(2, 0))
	})
}

func TestOpenRefusesForeignDirectory(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
	must(t, err)
	must(t, db.Update(func(txn *badger.Txn) error { return txn.Set([]byte("k"), []byte("v")) }))
	must(t, db.Close())
	if s, err := Open(dir, Options{Logger: testLogger(t)}); err == nil {
		_ = s.Close()
		t.Fatal("Open accepted a Badger directory that is not a store")
	}
}

// Append's durability rests on SyncWrites: every Badger commit fsyncs the
// value log and the memtable WAL before returning.
func TestWritesAreSynced(t *testing.T) {
	s := openBadger(t, t.TempDir(), Options{})
	if !s.db.Opts().SyncWrites {
		t.Fatal("store opened Badger without SyncWrites")
	}
}

func TestPruneThenGCReclaimsValueLog(t *testing.T) {
	dir := t.TempDir()
	s := openBadger(t, dir, Options{ValueLogFileSize: 2 * mib})
	for h := uint64(1); h <= 24; h++ {
		must(t, s.Commit(h, store.Batch{
			Block:  []byte{byte(h)},
			States: []store.ShardState{{Shard: 0, Data: fill(256<<10, h, 0)}, {Shard: 1, Data: fill(256<<10, h, 1)}},
		}))
	}
	before, files := vlogBytes(t, dir)
	must(t, s.Prune(22))
	n, err := s.RunGC(context.Background())
	must(t, err)
	after, filesAfter := vlogBytes(t, dir)
	t.Logf("value log: %d files %.1f MiB -> %d files %.1f MiB, %d rewritten",
		files, float64(before)/mib, filesAfter, float64(after)/mib, n)
	if n == 0 || after >= before {
		t.Fatalf("RunGC after Prune rewrote %d files, value log %d -> %d bytes", n, before, after)
	}
	for h := uint64(22); h <= 24; h++ {
		mustGet(t, fill(256<<10, h, 1))(s.State(h, 1))
		mustGet(t, []byte{byte(h)})(s.Block(h))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := s.RunGC(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("RunGC with a cancelled context = %v", err)
	}
}

type captureHandler struct {
	mu   sync.Mutex
	recs []slog.Record
}

func (h *captureHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *captureHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	return nil
}
func (h *captureHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &attrHandler{h, as}
}
func (h *captureHandler) WithGroup(string) slog.Handler { return h }

type attrHandler struct {
	*captureHandler
	attrs []slog.Attr
}

func (h *attrHandler) Handle(ctx context.Context, r slog.Record) error {
	r = r.Clone()
	r.AddAttrs(h.attrs...)
	return h.captureHandler.Handle(ctx, r)
}

func TestBadgerLogsThroughSlog(t *testing.T) {
	h := &captureHandler{}
	l := newBadgerLogger(slog.New(h))
	l.Errorf("e %d\n", 1)
	l.Warningf("w")
	l.Infof("i")
	l.Debugf("d")
	want := []slog.Level{slog.LevelError, slog.LevelWarn, slog.LevelInfo, slog.LevelDebug}
	if len(h.recs) != len(want) {
		t.Fatalf("got %d records, want %d", len(h.recs), len(want))
	}
	for i, r := range h.recs {
		comp := ""
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "component" {
				comp = a.Value.String()
			}
			return true
		})
		if r.Level != want[i] || comp != "badger" {
			t.Errorf("record %d: level %v component %q", i, r.Level, comp)
		}
	}
	if h.recs[0].Message != "e 1" {
		t.Errorf("message %q: trailing newline not trimmed", h.recs[0].Message)
	}

	// And a real Open goes through it.
	h2 := &captureHandler{}
	s := openBadger(t, t.TempDir(), Options{Logger: slog.New(h2)})
	must(t, s.Close())
	if len(h2.recs) == 0 {
		t.Fatal("Badger logged nothing through the store's logger on open/close")
	}
}

// heapAround returns how much the live heap grew across f.
func heapAround(f func()) uint64 {
	var m0, m1 runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&m0)
	f()
	runtime.GC()
	runtime.ReadMemStats(&m1)
	return m1.HeapAlloc - min(m1.HeapAlloc, m0.HeapAlloc)
}

// heapAfterOpen is the live heap an open store adds after work, in bytes.
func heapAfterOpen(t testing.TB, dir string, o Options, work func(*Store)) (uint64, func()) {
	t.Helper()
	var s *Store
	heap := heapAround(func() {
		var err error
		s, err = Open(dir, o)
		must(t, err)
		if work != nil {
			work(s)
		}
	})
	return heap, func() { _ = s.Close() }
}

func TestIdleHeapIsSmall(t *testing.T) {
	quiet := slog.New(slog.DiscardHandler)
	heap, closeFn := heapAfterOpen(t, t.TempDir(), Options{Logger: quiet}, func(s *Store) {
		for h := uint64(1); h <= 4; h++ {
			must(t, s.Commit(h, store.Batch{Block: fill(mib, h), States: []store.ShardState{{Shard: 0, Data: fill(768<<10, h)}}}))
		}
	})
	defer closeFn()
	t.Logf("idle heap of an open store after 4 commits: %.1f MiB", float64(heap)/mib)
	if heap > 24*mib {
		t.Fatalf("idle heap %.1f MiB, budget 24 MiB", float64(heap)/mib)
	}
}

// Badger v4.9.6 refuses to open a directory holding a zero-length log file,
// which a crash during log rotation leaves behind (see removeEmptyLogs).
func TestOpenAfterCrashDuringLogRotation(t *testing.T) {
	dir := t.TempDir()
	s := openBadger(t, dir, Options{})
	must(t, s.Commit(1, batchFor(1)))
	must(t, s.Close())
	for _, name := range []string{"000002.vlog", "00009.mem"} {
		must(t, os.WriteFile(filepath.Join(dir, name), nil, 0o644))
	}
	s = openBadger(t, dir, Options{})
	checkApplied(t, s, 1)
	must(t, s.Commit(2, batchFor(2)))
	checkApplied(t, s, 2)
}

// Blobs survive a reopen; a torn blob (content that does not hash to its
// name) reads as missing, and a temporary file a crash left is removed at
// Open.
func TestBlobsSurviveReopenAndTornOnesReadAsMissing(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	good := bytes.Repeat([]byte{7}, 1<<20)
	torn := bytes.Repeat([]byte{9}, 1<<10)
	hg, ht := sha256.Sum256(good), sha256.Sum256(torn)
	storetest.Must(t, s.PutBlobs(map[[32]byte][]byte{hg: good, ht: torn}))
	storetest.Must(t, s.Close())
	// A crash mid-write: a truncated file under the name, a stray temporary.
	bd := filepath.Join(dir, blobDir)
	if err := os.WriteFile(filepath.Join(bd, hex.EncodeToString(ht[:])), torn[:100], 0o600); err != nil {
		t.Fatal(err)
	}
	stray := filepath.Join(bd, hex.EncodeToString(hg[:])+".tmp")
	if err := os.WriteFile(stray, good[:10], 0o600); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	storetest.MustGet(t, good)(s.Blob(hg))
	storetest.WantErr(t, store.ErrNotFound)(s.Blob(ht))
	if _, err := os.Stat(stray); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the stray temporary file is still there: %v", err)
	}
}
