package actors

import (
	"context"
	"log/slog"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/zkbank/zkbank/p2p"
)

type netSend struct {
	To      peer.ID
	Proto   protocol.ID
	Payload []byte
}

// netActor owns the libp2p host. Sends run on their own goroutines so one
// slow peer never stalls the others; ordering per peer and protocol is kept by
// the host's long-lived outbound streams.
type netActor struct {
	host *p2p.Host
	log  *slog.Logger
	sem  chan struct{}
}

func (n *netActor) Receive(ctx actor.Context) {
	if m, ok := ctx.Message().(*netSend); ok {
		select {
		case n.sem <- struct{}{}:
		default:
			n.log.Warn("dropping outbound message: too many in flight", "to", m.To.ShortString(), "proto", m.Proto)
			return
		}
		go func() {
			defer func() { <-n.sem }()
			c, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := n.host.Send(c, m.To, m.Proto, m.Payload); err != nil {
				n.log.Debug("send failed", "to", m.To.ShortString(), "proto", m.Proto, "err", err)
			}
		}()
	}
}

// Net is the client of the net actor.
type Net struct {
	sys  *actor.ActorSystem
	pid  *actor.PID
	Host *p2p.Host
}

// NewNet spawns the net actor over host.
func NewNet(sys *actor.ActorSystem, host *p2p.Host, logger *slog.Logger) *Net {
	props := actor.PropsFromProducer(func() actor.Actor {
		return &netActor{host: host, log: logger.With("component", "net"), sem: make(chan struct{}, 256)}
	})
	return &Net{sys: sys, pid: sys.Root.Spawn(props), Host: host}
}

// Send queues a one-way message to a peer.
func (n *Net) Send(to peer.ID, proto protocol.ID, payload []byte) {
	n.sys.Root.Send(n.pid, &netSend{To: to, Proto: proto, Payload: payload})
}
