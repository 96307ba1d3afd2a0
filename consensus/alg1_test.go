package consensus

import (
	"testing"
)

// Tests named after the lines of Algorithm 1 in "The latest gossip on BFT
// consensus" (Buchman, Kwon, Milosevic 2018). Four validators of power 1
// (f = 1, 2f+1 = 3); proposer(h, r) = r mod 4; the machine under test is
// validator 3 unless said otherwise.

var (
	valX = []byte("value X")
	valY = []byte("value Y")
)

func TestAlg1_Line10_StartBeginsRoundZeroInPropose(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	if st := h.m.State(); st.Height != 1 || st.Round != 0 || st.Step != StepPropose || st.LockedRound != NoRound || st.ValidRound != NoRound {
		t.Fatalf("state %+v", st)
	}
}

func TestAlg1_Line16_ProposerProposesGetValue(t *testing.T) {
	h := newHarness(t, 4, 0)
	h.start(1, nil, nil)
	if len(h.sent) == 0 {
		t.Fatal("nothing sent")
	}
	p, ok := h.sent[0].Msg.(*Proposal)
	if !ok || p.ValidRound != NoRound || string(p.Value) != "value-1-1" || h.sent[0].To != Broadcast {
		t.Fatalf("sent %+v", h.sent[0])
	}
	if len(h.wal) == 0 || h.wal[0].Kind != RecordProposal || h.wal[0].Proposal != p {
		t.Fatal("the proposal was not persisted before sending")
	}
	// It receives its own proposal (line 22) and prevotes it.
	if v := h.lastVote(Prevote, 0); v.BlockID != p.BlockID() {
		t.Fatalf("prevote %s", v.BlockID)
	}
	if h.app.validated != 0 {
		t.Fatal("valid(v) asked for our own getValue()")
	}
}

func TestAlg1_Line15_ProposerReProposesValidValueWithValidRound(t *testing.T) {
	h := newHarness(t, 4, 1) // proposer of round 1
	h.start(1, nil, nil)
	h.mustStep(h.proposal(0, 0, NoRound, valX))
	h.votes(Prevote, 0, valX, 0, 2, 3) // line 36: validValue = X, validRound = 0
	h.nextRound(0, 2, 3)
	var p *Proposal
	for _, e := range h.sent {
		if q, ok := e.Msg.(*Proposal); ok && q.Round == 1 {
			p = q
		}
	}
	if p == nil || string(p.Value) != string(valX) || p.ValidRound != 0 {
		t.Fatalf("round 1 proposal %+v", p)
	}
	if h.app.built != 0 {
		t.Fatal("getValue() called although validValue was set")
	}
}

func TestAlg1_Line21_NonProposerSchedulesTimeoutPropose(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	if !h.timer(TimeoutPropose, 0) {
		t.Fatal("no timeoutPropose")
	}
	for _, tr := range h.timers {
		if tr.Event.Kind == TimeoutPropose && tr.Duration != DefaultTimeouts().Propose {
			t.Fatalf("duration %v", tr.Duration)
		}
	}
}

func TestAlg1_Line22_PrevoteForValidProposalWhenUnlocked(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.mustStep(h.proposal(0, 0, NoRound, valX))
	if v := h.lastVote(Prevote, 0); v.BlockID != HashValue(valX) {
		t.Fatalf("prevote %s", v.BlockID)
	}
	if h.m.State().Step != StepPrevote {
		t.Fatal("step not prevote")
	}
}

func TestAlg1_Line22_PrevoteNilForInvalidValue(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.app.invalid[HashValue(valX)] = true
	h.mustStep(h.proposal(0, 0, NoRound, valX))
	if v := h.lastVote(Prevote, 0); !v.BlockID.IsNil() {
		t.Fatalf("prevote %s", v.BlockID)
	}
}

