package consensus

import (
	"errors"
	"testing"
	"time"
)

// workApp adds WorkSignaler to the harness application.
type workApp struct {
	selfExtApp
	w *workState
}

type workState struct {
	has   bool
	asked int
}

func (a workApp) HasWork(uint64) bool {
	a.w.asked++
	return a.w.has
}

var emptyBlock = []byte("empty block")

// BuildProposal proposes an empty block when there is no work.
func (a workApp) BuildProposal(h uint64, last *CommitCertificate) ([]byte, error) {
	if !a.w.has {
		a.built++
		return emptyBlock, nil
	}
	return a.selfExtApp.BuildProposal(h, last)
}

const testWait = 500 * time.Millisecond

// newWorkHarness is a 4-validator harness whose application implements
// WorkSignaler, with WaitForWork set. Validator 0 proposes round 0.
func newWorkHarness(t *testing.T, self int, has bool) (*harness, *workState) {
	h := newHarness(t, 4, self)
	w := &workState{has: has}
	h.wrap = func(a Application) Application { return workApp{a.(selfExtApp), w} }
	h.cfg.Timeouts = DefaultTimeouts()
	h.cfg.Timeouts.WaitForWork = testWait
	return h, w
}

// ownProposals returns the proposals this validator sent, in order.
func (h *harness) ownProposals() []*Proposal {
	var out []*Proposal
	for _, e := range h.sent {
		if p, ok := e.Msg.(*Proposal); ok && p.Proposer == h.self {
			out = append(out, p)
		}
	}
	return out
}

// signedProposals counts the proposals this validator persisted (signed).
func (h *harness) signedProposals() int {
	n := 0
	for _, r := range h.wal {
		if r.Kind == RecordProposal {
			n++
		}
	}
	return n
}

func (h *harness) stepQuiet(in Input) {
	h.t.Helper()
	if err := h.m.Step(in); err != nil {
		h.t.Fatalf("step %T: %v", in, err)
	}
	if h.m.HasReady() {
		h.t.Fatalf("%T produced output: %+v", in, h.m.Ready())
	}
}

func TestWaitForWork_ProposerWithoutWorkProposesAnEmptyBlockWhenTheWaitExpires(t *testing.T) {
	h, w := newWorkHarness(t, 0, false)
	h.start(1, nil, nil)
	if w.asked != 1 || h.app.built != 0 || len(h.ownProposals()) != 0 {
		t.Fatalf("asked %d, built %d, proposals %d: should wait", w.asked, h.app.built, len(h.ownProposals()))
	}
	var wait *TimeoutRequest
	for i := range h.timers {
		if h.timers[i].Event.Kind == TimeoutWaitWork {
			wait = &h.timers[i]
		}
	}
	if wait == nil || wait.Event != (TimeoutEvent{Kind: TimeoutWaitWork, Height: 1, Round: 0}) || wait.Duration != testWait {
		t.Fatalf("wait timer %+v", wait)
	}
	if h.timer(TimeoutPropose, 0) {
		t.Fatal("the proposer scheduled timeoutPropose")
	}
	h.fire(TimeoutWaitWork, 0)
	ps := h.ownProposals()
	if h.app.built != 1 || len(ps) != 1 || ps[0].Round != 0 || ps[0].ValidRound != NoRound || string(ps[0].Value) != string(emptyBlock) {
		t.Fatalf("built %d, proposals %+v", h.app.built, ps)
	}
	if v := h.lastVote(Prevote, 0); v.BlockID != ps[0].BlockID() {
		t.Fatal("did not prevote its own proposal")
	}
	if w.asked != 1 {
		t.Fatalf("HasWork asked %d times", w.asked)
	}
}

func TestWaitForWork_WorkAvailableDuringTheWaitProposesAtOnce(t *testing.T) {
	h, w := newWorkHarness(t, 0, false)
	h.start(1, nil, nil)
	w.has = true
	h.mustStep(WorkAvailable{})
	if ps := h.ownProposals(); h.app.built != 1 || len(ps) != 1 || string(ps[0].Value) != "value-1-1" {
		t.Fatalf("built %d, proposals %+v", h.app.built, ps)
	}
	// The wait timer that fires later is stale.
	h.sent = nil
	h.stepQuiet(TimeoutEvent{Kind: TimeoutWaitWork, Height: 1, Round: 0})
	if h.app.built != 1 || h.signedProposals() != 1 {
		t.Fatal("proposed again when the wait timer fired")
	}
}

func TestWaitForWork_DuplicateWorkAvailableAfterTheProposalDoesNotProposeTwice(t *testing.T) {
	h, _ := newWorkHarness(t, 0, false)
	h.start(1, nil, nil)
	h.mustStep(WorkAvailable{})
	h.stepQuiet(WorkAvailable{})
	h.stepQuiet(WorkAvailable{})
	if h.app.built != 1 || h.signedProposals() != 1 || len(h.ownProposals()) != 1 {
		t.Fatalf("built %d, signed %d, sent %d", h.app.built, h.signedProposals(), len(h.ownProposals()))
	}
}

