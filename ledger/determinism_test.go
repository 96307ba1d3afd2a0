package ledger

import (
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// The same batch evaluated in two processes (here: this test and a child
// process with GOMAXPROCS=1) must give byte-identical check ciphertexts:
// validators compare digests of them as proof of work.
func TestDeterminism_TwoProcessesSameDigest(t *testing.T) {
	if os.Getenv("ZKBANK_DETERMINISM_CHILD") != "" {
		return // the child entry point is TestDeterminismChild
	}
	w := genesis3(t)
	p := w.nw.p
	a, _ := w.b.Build(w.spec("alice", "bob", 17, 100))
	s := w.spec("bob", "carol", 99, 50) // an overdraft, to cover a rejecting lane too
	vals := make([]uint64, p.Slots)
	p.EncodeLanes(vals, s.Lane, 99, (50-99)&MaxAmount)
	b := w.forged(t, vals, s)
	st, _ := w.book.State(0, 0)
	items := []Item{{CT: w.nw.upload(t, a), Lanes: []int{w.acct["alice"].lane}}, {CT: w.nw.upload(t, b), Lanes: []int{w.acct["bob"].lane}}}
	ev, err := w.nw.eng.Evaluate(st, items, []byte("seed"))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ev.Checks.Digest()

	dir := t.TempDir()
	keys, err := w.nw.keys.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	stb, _ := st.MarshalBinary()
	for name, data := range map[string][]byte{"keys": keys, "state": stb, "a": a.Ciphertext, "b": b.Ciphertext} {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestDeterminismChild$", "-test.v")
	cmd.Env = append(os.Environ(), "ZKBANK_DETERMINISM_CHILD="+dir, "GOMAXPROCS=1",
		"ZKBANK_LANES="+strconv.Itoa(w.acct["alice"].lane)+","+strconv.Itoa(w.acct["bob"].lane))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child: %v\n%s", err, out)
	}
	var got string
	for _, line := range strings.Split(string(out), "\n") {
		if i := strings.Index(line, "DIGEST="); i >= 0 {
			got = strings.TrimSpace(line[i+len("DIGEST="):])
		}
	}
	if got != hex.EncodeToString(want[:]) {
		t.Fatalf("digest differs across processes:\n parent %x\n child  %s", want, got)
	}
}

func TestDeterminismChild(t *testing.T) {
	dir := os.Getenv("ZKBANK_DETERMINISM_CHILD")
	if dir == "" {
		t.Skip("child process only")
	}
	p := MustParams(ZKB128)
	read := func(n string) []byte {
		b, err := os.ReadFile(filepath.Join(dir, n))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	keys, err := p.DecodePublicKeys(read("keys"))
	if err != nil {
		t.Fatal(err)
	}
	eng, err := NewEngine(p, keys)
	if err != nil {
		t.Fatal(err)
	}
	st := newStateCT(p)
	if err := strictDecode(st, read("state")); err != nil {
		t.Fatal(err)
	}
	lanes := strings.Split(os.Getenv("ZKBANK_LANES"), ",")
	var items []Item
	for i, n := range []string{"a", "b"} {
		ct, err := p.DecodeUpload(read(n))
		if err != nil {
			t.Fatal(err)
		}
		l, err := strconv.Atoi(lanes[i])
		if err != nil {
			t.Fatal(err)
		}
		items = append(items, Item{CT: ct, Lanes: []int{l}})
	}
	ev, err := eng.Evaluate(st, items, []byte("seed"))
	if err != nil {
		t.Fatal(err)
	}
	d, _ := ev.Checks.Digest()
	t.Logf("DIGEST=%x", d)
}
