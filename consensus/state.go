package consensus

import (
	"errors"
	"fmt"
	"slices"
)

// Machine is one validator's Tendermint state machine (Algorithm 1). It is
// not safe for concurrent use: one actor owns it.
type Machine struct {
	cfg    Config
	vals   *ValidatorSet
	app    Application
	signer Signer
	self   int // our validator index, -1 for an observer that never signs

	started bool
	halted  error
	errs    []error // application errors met during the current Step

	height uint64
	round  Round
	step   Step
	// waitWork: we are the proposer of round 0 and put off BuildProposal
	// until WorkAvailable or TimeoutWaitWork (Timeouts.WaitForWork). Not
	// persisted: after a restart the proposer simply waits again.
	waitWork bool

	lockedRound Round
	lockedID    BlockID
	lockedValue []byte
	validRound  Round
	validID     BlockID
	validValue  []byte

	hs       *heightState
	last     *Commit // decision of height-1, for BuildProposal and lagging peers
	restored map[uint64][]WALRecord
	served   map[int]bool // lagging validators answered since the last rebroadcast
	helped   map[int]bool // validators in an earlier round answered since the last rebroadcast
	// ownLate is this validator's late precommit for the last decision and
	// ownAtt its attestation, re-sent by rebroadcast once per round while
	// the next height is late (sentRound: the last round they were sent
	// in). attestDue asks rebroadcast to attest, until it succeeds (after a
	// catch-up decision, a restart, or a failed ExtendVote).
	// noAttest: the application refused to attest the last decision
	// (ErrNoAttestation); nothing is tried again until the next one.
	ownLate, ownAtt *Vote
	attestDue       bool
	noAttest        bool
	sentRound       Round

	evidence []Evidence
	out      Ready
	handed   readyMark
}

// RoundState is a snapshot of the paper's per-process variables.
type RoundState struct {
	Height      uint64
	Round       Round
	Step        Step
	LockedRound Round
	LockedID    BlockID
	ValidRound  Round
	ValidID     BlockID
	Self        int
}

// NewMachine builds a machine. signer may be nil (or a key outside the
// validator set) for a node that follows without voting. restored are the WAL
// records persisted before a restart, in the order they were emitted; each
// must carry this validator's valid signature (ErrCorruptWAL otherwise).
func NewMachine(cfg Config, app Application, signer Signer, restored []WALRecord) (*Machine, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	if app == nil {
		return nil, fmt.Errorf("%w: nil application", ErrConfig)
	}
	m := &Machine{cfg: cfg, vals: cfg.Validators, app: app, signer: signer, self: -1,
		restored: make(map[uint64][]WALRecord), served: make(map[int]bool), helped: make(map[int]bool)}
	if signer != nil {
		if i, ok := m.vals.IndexOf(signer.PubKey()); ok {
			m.self = i
		}
	}
	for n, r := range restored {
		if err := m.checkRecord(r); err != nil {
			return nil, fmt.Errorf("record %d: %w", n, err)
		}
		m.restored[r.Height()] = append(m.restored[r.Height()], r)
	}
	return m, nil
}

func (m *Machine) checkRecord(r WALRecord) error {
	ok := false
	switch r.Kind {
	case RecordVote:
		ok = r.Vote != nil && m.self >= 0 && r.Vote.Validator == m.self && verifyVote(m.cfg.Verifier, m.cfg.ChainID, m.vals, r.Vote)
	case RecordProposal:
		ok = r.Proposal != nil && m.self >= 0 && r.Proposal.Proposer == m.self && verifyProposal(m.cfg.Verifier, m.cfg.ChainID, m.vals, r.Proposal)
	case RecordValid:
		ok = r.Proposal != nil && verifyProposal(m.cfg.Verifier, m.cfg.ChainID, m.vals, r.Proposal)
	}
	if !ok || r.Height() == 0 {
		return fmt.Errorf("%w: kind %d", ErrCorruptWAL, r.Kind)
	}
	return nil
}

// Start begins consensus at height (the paper's "upon start"). last is the
// decision of height-1 (nil at the first height); after a restart the node
// takes both from its application's durable state.
func (m *Machine) Start(height uint64, last *Commit) error {
	if m.started {
		return fmt.Errorf("%w: Start called twice", ErrConfig)
	}
	if height == 0 || (last != nil && (last.Cert == nil || last.Cert.Height+1 != height)) {
		return fmt.Errorf("%w: start height %d with last commit %v", ErrConfig, height, last != nil)
	}
	m.started, m.last = true, last
	// Our extension for the last decision, if the certificate lacks it, at
	// the first rebroadcast: Start must not fail on the application.
	m.attestDue = m.self >= 0 && last != nil && !last.Cert.has(m.self)
	for h := range m.restored {
		if h < height {
			delete(m.restored, h)
		}
	}
	m.schedule(TimeoutRebroadcast, 0)
	m.enterHeight(height)
	m.run()
	return m.takeErrs(nil)
}

