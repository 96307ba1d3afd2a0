package sim

import (
	"container/heap"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"time"

	"github.com/zkbank/zkbank/consensus"
)

// Scenario is a family of runs; the seed picks everything else.
type Scenario struct {
	Name       string
	Loss, Dup  float64       // probability that one delivery is lost / duplicated
	MinDelay   time.Duration // each delivery is delayed uniformly in [MinDelay, MaxDelay]:
	MaxDelay   time.Duration // different delays reorder messages
	Partitions bool          // random partitions before HealAt
	Crashes    bool          // random crashes (also between persist and send) before HealAt
	Byzantine  bool          // up to f byzantine validators
	HealAt     time.Duration // partitions and crashes stop here
	// After HealAt every correct validator must commit MoreHeights more
	// heights within Deadline of logical time (liveness).
	MoreHeights int
	Deadline    time.Duration
	// WaitForWork, if set, is the validators' Timeouts.WaitForWork: their
	// application then has work only sometimes (it arrives at random times
	// at every validator, which steps WorkAvailable, and a block consumes it),
	// so round-0 proposers wait for work or propose empty values.
	WaitForWork time.Duration
}

// Scenarios run by the default tests.
var Scenarios = []Scenario{
	{Name: "lossy", Loss: 0.10, Dup: 0.10, MinDelay: time.Millisecond, MaxDelay: 40 * time.Millisecond, HealAt: 500 * time.Millisecond, MoreHeights: 2, Deadline: time.Minute},
	{Name: "partition", Loss: 0.05, Dup: 0.05, MinDelay: time.Millisecond, MaxDelay: 30 * time.Millisecond, Partitions: true, HealAt: 1200 * time.Millisecond, MoreHeights: 2, Deadline: 2 * time.Minute},
	{Name: "crash", Loss: 0.05, Dup: 0.05, MinDelay: time.Millisecond, MaxDelay: 30 * time.Millisecond, Crashes: true, HealAt: time.Second, MoreHeights: 2, Deadline: 2 * time.Minute, WaitForWork: 100 * time.Millisecond},
	{Name: "byzantine", Loss: 0.05, Dup: 0.05, MinDelay: time.Millisecond, MaxDelay: 30 * time.Millisecond, Byzantine: true, HealAt: 600 * time.Millisecond, MoreHeights: 2, Deadline: 2 * time.Minute},
	{Name: "chaos", Loss: 0.10, Dup: 0.10, MinDelay: time.Millisecond, MaxDelay: 40 * time.Millisecond, Partitions: true, Crashes: true, Byzantine: true, HealAt: 1200 * time.Millisecond, MoreHeights: 2, Deadline: 3 * time.Minute},
}

// ScenarioByName finds one of Scenarios.
func ScenarioByName(name string) (Scenario, bool) {
	for _, sc := range Scenarios {
		if sc.Name == name {
			return sc, true
		}
	}
	return Scenario{}, false
}

// Options of one run.
type Options struct {
	Seed int64
	// N validators; 0 picks 4, 7 or 10 from the seed.
	N int
	// Heights, if set, ends the run when every validator committed that many
	// (benchmarks); the scenario's heal and liveness logic is then skipped.
	Heights uint64
	// ExtSize is the vote extension size in bytes (default 32).
	ExtSize int
	// RealCrypto forces ed25519 in scenarios without byzantine validators,
	// which otherwise use a cheap keyed hash in its place.
	RealCrypto bool
	// Trace, if set, receives one line per event.
	Trace io.Writer
}

// Result describes a finished run.
type Result struct {
	N, Byzantine  int
	Heights       uint64 // lowest height committed by a correct validator
	Time          time.Duration
	Events        int
	Deliveries    int
	Evidence      int
	Restarts      int
	SigVerifies   int // real ed25519 verifications (cache misses)
	MaxRound      consensus.Round
	UniqueSigners int
}

// Violation is an invariant the checker found broken.
type Violation struct{ Msg string }

func (v *Violation) Error() string { return v.Msg }

const chainID = "zkbank-sim"

// Timeouts of the simulated validators, in logical time.
var simTimeouts = consensus.Timeouts{
	Propose: 150 * time.Millisecond, ProposeDelta: 50 * time.Millisecond,
	Prevote: 60 * time.Millisecond, PrevoteDelta: 30 * time.Millisecond,
	Precommit: 60 * time.Millisecond, PrecommitDelta: 30 * time.Millisecond,
	Rebroadcast: 200 * time.Millisecond,
}

