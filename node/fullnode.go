package node

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/zkbank/zkbank/actors"
	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/chain"
	"github.com/zkbank/zkbank/consensus"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/ledger"
)

// A full node (docs/OPERATIONS.md, "Running a full node and joining a
// swarm") is a peer whose consensus key is not a genesis validator's. It
// holds no key share and no sealing key, never votes, and follows the chain
// over /zkbank/blocks/1: every decision's certificate is verified against
// the genesis validators' keys and every block re-evaluated with the public
// evaluation keys (chain.App in follow mode, chain/follow.go), the
// uploads and decided piece ciphertexts fetched over /zkbank/sync/1 as a
// lagging validator fetches them. It persists exactly as a validator does,
// serves the read API and the blocks protocol, and relays submissions to
// the validators.

// Node roles, as GET /v1/status reports them.
const (
	RoleValidator = "validator"
	RoleFull      = "full"
)

// fullNode is what only a full node has.
type fullNode struct {
	app      *chain.App // owned by the sync goroutine
	verified atomic.Uint64
	best     atomic.Uint64 // the (f+1)-th highest of the validators' last answered heights
	lasts    []uint64      // each validator's highest answered height (under mu)
	// unavailable is the last height whose uploads or pieces were missing.
	unavailable atomic.Uint64
	wake        chan struct{}
	met         *fullMetrics

	mu      sync.Mutex
	avoid   map[peer.ID]time.Time // peers that served a refused decision, until then
	rotate  int
	refused uint64 // the last height refused (0: none)
}

type fullMetrics struct {
	verified prometheus.Gauge
	best     prometheus.Gauge
	refused  *prometheus.CounterVec
	bytes    prometheus.Counter
	heights  prometheus.Counter
}

func newFullMetrics(reg prometheus.Registerer) *fullMetrics {
	m := &fullMetrics{
		verified: prometheus.NewGauge(prometheus.GaugeOpts{Name: "zkbank_full_verified_height", Help: "Last height this full node verified (certificate and re-evaluation) and applied."}),
		best:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "zkbank_full_validators_height", Help: "The validators' height as this full node learned it: the (f+1)-th highest of their answers."}),
		refused:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkbank_full_refused_total", Help: "Served decisions this full node refused, by reason (certificate, digest, block)."}, []string{"reason"}),
		bytes:    prometheus.NewCounter(prometheus.CounterOpts{Name: "zkbank_full_sync_bytes_total", Help: "Bytes of decisions, uploads and piece ciphertexts fetched to sync."}),
		heights:  prometheus.NewCounter(prometheus.CounterOpts{Name: "zkbank_full_synced_heights_total", Help: "Heights verified and applied from served decisions."}),
	}
	reg.MustRegister(m.verified, m.best, m.refused, m.bytes, m.heights)
	return m
}

// strangerBlocksTimeout bounds a run request to a peer that is not a
// validator (another full node): one that stalls costs this much, then is
// avoided.
const strangerBlocksTimeout = 15 * time.Second

// fullAvoid is how long a peer that served a refused decision is not asked.
const fullAvoid = time.Minute

