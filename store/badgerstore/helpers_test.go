package badgerstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"log/slog"
	"math/rand/v2"
	"testing"

	"github.com/zkbank/zkbank/store"
	"github.com/zkbank/zkbank/store/storetest"
)

// testLogger sends Badger's warnings and errors to the test log; its info
// chatter would drown the output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(bytes.TrimRight(p, "\n")))
	return len(p), nil
}

func openBadger(t testing.TB, dir string, o Options) *Store {
	t.Helper()
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	s, err := Open(dir, o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// The contract tests of store/storetest, against Badger; package store
// runs the same ones against Memory.
func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Backend { return openBadger(t, t.TempDir(), Options{}) })
}

// batchFor and checkApplied are the contract's test batch of a height.
func batchFor(h uint64) store.Batch { return storetest.BatchFor(h) }

func checkApplied(t testing.TB, b store.Backend, h uint64) {
	t.Helper()
	storetest.CheckApplied(t, b, h)
}

// fill returns n pseudo-random bytes determined by seed, so a reader can
// recompute what a writer stored.
func fill(n int, seed ...uint64) []byte {
	var key []byte
	for _, v := range seed {
		key = binary.BigEndian.AppendUint64(key, v)
	}
	r := rand.NewChaCha8(sha256.Sum256(key))
	out := make([]byte, n)
	_, _ = r.Read(out)
	return out
}

func TestFillDependsOnEverySeed(t *testing.T) {
	a := fill(64, 1)
	for _, seed := range [][]uint64{{2}, {1, 0}, {1, 1}, {257}} {
		if bytes.Equal(a, fill(64, seed...)) {
			t.Fatalf("fill(1) == fill(%v)", seed)
		}
	}
	if !bytes.Equal(a, fill(64, 1)) {
		t.Fatal("fill is not deterministic")
	}
}

// The read and error checks are the contract suite's.
var (
	must    = storetest.Must
	mustGet = storetest.MustGet
	wantErr = storetest.WantErr
)
