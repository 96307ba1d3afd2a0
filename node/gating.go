package node

import (
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/zkbank/zkbank/p2p"
	"github.com/zkbank/zkbank/version"
	"golang.org/x/time/rate"
)

// Who may use which protocol, with what cap, timeout and rate (docs/P2P.md,
// "Roles, gating and limits"). The validators are the genesis peers
// (Node.peers); everyone else (full nodes, clients, strangers) is public.
// p2p asks gate.allow before a handler sees anything of a frame; this file is
// the policy, p2p/gate.go the mechanism.

// who says which peers may open a protocol.
type who int

const (
	// validatorsOnly: refused to any peer outside the genesis validators,
	// and a peer refused notValidatorStrikes times in about a minute is
	// disconnected and blocked for notValidatorBlock.
	validatorsOnly who = iota
	// public: anyone, each peer within its own token bucket per protocol.
	public
	// changing: the validators and, while a validator-set change is being
	// made, the other participants of its resharing (gate.expect);
	// refused like validatorsOnly to anyone else.
	changing
)

// access is one protocol's line in gating.
type access struct {
	who who
	// limits are the read cap and timeout, for requests, messages and
	// responses alike (a protocol whose requests are small caps them
	// apart, MaxRequestBytes: a frame's declared length is reserved before
	// its body arrives); both ends use this table, so they agree.
	limits p2p.ProtocolLimits
	// rate and burst are the token bucket of one non-validator peer on a
	// public protocol, one token per request or message; a validator gets
	// validatorRateFactor times both. Validators-only protocols have none.
	rate  rate.Limit
	burst int
}

// gating is the table: one line per protocol this node serves. A protocol
// missing here is refused to every peer (reason "unlisted"), so a new
// handler needs its line. Caps are the largest honest payload with room to
// spare; rates are far above what one honest peer sends. Whatever only the
// committee does (consensus, key ceremony, resharing) is validatorsOnly.
var gating = map[protocol.ID]access{
	// Proposals carry their block and precommits (uploads are fetched by
	// hash); votes carry piece attestations.
	protoConsensus: {who: validatorsOnly, limits: p2p.ProtocolLimits{MaxFrameBytes: 96 << 20, Timeout: 2 * time.Minute}},
	// A co-holder's pieces of one upload (node/recover.go).
	protoPieces: {who: validatorsOnly, limits: p2p.ProtocolLimits{MaxFrameBytes: 1 << 20, Timeout: 10 * time.Second}},
	// Resharing messages of a validator-set change (reshare.go): a
	// dealer's commitments are (1 + N') QP polynomials.
	protoReshare: {who: changing, limits: reshareLimits},
	// Key-ceremony shares, ~64 MiB frames.
	protoCeremony: {who: validatorsOnly, limits: p2p.ProtocolLimits{MaxFrameBytes: 96 << 20, Timeout: 5 * time.Minute}},
	// One signed envelope and its sealed upload.
	protoTx: {who: public, limits: p2p.ProtocolLimits{MaxFrameBytes: maxUpload + 1<<16, Timeout: time.Minute}, rate: 50, burst: 100},
	// An upload's or a piece ciphertext's bytes by hash (the answer is up to
	// one upload).
	protoSync: {who: public, limits: p2p.ProtocolLimits{MaxFrameBytes: maxUpload + 1<<16, Timeout: time.Minute, MaxRequestBytes: smallRequest}, rate: 20, burst: 40},
	// An account opening: kind, key, signature (97 bytes).
	protoOpen: {who: public, limits: p2p.ProtocolLimits{MaxFrameBytes: 1 << 10, Timeout: 10 * time.Second}, rate: 10, burst: 20},
	// A score consent (at most maxConsentBytes).
	protoConsent: {who: public, limits: p2p.ProtocolLimits{MaxFrameBytes: maxConsentBytes, Timeout: 10 * time.Second}, rate: 10, burst: 20},
	// Runs of decisions and the public keys (blocksync.go, whose handler
	// has finer per-peer limits of its own under these).
	protoBlocks: {who: public, limits: blocksLimits, rate: 25, burst: 50},
	// State snapshots: the list, chunks, a decision (snapshot.go).
	protoSnapshot: {who: public, limits: p2p.ProtocolLimits{MaxFrameBytes: 96 << 20, Timeout: 2 * time.Minute, MaxRequestBytes: smallRequest}, rate: 10, burst: 20},
}

// smallRequest caps the requests of the protocols that ask by a hash or a
// height (sync, blocks, snapshot): their answers may be large, their
// requests never are.
const smallRequest = 64

