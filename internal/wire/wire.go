// Package wire is the length-prefixed binary encoding zkbank's own messages
// use (envelopes, shares, blocks, extensions): big-endian integers and byte
// strings prefixed by a u32 length. It imports nothing of zkbank.
package wire

import (
	"encoding/binary"
	"fmt"
)

// Writer appends fields to B.
type Writer struct{ B []byte }

func (w *Writer) U8(v uint8)     { w.B = append(w.B, v) }
func (w *Writer) U32(v uint32)   { w.B = binary.BigEndian.AppendUint32(w.B, v) }
func (w *Writer) U64(v uint64)   { w.B = binary.BigEndian.AppendUint64(w.B, v) }
func (w *Writer) Fixed(p []byte) { w.B = append(w.B, p...) }
func (w *Writer) Bytes(p []byte) { w.U32(uint32(len(p))); w.B = append(w.B, p...) }

// Bool writes one byte, 1 for true and 0 for false.
func (w *Writer) Bool(v bool) {
	if v {
		w.U8(1)
	} else {
		w.U8(0)
	}
}

// Reader decodes what Writer wrote. The first error sticks and every later
// read returns a zero value, so decoders check Err (or Done) once at the end.
// Errors wrap the sentinel given to NewReader.
type Reader struct {
	b         []byte
	Err       error
	malformed error
}

// NewReader reads p; errors wrap malformed.
func NewReader(p []byte, malformed error) *Reader { return &Reader{b: p, malformed: malformed} }

// Fail records an error (the first one wins).
func (r *Reader) Fail(format string, args ...any) {
	if r.Err == nil {
		r.Err = fmt.Errorf("%w: "+format, append([]any{r.malformed}, args...)...)
	}
}

// Fixed returns the next n bytes (aliasing the input).
func (r *Reader) Fixed(n int) []byte {
	if r.Err != nil || n < 0 || len(r.b) < n {
		r.Fail("truncated")
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}

func (r *Reader) U8() uint8 {
	if p := r.Fixed(1); p != nil {
		return p[0]
	}
	return 0
}

// Bool reads a byte that must be 0 or 1: any other value fails, so that
// one value has one encoding.
func (r *Reader) Bool() bool {
	switch v := r.U8(); {
	case r.Err != nil:
		return false
	case v > 1:
		r.Fail("boolean byte %d", v)
		return false
	default:
		return v == 1
	}
}

func (r *Reader) U32() uint32 {
	if p := r.Fixed(4); p != nil {
		return binary.BigEndian.Uint32(p)
	}
	return 0
}

func (r *Reader) U64() uint64 {
	if p := r.Fixed(8); p != nil {
		return binary.BigEndian.Uint64(p)
	}
	return 0
}

// Bytes returns a length-prefixed field of at most max bytes.
func (r *Reader) Bytes(max int) []byte {
	n := r.U32()
	if r.Err == nil && int64(n) > int64(max) {
		r.Fail("field of %d bytes exceeds %d", n, max)
		return nil
	}
	return r.Fixed(int(n))
}

// Count reads an item count of at most max.
func (r *Reader) Count(max int) int {
	n := r.U32()
	if r.Err == nil && int64(n) > int64(max) {
		r.Fail("%d items exceed %d", n, max)
		return 0
	}
	return int(n)
}

// Done returns the first error, or one if bytes are left over.
func (r *Reader) Done() error {
	if r.Err == nil && len(r.b) != 0 {
		r.Fail("%d trailing bytes", len(r.b))
	}
	return r.Err
}
