package wallet

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/zkbank/zkbank/ledger"
)

var (
	fixtureOnce sync.Once
	fixture     *Wallet
	fixtureRaw  []byte
)

// testWallet returns one generated wallet per test binary (key generation at
// N=2^14 is not free) and the bytes of its file.
func testWallet(t *testing.T) (*Wallet, []byte) {
	t.Helper()
	fixtureOnce.Do(func() {
		w, err := New("alice", KindDeposit, params(ledger.ZKB128))
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "alice.json")
		if err := w.Create(path); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		fixture, fixtureRaw = w, b
	})
	if fixture == nil {
		t.Fatal("fixture wallet failed")
	}
	return fixture, fixtureRaw
}

func write(t *testing.T, b []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "w.json")
	if err := os.WriteFile(p, b, mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCreateThenLoadRoundTrips(t *testing.T) {
	w, raw := testWallet(t)
	p := write(t, raw, 0o600)
	got, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID() != w.ID() || got.Name != "alice" || got.Kind != KindDeposit || got.Version != Version {
		t.Fatalf("loaded %+v", got)
	}
	if !got.SignKey().Equal(w.SignKey()) {
		t.Fatal("signing key differs")
	}
	// The owner secret key is derived from the seed: the same after a load.
	a, _ := got.Owner().SK.MarshalBinary()
	b, _ := w.Owner().SK.MarshalBinary()
	if string(a) != string(b) {
		t.Fatal("owner secret key differs")
	}
	if raw, _ := os.ReadFile(p); len(raw) > 4096 {
		t.Fatalf("wallet file of %d bytes: owner keys should be derived, not stored", len(raw))
	}
	if got.Path() != p {
		t.Fatalf("path %q", got.Path())
	}
}

func TestCreateIsMode0600AndRefusesToOverwrite(t *testing.T) {
	w, _ := testWallet(t)
	p := filepath.Join(t.TempDir(), "x.json")
	if err := w.Create(p); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %o", st.Mode().Perm())
	}
	if err := w.Create(p); !errors.Is(err, ErrExists) {
		t.Fatalf("second create: %v", err)
	}
}

func TestSaveIsAtomicAndKeepsMode(t *testing.T) {
	w, raw := testWallet(t)
	p := write(t, raw, 0o600)
	l, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if err := l.BindChain("chain-a"); err != nil {
		t.Fatal(err)
	}
	if err := l.Save(p); err != nil {
		t.Fatal(err)
	}
	again, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if again.ChainID != "chain-a" || again.ID() != w.ID() {
		t.Fatalf("after save: %q %v", again.ChainID, again.ID())
	}
	if err := again.BindChain("chain-b"); err == nil {
		t.Fatal("rebinding to another chain accepted")
	}
	entries, _ := os.ReadDir(filepath.Dir(p))
	if len(entries) != 1 {
		t.Fatalf("leftover temporary files: %v", entries)
	}
}

func TestLoadRefusesGroupOrWorldReadableFile(t *testing.T) {
	_, raw := testWallet(t)
	p := write(t, raw, 0o644)
	_, err := Load(p)
	if !errors.Is(err, ErrPermissions) {
		t.Fatalf("got %v", err)
	}
	if !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("message does not name the file and the fix: %v", err)
	}
}

