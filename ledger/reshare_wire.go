package ledger

import (
	"crypto/sha256"
	"fmt"

	"github.com/tuneinsight/lattigo/v5/ring/ringqp"
	"github.com/zkbank/zkbank/internal/wire"
)

// Wire encodings of the resharing messages. As for the ceremony's, every
// polynomial is checked against the exact encoding shape of a full-level QP
// polynomial before Lattigo decodes it, and every count is capped.
//
//	ReshareDeal:   u32 from, u32 to, bytes share, bytes sig
//	ReshareAck:    u32 from, 32 B nonce
//	ReshareCommit: u32 from, 32 B transcript, bytes A, u32 count, count x bytes C, bytes sig
//	ReshareCheck:  u32 from, 32 B transcript, u32 count, count x bytes deal, bytes final

// MarshalBinary encodes a signed resharing deal.
func (d *ReshareDeal) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	if err := d.writeTo(&w); err != nil {
		return nil, err
	}
	return w.B, nil
}

func (d *ReshareDeal) writeTo(w *wire.Writer) error {
	w.U32(uint32(d.From))
	w.U32(uint32(d.To))
	if err := marshalInto(w, &d.Share); err != nil {
		return err
	}
	w.Bytes(d.Sig)
	return nil
}

// DecodeReshareDeal decodes a resharing deal received from the network. The
// signature is not checked here (ReshareRecipient.Accept does).
func (p *Params) DecodeReshareDeal(b []byte) (*ReshareDeal, error) {
	r := wire.NewReader(b, ErrMalformed)
	d, err := p.readReshareDeal(r)
	if err != nil {
		return nil, err
	}
	if err := r.Done(); err != nil {
		return nil, err
	}
	return d, nil
}

func (p *Params) readReshareDeal(r *wire.Reader) (*ReshareDeal, error) {
	d := &ReshareDeal{From: int(r.U32()), To: int(r.U32())}
	body := r.Bytes(maxField)
	sig := r.Bytes(maxDealSig)
	if r.Err != nil {
		return nil, r.Err
	}
	if d.From >= maxCeremonyParties || d.To >= maxCeremonyParties {
		return nil, fmt.Errorf("%w: resharing deal %d->%d", ErrMalformed, d.From, d.To)
	}
	if err := p.decodeQP(body, &d.Share.Poly); err != nil {
		return nil, fmt.Errorf("%w: resharing deal: %v", ErrMalformed, err)
	}
	d.Sig = append([]byte(nil), sig...)
	return d, nil
}

// MarshalBinary encodes an acknowledgement.
func (a *ReshareAck) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	w.U32(uint32(a.From))
	w.Fixed(a.Nonce[:])
	return w.B, nil
}

// DecodeReshareAck decodes an acknowledgement.
func DecodeReshareAck(b []byte) (*ReshareAck, error) {
	r := wire.NewReader(b, ErrMalformed)
	a := &ReshareAck{From: int(r.U32())}
	copy(a.Nonce[:], r.Fixed(32))
	if err := r.Done(); err != nil {
		return nil, err
	}
	if a.From >= maxCeremonyParties {
		return nil, fmt.Errorf("%w: acknowledgement from %d", ErrMalformed, a.From)
	}
	return a, nil
}

// MarshalBinary encodes a commitment message.
func (c *ReshareCommit) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	w.U32(uint32(c.From))
	w.Fixed(c.Transcript[:])
	if err := marshalInto(&w, &c.A); err != nil {
		return nil, err
	}
	w.U32(uint32(len(c.C)))
	for i := range c.C {
		if err := marshalInto(&w, &c.C[i]); err != nil {
			return nil, err
		}
	}
	w.Bytes(c.Sig)
	return w.B, nil
}

