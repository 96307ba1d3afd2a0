package wire

import (
	"bytes"
	"errors"
	"testing"
)

var errBad = errors.New("bad")

func TestRoundTripAndErrors(t *testing.T) {
	var w Writer
	w.U8(7)
	w.U32(1 << 20)
	w.U64(1 << 40)
	w.Bytes([]byte("abc"))
	w.Fixed([]byte{9, 9})
	r := NewReader(w.B, errBad)
	if r.U8() != 7 || r.U32() != 1<<20 || r.U64() != 1<<40 || !bytes.Equal(r.Bytes(3), []byte("abc")) || !bytes.Equal(r.Fixed(2), []byte{9, 9}) || r.Done() != nil {
		t.Fatalf("round trip failed: %v", r.Err)
	}
	if err := NewReader(w.B[:5], errBad); err.U8() == 7 && err.U64() == 0 && !errors.Is(err.Done(), errBad) {
		t.Fatal("truncated input not reported")
	}
	if r := NewReader(w.B, errBad); r.U8() == 7 && r.U32() != 0 && r.U64() != 0 && r.Bytes(2) == nil && !errors.Is(r.Err, errBad) {
		t.Fatal("oversized field not reported")
	}
	if r := NewReader(append(w.B, 0), errBad); r.U8() == 7 && r.U32() != 0 && r.U64() != 0 && r.Bytes(3) != nil && r.Fixed(2) != nil && !errors.Is(r.Done(), errBad) {
		t.Fatal("trailing byte not reported")
	}
	c := Writer{}
	c.U32(5)
	if r := NewReader(c.B, errBad); r.Count(4) != 0 || !errors.Is(r.Err, errBad) {
		t.Fatal("count over max not reported")
	}
}

func TestBoolHasOneEncoding(t *testing.T) {
	var w Writer
	w.Bool(true)
	w.Bool(false)
	if r := NewReader(w.B, errBad); !r.Bool() || r.Bool() || r.Done() != nil {
		t.Fatalf("round trip: %v", r.Err)
	}
	if r := NewReader([]byte{2}, errBad); r.Bool() || !errors.Is(r.Err, errBad) {
		t.Fatal("a boolean byte of 2 was accepted")
	}
}
