package badgerstore

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"

	"github.com/zkbank/zkbank/store"
)

// Blocks and certificates larger than bigValue are blobs too: the height's
// transaction files a reference (envelopeBlob) under the block or
// certificate key, and the blob is written and synced before it. A block
// carries its predecessor's precommit extensions, decryption shares
// included (hundreds of KiB per batch), so these are the store's largest
// values and would otherwise fill the mapped value log for good (blocks are
// never pruned).
const bigValue = 64 << 10

// Blobs are files in the store directory's blobs/ subdirectory, one per
// SHA-256, written to a temporary file, synced, renamed into place and the
// directory synced: a crash leaves either the whole blob or none (a stray
// temporary file is removed at the next Open). They are read with plain
// reads, never mapped, so they stay out of the process's resident memory
// (the value log, which Badger maps, held every piece ciphertext before).

const blobDir = "blobs"

func (s *Store) blobPath(h [32]byte) string {
	return filepath.Join(s.blobs, hex.EncodeToString(h[:]))
}

// openBlobs creates the blob directory and removes temporary files a crash
// left behind.
func openBlobs(dir string) (string, error) {
	bd := filepath.Join(dir, blobDir)
	if err := os.MkdirAll(bd, 0o700); err != nil {
		return "", err
	}
	tmps, err := filepath.Glob(filepath.Join(bd, "*.tmp"))
	if err != nil {
		return "", err
	}
	for _, t := range tmps {
		if err := os.Remove(t); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
	}
	return bd, nil
}

// PutBlobs implements store.Blobs: each blob not stored yet is checked
// against its hash, written to a temporary file, synced and renamed into
// place, then the directory is synced once.
func (s *Store) PutBlobs(blobs map[[32]byte][]byte) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	return s.putBlobs(blobs, true)
}

// putBlobs writes the blobs not stored yet; verify checks each one's hash
// first (Commit hashes its blocks itself).
func (s *Store) putBlobs(blobs map[[32]byte][]byte, verify bool) error {
	hs := make([][32]byte, 0, len(blobs))
	for h := range blobs {
		hs = append(hs, h)
	}
	slices.SortFunc(hs, func(a, b [32]byte) int { return bytes.Compare(a[:], b[:]) })
	wrote := false
	for _, h := range hs {
		data := blobs[h]
		path := s.blobPath(h)
		if fi, err := os.Stat(path); err == nil && fi.Size() == int64(len(data)) {
			continue // stored (a torn file, of another size, is rewritten)
		}
		if verify && sha256.Sum256(data) != h {
			return fmt.Errorf("%w: blob does not hash to %x", store.ErrInvalid, h[:8])
		}
		tmp := path + ".tmp"
		if err := writeSynced(tmp, data); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("store: blob %x: %w", h[:8], err)
		}
		if err := os.Rename(tmp, path); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("store: blob %x: %w", h[:8], err)
		}
		wrote = true
	}
	if wrote {
		if err := syncDir(s.blobs); err != nil {
			return fmt.Errorf("store: blobs: %w", err)
		}
	}
	return nil
}

func writeSynced(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		_ = f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return err
	}
	return f.Close()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Blob implements store.Blobs.
func (s *Store) Blob(h [32]byte) ([]byte, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	return s.blob(h)
}

func (s *Store) blob(h [32]byte) ([]byte, error) {
	b, err := os.ReadFile(s.blobPath(h))
	if errors.Is(err, fs.ErrNotExist) || err == nil && sha256.Sum256(b) != h {
		return nil, fmt.Errorf("store: blob %x: %w", h[:8], store.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: blob %x: %w", h[:8], err)
	}
	return b, nil
}

// DeleteBlob implements store.Blobs.
func (s *Store) DeleteBlob(h [32]byte) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if err := os.Remove(s.blobPath(h)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("store: blob %x: %w", h[:8], err)
	}
	return nil
}
