package ledger

import (
	"encoding"
	"errors"
	"fmt"
	"github.com/zkbank/zkbank/internal/wire"
)

// ErrMalformed is returned for bytes that do not decode to a well-formed
// message: truncated, oversized, wrong version or wrong parameters.
var ErrMalformed = errors.New("ledger: malformed encoding")

// maxField bounds any single length-prefixed field (a level-4 ciphertext is
// 1.25 MiB; evaluation keys are the largest objects at ~3 MiB each).
const maxField = 64 << 20

// marshalInto appends a length-prefixed binary encoding of m.
func marshalInto(w *wire.Writer, m encoding.BinaryMarshaler) error {
	p, err := m.MarshalBinary()
	if err != nil {
		return err
	}
	w.Bytes(p)
	return nil
}

// unmarshalFrom decodes a length-prefixed Lattigo (or other) object.
func unmarshalFrom(r *wire.Reader, m encoding.BinaryUnmarshaler, what string) {
	p := r.Bytes(maxField)
	if r.Err != nil {
		return
	}
	if err := safeUnmarshal(m, p); err != nil {
		r.Fail("%s: %v", what, err)
	}
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
