package badgerstore

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/zkbank/zkbank/store"
)

// Every stored value is an envelope: version(1) crc32c(4) payload. The CRC
// covers the key, the version byte and the payload, so garbage, a torn value
// and a valid value filed under the wrong key are all caught.
const (
	envelopeVersion = 1
	envelopeHeader  = 5
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func envelopeCRC(key []byte, version byte, payload []byte) uint32 {
	c := crc32.Update(0, castagnoli, key)
	c = crc32.Update(c, castagnoli, []byte{version})
	return crc32.Update(c, castagnoli, payload)
}

// seal wraps payload for storage under key.
func seal(key, payload []byte) []byte {
	out := make([]byte, envelopeHeader+len(payload))
	out[0] = envelopeVersion
	binary.BigEndian.PutUint32(out[1:], envelopeCRC(key, envelopeVersion, payload))
	copy(out[envelopeHeader:], payload)
	return out
}

// unseal checks an envelope read under key and returns its payload, which
// aliases raw.
func unseal(key, raw []byte) ([]byte, error) {
	if len(raw) < envelopeHeader {
		return nil, fmt.Errorf("%w: %d-byte value shorter than its header", store.ErrCorrupt, len(raw))
	}
	if raw[0] != envelopeVersion {
		return nil, fmt.Errorf("%w: unknown envelope version %d", store.ErrCorrupt, raw[0])
	}
	payload := raw[envelopeHeader:]
	want := binary.BigEndian.Uint32(raw[1:])
	if got := envelopeCRC(key, raw[0], payload); got != want {
		return nil, fmt.Errorf("%w: checksum %08x, stored %08x", store.ErrCorrupt, got, want)
	}
	return payload, nil
}