func TestAlg1_Line22_PrevoteNilWhenLockedOnOtherValue(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.lockOn(valX, 0, 1, 2)
	h.nextRound(0, 1, 2)
	h.mustStep(h.proposal(1, 1, NoRound, valY))
	if v := h.lastVote(Prevote, 1); !v.BlockID.IsNil() {
		t.Fatalf("locked on X, prevoted %s for a fresh Y", v.BlockID)
	}
}

func TestAlg1_Line22_PrevoteLockedValueProposedAgain(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.lockOn(valX, 0, 1, 2)
	h.nextRound(0, 1, 2)
	h.mustStep(h.proposal(1, 1, NoRound, valX))
	if v := h.lastVote(Prevote, 1); v.BlockID != HashValue(valX) {
		t.Fatalf("prevote %s", v.BlockID)
	}
}

func TestAlg1_Line28_WaitsForTheProofOfLock(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.nextRound(0, 1, 2)
	h.mustStep(h.proposal(1, 1, 0, valX)) // claims validRound 0, no prevotes seen for it
	h.noVote(Prevote, 1)
	h.votes(Prevote, 0, valX, 0, 1) // 2 of 3 needed
	h.noVote(Prevote, 1)
	h.votes(Prevote, 0, valX, 2)
	if v := h.lastVote(Prevote, 1); v.BlockID != HashValue(valX) {
		t.Fatalf("prevote %s", v.BlockID)
	}
}

func TestAlg1_Line28_PrevoteWhenLockedRoundAtMostValidRound(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.lockOn(valX, 0, 1, 2) // locked X in round 0
	h.nextRound(0, 1, 2)
	h.nextRound(0, 1, 2)               // now round 2
	h.votes(Prevote, 1, valY, 0, 1, 2) // a proof-of-lock for Y in round 1 >= lockedRound
	h.mustStep(h.proposal(2, 2, 1, valY))
	if v := h.lastVote(Prevote, 2); v.BlockID != HashValue(valY) {
		t.Fatalf("prevote %s, want Y", v.BlockID)
	}
}

func TestAlg1_Line28_PrevoteNilWhenProofOfLockOlderThanLock(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.nextRound(0, 1, 2)    // round 0 passes without a lock
	h.lockOn(valX, 0, 1, 2) // locked X in round 1
	h.nextRound(0, 1, 2)
	h.votes(Prevote, 0, valY, 0, 1, 2) // proof-of-lock for Y in round 0 < lockedRound
	h.mustStep(h.proposal(2, 2, 0, valY))
	if v := h.lastVote(Prevote, 2); !v.BlockID.IsNil() {
		t.Fatalf("prevote %s, want nil", v.BlockID)
	}
}

func TestAlg1_Line34_TimeoutPrevoteOnAnyTwoThirdsOfPrevotes(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.mustStep(h.proposal(0, 0, NoRound, valX)) // we prevote X
	h.mustStep(h.vote(Prevote, 0, 0, valY))
	if h.timer(TimeoutPrevote, 0) {
		t.Fatal("timeoutPrevote on 2 prevotes")
	}
	h.mustStep(h.vote(Prevote, 1, 0, nil)) // X, Y, nil: 3 of any kind
	if !h.timer(TimeoutPrevote, 0) {
		t.Fatal("no timeoutPrevote")
	}
	n := len(h.timers)
	h.mustStep(h.vote(Prevote, 2, 0, nil))
	for _, tr := range h.timers[n:] {
		if tr.Event.Kind == TimeoutPrevote {
			t.Fatal("timeoutPrevote scheduled twice")
		}
	}
}

func TestAlg1_Line36_LockAndPrecommitOnProofOfLock(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.lockOn(valX, 0, 1, 2)
	v := h.lastVote(Precommit, 0)
	if v.BlockID != HashValue(valX) || string(v.Extension) != string(testExt(3, valX)) {
		t.Fatalf("precommit %s ext %x", v.BlockID, v.Extension)
	}
	st := h.m.State()
	if st.ValidRound != 0 || st.ValidID != HashValue(valX) || st.Step != StepPrecommit {
		t.Fatalf("state %+v", st)
	}
	var kinds []WALRecordKind
	for _, r := range h.wal {
		kinds = append(kinds, r.Kind)
	}
	if len(kinds) != 3 || kinds[0] != RecordVote || kinds[1] != RecordValid || kinds[2] != RecordVote {
		t.Fatalf("persisted %v, want prevote, valid value, precommit", kinds)
	}
}