// runFull runs the node in home as a full node until ctx is cancelled.
func runFull(ctx context.Context, h Home, es *epochState, lc *LocalConfig, ident crypto.PrivKey, ck ed25519.PrivateKey, peers []peer.ID, logger *slog.Logger) error {
	gen := es.current()
	pid, err := peer.IDFromPrivateKey(ident)
	if err != nil {
		return err
	}
	id := pid.String()
	name := "full-" + id[len(id)-6:]
	log := nodeLogger(logger, name)
	p, com, sh, err := chainParams(gen)
	if err != nil {
		return err
	}
	n, reg := newNode(ctx, name, -1, h, gen, p, com, log, peers, &chain.Opener{Params: p, Sharing: sh, Self: -1})
	n.full = &fullNode{wake: make(chan struct{}, 1), avoid: map[peer.ID]time.Time{}, met: newFullMetrics(reg)}
	n.epochs, n.ck = es, ck

	db, err := openStore(h, log)
	if err != nil {
		return err
	}
	defer db.Close()
	n.db = db

	// Only the configured bootstrap peers are kept connected; the DHT finds
	// the swarm's other nodes, and the genesis' published validator
	// addresses are dialed once in a while (dialValidators).
	boot := lc.Bootstrap
	if len(boot) == 0 {
		// A validator that left the committee has no bootstrap of its own:
		// the committee's published addresses are its way in.
		boot = dialAddrs(gen.Validators)
	}
	host, err := n.newHost(ctx, lc, ident, reg, boot, true, RoleFull)
	if err != nil {
		return err
	}
	defer host.Close()
	n.host = host

	stopAPI, err := n.serveAPI(lc.API, reg)
	if err != nil {
		return err
	}
	defer stopAPI()
	log.Info("full node starting", "peer", host.ID().String(), "p2p", host.Addrs(), "api", lc.API, "bootstrap", lc.Bootstrap)
	go n.dialValidators(ctx)

	n.sys = actors.NewSystem(log)
	defer n.sys.Shutdown()
	n.net = actors.NewNet(n.sys, host, log)
	n.mem = actors.NewMempool(n.sys, 4096)
	n.upkeep = actors.NewStore(n.sys, db, actors.StoreConfig{WALWindow: 1, GCEvery: storeGCEvery}, log)
	// The sync protocol serves what this node stored (uploads and decided
	// pieces) to other full nodes; the blocks protocol its decisions.
	if err := setHandlers(host,
		protoHandler{protoBlocks, n.handleBlocks},
		protoHandler{protoSync, n.handleSync},
		protoHandler{protoSnapshot, n.handleSnapshot},
	); err != nil {
		return err
	}

	if _, err := os.Stat(h.PublicKeys()); errors.Is(err, os.ErrNotExist) {
		if err := n.fetchPublicKeys(ctx); err != nil {
			return err
		}
	}
	kb, err := os.ReadFile(h.PublicKeys())
	if err != nil {
		return err
	}
	if n.keys, err = p.DecodePublicKeys(kb); err != nil {
		return fmt.Errorf("%s: %w", h.PublicKeys(), err)
	}
	if n.dec, err = ledger.NewDecryptor(p, com); err != nil {
		return err
	}
	eng, err := ledger.NewEngine(p, n.keys)
	if err != nil {
		return err
	}
	gbook, err := genesisBook(gen, eng)
	if err != nil {
		return err
	}
	shards := actors.NewShards(n.sys, eng, shardTimeout)
	// The snapshot interval and retention the validators use (tests tune
	// them per home; shipped nodes use the defaults). A node further behind
	// its peers than it could re-evaluate starts from their newest
	// certified snapshot, as a validator does.
	n.snapTuning = tuningFor(h.Dir)
	if _, err := n.restoreFromSnapshot(ctx); err != nil {
		log.Error("no state snapshot restored: syncing block by block", "err", err)
	}
	rs, err := chain.Restore(db, p, eng, gen.ChainID, gbook)
	if err != nil {
		return fmt.Errorf("restoring from %s: %w", h.Data(), err)
	}
	if n.vset, err = genesisValidators(gen); err != nil {
		return err
	}
	n.faults = &faults{}
	prevVals, err := es.previous()
	if err != nil {
		return err
	}
	es.carryCredits(rs)
	app, err := chain.New(chain.Config{VerifyChange: es.verifyChange, EpochStart: es.start(), PrevValidators: prevVals, SnapshotEvery: n.snapTuning.every, UploadRetention: n.snapTuning.retention, Params: p, Engine: eng.Clone(), Decryptor: n.dec, Chain: gen.ChainID,
		PK: n.keys.PK, Opener: n.opener, Pieces: n.pieces, Follow: true,
		N: com.N, T: com.T, Validators: n.vset, Logger: log, Mempool: n.mem, Evaluator: timedEvaluator{shards, n.met},
		Store: db, Observer: (*fullPublisher)(n), Restored: rs, GenesisBook: gbook,
		Timing: func(stage string, d time.Duration) { n.met.Stage.WithLabelValues(stage).Observe(d.Seconds()) }})
	if err != nil {
		return err
	}
	n.full.app = app
	v := app.View()
	n.full.verified.Store(v.Height)
	n.full.met.verified.Set(float64(v.Height))
	n.view.Store(v)
	if err := n.followHeads(ctx); err != nil {
		return fmt.Errorf("heads gossip: %w", err)
	}
	log.Info("full node ready", "height", v.Height, "applied", v.Book.Height())
	if err := n.follow(ctx); err != nil {
		if !errors.Is(err, errEpochSwitch) {
			log.Error("stopping to restore a state snapshot", "err", err)
		}
		return err
	}
	log.Info("full node stopping")
	return nil
}

