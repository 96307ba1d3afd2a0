package wallet

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/ledger"
)

// Version is the wallet file format this package writes and reads.
const Version = 1

// Account kinds, as written in wallet and genesis files.
const (
	KindDeposit = "deposit"
	KindCard    = "card"
)

// Sentinels a caller can test with errors.Is; the message of a *FileError
// already names the file.
var (
	ErrCorrupt     = errors.New("corrupt wallet file")
	ErrPermissions = errors.New("wallet file permissions too open")
	ErrVersion     = errors.New("unsupported wallet version")
	ErrExists      = errors.New("wallet file already exists")
	ErrNotFound    = errors.New("wallet file not found")
)

// FileError is any failure to read or write a wallet file.
type FileError struct {
	Path string
	Err  error
}

func (e *FileError) Error() string { return "wallet " + e.Path + ": " + e.Err.Error() }
func (e *FileError) Unwrap() error { return e.Err }

// Wallet is one account's secrets and metadata. The JSON fields are the file
// format; the unexported ones are derived on load.
type Wallet struct {
	Version  int    `json:"version"`
	Name     string `json:"name"`
	ChainID  string `json:"chain_id,omitempty"` // empty until bound to a chain (testnet, open)
	Account  string `json:"account_id"`
	Seed     string `json:"ed25519_seed"` // hex, 32 bytes
	ParamSet string `json:"param_set"`
	// OwnerKeys (base64 of ledger.OwnerKeys.MarshalBinary) is what wallets
	// written before owner keys were derived from the seed hold; new wallets
	// leave it empty and derive them (ledger.OwnerKeysFromSeed).
	OwnerKeys string `json:"owner_keys,omitempty"`
	Kind      string `json:"kind"`
	// Limit is a card's credit line in cents, as the issuer granted it.
	// Informational: the ledger only knows the encrypted available credit.
	Limit  uint64 `json:"limit,omitempty"`
	Issuer string `json:"issuer,omitempty"` // issuer's account id, for cards

	path  string
	id    ledger.AccountID
	key   ed25519.PrivateKey
	mu    sync.Mutex
	owner *ledger.OwnerKeys
}

// New generates a wallet: a fresh ed25519 key and owner HE key pair.
func New(name, kind string, p *ledger.Params) (*Wallet, error) {
	if kind != KindDeposit && kind != KindCard {
		return nil, fmt.Errorf("wallet: kind %q: want %q or %q", kind, KindDeposit, KindCard)
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	owner, err := ledger.OwnerKeysFromSeed(p, key.Seed())
	if err != nil {
		return nil, fmt.Errorf("wallet: owner keys: %w", err)
	}
	id := ledger.AccountIDOf(pub)
	return &Wallet{
		Version:  Version,
		Name:     name,
		Account:  id.String(),
		Seed:     hex.EncodeToString(key.Seed()),
		ParamSet: p.Set.Name,
		Kind:     kind,
		id:       id,
		key:      key,
		owner:    owner,
	}, nil
}

func checkName(name string) error {
	if name == "" || len(name) > 64 || strings.ContainsAny(name, "/\\\x00\n") {
		return fmt.Errorf("wallet: name %q: want 1-64 characters without slashes", name)
	}
	return nil
}

// Load reads, permission-checks and validates a wallet file.
func Load(path string) (*Wallet, error) {
	fail := func(err error) (*Wallet, error) { return nil, &FileError{Path: path, Err: err} }
	st, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return fail(ErrNotFound)
	}
	if err != nil {
		return fail(err)
	}
	if st.IsDir() {
		return fail(fmt.Errorf("%w: is a directory", ErrCorrupt))
	}
	if m := st.Mode().Perm(); m&0o077 != 0 {
		return fail(fmt.Errorf("%w: mode %04o, want 0600 (chmod 600 %s)", ErrPermissions, m, path))
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return fail(err)
	}
	w, err := decode(b)
	if err != nil {
		return fail(err)
	}
	w.path = path
	return w, nil
}

func decode(b []byte) (*Wallet, error) {
	var w Wallet
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if w.Version != Version {
		return nil, fmt.Errorf("%w %d (this zkbank reads version %d)", ErrVersion, w.Version, Version)
	}
	if err := checkName(w.Name); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	seed, err := hex.DecodeString(w.Seed)
	if err != nil || len(seed) != ed25519.SeedSize {
		return nil, fmt.Errorf("%w: ed25519_seed must be %d hex bytes", ErrCorrupt, ed25519.SeedSize)
	}
	w.key = ed25519.NewKeyFromSeed(seed)
	w.id = ledger.AccountIDOf(w.key.Public().(ed25519.PublicKey))
	if w.Account != w.id.String() {
		return nil, fmt.Errorf("%w: account_id does not match the key", ErrCorrupt)
	}
	if w.Kind != KindDeposit && w.Kind != KindCard {
		return nil, fmt.Errorf("%w: kind %q", ErrCorrupt, w.Kind)
	}
	if w.Issuer != "" {
		if _, err := ledger.ParseAccountID(w.Issuer); err != nil {
			return nil, fmt.Errorf("%w: issuer: %v", ErrCorrupt, err)
		}
	}
	set, err := ledger.ParamSetByName(w.ParamSet)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	if w.OwnerKeys == "" {
		owner, err := ledger.OwnerKeysFromSeed(params(set), seed)
		if err != nil {
			return nil, fmt.Errorf("%w: owner keys: %v", ErrCorrupt, err)
		}
		w.owner = owner
		return &w, nil
	}
	ob, err := base64.StdEncoding.DecodeString(w.OwnerKeys)
	if err != nil {
		return nil, fmt.Errorf("%w: owner_keys is not base64", ErrCorrupt)
	}
	owner, err := params(set).DecodeOwnerKeys(ob)
	if err != nil {
		return nil, fmt.Errorf("%w: owner_keys: %v", ErrCorrupt, err)
	}
	w.owner = owner
	return &w, nil
}

