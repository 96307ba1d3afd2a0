package sim

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/zkbank/zkbank/consensus"
)

// App is a deterministic test application that exercises vote extensions the
// way the ledger will: every precommit carries an extension derived from the
// value, and a proposal at height h must include extensions of more than 2/3
// of the voting power from a certificate of height h-1, each of which must
// verify against the committed value of h-1.
type App struct {
	self    int
	vals    *consensus.ValidatorSet
	extSize int
	blocks  []*consensus.Commit // durable: survives a crash
	nonce   uint64              // in memory only
	work    bool                // work waiting to be proposed (Scenario.WaitForWork)
	hashes  map[string][32]byte
	onFinal func(h uint64, value []byte, cert *consensus.CommitCertificate) error
}

var valueMagic = []byte("zkv1")

// Extension is what validator i attaches to its precommit for value at height h.
func Extension(h uint64, i int, value []byte, size int) []byte {
	return extension(h, i, sha256.Sum256(value), size)
}

// ext is Extension with the value's hash memoized: with 100 validators the
// test application would otherwise spend more time hashing than consensus does.
func (a *App) ext(h uint64, i int, value []byte) []byte {
	vh, ok := a.hashes[string(value)]
	if !ok {
		if len(a.hashes) >= 16 {
			clear(a.hashes)
		}
		vh = sha256.Sum256(value)
		a.hashes[string(value)] = vh
	}
	return extension(h, i, vh, a.extSize)
}

func extension(h uint64, i int, vh [32]byte, size int) []byte {
	var b [8 + 4 + 32]byte
	binary.BigEndian.PutUint64(b[:], h)
	binary.BigEndian.PutUint32(b[8:], uint32(i))
	copy(b[12:], vh[:])
	sum := sha256.Sum256(b[:])
	out := make([]byte, size)
	for k := 0; k < size; k += len(sum) {
		copy(out[k:], sum[:])
	}
	return out
}

// HasWork makes App a consensus.WorkSignaler; it only matters when the
// scenario sets WaitForWork.
func (a *App) HasWork(uint64) bool { return a.work }

func (a *App) BuildProposal(h uint64, last *consensus.CommitCertificate) ([]byte, error) {
	a.nonce++
	return encodeValue(h, a.self, a.nonce, last), nil
}

func encodeValue(h uint64, builder int, nonce uint64, last *consensus.CommitCertificate) []byte {
	b := append([]byte(nil), valueMagic...)
	b = binary.BigEndian.AppendUint64(b, h)
	b = binary.BigEndian.AppendUint32(b, uint32(builder))
	b = binary.BigEndian.AppendUint64(b, nonce)
	if last == nil {
		return binary.BigEndian.AppendUint32(b, 0)
	}
	b = binary.BigEndian.AppendUint32(b, uint32(len(last.Sigs)))
	for _, s := range last.Sigs {
		b = binary.BigEndian.AppendUint32(b, uint32(s.Validator))
		b = binary.BigEndian.AppendUint32(b, uint32(len(s.Extension)))
		b = append(b, s.Extension...)
	}
	return b
}

var errBadValue = errors.New("sim: invalid value")

func (a *App) ValidateProposal(h uint64, value []byte) error { return a.validate(h, value) }

func (a *App) validate(h uint64, v []byte) error {
	if !bytes.HasPrefix(v, valueMagic) || len(v) < 4+8+4+8+4 {
		return errBadValue
	}
	v = v[4:]
	if binary.BigEndian.Uint64(v) != h || int(binary.BigEndian.Uint32(v[8:])) >= a.vals.Size() {
		return fmt.Errorf("%w: height or builder", errBadValue)
	}
	n := int(binary.BigEndian.Uint32(v[20:]))
	v = v[24:]
	if h == 1 {
		if n != 0 || len(v) != 0 {
			return fmt.Errorf("%w: extensions at height 1", errBadValue)
		}
		return nil
	}
	if uint64(len(a.blocks)) < h-1 {
		return fmt.Errorf("%w: height %d unknown before %d", errBadValue, h-1, h)
	}
	prev := a.blocks[h-2].Value
	var power int64
	last := -1
	for range n {
		if len(v) < 8 {
			return fmt.Errorf("%w: truncated", errBadValue)
		}
		i, l := int(binary.BigEndian.Uint32(v)), int(binary.BigEndian.Uint32(v[4:]))
		v = v[8:]
		if i <= last || i >= a.vals.Size() || l > len(v) {
			return fmt.Errorf("%w: extension list", errBadValue)
		}
		if !bytes.Equal(v[:l], a.ext(h-1, i, prev)) {
			return fmt.Errorf("%w: extension of %d", errBadValue, i)
		}
		last, power, v = i, power+a.vals.Power(i), v[l:]
	}
	if len(v) != 0 || !a.vals.IsQuorum(power) {
		return fmt.Errorf("%w: extensions hold %d power", errBadValue, power)
	}
	return nil
}

func (a *App) ExtendVote(h uint64, _ consensus.Round, value []byte) ([]byte, error) {
	return a.ext(h, a.self, value), nil
}

func (a *App) VerifyExtension(h uint64, i int, value, ext []byte) error {
	if !bytes.Equal(ext, a.ext(h, i, value)) {
		return errors.New("sim: bad extension")
	}
	return nil
}

func (a *App) Finalize(h uint64, value []byte, cert *consensus.CommitCertificate) error {
	if h != uint64(len(a.blocks))+1 {
		return fmt.Errorf("sim: finalize %d after %d", h, len(a.blocks))
	}
	if a.onFinal != nil {
		if err := a.onFinal(h, value, cert); err != nil {
			return err
		}
	}
	a.blocks = append(a.blocks, &consensus.Commit{Cert: cert, Value: value})
	a.work = false // the block took it
	return nil
}

// Height is the number of committed blocks.
func (a *App) Height() uint64 { return uint64(len(a.blocks)) }

func (a *App) last() *consensus.Commit {
	if len(a.blocks) == 0 {
		return nil
	}
	return a.blocks[len(a.blocks)-1]
}
