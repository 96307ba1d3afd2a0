package wallet

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/zkbank/zkbank/ledger"
)

func TestMarshalDecodeRoundTripMatchesTheFileFormat(t *testing.T) {
	w, err := New("web", KindCard, ledger.MustParams(ledger.ZKB128))
	if err != nil {
		t.Fatal(err)
	}
	w.Limit = 50_000
	b, err := w.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "w.json")
	if err := w.Save(path); err != nil {
		t.Fatal(err)
	}
	onDisk, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b, onDisk) {
		t.Fatalf("Marshal differs from the file Save writes")
	}
	d, err := Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	if d.ID() != w.ID() || d.Kind != KindCard || d.Limit != 50_000 || !bytes.Equal(d.SignPub(), w.SignPub()) {
		t.Fatalf("decoded %+v, want %+v", d, w)
	}
	// The owner secret key is derived from the seed (the public key is
	// sampled afresh on every load).
	sk1, _ := w.Owner().SK.MarshalBinary()
	sk2, _ := d.Owner().SK.MarshalBinary()
	if len(sk1) == 0 || !bytes.Equal(sk1, sk2) {
		t.Fatal("owner secret key differs after a round trip")
	}
}

func TestAttack_DecodeRejectsAForeignAccountID(t *testing.T) {
	w, err := New("a", KindDeposit, ledger.MustParams(ledger.ZKB128))
	if err != nil {
		t.Fatal(err)
	}
	other, _ := New("b", KindDeposit, ledger.MustParams(ledger.ZKB128))
	w.Account = other.Account // claims an account its key does not name
	b, _ := w.Marshal()
	if _, err := Decode(b); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Decode = %v, want ErrCorrupt", err)
	}
	if _, err := Decode([]byte("not json")); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Decode(garbage) = %v, want ErrCorrupt", err)
	}
}
