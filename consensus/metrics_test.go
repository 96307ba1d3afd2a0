package consensus

import (
	"errors"
	"slices"
	"testing"
)

type stepEvent struct {
	height uint64
	round  Round
	step   Step
}

type commitEvent struct {
	height   uint64
	round    Round
	proposer int
}

type lateEvent struct {
	validator int
	kind      VoteType
}

type extEvent struct {
	height    uint64
	validator int
	err       error
}

// recMetrics records every call, in order.
type recMetrics struct {
	steps         []stepEvent
	commits       []commitEvent
	late          []lateEvent
	extRejected   []extEvent
	equivocations []int
	rejected      []string
	badValues     int
}

func (r *recMetrics) StepEntered(h uint64, round Round, s Step) {
	r.steps = append(r.steps, stepEvent{h, round, s})
}
func (r *recMetrics) HeightCommitted(h uint64, round Round, p int) {
	r.commits = append(r.commits, commitEvent{h, round, p})
}
func (r *recMetrics) LateVote(i int, k VoteType) { r.late = append(r.late, lateEvent{i, k}) }
func (r *recMetrics) ExtensionRejected(h uint64, i int, err error) {
	r.extRejected = append(r.extRejected, extEvent{h, i, err})
}
func (r *recMetrics) Equivocation(i int)          { r.equivocations = append(r.equivocations, i) }
func (r *recMetrics) MessageRejected(why string)  { r.rejected = append(r.rejected, why) }
func (r *recMetrics) ValueRejected(uint64, error) { r.badValues++ }

var _ Metrics = NopMetrics()

func newMetricsHarness(t *testing.T, self int) (*harness, *recMetrics) {
	h := newHarness(t, 4, self)
	rec := &recMetrics{}
	h.cfg.Metrics = rec
	return h, rec
}

func (r *recMetrics) stepsAt(height uint64) []stepEvent {
	var out []stepEvent
	for _, s := range r.steps {
		if s.height == height {
			out = append(out, s)
		}
	}
	return out
}

func TestMetrics_NormalHeightReportsEachStepAndOneCommitInRoundZero(t *testing.T) {
	h, rec := newMetricsHarness(t, 3)
	h.start(1, nil, nil)
	h.lockOn(valX, 0, 1, 2)
	h.votes(Precommit, 0, valX, 0, 1)
	want := []stepEvent{{1, 0, StepPropose}, {1, 0, StepPrevote}, {1, 0, StepPrecommit}}
	if got := rec.stepsAt(1); !slices.Equal(got, want) {
		t.Fatalf("steps at height 1: %v, want %v", got, want)
	}
	if len(rec.commits) != 1 || rec.commits[0] != (commitEvent{1, 0, 0}) {
		t.Fatalf("commits %v", rec.commits)
	}
	if last := rec.steps[len(rec.steps)-1]; last != (stepEvent{2, 0, StepPropose}) {
		t.Fatalf("after the commit: %v", last)
	}
	if len(rec.late)+len(rec.extRejected)+len(rec.equivocations)+len(rec.rejected) != 0 {
		t.Fatalf("unexpected reports %+v", rec)
	}
}

func TestMetrics_RoundChangeReportsRoundOneAndCommitInRoundOne(t *testing.T) {
	h, rec := newMetricsHarness(t, 3)
	h.start(1, nil, nil)
	h.nextRound(0, 1, 2) // proposer 0 silent: timeoutPropose, nil precommits, timeoutPrecommit
	h.lockOn(valX, 0, 1, 2)
	h.votes(Precommit, 1, valX, 0, 1)
	want := []stepEvent{
		{1, 0, StepPropose}, {1, 0, StepPrevote}, // prevote nil; 2f+1 nil precommits of others end the round
		{1, 1, StepPropose}, {1, 1, StepPrevote}, {1, 1, StepPrecommit},
	}
	if got := rec.stepsAt(1); !slices.Equal(got, want) {
		t.Fatalf("steps at height 1: %v, want %v", got, want)
	}
	if len(rec.commits) != 1 || rec.commits[0] != (commitEvent{1, 1, 1}) {
		t.Fatalf("commits %v", rec.commits)
	}
}

func TestMetrics_CommitLearntFromACommitMessageIsReported(t *testing.T) {
	h, rec := newMetricsHarness(t, 3)
	h.start(1, nil, nil)
	cert := &CommitCertificate{Height: 1, Round: 2, BlockID: HashValue(valX)}
	for i := range 3 {
		v := h.vote(Precommit, i, 2, valX)
		cert.Sigs = append(cert.Sigs, CommitSig{Validator: i, Extension: v.Extension, Signature: v.Signature})
	}
	h.mustStep(&Commit{Cert: cert, Value: valX})
	if len(rec.commits) != 1 || rec.commits[0] != (commitEvent{1, 2, 2}) {
		t.Fatalf("commits %v", rec.commits)
	}
}

