package ledger

import (
	"testing"
)

// Decoders of everything that arrives from the network must return errors,
// never panic or crash, on arbitrary bytes.

func FuzzDecodeUpload(f *testing.F) {
	p := MustParams(ZKB128)
	b := newBuilder(p, NewOwnerKeys(p).PK, "fuzz")
	good, err := b.EncryptSlots(make([]uint64, p.Slots))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:100])
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		_, _ = p.DecodeUpload(in)
	})
}

func FuzzDecodeShare(f *testing.F) {
	p := MustParams(ZKB128)
	f.Add([]byte{0, 0, 0, 1, 0, 0, 0, 8, 1, 2, 3, 4, 5, 6, 7, 8})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, in []byte) {
		_, _ = p.DecodeDecShare(in)
		_, _ = p.DecodeReencShare(in)
	})
}

func FuzzSubmission(f *testing.F) {
	var s Submission
	s.Envelopes = []Envelope{{Chain: "x", Sig: make([]byte, 64)}}
	s.Sealed = []byte{1, 2, 3}
	good, _ := s.MarshalBinary()
	f.Add(good)
	f.Add([]byte{1, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, in []byte) {
		var s Submission
		if err := s.UnmarshalBinary(in); err == nil {
			out, _ := s.MarshalBinary()
			var again Submission
			if err := again.UnmarshalBinary(out); err != nil {
				t.Fatalf("re-decode: %v", err)
			}
		}
	})
}
