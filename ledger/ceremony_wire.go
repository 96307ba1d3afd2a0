package ledger

import (
	"fmt"
	"sync"

	"github.com/tuneinsight/lattigo/v5/ring/ringqp"
	"github.com/zkbank/zkbank/internal/wire"
)

// Wire encodings of the verified ceremony's messages. Every polynomial is
// checked against the exact encoding shape of a full-level QP polynomial
// before Lattigo decodes it, and every count is capped.

// maxCeremonyParties caps the per-party lists on the wire (committees are at
// most 16; the verifier requires exactly N).
const maxCeremonyParties = 64

var qpShapes sync.Map // *Params -> *shape

// qpShape is the exact encoding shape of a full-level QP polynomial.
func (p *Params) qpShape() *shape {
	if s, ok := qpShapes.Load(p); ok {
		return s.(*shape)
	}
	enc := func(v uint64) []byte {
		x := p.BGV.RingQP().NewPoly()
		fillPolys(v, x.Q)
		if p.BGV.MaxLevelP() >= 0 {
			fillPolys(v, x.P)
		}
		b, err := x.MarshalBinary()
		if err != nil {
			panic(err)
		}
		return b
	}
	s := learnShape(enc(fillA), enc(fillB))
	qpShapes.Store(p, s)
	return s
}

func (p *Params) decodeQP(b []byte, out *ringqp.Poly) error {
	if err := p.qpShape().check(b); err != nil {
		return err
	}
	return safeUnmarshal(out, b)
}

// MarshalBinary encodes a signed deal.
func (sd *SignedDeal) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	if err := sd.writeTo(&w); err != nil {
		return nil, err
	}
	return w.B, nil
}

func (sd *SignedDeal) writeTo(w *wire.Writer) error {
	if sd.Deal == nil {
		return fmt.Errorf("%w: signed deal without a deal", ErrMalformed)
	}
	w.U32(uint32(sd.Deal.From))
	w.U32(uint32(sd.Deal.To))
	if err := marshalInto(w, &sd.Deal.Share); err != nil {
		return err
	}
	w.Bytes(sd.Sig)
	return nil
}

// DecodeSignedDeal decodes a signed deal received from the network. The
// signature is not checked here (Party.AcceptDeal does).
func (p *Params) DecodeSignedDeal(b []byte) (*SignedDeal, error) {
	r := wire.NewReader(b, ErrMalformed)
	sd, err := p.readSignedDeal(r)
	if err != nil {
		return nil, err
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	return sd, nil
}

func (p *Params) readSignedDeal(r *wire.Reader) (*SignedDeal, error) {
	d := &ShamirDeal{From: int(r.U32()), To: int(r.U32())}
	body := r.Bytes(maxField)
	sig := r.Bytes(maxDealSig)
	if r.Err != nil {
		return nil, r.Err
	}
	if d.From >= maxCeremonyParties || d.To >= maxCeremonyParties {
		return nil, fmt.Errorf("%w: deal %d->%d", ErrMalformed, d.From, d.To)
	}
	if err := p.decodeQP(body, &d.Share.Poly); err != nil {
		return nil, fmt.Errorf("%w: deal: %v", ErrMalformed, err)
	}
	return &SignedDeal{Deal: d, Sig: append([]byte(nil), sig...)}, nil
}

// MarshalBinary encodes a check message.
func (c *CeremonyCheck) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	w.U32(uint32(c.From))
	w.Fixed(c.Transcript[:])
	w.U32(uint32(len(c.R)))
	for i := range c.R {
		if err := marshalInto(&w, &c.R[i]); err != nil {
			return nil, err
		}
	}
	if c.Final == nil {
		return nil, fmt.Errorf("%w: check without a joint test share", ErrMalformed)
	}
	if err := marshalInto(&w, c.Final); err != nil {
		return nil, err
	}
	return w.B, nil
}

// DecodeCeremonyCheck decodes a check message received from the network.
func (p *Params) DecodeCeremonyCheck(b []byte) (*CeremonyCheck, error) {
	r := wire.NewReader(b, ErrMalformed)
	c := &CeremonyCheck{From: int(r.U32())}
	copy(c.Transcript[:], r.Fixed(32))
	n := r.Count(maxCeremonyParties)
	c.R = make([]ringqp.Poly, n)
	for i := 0; i < n && r.Err == nil; i++ {
		body := r.Bytes(maxField)
		if r.Err != nil {
			break
		}
		if err := p.decodeQP(body, &c.R[i]); err != nil {
			return nil, fmt.Errorf("%w: check value %d: %v", ErrMalformed, i, err)
		}
	}
	final := r.Bytes(maxField)
	if err := r.Done(); err != nil {
		return nil, err
	}
	var err error
	if c.Final, err = p.DecodeDecShare(final); err != nil {
		return nil, fmt.Errorf("%w: joint test share: %w", ErrMalformed, err)
	}
	return c, nil
}

// MarshalBinary encodes a verdict/reveal message.
func (v *CeremonyReveal) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	w.U32(uint32(v.From))
	w.Fixed(v.Digest[:])
	if v.Accept {
		w.U8(1)
	} else {
		w.U8(0)
	}
	w.U32(uint32(len(v.Failed)))
	for _, d := range v.Failed {
		w.U32(uint32(d))
	}
	w.U32(uint32(len(v.Deals)))
	for _, sd := range v.Deals {
		var inner wire.Writer
		if err := sd.writeTo(&inner); err != nil {
			return nil, err
		}
		w.Bytes(inner.B)
	}
	return w.B, nil
}

// DecodeCeremonyReveal decodes a verdict/reveal message from the network.
func (p *Params) DecodeCeremonyReveal(b []byte) (*CeremonyReveal, error) {
	r := wire.NewReader(b, ErrMalformed)
	v := &CeremonyReveal{From: int(r.U32())}
	copy(v.Digest[:], r.Fixed(32))
	switch r.U8() {
	case 0:
	case 1:
		v.Accept = true
	default:
		r.Fail("accept flag")
	}
	nf := r.Count(maxCeremonyParties)
	for i := 0; i < nf && r.Err == nil; i++ {
		v.Failed = append(v.Failed, int(r.U32()))
	}
	nd := r.Count(maxCeremonyParties)
	for i := 0; i < nd && r.Err == nil; i++ {
		body := r.Bytes(maxField)
		if r.Err != nil {
			break
		}
		ir := wire.NewReader(body, ErrMalformed)
		sd, err := p.readSignedDeal(ir)
		if err == nil {
			err = ir.Done()
		}
		if err != nil {
			return nil, fmt.Errorf("%w: revealed deal %d: %v", ErrMalformed, i, err)
		}
		v.Deals = append(v.Deals, sd)
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	return v, nil
}
