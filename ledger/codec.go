package ledger

import (
	"encoding"
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrMalformed is returned for bytes that do not decode to a well-formed
// message: truncated, oversized, wrong version or wrong parameters.
var ErrMalformed = errors.New("ledger: malformed encoding")

// maxField bounds any single length-prefixed field (a level-4 ciphertext is
// 1.25 MiB; evaluation keys are the largest objects at ~3 MiB each).
const maxField = 64 << 20

// wbuf is an append-only encoder for length-prefixed fields.
type wbuf struct{ b []byte }

func (w *wbuf) u8(v uint8)   { w.b = append(w.b, v) }
func (w *wbuf) u32(v uint32) { w.b = binary.BigEndian.AppendUint32(w.b, v) }
func (w *wbuf) u64(v uint64) { w.b = binary.BigEndian.AppendUint64(w.b, v) }
func (w *wbuf) bytes(p []byte) {
	w.u32(uint32(len(p)))
	w.b = append(w.b, p...)
}
func (w *wbuf) fixed(p []byte) { w.b = append(w.b, p...) }
func (w *wbuf) marshal(m encoding.BinaryMarshaler) error {
	p, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	w.bytes(p)
	return nil
}

// rbuf decodes what wbuf wrote; the first error sticks and every later read
// returns zero values, so decoders check err once at the end.
type rbuf struct {
	b   []byte
	err error
}

func (r *rbuf) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: truncated %s", ErrMalformed, what)
	}
}
func (r *rbuf) u8() uint8 {
	if r.err != nil || len(r.b) < 1 {
		r.fail("u8")
		return 0
	}
	v := r.b[0]
	r.b = r.b[1:]
	return v
}
func (r *rbuf) u32() uint32 {
	if r.err != nil || len(r.b) < 4 {
		r.fail("u32")
		return 0
	}
	v := binary.BigEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}
func (r *rbuf) u64() uint64 {
	if r.err != nil || len(r.b) < 8 {
		r.fail("u64")
		return 0
	}
	v := binary.BigEndian.Uint64(r.b)
	r.b = r.b[8:]
	return v
}
func (r *rbuf) bytes() []byte {
	n := r.u32()
	if r.err != nil {
		return nil
	}
	if n > maxField || int(n) > len(r.b) {
		r.fail("field")
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}
func (r *rbuf) fixed(n int) []byte {
	if r.err != nil || len(r.b) < n {
		r.fail("fixed field")
		return nil
	}
	v := r.b[:n:n]
	r.b = r.b[n:]
	return v
}
func (r *rbuf) unmarshal(m encoding.BinaryUnmarshaler, what string) {
	p := r.bytes()
	if r.err != nil {
		return
	}
	if err := safeUnmarshal(m, p); err != nil {
		r.err = fmt.Errorf("%w: %s: %w", ErrMalformed, what, err)
	}
}
func (r *rbuf) done() error {
	if r.err == nil && len(r.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(r.b))
	}
	return r.err
}

// safeUnmarshal guards against decoders of third-party types that panic on
// hostile input: garbage bytes must be an error, never a crash.
func safeUnmarshal(m encoding.BinaryUnmarshaler, p []byte) (err error) {
	if rf, ok := m.(readerFrom); ok {
		return strictDecode(rf, p)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("decoder panic: %v", r)
		}
	}()
	return m.UnmarshalBinary(p)
}
