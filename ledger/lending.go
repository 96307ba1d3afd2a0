package ledger

import (
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/zkbank/zkbank/internal/wire"
)

// Lending on encrypted credit scores (docs/LENDING.md).
//
// Every account has a credit score
//
//	S = Base + Avail*A + Repaid*R + Penalty*max(0, Grace - D)
//
// where A is its available balance (a card's available credit), R the sum of
// the loan installments it repaid on time (an encrypted plane per shard,
// RepaidKey, fed by the repayments' own debits) and D the public count of
// installments it missed. The weights are chain parameters (ScoreParams,
// from genesis); A and R exist only encrypted, so S does too: the ledger
// computes it when asked, from the planes (Book.ScoreAt), never stores it.
//
// A lender learns a score only under the owner's consent, in one of two
// ways: the score itself re-encrypted to the lender's key (a Consent of
// scope score, recorded on chain, then a query like a balance query), or
// one bit, "S >= the lender's published minimum", from an OpCheck the owner
// signs: the validators run a transfer's checks with the amount replaced by
// the public minimum (atleast.go), and its verdict is the answer.
//
// Loans are payments with a public schedule (OpFund); repayments are
// payments tagged with their loan (OpRepay). A repayment committed by its
// installment's due height adds its amount to R; an installment still
// unpaid after its due height adds one to D.

// OpKind is what an operation is beyond moving money.
type OpKind uint8

const (
	// OpPay is a payment (To != From, or a pay-many) or an apply (To == From).
	OpPay OpKind = 0
	// OpCheck is a decision-only score check: "my score at Height is at
	// least Min", addressed to the lender To under its policy Policy. It
	// moves nothing; its verdict is the lender's answer.
	OpCheck OpKind = 1
	// OpFund is a loan: a payment from the lender's pool (From) to the
	// borrower (To) with the public installment heights Due.
	OpFund OpKind = 2
	// OpRepay is a repayment of Loan to its lender (To).
	OpRepay OpKind = 3
)

func (k OpKind) String() string {
	switch k {
	case OpCheck:
		return "check"
	case OpFund:
		return "fund"
	case OpRepay:
		return "repay"
	}
	return "pay"
}

// Lending limits.
const (
	// MaxInstallments bounds a loan's schedule.
	MaxInstallments = 24
	// RepayLead is how far after the height a loan is planned at its first
	// installment must fall due: the loan is committed a height later and
	// published two after that, and a repayment then needs an ack and a
	// block (the earliest it can commit is the loan's height + 4); the rest
	// is margin for a byzantine proposer leaving it out of a block or two.
	// A shorter schedule would let anyone holding an application plant
	// defaults the borrower cannot avoid. Installments after the first may
	// be close together: a borrower can repay ahead of time, one
	// installment per block.
	RepayLead = 8
	// MaxLoanSpan bounds how far after its height a loan's last installment
	// may fall.
	MaxLoanSpan = 1 << 22
	// MaxLoans bounds the open loans of one borrower: each is public state
	// every validator keeps and walks at every height.
	MaxLoans = 4
	// MaxConsents bounds the score consents an account holds at once.
	MaxConsents = 8
	// MaxConsentSpan bounds how far after its recording a consent may
	// expire.
	MaxConsentSpan = 1 << 20
)

// IsCheck reports whether the operation is a decision-only score check.
func (e *Envelope) IsCheck() bool { return e.Kind == OpCheck }

// Pays reports whether the operation is a payment: it debits its sender and
// credits its payees (a plain payment, a pay-many, a loan or a repayment).
func (e *Envelope) Pays() bool { return e.Kind != OpCheck && !e.IsApply() }

// BatchKind is the batch an operation is evaluated in: payments (0),
// applies (1) or score checks (2). Operations of different kinds of one
// shard never share a batch (Book.Plan) nor a group (chain.layoutOf).
func (e *Envelope) BatchKind() uint8 {
	switch {
	case e.IsCheck():
		return 2
	case e.IsApply():
		return 1
	}
	return 0
}