func TestMetrics_BadExtensionReportsExtensionRejected(t *testing.T) {
	h, rec := newMetricsHarness(t, 3)
	h.start(1, nil, nil)
	h.mustStep(h.proposal(0, 0, NoRound, valX))
	bad := h.vote(Precommit, 1, 0, valX)
	bad.Extension = []byte("forged share")
	SignVote(testChain, NewEd25519Signer(h.keys[1]), bad)
	h.mustStep(bad)
	if len(rec.extRejected) != 1 || rec.extRejected[0].height != 1 || rec.extRejected[0].validator != 1 || rec.extRejected[0].err == nil {
		t.Fatalf("extension rejections %v", rec.extRejected)
	}
	h.votes(Precommit, 0, valX, 0, 2)
	if len(rec.extRejected) != 1 {
		t.Fatalf("good extensions reported as rejected: %v", rec.extRejected)
	}
}

func TestMetrics_EquivocationReportedOncePerEvidence(t *testing.T) {
	h, rec := newMetricsHarness(t, 3)
	h.start(1, nil, nil)
	h.mustStep(h.vote(Prevote, 1, 0, valX))
	h.mustStep(h.vote(Prevote, 1, 0, valY))
	h.mustStep(h.vote(Prevote, 1, 0, nil)) // same evidence key: not again
	h.mustStep(h.proposal(0, 0, NoRound, valX))
	h.mustStep(h.proposal(0, 0, NoRound, valY))
	if want := []int{1, 0}; !slices.Equal(rec.equivocations, want) {
		t.Fatalf("equivocations %v, want %v", rec.equivocations, want)
	}
}

func TestMetrics_RejectedMessagesReportAStableReason(t *testing.T) {
	h, rec := newMetricsHarness(t, 3)
	h.start(1, nil, nil)
	v := h.vote(Prevote, 1, 0, valX)
	v.Validator = 2 // signed by 1, claims 2
	_ = h.step(v)
	_ = h.step(h.proposal(1, 0, NoRound, valX))
	u := h.vote(Prevote, 1, 0, valX)
	u.Validator = 9
	_ = h.step(u)
	_ = h.m.StepBytes([]byte{1, 2, 3})
	_ = h.step(&Commit{Cert: &CommitCertificate{Height: 1, BlockID: HashValue(valX)}, Value: valY})
	want := []string{"invalid_signature", "not_proposer", "unknown_validator", "malformed", "invalid_commit"}
	if !slices.Equal(rec.rejected, want) {
		t.Fatalf("rejections %v, want %v", rec.rejected, want)
	}
	// Accepted, duplicate and application-failure inputs are not rejections.
	h.mustStep(h.vote(Prevote, 1, 0, valX))
	h.mustStep(h.vote(Prevote, 1, 0, valX))
	h.app.extendErr = errors.New("no share")
	h.mustStep(h.proposal(0, 0, NoRound, valX))
	if err := h.step(h.vote(Prevote, 2, 0, valX)); !errors.Is(err, ErrApplication) {
		t.Fatalf("err %v", err)
	}
	if len(rec.rejected) != len(want) {
		t.Fatalf("rejections %v", rec.rejected)
	}
}

func TestMetrics_LateVotesAreReported(t *testing.T) {
	h, rec := newMetricsHarness(t, 3)
	h.start(1, nil, nil)
	h.votes(Prevote, 0, nil, 0) // in time
	h.nextRound(0, 1, 2)
	h.mustStep(h.vote(Prevote, 1, 0, nil)) // round 0 is over: late
	if want := []lateEvent{{1, Prevote}}; !slices.Equal(rec.late, want) {
		t.Fatalf("late votes %v, want %v", rec.late, want)
	}
	h.lockOn(valX, 0, 1, 2)
	h.votes(Precommit, 1, valX, 0, 1) // decided at height 1 without 2's precommit
	late := &Vote{Type: Precommit, Height: 1, Round: 1, Validator: 2, BlockID: HashValue(valX), Extension: testExt(2, valX)}
	SignVote(testChain, NewEd25519Signer(h.keys[2]), late)
	_ = h.step(late) // joins the last certificate
	if want := []lateEvent{{1, Prevote}, {2, Precommit}}; !slices.Equal(rec.late, want) {
		t.Fatalf("late votes %v, want %v", rec.late, want)
	}
}

// A proposal the application refuses (valid(v) false) is reported once per
// value, however many times the value is looked at.
func TestMetrics_RefusedValueIsReportedOnce(t *testing.T) {
	h, rec := newMetricsHarness(t, 3)
	h.app.invalid[HashValue(valX)] = true
	h.start(1, nil, nil)
	h.mustStep(h.proposal(0, 0, NoRound, valX))
	h.votes(Prevote, 0, valX, 0, 1, 2)
	if rec.badValues != 1 {
		t.Fatalf("%d refused values reported, want 1", rec.badValues)
	}
}