// fullPublisher is a full node's chain observer: it publishes each verified
// height for API readers and wakes waiters, as a validator's does; it does
// not gossip heads (validators announce theirs).
type fullPublisher Node

func (p *fullPublisher) Finalized(v *chain.View) {
	n := (*Node)(p)
	n.publish(v)
	n.publishEvent(v)
	n.full.verified.Store(v.Height)
	n.full.met.verified.Set(float64(v.Height))
	n.full.met.heights.Inc()
	n.upkeep.Finalized(v.Height)
	n.noteFaulty(v)
}

func (f *fullNode) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// dialValidators dials the genesis validators this node is not connected
// to at the addresses the genesis publishes, now and every half minute
// (best effort: the bootstrap peer and the DHT are the other ways in).
func (n *Node) dialValidators(ctx context.Context) {
	for {
		for i, v := range n.gen.Validators {
			if i >= len(n.peers) || n.host.ID() == n.peers[i] || n.connected(n.peers[i]) {
				continue
			}
			n.dialValidator(ctx, v)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(30 * time.Second):
		}
	}
}

// dialValidator connects to committee member v at the first of its
// published addresses that answers (best effort).
func (n *Node) dialValidator(ctx context.Context, v genesis.Validator) {
	for _, a := range v.P2PAddrs {
		c, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := n.host.Connect(c, a+"/p2p/"+v.PeerID)
		cancel()
		if err == nil {
			return
		}
		n.log.Debug("validator not reachable at its published address", "validator", v.Index, "addr", a, "err", err)
	}
}

func (n *Node) connected(id peer.ID) bool {
	for _, p := range n.host.Peers() {
		if p == id {
			return true
		}
	}
	return false
}

// validatorIndex is the genesis index of a peer, or -1.
func (n *Node) validatorIndex(id peer.ID) int {
	for i, p := range n.peers {
		if p == id {
			return i
		}
	}
	return -1
}

// fetchPublicKeys gets the collective public and evaluation keys from the
// validators and keeps them once t distinct validators served the same
// bytes (at least one honest validator among them). Keys that are wrong
// anyway would make every evaluation digest disagree with the validators':
// the node would refuse every block with a transfer, never apply one.
func (n *Node) fetchPublicKeys(ctx context.Context) error {
	n.log.Info("fetching the public evaluation keys from the validators", "agreeing", n.com.T)
	got := map[int][32]byte{}
	raws := map[[32]byte][]byte{}
	for {
		for i, id := range n.peers {
			if _, done := got[i]; done {
				continue
			}
			c, cancel := context.WithTimeout(ctx, blocksTimeout)
			raw, err := n.host.Request(c, id, protoBlocks, []byte{blocksReqKeys})
			cancel()
			if err != nil {
				n.log.Debug("public keys not served", "validator", i, "err", err)
				continue
			}
			if _, err := n.p.DecodePublicKeys(raw); err != nil {
				n.log.Warn("validator served public keys that do not decode", "validator", i, "err", err)
				continue
			}
			h := sha256.Sum256(raw)
			got[i], raws[h] = h, raw
			agree := 0
			for _, x := range got {
				if x == h {
					agree++
				}
			}
			if agree >= n.com.T {
				if err := writeFileSync(n.home.PublicKeys(), raw, 0o644); err != nil {
					return err
				}
				n.log.Info("public keys fetched", "sha256", hex.EncodeToString(h[:8]), "validators", agree, "bytes", len(raw))
				return nil
			}
		}
		if len(raws) > 1 {
			n.log.Error("validators serve different public keys", "versions", len(raws))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("fetching the public keys: %w", ctx.Err())
		case <-time.After(2 * time.Second):
		}
	}
}