func (e *Envelope) writeLending(w *wire.Writer) {
	w.U8(uint8(e.Kind))
	switch e.Kind {
	case OpCheck:
		w.U64(e.Min)
		w.Fixed(e.Policy[:])
	case OpFund:
		w.U32(uint32(len(e.Due)))
		for _, d := range e.Due {
			w.U64(d)
		}
		w.Fixed(e.Loan[:]) // the application it answers: signed and sent like the schedule
		w.U64(e.Min)       // the minimum and policy the lender requires that application to have proved
		w.Fixed(e.Policy[:])
	case OpRepay:
		w.Fixed(e.Loan[:])
	}
}

func (e *Envelope) readLending(r *wire.Reader) {
	e.Kind = OpKind(r.U8())
	e.Min, e.Policy, e.Due, e.Loan = 0, [32]byte{}, nil, [32]byte{}
	switch e.Kind {
	case OpPay:
	case OpCheck:
		e.Min = r.U64()
		copy(e.Policy[:], r.Fixed(32))
	case OpFund:
		n := r.Count(MaxInstallments)
		for i := 0; i < n && r.Err == nil; i++ {
			e.Due = append(e.Due, r.U64())
		}
		copy(e.Loan[:], r.Fixed(32))
		e.Min = r.U64()
		copy(e.Policy[:], r.Fixed(32))
	case OpRepay:
		copy(e.Loan[:], r.Fixed(32))
	default:
		r.Fail("operation kind %d", e.Kind)
	}
}

// kindWellFormed: only the operation's own kind's fields are set, and they
// are in range. A check, a loan and a repayment name one other account
// (never the sender) and no further payees; a check's minimum is an amount;
// a loan's schedule is strictly increasing, after its height, within
// MaxLoanSpan.
func (e *Envelope) kindWellFormed() bool {
	if e.Kind != OpCheck && e.Kind != OpFund && (e.Min != 0 || e.Policy != [32]byte{}) {
		return false
	}
	if e.Kind != OpFund && len(e.Due) > 0 {
		return false
	}
	if e.Kind != OpRepay && e.Kind != OpFund && e.Loan != [32]byte{} {
		return false
	}
	switch e.Kind {
	case OpPay:
		return true
	case OpCheck, OpFund, OpRepay:
	default:
		return false
	}
	if len(e.More) > 0 || e.From == e.To {
		return false
	}
	switch e.Kind {
	case OpCheck:
		return e.Min <= MaxAmount
	case OpFund:
		if len(e.Due) == 0 || len(e.Due) > MaxInstallments {
			return false
		}
		prev := e.Height
		for _, d := range e.Due {
			if d <= prev || d > e.Height+MaxLoanSpan {
				return false
			}
			prev = d
		}
	}
	return true
}

// ScoreParams are the public weights of the credit score (a chain
// parameter, from genesis):
//
//	S = Base + Avail*A + Repaid*R + Penalty*max(0, Grace - D)
type ScoreParams struct {
	Base    uint64 `json:"base"`
	Avail   uint64 `json:"avail_weight"`
	Repaid  uint64 `json:"repaid_weight"`
	Penalty uint64 `json:"default_penalty"`
	Grace   uint32 `json:"default_grace"`
}

// DefaultScoreParams: one point per cent available, two per cent repaid on
// time, and 500.00 of score for each of the first four defaults avoided.
var DefaultScoreParams = ScoreParams{Base: 0, Avail: 1, Repaid: 2, Penalty: 50_000, Grace: 4}

// ErrScoreParams reports invalid score weights.
var ErrScoreParams = errors.New("ledger: bad score parameters")

