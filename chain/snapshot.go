package chain

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/zkbank/zkbank/consensus"
	"github.com/zkbank/zkbank/internal/wire"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/store"
)

// State snapshots (docs/PROTOCOL.md, "State snapshots"; docs/STORAGE.md).
//
// After finalizing a snapshot height h (a multiple of the snapshot
// interval), every validator serializes what it needs to resume at h: the
// book (accounts with their lending records, the shard states of the
// retained window, its applied height), the work credits, the pending
// validator-set change (if any), blocks h and h-1,
// the sealed uploads both blocks reference and the piece ciphertexts of
// block h-1 that block h decided (a restart re-evaluates block h-1 from
// them). The bytes are canonical, so every validator produces the same
// ones; they are cut in SnapshotChunkSize chunks, and the root hashes the
// chain id, the height, the size and every chunk's SHA-256. Block h+1
// carries the root (Block.StateRoot): a validator whose own root differs
// refuses the block, so a decided block h+1 certifies the snapshot of h.

// DefaultSnapshotEvery is the snapshot interval in heights.
const DefaultSnapshotEvery = 256

// SnapshotChunkSize is the size of every chunk but the last.
const SnapshotChunkSize = 4 << 20

// KeptSnapshots is how many snapshots a node keeps (and serves).
const KeptSnapshots = 2

// ErrSnapshot reports a snapshot that does not verify or decode.
var ErrSnapshot = errors.New("chain: bad snapshot")

const (
	snapshotVersion = 1
	metaSnapshots   = "snapshots"         // heights of the kept snapshots, 8 bytes each
	metaRestored    = "snapshot-restored" // the height of the snapshot the store was restored from
	maxChunks       = 1 << 20
)

func snapshotKey(h uint64) string {
	return "snapshot/" + hex.EncodeToString(binary.BigEndian.AppendUint64(nil, h))
}

// SnapshotInfo describes one snapshot: its height, size, chunk hashes and
// root. The block at Height+1 carries Root.
type SnapshotInfo struct {
	Height uint64
	Size   uint64
	Chunks [][32]byte
	Root   [32]byte
}

// SnapshotRoot is the root of a snapshot: SHA-256 over a domain tag, the
// chain id, the height, the size and the chunk hashes.
func SnapshotRoot(chainID string, height, size uint64, chunks [][32]byte) [32]byte {
	var w wire.Writer
	w.Fixed([]byte("zkbank/snapshot-root/v1\x00"))
	w.Bytes([]byte(chainID))
	w.U64(height)
	w.U64(size)
	w.U32(uint32(len(chunks)))
	for _, c := range chunks {
		w.Fixed(c[:])
	}
	return sha256.Sum256(w.B)
}

// Encode returns the canonical encoding (what the snapshot protocol lists).
func (s *SnapshotInfo) Encode() []byte {
	var w wire.Writer
	w.U8(snapshotVersion)
	w.U64(s.Height)
	w.U64(s.Size)
	w.U32(uint32(len(s.Chunks)))
	for _, c := range s.Chunks {
		w.Fixed(c[:])
	}
	w.Fixed(s.Root[:])
	return w.B
}

// DecodeSnapshotInfo decodes an encoded SnapshotInfo; it does not check the
// root (Verify does).
func DecodeSnapshotInfo(p []byte) (*SnapshotInfo, error) {
	r := wire.NewReader(p, ErrSnapshot)
	if v := r.U8(); r.Err == nil && v != snapshotVersion {
		return nil, fmt.Errorf("%w: version %d", ErrSnapshot, v)
	}
	s := &SnapshotInfo{Height: r.U64(), Size: r.U64()}
	n := r.Count(maxChunks)
	for i := 0; i < n && r.Err == nil; i++ {
		var c [32]byte
		copy(c[:], r.Fixed(32))
		s.Chunks = append(s.Chunks, c)
	}
	copy(s.Root[:], r.Fixed(32))
	if err := r.Done(); err != nil {
		return nil, err
	}
	return s, nil
}

