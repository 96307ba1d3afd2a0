package ledger

import (
	"fmt"

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