// Validate checks the weights keep the score exact: each weight at most
// MaxScoreWeight, and the public part of the score an amount.
func (s ScoreParams) Validate() error {
	if s.Avail > MaxScoreWeight || s.Repaid > MaxScoreWeight {
		return fmt.Errorf("%w: weights must be at most %d", ErrScoreParams, MaxScoreWeight)
	}
	if s.Avail == 0 && s.Repaid == 0 {
		return fmt.Errorf("%w: at least one encrypted input needs a weight", ErrScoreParams)
	}
	if s.Grace > 1<<16 || s.Penalty > MaxAmount || s.Base > MaxAmount || s.Base+s.Penalty*uint64(s.Grace) > MaxAmount {
		return fmt.Errorf("%w: base + penalty * grace must be below 2^32", ErrScoreParams)
	}
	return nil
}

// PublicPart is the score's public term for an account with d defaults:
// Base + Penalty * max(0, Grace - d).
func (s ScoreParams) PublicPart(d uint32) uint64 {
	left := uint64(0)
	if d < s.Grace {
		left = uint64(s.Grace - d)
	}
	return s.Base + s.Penalty*left
}

// Score is the formula on plaintext inputs (what the owner's wallet and the
// tests compute).
func (s ScoreParams) Score(avail, repaid uint64, d uint32) uint64 {
	return s.PublicPart(d) + s.Avail*avail + s.Repaid*repaid
}

// repaidBit marks the repaid plane of a shard in the book's state map, like
// pendingBit.
const repaidBit = uint32(1) << 30

// RepaidKey is the state key of shard s's repaid plane: per lane, the sum of
// the loan installments the account repaid on time.
func RepaidKey(s uint32) uint32 { return s | repaidBit }

// IsRepaidKey reports whether a state key is a repaid plane.
func IsRepaidKey(k uint32) bool { return k&repaidBit != 0 && k&pendingBit == 0 }

// ShardOfKey returns the shard a state key belongs to.
func ShardOfKey(k uint32) uint32 { return k &^ (pendingBit | repaidBit) }

// ApplicationWindow is how long a loan application stays open for its
// lender to fund.
const ApplicationWindow = 4096

// MaxApplications bounds the open applications of one account once a
// height is settled (the oldest are dropped).
const MaxApplications = 8

// maxOpenApplications bounds them at any time: consents recorded since the
// last settled height may add up to MaxConsents more.
const maxOpenApplications = MaxApplications + MaxConsents

// Application is a borrower's open request to one lender: recorded when the
// borrower's score check to it is accepted (ID: the check's ID) or its
// score consent to it is recorded (ID: the consent's ID). A loan must name
// one; funding uses it up.
//
// Height is the book height from which a loan may answer it: a check's is
// the height that committed it; a consent's is the height after the one it
// was recorded at. A chain records a block's consents on the book the
// block's operations are planned on, one height behind, and a validator
// that restarts re-plans the block before its last on its persisted book,
// which already holds the last block's consents: they must not change that
// plan. So recording a consent only appends an application that earlier
// plans cannot see, and nothing is removed from the list but when a height
// is settled (settleLoans: used, expired, revoked, beyond MaxApplications).
type Application struct {
	ID     [32]byte
	Lender AccountID
	Height uint64
	// Min and Policy are what an accepted check proved: S >= Min under
	// the lender's policy Policy (zero for an application a consent made).
	// A loan names the minimum and policy it requires, and the chain holds
	// it to them: no node can talk a lender into funding an applicant by
	// misreporting what its check proved.
	Min    uint64
	Policy [32]byte
}

func (a *Account) application(id [32]byte) *Application {
	for i := range a.Applications {
		if a.Applications[i].ID == id {
			return &a.Applications[i]
		}
	}
	return nil
}

// addApplication records an application at book height now, dropping those
// no loan can answer from now on (expired). Past MaxApplications the oldest
// are dropped when the height is settled (trimApplications), not here.
func (a *Account) addApplication(ap Application, now uint64) {
	keep := a.Applications[:0:0]
	for _, x := range a.Applications {
		if x.Height+ApplicationWindow >= now {
			keep = append(keep, x)
		}
	}
	a.Applications = append(keep, ap)
}

