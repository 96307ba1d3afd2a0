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