func TestAlg1_Line36_UpdatesValidValueWithoutLockingAfterPrecommit(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.fire(TimeoutPropose, 0)      // prevote nil
	h.votes(Prevote, 0, nil, 0, 1) // 3 prevotes of any kind
	h.fire(TimeoutPrevote, 0)      // precommit nil: step = precommit
	h.mustStep(h.proposal(0, 0, NoRound, valX))
	h.votes(Prevote, 0, valX, 2) // only 1 for X so far
	h.mustStep(h.vote(Prevote, 1, 0, valX))
	// 0 and 1 equivocate here; their X prevotes count for X (see voteSet), as do 2's.
	h.mustStep(h.vote(Prevote, 0, 0, valX))
	st := h.m.State()
	if st.ValidRound != 0 || st.ValidID != HashValue(valX) {
		t.Fatalf("validValue not updated: %+v", st)
	}
	if st.LockedRound != NoRound {
		t.Fatalf("locked in precommit step: %+v", st)
	}
	if len(h.ownVotes(Precommit)) != 1 {
		t.Fatal("precommitted twice")
	}
}

func TestAlg1_Line44_PrecommitNilOnTwoThirdsNilPrevotes(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.fire(TimeoutPropose, 0)
	h.votes(Prevote, 0, nil, 0, 1)
	if v := h.lastVote(Precommit, 0); !v.BlockID.IsNil() {
		t.Fatalf("precommit %s", v.BlockID)
	}
}

func TestAlg1_Line47_TimeoutPrecommitOnAnyTwoThirdsOfPrecommits(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.mustStep(h.vote(Precommit, 0, 0, nil))
	h.mustStep(h.vote(Precommit, 1, 0, valX)) // for a value we never saw: still counts as "any"
	if h.timer(TimeoutPrecommit, 0) {
		t.Fatal("early timeoutPrecommit")
	}
	h.mustStep(h.vote(Precommit, 2, 0, valY))
	if !h.timer(TimeoutPrecommit, 0) {
		t.Fatal("no timeoutPrecommit")
	}
}

func TestAlg1_Line49_CommitOnTwoThirdsPrecommits(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.lockOn(valX, 0, 1, 2)
	h.votes(Precommit, 0, valX, 0, 1)
	if len(h.app.finalized) != 1 || string(h.app.finalized[0].Value) != string(valX) {
		t.Fatalf("finalized %v", h.app.finalized)
	}
	c := h.app.finalized[0].Cert
	if c.Height != 1 || c.Round != 0 || c.BlockID != HashValue(valX) || len(c.Sigs) != 3 {
		t.Fatalf("certificate %+v", c)
	}
	for _, s := range c.Sigs {
		if string(s.Extension) != string(testExt(s.Validator, valX)) {
			t.Fatalf("certificate lost the extension of %d", s.Validator)
		}
	}
	if err := VerifyCommit(testChain, h.vals, c); err != nil {
		t.Fatal(err)
	}
	if len(h.commits) != 1 || h.commits[0].Cert != c {
		t.Fatal("Ready.Committed does not report the decision")
	}
	// Lines 52-54: next height, variables reset, round 0.
	if st := h.m.State(); st.Height != 2 || st.Round != 0 || st.LockedRound != NoRound || st.ValidRound != NoRound || st.Step != StepPropose {
		t.Fatalf("state after commit %+v", st)
	}
}