var (
	paramsMu    sync.Mutex
	paramsCache = map[string]*ledger.Params{}
)

// params instantiates a parameter set once per process: it costs tens of ms.
func params(set ledger.ParamSet) *ledger.Params {
	paramsMu.Lock()
	defer paramsMu.Unlock()
	if p, ok := paramsCache[set.Name]; ok {
		return p
	}
	p := ledger.MustParams(set)
	paramsCache[set.Name] = p
	return p
}

// Params returns the (cached) instantiated parameter set the wallet's keys use.
func (w *Wallet) Params() *ledger.Params {
	set, err := ledger.ParamSetByName(w.ParamSet)
	if err != nil {
		panic(err) // validated on New and Load
	}
	return params(set)
}

// Create writes a new wallet file with mode 0600, refusing to overwrite an
// existing file: that would destroy the only copy of an account's keys.
func (w *Wallet) Create(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return &FileError{Path: path, Err: ErrExists}
	}
	if err != nil {
		return &FileError{Path: path, Err: err}
	}
	b, err := w.encode()
	if err == nil {
		_, err = f.Write(b)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return &FileError{Path: path, Err: err}
	}
	w.path = path
	return nil
}

// Save rewrites the wallet file atomically (temporary file, then rename) with
// mode 0600.
func (w *Wallet) Save(path string) error {
	b, err := w.encode()
	if err != nil {
		return &FileError{Path: path, Err: err}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return &FileError{Path: path, Err: err}
	}
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Chmod(0o600)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
		return &FileError{Path: path, Err: err}
	}
	w.path = path
	return nil
}

func (w *Wallet) encode() ([]byte, error) {
	b, err := json.MarshalIndent(w, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// Path is the file the wallet was loaded from or last saved to.
func (w *Wallet) Path() string { return w.path }

// ID is the account id (SHA-256 of the ed25519 public key).
func (w *Wallet) ID() ledger.AccountID { return w.id }

// SignKey is the account's ed25519 private key.
func (w *Wallet) SignKey() ed25519.PrivateKey { return w.key }

// SignPub is the account's ed25519 public key.
func (w *Wallet) SignPub() ed25519.PublicKey { return w.key.Public().(ed25519.PublicKey) }

// Owner returns the owner's HE key pair.
func (w *Wallet) Owner() *ledger.OwnerKeys {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.owner
}

// OwnerPK is the encoded owner public key, as registered with the account.
func (w *Wallet) OwnerPK() ([]byte, error) { return w.Owner().PK.MarshalBinary() }

// LedgerKind is the account kind as the ledger names it.
func (w *Wallet) LedgerKind() ledger.AccountKind {
	if w.Kind == KindCard {
		return ledger.KindCard
	}
	return ledger.KindDeposit
}

// IsCard reports whether the wallet holds a card credit line.
func (w *Wallet) IsCard() bool { return w.Kind == KindCard }

// GenesisAccount is the wallet's entry in a genesis file, prefunded with
// balance cents.
func (w *Wallet) GenesisAccount(balance uint64) genesis.Account {
	return genesis.Account{
		Name:    w.Name,
		SignPub: hex.EncodeToString(w.SignPub()),
		Kind:    w.Kind,
		Balance: balance,
	}
}

// OpenSignature signs the account-opening request for chain.
func (w *Wallet) OpenSignature(chain string) []byte {
	return ed25519.Sign(w.key, ledger.OpenAccountBytes(chain, w.LedgerKind()))
}

// BalanceSignature signs a balance query: it authorizes validators to
// re-encrypt the balance to exactly ownerPK (the wallet's own key).
func (w *Wallet) BalanceSignature(chain string, q ledger.BalanceQuery, ownerPK []byte) []byte {
	return ed25519.Sign(w.key, ledger.BalanceQueryBytes(chain, w.id, q, ownerPK))
}

// BindChain records the chain the wallet's account lives on, refusing to
// rebind it to another chain.
func (w *Wallet) BindChain(chain string) error {
	if w.ChainID != "" && w.ChainID != chain {
		return fmt.Errorf("wallet %s belongs to chain %q, not %q", w.displayPath(), w.ChainID, chain)
	}
	w.ChainID = chain
	return nil
}

func (w *Wallet) displayPath() string {
	if w.path != "" {
		return w.path
	}
	return w.Name
}

// Decode parses and validates a wallet from its JSON encoding (the file
// format), as Load does for a file: for wallets kept outside a file system
// (a browser's storage).
func Decode(b []byte) (*Wallet, error) { return decode(b) }

// Marshal is the wallet's JSON encoding, byte for byte what Save writes.
func (w *Wallet) Marshal() ([]byte, error) { return w.encode() }
