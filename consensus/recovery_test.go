package consensus

import (
	"errors"
	"testing"
)

// crash keeps only what was persisted, as a node that dies before sending.
func (h *harness) restart(height uint64, last *Commit) {
	h.t.Helper()
	wal := make([]WALRecord, 0, len(h.wal))
	for _, r := range h.wal {
		d, err := DecodeWALRecord(EncodeWALRecord(r)) // through the bytes, as from disk
		if err != nil {
			h.t.Fatal(err)
		}
		wal = append(wal, d)
	}
	h.sent, h.timers = nil, nil
	h.start(height, last, wal)
}

// A validator that signed a prevote, persisted it and crashed before sending
// must, after replaying its WAL, send that prevote and never sign another
// one for the round, even when its state machine would now prevote nil.
func TestCrashRecovery_PrevoteIsNeverSignedTwice(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.m.Step(h.proposal(0, 0, NoRound, valX)) // signs prevote X ...
	rd := h.m.Ready()                         // ... persists it, then crashes before sending
	h.wal = append(h.wal, rd.Persist...)
	if len(rd.Persist) != 1 || rd.Persist[0].Vote.BlockID != HashValue(valX) {
		t.Fatal("prevote not in Persist")
	}
	h.restart(1, nil)
	h.fire(TimeoutPropose, 0) // without the WAL this would sign prevote nil
	for _, v := range h.ownVotes(Prevote) {
		if v.BlockID != HashValue(valX) {
			t.Fatalf("conflicting prevote %s after restart", v.BlockID)
		}
	}
	if len(h.ownVotes(Prevote)) == 0 {
		t.Fatal("the persisted prevote was not re-sent")
	}
	for _, r := range h.wal[1:] {
		if r.Kind == RecordVote && r.Vote.Type == Prevote {
			t.Fatal("signed a second prevote")
		}
	}
}

func TestCrashRecovery_PrecommitAndLockSurvive(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	h.lockOn(valX, 0, 1, 2)
	h.restart(1, nil)
	st := h.m.State()
	if st.LockedRound != 0 || st.LockedID != HashValue(valX) || st.Step != StepPrecommit || st.ValidRound != 0 {
		t.Fatalf("restored state %+v", st)
	}
	if v := h.lastVote(Precommit, 0); v.BlockID != HashValue(valX) {
		t.Fatal("precommit not re-sent")
	}
	h.fire(TimeoutPrevote, 0) // would precommit nil without the record
	for _, v := range h.ownVotes(Precommit) {
		if v.BlockID != HashValue(valX) {
			t.Fatalf("conflicting precommit %s", v.BlockID)
		}
	}
	// The lock still holds in the next round (line 22).
	h.nextRound(0, 1, 2)
	h.mustStep(h.proposal(1, 1, NoRound, valY))
	if v := h.lastVote(Prevote, 1); !v.BlockID.IsNil() {
		t.Fatal("restored validator forgot its lock")
	}
}

func TestCrashRecovery_ProposerReProposesTheSameValue(t *testing.T) {
	h := newHarness(t, 4, 0)
	h.start(1, nil, nil)
	p := h.sent[0].Msg.(*Proposal)
	h.restart(1, nil)
	var again *Proposal
	for _, e := range h.sent {
		if q, ok := e.Msg.(*Proposal); ok {
			again = q
		}
	}
	if again == nil || again.BlockID() != p.BlockID() || h.app.built != 1 {
		t.Fatalf("after restart proposed %v (built %d times)", again, h.app.built)
	}
}

func TestCrashRecovery_RestoredValidValueIsReProposed(t *testing.T) {
	h := newHarness(t, 4, 1)
	h.start(1, nil, nil)
	h.mustStep(h.proposal(0, 0, NoRound, valX))
	h.votes(Prevote, 0, valX, 0, 2, 3)
	h.restart(1, nil)
	h.nextRound(0, 2, 3)
	var p *Proposal
	for _, e := range h.sent {
		if q, ok := e.Msg.(*Proposal); ok && q.Round == 1 {
			p = q
		}
	}
	if p == nil || string(p.Value) != string(valX) || p.ValidRound != 0 {
		t.Fatalf("round 1 proposal after restart %+v", p)
	}
}

func TestCrashRecovery_RejectsForeignRecords(t *testing.T) {
	h := newHarness(t, 4, 3)
	h.start(1, nil, nil)
	foreign := WALRecord{Kind: RecordVote, Vote: h.vote(Prevote, 1, 0, valX)}
	_, err := NewMachine(h.cfg, h.app, NewEd25519Signer(h.keys[3]), []WALRecord{foreign})
	if !errors.Is(err, ErrCorruptWAL) {
		t.Fatalf("err %v", err)
	}
}
