package actors

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/zkbank/zkbank/store"
)

// Maintainable is the part of a store that background upkeep needs.
type Maintainable interface {
	TruncateBefore(height uint64) error
	RunGC(ctx context.Context) (int, error)
}

type finalizedHeight struct{ Height uint64 }
type gcTick struct{}

// storeActor runs the store's background upkeep: truncating the consensus
// WAL behind finalized heights and reclaiming value-log space. Reads go
// straight to the store (it is safe for concurrent use) and the consensus
// actor writes finalized heights itself; what needs ordering is upkeep, so
// that a GC pass never overlaps another and truncations apply in height order.
type storeActor struct {
	db     Maintainable
	log    *slog.Logger
	window uint64 // WAL records this many heights behind the last finalized one are dropped
	gcEach time.Duration
	trunc  uint64 // highest truncation done
	// stopped: the actor is stopping; a pending GC tick does nothing.
	stopped bool
}

func (s *storeActor) Receive(ctx actor.Context) {
	switch m := ctx.Message().(type) {
	case *actor.Started:
		if s.gcEach > 0 {
			s.scheduleGC(ctx)
		}
	case *finalizedHeight:
		if m.Height <= s.window || m.Height-s.window <= s.trunc {
			return
		}
		before := m.Height - s.window
		if err := s.db.TruncateBefore(before); err != nil {
			s.log.Warn("WAL truncation failed", "before", before, "err", err)
			return
		}
		s.trunc = before
	case *actor.Stopping:
		s.stopped = true
	case *gcTick:
		if s.stopped {
			return
		}
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		n, err := s.db.RunGC(c)
		cancel()
		if errors.Is(err, store.ErrClosed) {
			return // the node closed its store (a restart): no more passes
		}
		if err != nil {
			s.log.Warn("value-log GC failed", "err", err)
		} else if n > 0 {
			s.log.Info("value-log GC", "files_rewritten", n)
		}
		s.scheduleGC(ctx)
	}
}

func (s *storeActor) scheduleGC(ctx actor.Context) {
	self, sys := ctx.Self(), ctx.ActorSystem()
	time.AfterFunc(s.gcEach, func() { sys.Root.Send(self, &gcTick{}) })
}

// Store is the client of the store upkeep actor.
type Store struct {
	sys *actor.ActorSystem
	pid *actor.PID
}

// StoreConfig sets the upkeep schedule.
type StoreConfig struct {
	// WALWindow: WAL records of heights more than this far behind the last
	// finalized height are deleted.
	WALWindow uint64
	// GCEvery is the period of value-log GC passes (0 disables them).
	GCEvery time.Duration
}

// NewStore spawns the upkeep actor over db.
func NewStore(sys *actor.ActorSystem, db Maintainable, c StoreConfig, logger *slog.Logger) *Store {
	props := actor.PropsFromProducer(func() actor.Actor {
		return &storeActor{db: db, log: logger.With("component", "store"), window: c.WALWindow, gcEach: c.GCEvery}
	})
	return &Store{sys: sys, pid: sys.Root.Spawn(props)}
}

// Finalized tells the actor a height is durable: older WAL records can go.
func (s *Store) Finalized(h uint64) { s.sys.Root.Send(s.pid, &finalizedHeight{Height: h}) }