// Verify checks the chunk list against the root, and that the chunk count
// fits the size.
func (s *SnapshotInfo) Verify(chainID string) error {
	if SnapshotRoot(chainID, s.Height, s.Size, s.Chunks) != s.Root {
		return fmt.Errorf("%w: the chunk list of height %d does not hash to its root", ErrSnapshot, s.Height)
	}
	if want := (s.Size + SnapshotChunkSize - 1) / SnapshotChunkSize; uint64(len(s.Chunks)) != want || s.Size == 0 {
		return fmt.Errorf("%w: %d chunks for %d bytes", ErrSnapshot, len(s.Chunks), s.Size)
	}
	return nil
}

// CheckChunk checks chunk i against the list.
func (s *SnapshotInfo) CheckChunk(i int, data []byte) error {
	if i < 0 || i >= len(s.Chunks) {
		return fmt.Errorf("%w: chunk %d of %d", ErrSnapshot, i, len(s.Chunks))
	}
	want := uint64(SnapshotChunkSize)
	if i == len(s.Chunks)-1 {
		want = s.Size - uint64(i)*SnapshotChunkSize
	}
	if uint64(len(data)) != want || sha256.Sum256(data) != s.Chunks[i] {
		return fmt.Errorf("%w: chunk %d of height %d does not match its hash", ErrSnapshot, i, s.Height)
	}
	return nil
}

// chunker cuts a stream into SnapshotChunkSize chunks as it grows.
type chunker struct {
	w      wire.Writer
	size   uint64
	hashes [][32]byte
	blobs  map[[32]byte][]byte // nil: hash only
}

func (c *chunker) flush(final bool) {
	for len(c.w.B) >= SnapshotChunkSize || final && len(c.w.B) > 0 {
		n := min(len(c.w.B), SnapshotChunkSize)
		chunk := append([]byte(nil), c.w.B[:n]...)
		h := sha256.Sum256(chunk)
		c.hashes = append(c.hashes, h)
		if c.blobs != nil {
			c.blobs[h] = chunk
		}
		c.size += uint64(n)
		c.w.B = append(c.w.B[:0], c.w.B[n:]...)
	}
}

// snapSource is the state at a finalized height, as a snapshot reads it.
type snapSource struct {
	chain   string
	height  uint64
	book    *ledger.Book
	credits []int64
	pending []byte // the pending validator-set change as persisted (encodePending), empty if none
	block   []byte // block height
	prev    []byte // block height-1 (nil at height 1)
	uploads map[[32]byte][]byte
	pieces  map[[32]byte][]byte
}

// snapshotStates is the book's retained states in canonical form: for
// every state key, the states at the window's heights, the state as of the
// window's start filed at the start (what a restarted book holds there
// too, whatever height it was written at).
func snapshotStates(b *ledger.Book) map[uint32]map[uint64][]byte {
	floor := uint64(0)
	if b.Height() >= ledger.StateWindow {
		floor = b.Height() - ledger.StateWindow + 1
	}
	snap := b.Snapshot()
	out := map[uint32]map[uint64][]byte{}
	for k, hs := range snap.States {
		m := map[uint64][]byte{}
		for h, ct := range hs {
			if h >= floor {
				raw, _ := ct.MarshalBinary()
				m[h] = raw
			}
		}
		if _, ok := m[floor]; !ok {
			if ct, ok := b.State(k, floor); ok {
				raw, _ := ct.MarshalBinary()
				m[floor] = raw
			}
		}
		if len(m) > 0 {
			out[k] = m
		}
	}
	return out
}

func sortedKeys[V any](m map[[32]byte]V) [][32]byte {
	out := make([][32]byte, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i][:], out[j][:]) < 0 })
	return out
}