// trimApplications settles the applications at height h: expired ones,
// those made by a consent since revoked, and, past MaxApplications, the
// oldest are dropped.
func (a *Account) trimApplications(h uint64) {
	if len(a.Applications) == 0 {
		return
	}
	revoked := map[[32]byte]bool{}
	for i := range a.Consents {
		if a.Consents[i].Revoked {
			revoked[a.Consents[i].ID()] = true
		}
	}
	keep := a.Applications[:0:0]
	for _, x := range a.Applications {
		if x.Height+ApplicationWindow >= h && !revoked[x.ID] {
			keep = append(keep, x)
		}
	}
	if len(keep) > MaxApplications {
		keep = keep[len(keep)-MaxApplications:]
	}
	if len(keep) == 0 {
		keep = nil
	}
	a.Applications = keep
}

func (a *Account) useApplication(id [32]byte) {
	for i := range a.Applications {
		if a.Applications[i].ID == id {
			a.Applications = append(a.Applications[:i:i], a.Applications[i+1:]...)
			return
		}
	}
}

// Loan is an open loan, kept in its borrower's account: public except its
// amounts.
type Loan struct {
	ID     [32]byte  // the ID of its funding operation
	Lender AccountID // the pool it was paid from, which repayments pay
	Start  uint64    // height it was funded at
	Due    []uint64  // installment due heights
	Paid   int       // installments repaid on time
	Missed int       // installments missed
}

// Next is the index of the next installment, len(Due) once every
// installment is repaid or missed.
func (l *Loan) Next() int { return l.Paid + l.Missed }

// ConsentScope says what a consent lets a lender learn.
type ConsentScope uint8

const (
	// ScopeScore: the score itself, re-encrypted to the lender's key.
	ScopeScore ConsentScope = 1
	// ScopeRevoke withdraws every consent the owner gave the lender, and
	// with them the loan applications they made (when the height is
	// settled: no loan planned after it can answer them).
	ScopeRevoke ConsentScope = 2
)

func (s ConsentScope) String() string {
	switch s {
	case ScopeScore:
		return "score"
	case ScopeRevoke:
		return "revoke"
	}
	return fmt.Sprintf("scope(%d)", uint8(s))
}

// Consent is an owner's signed permission for one lender to read its score
// (or its withdrawal), recorded on chain in a block so every validator
// agrees on it. The decision-only answer needs none: the OpCheck the owner
// signs is that consent, and it is consumed when ordered.
type Consent struct {
	Chain  string
	Owner  AccountID
	Lender AccountID
	Scope  ConsentScope
	Expiry uint64 // last height at which a query may be answered
	Nonce  uint64 // greater than the owner's previous consent's
	Sig    []byte // ed25519 by the owner's account key over SigningBytes
	// Revoked is set on chain by a later revocation (not signed).
	Revoked bool
	// Recorded is set on chain when a grant is recorded (not signed): the
	// book height it was recorded on, the first height whose score the
	// lender may read under it (the score current when the owner's grant
	// took effect). A consent does not open the owner's older past.
	Recorded uint64
}

// consentVersion 2 carries Recorded (version 1 did not).
const consentVersion = 2

// SigningBytes is what the owner signs.
func (c *Consent) SigningBytes() []byte {
	var w wire.Writer
	w.Fixed([]byte("zkbank/consent/v1\x00"))
	w.Bytes([]byte(c.Chain))
	w.Fixed(c.Owner[:])
	w.Fixed(c.Lender[:])
	w.U8(uint8(c.Scope))
	w.U64(c.Expiry)
	w.U64(c.Nonce)
	return w.B
}

// ID identifies a consent.
func (c *Consent) ID() [32]byte { return sha256.Sum256(c.SigningBytes()) }

// Sign signs the consent with the owner's account key.
func (c *Consent) Sign(key ed25519.PrivateKey) { c.Sig = ed25519.Sign(key, c.SigningBytes()) }

