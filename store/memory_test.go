package store_test

import (
	"errors"
	"testing"

	"github.com/zkbank/zkbank/store"
	"github.com/zkbank/zkbank/store/storetest"
)

// The contract tests of store/storetest, against Memory; store/badgerstore
// runs the same ones against Badger.
func TestMemoryContract(t *testing.T) {
	storetest.Run(t, func(*testing.T) store.Backend { return store.NewMemory() })
}

func TestCheckID(t *testing.T) {
	for _, n := range []int{1, store.MaxIDLen} {
		if err := store.CheckID(make([]byte, n)); err != nil {
			t.Errorf("CheckID(%d bytes) = %v", n, err)
		}
	}
	for _, n := range []int{0, store.MaxIDLen + 1} {
		if err := store.CheckID(make([]byte, n)); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("CheckID(%d bytes) = %v, want ErrInvalid", n, err)
		}
	}
}
