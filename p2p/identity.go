package p2p

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/libp2p/go-libp2p/core/crypto"
)

// identityFileMode is the only mode an identity file may have: the key is the
// node's peer id, and whoever reads it can impersonate the validator.
const identityFileMode fs.FileMode = 0o600

// ErrKeyPermissions reports an identity file readable by group or others.
var ErrKeyPermissions = errors.New("p2p: identity file must have mode 0600")

// GenerateIdentity returns a fresh ed25519 key.
func GenerateIdentity() (crypto.PrivKey, error) {
	sk, _, err := crypto.GenerateEd25519Key(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("p2p: generate identity: %w", err)
	}
	return sk, nil
}

// LoadIdentity reads an ed25519 key written by SaveIdentity. It refuses a
// file that group or others may read or write.
func LoadIdentity(path string) (crypto.PrivKey, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("p2p: load identity: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("p2p: load identity: %w", err)
	}
	if st.Mode().Perm()&^identityFileMode != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o", ErrKeyPermissions, path, st.Mode().Perm())
	}
	// A marshalled ed25519 key is 68 bytes; anything much larger is not ours.
	raw, err := io.ReadAll(io.LimitReader(f, 1024))
	if err != nil {
		return nil, fmt.Errorf("p2p: load identity %s: %w", path, err)
	}
	sk, err := crypto.UnmarshalPrivateKey(raw)
	if err != nil {
		return nil, fmt.Errorf("p2p: load identity %s: %w", path, err)
	}
	if sk.Type() != crypto.Ed25519 {
		return nil, fmt.Errorf("p2p: load identity %s: key is %s, want Ed25519", path, sk.Type())
	}
	return sk, nil
}

// SaveIdentity writes sk to path with mode 0600. It never overwrites an
// existing file: replacing a validator's key changes its peer id.
func SaveIdentity(path string, sk crypto.PrivKey) error {
	raw, err := crypto.MarshalPrivateKey(sk)
	if err != nil {
		return fmt.Errorf("p2p: save identity: %w", err)
	}
	// Write a temporary file, sync it, then link it into place: the key is
	// either absent or complete, and Link fails if path already exists.
	tmp, err := os.CreateTemp(filepath.Dir(path), ".identity-*")
	if err != nil {
		return fmt.Errorf("p2p: save identity: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(identityFileMode); err != nil {
		tmp.Close()
		return fmt.Errorf("p2p: save identity: %w", err)
	}
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		return fmt.Errorf("p2p: save identity: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("p2p: save identity: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("p2p: save identity: %w", err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		return fmt.Errorf("p2p: save identity: %w", err)
	}
	return nil
}

// LoadOrCreateIdentity loads the key at path, or generates and saves one if
// the file does not exist.
func LoadOrCreateIdentity(path string) (crypto.PrivKey, error) {
	sk, err := LoadIdentity(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return sk, err
	}
	if sk, err = GenerateIdentity(); err != nil {
		return nil, err
	}
	if err := SaveIdentity(path, sk); err != nil {
		return nil, err
	}
	return sk, nil
}