// syncPeers orders the peers to ask for decisions: connected validators
// first (rotated, so no one validator serves every full node), then every
// other connected peer (full nodes serve the same protocol); peers that
// served a refused decision within fullAvoid are left out.
func (n *Node) syncPeers() []peer.ID {
	f := n.full
	f.mu.Lock()
	defer f.mu.Unlock()
	now := time.Now()
	skip := func(id peer.ID) bool {
		until, ok := f.avoid[id]
		if ok && now.After(until) {
			delete(f.avoid, id)
			return false
		}
		return ok
	}
	connected := map[peer.ID]bool{}
	for _, id := range n.host.Peers() {
		connected[id] = true
	}
	var vals, others []peer.ID
	f.rotate++
	for k := range n.peers {
		id := n.peers[(k+f.rotate)%len(n.peers)]
		if connected[id] && !skip(id) {
			vals = append(vals, id)
		}
	}
	for id := range connected {
		if n.validatorIndex(id) < 0 && !skip(id) {
			others = append(others, id)
		}
	}
	return append(vals, others...)
}

// follow is the full node's sync loop: ask peers for the decisions after
// its verified height, verify and apply them, until ctx ends. It owns the
// chain application.
//
// It returns errFellBehind when the validators are further ahead than they
// keep what the missed blocks need and the node is not advancing (Run then
// restarts it, restoring a snapshot).
func (n *Node) follow(ctx context.Context) error {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	check := time.NewTicker(fellBehindEvery)
	defer check.Stop()
	var behind fellBehind
	for {
		if ctx.Err() != nil {
			return nil
		}
		if p := n.full.app.Pending(); p != nil && n.full.app.Finalized()+1 >= p.Start {
			return n.switchEpoch(ctx, p, n.ck, nil)
		}
		if n.syncOnce(ctx) {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		case <-n.full.wake:
		case <-check.C:
			if err := behind.check(n, n.full.app.Finalized()); err != nil {
				return err
			}
		}
	}
}

// syncOnce asks peers in turn for a run from the next height and follows
// the first run that brings anything; it reports whether the node advanced.
func (n *Node) syncOnce(ctx context.Context) bool {
	f := n.full
	validatorAnswered := false
	for _, id := range n.syncPeers() {
		isValidator := n.validatorIndex(id) >= 0
		if !isValidator && validatorAnswered {
			// A validator answered and had nothing newer: other peers
			// cannot know more, and asking strangers in turn is how slow
			// sybils would hold this node back.
			break
		}
		from := f.app.Finalized() + 1
		timeout := blocksTimeout
		if !isValidator {
			timeout = strangerBlocksTimeout
		}
		c, cancel := context.WithTimeout(ctx, timeout)
		raw, err := n.host.Request(c, id, protoBlocks, encodeRunRequest(from))
		cancel()
		if err != nil {
			n.log.Debug("blocks not served", "peer", id.ShortString(), "from", from, "err", err)
			if !isValidator {
				n.avoidPeer(id) // a stranger that does not answer is not asked again soon
			}
			continue
		}
		if isValidator {
			validatorAnswered = true
		}
		f.met.bytes.Add(float64(len(raw)))
		last, commits, err := decodeRun(raw)
		if err != nil {
			n.log.Warn("peer served a malformed blocks answer", "peer", id.ShortString(), "err", err)
			n.avoidPeer(id)
			continue
		}
		if i := n.validatorIndex(id); i >= 0 {
			// The validators' height is the (f+1)-th highest of their own
			// latest answers: one byzantine validator cannot inflate it.
			f.mu.Lock()
			if f.lasts == nil {
				f.lasts = make([]uint64, len(n.peers))
			}
			f.lasts[i] = max(f.lasts[i], last)
			agreed := agreedHeight(f.lasts, (len(f.lasts)-1)/3)
			f.mu.Unlock()
			f.best.Store(agreed)
			f.met.best.Set(float64(agreed))
			if agreed > n.validatorsBest.Load() {
				n.validatorsBest.Store(agreed)
			}
		}
		advanced := false
		for _, cm := range commits {
			if err := n.followOne(ctx, id, cm); err != nil {
				break
			}
			advanced = true
		}
		if advanced {
			return true
		}
	}
	return false
}