// Step feeds one input: a *Proposal, *Vote or *Commit received from the
// network, a TimeoutEvent that fired, or WorkAvailable from the local node
// (ignored, without output, unless the proposer is waiting for work). An
// error wrapping ErrMalformed, ErrInvalidSignature, ErrUnknownValidator,
// ErrNotProposer or ErrInvalidCommit means the input was rejected (blame the
// peer; Metrics.MessageRejected is told); ErrApplication means an application
// call failed and the machine went on safely; ErrHalted is final.
func (m *Machine) Step(in Input) error {
	if m.halted != nil {
		return m.halted
	}
	if !m.started {
		return fmt.Errorf("%w: Step before Start", ErrConfig)
	}
	var err error
	switch x := in.(type) {
	case *Proposal:
		err = m.onProposal(x)
	case *Vote:
		err = m.onVote(x)
	case *Commit:
		err = m.onCommit(x)
	case TimeoutEvent:
		m.onTimeout(x)
	case WorkAvailable:
		if !m.waitWork {
			return nil
		}
		m.endWaitWork()
	default:
		err = fmt.Errorf("%w: input %T", ErrMalformed, in)
	}
	m.reportRejected(err)
	m.run()
	return m.takeErrs(err)
}

// StepBytes decodes a message received from the network and steps it. Only
// Messages decode: WorkAvailable and TimeoutEvent never come from the wire.
func (m *Machine) StepBytes(b []byte) error {
	msg, err := DecodeMessage(b)
	if err != nil {
		m.reportRejected(err)
		return err
	}
	return m.Step(msg)
}

func (m *Machine) reportRejected(err error) {
	if reason := rejectReason(err); reason != "" {
		m.cfg.Metrics.MessageRejected(reason)
	}
}

func (m *Machine) takeErrs(err error) error {
	if m.halted != nil {
		return m.halted
	}
	if len(m.errs) > 0 {
		err = errors.Join(append([]error{err}, m.errs...)...)
		m.errs = nil
	}
	return err
}

func (m *Machine) appErr(call string, err error) {
	m.errs = append(m.errs, fmt.Errorf("%w: %s at height %d round %d: %w", ErrApplication, call, m.height, m.round, err))
}

// HasReady reports whether Ready has anything to do.
func (m *Machine) HasReady() bool { return !m.out.IsEmpty() }

// Ready returns what must be persisted, sent, scheduled and noted since the
// last Advance. Follow Ready's documented order, then call Advance.
func (m *Machine) Ready() Ready {
	m.handed = m.out.mark()
	return m.out
}

// Advance acknowledges the last Ready; anything produced after it stays.
func (m *Machine) Advance() {
	m.out.advance(m.handed)
	m.handed = readyMark{}
}

// State returns the current round state.
func (m *Machine) State() RoundState {
	return RoundState{Height: m.height, Round: m.round, Step: m.step, LockedRound: m.lockedRound, LockedID: m.lockedID,
		ValidRound: m.validRound, ValidID: m.validID, Self: m.self}
}

// Evidence returns all equivocation found so far.
func (m *Machine) Evidence() []Evidence { return m.evidence }

// LastCommit returns the decision of the previous height.
func (m *Machine) LastCommit() *Commit { return m.last }

// --- heights and rounds ---

// enterHeight resets the per-height variables (line 53) and starts round 0,
// or, after a restart, the round of the last message this validator signed.
func (m *Machine) enterHeight(h uint64) {
	m.height = h
	m.hs = newHeightState(m.vals.Size())
	m.lockedRound, m.lockedID, m.lockedValue = NoRound, NilBlockID, nil
	m.validRound, m.validID, m.validValue = NoRound, NilBlockID, nil
	recs := m.restored[h]
	delete(m.restored, h)
	if len(recs) == 0 {
		m.startRound(0)
		return
	}
	m.restore(recs)
}

// startRound is StartRound (lines 11-21).
func (m *Machine) startRound(r Round) {
	m.round, m.waitWork = r, false
	m.enterStep(StepPropose)
	if m.self >= 0 && m.cfg.Proposer.Proposer(m.height, r) == m.self {
		if m.shouldWaitForWork() {
			m.waitWork = true
			m.schedule(TimeoutWaitWork, r)
			return
		}
		m.propose()
		return
	}
	m.schedule(TimeoutPropose, r) // line 21
}

// enterStep moves to step s of the current round.
func (m *Machine) enterStep(s Step) {
	m.step = s
	m.cfg.Metrics.StepEntered(m.height, m.round, s)
}

// shouldWaitForWork reports whether the proposer should put off getValue()
// (line 16) until the application has work: only in round 0, only for a new
// value (never when re-sending a signed proposal or re-proposing validValue),
// and only if the application says it has nothing yet.
func (m *Machine) shouldWaitForWork() bool {
	if m.round != 0 || m.cfg.Timeouts.WaitForWork <= 0 || m.validValue != nil || m.hs.ownProposal[m.round] != nil {
		return false
	}
	ws, ok := m.app.(WorkSignaler)
	return ok && !ws.HasWork(m.height)
}

// endWaitWork proposes after waiting for work (WorkAvailable or
// TimeoutWaitWork), at most once per wait.
func (m *Machine) endWaitWork() {
	if !m.waitWork {
		return
	}
	m.waitWork = false
	m.propose()
}

