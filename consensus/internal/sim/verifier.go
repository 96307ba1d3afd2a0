package sim

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
)

// cachingVerifier remembers the outcome of every (key, message, signature)
// triple it verified. Only an identical triple hits the cache, so every
// distinct signature, byzantine ones included, is checked by real ed25519 once.
type cachingVerifier struct {
	seen        map[[32]byte]bool
	hits, calls int
}

func newCachingVerifier() *cachingVerifier { return &cachingVerifier{seen: make(map[[32]byte]bool)} }

func (c *cachingVerifier) Verify(pub ed25519.PublicKey, msg, sig []byte) bool {
	h := sha256.New()
	h.Write(pub) // 32 bytes, checked by NewValidatorSet
	h.Write([]byte{byte(len(sig))})
	h.Write(sig)
	h.Write(msg)
	var k [32]byte
	h.Sum(k[:0])
	c.calls++
	if len(sig) > 255 {
		return false
	}
	if ok, hit := c.seen[k]; hit {
		c.hits++
		return ok
	}
	ok := len(sig) == ed25519.SignatureSize && ed25519.Verify(pub, msg, sig)
	c.seen[k] = ok
	return ok
}

// hashSigner is not a signature scheme: anyone can compute it. The scenarios
// without byzantine validators use it because nobody there forges, and
// ed25519 would otherwise take most of their time. Every scenario with
// byzantine validators uses real ed25519.
type hashSigner struct{ pub ed25519.PublicKey }

func (h hashSigner) PubKey() ed25519.PublicKey { return h.pub }
func (h hashSigner) Sign(msg []byte) []byte    { return hashSig(h.pub, msg) }

func hashSig(pub ed25519.PublicKey, msg []byte) []byte {
	a := sha256.New()
	a.Write(pub)
	a.Write(msg)
	sig := a.Sum(make([]byte, 0, ed25519.SignatureSize))
	return append(sig, sig...)
}

type hashVerifier struct{}

func (hashVerifier) Verify(pub ed25519.PublicKey, msg, sig []byte) bool {
	return bytes.Equal(sig, hashSig(pub, msg))
}
