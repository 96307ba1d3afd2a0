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
	payload, blob, err := unsealAny(key, raw)
	if err == nil && blob {
		return nil, fmt.Errorf("%w: a blob reference where a value belongs", store.ErrCorrupt)
	}
	return payload, err
}

// envelopeBlob marks an envelope whose payload is the SHA-256 of a blob
// file holding the value (blocks and certificates over bigValue: blobs.go).
const envelopeBlob = 2

// sealBlob is the envelope of a value stored as blob h.
func sealBlob(key []byte, h [32]byte) []byte {
	out := make([]byte, envelopeHeader+len(h))
	out[0] = envelopeBlob
	binary.BigEndian.PutUint32(out[1:], envelopeCRC(key, envelopeBlob, h[:]))
	copy(out[envelopeHeader:], h[:])
	return out
}

// unsealAny is unseal that also accepts a blob reference (blob is then true
// and the payload is the blob's 32-byte hash).
func unsealAny(key, raw []byte) (payload []byte, blob bool, err error) {
	if len(raw) < envelopeHeader {
		return nil, false, fmt.Errorf("%w: %d-byte value shorter than its header", store.ErrCorrupt, len(raw))
	}
	if raw[0] != envelopeVersion && raw[0] != envelopeBlob {
		return nil, false, fmt.Errorf("%w: unknown envelope version %d", store.ErrCorrupt, raw[0])
	}
	payload = raw[envelopeHeader:]
	want := binary.BigEndian.Uint32(raw[1:])
	if got := envelopeCRC(key, raw[0], payload); got != want {
		return nil, false, fmt.Errorf("%w: checksum %08x, stored %08x", store.ErrCorrupt, got, want)
	}
	if raw[0] == envelopeBlob && len(payload) != 32 {
		return nil, false, fmt.Errorf("%w: blob reference of %d bytes", store.ErrCorrupt, len(payload))
	}
	return payload, raw[0] == envelopeBlob, nil
}
