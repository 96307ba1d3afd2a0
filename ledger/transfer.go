package ledger

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"github.com/zkbank/zkbank/internal/wire"

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
// replay nonce, the account's operation it was built on (Prev) and a height:
// for an apply (To == From: move pending funds into the available balance)
// the height of the pending balance it was built against, for a payment the
// height it was made at (it expires a window later). The amount is not here:
// it exists only as sealed shares, then encrypted.
type Envelope struct {
	Chain    string
	From, To AccountID
	Nonce    uint64
	// Prev is the ID of the account's last accepted operation this one was
	// built on (zero for none): the available balance it spends from is the
	// one that chain of operations leaves. An operation whose Prev is not
	// the account's last accepted one is rejected before evaluation.
	Prev   [32]byte
	Height uint64   // apply: the pending balance it was built against; payment: when it was made
	CTHash [32]byte // SHA-256 of the upload's sealed shares (SealedTransfer encoding)
	// More are the further payees of a pay-many payment (To is the first):
	// one debit of the sum, one credit per payee, each amount proven in
	// [0, 2^32) (docs/PROTOCOL.md, "Pay many"). Empty for a single payment
	// and for an apply.
	More []AccountID
	// Kind is what the operation is beyond moving money (lending.go):
	// OpPay for a payment or an apply, OpCheck for a decision-only score
	// check addressed to a lender (To) against its public minimum Min and
	// policy, OpFund for a loan from a lender's pool (From) to a borrower
	// (To) with its public repayment schedule Due, OpRepay for a repayment
	// of Loan to its lender (To).
	Kind   OpKind
	Min    uint64   // OpCheck: the lender's published minimum score; OpFund: the minimum its application must have proved (0 for a consent's)
	Policy [32]byte // OpCheck: SHA-256 of the lender's published policy; OpFund: the policy its application must name (zero: any)
	Due    []uint64 // OpFund: installment due heights, strictly increasing
	// Loan: for OpRepay the loan (the ID of its funding operation); for
	// OpFund the borrower's application it answers (Application.ID).
	Loan [32]byte
	Sig  []byte // ed25519 by the sender over SigningBytes
}

// MaxPayees bounds the payees of one pay-many payment: each takes a lane of
// its group's batch besides the payer's, and the total they sum to must stay
// below t / 2^32 (params.go) for the balance equation to be exact.
const MaxPayees = 32

// Payees returns every account an operation names besides its sender: To,
// then More. Only a payment (Pays) credits them.
func (e *Envelope) Payees() []AccountID {
	return append([]AccountID{e.To}, e.More...)
}

// IsMany reports whether the envelope is a pay-many payment.
func (e *Envelope) IsMany() bool { return len(e.More) > 0 }

// ValueCount is how many slot values an upload for this envelope deals
// (ValuesFor).
func (e *Envelope) ValueCount() int { return ValuesFor(1 + len(e.More)) }

// ValuesFor is how many slot values an operation with the given number of
// payees deals: one lane's 64 for a single payment or an apply; for a
// pay-many, one lane for the payer (its row 1, the new balance) and one per
// payee (its row 0, the amount).
func ValuesFor(payees int) int {
	if payees <= 1 {
		return SlotValues
	}
	return SlotValues * (1 + payees)
}

// wellFormed reports whether the payees and the lending fields are valid:
// an apply pays nobody else, a pay-many's payees are distinct, not the
// payer, and at most MaxPayees; only its kind's lending fields are set
// (lending.go).
func (e *Envelope) wellFormed() bool {
	if !e.kindWellFormed() {
		return false
	}
	if len(e.More) == 0 {
		return true
	}
	if e.IsApply() || len(e.More)+1 > MaxPayees {
		return false
	}
	seen := map[AccountID]bool{e.From: true}
	for _, p := range e.Payees() {
		if seen[p] {
			return false
		}
		seen[p] = true
	}
	return true
}

// IsApply reports whether the envelope moves its account's pending funds into
// its available balance (a transfer to oneself) rather than paying another.
func (e *Envelope) IsApply() bool { return e.Kind == OpPay && e.From == e.To }

// envelopeVersion 6: a loan names the minimum and policy it requires of
// its application (version 5 had Kind and the other lending fields;
// version 4 had none; version 3 had no More; version 2 had no Prev;
// version 1 signed a client ciphertext).
const envelopeVersion = 6

// maxSealed bounds a sealed transfer on the wire.
const maxSealed = 8 + MaxPieces*32 + MaxPieces*(4+maxBox)