type node struct {
	id     int
	signer consensus.Signer
	priv   ed25519.PrivateKey
	app    *App
	m      *consensus.Machine
	wal    [][]byte // durable
	up     bool
	inc    int // incarnation: timers of a crashed incarnation never fire
	byz    *byzantine
}

// Sim is one run.
type Sim struct {
	sc       Scenario
	opt      Options
	rng      *rand.Rand
	now      time.Duration
	q        eventQueue
	seq      uint64
	nodes    []*node
	vals     *consensus.ValidatorSet
	verifier consensus.Verifier
	cache    *cachingVerifier
	group    []int // partition group of each validator
	check    *checker
	healed   bool
	target   uint64
	res      Result
	err      error
}

// Run executes one seeded run and returns a *Violation error if an invariant broke.
func Run(sc Scenario, opt Options) (Result, error) {
	s := newSim(sc, opt)
	err := s.run()
	s.res.Time = s.now
	s.res.SigVerifies = len(s.cache.seen)
	s.res.Heights = s.minHonestHeight()
	return s.res, err
}

func newSim(sc Scenario, opt Options) *Sim {
	if opt.ExtSize == 0 {
		opt.ExtSize = 32
	}
	s := &Sim{sc: sc, opt: opt, rng: rand.New(rand.NewPCG(uint64(opt.Seed), 0x7a6b62616e6b)), cache: newCachingVerifier()}
	s.verifier = s.cache
	if !sc.Byzantine && !opt.RealCrypto {
		s.verifier = hashVerifier{}
	}
	n := opt.N
	if n == 0 {
		n = [...]int{4, 7, 10}[uint64(opt.Seed)%3]
	}
	powers := make([]int64, n)
	weighted := s.rng.IntN(2) == 0
	for i := range powers {
		powers[i] = 1
		if weighted {
			powers[i] = 1 + s.rng.Int64N(10)
		}
	}
	vs := make([]consensus.Validator, n)
	for i := range vs {
		var seed [32]byte
		binary.BigEndian.PutUint64(seed[:], uint64(i)+1) // keys are fixed per index
		priv := ed25519.NewKeyFromSeed(seed[:])
		nd := &node{id: i, priv: priv, signer: consensus.NewEd25519Signer(priv)}
		if _, fast := s.verifier.(hashVerifier); fast {
			nd.signer = hashSigner{priv.Public().(ed25519.PublicKey)}
		}
		s.nodes = append(s.nodes, nd)
		vs[i] = consensus.Validator{PubKey: priv.Public().(ed25519.PublicKey), Power: powers[i]}
	}
	var err error
	if s.vals, err = consensus.NewValidatorSet(vs); err != nil {
		panic(err)
	}
	s.group = make([]int, n)
	s.check = newChecker(s)
	if sc.Byzantine {
		// Up to f validators, holding less than a third of the power.
		var byzPower int64
		for _, i := range s.rng.Perm(n)[:(n-1)/3] {
			if 3*(byzPower+powers[i]) < s.vals.TotalPower() {
				byzPower += powers[i]
				s.nodes[i].byz = &byzantine{s: s, n: s.nodes[i]}
				s.res.Byzantine++
			}
		}
	}
	s.res.N = n
	for _, nd := range s.nodes {
		nd.app = &App{self: nd.id, vals: s.vals, extSize: opt.ExtSize, hashes: map[string][32]byte{}}
		if nd.byz == nil {
			nd.app.onFinal = s.check.finalizeHook(nd)
		}
	}
	return s
}

func (s *Sim) config() consensus.Config {
	t := simTimeouts
	t.WaitForWork = s.sc.WaitForWork
	return consensus.Config{ChainID: chainID, Validators: s.vals, Timeouts: t, Verifier: s.verifier}
}

func (s *Sim) tracef(format string, args ...any) {
	if s.opt.Trace != nil {
		fmt.Fprintf(s.opt.Trace, "%9s "+format+"\n", append([]any{s.now}, args...)...)
	}
}