// DecodeReshareCommit decodes a commitment message received from the
// network (the signature is checked by the verdict).
func (p *Params) DecodeReshareCommit(b []byte) (*ReshareCommit, error) {
	r := wire.NewReader(b, ErrMalformed)
	c := &ReshareCommit{From: int(r.U32())}
	copy(c.Transcript[:], r.Fixed(32))
	body := r.Bytes(maxField)
	if r.Err != nil {
		return nil, r.Err
	}
	if err := p.decodeQP(body, &c.A); err != nil {
		return nil, fmt.Errorf("%w: share commitment: %v", ErrMalformed, err)
	}
	n := r.Count(maxCeremonyParties)
	c.C = make([]ringqp.Poly, n)
	for i := 0; i < n && r.Err == nil; i++ {
		body := r.Bytes(maxField)
		if r.Err != nil {
			break
		}
		if err := p.decodeQP(body, &c.C[i]); err != nil {
			return nil, fmt.Errorf("%w: deal commitment %d: %v", ErrMalformed, i, err)
		}
	}
	c.Sig = append([]byte(nil), r.Bytes(maxDealSig)...)
	if err := r.Done(); err != nil {
		return nil, err
	}
	if c.From >= maxCeremonyParties {
		return nil, fmt.Errorf("%w: commitment from %d", ErrMalformed, c.From)
	}
	return c, nil
}

// MarshalBinary encodes a check message.
func (c *ReshareCheck) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	w.U32(uint32(c.From))
	w.Fixed(c.Transcript[:])
	w.U32(uint32(len(c.Complaints)))
	for _, d := range c.Complaints {
		var inner wire.Writer
		if err := d.writeTo(&inner); err != nil {
			return nil, err
		}
		w.Bytes(inner.B)
	}
	if c.Final == nil {
		return nil, fmt.Errorf("%w: resharing check without a joint test share", ErrMalformed)
	}
	if err := marshalInto(&w, c.Final); err != nil {
		return nil, err
	}
	return w.B, nil
}

// DecodeReshareCheck decodes a check message received from the network.
func (p *Params) DecodeReshareCheck(b []byte) (*ReshareCheck, error) {
	r := wire.NewReader(b, ErrMalformed)
	c := &ReshareCheck{From: int(r.U32())}
	copy(c.Transcript[:], r.Fixed(32))
	n := r.Count(maxCeremonyParties)
	for i := 0; i < n && r.Err == nil; i++ {
		body := r.Bytes(maxField)
		if r.Err != nil {
			break
		}
		ir := wire.NewReader(body, ErrMalformed)
		d, err := p.readReshareDeal(ir)
		if err == nil {
			err = ir.Done()
		}
		if err != nil {
			return nil, fmt.Errorf("%w: complaint %d: %v", ErrMalformed, i, err)
		}
		c.Complaints = append(c.Complaints, d)
	}
	final := r.Bytes(maxField)
	if err := r.Done(); err != nil {
		return nil, err
	}
	if c.From >= maxCeremonyParties {
		return nil, fmt.Errorf("%w: check from %d", ErrMalformed, c.From)
	}
	var err error
	if c.Final, err = p.DecodeDecShare(final); err != nil {
		return nil, fmt.Errorf("%w: joint test share: %w", ErrMalformed, err)
	}
	return c, nil
}

// ReshareDigest hashes the commitment and check messages a participant
// judged (by sender, as encoded; missing ones as empty). Participants compare
// it: equal digests mean equal verdicts.
func ReshareDigest(v *ReshareVerifier, commits []*ReshareCommit, checks []*ReshareCheck) [32]byte {
	h := sha256.New()
	h.Write([]byte("zkbank/reshare/digest/v1\x00"))
	h.Write(v.transcript[:])
	field := func(b []byte) { writeField(h, b) }
	byOld := make([][]byte, v.r.oldCom.N)
	for _, c := range commits {
		if c != nil && c.From >= 0 && c.From < len(byOld) && byOld[c.From] == nil {
			byOld[c.From], _ = c.MarshalBinary()
		}
	}
	for _, b := range byOld {
		field(b)
	}
	byNew := make([][]byte, v.r.newCom.N)
	for _, c := range checks {
		if c != nil && c.From >= 0 && c.From < len(byNew) && byNew[c.From] == nil {
			byNew[c.From], _ = c.MarshalBinary()
		}
	}
	for _, b := range byNew {
		field(b)
	}
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}
