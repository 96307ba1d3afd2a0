// Package p2p is a zkbank node's transport: one libp2p host per process.
//
// It owns the libp2p host (identity, TCP with Noise, optional TLS and QUIC,
// yamux), its resource manager and connection manager, the gossipsub router,
// optional discovery (bootstrap peers kept connected with backoff, mDNS, a
// private Kademlia DHT under the /zkbank prefix), and the framed streams that
// carry every payload bigger than a header.
//
// It moves bytes and nothing else. It must never import ledger, consensus,
// actors or store: the node's p2p actor owns a *Host and translates between
// these bytes and the node's messages. Protocol ids and topic names are picked
// by the node; this package only enforces that they live under /zkbank/.
//
// Two ways to move bytes, by size and by what a loss costs:
//
//   - Framed streams (Request, Send) for anything that may be large or must
//     not be dropped silently: every frame has a length prefix that is checked
//     against the protocol's read cap before any allocation, every exchange has
//     a deadline, and any error resets the stream and is returned or counted.
//   - Gossip (Publish, Subscribe) for small announcements only (ids, headers):
//     gossipsub drops messages when its per-peer queues are full, so nothing
//     there may be the only copy of something a validator needs.
//
// It also decides who may talk (gate.go): a peer whose identify agent is not
// a zkbank agent of this host's protocol number is refused and blocked for a
// while, Config.Allow (the node's policy) is asked before any frame's payload
// is read, and blocked peers are kept out by a libp2p ConnectionGater.
//
// Every Host has its own Prometheus registerer; nothing is ever registered on
// the global default registry. See docs/P2P.md for protocols, caps and limits.
package p2p
