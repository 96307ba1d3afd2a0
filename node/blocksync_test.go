package node

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/zkbank/zkbank/consensus"
)

// A peer's answer to a run request is decoded strictly: a wrong version,
// more decisions than a run holds, a truncated or trailing byte, or
// something other than a commit is refused before anything is verified or
// fetched.
func TestAttack_MalformedBlocksAnswersAreRefused(t *testing.T) {
	commit := consensus.EncodeMessage(&consensus.Commit{Cert: &consensus.CommitCertificate{Height: 7, Round: 0, BlockID: consensus.HashValue([]byte("b")),
		Sigs: []consensus.CommitSig{{Validator: 0, Signature: make([]byte, 64)}}}, Value: []byte("b")})
	vote := consensus.EncodeMessage(&consensus.Vote{Type: consensus.Prevote, Height: 7})
	good := encodeRun(9, [][]byte{commit})
	last, cms, err := decodeRun(good)
	if err != nil || last != 9 || len(cms) != 1 || cms[0].Height() != 7 || string(cms[0].Value) != "b" {
		t.Fatalf("a good answer: last %d, %d decisions, %v", last, len(cms), err)
	}
	tooMany := encodeRun(9, nil)
	binary.BigEndian.PutUint16(tooMany[9:], blockRun+1)
	for name, b := range map[string][]byte{
		"empty":            nil,
		"another version":  append([]byte{blocksVersion + 1}, good[1:]...),
		"more than a run":  tooMany,
		"truncated":        good[:len(good)-1],
		"trailing bytes":   append(append([]byte(nil), good...), 0),
		"not a commit":     encodeRun(9, [][]byte{vote}),
		"a length too big": append(encodeRun(9, nil)[:9], 0, 1, 0xff, 0xff, 0xff, 0xff),
	} {
		if _, _, err := decodeRun(b); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// Strangers are free to make: per-peer rates alone do not bound what a
// node spends serving blocks. At most maxBuilding answers are built at
// once, node-wide (the rest are throttled), and every keys answer shares
// one copy of the keys, read once they exist.
func TestAttack_BlocksServingIsBoundedNodeWide(t *testing.T) {
	b := newBlockServer()
	for i := 0; i < maxBuilding; i++ {
		if !b.enter() {
			t.Fatalf("answer %d refused below the bound", i)
		}
	}
	if b.enter() {
		t.Fatal("an answer beyond the node-wide bound was built")
	}
	b.leave()
	if !b.enter() {
		t.Fatal("a finished answer did not free its slot")
	}
	path := filepath.Join(t.TempDir(), "public_keys.bin")
	if _, err := b.publicKeys(path); err == nil {
		t.Fatal("keys served before they exist")
	}
	if err := os.WriteFile(path, []byte("keys"), 0o644); err != nil {
		t.Fatal(err)
	}
	k1, err1 := b.publicKeys(path)
	k2, err2 := b.publicKeys(path)
	if err1 != nil || err2 != nil || string(k1) != "keys" || &k1[0] != &k2[0] {
		t.Fatalf("keys not shared: %v %v", err1, err2)
	}
}