// followOne verifies and applies one served decision. The certificate is
// checked before anything it names is fetched: a stranger cannot make this
// node download anything.
func (n *Node) followOne(ctx context.Context, from peer.ID, cm *consensus.Commit) error {
	f := n.full
	h := cm.Height()
	if h != f.app.Finalized()+1 {
		return fmt.Errorf("%w: served %d", chain.ErrNotNext, h)
	}
	if consensus.HashValue(cm.Value) == cm.Cert.BlockID && consensus.VerifyCommit(n.gen.ChainID, n.vset, cm.Cert) == nil {
		if blk, err := chain.DecodeBlock(cm.Value); err == nil {
			n.fetchFor(ctx, from, blk)
		}
	}
	err := f.app.FollowCommit(cm)
	var dm *chain.DigestMismatchError
	switch {
	case err == nil:
		if bad := f.app.DroppedSigners(); len(bad) > 0 {
			// A quorum agreed with this node's evaluation; these signers
			// attested something else: byzantine, named.
			n.log.Warn("validators signed a decision with an extension this node's evaluation refutes; their signatures were dropped",
				"height", h, "validators", bad, "peer", from.ShortString())
			f.met.refused.WithLabelValues("signer").Add(float64(len(bad)))
		}
		f.mu.Lock()
		if f.refused != 0 && f.refused <= h {
			f.refused = 0 // verified past it: the alarm is over
		}
		f.mu.Unlock()
		return nil
	case errors.Is(err, chain.ErrUnavailable):
		// Said once per height: it is retried every second.
		level := n.log.Debug
		if f.unavailable.Swap(h) != h {
			level = n.log.Warn
		}
		level("an upload or piece ciphertext a served block needs is unavailable; retrying", "height", h, "peer", from.ShortString(), "err", err)
		return err
	case errors.As(err, &dm):
		f.met.refused.WithLabelValues("digest").Inc()
		n.log.Error("REFUSED BLOCK: the validators' attested evaluation digest differs from this node's re-evaluation; not advancing",
			"height", h, "evaluated_height", dm.Evaluated, "validators", dm.Validators, "peer", from.ShortString())
	case errors.Is(err, chain.ErrForgedCertificate):
		// Anyone can serve garbage: a certificate that does not verify is
		// the serving peer's fault, not an alarm about the chain.
		f.met.refused.WithLabelValues("certificate").Inc()
		n.log.Warn("a peer served a decision whose commit certificate does not verify against the genesis validators; ignored, peer avoided",
			"height", h, "peer", from.ShortString(), "err", err)
		n.avoidPeer(from)
		return err
	default:
		f.met.refused.WithLabelValues("block").Inc()
		n.log.Error("REFUSED BLOCK: it does not re-evaluate as a valid block; not advancing", "height", h, "peer", from.ShortString(), "err", err)
	}
	f.mu.Lock()
	f.refused = h
	f.mu.Unlock()
	n.avoidPeer(from)
	return err
}

func (n *Node) avoidPeer(id peer.ID) {
	n.full.mu.Lock()
	n.full.avoid[id] = time.Now().Add(fullAvoid)
	n.full.mu.Unlock()
}

// fetchParallel bounds the concurrent fetches of one block's uploads and
// pieces.
const fetchParallel = 8

