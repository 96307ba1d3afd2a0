package node

import (
	"context"
	"encoding/binary"
	"slices"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/zkbank/zkbank/chain"
)

// Heads: after each finalized height a node gossips a 41-byte announcement
// (version, height, block hash) on the chain's "heads" topic, and follows the
// announcements of its peers. Gossip carries only this small header, never
// ciphertexts (DESIGN: gossipsub drops silently when queues fill). It lets an
// operator see, in zkbank_peers_best_height, whether a node is behind the
// swarm even when no consensus message reaches it.

const (
	headsTopic   = "heads"
	headVersion  = 1
	headLen      = 1 + 8 + 32
	headsTimeout = 5 * time.Second
)

func encodeHead(h uint64, hash [32]byte) []byte {
	b := make([]byte, 0, headLen)
	b = append(b, headVersion)
	b = binary.BigEndian.AppendUint64(b, h)
	return append(b, hash[:]...)
}

func decodeHead(b []byte) (uint64, bool) {
	if len(b) != headLen || b[0] != headVersion {
		return 0, false
	}
	return binary.BigEndian.Uint64(b[1:9]), true
}

// announce gossips the head of a finalized view, off the consensus actor.
func (n *Node) announce(v *chain.View) {
	if v.Block == nil {
		return
	}
	msg := encodeHead(v.Height, v.Hash)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), headsTimeout)
		defer cancel()
		if err := n.host.Publish(ctx, headsTopic, msg); err != nil {
			n.log.Debug("head announcement not sent", "height", v.Height, "err", err)
		}
	}()
}

// followHeads records the height the validators announce until ctx ends:
// only announcements a genesis validator published (gossip messages are
// signed by their publisher) count, and the height exported is the
// (f+1)-th highest of the validators' latest, so no f of them can inflate
// it and strangers move nothing. On a full node it also wakes the sync
// loop when that height is above this node's. Announcements only make the
// node ask: whatever it then fetches is verified.
func (n *Node) followHeads(ctx context.Context) error {
	msgs, cancel, err := n.host.Subscribe(headsTopic)
	if err != nil {
		return err
	}
	go func() {
		defer cancel()
		latest := make([]uint64, len(n.gen.Validators))
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-msgs:
				if !ok {
					return
				}
				n.noteHead(latest, m.From, m.Data)
			}
		}
	}()
	return nil
}

// noteHead takes one announcement from a gossip publisher into latest (the
// validators' latest heights, by index): anything but a validator's
// well-formed, newer announcement is ignored.
func (n *Node) noteHead(latest []uint64, from peer.ID, data []byte) {
	h, ok := decodeHead(data)
	i := n.validatorIndex(from)
	if !ok || i < 0 || i >= len(latest) || h <= latest[i] {
		return
	}
	latest[i] = h
	best := agreedHeight(latest, (len(latest)-1)/3)
	n.validatorsBest.Store(best)
	n.met.PeersBestHeight.Set(float64(best))
	if n.full != nil && best > n.full.verified.Load() {
		n.full.poke()
	}
}

// agreedHeight is the (f+1)-th highest of the validators' reported heights:
// at least one honest validator has reached it.
func agreedHeight(latest []uint64, f int) uint64 {
	hs := slices.Clone(latest)
	slices.Sort(hs)
	if f >= len(hs) {
		return 0
	}
	return hs[len(hs)-1-f]
}