// propose is lines 14-17: re-propose validValue with validRound, or a new value.
func (m *Machine) propose() {
	m.waitWork = false
	if p := m.hs.ownProposal[m.round]; p != nil { // signed before a restart: never sign another
		m.send(Broadcast, p)
		return
	}
	value, vr, fresh := m.validValue, m.validRound, false
	if value == nil {
		var lc *CommitCertificate
		if m.last != nil {
			lc = m.last.Cert
		}
		v, err := m.app.BuildProposal(m.height, lc)
		if err == nil && len(v) > MaxValueSize {
			err = fmt.Errorf("value of %d bytes over MaxValueSize", len(v))
		}
		if err != nil {
			m.appErr("BuildProposal", err)
			m.schedule(TimeoutPropose, m.round) // let the round time out like a silent proposer's
			return
		}
		value, vr, fresh = v, NoRound, true
	}
	p := NewProposal(m.height, m.round, vr, m.self, value)
	SignProposal(m.cfg.ChainID, m.signer, p)
	m.hs.ownProposal[m.round] = p
	m.persist(WALRecord{Kind: RecordProposal, Proposal: p})
	m.send(Broadcast, p)
	m.addProposal(m.roundState(m.round), p)
	if fresh {
		m.hs.values[p.BlockID()].validity = 1 // our own getValue() output
	}
}

// run applies the upon-rules until none fires. Line 49 and line 55 only need
// looking at when a round got a new proposal or vote; the rules of the
// current round are cheap to re-check.
func (m *Machine) run() {
	for m.halted == nil {
		if len(m.hs.touched) > 0 {
			touched := m.hs.touched
			m.hs.touched = nil
			if m.tryDecide(touched) || m.trySkipRound(touched) {
				continue
			}
		}
		if !m.tryCurrentRound() {
			return
		}
	}
}

// tryDecide is lines 49-54, for any round of the height.
func (m *Machine) tryDecide(touched []Round) bool {
	for _, r := range touched {
		rs := m.hs.rounds[r]
		if rs == nil {
			continue
		}
		for _, p := range rs.proposals {
			id := p.BlockID()
			if m.vals.IsQuorum(rs.precommits.power[id]) && m.valid(id) {
				m.decide(r, p.Value, m.certificate(r, id), true)
				return true
			}
		}
	}
	return false
}

// trySkipRound is lines 55-56: f+1 of the voting power is already in a higher round.
func (m *Machine) trySkipRound(touched []Round) bool {
	best := NoRound
	for _, r := range touched {
		if r > m.round && r > best {
			if rs := m.hs.rounds[r]; rs != nil && m.vals.IsOneThird(rs.seenPower) {
				best = r
			}
		}
	}
	if best == NoRound {
		return false
	}
	m.startRound(best)
	return true
}

// tryCurrentRound fires at most one rule of the current round and reports
// whether it did.
func (m *Machine) tryCurrentRound() bool {
	rs := m.roundState(m.round)
	if m.step == StepPropose {
		for _, p := range rs.proposals {
			id := p.BlockID()
			switch {
			case p.ValidRound == NoRound: // lines 22-27
				if m.valid(id) && (m.lockedRound == NoRound || m.lockedID == id) {
					m.castVote(Prevote, id)
				} else {
					m.castVote(Prevote, NilBlockID)
				}
				m.enterStep(StepPrevote)
				return true
			case p.ValidRound < m.round && m.hasPOL(p.ValidRound, id): // lines 28-33
				if m.valid(id) && (m.lockedRound <= p.ValidRound || m.lockedID == id) {
					m.castVote(Prevote, id)
				} else {
					m.castVote(Prevote, NilBlockID)
				}
				m.enterStep(StepPrevote)
				return true
			}
		}
	}
	if m.step == StepPrevote && !rs.prevoteWaitDone && m.vals.IsQuorum(rs.prevotes.any) { // lines 34-35
		rs.prevoteWaitDone = true
		m.schedule(TimeoutPrevote, m.round)
		return true
	}
	if m.step >= StepPrevote && !rs.polDone { // lines 36-43
		for _, p := range rs.proposals {
			id := p.BlockID()
			if !m.vals.IsQuorum(rs.prevotes.power[id]) || !m.valid(id) {
				continue
			}
			rs.polDone = true
			m.persist(WALRecord{Kind: RecordValid, Proposal: p})
			if m.step == StepPrevote {
				if v := m.castVote(Precommit, id); v == nil || v.BlockID == id {
					m.lockedValue, m.lockedID, m.lockedRound = p.Value, id, m.round
				}
				m.enterStep(StepPrecommit)
			}
			m.validValue, m.validID, m.validRound = p.Value, id, m.round
			return true
		}
	}
	if m.step == StepPrevote && m.vals.IsQuorum(rs.prevotes.power[NilBlockID]) { // lines 44-46
		m.castVote(Precommit, NilBlockID)
		m.enterStep(StepPrecommit)
		return true
	}
	if !rs.precommitWaitDone && m.vals.IsQuorum(rs.precommits.any) { // lines 47-48
		rs.precommitWaitDone = true
		m.schedule(TimeoutPrecommit, m.round)
		return true
	}
	return false
}

