package store

import (
	"context"
	"fmt"
	"slices"
	"sync"
)

// Memory is an in-memory Backend for other packages' tests. It follows the
// same contract as *Store (ordering, ErrNotFound, ErrOutOfOrder, atomic
// Commit) but has no size limit, no durability and never returns ErrCorrupt.
// Values are copied in and out, so callers may reuse their buffers.
type Memory struct {
	mu        sync.Mutex
	closed    bool
	kv        map[string][]byte
	applied   uint64
	wal       []walRecord
	walHeight uint64
}

type walRecord struct {
	height uint64
	rec    []byte
}

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory { return &Memory{kv: make(map[string][]byte)} }

func (m *Memory) lock() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return ErrClosed
	}
	return nil
}

func (m *Memory) getLocked(key []byte, what string, args ...any) ([]byte, error) {
	v, ok := m.kv[string(key)]
	if !ok {
		return nil, fmt.Errorf("store: %s: %w", fmt.Sprintf(what, args...), ErrNotFound)
	}
	return append([]byte{}, v...), nil
}

func (m *Memory) get(key []byte, what string, args ...any) ([]byte, error) {
	if err := m.lock(); err != nil {
		return nil, err
	}
	defer m.mu.Unlock()
	return m.getLocked(key, what, args...)
}

func (m *Memory) put(key, value []byte) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	m.kv[string(key)] = append([]byte{}, value...)
	return nil
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
	m.wal = append(m.wal, walRecord{height, append([]byte{}, rec...)})
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
		out = append(out, append([]byte{}, r.rec...))
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

// SaveBlock implements BlockStore.
func (m *Memory) SaveBlock(height uint64, block, cert []byte) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	m.kv[string(blockKey(height))] = append([]byte{}, block...)
	m.kv[string(certKey(height))] = append([]byte{}, cert...)
	return nil
}

// Block implements BlockStore.
func (m *Memory) Block(height uint64) ([]byte, error) {
	return m.get(blockKey(height), "block %d", height)
}

// Cert implements BlockStore.
func (m *Memory) Cert(height uint64) ([]byte, error) {
	return m.get(certKey(height), "cert %d", height)
}

// LastHeight implements BlockStore.
func (m *Memory) LastHeight() (uint64, error) {
	if err := m.lock(); err != nil {
		return 0, err
	}
	defer m.mu.Unlock()
	var last uint64
	for k := range m.kv {
		if k[0] == nsBlock {
			h, _ := parseHeightKey([]byte(k))
			last = max(last, h)
		}
	}
	return last, nil
}

// PutState implements StateStore.
func (m *Memory) PutState(height uint64, shard uint32, data []byte) error {
	return m.put(stateKey(height, shard), data)
}

// State implements StateStore.
func (m *Memory) State(height uint64, shard uint32) ([]byte, error) {
	return m.get(stateKey(height, shard), "state h=%d shard=%d", height, shard)
}

// Prune implements StateStore.
func (m *Memory) Prune(keepFrom uint64) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	for k := range m.kv {
		if k[0] != nsState {
			continue
		}
		if h, _ := parseHeightKey([]byte(k)); h < keepFrom {
			delete(m.kv, k)
		}
	}
	return nil
}

// GetMeta implements Meta.
func (m *Memory) GetMeta(key string) ([]byte, error) {
	k, err := metaKey(key)
	if err != nil {
		return nil, fmt.Errorf("store: meta %q: %w", key, err)
	}
	return m.get(k, "meta %q", key)
}

// PutMeta implements Meta.
func (m *Memory) PutMeta(key string, value []byte) error {
	k, err := metaKey(key)
	if err != nil {
		return fmt.Errorf("store: meta %q: %w", key, err)
	}
	return m.put(k, value)
}

// PutStatus implements Status.
func (m *Memory) PutStatus(id, rec []byte) error {
	k, err := idKey(nsStatus, id)
	if err != nil {
		return fmt.Errorf("store: status %x: %w", id, err)
	}
	return m.put(k, rec)
}

// Status implements Status.
func (m *Memory) Status(id []byte) ([]byte, error) {
	k, err := idKey(nsStatus, id)
	if err != nil {
		return nil, fmt.Errorf("store: status %x: %w", id, err)
	}
	return m.get(k, "status %x", id)
}

// PutAccount implements Accounts.
func (m *Memory) PutAccount(id, rec []byte) error {
	k, err := idKey(nsAccount, id)
	if err != nil {
		return fmt.Errorf("store: account %x: %w", id, err)
	}
	return m.put(k, rec)
}

// Account implements Accounts.
func (m *Memory) Account(id []byte) ([]byte, error) {
	k, err := idKey(nsAccount, id)
	if err != nil {
		return nil, fmt.Errorf("store: account %x: %w", id, err)
	}
	return m.get(k, "account %x", id)
}

// Commit implements Committer: everything is validated before anything is
// written, so a failed Commit changes nothing.
func (m *Memory) Commit(height uint64, b Batch) error {
	if err := m.lock(); err != nil {
		return err
	}
	defer m.mu.Unlock()
	if height != m.applied+1 {
		return fmt.Errorf("store: commit height %d: %w: after %d", height, ErrOutOfOrder, m.applied)
	}
	writes := map[string][]byte{
		string(blockKey(height)): append([]byte{}, b.Block...),
		string(certKey(height)):  append([]byte{}, b.Cert...),
	}
	for _, st := range b.States {
		writes[string(stateKey(height, st.Shard))] = append([]byte{}, st.Data...)
	}
	for _, group := range []struct {
		ns   byte
		recs []Record
	}{{nsStatus, b.Statuses}, {nsAccount, b.Accounts}, {nsMeta, b.Meta}} {
		for _, r := range group.recs {
			k, err := idKey(group.ns, r.Key)
			if err != nil {
				return fmt.Errorf("store: commit height %d: %w", height, err)
			}
			writes[string(k)] = append([]byte{}, r.Value...)
		}
	}
	for _, dk := range b.DeleteMeta {
		k, err := idKey(nsMeta, dk)
		if err != nil {
			return fmt.Errorf("store: commit height %d: %w", height, err)
		}
		delete(m.kv, string(k))
	}
	for k, v := range writes {
		m.kv[k] = v
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
func (m *Memory) RunGC(ctx context.Context) (int, error) { return 0, ctx.Err() }

// Close implements Backend.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closed = true
	return nil
}