// encode writes the canonical snapshot bytes into c.
func (s *snapSource) encode(c *chunker) {
	w := &c.w
	w.Fixed([]byte("zkbank/snapshot/v2\x00"))
	w.Bytes([]byte(s.chain))
	w.U64(s.height)
	w.U64(s.book.Height())
	w.U32(uint32(len(s.credits)))
	for _, x := range s.credits {
		w.U64(uint64(x))
	}
	w.Bytes(s.pending)
	w.Bytes(s.block)
	w.Bytes(s.prev)
	c.flush(false)
	accts := s.book.Accounts()
	w.U32(uint32(len(accts)))
	for _, a := range accts {
		b, _ := a.MarshalBinary()
		w.Bytes(b)
		c.flush(false)
	}
	states := snapshotStates(s.book)
	keys := make([]uint32, 0, len(states))
	for k := range states {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	w.U32(uint32(len(keys)))
	for _, k := range keys {
		hs := make([]uint64, 0, len(states[k]))
		for h := range states[k] {
			hs = append(hs, h)
		}
		sort.Slice(hs, func(i, j int) bool { return hs[i] < hs[j] })
		w.U32(k)
		w.U32(uint32(len(hs)))
		for _, h := range hs {
			w.U64(h)
			w.Bytes(states[k][h])
			c.flush(false)
		}
	}
	for _, m := range []map[[32]byte][]byte{s.uploads, s.pieces} {
		hs := sortedKeys(m)
		w.U32(uint32(len(hs)))
		for _, h := range hs {
			w.Fixed(h[:])
			w.Bytes(m[h])
			c.flush(false)
		}
	}
	c.flush(true)
}

// build serializes the snapshot; with keep, the chunks are returned by
// hash for the store.
func (s *snapSource) build(keep bool) (*SnapshotInfo, map[[32]byte][]byte) {
	c := &chunker{}
	if keep {
		c.blobs = map[[32]byte][]byte{}
	}
	s.encode(c)
	info := &SnapshotInfo{Height: s.height, Size: c.size, Chunks: c.hashes}
	info.Root = SnapshotRoot(s.chain, s.height, c.size, c.hashes)
	return info, c.blobs
}

// SnapshotHeight reports whether h is a snapshot height under interval
// every.
func SnapshotHeight(h, every uint64) bool { return every > 0 && h >= 2 && h%every == 0 }

// snapshotSource collects the state after finalizing ev (at height h) from
// memory and the store.
func (a *App) snapshotSource(height uint64, value []byte, book *ledger.Book, credits []int64, pending *PendingChange, uploads []*Upload, prevPieces [][32]byte) (*snapSource, error) {
	s := &snapSource{chain: a.chain, height: height, book: book, credits: credits, pending: encodePending(pending), block: value,
		uploads: map[[32]byte][]byte{}, pieces: map[[32]byte][]byte{}}
	b, err := DecodeBlock(value)
	if err != nil {
		return nil, err
	}
	refs := b.Subs
	if height > 1 {
		if s.prev, err = a.st.Block(height - 1); err != nil {
			return nil, fmt.Errorf("block %d: %w", height-1, err)
		}
		pb, err := DecodeBlock(s.prev)
		if err != nil {
			return nil, err
		}
		refs = append(append([]SubRef(nil), refs...), pb.Subs...)
	}
	have := map[[32]byte][]byte{}
	for _, u := range uploads {
		if u != nil && u.Raw != nil {
			have[u.Hash] = u.Raw
		}
	}
	for _, r := range refs {
		raw, ok := have[r.CTHash]
		if !ok {
			if raw, err = StoredUpload(a.st, r.CTHash); err != nil {
				return nil, fmt.Errorf("upload %x: %w", r.CTHash[:8], err)
			}
		}
		s.uploads[r.CTHash] = raw
	}
	for _, h := range prevPieces {
		raw := a.pieces.Get(h)
		if raw == nil {
			if raw, err = StoredPiece(a.st, h); err != nil {
				return nil, fmt.Errorf("piece %x: %w", h[:8], err)
			}
		}
		s.pieces[h] = raw
	}
	return s, nil
}

// snapshotBatch adds a produced snapshot to a height's store commit: its
// record, the list of kept snapshots, and the records of the ones it
// replaces; it returns the chunk blobs to delete after the commit.
func snapshotBatch(st Store, info *SnapshotInfo, batch *store.Batch) [][32]byte {
	kept := keptSnapshots(st)
	kept = append(kept, info.Height)
	var drop [][32]byte
	live := map[[32]byte]bool{}
	for _, c := range info.Chunks {
		live[c] = true
	}
	for len(kept) > KeptSnapshots {
		old := kept[0]
		kept = kept[1:]
		if raw, err := st.GetMeta(snapshotKey(old)); err == nil {
			if oi, err := DecodeSnapshotInfo(raw); err == nil {
				drop = append(drop, oi.Chunks...)
			}
		}
		batch.DeleteMeta = append(batch.DeleteMeta, []byte(snapshotKey(old)))
	}
	for _, h := range kept[:len(kept)-1] {
		if raw, err := st.GetMeta(snapshotKey(h)); err == nil {
			if oi, err := DecodeSnapshotInfo(raw); err == nil {
				for _, c := range oi.Chunks {
					live[c] = true
				}
			}
		}
	}
	var list []byte
	for _, h := range kept {
		list = binary.BigEndian.AppendUint64(list, h)
	}
	batch.Meta = append(batch.Meta, store.Record{Key: []byte(snapshotKey(info.Height)), Value: info.Encode()},
		store.Record{Key: []byte(metaSnapshots), Value: list})
	var out [][32]byte
	for _, c := range drop {
		if !live[c] { // identical chunks of two snapshots are one blob
			out = append(out, c)
		}
	}
	return out
}

func keptSnapshots(st Store) []uint64 {
	raw, err := st.GetMeta(metaSnapshots)
	if err != nil {
		return nil
	}
	var out []uint64
	for i := 0; i+8 <= len(raw); i += 8 {
		out = append(out, binary.BigEndian.Uint64(raw[i:]))
	}
	return out
}

// Snapshots lists the snapshots st keeps, oldest first.
func Snapshots(st Store) []*SnapshotInfo {
	var out []*SnapshotInfo
	for _, h := range keptSnapshots(st) {
		if info, err := StoredSnapshot(st, h); err == nil {
			out = append(out, info)
		}
	}
	return out
}

// StoredSnapshot returns the record of the snapshot of height h.
func StoredSnapshot(st Store, h uint64) (*SnapshotInfo, error) {
	raw, err := st.GetMeta(snapshotKey(h))
	if err != nil {
		return nil, err
	}
	return DecodeSnapshotInfo(raw)
}

// SnapshotChunk returns chunk i of the snapshot of height h.
func SnapshotChunk(st Store, h uint64, i int) ([]byte, error) {
	info, err := StoredSnapshot(st, h)
	if err != nil {
		return nil, err
	}
	if i < 0 || i >= len(info.Chunks) {
		return nil, fmt.Errorf("%w: chunk %d of %d", store.ErrNotFound, i, len(info.Chunks))
	}
	return st.Blob(info.Chunks[i])
}

// CertifiedSnapshotRoot checks a decision of height h+1 (its certificate
// against vals, its value against the certificate) and returns the
// snapshot root its block carries for height h (zero if none).
func CertifiedSnapshotRoot(chainID string, vals *consensus.ValidatorSet, cm *consensus.Commit) (uint64, [32]byte, error) {
	if cm == nil || cm.Cert == nil {
		return 0, [32]byte{}, fmt.Errorf("%w: no decision", ErrSnapshot)
	}
	if err := VerifyDecision(chainID, vals, cm); err != nil {
		return 0, [32]byte{}, err
	}
	b, err := DecodeBlock(cm.Value)
	if err != nil {
		return 0, [32]byte{}, err
	}
	if b.Height != cm.Cert.Height || b.Height < 2 {
		return 0, [32]byte{}, fmt.Errorf("%w: block of height %d under a certificate of %d", ErrSnapshot, b.Height, cm.Cert.Height)
	}
	return b.Height - 1, b.StateRoot, nil
}

// VerifyDecision checks a decision: a quorum certificate under vals for
// exactly its value.
func VerifyDecision(chainID string, vals *consensus.ValidatorSet, cm *consensus.Commit) error {
	if err := consensus.VerifyCommit(chainID, vals, cm.Cert); err != nil {
		return fmt.Errorf("%w: decision of height %d: %w", ErrSnapshot, cm.Cert.Height, err)
	}
	if Hash(cm.Value) != [32]byte(cm.Cert.BlockID) {
		return fmt.Errorf("%w: the value of height %d is not the certified one", ErrSnapshot, cm.Cert.Height)
	}
	return nil
}

// SnapshotStore is a store a snapshot can be restored into.
type SnapshotStore interface {
	Store
	store.Installer
	TruncateBefore(height uint64) error
}

// decoded is a snapshot's content.
type decoded struct {
	height, applied uint64
	credits         []int64
	pending         []byte
	block, prev     []byte
	accounts        [][]byte
	states          []store.HeightState // at book height + lag
	uploads         map[[32]byte][]byte
	pieces          map[[32]byte][]byte
}

func decodeSnapshot(chainID string, data []byte, p *ledger.Params) (*decoded, error) {
	r := wire.NewReader(data, ErrSnapshot)
	if tag := r.Fixed(len("zkbank/snapshot/v2\x00")); r.Err == nil && string(tag) != "zkbank/snapshot/v2\x00" {
		return nil, fmt.Errorf("%w: not a version-2 snapshot", ErrSnapshot)
	}
	if c := r.Bytes(256); r.Err == nil && string(c) != chainID {
		return nil, fmt.Errorf("%w: snapshot of chain %q", ErrSnapshot, c)
	}
	d := &decoded{height: r.U64(), applied: r.U64(), uploads: map[[32]byte][]byte{}, pieces: map[[32]byte][]byte{}}
	n := r.Count(64)
	for i := 0; i < n && r.Err == nil; i++ {
		d.credits = append(d.credits, int64(r.U64()))
	}
	d.pending = append([]byte{}, r.Bytes(MaxSetChangeBytes+1024)...)
	d.block, d.prev = r.Bytes(96<<20), r.Bytes(96<<20)
	n = r.Count(1 << 30)
	for i := 0; i < n && r.Err == nil; i++ {
		d.accounts = append(d.accounts, r.Bytes(1<<16))
	}
	n = r.Count(1 << 24)
	for i := 0; i < n && r.Err == nil; i++ {
		k := r.U32()
		m := r.Count(1 << 16)
		for j := 0; j < m && r.Err == nil; j++ {
			h, raw := r.U64(), r.Bytes(16<<20)
			if r.Err != nil {
				break
			}
			if _, err := p.DecodeState(raw); err != nil {
				return nil, fmt.Errorf("%w: state %d at %d: %w", ErrSnapshot, k, h, err)
			}
			if h > d.applied {
				return nil, fmt.Errorf("%w: state %d at %d above the applied height %d", ErrSnapshot, k, h, d.applied)
			}
			d.states = append(d.states, store.HeightState{Height: h + lag, Shard: k, Data: raw})
		}
	}
	for _, m := range []map[[32]byte][]byte{d.uploads, d.pieces} {
		n = r.Count(1 << 20)
		for i := 0; i < n && r.Err == nil; i++ {
			var h [32]byte
			copy(h[:], r.Fixed(32))
			raw := r.Bytes(16 << 20)
			if r.Err == nil && sha256.Sum256(raw) != h {
				return nil, fmt.Errorf("%w: a blob does not match its hash %x", ErrSnapshot, h[:8])
			}
			m[h] = raw
		}
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	return d, nil
}

// RestoreSnapshot installs a snapshot into st: info must be the snapshot
// a decided block certifies (CertifiedSnapshotRoot), chunks its chunks in
// order (each is checked), last the decision of info.Height (its
// certificate is checked against vals and must certify the snapshot's last
// block). Afterwards Restore(st, ...) resumes at info.Height, and the
// snapshot is kept and served like one this node produced. What st held
// below is left, except the uploads and piece ciphertexts of its last
// UploadRetention heights, which are deleted.
func RestoreSnapshot(st SnapshotStore, p *ledger.Params, chainID string, vals *consensus.ValidatorSet, info *SnapshotInfo, chunks [][]byte, last *consensus.Commit) error {
	if err := info.Verify(chainID); err != nil {
		return err
	}
	if len(chunks) != len(info.Chunks) {
		return fmt.Errorf("%w: %d chunks of %d", ErrSnapshot, len(chunks), len(info.Chunks))
	}
	data := make([]byte, 0, info.Size)
	blobs := map[[32]byte][]byte{}
	for i, c := range chunks {
		if err := info.CheckChunk(i, c); err != nil {
			return err
		}
		data = append(data, c...)
		blobs[info.Chunks[i]] = c
	}
	d, err := decodeSnapshot(chainID, data, p)
	if err != nil {
		return err
	}
	if d.height != info.Height {
		return fmt.Errorf("%w: content of height %d under a root of %d", ErrSnapshot, d.height, info.Height)
	}
	if last == nil || last.Cert == nil || last.Cert.Height != info.Height {
		return fmt.Errorf("%w: no decision of height %d", ErrSnapshot, info.Height)
	}
	if err := VerifyDecision(chainID, vals, last); err != nil {
		return err
	}
	if !bytes.Equal(last.Value, d.block) {
		return fmt.Errorf("%w: the decision of height %d is not the snapshot's block", ErrSnapshot, info.Height)
	}
	return installSnapshot(st, info, blobs, d, last.Cert)
}

// installSnapshot writes a checked snapshot (its chunks by hash, its
// content) into st.
func installSnapshot(st SnapshotStore, info *SnapshotInfo, blobs map[[32]byte][]byte, d *decoded, cert *consensus.CommitCertificate) error {
	for h, raw := range d.pieces {
		blobs[h] = raw
	}
	if err := st.PutBlobs(blobs); err != nil {
		return err
	}
	in := store.Install{Height: d.height, States: d.states}
	in.Blocks = append(in.Blocks, store.HeightBlock{Height: d.height, Block: d.block, Cert: encodeCert(cert)})
	if d.height > 1 {
		in.Blocks = append(in.Blocks, store.HeightBlock{Height: d.height - 1, Block: d.prev})
	}
	var accts [][]byte
	accts = append(accts, d.accounts...)
	ab, err := json.Marshal(accts)
	if err != nil {
		return err
	}
	cb, err := json.Marshal(d.credits)
	if err != nil {
		return err
	}
	shardSet := map[uint32]bool{}
	for _, s := range d.states {
		shardSet[s.Shard] = true
	}
	shards := make([]uint32, 0, len(shardSet))
	for s := range shardSet {
		shards = append(shards, s)
	}
	sort.Slice(shards, func(i, j int) bool { return shards[i] < shards[j] })
	sb, err := json.Marshal(shards)
	if err != nil {
		return err
	}
	in.Meta = append(in.Meta,
		store.Record{Key: []byte(metaPending), Value: d.pending},
		store.Record{Key: []byte(metaAccounts), Value: ab},
		store.Record{Key: []byte(metaCredits), Value: cb},
		store.Record{Key: []byte(metaApplied), Value: binary.BigEndian.AppendUint64(nil, d.applied)},
		store.Record{Key: []byte(metaShards), Value: sb},
		store.Record{Key: []byte(snapshotKey(info.Height)), Value: info.Encode()},
		store.Record{Key: []byte(metaSnapshots), Value: binary.BigEndian.AppendUint64(nil, info.Height)},
		store.Record{Key: []byte(metaRestored), Value: binary.BigEndian.AppendUint64(nil, info.Height)})
	for h, raw := range d.uploads {
		in.Meta = append(in.Meta, store.Record{Key: []byte(uploadKey(h)), Value: raw})
	}
	var idx []byte
	for _, h := range sortedKeys(d.pieces) {
		idx = append(idx, h[:]...)
	}
	if len(idx) > 0 {
		in.Meta = append(in.Meta, store.Record{Key: []byte(pieceIndexKey(d.height)), Value: idx})
	}
	// What this store kept of its own last heights would never expire: the
	// heights that would delete it are skipped.
	var stale [][32]byte
	if old, err := st.LastApplied(); err == nil && old > 0 {
		for h := old; h > 0 && h+UploadRetention > old; h-- {
			if raw, err := st.Block(h); err == nil {
				if ob, err := DecodeBlock(raw); err == nil {
					for _, s := range ob.Subs {
						if _, keep := d.uploads[s.CTHash]; !keep {
							in.DeleteMeta = append(in.DeleteMeta, []byte(uploadKey(s.CTHash)))
						}
					}
				}
			}
			if ix, err := st.GetMeta(pieceIndexKey(h)); err == nil {
				for i := 0; i+32 <= len(ix); i += 32 {
					var ph [32]byte
					copy(ph[:], ix[i:])
					if _, keep := blobs[ph]; !keep {
						stale = append(stale, ph)
					}
				}
				in.DeleteMeta = append(in.DeleteMeta, []byte(pieceIndexKey(h)))
			}
		}
		for _, k := range keptSnapshots(st) {
			in.DeleteMeta = append(in.DeleteMeta, []byte(snapshotKey(k)))
			if oi, err := StoredSnapshot(st, k); err == nil {
				for _, c := range oi.Chunks {
					if _, keep := blobs[c]; !keep {
						stale = append(stale, c)
					}
				}
			}
		}
	}
	if err := st.Install(in); err != nil {
		return err
	}
	for _, h := range stale {
		if err := st.DeleteBlob(h); err != nil {
			return err
		}
	}
	// The consensus log of heights the snapshot skipped is never replayed.
	return st.TruncateBefore(d.height + 1)
}

// stateRoot is the root the block after the finalized height carries.
func (a *App) stateRoot() [32]byte {
	if a.snap != nil && a.snap.Height == a.finalized {
		return a.snap.Root
	}
	return [32]byte{}
}

// checkStateRoot refuses a proposal for finalized+1 whose state root is
// not this validator's root of the snapshot of the finalized height (or
// not zero when that is no snapshot height).
func (a *App) checkStateRoot(b *Block) error {
	if !SnapshotHeight(a.finalized, a.snapEvery) {
		if b.StateRoot != ([32]byte{}) {
			return fmt.Errorf("%w: block %d carries a state root, height %d is no snapshot height", ErrBlock, b.Height, a.finalized)
		}
		return nil
	}
	if a.snap == nil || a.snap.Height != a.finalized {
		return fmt.Errorf("%w: no snapshot of height %d to check the state root of block %d against", ErrBlock, a.finalized, b.Height)
	}
	if b.StateRoot != a.snap.Root {
		return fmt.Errorf("%w: block %d carries state root %x, the snapshot of height %d has %x", ErrBlock, b.Height, b.StateRoot[:8], a.finalized, a.snap.Root[:8])
	}
	return nil
}

// produceSnapshot builds the snapshot of height (being finalized with ev)
// if it is a snapshot height. A failure is logged: this validator then
// refuses the next block (it cannot check its root), and the others decide
// it.
func (a *App) produceSnapshot(height uint64, value []byte, ev *blockEval, pending *PendingChange) (*SnapshotInfo, map[[32]byte][]byte) {
	if !SnapshotHeight(height, a.snapEvery) {
		return nil, nil
	}
	start := time.Now()
	var pieces [][32]byte
	if ev.prev != nil {
		pieces = ev.prev.pieces
	}
	src, err := a.snapshotSource(height, value, ev.book, ev.credits, pending, ev.uploads, pieces)
	if err != nil {
		a.log.Error("cannot produce the state snapshot: the next block's state root cannot be checked", "height", height, "err", err)
		return nil, nil
	}
	info, chunks := src.build(true)
	a.log.Info("state snapshot", "height", height, "bytes", info.Size, "chunks", len(info.Chunks),
		"root", hex.EncodeToString(info.Root[:8]), "took", time.Since(start).Round(time.Millisecond))
	return info, chunks
}

// loadSnapshot finds the snapshot of a restored finalized height: the
// stored record, else (a store that does not keep it) its root recomputed,
// which checks the next block but is not served. After a snapshot was
// installed it also computes this validator's pieces of the last block.
func (a *App) loadSnapshot(r *Restored) error {
	// Restored from a snapshot and nothing finalized since: this
	// validator never computed its own pieces of the last block (the next
	// block decides them, and a node does not fetch the pieces it holds).
	if raw, err := a.st.GetMeta(metaRestored); err == nil && len(raw) == 8 && binary.BigEndian.Uint64(raw) == r.Finalized {
		if _, err := a.myPieces(a.last); err != nil {
			return fmt.Errorf("chain: own pieces of height %d after a snapshot: %w", r.Finalized, err)
		}
	}
	if !SnapshotHeight(r.Finalized, a.snapEvery) {
		return nil
	}
	if info, err := StoredSnapshot(a.st, r.Finalized); err == nil {
		a.snap = info
		return nil
	} else if !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("chain: snapshot record of height %d: %w", r.Finalized, err)
	}
	var pieces [][32]byte
	if a.last.prev != nil {
		pieces = a.last.prev.pieces
	}
	src, err := a.snapshotSource(r.Finalized, r.LastBlock, a.book, r.Credits, r.Pending, a.last.uploads, pieces)
	if err != nil {
		a.log.Error("cannot recompute the state snapshot: the next block's state root cannot be checked", "height", r.Finalized, "err", err)
		return nil
	}
	a.snap, _ = src.build(false)
	return nil
}
