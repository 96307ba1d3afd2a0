package storetest

import (
	"bytes"
	"errors"
	"testing"

	"github.com/zkbank/zkbank/store"
)

// testInstallJumpsAheadAllOrNothing: an install jumps over heights never
// committed, files blocks and states at any height up to its own, refuses
// to go back or to file anything above its height (writing nothing), and
// ordinary commits follow it.
func testInstallJumpsAheadAllOrNothing(t *testing.T, b store.Backend) {
	Must(t, b.Commit(1, BatchFor(1)))
	big := bytes.Repeat([]byte{7}, 100<<10) // over the inline limit of a block
	in := store.Install{
		Height:     40,
		Blocks:     []store.HeightBlock{{Height: 39, Block: []byte("block 39")}, {Height: 40, Block: big, Cert: []byte("cert 40")}},
		States:     []store.HeightState{{Height: 25, Shard: 3, Data: []byte("s3@25")}, {Height: 40, Shard: 0, Data: []byte("s0@40")}},
		Meta:       []store.Record{{Key: []byte("accounts"), Value: []byte("a")}},
		DeleteMeta: [][]byte{[]byte("credits")},
	}
	for name, bad := range map[string]store.Install{
		"not above the applied height": {Height: 1},
		"a block above its height":     {Height: 5, Blocks: []store.HeightBlock{{Height: 6, Block: []byte("x")}}},
		"a state above its height":     {Height: 5, States: []store.HeightState{{Height: 6, Data: []byte("x")}}},
		"a bad meta key":               {Height: 5, Meta: []store.Record{{Key: nil, Value: []byte("x")}}},
	} {
		err := b.Install(bad)
		if !errors.Is(err, store.ErrOutOfOrder) && !errors.Is(err, store.ErrInvalid) {
			t.Fatalf("Install with %s = %v, want ErrOutOfOrder or ErrInvalid", name, err)
		}
		if h, _ := b.LastApplied(); h != 1 {
			t.Fatalf("LastApplied after a refused install with %s = %d", name, h)
		}
		WantErr(t, store.ErrNotFound)(b.Block(5))
	}
	Must(t, b.Install(in))
	if h, err := b.LastApplied(); err != nil || h != 40 {
		t.Fatalf("LastApplied after install = %d, %v", h, err)
	}
	MustGet(t, []byte("block 39"))(b.Block(39))
	MustGet(t, big)(b.Block(40))
	MustGet(t, []byte("cert 40"))(b.Cert(40))
	MustGet(t, []byte("s3@25"))(b.State(25, 3))
	MustGet(t, []byte("s0@40"))(b.State(40, 0))
	MustGet(t, []byte("a"))(b.GetMeta("accounts"))
	WantErr(t, store.ErrNotFound)(b.GetMeta("credits"))
	CheckApplied(t, b, 1) // what was there stays
	WantErr(t, store.ErrNotFound)(b.Block(20))
	Must(t, b.Commit(41, BatchFor(41)))
	CheckApplied(t, b, 41)
}
