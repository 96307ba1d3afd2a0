package badgerstore

import (
	"fmt"

	"github.com/dgraph-io/badger/v4"
	"github.com/zkbank/zkbank/store"
)

// Install implements store.Installer: one transaction, like Commit, with
// large blocks and certificates written to blob files first.
func (s *Store) Install(in store.Install) error {
	unlock, err := s.enterCommit()
	if err != nil {
		return err
	}
	defer unlock()

	big := bigValues{}
	type kv struct{ k, v []byte }
	var blocks []kv
	for _, b := range in.Blocks {
		blocks = append(blocks, kv{blockKey(b.Height), big.envelope(blockKey(b.Height), b.Block)},
			kv{certKey(b.Height), big.envelope(certKey(b.Height), b.Cert)})
	}
	err = s.update(func(txn *badger.Txn) error {
		last, err := lastApplied(txn)
		if err != nil {
			return err
		}
		if err := store.CheckInstall(last, in); err != nil {
			return err
		}
		if err := s.putBlobs(big, false); err != nil {
			return err
		}
		for _, b := range blocks {
			if err := txn.Set(b.k, b.v); err != nil {
				return err
			}
		}
		for _, st := range in.States {
			if err := set(txn, stateKey(st.Height, st.Shard), st.Data); err != nil {
				return err
			}
		}
		if err := setRecords(txn, nsMeta, in.Meta); err != nil {
			return err
		}
		if err := deleteRecords(txn, nsMeta, in.DeleteMeta); err != nil {
			return err
		}
		return set(txn, keyLastApplied, encodeHeight(in.Height))
	})
	if err != nil {
		return fmt.Errorf("store: install height %d: %w", in.Height, err)
	}
	return nil
}
