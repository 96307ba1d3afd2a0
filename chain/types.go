package chain

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/store"
)

// Upload is a decoded submission: one ciphertext and the envelopes that
// sign it. The mempool holds uploads until a committed block includes them.
type Upload struct {
	Hash     [32]byte
	Raw      []byte           // ciphertext bytes as uploaded
	CT       *rlwe.Ciphertext // nil if Raw does not decode (its transfers are then rejected as malformed)
	Envs     []ledger.Envelope
	Received time.Time
}

// NewUpload decodes raw ciphertext bytes referenced by envs. A ciphertext
// that does not decode still makes an Upload (CT nil): a block may reference
// it, and its transfers are then rejected, deterministically, by every
// validator.
func NewUpload(p *ledger.Params, raw []byte, envs []ledger.Envelope, received time.Time) *Upload {
	u := &Upload{Hash: sha256.Sum256(raw), Raw: raw, Envs: envs, Received: received}
	if ct, err := p.DecodeUpload(raw); err == nil {
		u.CT = ct
	}
	return u
}

// Open is an account opening, signed by the account's key.
type Open struct {
	SignPub []byte
	Kind    ledger.AccountKind
	Sig     []byte
}

// Valid reports whether the opening is signed by the key it opens.
func (o Open) Valid(chain string) bool {
	return len(o.SignPub) == ed25519.PublicKeySize && ed25519.Verify(o.SignPub, ledger.OpenAccountBytes(chain, o.Kind), o.Sig)
}

// ErrUnavailable reports an upload that is neither in the mempool nor in the
// store. The node fetches what a proposal references before delivering it to
// consensus, so at validation time this means no peer had it.
var ErrUnavailable = errors.New("chain: upload unavailable")

// Mempool is what the application needs from the pool of waiting uploads.
// Errors are failures of the pool itself (a timeout, a stopped actor), never
// "nothing there": they propagate, so an unreachable pool is not mistaken for
// an empty one.
type Mempool interface {
	// Candidates returns uploads ready to be proposed, oldest first.
	Candidates(max int) ([]*Upload, error)
	// Opens returns pending account openings.
	Opens(max int) ([]Open, error)
	// Get returns an upload by ciphertext hash (nil if absent).
	Get(hash [32]byte) (*Upload, error)
	// HasWork reports whether anything waits to be proposed.
	HasWork() (bool, error)
	// Committed removes what a committed block included.
	Committed(b *Block)
}

// Evaluator evaluates a block's batches (in parallel across shards, in the
// node) and returns the evaluations in batch order.
type Evaluator interface {
	Evaluate(book *ledger.Book, batches []*ledger.Batch, blockHash []byte) ([]*ledger.Evaluation, error)
}

// SerialEvaluator evaluates batches one after another with one engine: what a
// process with one core, or a test, needs.
type SerialEvaluator struct{ Engine *ledger.Engine }

// Evaluate implements Evaluator.
func (s SerialEvaluator) Evaluate(book *ledger.Book, batches []*ledger.Batch, blockHash []byte) ([]*ledger.Evaluation, error) {
	out := make([]*ledger.Evaluation, len(batches))
	for i, b := range batches {
		ev, err := book.EvaluateBatch(s.Engine, b, blockHash, i)
		if err != nil {
			return nil, fmt.Errorf("chain: evaluating batch %d (shard %d): %w", i, b.Shard, err)
		}
		out[i] = ev
	}
	return out, nil
}

// Store is the part of the node's store the application uses. Badger's
// store and store.Memory implement it; it is safe for concurrent use, so
// readers (the API, peers catching up) use it directly.
type Store interface {
	Commit(height uint64, b store.Batch) error
	LastApplied() (uint64, error)
	Block(height uint64) ([]byte, error)
	Cert(height uint64) ([]byte, error)
	State(height uint64, shard uint32) ([]byte, error)
	PutState(height uint64, shard uint32, data []byte) error
	Prune(keepFrom uint64) error
	GetMeta(key string) ([]byte, error)
	Status(id []byte) ([]byte, error)
}

// View is what one finalized height published: the only state readers
// outside the consensus actor see. It is immutable once published.
type View struct {
	Height  uint64       // last finalized height
	Book    *ledger.Book // results applied up to Height-1 (read-only)
	Credits []int64      // work credits as of Height
	Block   *Block       // block Height (nil before the first)
	Hash    [32]byte     // Block's hash (its consensus BlockID)
	// Decided is the height whose outcomes Outcomes holds (Height-1; 0 if none).
	Decided  uint64
	Outcomes []ledger.Outcome
	Opened   []*ledger.Account
	// Faulty are validators whose signed extensions for height Decided
	// disagreed with the decision (wrong shares, another digest): identified,
	// outvoted, and without credit.
	Faulty []int
}

// Observer is told of every finalized height, once, after it is durable.
type Observer interface {
	Finalized(v *View)
}
