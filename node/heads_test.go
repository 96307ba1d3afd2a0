package node

import (
	"context"
	"fmt"
	"log/slog"
	"testing"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/zkbank/zkbank/genesis"
)

// A head announcement round-trips, and anything that is not exactly one
// (other length, other version) is ignored rather than misread.
func TestHeadAnnouncementDecodesOnlyWhatWasEncoded(t *testing.T) {
	msg := encodeHead(42, [32]byte{7})
	if h, ok := decodeHead(msg); !ok || h != 42 {
		t.Fatalf("decoded %d, %v", h, ok)
	}
	for name, bad := range map[string][]byte{
		"empty":     nil,
		"short":     msg[:headLen-1],
		"long":      append(append([]byte(nil), msg...), 0),
		"version 2": append([]byte{2}, msg[1:]...),
	} {
		if _, ok := decodeHead(bad); ok {
			t.Errorf("%s announcement accepted", name)
		}
	}
}

// The validators' height a node exports (and a full node wakes on) is the
// (f+1)-th highest of their latest reports: f byzantine validators
// announcing a huge height move nothing, and it never exceeds what an
// honest validator reached.
func TestAttack_ByzantineValidatorsCannotInflateTheValidatorsHeight(t *testing.T) {
	for _, c := range []struct {
		latest []uint64
		f      int
		want   uint64
	}{
		{[]uint64{40, 41, 42, 1 << 62}, 1, 42},
		{[]uint64{0, 0, 0, 1 << 62}, 1, 0},
		{[]uint64{10, 11, 12, 13, 14, 1 << 62, 1 << 62}, 2, 14},
		{nil, 0, 0},
	} {
		if got := agreedHeight(c.latest, c.f); got != c.want {
			t.Fatalf("agreedHeight(%v, f=%d) = %d, want %d", c.latest, c.f, got, c.want)
		}
	}
}

// Heads gossip is open to anyone: announcements published by peers that are
// not validators (however high, however many) move nothing; a validator's
// counts once it is among the f+1 highest.
func TestAttack_NonValidatorHeadAnnouncementsAreIgnored(t *testing.T) {
	var vals []peer.ID
	for i := 0; i < 4; i++ {
		vals = append(vals, peer.ID(fmt.Sprintf("validator-%d", i)))
	}
	n, _ := newNode(context.Background(), "heads", 0, Home{Dir: t.TempDir()}, &genesis.Genesis{}, nil, nil, slog.New(slog.DiscardHandler), vals, nil)
	latest := make([]uint64, 4)
	var hash [32]byte
	for k := 0; k < 10; k++ {
		n.noteHead(latest, peer.ID(fmt.Sprintf("stranger-%d", k)), encodeHead(1<<40, hash))
	}
	if got := n.validatorsBest.Load(); got != 0 {
		t.Fatalf("strangers' announcements moved the validators' height to %d", got)
	}
	n.noteHead(latest, vals[3], encodeHead(1<<40, hash)) // one byzantine validator
	n.noteHead(latest, vals[1], []byte("not an announcement"))
	if got := n.validatorsBest.Load(); got != 0 {
		t.Fatalf("one validator alone moved the height to %d", got)
	}
	n.noteHead(latest, vals[0], encodeHead(50, hash))
	n.noteHead(latest, vals[2], encodeHead(49, hash))
	if got := n.validatorsBest.Load(); got != 50 {
		t.Fatalf("validators' height %d, want 50 (the second highest)", got)
	}
	n.noteHead(latest, vals[0], encodeHead(20, hash)) // older: ignored
	if latest[0] != 50 {
		t.Fatalf("an older announcement lowered validator 0's height to %d", latest[0])
	}
}