func TestAlg1_Line49_CommitForAnEarlierRound(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.mustStep(h.proposal(0, 0, NoRound, valX))
	h.nextRound(0, 1, 2)
	h.nextRound(0, 1, 2) // we are in round 2
	h.votes(Precommit, 0, valX, 0, 1)
	if len(h.app.finalized) != 0 {
		t.Fatal("committed on 2 precommits")
	}
	// (0 and 1 precommitted nil before: their X precommits are equivocation,
	// counted for X as the paper counts messages.)
	h.votes(Precommit, 0, valX, 2)
	if len(h.app.finalized) != 1 || h.app.finalized[0].Cert.Round != 0 {
		t.Fatalf("no commit of round 0 while in round 2: %v", h.app.finalized)
	}
}

func TestAlg1_Line49_PrecommitsCountBeforeTheirProposalArrives(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.votes(Precommit, 0, valX, 0, 1, 2)
	if len(h.app.finalized) != 0 {
		t.Fatal("committed without the proposal")
	}
	if !h.timer(TimeoutPrecommit, 0) {
		t.Fatal("precommits for an unseen value did not count for line 47")
	}
	h.mustStep(h.proposal(0, 0, NoRound, valX))
	if len(h.app.finalized) != 1 || string(h.app.finalized[0].Value) != string(valX) {
		t.Fatal("no commit once the proposal arrived")
	}
}

func TestAlg1_Line50_NoCommitOfAnInvalidValue(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.app.invalid[HashValue(valX)] = true
	h.votes(Precommit, 0, valX, 0, 1, 2)
	h.mustStep(h.proposal(0, 0, NoRound, valX))
	if len(h.app.finalized) != 0 {
		t.Fatal("committed an invalid value")
	}
}

func TestAlg1_Line55_SkipToARoundWithFPlusOneMessages(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.mustStep(h.vote(Prevote, 0, 5, nil))
	if h.m.State().Round != 0 {
		t.Fatal("skipped on one validator (f)")
	}
	h.mustStep(h.vote(Precommit, 1, 5, valX))
	if st := h.m.State(); st.Round != 5 || st.Step != StepPropose {
		t.Fatalf("state %+v, want round 5", st)
	}
	if !h.timer(TimeoutPropose, 5) {
		t.Fatal("StartRound(5) did not schedule timeoutPropose")
	}
}

func TestAlg1_Line57_TimeoutProposePrevotesNil(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.fire(TimeoutPropose, 0)
	if v := h.lastVote(Prevote, 0); !v.BlockID.IsNil() || h.m.State().Step != StepPrevote {
		t.Fatal("no nil prevote on timeoutPropose")
	}
	// A proposal arriving now is too late for line 22.
	h.mustStep(h.proposal(0, 0, NoRound, valX))
	if len(h.ownVotes(Prevote)) != 1 {
		t.Fatal("prevoted twice in a round")
	}
}

func TestAlg1_Line61_TimeoutPrevotePrecommitsNil(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.mustStep(h.proposal(0, 0, NoRound, valX))
	h.votes(Prevote, 0, nil, 0, 1)
	h.fire(TimeoutPrevote, 0)
	if v := h.lastVote(Precommit, 0); !v.BlockID.IsNil() {
		t.Fatal("no nil precommit")
	}
}

func TestAlg1_Line65_TimeoutPrecommitStartsNextRound(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.nextRound(0, 1, 2)
	if !h.timer(TimeoutPropose, 1) {
		t.Fatal("round 1 did not start")
	}
	for _, tr := range h.timers {
		if tr.Event.Kind == TimeoutPropose && tr.Event.Round == 1 && tr.Duration != DefaultTimeouts().Propose+DefaultTimeouts().ProposeDelta {
			t.Fatalf("timeoutPropose(1) = %v, want base + delta", tr.Duration)
		}
	}
}

func TestAlg1_StaleTimeoutsAreIgnored(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.nextRound(0, 1, 2)
	h.fire(TimeoutPropose, 0)   // round 0's, stale
	h.fire(TimeoutPrecommit, 0) // stale too
	if st := h.m.State(); st.Round != 1 || st.Step != StepPropose {
		t.Fatalf("stale timeout acted: %+v", st)
	}
}
