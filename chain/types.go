package chain

import (
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"time"

	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/store"
)

// Upload is a decoded submission: one transfer's sealed shares and the
// envelope that signs them. The mempool holds uploads until a committed
// block includes them.
type Upload struct {
	Hash     [32]byte
	Raw      []byte                 // sealed shares as uploaded
	Sealed   *ledger.SealedTransfer // nil if Raw does not decode (its transfer is then rejected as malformed)
	Pieces   map[int]*ledger.Piece  // this validator's pieces; nil if its box did not open
	Envs     []ledger.Envelope
	Received time.Time
}

// ID is the upload's transfer id (its envelope's): the key the mempool,
// acks and blocks know it by. The same sealed bytes under another envelope
// are another upload (whose boxes do not open).
func (u *Upload) ID() [32]byte {
	if len(u.Envs) != 1 {
		return [32]byte{}
	}
	return u.Envs[0].ID()
}

// Opener decodes uploads and opens this validator's sealed box in them.
type Opener struct {
	Params  *ledger.Params
	Sharing *ledger.Sharing
	Self    int
	Key     *ecdh.PrivateKey // nil on a node that holds no sealing key: decode only
}

// NewUpload decodes raw sealed shares referenced by envs and opens this
// validator's box with the binding of the (single) envelope. An upload that
// does not decode or whose box does not open is still an Upload: a block may
// reference it (its transfer is then rejected, or this validator abstains on
// its batch's pieces), deterministically.
func (o *Opener) NewUpload(raw []byte, envs []ledger.Envelope, received time.Time) *Upload {
	u := &Upload{Hash: sha256.Sum256(raw), Raw: raw, Envs: envs, Received: received}
	var st ledger.SealedTransfer
	if err := st.UnmarshalBinary(raw); err != nil {
		return u
	}
	u.Sealed = &st
	if o.Key == nil || len(envs) != 1 || envs[0].CTHash != u.Hash {
		return u
	}
	bind := ledger.SealBinding{Chain: envs[0].Chain, From: envs[0].From, Nonce: envs[0].Nonce, Values: envs[0].ValueCount()}
	if ps, err := o.Params.Open(o.Sharing, o.Self, o.Key, bind, &st); err == nil {
		u.Pieces = ps
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
	// Acks returns the ids of uploads waiting in the pool whose sealed box
	// this validator opened (they go into its next precommit extension).
	Acks(max int) ([][32]byte, error)
	// Opens returns pending account openings.
	Opens(max int) ([]Open, error)
	// Consents returns pending score consents and revocations, oldest
	// first.
	Consents(max int) ([]ledger.Consent, error)
	// Get returns an upload by transfer id (nil if absent).
	Get(id [32]byte) (*Upload, error)
	// HasWork reports whether anything waits to be proposed.
	HasWork() (bool, error)
	// Committed removes what a committed block included, and the uploads
	// that can never be ordered any more: those built on an operation that
	// is neither their account's last accepted one in book, nor in one of
	// the last blocks, nor waiting in the pool.
	Committed(b *Block, book *ledger.Book)
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
	// Piece ciphertexts are blobs (store.Blobs): files outside the
	// key-value store, indexed per height in its metadata.
	PutBlobs(blobs map[[32]byte][]byte) error
	Blob(h [32]byte) ([]byte, error)
	DeleteBlob(h [32]byte) error
}

// View is what one finalized height published: the only state readers
// outside the consensus actor see. It is immutable once published.
type View struct {
	Height  uint64       // last finalized height
	Book    *ledger.Book // results applied up to Height-2 (read-only)
	Credits []int64      // work credits as of Height
	Block   *Block       // block Height (nil before the first)
	Hash    [32]byte     // Block's hash (its consensus BlockID)
	// Decided is the height whose outcomes Outcomes holds (Height-2; 0 if none).
	Decided  uint64
	Outcomes []ledger.Outcome
	Opened   []*ledger.Account
	// Faulty are validators whose signed extensions carried by Block
	// disagreed with the decisions made from them (wrong shares, another
	// digest, a piece ciphertext its other holders did not compute):
	// identified, outvoted, and without credit.
	Faulty []int
	// Pending is a committed validator-set change not yet in force (nil if
	// none): at Pending.Start-1 the node hands over to the new committee.
	Pending *PendingChange
}

// Observer is told of every finalized height, once, after it is durable.
type Observer interface {
	Finalized(v *View)
}
