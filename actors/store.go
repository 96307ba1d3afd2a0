package actors

import (
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/zkbank/zkbank/store"
)

// storeOp runs against the storage handle inside the store actor.
type storeOp struct {
	Fn func(store.Backend) error
}

// storeActor is the single owner of the node's storage handle: every
// durable write is serialized through it.
type storeActor struct{ db store.Backend }

func (s *storeActor) Receive(ctx actor.Context) {
	if op, ok := ctx.Message().(*storeOp); ok {
		ctx.Respond(op.Fn(s.db))
	}
}

// Store is the client of the store actor.
type Store struct {
	sys *actor.ActorSystem
	pid *actor.PID
}

// NewStore spawns the store actor over db.
func NewStore(sys *actor.ActorSystem, db store.Backend) *Store {
	return &Store{sys: sys, pid: sys.Root.Spawn(actor.PropsFromProducer(func() actor.Actor { return &storeActor{db: db} }))}
}

// Do runs fn in the store actor and waits for it (durable when it returns nil).
func (s *Store) Do(fn func(store.Backend) error) error {
	r, err := s.sys.Root.RequestFuture(s.pid, &storeOp{Fn: fn}, 2*time.Minute).Result()
	if err != nil {
		return err
	}
	if r == nil {
		return nil
	}
	return r.(error)
}
