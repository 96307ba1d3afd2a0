package badgerstore

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/zkbank/zkbank/store"
)

// Options tunes the Badger store. The zero value is the validator default.
type Options struct {
	// Logger receives Badger's own logs tagged component=badger and the
	// store's tagged component=store. Nil means slog.Default().
	Logger *slog.Logger
	// MemTableSize is one memtable's size; default 8 MiB. Its arena (1.3x)
	// is most of an idle store's heap, and 15% of it bounds the small
	// records (statuses, meta) one Commit can carry: about 10,000
	// 100-byte records at 8 MiB. Large values do not count against it.
	MemTableSize int64
	// ValueThreshold: values of at least this many bytes, 5-byte envelope
	// included, go to the value log instead of the LSM tree; default 1 KiB,
	// so every ciphertext does and only small records stay in the LSM.
	ValueThreshold int64
	// ValueLogFileSize is the size at which a value-log file is rotated and
	// so the unit RunGC reclaims; default 256 MiB.
	ValueLogFileSize int64
}

const (
	defaultMemTableSize     = 8 << 20
	defaultValueThreshold   = 1 << 10
	defaultValueLogFileSize = 256 << 20
	formatVersion           = 1
	gcDiscardRatio          = 0.5
	pruneChunk              = 1000
)

func (o Options) withDefaults() Options {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MemTableSize <= 0 {
		o.MemTableSize = defaultMemTableSize
	}
	if o.ValueThreshold <= 0 {
		o.ValueThreshold = defaultValueThreshold
	}
	if o.ValueLogFileSize <= 0 {
		o.ValueLogFileSize = defaultValueLogFileSize
	}
	return o
}

func (o Options) badger(dir string) badger.Options {
	return badger.DefaultOptions(dir).
		WithLogger(newBadgerLogger(o.Logger)).
		// Every write of a validator precedes something it signs or sends,
		// so every write is synced. Explicit DB.Sync after an unsynced write
		// is not enough: it syncs only the newest value-log file, and a
		// transaction that rotated the log leaves its head in an unsynced one.
		WithSyncWrites(true).
		WithMemTableSize(o.MemTableSize).
		WithNumMemtables(2).
		WithValueThreshold(o.ValueThreshold).
		WithValueLogFileSize(o.ValueLogFileSize).
		// Ciphertexts do not compress and live in the value log; the LSM
		// holds keys, pointers and small records, read through mmap.
		WithCompression(options.None).
		WithBlockCacheSize(0).
		WithIndexCacheSize(0).
		WithNumCompactors(2).
		WithNumGoroutines(2).
		WithMetricsEnabled(false).
		// One writer per height (Commit is serialized here), so Badger's
		// conflict tracking would cost memory for nothing.
		WithDetectConflicts(false)
}

// Store is the Badger-backed store.Backend. It is safe for concurrent use.
type Store struct {
	db    *badger.DB
	log   *slog.Logger
	blobs string // directory of the blob files (blobs.go)

	life   sync.RWMutex // read-held by every call, write-held by Close
	closed bool

	// writes is read-held by every write and write-held by Prune, because
	// Badger's DropPrefix fails concurrent writes instead of waiting.
	writes sync.RWMutex

	commitMu sync.Mutex // serializes Commit's read of last applied and its write

	walMu     sync.Mutex
	walHeight uint64 // height of the newest WAL record
	walSeq    uint64 // sequence number of the newest WAL record
}

// Open opens or creates the store in dir. Before Badger opens dir it deletes
// the empty log files a crash during log rotation leaves (see
// removeEmptyLogs); it refuses a directory holding data but no format stamp,
// or a newer format.
func Open(dir string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	log := opts.Logger.With("component", "store")
	if err := removeEmptyLogs(dir, log); err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	db, err := badger.Open(opts.badger(dir))
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	bd, err := openBlobs(dir)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	s := &Store{db: db, log: log, blobs: bd}
	if err := s.checkFormat(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	if err := s.loadWALTail(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: open %s: %w", dir, err)
	}
	return s, nil
}

// Close closes the store; later calls return store.ErrClosed. Close is idempotent.
func (s *Store) Close() error {
	s.life.Lock()
	defer s.life.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

func (s *Store) enter() error {
	s.life.RLock()
	if s.closed {
		s.life.RUnlock()
		return store.ErrClosed
	}
	return nil
}

func (s *Store) leave() { s.life.RUnlock() }

// checkFormat stamps a new store with the format version and refuses a
// directory written by something else or by a newer format.
func (s *Store) checkFormat() error {
	v, err := s.get(keyFormat)
	switch {
	case errors.Is(err, store.ErrNotFound):
		empty := true
		if err := s.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{})
			defer it.Close()
			it.Rewind()
			empty = !it.Valid()
			return nil
		}); err != nil {
			return err
		}
		if !empty {
			return fmt.Errorf("%w: directory holds data but no format stamp", store.ErrCorrupt)
		}
		return s.update(func(txn *badger.Txn) error {
			return set(txn, keyFormat, encodeHeight(formatVersion))
		})
	case err != nil:
		return fmt.Errorf("format stamp: %w", err)
	}
	got, err := decodeHeight(v)
	if err != nil {
		return fmt.Errorf("format stamp: %w", err)
	}
	if got != formatVersion {
		return fmt.Errorf("store format %d, this build reads %d", got, formatVersion)
	}
	return nil
}

