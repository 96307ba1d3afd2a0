package actors

import (
	"log/slog"

	"github.com/asynkron/protoactor-go/actor"
)

// NewSystem starts an actor system that logs through logger (protoactor's
// default logger prints ANSI colours and logs panics at INFO).
func NewSystem(logger *slog.Logger) *actor.ActorSystem {
	l := logger.With("component", "actors")
	return actor.NewActorSystem(
		actor.WithLoggerFactory(func(*actor.ActorSystem) *slog.Logger { return l }),
		actor.WithDeadLetterThrottleCount(3),
	)
}
