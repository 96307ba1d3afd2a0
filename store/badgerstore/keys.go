package badgerstore

import (
	"encoding/binary"
	"fmt"

	"github.com/zkbank/zkbank/store"
)

// Key layout: a one-byte namespace, then big-endian integers so that Badger's
// byte order is height order. See docs/STORAGE.md.
const (
	nsSystem byte = '!' // '!' name -> store-internal values (format, last applied)
	nsWAL    byte = 'w' // 'w' height(8) seq(8) -> WAL record
	nsBlock  byte = 'b' // 'b' height(8) -> block
	nsCert   byte = 'c' // 'c' height(8) -> commit certificate
	nsState  byte = 's' // 's' height(8) shard(4) -> shard state
	nsMeta   byte = 'm' // 'm' key -> node metadata
	nsStatus byte = 'x' // 'x' transfer id -> status record
	// 'a' held the account index, which nothing used and was removed; the
	// byte stays reserved so an old directory never reads as something else.
)

var (
	keyFormat      = []byte{nsSystem, 'f', 'o', 'r', 'm', 'a', 't'}
	keyLastApplied = []byte{nsSystem, 'l', 'a', 's', 't', '-', 'a', 'p', 'p', 'l', 'i', 'e', 'd'}
)

func heightKey(ns byte, h uint64) []byte {
	k := make([]byte, 9)
	k[0] = ns
	binary.BigEndian.PutUint64(k[1:], h)
	return k
}

func blockKey(h uint64) []byte { return heightKey(nsBlock, h) }
func certKey(h uint64) []byte  { return heightKey(nsCert, h) }

func stateKey(h uint64, shard uint32) []byte {
	k := make([]byte, 13)
	k[0] = nsState
	binary.BigEndian.PutUint64(k[1:], h)
	binary.BigEndian.PutUint32(k[9:], shard)
	return k
}

func walKey(h, seq uint64) []byte {
	k := make([]byte, 17)
	k[0] = nsWAL
	binary.BigEndian.PutUint64(k[1:], h)
	binary.BigEndian.PutUint64(k[9:], seq)
	return k
}

// parseWALKey returns the height and sequence number of a WAL key.
func parseWALKey(k []byte) (h, seq uint64, ok bool) {
	if len(k) != 17 || k[0] != nsWAL {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(k[1:]), binary.BigEndian.Uint64(k[9:]), true
}

// parseHeightKey returns the height of a block, cert or state key.
func parseHeightKey(k []byte) (uint64, bool) {
	if len(k) < 9 {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[1:9]), true
}

// idKey is the key of a transfer id or metadata key in namespace ns; ids are
// checked by store.CheckID, as Memory checks them.
func idKey(ns byte, id []byte) ([]byte, error) {
	if err := store.CheckID(id); err != nil {
		return nil, err
	}
	k := make([]byte, 1+len(id))
	k[0] = ns
	copy(k[1:], id)
	return k, nil
}

func metaKey(key string) ([]byte, error) { return idKey(nsMeta, []byte(key)) }

func encodeHeight(h uint64) []byte { return binary.BigEndian.AppendUint64(nil, h) }

func decodeHeight(b []byte) (uint64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%w: height of %d bytes", store.ErrCorrupt, len(b))
	}
	return binary.BigEndian.Uint64(b), nil
}