func (s *Sim) fail(format string, args ...any) {
	if s.err == nil {
		s.err = &Violation{Msg: fmt.Sprintf("t=%s: ", s.now) + fmt.Sprintf(format, args...)}
		s.tracef("VIOLATION %s", s.err)
	}
}

func (s *Sim) run() error {
	for _, nd := range s.nodes {
		s.start(nd)
	}
	if s.opt.Heights == 0 {
		s.scheduleFaults()
		s.push(&event{at: s.sc.HealAt, kind: evHeal})
		if s.sc.WaitForWork > 0 {
			s.pushWork()
		}
	}
	for _, nd := range s.nodes {
		if nd.byz != nil {
			s.push(&event{at: time.Duration(1+s.rng.IntN(50)) * time.Millisecond, kind: evByzTick, node: nd.id})
		}
	}
	limit := s.sc.HealAt + s.sc.Deadline
	for s.q.Len() > 0 && s.err == nil {
		e := heap.Pop(&s.q).(*event)
		s.now = e.at
		if s.opt.Heights == 0 && s.now > limit {
			s.failLiveness()
			break
		}
		s.res.Events++
		s.handle(e)
		if s.done() {
			return s.err
		}
	}
	if s.err == nil && !s.done() {
		s.failLiveness()
	}
	return s.err
}

func (s *Sim) failLiveness() {
	msg := fmt.Sprintf("liveness: after heal at %s, target height %d not reached by every correct validator:", s.sc.HealAt, s.target)
	for _, nd := range s.nodes {
		if nd.byz == nil && nd.up {
			st := nd.m.State()
			msg += fmt.Sprintf(" [v%d committed %d, at %d/%d %s]", nd.id, nd.app.Height(), st.Height, st.Round, st.Step)
		}
	}
	s.fail("%s", msg)
}

func (s *Sim) done() bool {
	target := s.target
	if s.opt.Heights > 0 {
		target = s.opt.Heights
	} else if !s.healed {
		return false
	}
	return s.minHonestHeight() >= target
}

func (s *Sim) minHonestHeight() uint64 {
	h := uint64(1<<63 - 1)
	for _, nd := range s.nodes {
		if nd.byz == nil {
			h = min(h, nd.app.Height())
		}
	}
	return h
}

func (s *Sim) start(nd *node) {
	m, err := consensus.NewMachine(s.config(), nd.app, nd.signer, nil)
	if err != nil {
		s.fail("v%d NewMachine: %v", nd.id, err)
		return
	}
	nd.m, nd.up = m, true
	if err := m.Start(nd.app.Height()+1, nd.app.last()); err != nil {
		s.fail("v%d Start: %v", nd.id, err)
	}
	s.flush(nd)
}

// restart rebuilds a crashed validator from its WAL and its application's
// durable blocks, as the node will.
func (s *Sim) restart(nd *node) {
	if nd.up {
		return
	}
	s.res.Restarts++
	next := nd.app.Height() + 1
	var recs []consensus.WALRecord
	kept := nd.wal[:0]
	for _, b := range nd.wal {
		r, err := consensus.DecodeWALRecord(b)
		if err != nil {
			s.fail("v%d WAL decode: %v", nd.id, err)
			return
		}
		if r.Height() >= next { // records below the next height may be deleted
			recs = append(recs, r)
			kept = append(kept, b)
		}
	}
	nd.wal = kept
	m, err := consensus.NewMachine(s.config(), nd.app, nd.signer, recs)
	if err != nil {
		s.fail("v%d restart: %v", nd.id, err)
		return
	}
	s.tracef("v%d restart at height %d with %d records", nd.id, next, len(recs))
	nd.m, nd.up = m, true
	if err := m.Start(next, nd.app.last()); err != nil {
		s.fail("v%d Start after restart: %v", nd.id, err)
	}
	s.flush(nd)
}

func (s *Sim) crash(nd *node, why string) {
	if !nd.up {
		return
	}
	s.tracef("v%d crash (%s)", nd.id, why)
	nd.up, nd.m = false, nil
	nd.inc++
	at := s.now + time.Duration(10+s.rng.IntN(600))*time.Millisecond
	if at > s.sc.HealAt {
		at = s.sc.HealAt
	}
	s.push(&event{at: at, kind: evRestart, node: nd.id})
}

