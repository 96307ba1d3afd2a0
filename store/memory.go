package store

import (
	"context"
	"crypto/sha256"
	"fmt"
	"slices"
	"sync"
)

// Memory is an in-memory Backend for other packages' tests. It follows the
// same contract as the Badger store (ordering, ErrNotFound, ErrOutOfOrder,
// ErrInvalid, atomic Commit) but has no size limit, no durability and never
// returns ErrCorrupt. Values are copied in and out, so callers may reuse
// their buffers.
type Memory struct {
	mu       sync.Mutex
	closed   bool
	blocks   map[uint64][]byte
	certs    map[uint64][]byte
	states   map[shardAt][]byte
	meta     map[string][]byte
	statuses map[string][]byte
	blobs    map[[32]byte][]byte
	applied  uint64

	wal       []walRecord
	walHeight uint64
}

type shardAt struct {
	height uint64
	shard  uint32
}

type walRecord struct {
	height uint64
	rec    []byte
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{
		blocks:   make(map[uint64][]byte),
		certs:    make(map[uint64][]byte),
		states:   make(map[shardAt][]byte),
		meta:     make(map[string][]byte),
		statuses: make(map[string][]byte),
	}
}

func clone(b []byte) []byte { return append([]byte{}, b...) }

func (m *Memory) lock() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	return nil
}

// get reads one value under the lock, naming what was read in the error.
func get[K comparable](m *Memory, kv map[K][]byte, k K, what string, args ...any) ([]byte, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	v, ok := kv[k]
	if !ok {
		return nil, fmt.Errorf("store: %s: %w", fmt.Sprintf(what, args...), ErrNotFound)
	}
	return clone(v), nil
}

// Append implements WAL.
func (m *Memory) Append(height uint64, rec []byte) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if height < m.walHeight {
		return fmt.Errorf("store: wal append: %w: height %d after %d", ErrOutOfOrder, height, m.walHeight)
	}
	m.wal = append(m.wal, walRecord{height, clone(rec)})
	m.walHeight = height
	return nil
}

// Records implements WAL.
func (m *Memory) Records() ([][]byte, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	var out [][]byte
	for _, r := range m.wal {
		out = append(out, clone(r.rec))
	}
	return out, nil
}

// TruncateBefore implements WAL.
func (m *Memory) TruncateBefore(height uint64) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	m.wal = slices.DeleteFunc(m.wal, func(r walRecord) bool { return r.height < height })
	return nil
}

// Block implements BlockStore.
func (m *Memory) Block(height uint64) ([]byte, error) {
	return get(m, m.blocks, height, "block %d", height)
}

// Cert implements BlockStore.
func (m *Memory) Cert(height uint64) ([]byte, error) {
	return get(m, m.certs, height, "cert %d", height)
}

// PutState implements StateStore.
func (m *Memory) PutState(height uint64, shard uint32, data []byte) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	m.states[shardAt{height, shard}] = clone(data)
	return nil
}

// State implements StateStore.
func (m *Memory) State(height uint64, shard uint32) ([]byte, error) {
	return get(m, m.states, shardAt{height, shard}, "state h=%d shard=%d", height, shard)
}

// Prune implements StateStore.
func (m *Memory) Prune(keepFrom uint64) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	for k := range m.states {
		if k.height < keepFrom {
			delete(m.states, k)
		}
	}
	return nil
}

// GetMeta implements Meta.
func (m *Memory) GetMeta(key string) ([]byte, error) {
	if err := CheckID([]byte(key)); err != nil {
		return nil, fmt.Errorf("store: meta %q: %w", key, err)
	}
	return get(m, m.meta, key, "meta %q", key)
}

// Status implements Status.
func (m *Memory) Status(id []byte) ([]byte, error) {
	if err := CheckID(id); err != nil {
		return nil, fmt.Errorf("store: status %x: %w", id, err)
	}
	return get(m, m.statuses, string(id), "status %x", id)
}

// Commit implements Committer: everything is validated before anything is
// written, so a failed Commit changes nothing. Deletes are applied after the
// writes, as in one Badger transaction, so a key both written and deleted
// ends up deleted.
func (m *Memory) Commit(height uint64, b Batch) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if height != m.applied+1 {
		return fmt.Errorf("store: commit height %d: %w: after %d", height, ErrOutOfOrder, m.applied)
	}
	for _, recs := range [][]Record{b.Statuses, b.Meta} {
		for _, r := range recs {
			if err := CheckID(r.Key); err != nil {
				return fmt.Errorf("store: commit height %d: %w", height, err)
			}
		}
	}
	for _, k := range b.DeleteMeta {
		if err := CheckID(k); err != nil {
			return fmt.Errorf("store: commit height %d: %w", height, err)
		}
	}
	m.blocks[height] = clone(b.Block)
	m.certs[height] = clone(b.Cert)
	for _, st := range b.States {
		m.states[shardAt{height, st.Shard}] = clone(st.Data)
	}
	for _, r := range b.Statuses {
		m.statuses[string(r.Key)] = clone(r.Value)
	}
	for _, r := range b.Meta {
		m.meta[string(r.Key)] = clone(r.Value)
	}
	for _, k := range b.DeleteMeta {
		delete(m.meta, string(k))
	}
	m.applied = height
	return nil
}

// LastApplied implements Committer.
func (m *Memory) LastApplied() (uint64, error) {
	if err := m.lock(); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	return m.applied, nil
}

// RunGC implements Backend; there is nothing to collect.
func (m *Memory) RunGC(ctx context.Context) (int, error) {
	if err := m.lock(); err != nil {
		return 0, err
	}
	m.mu.Unlock()
	return 0, ctx.Err()
}

// Close implements Backend.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}

// PutBlobs implements Blobs.
func (m *Memory) PutBlobs(blobs map[[32]byte][]byte) error {
	for h, data := range blobs {
		if sha256.Sum256(data) != h {
			return fmt.Errorf("%w: blob does not hash to %x", ErrInvalid, h[:8])
		}
	}
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if m.blobs == nil {
		m.blobs = map[[32]byte][]byte{}
	}
	for h, data := range blobs {
		if _, ok := m.blobs[h]; !ok {
			m.blobs[h] = clone(data)
		}
	}
	return nil
}

// Blob implements Blobs.
func (m *Memory) Blob(h [32]byte) ([]byte, error) {
	return get(m, m.blobs, h, "blob %x", h[:8])
}

// DeleteBlob implements Blobs.
func (m *Memory) DeleteBlob(h [32]byte) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	delete(m.blobs, h)
	return nil
}

// Install implements Installer.
func (m *Memory) Install(in Install) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if err := CheckInstall(m.applied, in); err != nil {
		return fmt.Errorf("store: install height %d: %w", in.Height, err)
	}
	for _, b := range in.Blocks {
		m.blocks[b.Height] = clone(b.Block)
		m.certs[b.Height] = clone(b.Cert)
	}
	for _, st := range in.States {
		m.states[shardAt{st.Height, st.Shard}] = clone(st.Data)
	}
	for _, r := range in.Meta {
		m.meta[string(r.Key)] = clone(r.Value)
	}
	for _, k := range in.DeleteMeta {
		delete(m.meta, string(k))
	}
	m.applied = in.Height
	return nil
}