// MarshalBinary encodes a consent (Revoked included: it is part of the
// recorded state, not of what the owner signed).
func (c *Consent) MarshalBinary() ([]byte, error) {
	var w wire.Writer
	w.U8(consentVersion)
	w.Bytes([]byte(c.Chain))
	w.Fixed(c.Owner[:])
	w.Fixed(c.Lender[:])
	w.U8(uint8(c.Scope))
	w.U64(c.Expiry)
	w.U64(c.Nonce)
	w.Bytes(c.Sig)
	rv := uint8(0)
	if c.Revoked {
		rv = 1
	}
	w.U8(rv)
	w.U64(c.Recorded)
	return w.B, nil
}

// UnmarshalBinary decodes a consent.
func (c *Consent) UnmarshalBinary(p []byte) error {
	r := wire.NewReader(p, ErrMalformed)
	if v := r.U8(); r.Err == nil && v != consentVersion {
		return fmt.Errorf("%w: consent version %d", ErrMalformed, v)
	}
	c.Chain = string(r.Bytes(64))
	copy(c.Owner[:], r.Fixed(32))
	copy(c.Lender[:], r.Fixed(32))
	c.Scope = ConsentScope(r.U8())
	c.Expiry = r.U64()
	c.Nonce = r.U64()
	c.Sig = append([]byte(nil), r.Bytes(ed25519.SignatureSize)...)
	c.Revoked = r.U8() == 1
	c.Recorded = r.U64()
	if err := r.Done(); err != nil {
		return err
	}
	if (c.Scope != ScopeScore && c.Scope != ScopeRevoke) || len(c.Sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: consent fields", ErrMalformed)
	}
	return nil
}

// Consent errors: each is a clear refusal, and nothing is re-encrypted.
var (
	ErrConsent        = errors.New("ledger: consent refused")
	ErrNoConsent      = fmt.Errorf("%w: the owner gave this lender no such consent", ErrConsent)
	ErrConsentExpired = fmt.Errorf("%w: the consent has expired", ErrConsent)
	ErrConsentRevoked = fmt.Errorf("%w: the owner revoked the consent", ErrConsent)
	ErrConsentForeign = fmt.Errorf("%w: the consent names another lender", ErrConsent)
)

// CheckConsent runs the checks a block's consent must pass against the
// book: a known owner's signature, a known lender that is not the owner, a
// fresh nonce, an expiry ahead (a grant) and room for it.
func (b *Book) CheckConsent(c *Consent) error {
	o, ok := b.byID[c.Owner]
	if !ok {
		return fmt.Errorf("%w: unknown owner", ErrConsent)
	}
	if c.Chain != b.chain || !ed25519.Verify(o.SignPub, c.SigningBytes(), c.Sig) {
		return fmt.Errorf("%w: bad signature", ErrConsent)
	}
	return b.ConsentRecordable(c)
}

// ConsentRecordable is CheckConsent without the signature: whether a
// consent whose signature was already verified (a pool admits nothing
// else) can still be recorded on this book. The owner's key never changes,
// so the signature needs no second look.
func (b *Book) ConsentRecordable(c *Consent) error {
	o, ok := b.byID[c.Owner]
	if !ok || c.Chain != b.chain {
		return fmt.Errorf("%w: unknown owner", ErrConsent)
	}
	if _, ok := b.byID[c.Lender]; !ok || c.Lender == c.Owner {
		return fmt.Errorf("%w: unknown lender", ErrConsent)
	}
	if c.Revoked {
		return fmt.Errorf("%w: a consent is recorded unrevoked", ErrConsent)
	}
	if c.Nonce <= o.ConsentNonce {
		return fmt.Errorf("%w: replayed consent (nonce %d, last %d)", ErrConsent, c.Nonce, o.ConsentNonce)
	}
	switch c.Scope {
	case ScopeScore:
		if c.Expiry <= b.height || c.Expiry > b.height+MaxConsentSpan {
			return fmt.Errorf("%w: expiry %d must be after height %d and within %d heights", ErrConsent, c.Expiry, b.height, MaxConsentSpan)
		}
		live := 0
		for _, x := range o.Consents {
			if !x.Revoked && x.Expiry >= b.height {
				live++
			}
		}
		if live >= MaxConsents {
			return fmt.Errorf("%w: the owner already has %d live consents; revoke one", ErrConsent, MaxConsents)
		}
		// Applications are trimmed when a height is settled, not when a
		// consent adds one (Application): bound what one height may add.
		open := 0
		for _, x := range o.Applications {
			if x.Height+ApplicationWindow >= b.height {
				open++
			}
		}
		if open >= maxOpenApplications {
			return fmt.Errorf("%w: the owner has %d open loan applications; wait for the next height", ErrConsent, open)
		}
	case ScopeRevoke:
	default:
		return fmt.Errorf("%w: scope %d", ErrConsent, c.Scope)
	}
	return nil
}

