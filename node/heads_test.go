package node

import "testing"

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
