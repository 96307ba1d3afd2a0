package consensus

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"testing"
)

const testChain = "test-chain"

// testApp is a deterministic Application. Values are "value-h-n"; a value is
// invalid if listed; an extension is sha256(validator, value)[:8].
type testApp struct {
	invalid   map[BlockID]bool
	built     int
	validated int
	extendErr error
	finalized []*Commit
	lastSeen  []*CommitCertificate // lastCommit passed to BuildProposal
}

func newTestApp() *testApp { return &testApp{invalid: map[BlockID]bool{}} }

func (a *testApp) BuildProposal(h uint64, last *CommitCertificate) ([]byte, error) {
	a.built++
	a.lastSeen = append(a.lastSeen, last)
	return fmt.Appendf(nil, "value-%d-%d", h, a.built), nil
}

func (a *testApp) ValidateProposal(_ uint64, v []byte) error {
	a.validated++
	if a.invalid[HashValue(v)] {
		return errors.New("invalid")
	}
	return nil
}

func testExt(i int, v []byte) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(i))
	s := sha256.Sum256(append(b[:], v...))
	return s[:8]
}

func (a *testApp) ExtendVote(_ uint64, _ Round, v []byte) ([]byte, error) {
	if a.extendErr != nil {
		return nil, a.extendErr
	}
	return testExt(-1, v), nil // replaced per validator by the harness
}

func (a *testApp) VerifyExtension(_ uint64, i int, v, ext []byte) error {
	if string(ext) != string(testExt(i, v)) {
		return errors.New("bad extension")
	}
	return nil
}

func (a *testApp) Finalize(h uint64, v []byte, c *CommitCertificate) error {
	a.finalized = append(a.finalized, &Commit{Cert: c, Value: v})
	return nil
}

// selfExtApp makes ExtendVote produce the extension VerifyExtension expects for self.
type selfExtApp struct {
	*testApp
	self int
}

func (a selfExtApp) ExtendVote(h uint64, r Round, v []byte) ([]byte, error) {
	if a.extendErr != nil {
		return nil, a.extendErr
	}
	return testExt(a.self, v), nil
}

// rotation is proposer(h, r) = r mod n: round 0 is always validator 0's.
type rotation int

func (n rotation) Proposer(_ uint64, r Round) int { return int(r) % int(n) }

// harness drives one Machine (validator self) with messages signed by the
// other validators' keys, and collects everything the machine outputs.
type harness struct {
	t       *testing.T
	keys    []ed25519.PrivateKey
	vals    *ValidatorSet
	self    int
	app     *testApp
	m       *Machine
	wal     []WALRecord // everything persisted
	sent    []Envelope  // everything sent
	timers  []TimeoutRequest
	commits []*Commit
	cfg     Config
	// wrap, if set, wraps the application the machine gets (for optional
	// interfaces such as WorkSignaler).
	wrap func(Application) Application
}

func testKeys(n int) ([]ed25519.PrivateKey, *ValidatorSet) {
	keys := make([]ed25519.PrivateKey, n)
	vs := make([]Validator, n)
	for i := range keys {
		seed := sha256.Sum256(fmt.Appendf(nil, "validator-%d", i))
		keys[i] = ed25519.NewKeyFromSeed(seed[:])
		vs[i] = Validator{PubKey: keys[i].Public().(ed25519.PublicKey), Power: 1}
	}
	set, err := NewValidatorSet(vs)
	if err != nil {
		panic(err)
	}
	return keys, set
}

func newHarness(t *testing.T, n, self int) *harness {
	t.Helper()
	keys, vals := testKeys(n)
	h := &harness{t: t, keys: keys, vals: vals, self: self, app: newTestApp()}
	h.cfg = Config{ChainID: testChain, Validators: vals, Proposer: rotation(n)}
	return h
}

func (h *harness) start(height uint64, last *Commit, restored []WALRecord) {
	h.t.Helper()
	var app Application = selfExtApp{h.app, h.self}
	if h.wrap != nil {
		app = h.wrap(app)
	}
	m, err := NewMachine(h.cfg, app, NewEd25519Signer(h.keys[h.self]), restored)
	if err != nil {
		h.t.Fatal(err)
	}
	h.m = m
	if err := m.Start(height, last); err != nil {
		h.t.Fatal(err)
	}
	h.drain()
}