// fetchFor fetches the uploads blk orders and the piece ciphertexts its
// carried precommits decide that this node lacks, from the serving peer
// first, then from the validators (as prefetch does for a lagging
// validator). What is still missing makes FollowCommit report
// ErrUnavailable.
func (n *Node) fetchFor(ctx context.Context, from peer.ID, blk *chain.Block) {
	sem := make(chan struct{}, fetchParallel)
	var wg sync.WaitGroup
	run := func(fn func()) {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn()
		}()
	}
	for _, s := range blk.Subs {
		if len(s.Envelopes) != 1 {
			continue
		}
		if u, err := n.mem.Get(s.Envelopes[0].ID()); err == nil && u != nil {
			continue
		}
		if _, err := chain.StoredUpload(n.db, s.CTHash); err == nil {
			continue
		}
		run(func() {
			c, cancel := context.WithTimeout(ctx, fetchTimeout)
			raw, err := n.fetch(c, from, s.CTHash)
			cancel()
			if err != nil {
				n.met.Fetches.WithLabelValues("failed").Inc()
				return
			}
			n.full.met.bytes.Add(float64(len(raw)))
			u := n.opener.NewUpload(raw, s.Envelopes, time.Now())
			if u.Sealed == nil || !signs(s.Envelopes, u.Hash) {
				n.met.Fetches.WithLabelValues("invalid").Inc()
				return
			}
			n.met.Fetches.WithLabelValues("fetched").Inc()
			if err := n.mem.AddReferenced(u); err != nil {
				n.log.Warn("mempool refused a fetched upload", "err", err)
			}
		})
	}
	wanted := chain.WantedPieces(blk, n.opener.Sharing)
	if len(wanted) > maxPiecesPerBlock {
		wanted = wanted[:maxPiecesPerBlock]
	}
	for _, pw := range wanted {
		if n.pieces.Get(pw.Hash) != nil {
			continue
		}
		if _, err := chain.StoredPiece(n.db, pw.Hash); err == nil {
			continue
		}
		run(func() {
			c, cancel := context.WithTimeout(ctx, fetchTimeout)
			raw, err := n.fetchFrom(c, n.peersOf(pw.From, from), pw.Hash)
			cancel()
			if err == nil {
				if _, derr := n.p.DecodeUpload(raw); derr != nil {
					err = fmt.Errorf("not a piece ciphertext: %w", derr)
				}
			}
			if err != nil {
				n.met.Fetches.WithLabelValues("failed").Inc()
				return
			}
			n.full.met.bytes.Add(float64(len(raw)))
			n.met.Fetches.WithLabelValues("piece").Inc()
			n.pieces.Put(pw.Hash, raw, blk.Height-1)
		})
	}
	wg.Wait()
}

// fullStatus is a full node's GET /v1/status.
func (n *Node) fullStatus() api.Status {
	st := api.Status{Chain: n.gen.ChainID, Node: n.name, Role: RoleFull, ValidatorIndex: -1, Validators: n.com.N, Threshold: n.com.T}
	st.Peers = len(n.host.Peers())
	st.ValidatorsHeight = n.full.best.Load()
	n.epochStatus(&st, n.view.Load())
	n.full.mu.Lock()
	st.RefusedHeight = n.full.refused
	n.full.mu.Unlock()
	v := n.view.Load()
	if v == nil {
		return st
	}
	st.Ready = true
	st.Height, st.VerifiedHeight = v.Height, v.Height
	st.AppliedHeight = v.Book.Height()
	st.WorkCredits = append([]int64(nil), v.Credits...)
	c, rj, tps, fin := n.tracker.rates()
	st.CommittedTransfers, st.RejectedTransfers, st.TransfersPerSecond = c, rj, tps
	st.LastFinalityMillis = float64(fin) / float64(time.Millisecond)
	return st
}

// The client API of a full node: reads are served from its own verified
// state; submissions are relayed to the validators; what needs a key share
// is refused.

// notAValidator answers a request only validators can: re-encryptions need
// a key share.
func (s *server) notAValidator(w http.ResponseWriter, _ *http.Request) {
	writeErr(w, http.StatusNotImplemented, "not_a_validator",
		"this is a full node: it holds no key share, so it cannot answer balance or score requests; send them to the validators (GET "+api.PathGenesis+" lists their API addresses)")
}