func (s *Store) loadWALTail() error {
	k, err := s.lastKey([]byte{nsWAL})
	if err != nil || k == nil {
		return err
	}
	h, seq, ok := parseWALKey(k)
	if !ok {
		return fmt.Errorf("%w: WAL key %x", store.ErrCorrupt, k)
	}
	s.walHeight, s.walSeq = h, seq
	return nil
}

var _ store.Backend = (*Store)(nil)

// --- low-level helpers --------------------------------------------------

func set(txn *badger.Txn, key, payload []byte) error {
	return txn.Set(key, seal(key, payload))
}

// mapErr turns Badger errors a caller can act on into our sentinels.
func mapErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, badger.ErrTxnTooBig):
		return fmt.Errorf("%w: %w", store.ErrTooLarge, err)
	case errors.Is(err, badger.ErrDBClosed):
		return fmt.Errorf("%w: %w", store.ErrClosed, err)
	}
	return err
}

func (s *Store) update(fn func(txn *badger.Txn) error) error {
	txn := s.db.NewTransaction(true)
	defer txn.Discard()
	if err := fn(txn); err != nil {
		return mapErr(err)
	}
	return mapErr(txn.Commit())
}

// get reads and checks the value under key.
func (s *Store) get(key []byte) ([]byte, error) {
	var raw []byte
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		raw, err = getRaw(txn, key)
		return err
	})
	if err != nil {
		return nil, mapErr(err)
	}
	return unseal(key, raw)
}

func getRaw(txn *badger.Txn, key []byte) ([]byte, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, store.ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

// lastKey returns the greatest key with prefix, or nil if there is none.
func (s *Store) lastKey(prefix []byte) ([]byte, error) {
	var last []byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: prefix})
		defer it.Close()
		// Reverse Seek lands on the greatest key <= seek; no key of ours is
		// longer than prefix+17 bytes.
		it.Seek(append(bytes.Clone(prefix), bytes.Repeat([]byte{0xff}, 32)...))
		if it.Valid() {
			last = it.Item().KeyCopy(nil)
		}
		return nil
	})
	return last, err
}

// keysBelow returns the keys with prefix whose height field is below h.
func (s *Store) keysBelow(prefix byte, h uint64) ([][]byte, error) {
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefix}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().Key()
			kh, ok := parseHeightKey(k)
			if !ok || kh >= h {
				break
			}
			keys = append(keys, bytes.Clone(k))
		}
		return nil
	})
	return keys, err
}

// --- Committer ----------------------------------------------------------

// Commit implements store.Committer in one Badger transaction; SyncWrites makes
// it durable before it returns.
func (s *Store) Commit(height uint64, b store.Batch) error {
	unlock, err := s.enterCommit()
	if err != nil {
		return err
	}
	defer unlock()

	// Large blocks and certificates go to blob files first (blobs.go); the
	// transaction files a reference to them.
	big := bigValues{}
	blockEnv, certEnv := big.envelope(blockKey(height), b.Block), big.envelope(certKey(height), b.Cert)
	if err := s.putBlobs(big, false); err != nil {
		return fmt.Errorf("store: commit height %d: %w", height, err)
	}
	err = s.update(func(txn *badger.Txn) error {
		last, err := lastApplied(txn)
		if err != nil {
			return err
		}
		if height != last+1 {
			return fmt.Errorf("%w: commit of height %d after %d", store.ErrOutOfOrder, height, last)
		}
		if err := txn.Set(blockKey(height), blockEnv); err != nil {
			return err
		}
		if err := txn.Set(certKey(height), certEnv); err != nil {
			return err
		}
		for _, st := range b.States {
			if err := set(txn, stateKey(height, st.Shard), st.Data); err != nil {
				return err
			}
		}
		if err := setRecords(txn, nsStatus, b.Statuses); err != nil {
			return err
		}
		if err := setRecords(txn, nsMeta, b.Meta); err != nil {
			return err
		}
		if err := deleteRecords(txn, nsMeta, b.DeleteMeta); err != nil {
			return err
		}
		// Same transaction, so order does not matter for atomicity; written
		// last anyway so the rule reads the same everywhere.
		return set(txn, keyLastApplied, encodeHeight(height))
	})
	if err != nil {
		return fmt.Errorf("store: commit height %d: %w", height, err)
	}
	return nil
}

