package actors

import (
	"errors"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/zkbank/zkbank/consensus"
)

// ConsensusHooks connect the consensus actor to the rest of the node.
type ConsensusHooks struct {
	// Persist makes WAL records durable; nothing is sent before it returns.
	Persist func(recs []consensus.WALRecord) error
	// Send delivers a message to one validator or all (consensus.Broadcast).
	Send func(to int, msg []byte)
	// Committed is told of every decided height (after Application.Finalize).
	Committed func(c *consensus.Commit)
	// Serve answers a lagging validator with a stored decision.
	Serve func(req consensus.CommitRequest)
	// Halted is told, once, that the actor stopped for good: Start failed,
	// a WAL write failed, or Application.Finalize failed (consensus
	// ErrHalted). The actor ignores every later input; the node restarts
	// from its durable state.
	Halted func(err error)
	// Evidence records equivocation.
	Evidence func(e consensus.Evidence)
}

type startConsensus struct {
	Height uint64
	Last   *consensus.Commit
}

// inbound is a message from a peer: decoded already (Msg), or bytes the
// machine decodes (and reports if malformed).
type inbound struct {
	Bytes []byte
	Msg   consensus.Message
}
type fired struct{ Ev consensus.TimeoutEvent }
type roundQuery struct{}
type workAvailable struct{}

// RoundInfo is the consensus actor's current position.
type RoundInfo struct {
	Height uint64
	Round  consensus.Round
	Halted bool
}

// consensusActor owns the consensus state machine and its timers. It is the
// only goroutine that touches the machine (and through it the application).
type consensusActor struct {
	m      *consensus.Machine
	hooks  ConsensusHooks
	log    *slog.Logger
	halted error
}

func (c *consensusActor) Receive(ctx actor.Context) {
	switch msg := ctx.Message().(type) {
	case *startConsensus:
		if err := c.m.Start(msg.Height, msg.Last); err != nil {
			c.halt("consensus start failed", err)
		}
	case *inbound:
		if c.halted != nil {
			return
		}
		var err error
		if msg.Msg != nil {
			err = c.m.Step(msg.Msg)
		} else {
			err = c.m.StepBytes(msg.Bytes)
		}
		c.stepped(err, "consensus input rejected")
	case *fired:
		if c.halted != nil {
			return
		}
		c.stepped(c.m.Step(msg.Ev), "timeout step")
	case *workAvailable:
		if c.halted != nil {
			return
		}
		c.stepped(c.m.Step(consensus.WorkAvailable{}), "work-available step")
	case *roundQuery:
		st := c.m.State()
		ctx.Respond(RoundInfo{Height: st.Height, Round: st.Round, Halted: c.halted != nil})
		return
	default:
		return
	}
	c.drain(ctx)
}

// stepped logs what a Step returned: a rejected input or an application
// error at debug level (peers send plenty of stale or duplicate messages),
// a halted machine as the end of this actor.
func (c *consensusActor) stepped(err error, what string) {
	switch {
	case err == nil:
	case errors.Is(err, consensus.ErrHalted):
		c.halt("consensus halted: a decided height could not be finalized", err)
	default:
		c.log.Debug(what, "err", err)
	}
}

// halt stops the actor for good and tells the node.
func (c *consensusActor) halt(msg string, err error) {
	if c.halted != nil {
		return
	}
	c.halted = err
	c.log.Error(msg, "err", err)
	if c.hooks.Halted != nil {
		c.hooks.Halted(err)
	}
}

// drain performs Ready in order: persist, send, schedule, report.
func (c *consensusActor) drain(ctx actor.Context) {
	for c.m.HasReady() {
		rd := c.m.Ready()
		if len(rd.Persist) > 0 {
			if err := c.hooks.Persist(rd.Persist); err != nil {
				// Never send what was not made durable: halt instead.
				c.halt("consensus WAL write failed; halting", err)
				return
			}
		}
		for _, env := range rd.Send {
			c.hooks.Send(env.To, consensus.EncodeMessage(env.Msg))
		}
		self, sys := ctx.Self(), ctx.ActorSystem()
		for _, t := range rd.Timeouts {
			ev := t.Event
			time.AfterFunc(t.Duration, func() { sys.Root.Send(self, &fired{Ev: ev}) })
		}
		for _, cm := range rd.Committed {
			if c.hooks.Committed != nil {
				c.hooks.Committed(cm)
			}
		}
		for _, e := range rd.Evidence {
			c.log.Warn("equivocation evidence", "evidence", e.String())
			if c.hooks.Evidence != nil {
				c.hooks.Evidence(e)
			}
		}
		for _, s := range rd.Serve {
			if c.hooks.Serve != nil {
				c.hooks.Serve(s)
			}
		}
		c.m.Advance()
	}
}

// Consensus is the client of the consensus actor.
type Consensus struct {
	sys *actor.ActorSystem
	pid *actor.PID
}

// NewConsensus spawns the consensus actor around a machine.
func NewConsensus(sys *actor.ActorSystem, m *consensus.Machine, hooks ConsensusHooks, logger *slog.Logger) *Consensus {
	props := actor.PropsFromProducer(func() actor.Actor {
		return &consensusActor{m: m, hooks: hooks, log: logger.With("component", "consensus")}
	})
	return &Consensus{sys: sys, pid: sys.Root.Spawn(props)}
}

// Start begins consensus at height with the previous decision.
func (c *Consensus) Start(height uint64, last *consensus.Commit) {
	c.sys.Root.Send(c.pid, &startConsensus{Height: height, Last: last})
}

// Deliver hands a message received from a peer to the machine.
func (c *Consensus) Deliver(b []byte) { c.sys.Root.Send(c.pid, &inbound{Bytes: b}) }

// DeliverMessage hands an already decoded message to the machine.
func (c *Consensus) DeliverMessage(m consensus.Message) {
	c.sys.Root.Send(c.pid, &inbound{Msg: m})
}

// Stop stops the consensus actor after the message it is handling, and
// waits for that (bounded), so nothing writes to the store once it closes.
func (c *Consensus) Stop() {
	_ = c.sys.Root.StopFuture(c.pid).Wait()
}

// WorkAvailable tells a proposer waiting for work that transfers arrived.
func (c *Consensus) WorkAvailable() { c.sys.Root.Send(c.pid, &workAvailable{}) }

// Round reports the current height and round.
func (c *Consensus) Round() (RoundInfo, error) {
	r, err := c.sys.Root.RequestFuture(c.pid, &roundQuery{}, 5*time.Second).Result()
	if err != nil {
		return RoundInfo{}, err
	}
	return r.(RoundInfo), nil
}