// SigningBytes is the canonical encoding the signature covers.
func (e *Envelope) SigningBytes() []byte {
	var w wire.Writer
	w.Fixed([]byte("zkbank/envelope/v5\x00"))
	w.Bytes([]byte(e.Chain))
	w.Fixed(e.From[:])
	w.Fixed(e.To[:])
	w.U64(e.Nonce)
	w.Fixed(e.Prev[:])
	w.U64(e.Height)
	w.Fixed(e.CTHash[:])
	w.U32(uint32(len(e.More)))
	for _, p := range e.More {
		w.Fixed(p[:])
	}
	e.writeLending(&w)
	return w.B
}

// ID identifies a transfer (hash of its signed bytes).
func (e *Envelope) ID() [32]byte { return sha256.Sum256(e.SigningBytes()) }

// Verify checks the signature against the sender's key.
func (e *Envelope) Verify(pub ed25519.PublicKey) bool {
	return len(pub) == ed25519.PublicKeySize && AccountIDOf(pub) == e.From && ed25519.Verify(pub, e.SigningBytes(), e.Sig)
}

// MarshalBinary encodes the envelope.
func (e *Envelope) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	w.U8(envelopeVersion)
	w.Bytes([]byte(e.Chain))
	w.Fixed(e.From[:])
	w.Fixed(e.To[:])
	w.U64(e.Nonce)
	w.Fixed(e.Prev[:])
	w.U64(e.Height)
	w.Fixed(e.CTHash[:])
	w.U32(uint32(len(e.More)))
	for _, p := range e.More {
		w.Fixed(p[:])
	}
	e.writeLending(&w)
	w.Bytes(e.Sig)
	return w.B, nil
}

// UnmarshalBinary decodes an envelope.
func (e *Envelope) UnmarshalBinary(p []byte) error {
	r := wire.NewReader(p, ErrMalformed)
	if v := r.U8(); r.Err == nil && v != envelopeVersion {
		return fmt.Errorf("%w: envelope version %d", ErrMalformed, v)
	}
	e.Chain = string(r.Bytes(maxField))
	copy(e.From[:], r.Fixed(32))
	copy(e.To[:], r.Fixed(32))
	e.Nonce = r.U64()
	copy(e.Prev[:], r.Fixed(32))
	e.Height = r.U64()
	copy(e.CTHash[:], r.Fixed(32))
	e.More = nil
	n := r.Count(MaxPayees - 1)
	for i := 0; i < n && r.Err == nil; i++ {
		var p AccountID
		copy(p[:], r.Fixed(32))
		e.More = append(e.More, p)
	}
	e.readLending(r)
	e.Sig = append([]byte(nil), r.Bytes(maxField)...)
	if err := r.Done(); err != nil {
		return err
	}
	if len(e.Chain) > 64 || len(e.Sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: envelope fields", ErrMalformed)
	}
	if !e.wellFormed() {
		return fmt.Errorf("%w: payees of a pay-many must be distinct, not the payer, at most %d, an apply pays nobody, and only an operation's own kind's lending fields may be set", ErrMalformed, MaxPayees)
	}
	return nil
}

// Submission is what a wallet uploads: one transfer's signed envelope and its
// sealed shares (SealedTransfer's encoding, whose hash the envelope signs).
// Envelopes holds exactly one envelope; it is a list on the wire so a later
// version can carry several.
type Submission struct {
	Envelopes []Envelope
	Sealed    []byte
}

// MarshalBinary encodes the submission.
func (s *Submission) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	w.U8(envelopeVersion)
	w.U32(uint32(len(s.Envelopes)))
	for i := range s.Envelopes {
		b, _ := s.Envelopes[i].MarshalBinary()
		w.Bytes(b)
	}
	w.Bytes(s.Sealed)
	return w.B, nil
}

// MaxEnvelopes is how many envelopes one upload carries.
const MaxEnvelopes = 1

// UnmarshalBinary decodes a submission (not the ciphertext inside).
func (s *Submission) UnmarshalBinary(p []byte) error {
	r := wire.NewReader(p, ErrMalformed)
	if v := r.U8(); r.Err == nil && v != envelopeVersion {
		return fmt.Errorf("%w: submission version %d", ErrMalformed, v)
	}
	n := r.U32()
	if r.Err == nil && (n == 0 || n > MaxEnvelopes) {
		return fmt.Errorf("%w: %d envelopes", ErrMalformed, n)
	}
	s.Envelopes = make([]Envelope, 0, n)
	for i := uint32(0); i < n && r.Err == nil; i++ {
		var e Envelope
		b := r.Bytes(maxField)
		if r.Err == nil {
			if err := e.UnmarshalBinary(b); err != nil {
				return err
			}
		}
		s.Envelopes = append(s.Envelopes, e)
	}
	s.Sealed = r.Bytes(maxSealed)
	return r.Done()
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