// RecordConsent applies a checked consent: a grant is kept until it
// expires; a revocation marks every consent to its lender revoked. It
// consumes the nonce.
func (b *Book) RecordConsent(c *Consent) error {
	if err := b.CheckConsent(c); err != nil {
		return err
	}
	o := b.byID[c.Owner]
	o.ConsentNonce = c.Nonce
	keep := o.Consents[:0:0]
	for _, x := range o.Consents {
		if x.Expiry < b.height {
			continue // expired: dropped
		}
		if c.Scope == ScopeRevoke && x.Lender == c.Lender {
			x.Revoked = true
		}
		keep = append(keep, x)
	}
	if c.Scope == ScopeScore {
		// A loan may answer it from the next height on (Application).
		o.addApplication(Application{ID: c.ID(), Lender: c.Lender, Height: b.height + 1}, b.height)
		// Revoked consents are kept until they expire (so a query under one
		// is told it was revoked), at most MaxConsents of them.
		for len(keep) >= 2*MaxConsents {
			for i := range keep {
				if keep[i].Revoked {
					keep = append(keep[:i], keep[i+1:]...)
					break
				}
			}
		}
		cp := *c
		cp.Sig = append([]byte(nil), c.Sig...)
		cp.Recorded = b.height // the score current when it is recorded, and later ones
		keep = append(keep, cp)
	}
	o.Consents = keep
	return nil
}

// ScoreConsent returns the consent (owner, nonce) if it lets lender read the
// owner's score now, or why not.
func (b *Book) ScoreConsent(owner, lender AccountID, nonce uint64) (Consent, error) {
	o, ok := b.byID[owner]
	if !ok {
		return Consent{}, fmt.Errorf("%w: unknown owner", ErrConsent)
	}
	for _, x := range o.Consents {
		if x.Nonce != nonce {
			continue
		}
		switch {
		case x.Lender != lender:
			return Consent{}, ErrConsentForeign
		case x.Revoked:
			return Consent{}, ErrConsentRevoked
		case x.Expiry < b.height:
			return Consent{}, ErrConsentExpired
		}
		return x, nil
	}
	if nonce <= o.ConsentNonce {
		return Consent{}, fmt.Errorf("%w (expired, revoked, or never granted)", ErrNoConsent)
	}
	return Consent{}, ErrNoConsent
}

// ScoreParams returns the book's score weights.
func (b *Book) ScoreParams() ScoreParams { return b.score }

// SetScoreParams sets the score weights (from genesis, before any block).
func (b *Book) SetScoreParams(s ScoreParams) error {
	if err := s.Validate(); err != nil {
		return err
	}
	b.score = s
	return nil
}