// Each corruption must produce one error line naming the file.
func TestLoadCorruptFilesGiveOneLineNamingTheFile(t *testing.T) {
	_, raw := testWallet(t)
	good := string(raw)
	field := func(name string) string { // the JSON value of a string field
		i := strings.Index(good, `"`+name+`": "`) + len(name) + 5
		return good[i : i+strings.Index(good[i:], `"`)]
	}
	cases := map[string]struct {
		body string
		want error
	}{
		"not json":         {"{not json", ErrCorrupt},
		"empty":            {"", ErrCorrupt},
		"truncated":        {good[:len(good)/2], ErrCorrupt},
		"future version":   {strings.Replace(good, `"version": 1`, `"version": 9`, 1), ErrVersion},
		"bad seed":         {strings.Replace(good, field("ed25519_seed"), "zz", 1), ErrCorrupt},
		"foreign account":  {strings.Replace(good, field("account_id"), strings.Repeat("ab", 32), 1), ErrCorrupt},
		"bad kind":         {strings.Replace(good, `"kind": "deposit"`, `"kind": "loan"`, 1), ErrCorrupt},
		"owner keys b64":   {strings.Replace(good, `"kind": "deposit"`, `"owner_keys": "!!!", "kind": "deposit"`, 1), ErrCorrupt},
		"owner keys short": {strings.Replace(good, `"kind": "deposit"`, `"owner_keys": "AAAA", "kind": "deposit"`, 1), ErrCorrupt},
		"unknown field":    {strings.Replace(good, `"version": 1`, `"version": 1, "extra": 2`, 1), ErrCorrupt},
		"unknown params":   {strings.Replace(good, `"param_set": "zkb128"`, `"param_set": "toy"`, 1), ErrCorrupt},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			p := write(t, []byte(c.body), 0o600)
			_, err := Load(p)
			if !errors.Is(err, c.want) {
				t.Fatalf("got %v, want %v", err, c.want)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "wallet "+p+": ") || strings.Contains(msg, "\n") || len(msg) > 300 {
				t.Fatalf("not one clear line naming the file: %q", msg)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.json"))
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("got %v", err)
	}
}

func TestNewRejectsBadKindAndName(t *testing.T) {
	p := params(ledger.ZKB128)
	if _, err := New("a", "loan", p); err == nil {
		t.Fatal("kind loan accepted")
	}
	if _, err := New("a/b", KindCard, p); err == nil {
		t.Fatal("slash in name accepted")
	}
}

func TestJournalRecordsOutgoingAmounts(t *testing.T) {
	_, raw := testWallet(t)
	l, err := Load(write(t, raw, 0o600))
	if err != nil {
		t.Fatal(err)
	}
	if j, err := l.Journal(); err != nil || len(j) != 0 {
		t.Fatalf("fresh journal: %v %v", j, err)
	}
	if err := l.Record(Entry{ID: "t1", To: "bob", Amount: 1234}); err != nil {
		t.Fatal(err)
	}
	j, err := l.Journal()
	if err != nil || j["t1"].Amount != 1234 {
		t.Fatalf("journal %v %v", j, err)
	}
	st, _ := os.Stat(JournalPath(l.Path()))
	if st.Mode().Perm() != 0o600 {
		t.Fatalf("journal mode %o", st.Mode().Perm())
	}
}

func TestGenesisAccountAndSignatures(t *testing.T) {
	w, _ := testWallet(t)
	g := w.GenesisAccount(100_000)
	if g.Balance != 100_000 || g.Kind != KindDeposit || g.Name != "alice" {
		t.Fatalf("%+v", g)
	}
	if _, err := g.Decode(); err != nil {
		t.Fatalf("genesis entry does not decode: %v", err)
	}
	pk, _ := w.OwnerPK()
	sig := w.BalanceSignature("c", ledger.BalanceQuery{Nonce: 7}, pk)
	if !ledger.VerifyBalanceQuery(w.SignPub(), "c", w.ID(), ledger.BalanceQuery{Nonce: 7}, pk, sig) {
		t.Fatal("balance signature does not verify")
	}
	if ledger.VerifyBalanceQuery(w.SignPub(), "c", w.ID(), ledger.BalanceQuery{Nonce: 7, Expiry: 1 << 40}, pk, sig) {
		t.Fatal("a signature over one expiry verifies for another")
	}
}

// A wallet written before owner keys were derived from the seed (it stores
// them, 3.6 MiB) still loads, with its stored keys.
func TestLegacyWalletWithStoredOwnerKeysLoads(t *testing.T) {
	p := ledger.MustParams(ledger.ZKB128)
	w, err := New("old", KindDeposit, p)
	if err != nil {
		t.Fatal(err)
	}
	stored := ledger.NewOwnerKeys(p)
	ob, _ := stored.MarshalBinary()
	w.OwnerKeys = base64.StdEncoding.EncodeToString(ob)
	b, _ := json.Marshal(w)
	got, err := decode(b)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := got.Owner().SK.MarshalBinary()
	want, _ := stored.SK.MarshalBinary()
	if string(a) != string(want) {
		t.Fatal("a legacy wallet's stored owner key was not used")
	}
}

// Owner keys derived from a seed are a function of the seed: the same seed
// gives the same secret key, another seed another.
func TestOwnerKeysFromSeedAreDeterministic(t *testing.T) {
	p := ledger.MustParams(ledger.ZKB128)
	seed := bytes.Repeat([]byte{7}, 32)
	k1, err := ledger.OwnerKeysFromSeed(p, seed)
	if err != nil {
		t.Fatal(err)
	}
	k2, _ := ledger.OwnerKeysFromSeed(p, seed)
	k3, _ := ledger.OwnerKeysFromSeed(p, bytes.Repeat([]byte{8}, 32))
	b1, _ := k1.SK.MarshalBinary()
	b2, _ := k2.SK.MarshalBinary()
	b3, _ := k3.SK.MarshalBinary()
	if !bytes.Equal(b1, b2) || bytes.Equal(b1, b3) {
		t.Fatal("owner secret key is not a function of the seed")
	}
}
