package ledger

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
)

// AccountID names an account: the SHA-256 of its owner's ed25519 key, so
// owning the account means holding that key.
type AccountID [32]byte

// AccountIDOf derives an account id from its signing key.
func AccountIDOf(pub ed25519.PublicKey) AccountID { return sha256.Sum256(pub) }

func (a AccountID) String() string { return hex.EncodeToString(a[:]) }

// Short is the first 8 bytes in hex, for logs and CLIs.
func (a AccountID) Short() string { return hex.EncodeToString(a[:8]) }

// ParseAccountID parses a 64-hex-digit account id.
func ParseAccountID(s string) (AccountID, error) {
	var a AccountID
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != len(a) {
		return a, fmt.Errorf("%w: account id must be 64 hex digits", ErrMalformed)
	}
	copy(a[:], b)
	return a, nil
}

// Envelope is the signed, plaintext part of a transfer: who pays whom, the
// replay nonce and the height of the balance the proof was built against.
// The amount is not here: it exists only inside the ciphertext.
type Envelope struct {
	Chain    string
	From, To AccountID
	Nonce    uint64
	Height   uint64   // the sender's balance this transfer was built against
	CTHash   [32]byte // SHA-256 of the uploaded ciphertext's bytes
	Sig      []byte   // ed25519 by the sender over SigningBytes
}

const envelopeVersion = 1

// SigningBytes is the canonical encoding the signature covers.
func (e *Envelope) SigningBytes() []byte {
	var w wbuf
	w.fixed([]byte("zkbank/envelope/v1\x00"))
	w.bytes([]byte(e.Chain))
	w.fixed(e.From[:])
	w.fixed(e.To[:])
	w.u64(e.Nonce)
	w.u64(e.Height)
	w.fixed(e.CTHash[:])
	return w.b
}

// ID identifies a transfer (hash of its signed bytes).
func (e *Envelope) ID() [32]byte { return sha256.Sum256(e.SigningBytes()) }

// Verify checks the signature against the sender's key.
func (e *Envelope) Verify(pub ed25519.PublicKey) bool {
	return len(pub) == ed25519.PublicKeySize && AccountIDOf(pub) == e.From && ed25519.Verify(pub, e.SigningBytes(), e.Sig)
}

// MarshalBinary encodes the envelope.
func (e *Envelope) MarshalBinary() ([]byte, error) {
	var w wbuf
	w.u8(envelopeVersion)
	w.bytes([]byte(e.Chain))
	w.fixed(e.From[:])
	w.fixed(e.To[:])
	w.u64(e.Nonce)
	w.u64(e.Height)
	w.fixed(e.CTHash[:])
	w.bytes(e.Sig)
	return w.b, nil
}

// UnmarshalBinary decodes an envelope.
func (e *Envelope) UnmarshalBinary(p []byte) error {
	r := rbuf{b: p}
	if v := r.u8(); r.err == nil && v != envelopeVersion {
		return fmt.Errorf("%w: envelope version %d", ErrMalformed, v)
	}
	e.Chain = string(r.bytes())
	copy(e.From[:], r.fixed(32))
	copy(e.To[:], r.fixed(32))
	e.Nonce = r.u64()
	e.Height = r.u64()
	copy(e.CTHash[:], r.fixed(32))
	e.Sig = append([]byte(nil), r.bytes()...)
	if err := r.done(); err != nil {
		return err
	}
	if len(e.Chain) > 64 || len(e.Sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: envelope fields", ErrMalformed)
	}
	return nil
}

// Submission is what a wallet uploads: one ciphertext and the envelopes of the
// transfers packed in it (one for a single transfer; up to a shard's lanes for
// a bundle from one wallet's accounts in one shard).
type Submission struct {
	Envelopes  []Envelope
	Ciphertext []byte
}

// MarshalBinary encodes the submission.
func (s *Submission) MarshalBinary() ([]byte, error) {
	var w wbuf
	w.u8(envelopeVersion)
	w.u32(uint32(len(s.Envelopes)))
	for i := range s.Envelopes {
		b, _ := s.Envelopes[i].MarshalBinary()
		w.bytes(b)
	}
	w.bytes(s.Ciphertext)
	return w.b, nil
}

// MaxEnvelopes bounds a bundle (one shard's lanes).
const MaxEnvelopes = 256

// UnmarshalBinary decodes a submission (not the ciphertext inside).
func (s *Submission) UnmarshalBinary(p []byte) error {
	r := rbuf{b: p}
	if v := r.u8(); r.err == nil && v != envelopeVersion {
		return fmt.Errorf("%w: submission version %d", ErrMalformed, v)
	}
	n := r.u32()
	if r.err == nil && (n == 0 || n > MaxEnvelopes) {
		return fmt.Errorf("%w: %d envelopes", ErrMalformed, n)
	}
	s.Envelopes = make([]Envelope, 0, n)
	for i := uint32(0); i < n && r.err == nil; i++ {
		var e Envelope
		b := r.bytes()
		if r.err == nil {
			if err := e.UnmarshalBinary(b); err != nil {
				return err
			}
		}
		s.Envelopes = append(s.Envelopes, e)
	}
	s.Ciphertext = r.bytes()
	return r.done()
}

// DecodeUpload parses and validates an uploaded ciphertext: exact level and
// degree for these parameters, every coefficient reduced below its prime.
// Anything else is RejectMalformed, before it reaches the circuit.
func (p *Params) DecodeUpload(b []byte) (*rlwe.Ciphertext, error) {
	if err := p.shapes().upload.check(b); err != nil {
		return nil, &RejectError{Reason: RejectMalformed}
	}
	ct := rlwe.NewCiphertext(p.BGV, 1, LevelUpload)
	if err := safeUnmarshal(ct, b); err != nil {
		return nil, &RejectError{Reason: RejectMalformed}
	}
	if ct.Degree() != 1 || ct.Level() != LevelUpload || len(ct.Value) != 2 || ct.Value[0].N() != p.BGV.N() || ct.Value[1].N() != p.BGV.N() {
		return nil, &RejectError{Reason: RejectMalformed}
	}
	q := p.BGV.Q()
	for _, poly := range ct.Value {
		if len(poly.Coeffs) != LevelUpload+1 {
			return nil, &RejectError{Reason: RejectMalformed}
		}
		for i, row := range poly.Coeffs {
			qi := q[i]
			for _, c := range row {
				if c >= qi {
					return nil, &RejectError{Reason: RejectMalformed}
				}
			}
		}
	}
	ct.IsNTT = true
	ct.Scale = p.BGV.NewScale(1)
	return ct, nil
}