// flush handles a validator's Ready the way a node must: persist, then send,
// then schedule timers. In crash scenarios it may crash between persisting
// some records and sending anything.
func (s *Sim) flush(nd *node) {
	for nd.up && nd.m.HasReady() && s.err == nil {
		rd := nd.m.Ready()
		persist := len(rd.Persist)
		crash := s.sc.Crashes && !s.healed && nd.byz == nil && persist > 0 && s.rng.IntN(50) == 0
		if crash {
			persist = s.rng.IntN(persist + 1)
		}
		for _, r := range rd.Persist {
			if r.Kind == consensus.RecordProposal {
				s.check.proposal(r.Proposal) // signed, so proposed, even if lost in a crash
			}
		}
		for _, r := range rd.Persist[:persist] {
			nd.wal = append(nd.wal, consensus.EncodeWALRecord(r))
			s.check.signed(nd, r)
		}
		if crash {
			s.crash(nd, fmt.Sprintf("after persisting %d of %d records, before sending", persist, len(rd.Persist)))
			return
		}
		for _, env := range rd.Send {
			s.send(nd, env)
		}
		for _, t := range rd.Timeouts {
			s.push(&event{at: s.now + t.Duration, kind: evTimeout, node: nd.id, inc: nd.inc, timeout: t.Event})
		}
		s.res.Evidence += len(rd.Evidence)
		for _, req := range rd.Serve {
			if req.Height >= 1 && req.Height <= nd.app.Height() {
				s.transmit(nd.id, req.Validator, consensus.EncodeMessage(nd.app.blocks[req.Height-1]))
			}
		}
		nd.m.Advance()
		s.check.validity()
	}
}

func (s *Sim) send(nd *node, env consensus.Envelope) {
	if nd.byz != nil {
		nd.byz.send(env)
		return
	}
	s.check.sent(nd, env.Msg)
	s.transmit(nd.id, env.To, consensus.EncodeMessage(env.Msg))
}

// transmit puts b on the wire from one validator to one or all others.
func (s *Sim) transmit(from, to int, b []byte) {
	if to != consensus.Broadcast {
		s.deliverLater(from, to, b)
		return
	}
	for j := range s.nodes {
		if j != from {
			s.deliverLater(from, j, b)
		}
	}
}

func (s *Sim) deliverLater(from, to int, b []byte) {
	if s.group[from] != s.group[to] || (s.sc.Loss > 0 && s.rng.Float64() < s.sc.Loss) {
		return
	}
	copies := 1
	if s.sc.Dup > 0 && s.rng.Float64() < s.sc.Dup {
		copies = 2
	}
	for range copies {
		d := s.sc.MinDelay
		if span := s.sc.MaxDelay - s.sc.MinDelay; span > 0 {
			d += time.Duration(s.rng.Int64N(int64(span)))
		}
		s.push(&event{at: s.now + d, kind: evDeliver, node: to, from: from, data: b})
	}
}

func (s *Sim) handle(e *event) {
	nd := s.nodes[e.node]
	switch e.kind {
	case evDeliver:
		if !nd.up {
			return
		}
		s.res.Deliveries++
		if nd.byz != nil {
			nd.byz.observe(e.data)
		}
		err := nd.m.StepBytes(e.data)
		if err != nil && s.nodes[e.from].byz == nil && !errors.Is(err, consensus.ErrApplication) {
			s.fail("v%d rejected a message of correct v%d: %v", nd.id, e.from, err)
		}
		if s.opt.Trace != nil {
			s.traceMsg(e, err)
		}
		s.flush(nd)
	case evTimeout:
		if !nd.up || e.inc != nd.inc {
			return
		}
		if e.timeout.Kind != consensus.TimeoutRebroadcast {
			s.tracef("v%d %s %d/%d", nd.id, e.timeout.Kind, e.timeout.Height, e.timeout.Round)
		}
		if err := nd.m.Step(e.timeout); err != nil && !errors.Is(err, consensus.ErrApplication) {
			s.fail("v%d timeout: %v", nd.id, err)
		}
		s.flush(nd)
	case evCrash:
		s.crash(nd, "random")
	case evRestart:
		s.restart(nd)
	case evPartition:
		copy(s.group, e.groups)
		s.tracef("partition %v", s.group)
	case evHeal:
		s.healed = true
		clear(s.group)
		for _, x := range s.nodes {
			s.restart(x)
		}
		s.target = s.maxHonestHeight() + uint64(s.sc.MoreHeights)
		s.tracef("heal: target height %d", s.target)
	case evWork:
		s.tracef("work available")
		for _, x := range s.nodes {
			x.app.work = true
			if !x.up {
				continue
			}
			if err := x.m.Step(consensus.WorkAvailable{}); err != nil && !errors.Is(err, consensus.ErrApplication) {
				s.fail("v%d WorkAvailable: %v", x.id, err)
			}
			s.flush(x)
		}
		s.pushWork()
	case evByzTick:
		nd.byz.tick()
		s.push(&event{at: s.now + time.Duration(10+s.rng.IntN(60))*time.Millisecond, kind: evByzTick, node: nd.id})
	}
}