// enterCommit enters the store for a write of applied state (Commit,
// Install): no compaction's write lock held, one such write at a time.
func (s *Store) enterCommit() (unlock func(), err error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	s.writes.RLock()
	s.commitMu.Lock()
	return func() {
		s.commitMu.Unlock()
		s.writes.RUnlock()
		s.leave()
	}, nil
}

// bigValues collects the values too large to file in a transaction: they
// go to blob files (putBlobs) and the transaction files a reference.
type bigValues map[[32]byte][]byte

// envelope seals v under key, or a reference to it once v is collected.
func (big bigValues) envelope(key, v []byte) []byte {
	if len(v) <= bigValue {
		return seal(key, v)
	}
	h := sha256.Sum256(v)
	big[h] = v
	return sealBlob(key, h)
}

// setRecords sets every record under namespace ns.
func setRecords(txn *badger.Txn, ns byte, recs []store.Record) error {
	for _, r := range recs {
		k, err := idKey(ns, r.Key)
		if err != nil {
			return err
		}
		if err := set(txn, k, r.Value); err != nil {
			return err
		}
	}
	return nil
}

// deleteRecords deletes every key under namespace ns.
func deleteRecords(txn *badger.Txn, ns byte, keys [][]byte) error {
	for _, dk := range keys {
		k, err := idKey(ns, dk)
		if err != nil {
			return err
		}
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

func lastApplied(txn *badger.Txn) (uint64, error) {
	raw, err := getRaw(txn, keyLastApplied)
	if errors.Is(err, store.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	v, err := unseal(keyLastApplied, raw)
	if err != nil {
		return 0, err
	}
	return decodeHeight(v)
}

// LastApplied implements store.Committer.
func (s *Store) LastApplied() (uint64, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	var h uint64
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		h, err = lastApplied(txn)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("store: last applied: %w", mapErr(err))
	}
	return h, nil
}

// --- WAL ----------------------------------------------------------------

// Append implements store.WAL; the record is synced before Append returns.
func (s *Store) Append(height uint64, rec []byte) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	s.writes.RLock()
	defer s.writes.RUnlock()
	s.walMu.Lock()
	defer s.walMu.Unlock()
	if height < s.walHeight {
		return fmt.Errorf("store: wal append: %w: height %d after %d", store.ErrOutOfOrder, height, s.walHeight)
	}
	seq := s.walSeq + 1
	if err := s.update(func(txn *badger.Txn) error {
		return set(txn, walKey(height, seq), rec)
	}); err != nil {
		return fmt.Errorf("store: wal append height %d: %w", height, err)
	}
	s.walHeight, s.walSeq = height, seq
	return nil
}

// Records implements store.WAL.
func (s *Store) Records() ([][]byte, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	var recs [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64, Prefix: []byte{nsWAL}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			raw, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			rec, err := unseal(item.Key(), raw)
			if err != nil {
				h, seq, _ := parseWALKey(item.Key())
				return fmt.Errorf("record height %d seq %d: %w", h, seq, err)
			}
			recs = append(recs, rec)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: wal records: %w", mapErr(err))
	}
	return recs, nil
}

// TruncateBefore implements store.WAL.
func (s *Store) TruncateBefore(height uint64) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	s.writes.RLock()
	defer s.writes.RUnlock()
	keys, err := s.keysBelow(nsWAL, height)
	if err == nil {
		err = s.deleteKeys(keys)
	}
	if err != nil {
		return fmt.Errorf("store: wal truncate before %d: %w", height, mapErr(err))
	}
	return nil
}