func (m *Machine) hasPOL(r Round, id BlockID) bool {
	rs := m.hs.rounds[r]
	return rs != nil && m.vals.IsQuorum(rs.prevotes.power[id])
}

// valid is the paper's valid(v), asked of the application once per value.
func (m *Machine) valid(id BlockID) bool {
	e := m.hs.values[id]
	if e == nil {
		return false
	}
	if e.validity == 0 {
		e.validity = 1
		if err := m.app.ValidateProposal(m.height, e.value); err != nil {
			e.validity = -1
			m.cfg.Metrics.ValueRejected(m.height, err)
		}
	}
	return e.validity > 0
}

// decide is lines 51-54 (and the catch-up path: tallied is false for a
// decision learnt from a Commit).
func (m *Machine) decide(r Round, value []byte, cert *CommitCertificate, tallied bool) {
	if err := m.app.Finalize(m.height, value, cert); err != nil {
		m.halted = fmt.Errorf("%w: Finalize at height %d: %w", ErrHalted, m.height, err)
		return
	}
	m.cfg.Metrics.HeightCommitted(m.height, r, m.cfg.Proposer.Proposer(m.height, r))
	c := &Commit{Cert: cert, Value: value}
	m.out.Committed = append(m.out.Committed, c)
	m.last, m.ownLate, m.ownAtt, m.attestDue, m.noAttest, m.sentRound = c, nil, nil, false, false, 0
	if m.self >= 0 && !cert.has(m.self) {
		switch own := m.hs.ownVotes[voteKey{r, Precommit}]; {
		case own != nil && own.BlockID == cert.BlockID:
			// We precommitted the block in the deciding round, but the
			// decision did not count it: it joins as a late precommit.
			m.last, m.ownLate = withLate(m.last, own), own
			m.send(Broadcast, own)
		case tallied:
			m.attestDue = true
			m.attest()
		default:
			// Learnt from a Commit while catching up: attest only if we
			// are still at the next height at the next rebroadcast, so a
			// catch-up of many heights does not extend every one of them.
			m.attestDue = true
		}
	}
	m.enterHeight(m.height + 1)
}

// attest signs and broadcasts this validator's extension for the last
// decision, whose certificate lacks our precommit (we precommitted nil, or
// not in time). The application decides the previous height from the
// extensions the next block carries; without this, a certificate holding a
// quorum that includes a validator with wrong shares and leaves out an
// honest one could never be outvoted, and every later proposal would be
// refused. Before enterHeight, so that our own next proposal carries it.
func (m *Machine) attest() {
	c := m.last
	ext, err := m.app.ExtendVote(c.Cert.Height, c.Cert.Round, c.Value)
	if err == nil && (len(ext) == 0 || len(ext) > MaxExtensionSize) {
		err = fmt.Errorf("extension of %d bytes (1 to MaxExtensionSize)", len(ext))
	}
	if errors.Is(err, ErrNoAttestation) {
		m.attestDue, m.noAttest = false, true
		return
	}
	if err != nil {
		m.appErr("ExtendVote (attestation)", err)
		return
	}
	v := &Vote{Type: Attestation, Height: c.Cert.Height, Round: AttestationRound, BlockID: c.Cert.BlockID, Validator: m.self, Extension: ext}
	SignVote(m.cfg.ChainID, m.signer, v)
	m.last, m.ownAtt, m.attestDue = withLate(c, v), v, false
	m.send(Broadcast, v)
}

// withLate returns c with v (a precommit or an attestation for c's block
// and round, checked) added to its certificate; a late precommit replaces
// the same validator's attestation.
func withLate(c *Commit, v *Vote) *Commit {
	cert := *c.Cert
	s := CommitSig{Validator: v.Validator, Extension: v.Extension, Signature: v.Signature}
	if v.Type == Precommit {
		cert.Sigs = insertSig(cert.Sigs, s)
		cert.Attested = slices.DeleteFunc(slices.Clone(cert.Attested), func(a CommitSig) bool { return a.Validator == v.Validator })
	} else {
		cert.Attested = insertSig(cert.Attested, s)
	}
	return &Commit{Cert: &cert, Value: c.Value}
}

// insertSig returns a copy of sigs (strictly increasing validators, not
// holding s's) with s in its place.
func insertSig(sigs []CommitSig, s CommitSig) []CommitSig {
	at, _ := slices.BinarySearchFunc(sigs, s.Validator, func(x CommitSig, v int) int { return x.Validator - v })
	out := make([]CommitSig, 0, len(sigs)+1)
	out = append(out, sigs[:at]...)
	out = append(out, s)
	return append(out, sigs[at:]...)
}

// certificate collects the counted precommits for id in round r.
func (m *Machine) certificate(r Round, id BlockID) *CommitCertificate {
	vs := &m.hs.rounds[r].precommits
	c := &CommitCertificate{Height: m.height, Round: r, BlockID: id}
	for i := range vs.votes {
		if v := vs.counted(i, id); v != nil {
			c.Sigs = append(c.Sigs, CommitSig{Validator: i, Extension: v.Extension, Signature: v.Signature})
		}
	}
	return c
}

