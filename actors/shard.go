package actors

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/zkbank/zkbank/ledger"
)

// evalBatch asks a shard actor to evaluate one batch.
type evalBatch struct {
	Book      *ledger.Book
	Batch     *ledger.Batch
	BlockHash []byte
	Index     int
}

type evalResult struct {
	Eval *ledger.Evaluation
	Err  error
}

// shardActor evaluates the batches of one account shard with its own
// evaluator. It keeps no ledger state between messages (the book it is given
// is immutable), so a restart after a panic cannot leave anything
// half-applied: the request simply fails and is retried.
type shardActor struct {
	shard uint32
	eng   *ledger.Engine
	rec   ledger.RecCache // recomposed states of this shard, by state
}

// crashHook lets tests make a shard actor panic mid-evaluation; nil in a
// shipped binary.
var crashHook func(shard uint32) bool

func (s *shardActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *evalBatch:
		// A panic answers the waiting request at once (instead of leaving it
		// to its timeout, minutes away, with consensus waiting on it), then
		// goes on to the supervisor, which restarts this actor.
		defer func() {
			if r := recover(); r != nil {
				ctx.Respond(&evalResult{Err: fmt.Errorf("%w: shard %d panicked: %v", ErrShardCrashed, s.shard, r)})
				s.rec = ledger.RecCache{}
				panic(r)
			}
		}()
		if crashHook != nil && crashHook(s.shard) {
			panic("injected shard crash")
		}
		ev, err := m.Book.EvaluateBatch(s.eng, m.Batch, m.BlockHash, m.Index, &s.rec)
		ctx.Respond(&evalResult{Eval: ev, Err: err})
	}
}

// ErrShardCrashed reports an evaluation whose shard actor panicked.
var ErrShardCrashed = errors.New("actors: shard actor crashed")

// Shards is the pool of shard actors: one per account shard, spawned on
// first use, supervised with restart on panic.
type Shards struct {
	sys     *actor.ActorSystem
	eng     *ledger.Engine
	timeout time.Duration
	mu      sync.Mutex
	pids    map[uint32]*actor.PID
}

// NewShards creates the pool. timeout bounds one batch evaluation.
func NewShards(sys *actor.ActorSystem, eng *ledger.Engine, timeout time.Duration) *Shards {
	return &Shards{sys: sys, eng: eng, timeout: timeout, pids: map[uint32]*actor.PID{}}
}

func (s *Shards) pid(shard uint32) *actor.PID {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.pids[shard]; ok {
		return p
	}
	eng := s.eng.Clone()
	props := actor.PropsFromProducer(func() actor.Actor { return &shardActor{shard: shard, eng: eng} },
		actor.WithSupervisor(actor.NewOneForOneStrategy(10, time.Minute, actor.DefaultDecider)))
	p, err := s.sys.Root.SpawnNamed(props, fmt.Sprintf("shard-%d", shard))
	if err != nil {
		p = s.sys.Root.Spawn(props)
	}
	s.pids[shard] = p
	return p
}

// ErrEvaluation reports a batch that could not be evaluated.
var ErrEvaluation = errors.New("actors: evaluation failed")

// Evaluate evaluates every batch, all shards in parallel, and returns the
// evaluations in batch order. A batch whose actor crashed is retried once.
func (s *Shards) Evaluate(book *ledger.Book, batches []*ledger.Batch, blockHash []byte) ([]*ledger.Evaluation, error) {
	out := make([]*ledger.Evaluation, len(batches))
	futures := make([]*actor.Future, len(batches))
	for i, b := range batches {
		futures[i] = s.sys.Root.RequestFuture(s.pid(b.Shard), &evalBatch{Book: book, Batch: b, BlockHash: blockHash, Index: i}, s.timeout)
	}
	for i, f := range futures {
		r := result(f)
		if r.Err != nil && (errors.Is(r.Err, ErrShardCrashed) || errors.Is(r.Err, actor.ErrTimeout)) { // one retry
			r = result(s.sys.Root.RequestFuture(s.pid(batches[i].Shard), &evalBatch{Book: book, Batch: batches[i], BlockHash: blockHash, Index: i}, s.timeout))
		}
		if r.Err != nil {
			return nil, fmt.Errorf("%w: shard %d: %w", ErrEvaluation, batches[i].Shard, r.Err)
		}
		out[i] = r.Eval
	}
	return out, nil
}

func result(f *actor.Future) *evalResult {
	res, err := f.Result()
	if err != nil {
		return &evalResult{Err: err}
	}
	return res.(*evalResult)
}
