package consensus

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// Hard caps enforced by the decoder. A length prefix larger than a cap, or
// larger than what is left in the buffer, is an error before anything is
// allocated.
const (
	MaxValueSize     = 32 << 20 // bytes of a proposed value
	MaxExtensionSize = 4 << 20  // bytes of one vote extension (the ledger's are ~1 MiB)
	MaxValidators    = 10_000
	MaxRound         = Round(1 << 24)
	MaxChainIDLen    = 64
	SignatureSize    = ed25519.SignatureSize
)

// Wire format version and message kinds (the first two bytes of a message).
const (
	wireVersion  = 1
	kindProposal = 1
	kindVote     = 2
	kindCommit   = 3
)

// Fixed sizes used to bound counts before allocating.
const (
	voteFixedSize      = 1 + 8 + 4 + 32 + 4 + 4 + SignatureSize
	proposalFixedSize  = 8 + 4 + 4 + 4 + 4 + SignatureSize
	commitSigFixedSize = 4 + 4 + SignatureSize
)

// EncodeMessage returns the canonical encoding of m. It does not validate m:
// the machine only emits valid messages, and DecodeMessage rejects invalid ones.
func EncodeMessage(m Message) []byte {
	return AppendMessage(make([]byte, 0, encodedSize(m)), m)
}

// AppendMessage appends the canonical encoding of m to dst.
func AppendMessage(dst []byte, m Message) []byte {
	switch x := m.(type) {
	case *Proposal:
		dst = append(dst, wireVersion, kindProposal)
		return appendProposal(dst, x)
	case *Vote:
		dst = append(dst, wireVersion, kindVote)
		return appendVote(dst, x)
	case *Commit:
		dst = append(dst, wireVersion, kindCommit)
		dst = appendCert(dst, x.Cert)
		return appendBytes(dst, x.Value)
	}
	panic(fmt.Sprintf("consensus: cannot encode %T", m))
}

func encodedSize(m Message) int {
	switch x := m.(type) {
	case *Proposal:
		return 2 + proposalFixedSize + len(x.Value)
	case *Vote:
		return 2 + voteFixedSize + len(x.Extension)
	case *Commit:
		n := 2 + 8 + 4 + 32 + 4 + 4 + len(x.Value)
		for _, s := range x.Cert.Sigs {
			n += commitSigFixedSize + len(s.Extension)
		}
		return n
	}
	return 0
}

// DecodeMessage decodes one message. The result aliases b (values, extensions
// and signatures are not copied, because extensions can be ~1 MiB): the caller
// must not modify b afterwards. Garbage yields an error wrapping ErrMalformed,
// never a panic.
func DecodeMessage(b []byte) (Message, error) {
	d := decoder{b: b}
	if v := d.u8(); v != wireVersion && d.err == nil {
		return nil, fmt.Errorf("%w: version %d", ErrMalformed, v)
	}
	var m Message
	switch k := d.u8(); k {
	case kindProposal:
		m = d.proposal()
	case kindVote:
		m = d.vote()
	case kindCommit:
		c := &Commit{Cert: d.cert()}
		c.Value = d.bytes(MaxValueSize)
		m = c
	default:
		if d.err == nil {
			d.fail("unknown kind %d", k)
		}
	}
	if d.err == nil && d.off != len(d.b) {
		d.fail("%d trailing bytes", len(d.b)-d.off)
	}
	if d.err != nil {
		return nil, d.err
	}
	return m, nil
}

func appendVote(dst []byte, v *Vote) []byte {
	dst = append(dst, byte(v.Type))
	dst = binary.BigEndian.AppendUint64(dst, v.Height)
	dst = binary.BigEndian.AppendUint32(dst, uint32(v.Round))
	dst = append(dst, v.BlockID[:]...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(v.Validator))
	dst = appendBytes(dst, v.Extension)
	return append(dst, v.Signature...)
}

func appendProposal(dst []byte, p *Proposal) []byte {
	dst = binary.BigEndian.AppendUint64(dst, p.Height)
	dst = binary.BigEndian.AppendUint32(dst, uint32(p.Round))
	dst = binary.BigEndian.AppendUint32(dst, uint32(int32(p.ValidRound)))
	dst = binary.BigEndian.AppendUint32(dst, uint32(p.Proposer))
	dst = appendBytes(dst, p.Value)
	return append(dst, p.Signature...)
}

func appendCert(dst []byte, c *CommitCertificate) []byte {
	dst = binary.BigEndian.AppendUint64(dst, c.Height)
	dst = binary.BigEndian.AppendUint32(dst, uint32(c.Round))
	dst = append(dst, c.BlockID[:]...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(c.Sigs)))
	for _, s := range c.Sigs {
		dst = binary.BigEndian.AppendUint32(dst, uint32(s.Validator))
		dst = appendBytes(dst, s.Extension)
		dst = append(dst, s.Signature...)
	}
	return dst
}

func appendBytes(dst, b []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(b)))
	return append(dst, b...)
}

// decoder reads big-endian fields with a sticky error, so that a sequence of
// reads can be checked once.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrMalformed}, args...)...)
	}
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > len(d.b)-d.off {
		d.fail("truncated at byte %d", d.off)
		return nil
	}
	s := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return s
}

func (d *decoder) u8() uint8 {
	s := d.take(1)
	if s == nil {
		return 0
	}
	return s[0]
}

func (d *decoder) u32() uint32 {
	s := d.take(4)
	if s == nil {
		return 0
	}
	return binary.BigEndian.Uint32(s)
}

