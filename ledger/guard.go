package ledger

import (
	"bytes"
	"fmt"
	"io"
	"sync"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/tuneinsight/lattigo/v5/mhe"
	"github.com/tuneinsight/lattigo/v5/ring"
	"github.com/tuneinsight/lattigo/v5/schemes/bgv"
)

// Defences around Lattigo's decoders, which trust their input: a short buffer
// makes buffer.ReadUint64Slice recurse until the stack overflows (a fatal
// error recover cannot catch), and length headers are used to allocate before
// any data is read. Every untrusted byte string therefore goes through
//
//   - strictReader: a buffer.Reader whose Peek fails on a short read, so a
//     truncated input is an error, never a recursion;
//   - shape guards (for what arrives from the network at run time: uploads and
//     shares): the input must have exactly the expected length and carry
//     exactly the expected header bytes, learned by diffing two encodings of
//     the expected shape filled with different data.

// strictReader implements Lattigo's buffer.Reader over a byte slice.
type strictReader struct {
	b   []byte
	off int
}

func (r *strictReader) Read(p []byte) (int, error) {
	if r.off >= len(r.b) {
		return 0, io.EOF
	}
	n := copy(p, r.b[r.off:])
	r.off += n
	return n, nil
}

// Size never reports zero, so a consumer that peeks min(need, Size()) bytes
// asks for more than is left and gets an error instead of an empty success.
func (r *strictReader) Size() int {
	if rem := len(r.b) - r.off; rem > 0 {
		return rem
	}
	return 1
}

func (r *strictReader) Peek(n int) ([]byte, error) {
	if n < 0 || r.off+n > len(r.b) {
		return nil, io.ErrUnexpectedEOF
	}
	return r.b[r.off : r.off+n], nil
}

func (r *strictReader) Discard(n int) (int, error) {
	if n < 0 || r.off+n > len(r.b) {
		return 0, io.ErrUnexpectedEOF
	}
	r.off += n
	return n, nil
}

// readerFrom is what Lattigo objects implement.
type readerFrom interface {
	ReadFrom(r io.Reader) (int64, error)
}

// strictDecode decodes p into m through a strictReader, requiring every byte
// to be consumed and converting decoder panics into errors.
func strictDecode(m readerFrom, p []byte) (err error) {
	defer func() {
		if rec := recover(); rec != nil {
			err = fmt.Errorf("decoder panic: %v", rec)
		}
	}()
	r := &strictReader{b: p}
	if _, err := m.ReadFrom(r); err != nil {
		return err
	}
	if r.off != len(p) {
		return fmt.Errorf("%d trailing bytes", len(p)-r.off)
	}
	return nil
}

// shape is the byte-level signature of an expected encoding.
type shape struct {
	size   int
	header []int // offsets where any valid encoding has the same byte
	want   []byte
}

func learnShape(a, b []byte) *shape {
	if len(a) != len(b) {
		panic("ledger: template encodings differ in length")
	}
	s := &shape{size: len(a)}
	for i := range a {
		if a[i] == b[i] {
			s.header = append(s.header, i)
			s.want = append(s.want, a[i])
		}
	}
	return s
}

func (s *shape) check(p []byte) error {
	if len(p) != s.size {
		return fmt.Errorf("length %d, want %d", len(p), s.size)
	}
	for i, off := range s.header {
		if p[off] != s.want[i] {
			return fmt.Errorf("unexpected header byte at %d", off)
		}
	}
	return nil
}

func fillPolys(v uint64, ps ...ring.Poly) {
	for _, p := range ps {
		for _, row := range p.Coeffs {
			for i := range row {
				row[i] = v
			}
		}
	}
}

// Two fill patterns with every byte different from each other.
const (
	fillA = 0x0101010101010101
	fillB = 0x0202020202020202
)

type shapes struct {
	once   sync.Once
	upload *shape
	dec    *shape
	reenc  *shape
}

func (p *Params) shapes() *shapes {
	p.shapeOnce.Do(func() {
		s := &shapes{}
		mk := func(f func(v uint64) []byte) *shape { return learnShape(f(fillA), f(fillB)) }
		s.upload = mk(func(v uint64) []byte {
			// A real encryption, so the metadata is exactly what wallets emit.
			pt := bgv.NewPlaintext(p.BGV, LevelUpload)
			pt.Scale = p.BGV.NewScale(1)
			if err := newEncoder(p).Encode(make([]uint64, p.Slots), pt); err != nil {
				panic(err)
			}
			ct, err := rlwe.NewEncryptor(p.BGV, rlwe.NewKeyGenerator(p.BGV).GenPublicKeyNew(rlwe.NewSecretKey(p.BGV))).EncryptNew(pt)
			if err != nil {
				panic(err)
			}
			fillPolys(v, ct.Value...)
			b, _ := ct.MarshalBinary()
			return b
		})
		s.dec = mk(func(v uint64) []byte {
			sh := mhe.KeySwitchShare{Value: p.BGV.RingQ().AtLevel(LevelDecrypt).NewPoly()}
			fillPolys(v, sh.Value)
			b, _ := sh.MarshalBinary()
			return b
		})
		s.reenc = mk(func(v uint64) []byte {
			sh := mhe.PublicKeySwitchShare{Element: *rlwe.NewElement(p.BGV, 1, LevelDecrypt)}
			fillPolys(v, sh.Value...)
			b, _ := sh.MarshalBinary()
			return b
		})
		p.shapeCache = s
	})
	return p.shapeCache
}

// equalBytes is bytes.Equal; kept for readability at call sites.
var equalBytes = bytes.Equal
