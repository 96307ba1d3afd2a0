package ledger

import (
	"fmt"
	"github.com/zkbank/zkbank/internal/wire"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"

	"github.com/tuneinsight/lattigo/v5/mhe"
)

// Wire encodings of ceremony messages and published keys.

// MarshalBinary encodes a Round1 message.
func (m *Round1) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	w.U32(uint32(m.From))
	if err := marshalInto(&w, &m.CKG); err != nil {
		return nil, err
	}
	if err := marshalInto(&w, &m.RKG); err != nil {
		return nil, err
	}
	w.U32(uint32(len(m.GKG)))
	for i := range m.GKG {
		if err := marshalInto(&w, &m.GKG[i]); err != nil {
			return nil, err
		}
	}
	return w.B, nil
}

// UnmarshalBinary decodes a Round1 message.
func (m *Round1) UnmarshalBinary(p []byte) error {
	r := wire.NewReader(p, ErrMalformed)
	m.From = int(r.U32())
	unmarshalFrom(r, &m.CKG, "public-key share")
	unmarshalFrom(r, &m.RKG, "relinearization share")
	n := r.U32()
	if r.Err == nil && n > 64 {
		return fmt.Errorf("%w: %d Galois shares", ErrMalformed, n)
	}
	m.GKG = make([]mhe.GaloisKeyGenShare, n)
	for i := range m.GKG {
		unmarshalFrom(r, &m.GKG[i], "Galois share")
	}
	return r.Done()
}

// MarshalBinary encodes a Round2 message.
func (m *Round2) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	w.U32(uint32(m.From))
	if err := marshalInto(&w, &m.RKG); err != nil {
		return nil, err
	}
	return w.B, nil
}

// UnmarshalBinary decodes a Round2 message.
func (m *Round2) UnmarshalBinary(p []byte) error {
	r := wire.NewReader(p, ErrMalformed)
	m.From = int(r.U32())
	unmarshalFrom(r, &m.RKG, "relinearization share")
	return r.Done()
}

// MarshalBinary encodes a private Shamir deal.
func (d *ShamirDeal) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	w.U32(uint32(d.From))
	w.U32(uint32(d.To))
	if err := marshalInto(&w, &d.Share); err != nil {
		return nil, err
	}
	return w.B, nil
}

// UnmarshalBinary decodes a private Shamir deal.
func (d *ShamirDeal) UnmarshalBinary(p []byte) error {
	r := wire.NewReader(p, ErrMalformed)
	d.From, d.To = int(r.U32()), int(r.U32())
	unmarshalFrom(r, &d.Share, "Shamir share")
	return r.Done()
}

// MarshalBinary encodes the published keys (genesis).
func (k *PublicKeys) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	if err := marshalInto(&w, k.PK); err != nil {
		return nil, err
	}
	if err := marshalInto(&w, k.RLK); err != nil {
		return nil, err
	}
	w.U32(uint32(len(k.GKs)))
	for _, g := range k.GKs {
		if err := marshalInto(&w, g); err != nil {
			return nil, err
		}
	}
	return w.B, nil
}

// DecodePublicKeys decodes published keys and checks they are complete for p.
func (p *Params) DecodePublicKeys(b []byte) (*PublicKeys, error) {
	r := wire.NewReader(b, ErrMalformed)
	k := &PublicKeys{PK: rlwe.NewPublicKey(p.BGV), RLK: rlwe.NewRelinearizationKey(p.BGV, p.evkParams())}
	unmarshalFrom(r, k.PK, "public key")
	unmarshalFrom(r, k.RLK, "relinearization key")
	n := r.U32()
	if r.Err == nil && int(n) != len(p.GaloisElements()) {
		return nil, fmt.Errorf("%w: %d Galois keys, want %d", ErrMalformed, n, len(p.GaloisElements()))
	}
	for _, g := range p.GaloisElements() {
		gk := rlwe.NewGaloisKey(p.BGV, p.evkParams())
		unmarshalFrom(r, gk, "Galois key")
		if r.Err == nil && gk.GaloisElement != g {
			return nil, fmt.Errorf("%w: Galois key for %d, want %d", ErrMalformed, gk.GaloisElement, g)
		}
		k.GKs = append(k.GKs, gk)
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	return k, nil
}

// DecodeKeyShare decodes a validator's stored key share.
func (p *Params) DecodeKeyShare(b []byte) (*KeyShare, error) {
	k := &KeyShare{}
	if err := k.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return k, nil
}