// pushWork schedules the next arrival of work.
func (s *Sim) pushWork() {
	s.push(&event{at: s.now + time.Duration(20+s.rng.IntN(400))*time.Millisecond, kind: evWork})
}

func (s *Sim) maxHonestHeight() uint64 {
	var h uint64
	for _, nd := range s.nodes {
		if nd.byz == nil {
			h = max(h, nd.app.Height())
		}
	}
	return h
}

func (s *Sim) traceMsg(e *event, err error) {
	msg, derr := consensus.DecodeMessage(e.data)
	desc := "garbage"
	switch x := msg.(type) {
	case *consensus.Proposal:
		desc = fmt.Sprintf("proposal %d/%d vr=%d %s by v%d", x.Height, x.Round, x.ValidRound, x.BlockID(), x.Proposer)
	case *consensus.Vote:
		desc = fmt.Sprintf("%s %d/%d %s by v%d", x.Type, x.Height, x.Round, x.BlockID, x.Validator)
	case *consensus.Commit:
		desc = fmt.Sprintf("commit %d/%d %s", x.Cert.Height, x.Cert.Round, x.Cert.BlockID)
	}
	if derr != nil {
		desc += " (" + derr.Error() + ")"
	}
	st := s.nodes[e.node].m.State()
	res := ""
	if err != nil {
		res = " -> " + err.Error()
	}
	s.tracef("v%d <- v%d %s [now %d/%d %s]%s", e.node, e.from, desc, st.Height, st.Round, st.Step, res)
}

// scheduleFaults draws the partitions and crashes of the run from the seed.
func (s *Sim) scheduleFaults() {
	n := len(s.nodes)
	if s.sc.Partitions {
		t := time.Duration(0)
		for {
			t += time.Duration(50+s.rng.IntN(400)) * time.Millisecond
			if t >= s.sc.HealAt {
				break
			}
			groups := make([]int, n)
			switch s.rng.IntN(3) {
			case 0: // isolate one validator
				groups[s.rng.IntN(n)] = 1
			case 1: // split in two
				for i := range groups {
					groups[i] = s.rng.IntN(2)
				}
			default: // heal for a while
			}
			s.push(&event{at: t, kind: evPartition, groups: groups})
		}
	}
	if s.sc.Crashes {
		for range 1 + s.rng.IntN(n) {
			i := s.rng.IntN(n)
			if s.nodes[i].byz == nil {
				s.push(&event{at: time.Duration(s.rng.Int64N(int64(s.sc.HealAt))), kind: evCrash, node: i})
			}
		}
	}
}

type eventKind uint8

const (
	evDeliver eventKind = iota
	evTimeout
	evCrash
	evRestart
	evPartition
	evHeal
	evByzTick
	evWork
)

type event struct {
	at      time.Duration
	seq     uint64
	kind    eventKind
	node    int
	from    int
	inc     int
	data    []byte
	timeout consensus.TimeoutEvent
	groups  []int
}

func (s *Sim) push(e *event) {
	s.seq++
	e.seq = s.seq
	heap.Push(&s.q, e)
}

// eventQueue orders by time, then by insertion: ties never depend on map order.
type eventQueue []*event

func (q eventQueue) Len() int { return len(q) }
func (q eventQueue) Less(i, j int) bool {
	if q[i].at != q[j].at {
		return q[i].at < q[j].at
	}
	return q[i].seq < q[j].seq
}
func (q eventQueue) Swap(i, j int) { q[i], q[j] = q[j], q[i] }
func (q *eventQueue) Push(x any)   { *q = append(*q, x.(*event)) }
func (q *eventQueue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return e
}