// castVote signs and broadcasts this validator's vote of the current round,
// or, if one of that type was already signed in this round (before a crash),
// re-sends that one: a validator never signs two votes for one (h, r, type).
// It returns the vote that stands, nil for an observer.
func (m *Machine) castVote(t VoteType, id BlockID) *Vote {
	if m.self < 0 {
		return nil
	}
	key := voteKey{m.round, t}
	if v := m.hs.ownVotes[key]; v != nil {
		m.send(Broadcast, v)
		return v
	}
	v := &Vote{Type: t, Height: m.height, Round: m.round, BlockID: id, Validator: m.self}
	if t == Precommit && !id.IsNil() {
		ext, err := m.app.ExtendVote(m.height, m.round, m.hs.values[id].value)
		if err == nil && len(ext) > MaxExtensionSize {
			err = fmt.Errorf("extension of %d bytes over MaxExtensionSize", len(ext))
		}
		if err != nil {
			m.appErr("ExtendVote", err)
			v.BlockID = NilBlockID // precommitting nil is always safe
		} else {
			v.Extension = ext
		}
	}
	SignVote(m.cfg.ChainID, m.signer, v)
	m.hs.ownVotes[key] = v
	m.persist(WALRecord{Kind: RecordVote, Vote: v})
	m.send(Broadcast, v)
	m.addVote(m.roundState(m.round), v, true)
	return v
}

// --- inputs ---

func (m *Machine) onProposal(p *Proposal) error {
	if p == nil {
		return fmt.Errorf("%w: nil proposal", ErrMalformed)
	}
	if p.Height != m.height {
		if p.Height < m.height {
			return m.onLagging(p.Proposer, p.Height, func() bool { return verifyProposal(m.cfg.Verifier, m.cfg.ChainID, m.vals, p) })
		}
		return nil
	}
	if !m.vals.Has(p.Proposer) {
		return fmt.Errorf("%w: proposer %d", ErrUnknownValidator, p.Proposer)
	}
	if p.Round < 0 || p.Round > MaxRound || p.ValidRound < NoRound || p.ValidRound >= p.Round || len(p.Signature) != SignatureSize {
		return fmt.Errorf("%w: proposal round %d validRound %d", ErrMalformed, p.Round, p.ValidRound)
	}
	if p.Proposer == m.self {
		return nil // our own, echoed back
	}
	if m.cfg.Proposer.Proposer(m.height, p.Round) != p.Proposer {
		return fmt.Errorf("%w: %d at %d/%d", ErrNotProposer, p.Proposer, p.Height, p.Round)
	}
	rs := m.hs.rounds[p.Round]
	if rs != nil {
		for _, q := range rs.proposals {
			if q.BlockID() == p.BlockID() && q.ValidRound == p.ValidRound {
				return nil // duplicate
			}
		}
	}
	if !verifyProposal(m.cfg.Verifier, m.cfg.ChainID, m.vals, p) {
		return fmt.Errorf("%w: proposal %d/%d by %d", ErrInvalidSignature, p.Height, p.Round, p.Proposer)
	}
	if rs != nil && len(rs.proposals) > 0 {
		m.addEvidence(newProposalEvidence(rs.proposals[0], p))
		if len(rs.proposals) >= maxProposalsPerRound {
			return nil
		}
	}
	if !m.admitRound(p.Proposer, p.Round) {
		return nil
	}
	m.addProposal(m.roundState(p.Round), p)
	return nil
}

func (m *Machine) onVote(v *Vote) error {
	if v == nil {
		return fmt.Errorf("%w: nil vote", ErrMalformed)
	}
	if v.Height != m.height {
		if v.Height < m.height {
			m.addLate(v)
			if v.Type == Attestation {
				return nil // its sender decided that height: it is not behind
			}
			return m.onLagging(v.Validator, v.Height, func() bool { return verifyVote(m.cfg.Verifier, m.cfg.ChainID, m.vals, v) })
		}
		return nil
	}
	if v.Type == Attestation {
		return nil // for a height we have not decided yet; its sender re-sends it while that matters
	}
	if !m.vals.Has(v.Validator) {
		return fmt.Errorf("%w: voter %d", ErrUnknownValidator, v.Validator)
	}
	if (v.Type != Prevote && v.Type != Precommit) || v.Round < 0 || v.Round > MaxRound || len(v.Signature) != SignatureSize ||
		(len(v.Extension) > 0 && (v.Type != Precommit || v.BlockID.IsNil())) {
		return fmt.Errorf("%w: vote type %d round %d", ErrMalformed, v.Type, v.Round)
	}
	if v.Validator == m.self {
		return nil
	}
	var prev *Vote
	rs := m.hs.rounds[v.Round]
	if rs != nil {
		vs := rs.set(v.Type)
		if vs.has(v.Validator, v.BlockID) {
			m.helpRound(v.Validator, v.Round)
			return nil // duplicate (a different extension for the same block is ignored too)
		}
		prev = vs.get(v.Validator)
	}
	if !verifyVote(m.cfg.Verifier, m.cfg.ChainID, m.vals, v) {
		return fmt.Errorf("%w: %s %d/%d by %d", ErrInvalidSignature, v.Type, v.Height, v.Round, v.Validator)
	}
	if prev != nil {
		m.addEvidence(newVoteEvidence(prev, v))
		m.addExtraVote(rs, v)
		return nil
	}
	if !m.admitRound(v.Validator, v.Round) {
		return nil
	}
	if v.Round < m.round {
		m.cfg.Metrics.LateVote(v.Validator, v.Type)
	}
	m.addVote(m.roundState(v.Round), v, false)
	m.helpRound(v.Validator, v.Round)
	return nil
}

