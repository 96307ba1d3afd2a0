package consensus

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"
)

func sampleMessages(t testing.TB) []Message {
	keys, _ := testKeys(4)
	s := NewEd25519Signer(keys[1])
	p := NewProposal(7, 3, 1, 1, []byte("a value"))
	SignProposal(testChain, s, p)
	pv := &Vote{Type: Prevote, Height: 7, Round: 3, BlockID: p.BlockID(), Validator: 1}
	SignVote(testChain, s, pv)
	nilv := &Vote{Type: Precommit, Height: 7, Round: 0, Validator: 2}
	SignVote(testChain, s, nilv)
	pc := &Vote{Type: Precommit, Height: 7, Round: 3, BlockID: p.BlockID(), Validator: 1, Extension: []byte("share and digest")}
	SignVote(testChain, s, pc)
	c := &Commit{Value: []byte("a value"), Cert: &CommitCertificate{Height: 7, Round: 3, BlockID: p.BlockID(),
		Sigs: []CommitSig{{Validator: 0, Signature: pc.Signature}, {Validator: 1, Extension: pc.Extension, Signature: pc.Signature}}}}
	empty := NewProposal(1, 0, NoRound, 0, nil)
	SignProposal(testChain, s, empty)
	att := &Vote{Type: Attestation, Height: 7, Round: 3, BlockID: p.BlockID(), Validator: 2, Extension: []byte("late shares")}
	SignVote(testChain, s, att)
	return []Message{p, pv, nilv, pc, c, empty, att}
}

func TestCodec_RoundTripIsCanonical(t *testing.T) {
	for _, m := range sampleMessages(t) {
		b := EncodeMessage(m)
		d, err := DecodeMessage(b)
		if err != nil {
			t.Fatalf("%T: %v", m, err)
		}
		if again := EncodeMessage(d); !bytes.Equal(again, b) {
			t.Fatalf("%T: re-encoding differs", m)
		}
		if p, ok := m.(*Proposal); ok && d.(*Proposal).BlockID() != p.BlockID() {
			t.Fatal("BlockID not recomputed on decode")
		}
	}
}

func TestCodec_DecodeAliasesInsteadOfCopying(t *testing.T) {
	pc := sampleMessages(t)[3].(*Vote)
	b := EncodeMessage(pc)
	d, _ := DecodeMessage(b)
	ext := d.(*Vote).Extension
	if &ext[0] != &b[len(b)-SignatureSize-len(ext)] {
		t.Fatal("extension copied on decode")
	}
}

func TestCodec_RejectsGarbage(t *testing.T) {
	msgs := sampleMessages(t)
	p := EncodeMessage(msgs[0])
	pc := EncodeMessage(msgs[3])
	c := EncodeMessage(msgs[4])
	pv := EncodeMessage(msgs[1])
	att := EncodeMessage(msgs[6])
	mut := func(b []byte, f func([]byte) []byte) []byte { return f(append([]byte(nil), b...)) }
	cases := map[string][]byte{
		"empty":          nil,
		"version":        mut(p, func(b []byte) []byte { b[0] = 9; return b }),
		"kind":           mut(p, func(b []byte) []byte { b[1] = 9; return b }),
		"truncated":      p[:len(p)-1],
		"trailing":       append(append([]byte(nil), p...), 0),
		"height 0":       mut(p, func(b []byte) []byte { clear(b[2:10]); return b }),
		"validRound>=r":  mut(p, func(b []byte) []byte { binary.BigEndian.PutUint32(b[14:], 3); return b }),
		"validRound<-1":  mut(p, func(b []byte) []byte { binary.BigEndian.PutUint32(b[14:], 0xfffffffe); return b }),
		"round over cap": mut(p, func(b []byte) []byte { binary.BigEndian.PutUint32(b[10:], uint32(MaxRound)+1); return b }),
		"length lies":    mut(p, func(b []byte) []byte { binary.BigEndian.PutUint32(b[22:], 1<<24); return b }),
		"length over cap": mut(p, func(b []byte) []byte {
			binary.BigEndian.PutUint32(b[22:], MaxValueSize+1)
			return b
		}),
		"vote type":           mut(pc, func(b []byte) []byte { b[2] = 4; return b }),
		"bare attestation":    mut(pv, func(b []byte) []byte { b[2] = byte(Attestation); return b }),
		"attestation for nil": mut(att, func(b []byte) []byte { clear(b[2+1+8+4 : 2+1+8+4+32]); return b }),
		"ext on prevote":      mut(att, func(b []byte) []byte { b[2] = byte(Prevote); return b }),
		"validator cap":       mut(pc, func(b []byte) []byte { binary.BigEndian.PutUint32(b[2+1+8+4+32:], MaxValidators); return b }),
		"ext on nil":          mut(pc, func(b []byte) []byte { clear(b[2+1+8+4 : 2+1+8+4+32]); return b }),
		"cert order":          mut(c, func(b []byte) []byte { binary.BigEndian.PutUint32(b[2+8+4+32+4:], 1); return b }),
		"cert count lies":     mut(c, func(b []byte) []byte { binary.BigEndian.PutUint32(b[2+8+4+32:], 1000); return b }),
		"cert for nil":        mut(c, func(b []byte) []byte { clear(b[2+8+4 : 2+8+4+32]); return b }),
	}
	for name, b := range cases {
		if _, err := DecodeMessage(b); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err %v", name, err)
		}
	}
}

func TestCodec_WALRecordRoundTrip(t *testing.T) {
	msgs := sampleMessages(t)
	for _, r := range []WALRecord{
		{Kind: RecordProposal, Proposal: msgs[0].(*Proposal)},
		{Kind: RecordValid, Proposal: msgs[0].(*Proposal)},
		{Kind: RecordVote, Vote: msgs[3].(*Vote)},
	} {
		b := EncodeWALRecord(r)
		d, err := DecodeWALRecord(b)
		if err != nil || d.Kind != r.Kind || !bytes.Equal(EncodeWALRecord(d), b) {
			t.Fatalf("kind %d: %v", r.Kind, err)
		}
	}
	bad := EncodeWALRecord(WALRecord{Kind: RecordVote, Vote: msgs[3].(*Vote)})
	bad[0] = byte(RecordProposal)
	if _, err := DecodeWALRecord(bad); !errors.Is(err, ErrMalformed) {
		t.Fatalf("kind mismatch: %v", err)
	}
}

func TestSignBytesSeparateChainsAndKinds(t *testing.T) {
	v := sampleMessages(t)[1].(*Vote)
	if bytes.Equal(VoteSignBytes("a", v), VoteSignBytes("b", v)) {
		t.Fatal("chain id not signed")
	}
	w := *v
	w.Extension = []byte("x")
	if bytes.Equal(VoteSignBytes("a", v), VoteSignBytes("a", &w)) {
		t.Fatal("extension not signed")
	}
}
