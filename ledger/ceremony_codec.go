package ledger

import (
	"fmt"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"

	"github.com/tuneinsight/lattigo/v5/mhe"
)

// Wire encodings of ceremony messages and published keys.

// MarshalBinary encodes a Round1 message.
func (m *Round1) MarshalBinary() ([]byte, error) {
	var w wbuf
	w.u32(uint32(m.From))
	if err := w.marshal(&m.CKG); err != nil {
		return nil, err
	}
	if err := w.marshal(&m.RKG); err != nil {
		return nil, err
	}
	w.u32(uint32(len(m.GKG)))
	for i := range m.GKG {
		if err := w.marshal(&m.GKG[i]); err != nil {
			return nil, err
		}
	}
	return w.b, nil
}

// UnmarshalBinary decodes a Round1 message.
func (m *Round1) UnmarshalBinary(p []byte) error {
	r := rbuf{b: p}
	m.From = int(r.u32())
	r.unmarshal(&m.CKG, "public-key share")
	r.unmarshal(&m.RKG, "relinearization share")
	n := r.u32()
	if r.err == nil && n > 64 {
		return fmt.Errorf("%w: %d Galois shares", ErrMalformed, n)
	}
	m.GKG = make([]mhe.GaloisKeyGenShare, n)
	for i := range m.GKG {
		r.unmarshal(&m.GKG[i], "Galois share")
	}
	return r.done()
}

// MarshalBinary encodes a Round2 message.
func (m *Round2) MarshalBinary() ([]byte, error) {
	var w wbuf
	w.u32(uint32(m.From))
	if err := w.marshal(&m.RKG); err != nil {
		return nil, err
	}
	return w.b, nil
}

// UnmarshalBinary decodes a Round2 message.
func (m *Round2) UnmarshalBinary(p []byte) error {
	r := rbuf{b: p}
	m.From = int(r.u32())
	r.unmarshal(&m.RKG, "relinearization share")
	return r.done()
}

// MarshalBinary encodes a private Shamir deal.
func (d *ShamirDeal) MarshalBinary() ([]byte, error) {
	var w wbuf
	w.u32(uint32(d.From))
	w.u32(uint32(d.To))
	if err := w.marshal(&d.Share); err != nil {
		return nil, err
	}
	return w.b, nil
}

// UnmarshalBinary decodes a private Shamir deal.
func (d *ShamirDeal) UnmarshalBinary(p []byte) error {
	r := rbuf{b: p}
	d.From, d.To = int(r.u32()), int(r.u32())
	r.unmarshal(&d.Share, "Shamir share")
	return r.done()
}

// MarshalBinary encodes the published keys (genesis).
func (k *PublicKeys) MarshalBinary() ([]byte, error) {
	var w wbuf
	if err := w.marshal(k.PK); err != nil {
		return nil, err
	}
	if err := w.marshal(k.RLK); err != nil {
		return nil, err
	}
	w.u32(uint32(len(k.GKs)))
	for _, g := range k.GKs {
		if err := w.marshal(g); err != nil {
			return nil, err
		}
	}
	return w.b, nil
}

// DecodePublicKeys decodes published keys and checks they are complete for p.
func (p *Params) DecodePublicKeys(b []byte) (*PublicKeys, error) {
	r := rbuf{b: b}
	k := &PublicKeys{PK: rlwe.NewPublicKey(p.BGV), RLK: rlwe.NewRelinearizationKey(p.BGV, p.evkParams())}
	r.unmarshal(k.PK, "public key")
	r.unmarshal(k.RLK, "relinearization key")
	n := r.u32()
	if r.err == nil && int(n) != len(p.GaloisElements()) {
		return nil, fmt.Errorf("%w: %d Galois keys, want %d", ErrMalformed, n, len(p.GaloisElements()))
	}
	for _, g := range p.GaloisElements() {
		gk := rlwe.NewGaloisKey(p.BGV, p.evkParams())
		r.unmarshal(gk, "Galois key")
		if r.err == nil && gk.GaloisElement != g {
			return nil, fmt.Errorf("%w: Galois key for %d, want %d", ErrMalformed, gk.GaloisElement, g)
		}
		k.GKs = append(k.GKs, gk)
	}
	if err := r.done(); err != nil {
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