func TestWaitForWork_WorkAvailableWhenNotWaitingDoesNothing(t *testing.T) {
	// A non-proposer, a proposer that had work, and an application without
	// WorkSignaler: none waits, and WorkAvailable changes nothing.
	h, _ := newWorkHarness(t, 3, false)
	h.start(1, nil, nil)
	h.stepQuiet(WorkAvailable{})

	h, _ = newWorkHarness(t, 0, true)
	h.start(1, nil, nil)
	if h.app.built != 1 {
		t.Fatal("a proposer with work did not propose at once")
	}
	h.stepQuiet(WorkAvailable{})

	h = newHarness(t, 4, 0)
	h.cfg.Timeouts = DefaultTimeouts()
	h.cfg.Timeouts.WaitForWork = testWait
	h.start(1, nil, nil)
	if h.app.built != 1 {
		t.Fatal("an application without WorkSignaler made the proposer wait")
	}
	h.stepQuiet(WorkAvailable{})
	if h.app.built != 1 {
		t.Fatal("WorkAvailable built a value")
	}
}

func TestWaitForWork_NonProposerIsUnaffected(t *testing.T) {
	h, w := newWorkHarness(t, 3, false)
	h.start(1, nil, nil)
	if w.asked != 0 || h.timer(TimeoutWaitWork, 0) || !h.timer(TimeoutPropose, 0) {
		t.Fatalf("asked %d, wait timer %v, timeoutPropose %v", w.asked, h.timer(TimeoutWaitWork, 0), h.timer(TimeoutPropose, 0))
	}
	h.mustStep(h.proposal(0, 0, NoRound, valX))
	if v := h.lastVote(Prevote, 0); v.BlockID != HashValue(valX) {
		t.Fatal("did not prevote the proposal")
	}
}

func TestWaitForWork_OnlyRoundZeroWaits(t *testing.T) {
	h, w := newWorkHarness(t, 1, false) // proposer of round 1
	h.start(1, nil, nil)
	h.nextRound(0, 2, 3)
	if w.asked != 0 || h.app.built != 1 || len(h.ownProposals()) != 1 {
		t.Fatalf("round 1: asked %d, built %d: a late round must not wait", w.asked, h.app.built)
	}
}

func TestWaitForWork_RoundChangeEndsTheWait(t *testing.T) {
	h, _ := newWorkHarness(t, 0, false)
	h.start(1, nil, nil)
	// The others time out on the silent proposer and move to round 1.
	h.votes(Precommit, 0, nil, 1, 2, 3)
	h.fire(TimeoutPrecommit, 0)
	if h.m.State().Round != 1 {
		t.Fatal("not in round 1")
	}
	h.stepQuiet(TimeoutEvent{Kind: TimeoutWaitWork, Height: 1, Round: 0})
	h.stepQuiet(WorkAvailable{})
	if h.app.built != 0 {
		t.Fatal("proposed for round 0 after it ended")
	}
}

func TestWaitForWork_RestartWaitsAgainUnlessAProposalWasSigned(t *testing.T) {
	h, w := newWorkHarness(t, 0, false)
	h.start(1, nil, nil)
	h.restart(1, nil) // nothing signed: waiting is not persisted, so wait again
	if w.asked != 2 || h.app.built != 0 || !h.timer(TimeoutWaitWork, 0) {
		t.Fatalf("after restart: asked %d, built %d, wait timer %v", w.asked, h.app.built, h.timer(TimeoutWaitWork, 0))
	}
	h.mustStep(WorkAvailable{})
	p := h.ownProposals()[0]
	h.restart(1, nil) // signed: re-send it, never wait or build again
	if w.asked != 2 || h.app.built != 1 || h.timer(TimeoutWaitWork, 0) {
		t.Fatalf("after restart: asked %d, built %d, wait timer %v", w.asked, h.app.built, h.timer(TimeoutWaitWork, 0))
	}
	if ps := h.ownProposals(); len(ps) != 1 || ps[0].BlockID() != p.BlockID() {
		t.Fatalf("re-sent %+v", ps)
	}
	h.stepQuiet(WorkAvailable{})
}

func TestWaitForWork_IsNotAMessage(t *testing.T) {
	var in Input = WorkAvailable{}
	if _, ok := in.(Message); ok {
		t.Fatal("WorkAvailable must not be a Message: it never comes from the network")
	}
}

func TestWaitForWork_ConfigRejectsWaitNotBelowPropose(t *testing.T) {
	_, vals := testKeys(4)
	for _, tc := range []struct {
		wait time.Duration
		ok   bool
	}{
		{0, true}, {time.Second, true}, {3 * time.Second, false}, {4 * time.Second, false}, {-time.Millisecond, false},
	} {
		ts := DefaultTimeouts() // Propose 3 s
		ts.WaitForWork = tc.wait
		_, err := NewMachine(Config{ChainID: testChain, Validators: vals, Timeouts: ts}, newTestApp(), nil, nil)
		if tc.ok != (err == nil) || (err != nil && !errors.Is(err, ErrConfig)) {
			t.Errorf("WaitForWork %v: %v", tc.wait, err)
		}
	}
	// Only WaitForWork set: the other timeouts are the defaults.
	cfg := Config{ChainID: testChain, Validators: vals, Timeouts: Timeouts{WaitForWork: time.Second}}
	if err := cfg.check(); err != nil || cfg.Timeouts.Propose != DefaultTimeouts().Propose || cfg.Timeouts.WaitForWork != time.Second {
		t.Fatalf("%v %+v", err, cfg.Timeouts)
	}
}