func (d *decoder) u64() uint64 {
	s := d.take(8)
	if s == nil {
		return 0
	}
	return binary.BigEndian.Uint64(s)
}

func (d *decoder) bytes(max int) []byte {
	n := d.u32()
	if d.err != nil {
		return nil
	}
	if uint64(n) > uint64(max) {
		d.fail("length %d over cap %d", n, max)
		return nil
	}
	s := d.take(int(n))
	if n == 0 {
		return nil // canonical: empty and absent are the same
	}
	return s
}

func (d *decoder) blockID() (id BlockID) {
	copy(id[:], d.take(32))
	return id
}

func (d *decoder) height() uint64 {
	h := d.u64()
	if h == 0 && d.err == nil {
		d.fail("height 0")
	}
	return h
}

func (d *decoder) round() Round {
	r := d.u32()
	if r > uint32(MaxRound) && d.err == nil {
		d.fail("round %d over cap", r)
	}
	return Round(r)
}

func (d *decoder) validator() int {
	i := d.u32()
	if i >= MaxValidators && d.err == nil {
		d.fail("validator index %d over cap", i)
	}
	return int(i)
}

func (d *decoder) vote() *Vote {
	v := &Vote{}
	v.Type = VoteType(d.u8())
	if v.Type != Prevote && v.Type != Precommit && v.Type != Attestation && d.err == nil {
		d.fail("vote type %d", v.Type)
	}
	v.Height = d.height()
	v.Round = d.round()
	v.BlockID = d.blockID()
	v.Validator = d.validator()
	v.Extension = d.bytes(MaxExtensionSize)
	if v.Extension != nil && (v.Type == Prevote || v.BlockID.IsNil()) && d.err == nil {
		d.fail("extension on a %s for %s", v.Type, v.BlockID)
	}
	if v.Type == Attestation && (v.Extension == nil || v.BlockID.IsNil()) && d.err == nil {
		d.fail("attestation without an extension or for nil")
	}
	v.Signature = d.take(SignatureSize)
	if d.err != nil {
		return nil
	}
	return v
}

func (d *decoder) proposal() *Proposal {
	p := &Proposal{}
	p.Height = d.height()
	p.Round = d.round()
	p.ValidRound = Round(int32(d.u32()))
	if (p.ValidRound < NoRound || p.ValidRound >= p.Round) && d.err == nil {
		d.fail("validRound %d not in [-1, %d)", p.ValidRound, p.Round)
	}
	p.Proposer = d.validator()
	p.Value = d.bytes(MaxValueSize)
	p.Signature = d.take(SignatureSize)
	if d.err != nil {
		return nil
	}
	p.id, p.idSet = HashValue(p.Value), true
	return p
}

func (d *decoder) cert() *CommitCertificate {
	c := &CommitCertificate{}
	c.Height = d.height()
	c.Round = d.round()
	c.BlockID = d.blockID()
	if c.BlockID.IsNil() && d.err == nil {
		d.fail("certificate for nil")
	}
	n := d.u32()
	if d.err != nil {
		return nil
	}
	if n == 0 || n > MaxValidators || int(n) > (len(d.b)-d.off)/commitSigFixedSize {
		d.fail("certificate with %d signatures", n)
		return nil
	}
	c.Sigs = make([]CommitSig, n)
	last := -1
	for i := range c.Sigs {
		s := &c.Sigs[i]
		s.Validator = d.validator()
		if s.Validator <= last && d.err == nil {
			d.fail("certificate validators not strictly increasing")
		}
		last = s.Validator
		s.Extension = d.bytes(MaxExtensionSize)
		s.Signature = d.take(SignatureSize)
		if d.err != nil {
			return nil
		}
	}
	return c
}

// Domain separation tags: a signature over one kind can never be replayed as another.
const (
	voteSignTag     = "zkbank/consensus/vote/v1\x00"
	proposalSignTag = "zkbank/consensus/proposal/v1\x00"
)

// VoteSignBytes is what a validator signs for v. The extension enters as its
// SHA-256 so that the signed message stays small; an absent extension is 32
// zero bytes.
func VoteSignBytes(chainID string, v *Vote) []byte {
	b := make([]byte, 0, len(voteSignTag)+1+len(chainID)+1+8+4+32+4+32)
	b = append(b, voteSignTag...)
	b = append(b, byte(len(chainID)))
	b = append(b, chainID...)
	b = append(b, byte(v.Type))
	b = binary.BigEndian.AppendUint64(b, v.Height)
	b = binary.BigEndian.AppendUint32(b, uint32(v.Round))
	b = append(b, v.BlockID[:]...)
	b = binary.BigEndian.AppendUint32(b, uint32(v.Validator))
	var extHash [32]byte
	if len(v.Extension) > 0 {
		extHash = sha256.Sum256(v.Extension)
	}
	return append(b, extHash[:]...)
}

// ProposalSignBytes is what the proposer signs for p: the header and the
// value's BlockID, not the value itself.
func ProposalSignBytes(chainID string, p *Proposal) []byte {
	b := make([]byte, 0, len(proposalSignTag)+1+len(chainID)+8+4+4+32+4)
	b = append(b, proposalSignTag...)
	b = append(b, byte(len(chainID)))
	b = append(b, chainID...)
	b = binary.BigEndian.AppendUint64(b, p.Height)
	b = binary.BigEndian.AppendUint32(b, uint32(p.Round))
	b = binary.BigEndian.AppendUint32(b, uint32(int32(p.ValidRound)))
	id := p.BlockID()
	b = append(b, id[:]...)
	return binary.BigEndian.AppendUint32(b, uint32(p.Proposer))
}