// Throttling of peers that knock on validators-only protocols, and the
// generosity shown to validators on public ones: a byzantine validator is a
// threat too, so its limits are high but present.
const (
	// allNonValidators is how many peers' worth of a public protocol all
	// non-validators share.
	allNonValidators = 16

	notValidatorStrikes = 3
	notValidatorBlock   = 10 * time.Minute
	validatorRateFactor = 50
)

// Reasons of zkbank_p2p_refused_total set by the gate.
const (
	refusedNotValidator = "not_validator"
	refusedRateLimited  = "rate_limited"
	refusedUnlisted     = "unlisted"
)

// p2pAgent is the identify agent of this binary in a role ("validator",
// "full"): zkbank/<version> (protocol <n>; <role>). Peers of another
// protocol number refuse it (p2p/gate.go).
func p2pAgent(role string) string {
	return p2p.Agent{Version: version.Version(), Protocol: version.Protocol, Role: role}.String()
}

// protocolLimits is the p2p.Config.Protocols of a node: every protocol of
// gating with its cap and timeout.
func protocolLimits() map[protocol.ID]p2p.ProtocolLimits {
	out := make(map[protocol.ID]p2p.ProtocolLimits, len(gating))
	for id, a := range gating {
		out[id] = a.limits
	}
	return out
}

// gate applies gating to one node's peers; its allow is p2p.Config.Allow.
type gate struct {
	log        *slog.Logger
	validators map[peer.ID]bool
	// others and vals hold the token buckets of public protocols, keyed by
	// peer: for non-validators and for validators.
	others, vals map[protocol.ID]*limiter
	// all is one bucket per public protocol shared by every non-validator
	// (allNonValidators times one peer's rate and burst).
	all map[protocol.ID]*limiter
	// strikes forgives one not_validator refusal every minute /
	// notValidatorStrikes; an empty bucket blocks the peer.
	strikes  *limiter
	unlisted sync.Map // protocol.ID -> struct{}: logged once
	// resharing are the participants of a resharing under way (expect).
	resharing atomic.Pointer[map[peer.ID]bool]
}

// expect lets peers use the changing protocols (nil: nobody beyond the
// validators) for the length of a resharing.
func (g *gate) expect(peers []peer.ID) {
	if len(peers) == 0 {
		g.resharing.Store(nil)
		return
	}
	m := make(map[peer.ID]bool, len(peers))
	for _, p := range peers {
		m[p] = true
	}
	g.resharing.Store(&m)
}

func newGate(validators []peer.ID, log *slog.Logger) *gate {
	g := &gate{log: log, validators: make(map[peer.ID]bool, len(validators)),
		others: map[protocol.ID]*limiter{}, vals: map[protocol.ID]*limiter{}, all: map[protocol.ID]*limiter{},
		strikes: newLimiter(rate.Every(time.Minute/notValidatorStrikes), notValidatorStrikes-1)}
	for _, v := range validators {
		g.validators[v] = true
	}
	for id, a := range gating {
		if a.who == public {
			g.others[id] = newLimiter(a.rate, a.burst)
			g.vals[id] = newLimiter(a.rate*validatorRateFactor, a.burst*validatorRateFactor)
			g.all[id] = newLimiter(a.rate*allNonValidators, a.burst*allNonValidators)
		}
	}
	return g
}

// isValidator is p2p.Config.Trusted: the genesis validators, the only
// peers that may keep message streams open.
func (g *gate) isValidator(p peer.ID) bool { return g.validators[p] }

// allow is p2p.Config.Allow: nil, or a *p2p.Refusal naming why.
func (g *gate) allow(from peer.ID, proto protocol.ID) error {
	a, ok := gating[proto]
	if !ok {
		if _, seen := g.unlisted.LoadOrStore(proto, struct{}{}); !seen {
			g.log.Error("a protocol is served without a line in node/gating.go: refused to every peer", "protocol", proto)
		}
		return &p2p.Refusal{Reason: refusedUnlisted}
	}
	isValidator := g.validators[from]
	if a.who == changing {
		if m := g.resharing.Load(); m != nil && (*m)[from] {
			return nil
		}
		a.who = validatorsOnly
	}
	switch {
	case a.who == validatorsOnly && isValidator:
		return nil
	case a.who == validatorsOnly:
		r := &p2p.Refusal{Reason: refusedNotValidator}
		if !g.strikes.allow(from.String()) {
			r.Block = notValidatorBlock
		}
		return r
	}
	buckets := g.others
	if isValidator {
		buckets = g.vals
	} else if !g.all[proto].allow("") {
		// Peer ids are free: every non-validator together gets a bounded
		// share of a public protocol, whatever number of identities.
		return &p2p.Refusal{Reason: refusedRateLimited}
	}
	if !buckets[proto].allow(from.String()) {
		return &p2p.Refusal{Reason: refusedRateLimited}
	}
	return nil
}
