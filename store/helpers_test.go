package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"log/slog"
	"math/rand/v2"
	"testing"
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

// backends are the implementations every contract test runs against.
var backends = []struct {
	name string
	open func(t testing.TB) Backend
}{
	{"badger", func(t testing.TB) Backend { return openBadger(t, t.TempDir(), Options{}) }},
	{"memory", func(testing.TB) Backend { return NewMemory() }},
}

func forEachBackend(t *testing.T, f func(t *testing.T, b Backend)) {
	for _, bk := range backends {
		t.Run(bk.name, func(t *testing.T) { f(t, bk.open(t)) })
	}
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

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func mustGet(t testing.TB, want []byte) func([]byte, error) {
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

func wantErr(t testing.TB, target error) func([]byte, error) {
	t.Helper()
	return func(got []byte, err error) {
		t.Helper()
		if !errors.Is(err, target) {
			t.Fatalf("got (%d bytes, %v), want %v", len(got), err, target)
		}
	}
}