// relayAll sends body to every genesis validator over proto and counts
// those that took it (a validator admitting a relayed upload does not relay
// it further, and N-f of them must ack it).
func (n *Node) relayAll(ctx context.Context, proto protocol.ID, body []byte) (accepted int, firstErr error) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	for i, id := range n.peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := n.host.Request(c, id, proto, body)
			cancel()
			mu.Lock()
			defer mu.Unlock()
			if err == nil {
				accepted++
				return
			}
			n.log.Debug("relay to a validator failed", "validator", i, "proto", proto, "err", err)
			if firstErr == nil {
				firstErr = err
			}
		}()
	}
	wg.Wait()
	return accepted, firstErr
}

// errNoValidator is a submission no validator took.
var errNoValidator = errors.New("no validator took the submission")

// relaySubmission is a full node's admission of a client upload: the same
// pre-checks as a validator's against its verified book, then relayed to
// every validator over /zkbank/tx/1.
func (n *Node) relaySubmission(body []byte, _ bool) ([]string, error) {
	var sub ledger.Submission
	if err := sub.UnmarshalBinary(body); err != nil {
		return nil, &ledger.RejectError{Reason: ledger.RejectMalformed}
	}
	if len(sub.Envelopes) != 1 || sub.Envelopes[0].CTHash != sha256.Sum256(sub.Sealed) {
		return nil, fmt.Errorf("%w: the envelope does not sign these sealed shares", &ledger.RejectError{Reason: ledger.RejectMalformed})
	}
	e := &sub.Envelopes[0]
	// The validators may hold its predecessor in flight: only they judge that.
	switch r := n.view.Load().Book.Check(e); r {
	case ledger.Accepted, ledger.RejectFutureHeight, ledger.RejectPredecessor:
	default:
		return nil, &ledger.RejectError{Reason: r}
	}
	// Validators do not relay an upload a peer relayed to them, and it is
	// ordered only once N - f validators acknowledge it: fewer than that
	// holding it is not a submission.
	ok, err := n.relayAll(n.ctx, protoTx, body)
	if need := len(n.peers) - (len(n.peers)-1)/3; ok < need {
		return nil, fmt.Errorf("%w: %d of %d validators took it, it needs %d (last refusal: %w)", errNoValidator, ok, len(n.peers), need, err)
	}
	n.tracker.submittedNow(sub.Envelopes)
	id := e.ID()
	return []string{hex.EncodeToString(id[:])}, nil
}

// relayOpen relays a signed account opening to every validator.
func (n *Node) relayOpen(o chain.Open, _ bool) error {
	if !o.Valid(n.gen.ChainID) {
		return errBadOpen
	}
	b := append([]byte{byte(o.Kind)}, o.SignPub...)
	b = append(b, o.Sig...)
	if ok, err := n.relayAll(n.ctx, protoOpen, b); ok == 0 {
		return fmt.Errorf("%w: %w", errNoValidator, err)
	}
	return nil
}

// fullConsent is a full node's POST /v1/consents: checked against its
// verified book as a validator checks it, then relayed to every validator.
func (s *server) fullConsent(w http.ResponseWriter, r *http.Request) {
	if !s.ready(w) {
		return
	}
	var req api.ConsentRequest
	if !decodeBody(w, r, &req) {
		return
	}
	c, ok := s.consentOf(w, r, &req)
	if !ok {
		return
	}
	if err := s.n.view.Load().Book.CheckConsent(&c); err != nil {
		writeErr(w, http.StatusBadRequest, "bad_consent", err.Error())
		return
	}
	b, err := c.MarshalBinary()
	if err != nil {
		writeErr(w, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	if ok, err := s.n.relayAll(r.Context(), protoConsent, b); ok == 0 {
		writeErr(w, http.StatusServiceUnavailable, "unavailable", fmt.Sprintf("%v: %v", errNoValidator, err))
		return
	}
	id := c.ID()
	writeJSON(w, http.StatusAccepted, api.ConsentResponse{ID: hex.EncodeToString(id[:])})
}