// ScoreAt returns the recomposed scores of a shard at height h (the newest
// retained states at or below h): the anchor slot (0,0,lane) of each of
// lanes holds that account's S, with D as it is now. Same shape as
// Recompose's output, so BalanceFromRecomposed masks one lane out of it and
// a threshold check reads it as a balance.
//
// Only the named lanes get their public part: the ciphertext's bytes then
// depend on the planes at h and on those lanes' accounts, never on which
// other accounts the book holds. A validator that re-evaluates a block
// after a restart holds the accounts the next block opened (an opening
// lands in a free lane of the shard); with every lane's public part, its
// check bytes, and so its digest, would differ from the others'.
func (b *Book) ScoreAt(eng *Engine, shard uint32, h uint64, lanes []int) (*rlwe.Ciphertext, error) {
	avail, err := b.stateAt(shard, h)
	if err != nil {
		return nil, err
	}
	repaid, err := b.stateAt(RepaidKey(shard), h)
	if err != nil {
		return nil, err
	}
	var terms []ScoreTerm
	for _, t := range []struct {
		st *rlwe.Ciphertext
		w  uint64
	}{{avail, b.score.Avail}, {repaid, b.score.Repaid}} {
		if t.w == 0 {
			continue
		}
		rec, err := eng.Recompose(t.st)
		if err != nil {
			return nil, err
		}
		terms = append(terms, ScoreTerm{Plane: rec, Weight: t.w})
	}
	base := map[int]uint64{}
	for _, lane := range lanes {
		id, ok := b.byLane[laneKey{shard: shard, lane: lane}]
		if !ok {
			continue // no account there: its score is the planes' zeros
		}
		if v := b.score.PublicPart(b.byID[id].Defaults); v != 0 {
			base[lane] = v
		}
	}
	return eng.LinearScore(terms, base)
}

// checkLoanOp runs the plaintext checks of a loan or a repayment against
// the book (Accepted or RejectLoan).
func (b *Book) checkLoanOp(e *Envelope) Reason {
	switch e.Kind {
	case OpFund:
		// A loan needs the borrower's application to this lender, unused,
		// and a first installment the borrower can still repay on time
		// (RepayLead): nobody can saddle an account with a loan (and its
		// defaults) it did not ask for or could not repay on time.
		to := b.byID[e.To]
		if to == nil || len(to.Loans) >= MaxLoans || len(e.Due) == 0 || e.Due[0] <= b.height+RepayLead {
			return RejectLoan
		}
		if ap := to.application(e.Loan); ap == nil || ap.Lender != e.From || ap.Height > b.height || ap.Height+ApplicationWindow < b.height {
			return RejectLoan
		} else if ap.Min < e.Min || (e.Policy != [32]byte{} && ap.Policy != e.Policy) {
			return RejectLoan // the application proved less than the lender requires
		}
	case OpRepay:
		from := b.byID[e.From]
		l := from.loan(e.Loan)
		if l == nil || l.Lender != e.To || l.Next() >= len(l.Due) {
			return RejectLoan
		}
	}
	return Accepted
}

func (a *Account) loan(id [32]byte) *Loan {
	for i := range a.Loans {
		if a.Loans[i].ID == id {
			return &a.Loans[i]
		}
	}
	return nil
}

// settleLoans records, at height h, each installment of an open loan whose
// due height has passed unpaid as missed (one default each), closes loans
// with no installment left, and trims applications (trimApplications).
// Deterministic: each account on its own.
func (b *Book) settleLoans(h uint64) {
	for _, a := range b.byID {
		a.trimApplications(h)
		if len(a.Loans) == 0 {
			continue
		}
		keep := a.Loans[:0]
		for _, l := range a.Loans {
			for l.Next() < len(l.Due) && l.Due[l.Next()] < h {
				l.Missed++
				a.Defaults++
			}
			if l.Next() < len(l.Due) {
				keep = append(keep, l)
			}
		}
		a.Loans = keep
	}
}

// cloneLending deep-copies an account's lending state (a clone of the book
// must not share the slices it mutates).
func (a *Account) cloneLending() {
	if a.Loans != nil {
		ls := make([]Loan, len(a.Loans))
		for i, l := range a.Loans {
			l.Due = append([]uint64(nil), l.Due...)
			ls[i] = l
		}
		a.Loans = ls
	}
	if a.Consents != nil {
		a.Consents = append([]Consent(nil), a.Consents...)
	}
	if a.Applications != nil {
		a.Applications = append([]Application(nil), a.Applications...)
	}
}

