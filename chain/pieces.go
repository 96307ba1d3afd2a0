package chain

import (
	"encoding/binary"
	"encoding/hex"
	"sync"

	"github.com/zkbank/zkbank/ledger"
)

// PieceCache holds piece ciphertexts (ledger.EncryptPieceBatch) by hash: the
// ones this validator computed and the ones the node fetched for a proposal.
// It is shared by the App (the consensus goroutine) and the node's network
// handlers (serving and fetching), so it is safe for concurrent use. Entries
// are dropped once their block is persisted with them and is old enough.
type PieceCache struct {
	mu sync.Mutex
	m  map[[32]byte]pieceEntry
}

type pieceEntry struct {
	raw    []byte
	height uint64 // height of the block whose batch the piece encrypts
}

// NewPieceCache returns an empty cache.
func NewPieceCache() *PieceCache { return &PieceCache{m: map[[32]byte]pieceEntry{}} }

// Put stores a piece ciphertext (raw must hash to h; callers check).
func (c *PieceCache) Put(h [32]byte, raw []byte, height uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[h]; !ok {
		c.m[h] = pieceEntry{raw: raw, height: height}
	}
}

// Get returns a piece ciphertext, or nil.
func (c *PieceCache) Get(h [32]byte) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[h].raw
}

// forget drops pieces of blocks below height.
func (c *PieceCache) forget(below uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for h, e := range c.m {
		if e.height < below {
			delete(c.m, h)
		}
	}
}

func pieceIndexKey(height uint64) string {
	return "pieces/" + hex.EncodeToString(binary.BigEndian.AppendUint64(nil, height))
}

// StoredPiece returns a persisted piece ciphertext (a blob: it is checked
// against its hash when read).
func StoredPiece(st Store, h [32]byte) ([]byte, error) { return st.Blob(h) }

// PieceWant is a piece ciphertext a proposal needs: its hash and the
// validators that attested it (any of them can serve it).
type PieceWant struct {
	Hash  [32]byte
	From  []int
	Group uint32
	Piece int
}

// WantedPieces lists the piece ciphertexts a block's carried precommits
// decide (those attested by f+1 holders), for the node to fetch before the
// proposal reaches consensus. It reads the extensions without verifying the
// precommits' signatures: the node checks each fetched ciphertext against
// its hash, and the App verifies everything before using it.
func WantedPieces(b *Block, sh *ledger.Sharing) []PieceWant {
	type key struct {
		group uint32
		piece int
		hash  [32]byte
	}
	by := map[key][]int{}
	var order []key
	for _, x := range b.LastCommit {
		ext, err := DecodeExt(x.Ext)
		if err != nil {
			continue
		}
		for _, pa := range ext.Pieces {
			if int(pa.Piece) >= sh.Pieces() || x.Validator < 0 || x.Validator >= sh.N || !sh.Holds(x.Validator, int(pa.Piece)) {
				continue
			}
			k := key{pa.Group, int(pa.Piece), pa.Hash}
			if _, ok := by[k]; !ok {
				order = append(order, k)
			}
			by[k] = append(by[k], x.Validator)
		}
	}
	var out []PieceWant
	for _, k := range order {
		if len(by[k]) >= sh.F+1 {
			out = append(out, PieceWant{Hash: k.hash, From: by[k], Group: k.group, Piece: k.piece})
		}
	}
	return out
}