// helpRound answers a validator that is still in an earlier round of our
// height with the precommits we hold for that round (and our prevote): those
// who moved on timed out on 2f+1 precommits, and rebroadcast only re-sends
// the current round, so without this a validator whose precommits were lost
// could wait for them forever. Once per validator per rebroadcast period.
func (m *Machine) helpRound(i int, r Round) {
	if r >= m.round || m.helped[i] {
		return
	}
	rs := m.hs.rounds[r]
	if rs == nil {
		return
	}
	m.helped[i] = true
	if v := m.hs.ownVotes[voteKey{r, Prevote}]; v != nil {
		m.send(i, v)
	}
	for _, v := range rs.precommits.votes {
		if v != nil && v.Validator != i {
			m.send(i, v)
		}
	}
}

// onCommit accepts a decision of the current height proven by a certificate:
// how a validator that missed the precommits catches up.
func (m *Machine) onCommit(c *Commit) error {
	if c == nil || c.Cert == nil {
		return fmt.Errorf("%w: nil commit", ErrMalformed)
	}
	if c.Cert.Height != m.height {
		return nil
	}
	if HashValue(c.Value) != c.Cert.BlockID {
		return fmt.Errorf("%w: value does not hash to the certified BlockID", ErrInvalidCommit)
	}
	if err := verifyCommit(m.cfg.Verifier, m.cfg.ChainID, m.vals, c.Cert); err != nil {
		return err
	}
	// Keep only extensions the application accepts, and require a quorum of them.
	cert := &CommitCertificate{Height: c.Cert.Height, Round: c.Cert.Round, BlockID: c.Cert.BlockID}
	var power int64
	for _, s := range c.Cert.Sigs {
		if m.verifyExtension(m.height, s.Validator, c.Value, s.Extension) {
			cert.Sigs = append(cert.Sigs, s)
			power += m.vals.Power(s.Validator)
		}
	}
	if !m.vals.IsQuorum(power) {
		return fmt.Errorf("%w: extensions of only %d voting power verify", ErrInvalidCommit, power)
	}
	m.decide(cert.Round, c.Value, cert, false)
	return nil
}

// addLate adds to the last commit certificate a precommit for the last
// decided block that arrived after the decision, or an attestation (see
// Attestation) of a validator whose precommit the certificate lacks, so the
// next proposal carries its extension too: the ledger decides the previous
// height from the extensions the next block carries, and more of them let it
// cross-check decryption shares. The vote must be for the decided block and
// round, validly signed, and its extension must verify.
func (m *Machine) addLate(v *Vote) {
	if m.last == nil || v.Height != m.last.Cert.Height || v.BlockID != m.last.Cert.BlockID || !m.vals.Has(v.Validator) || v.Validator == m.self {
		return
	}
	switch v.Type {
	case Precommit:
		if v.Round != m.last.Cert.Round {
			return // a precommit of another round is not part of this certificate
		}
	case Attestation:
		if v.Round != AttestationRound {
			return
		}
	default:
		return
	}
	cert := m.last.Cert
	if cert.has(v.Validator) || (v.Type == Attestation && cert.attested(v.Validator)) {
		return
	}
	if !verifyVote(m.cfg.Verifier, m.cfg.ChainID, m.vals, v) {
		return
	}
	if !m.verifyExtension(v.Height, v.Validator, m.last.Value, v.Extension) {
		return
	}
	m.last = withLate(m.last, v)
	m.cfg.Metrics.LateVote(v.Validator, v.Type)
}

// onLagging answers a validator still working on an earlier height: the
// previous decision from memory, older ones through Ready.Serve. Once per
// validator per rebroadcast period, and only for a validly signed message,
// so a stranger cannot make us send megabytes.
func (m *Machine) onLagging(i int, height uint64, verify func() bool) error {
	if !m.vals.Has(i) || i == m.self || m.served[i] {
		return nil
	}
	if !verify() {
		return fmt.Errorf("%w: message of height %d by %d", ErrInvalidSignature, height, i)
	}
	m.served[i] = true
	if height+1 == m.height && m.last != nil {
		m.send(i, m.last)
	} else {
		m.out.Serve = append(m.out.Serve, CommitRequest{Validator: i, Height: height})
	}
	return nil
}

