package p2p

import (
	"context"
	"errors"
	"fmt"
	"strings"

	pubsub "github.com/libp2p/go-libp2p-pubsub"
	"github.com/libp2p/go-libp2p/core/peer"
)

// ErrGossipTooLarge: a gossip message over MaxGossipBytes. Put the payload
// on a framed stream and gossip its id.
var ErrGossipTooLarge = errors.New("p2p: gossip message over the cap")

// subscriptionBuffer is the depth of the channel Subscribe returns; gossipsub
// has its own queue of the same size behind it.
const subscriptionBuffer = 128

// Message is a gossip message delivered to a subscription.
type Message struct {
	// Topic is the short name given to Subscribe.
	Topic string
	// From is the peer that published (and signed) the message.
	From peer.ID
	// ReceivedFrom is the neighbour that forwarded it to us.
	ReceivedFrom peer.ID
	Data         []byte
}

// Topic returns the full gossipsub topic of a short name:
// /zkbank/<chain-id>/<name>.
func (h *Host) Topic(name string) string {
	return Namespace + h.cfg.ChainID + "/" + name
}

func checkTopicName(name string) error {
	if name == "" || strings.HasPrefix(name, "/") || strings.ContainsAny(name, " \t\n") {
		return fmt.Errorf("%w: topic name %q (want a short name such as \"headers\")", ErrNamespace, name)
	}
	return nil
}

// join returns the joined topic, joining it and installing its size
// validator on first use.
func (h *Host) join(name string) (*pubsub.Topic, error) {
	if err := checkTopicName(name); err != nil {
		return nil, err
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return nil, ErrClosed
	}
	if t, ok := h.topics[name]; ok {
		return t, nil
	}
	full := h.Topic(name)
	// Peers run the same cap, so anything larger comes from a peer that is
	// broken or hostile: reject it before it is delivered or forwarded.
	limit := h.cfg.MaxGossipBytes
	err := h.ps.RegisterTopicValidator(full, func(_ context.Context, _ peer.ID, m *pubsub.Message) bool {
		return len(m.Data) <= limit
	}, pubsub.WithValidatorInline(true))
	if err != nil {
		return nil, fmt.Errorf("p2p: topic %s: %w", full, err)
	}
	t, err := h.ps.Join(full)
	if err != nil {
		return nil, fmt.Errorf("p2p: join %s: %w", full, err)
	}
	h.topics[name] = t
	return t, nil
}

// Publish gossips data on the chain's topic name. data must fit in
// MaxGossipBytes (64 KiB by default); gossip may drop it under load, so it
// must never be the only copy of something a peer needs.
func (h *Host) Publish(ctx context.Context, name string, data []byte) error {
	if len(data) > h.cfg.MaxGossipBytes {
		return fmt.Errorf("p2p: publish %s: %d bytes, cap %d: %w", name, len(data), h.cfg.MaxGossipBytes, ErrGossipTooLarge)
	}
	t, err := h.join(name)
	if err != nil {
		return err
	}
	if err := t.Publish(ctx, data); err != nil {
		return fmt.Errorf("p2p: publish %s: %w", name, err)
	}
	h.metrics.BytesSent.WithLabelValues(gossipLabel).Add(float64(len(data)))
	return nil
}

// Subscribe delivers the messages of the chain's topic name that other peers
// publish (our own are not echoed back). The channel closes after cancel or
// Close. A consumer that falls behind loses messages: gossipsub drops them.
func (h *Host) Subscribe(name string) (<-chan Message, func(), error) {
	t, err := h.join(name)
	if err != nil {
		return nil, nil, err
	}
	sub, err := t.Subscribe(pubsub.WithBufferSize(subscriptionBuffer))
	if err != nil {
		return nil, nil, fmt.Errorf("p2p: subscribe %s: %w", name, err)
	}
	ctx, cancel := context.WithCancel(h.ctx)
	out := make(chan Message, subscriptionBuffer)
	done := make(chan struct{})
	err = h.spawn(func() {
		defer close(done)
		defer close(out)
		defer sub.Cancel()
		self := h.host.ID()
		for {
			m, err := sub.Next(ctx)
			if err != nil {
				return
			}
			if m.GetFrom() == self {
				continue
			}
			h.metrics.BytesReceived.WithLabelValues(gossipLabel).Add(float64(len(m.Data)))
			select {
			case out <- Message{Topic: name, From: m.GetFrom(), ReceivedFrom: m.ReceivedFrom, Data: m.Data}:
			case <-ctx.Done():
				return
			}
		}
	})
	if err != nil {
		cancel()
		sub.Cancel()
		return nil, nil, err
	}
	return out, func() { cancel(); <-done }, nil
}

// TopicPeers lists the peers known to subscribe to the topic name; a node
// can wait for its validators here before relying on gossip.
func (h *Host) TopicPeers(name string) []peer.ID {
	t, err := h.join(name)
	if err != nil {
		return nil
	}
	return t.ListPeers()
}