// deleteKeys deletes keys in as few transactions as Badger allows.
func (s *Store) deleteKeys(keys [][]byte) error {
	for len(keys) > 0 {
		n := 0
		err := s.update(func(txn *badger.Txn) error {
			for _, k := range keys {
				if err := txn.Delete(k); errors.Is(err, badger.ErrTxnTooBig) && n > 0 {
					return nil // commit what fits, continue in a new txn
				} else if err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return err
		}
		keys = keys[n:]
	}
	return nil
}

// --- BlockStore ---------------------------------------------------------

// Block implements store.BlockStore.
func (s *Store) Block(height uint64) ([]byte, error) {
	return s.readBig(blockKey(height), "block %d", height)
}

// Cert implements store.BlockStore.
func (s *Store) Cert(height uint64) ([]byte, error) {
	return s.readBig(certKey(height), "cert %d", height)
}

// readBig reads a value that may be stored as a blob (blocks and
// certificates); a missing or torn blob is corruption.
func (s *Store) readBig(key []byte, what string, args ...any) ([]byte, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	var raw []byte
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		raw, err = getRaw(txn, key)
		return err
	})
	if err == nil {
		var blob bool
		if raw, blob, err = unsealAny(key, raw); err == nil && blob {
			if raw, err = s.blob([32]byte(raw)); errors.Is(err, store.ErrNotFound) {
				err = fmt.Errorf("%w: its blob is missing or torn", store.ErrCorrupt)
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", fmt.Sprintf(what, args...), mapErr(err))
	}
	return raw, nil
}

// read is get with the lifecycle check and an error naming what was read.
func (s *Store) read(key []byte, what string, args ...any) ([]byte, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	v, err := s.get(key)
	if err != nil {
		return nil, fmt.Errorf("store: %s: %w", fmt.Sprintf(what, args...), err)
	}
	return v, nil
}

// write is a one-key synced write with the lifecycle check.
func (s *Store) write(key, value []byte, what string, args ...any) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	s.writes.RLock()
	defer s.writes.RUnlock()
	if err := s.update(func(txn *badger.Txn) error { return set(txn, key, value) }); err != nil {
		return fmt.Errorf("store: put %s: %w", fmt.Sprintf(what, args...), err)
	}
	return nil
}

// --- StateStore ---------------------------------------------------------

// PutState implements store.StateStore.
func (s *Store) PutState(height uint64, shard uint32, data []byte) error {
	return s.write(stateKey(height, shard), data, "state h=%d shard=%d", height, shard)
}

// State implements store.StateStore.
func (s *Store) State(height uint64, shard uint32) ([]byte, error) {
	return s.read(stateKey(height, shard), "state h=%d shard=%d", height, shard)
}

// Prune implements store.StateStore with Badger's DropPrefix, one prefix per
// height. Plain deletes would not do: discard statistics, which drive value-
// log GC, are only collected by compaction, and tiny keys fill a memtable
// so slowly that deleted states would hold their value-log space for days.
// DropPrefix flushes the memtable and compacts the prefixes away, so the next
// RunGC can reclaim the space. It blocks writes while it runs: call it every
// few heights, not every height.
func (s *Store) Prune(keepFrom uint64) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	keys, err := s.keysBelow(nsState, keepFrom)
	if err != nil {
		return fmt.Errorf("store: prune before %d: %w", keepFrom, mapErr(err))
	}
	var prefixes [][]byte
	for _, k := range keys {
		p := k[:9] // 's' height
		if len(prefixes) == 0 || !bytes.Equal(prefixes[len(prefixes)-1], p) {
			prefixes = append(prefixes, p)
		}
	}
	s.writes.Lock()
	defer s.writes.Unlock()
	for len(prefixes) > 0 {
		n := min(len(prefixes), pruneChunk)
		if err := s.db.DropPrefix(prefixes[:n]...); err != nil {
			return fmt.Errorf("store: prune before %d: %w", keepFrom, mapErr(err))
		}
		prefixes = prefixes[n:]
	}
	return nil
}

// --- Meta, Status -----------------------------------------------------

// GetMeta implements store.Meta.
func (s *Store) GetMeta(key string) ([]byte, error) {
	k, err := metaKey(key)
	if err != nil {
		return nil, fmt.Errorf("store: meta %q: %w", key, err)
	}
	return s.read(k, "meta %q", key)
}

// Status implements store.Status.
func (s *Store) Status(id []byte) ([]byte, error) {
	k, err := idKey(nsStatus, id)
	if err != nil {
		return nil, fmt.Errorf("store: status %x: %w", id, err)
	}
	return s.read(k, "status %x", id)
}

// --- GC -----------------------------------------------------------------

// RunGC rewrites value-log files until none is at least half garbage or ctx
// is done, and returns how many it rewrote. The node calls it periodically,
// after Prune. Badger never GCs the value-log file being written.
func (s *Store) RunGC(ctx context.Context) (int, error) {
	if err := s.enter(); err != nil {
		return 0, err
	}
	defer s.leave()
	// A rewrite is a write, and DropPrefix would fail it.
	s.writes.RLock()
	defer s.writes.RUnlock()
	n := 0
	for {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		err := s.db.RunValueLogGC(gcDiscardRatio)
		switch {
		case err == nil:
			n++
		case errors.Is(err, badger.ErrNoRewrite), errors.Is(err, badger.ErrRejected):
			// Nothing left worth rewriting, or another GC is running.
			if n > 0 {
				s.log.Debug("value-log GC", "rewritten_files", n)
			}
			return n, nil
		default:
			return n, fmt.Errorf("store: value-log GC: %w", mapErr(err))
		}
	}
}