func (m *Machine) onTimeout(t TimeoutEvent) {
	switch t.Kind {
	case TimeoutRebroadcast:
		m.rebroadcast()
		m.schedule(TimeoutRebroadcast, 0)
		return
	}
	if t.Height != m.height || t.Round != m.round {
		return // stale
	}
	switch {
	case t.Kind == TimeoutWaitWork:
		m.endWaitWork()
	case t.Kind == TimeoutPropose && m.step == StepPropose: // lines 57-60
		m.castVote(Prevote, NilBlockID)
		m.enterStep(StepPrevote)
	case t.Kind == TimeoutPrevote && m.step == StepPrevote: // lines 61-64
		m.castVote(Precommit, NilBlockID)
		m.enterStep(StepPrecommit)
	case t.Kind == TimeoutPrecommit && m.round < MaxRound: // lines 65-67
		m.startRound(m.round + 1)
	}
}

// rebroadcast re-sends what a correct process must eventually get to every
// other: our messages of the current round, and the prevotes that justify
// validRound (without them a proposal re-proposed with that validRound cannot
// be accepted by line 28 after a partition).
func (m *Machine) rebroadcast() {
	clear(m.served)
	clear(m.helped)
	if m.self < 0 {
		return
	}
	if m.last != nil {
		m.rebroadcastLate()
	}
	if p := m.hs.ownProposal[m.round]; p != nil {
		m.send(Broadcast, p)
	}
	for _, t := range [...]VoteType{Prevote, Precommit} {
		if v := m.hs.ownVotes[voteKey{m.round, t}]; v != nil {
			m.send(Broadcast, v)
		}
	}
	if rs := m.hs.rounds[m.validRound]; rs != nil && m.validRound >= 0 && m.validRound != m.round {
		vs := &rs.prevotes
		for i := range vs.votes {
			if v := vs.counted(i, m.validID); v != nil {
				m.send(Broadcast, v)
			}
		}
	}
}

// rebroadcastLate makes sure every validator can carry our extension for
// the last decision. An attestation that is due is retried until it
// succeeds (or the application says there is none to make). Once the next
// height has lost two rounds, we attest even if our own certificate holds
// our precommit: another validator may have decided the same block in
// another round, without it, and an attestation joins a certificate of any
// round (not at round 1: a proposer that is down costs one round, and every
// validator attesting then would cost N extensions for nothing). What we
// sent is re-sent in rounds 1, 2, 4, 8, ... of the next height, in case it
// was lost.
func (m *Machine) rebroadcastLate() {
	if m.noAttest {
		return
	}
	if m.ownAtt == nil && (m.attestDue || m.round >= 2) {
		m.attest()
		m.sentRound = m.round
		return
	}
	if m.round == 0 || m.round&(m.round-1) != 0 || m.sentRound == m.round {
		return
	}
	m.sentRound = m.round
	for _, v := range [...]*Vote{m.ownAtt, m.ownLate} {
		if v != nil {
			m.send(Broadcast, v)
		}
	}
}

// --- bookkeeping ---

func (m *Machine) roundState(r Round) *roundState {
	rs := m.hs.rounds[r]
	if rs == nil {
		rs = &roundState{}
		m.hs.rounds[r] = rs
	}
	return rs
}

func (m *Machine) addProposal(rs *roundState, p *Proposal) {
	rs.proposals = append(rs.proposals, p)
	m.markSeen(rs, p.Proposer)
	m.learnValue(p.BlockID(), p.Value)
	m.hs.touched = append(m.hs.touched, p.Round)
}

// addVote stores a vote already checked. Non-nil precommits of others count
// for their block only once their extension verifies, which needs the value.
func (m *Machine) addVote(rs *roundState, v *Vote, own bool) {
	vs := rs.set(v.Type)
	vs.init(m.vals.Size())
	i, p := v.Validator, m.vals.Power(v.Validator)
	vs.votes[i] = v
	vs.any += p
	m.markSeen(rs, i)
	switch e := m.hs.values[v.BlockID]; {
	case v.Type == Prevote || v.BlockID.IsNil() || own:
		vs.status[i] = voteCounted
		vs.power[v.BlockID] += p
	case e != nil:
		m.checkExtension(vs, i, e.value)
	default:
		vs.status[i] = votePending
		m.hs.pendingExt[v.BlockID] = append(m.hs.pendingExt[v.BlockID], voteRef{v.Round, i})
	}
	m.hs.touched = append(m.hs.touched, v.Round)
}

// addExtraVote counts a further vote of an equivocating validator (see
// voteSet), if it is for nil or for a value this node holds.
func (m *Machine) addExtraVote(rs *roundState, v *Vote) {
	vs := rs.set(v.Type)
	p := m.vals.Power(v.Validator)
	if !v.BlockID.IsNil() {
		e := m.hs.values[v.BlockID]
		if e == nil {
			return
		}
		if v.Type == Precommit && !m.verifyExtension(m.height, v.Validator, e.value, v.Extension) {
			return
		}
	}
	vs.extra = append(vs.extra, v)
	vs.power[v.BlockID] += p
	m.hs.touched = append(m.hs.touched, v.Round)
}