// drain plays the driver: it takes a Ready, records it and advances.
func (h *harness) drain() {
	rd := h.m.Ready()
	h.wal = append(h.wal, rd.Persist...)
	h.sent = append(h.sent, rd.Send...)
	h.timers = append(h.timers, rd.Timeouts...)
	h.commits = append(h.commits, rd.Committed...)
	h.m.Advance()
}

func (h *harness) step(in Input) error {
	h.t.Helper()
	err := h.m.Step(in)
	h.drain()
	return err
}

func (h *harness) mustStep(in Input) {
	h.t.Helper()
	if err := h.step(in); err != nil {
		h.t.Fatalf("step %T: %v", in, err)
	}
}

func (h *harness) value(s string) []byte { return []byte(s) }

func (h *harness) proposal(from int, r, vr Round, value []byte) *Proposal {
	p := NewProposal(h.m.height, r, vr, from, value)
	SignProposal(testChain, NewEd25519Signer(h.keys[from]), p)
	return p
}

func (h *harness) vote(t VoteType, from int, r Round, value []byte) *Vote {
	v := &Vote{Type: t, Height: h.m.height, Round: r, Validator: from}
	if value != nil {
		v.BlockID = HashValue(value)
		if t == Precommit {
			v.Extension = testExt(from, value)
		}
	}
	SignVote(testChain, NewEd25519Signer(h.keys[from]), v)
	return v
}

// votes steps the same vote from each of froms.
func (h *harness) votes(t VoteType, r Round, value []byte, froms ...int) {
	h.t.Helper()
	for _, f := range froms {
		h.mustStep(h.vote(t, f, r, value))
	}
}

// ownVotes returns the votes this validator sent (including re-sends), in order.
func (h *harness) ownVotes(t VoteType) []*Vote {
	var out []*Vote
	for _, e := range h.sent {
		if v, ok := e.Msg.(*Vote); ok && v.Validator == h.self && v.Type == t {
			out = append(out, v)
		}
	}
	return out
}

// lastVote returns the last vote of type t this validator sent, failing if none.
func (h *harness) lastVote(t VoteType, r Round) *Vote {
	h.t.Helper()
	vs := h.ownVotes(t)
	for i := len(vs) - 1; i >= 0; i-- {
		if vs[i].Round == r && vs[i].Height == h.m.height {
			return vs[i]
		}
	}
	h.t.Fatalf("no %s sent in round %d", t, r)
	return nil
}

func (h *harness) noVote(t VoteType, r Round) {
	h.t.Helper()
	for _, v := range h.ownVotes(t) {
		if v.Round == r && v.Height == h.m.height {
			h.t.Fatalf("unexpected %s in round %d for %s", t, r, v.BlockID)
		}
	}
}

func (h *harness) timer(kind TimeoutKind, r Round) bool {
	for _, t := range h.timers {
		if t.Event.Kind == kind && t.Event.Round == r && t.Event.Height == h.m.height {
			return true
		}
	}
	return false
}

func (h *harness) fire(kind TimeoutKind, r Round) {
	h.t.Helper()
	h.mustStep(TimeoutEvent{Kind: kind, Height: h.m.height, Round: r})
}

// toRound moves the machine from its round r to r+1 through nil votes of
// three others (timeoutPropose, 2f+1 precommits nil, timeoutPrecommit).
func (h *harness) nextRound(others ...int) {
	h.t.Helper()
	r := h.m.round
	if h.m.step == StepPropose {
		h.fire(TimeoutPropose, r)
	}
	h.votes(Precommit, r, nil, others...)
	if !h.timer(TimeoutPrecommit, r) {
		h.t.Fatalf("no timeoutPrecommit in round %d", r)
	}
	h.fire(TimeoutPrecommit, r)
	if h.m.round != r+1 {
		h.t.Fatalf("round %d after timeoutPrecommit of %d", h.m.round, r)
	}
}

// lockOn makes the machine (a non-proposer) lock on value in the current
// round: proposal from the round's proposer, then prevotes of three others.
func (h *harness) lockOn(value []byte, others ...int) {
	h.t.Helper()
	r := h.m.round
	h.mustStep(h.proposal(int(r)%h.vals.Size(), r, NoRound, value))
	h.votes(Prevote, r, value, others...)
	if st := h.m.State(); st.LockedRound != r || st.LockedID != HashValue(value) {
		h.t.Fatalf("not locked: %+v", st)
	}
}
