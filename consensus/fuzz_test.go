package consensus

import (
	"bytes"
	"testing"
)

// FuzzDecodeMessage: decoding arbitrary bytes never panics, and whatever
// decodes re-encodes to the same bytes (the encoding is canonical, so
// signatures and hashes over encodings are unambiguous). The seed corpus is
// in testdata/fuzz/FuzzDecodeMessage.
func FuzzDecodeMessage(f *testing.F) {
	for _, m := range sampleMessages(f) {
		f.Add(EncodeMessage(m))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := DecodeMessage(b)
		if err != nil {
			return
		}
		if again := EncodeMessage(m); !bytes.Equal(again, b) {
			t.Fatalf("decode/encode not canonical:\n in %x\nout %x", b, again)
		}
		if r, err := DecodeWALRecord(append([]byte{byte(RecordVote)}, b...)); err == nil {
			_ = EncodeWALRecord(r)
		}
	})
}