func (m *Machine) checkExtension(vs *voteSet, i int, value []byte) {
	v := vs.votes[i]
	if !m.verifyExtension(m.height, i, value, v.Extension) {
		vs.status[i] = voteRejected
		return
	}
	vs.status[i] = voteCounted
	vs.power[v.BlockID] += m.vals.Power(i)
}

// verifyExtension asks the application about validator i's extension on its
// precommit for value at height, and reports a rejection.
func (m *Machine) verifyExtension(height uint64, i int, value, ext []byte) bool {
	err := m.app.VerifyExtension(height, i, value, ext)
	if err != nil {
		m.cfg.Metrics.ExtensionRejected(height, i, err)
	}
	return err == nil
}

// learnValue records value bytes and verifies the extensions that waited for them.
func (m *Machine) learnValue(id BlockID, value []byte) {
	if e := m.hs.values[id]; e != nil {
		e.refs++
		return
	}
	m.hs.values[id] = &valueEntry{value: value, refs: 1}
	for _, ref := range m.hs.pendingExt[id] {
		rs := m.hs.rounds[ref.round]
		if rs == nil {
			continue
		}
		if vs := &rs.precommits; vs.status[ref.validator] == votePending && vs.votes[ref.validator].BlockID == id {
			m.checkExtension(vs, ref.validator, value)
			m.hs.touched = append(m.hs.touched, ref.round)
		}
	}
	delete(m.hs.pendingExt, id)
}

func (m *Machine) markSeen(rs *roundState, i int) {
	if rs.seen == nil {
		rs.seen = make([]bool, m.vals.Size())
	}
	if !rs.seen[i] {
		rs.seen[i] = true
		rs.seenPower += m.vals.Power(i)
	}
}

// admitRound decides whether a message of validator i for round r may be
// stored. Rounds up to ours always may; above ours each validator keeps at
// most its two highest rounds, older ones are evicted.
func (m *Machine) admitRound(i int, r Round) bool {
	if r <= m.round {
		return true
	}
	slots := &m.hs.future[i]
	free, low := -1, -1
	for k, s := range slots {
		switch {
		case s == r:
			return true
		case s <= m.round:
			free = k
		case low < 0 || s < slots[low]:
			low = k
		}
	}
	if free >= 0 {
		slots[free] = r
		return true
	}
	if r < slots[low] {
		return false
	}
	m.evict(i, slots[low])
	slots[low] = r
	return true
}

// evict forgets validator i's messages of future round r.
func (m *Machine) evict(i int, r Round) {
	rs := m.hs.rounds[r]
	if rs == nil || rs.seen == nil || !rs.seen[i] {
		return
	}
	kept := rs.proposals[:0]
	for _, p := range rs.proposals {
		if p.Proposer != i {
			kept = append(kept, p)
			continue
		}
		id := p.BlockID()
		if e := m.hs.values[id]; e != nil {
			if e.refs--; e.refs <= 0 {
				delete(m.hs.values, id)
			}
		}
	}
	rs.proposals = kept
	for _, vs := range [...]*voteSet{&rs.prevotes, &rs.precommits} {
		v := vs.get(i)
		if v == nil {
			continue
		}
		p := m.vals.Power(i)
		vs.any -= p
		switch vs.status[i] {
		case voteCounted:
			vs.power[v.BlockID] -= p
		case votePending:
			refs := m.hs.pendingExt[v.BlockID]
			for k, ref := range refs {
				if ref == (voteRef{r, i}) {
					refs = append(refs[:k], refs[k+1:]...)
					break
				}
			}
			if len(refs) == 0 {
				delete(m.hs.pendingExt, v.BlockID)
			} else {
				m.hs.pendingExt[v.BlockID] = refs
			}
		}
		vs.votes[i], vs.status[i] = nil, voteAbsent
		kept := vs.extra[:0]
		for _, x := range vs.extra {
			if x.Validator == i {
				vs.power[x.BlockID] -= p
			} else {
				kept = append(kept, x)
			}
		}
		vs.extra = kept
	}
	rs.seen[i] = false
	rs.seenPower -= m.vals.Power(i)
	if rs.seenPower == 0 {
		delete(m.hs.rounds, r)
	}
}

func (m *Machine) addEvidence(e Evidence) {
	k := evidenceKey{e.Validator, e.Round, e.Kind, e.VoteType}
	if m.hs.evidence[k] {
		return
	}
	m.hs.evidence[k] = true
	m.cfg.Metrics.Equivocation(e.Validator)
	m.evidence = append(m.evidence, e)
	m.out.Evidence = append(m.out.Evidence, e)
}

func (m *Machine) persist(r WALRecord) { m.out.Persist = append(m.out.Persist, r) }

func (m *Machine) send(to int, msg Message) {
	m.out.Send = append(m.out.Send, Envelope{To: to, Msg: msg})
}

func (m *Machine) schedule(kind TimeoutKind, r Round) {
	m.out.Timeouts = append(m.out.Timeouts, TimeoutRequest{
		Event:    TimeoutEvent{Kind: kind, Height: m.height, Round: r},
		Duration: m.cfg.Timeouts.Duration(kind, r),
	})
}