func writeLendingAccount(w *wire.Writer, a *Account) {
	w.U32(a.Defaults)
	w.U64(a.ConsentNonce)
	w.U32(uint32(len(a.Consents)))
	for i := range a.Consents {
		cb, _ := a.Consents[i].MarshalBinary()
		w.Bytes(cb)
	}
	w.U32(uint32(len(a.Loans)))
	for _, l := range a.Loans {
		w.Fixed(l.ID[:])
		w.Fixed(l.Lender[:])
		w.U64(l.Start)
		w.U32(uint32(len(l.Due)))
		for _, d := range l.Due {
			w.U64(d)
		}
		w.U32(uint32(l.Paid))
		w.U32(uint32(l.Missed))
	}
	w.U32(uint32(len(a.Applications)))
	for _, ap := range a.Applications {
		w.Fixed(ap.ID[:])
		w.Fixed(ap.Lender[:])
		w.U64(ap.Height)
		w.U64(ap.Min)
		w.Fixed(ap.Policy[:])
	}
}

func readLendingAccount(r *wire.Reader, a *Account) {
	a.Defaults = r.U32()
	a.ConsentNonce = r.U64()
	n := r.Count(MaxConsents * 4)
	for i := 0; i < n && r.Err == nil; i++ {
		var c Consent
		cb := r.Bytes(1 << 10)
		if r.Err != nil {
			return
		}
		if err := c.UnmarshalBinary(cb); err != nil {
			r.Fail("consent: %v", err)
			return
		}
		a.Consents = append(a.Consents, c)
	}
	n = r.Count(MaxLoans)
	for i := 0; i < n && r.Err == nil; i++ {
		var l Loan
		copy(l.ID[:], r.Fixed(32))
		copy(l.Lender[:], r.Fixed(32))
		l.Start = r.U64()
		m := r.Count(MaxInstallments)
		for j := 0; j < m && r.Err == nil; j++ {
			l.Due = append(l.Due, r.U64())
		}
		l.Paid, l.Missed = int(r.U32()), int(r.U32())
		if l.Paid+l.Missed > len(l.Due) {
			r.Fail("loan installments")
			return
		}
		a.Loans = append(a.Loans, l)
	}
	n = r.Count(maxOpenApplications)
	for i := 0; i < n && r.Err == nil; i++ {
		var ap Application
		copy(ap.ID[:], r.Fixed(32))
		copy(ap.Lender[:], r.Fixed(32))
		ap.Height = r.U64()
		ap.Min = r.U64()
		copy(ap.Policy[:], r.Fixed(32))
		a.Applications = append(a.Applications, ap)
	}
}

// settleLending records a payment batch's accepted loans and repayments at
// height h: a loan opens in its borrower's account; a repayment committed by
// its installment's due height counts as paid on time and its amount (the
// debit of exactly the on-time repayments' lanes) is added to the repaid
// plane; a later one counts as missed (its money still moves).
func (b *Book) settleLending(eng *Engine, h uint64, bt *Batch, ev *Evaluation, verdicts map[int]Reason, move func(uint32, *rlwe.Ciphertext, int) error) error {
	onTime := map[int]Reason{}
	for _, l := range ev.Lanes {
		env := bt.lanes[l]
		if verdicts[l] != Accepted {
			continue
		}
		switch env.Kind {
		case OpFund:
			to := b.byID[env.To]
			to.useApplication(env.Loan)
			to.Loans = append(to.Loans, Loan{ID: env.ID(), Lender: env.From, Start: h, Due: append([]uint64(nil), env.Due...)})
		case OpRepay:
			ln := b.byID[env.From].loan(env.Loan)
			if ln == nil || ln.Next() >= len(ln.Due) {
				continue // cannot happen: Plan checked it against this book
			}
			if ln.Due[ln.Next()] >= h {
				ln.Paid++
				onTime[l] = Accepted
			} else {
				ln.Missed++
				b.byID[env.From].Defaults++
			}
		}
	}
	if len(onTime) == 0 {
		return nil
	}
	d, err := eng.Debit(ev, onTime)
	if err != nil {
		return err
	}
	return move(RepaidKey(bt.Shard), d, +1)
}
