package node

import (
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/libp2p/go-libp2p/core/crypto"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/zkbank/zkbank/actors"
	"github.com/zkbank/zkbank/chain"
	"github.com/zkbank/zkbank/consensus"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/p2p"
	"github.com/zkbank/zkbank/store"
	"github.com/zkbank/zkbank/store/badgerstore"
)

var (
	protoConsensus = p2p.ProtocolID("consensus", 1)
	protoTx        = p2p.ProtocolID("tx", 1)
	protoOpen      = p2p.ProtocolID("open", 1)
	protoConsent   = p2p.ProtocolID("consent", 1)
	protoSync      = p2p.ProtocolID("sync", 1)
	protoPieces    = p2p.ProtocolID("pieces", 1)
)

var routeLibp2pLogs sync.Once

// Node is one validator process: a libp2p host, an actor system, a store
// and the client API. Once running, its state is read through one published
// view (updated once per finalized height by the chain application); the
// application itself belongs to the consensus actor.
type Node struct {
	name string
	self int
	home Home
	gen  *genesis.Genesis
	p    *ledger.Params
	com  *ledger.Committee
	keys *ledger.PublicKeys
	key  *ledger.KeyShare
	dec  *ledger.Decryptor
	// opener opens this validator's sealed boxes in uploads (its sealing key
	// is derived from the consensus key); pieces holds piece ciphertexts
	// shared by the chain application and the fetch handlers.
	opener   *chain.Opener
	pieces   *chain.PieceCache
	ctx      context.Context // the node's lifetime, for work it starts on its own
	fetching inflight
	attested seenAttest
	// recovering dedupes piece recoveries by transfer id; recoverFailed
	// keeps one that failed from being retried at once.
	recovering    inflight
	recoverFailed *limiter
	piecesByPeer  *limiter // piece requests served, per peer
	log           *slog.Logger
	peers         []peer.ID

	db      store.Backend // safe for concurrent use: readers use it directly
	vset    *consensus.ValidatorSet
	sys     *actor.ActorSystem
	upkeep  *actors.Store
	mem     *actors.Mempool
	net     *actors.Net
	cons    *actors.Consensus
	tracker *tracker
	orphans *orphans // relayed uploads waiting for their predecessor (orphans.go)
	met     *Metrics

	view    atomic.Pointer[chain.View] // nil until the node is ready
	engines chan *ledger.Engine
	started time.Time
	faults  *faults
	host    *p2p.Host // set before the API serves
	recMu   sync.Mutex
	recs    map[recKey]recEntry
	queries usedQueries // balance and score requests answered, until they expire
	scores  scoreCache  // recent shards' recomposed scores (lending.go)

	opensByIP, opensByPeer       *limiter // account openings per client IP, per peer
	consentsByIP, consentsByPeer *limiter // score consents per client IP, per peer

	blocks *blockServer // per-peer limits of /zkbank/blocks/1 (blocksync.go)
	full   *fullNode    // set on a full node only (fullnode.go)

	snapTuning *snapshotTuning // snapshot interval and upload retention (snapshot.go)

	validatorsBest atomic.Uint64 // the validators' agreed height from heads (heads.go)

	// Validator-set changes (epoch.go).
	epochs   *epochState
	gate     *gate
	ck       ed25519.PrivateKey // consensus key
	changes  changeSlot         // a submitted change waiting to be proposed
	switchCh chan *chain.PendingChange
	haltCh   chan error // the consensus actor stopped for good (actors.ConsensusHooks.Halted)

	events       eventHub  // the dashboard's event stream (events.go)
	eventsWorker sync.Once // starts its worker
}

// Run starts the validator (or full node) in home and blocks until ctx is
// cancelled. A node that falls further behind the validators than it can
// catch up by re-evaluating blocks (errFellBehind) stops everything and
// starts again, which restores the validators' newest state snapshot; so
// does one whose consensus halted (errConsensusHalted), from its durable
// state, and one whose validator set changed (errEpochSwitch).
func Run(ctx context.Context, dir string, logger *slog.Logger) error {
	halts := 0 // in a row, each within haltsReset of starting
	for {
		started := time.Now()
		err := run(ctx, dir, logger)
		switch {
		case ctx.Err() != nil:
			return err
		case errors.Is(err, errEpochSwitch):
			logger.Info("restarting with the new validator set", "home", dir, "err", err)
		case errors.Is(err, errFellBehind):
			logger.Warn("restarting to restore a state snapshot", "home", dir, "err", err)
		case errors.Is(err, errConsensusHalted):
			// Finalize is all or nothing, so the durable state is a
			// decided height: start again from it. A cause that persists
			// (a failing disk) keeps failing, loudly, ever more slowly.
			if time.Since(started) > haltsReset {
				halts = 0
			}
			delay := haltDelay(halts)
			halts++
			logger.Error("restarting from the durable state", "home", dir, "in", delay, "halts_in_a_row", halts, "err", err)
			select {
			case <-ctx.Done():
				return err
			case <-time.After(delay):
			}
		default:
			return err
		}
	}
}

// errConsensusHalted: the consensus actor stopped for good (a decided height
// could not be finalized, or the WAL could not be written); Run starts the
// node again from its durable state after a delay (haltRestartDelay,
// growing while halts repeat).
var errConsensusHalted = errors.New("consensus halted")

// Restart delays after a halt: haltRestartDelay, doubling with each halt
// that follows a start by less than haltsReset, up to haltRestartMax.
const (
	haltRestartDelay = 2 * time.Second
	haltRestartMax   = time.Minute
	haltsReset       = 5 * time.Minute
)

// haltDelay is the wait before a restart that follows the given number of
// earlier halts in a row: haltRestartDelay, doubling, at most
// haltRestartMax.
func haltDelay(halts int) time.Duration {
	return min(haltRestartDelay<<min(halts, 5), haltRestartMax)
}

// errFellBehind: the node is further behind the validators than they keep
// what re-evaluating the missed blocks needs, and it is not advancing.
var errFellBehind = errors.New("fell further behind the validators than they keep uploads and pieces for")

// fellBehind is checked every few seconds: the validators' agreed height
// (heads) is more than half the upload retention above this node's height,
// and that height has not moved for fellBehindChecks checks in a row.
type fellBehind struct {
	last    uint64
	stalled int
}

const fellBehindChecks = 3

func (f *fellBehind) check(n *Node, height uint64) error {
	retention := uint64(chain.UploadRetention)
	if t := n.snapTuning; t != nil && t.retention > 0 {
		retention = t.retention
	}
	best := n.validatorsBest.Load()
	if height != f.last || best <= height+retention/2 {
		f.last, f.stalled = height, 0
		return nil
	}
	if f.stalled++; f.stalled < fellBehindChecks {
		return nil
	}
	return fmt.Errorf("%w: at height %d, the validators at %d, no progress for %d checks", errFellBehind, height, best, fellBehindChecks)
}

func run(ctx context.Context, dir string, logger *slog.Logger) error {
	h := Home{Dir: dir}
	es, err := loadEpochs(h)
	if err != nil {
		return err
	}
	gen := es.current()
	lc, err := loadLocalConfig(h)
	if err != nil {
		return err
	}
	ident, err := p2p.LoadIdentity(h.NodeKey())
	if err != nil {
		return fmt.Errorf("%s: %w", h.NodeKey(), err)
	}
	ck, err := loadOrCreateConsensusKey(h.ConsensusKey())
	if err != nil {
		return err
	}
	myPub := hex.EncodeToString(ck.Public().(ed25519.PublicKey))
	self := -1
	var peers []peer.ID
	for _, v := range gen.Validators {
		id, err := peer.Decode(v.PeerID)
		if err != nil {
			return fmt.Errorf("genesis validator %d: peer id: %w", v.Index, err)
		}
		peers = append(peers, id)
		if v.ConsensusPub == myPub {
			self = v.Index
		}
	}
	if self < 0 {
		// A validator's home that lost (or swapped) its consensus key must
		// not quietly become a full node under the validator's peer id:
		// the chain would lose a validator, and f+1 such mistakes halt it.
		if err := notAValidatorsHome(h, gen, ident); err != nil {
			return err
		}
		// Not a validator: follow the chain as a full node (fullnode.go).
		return runFull(ctx, h, es, lc, ident, ck, peers, logger)
	}
	if len(es.epochs) > 0 {
		p, com, _, err := chainParams(gen)
		if err != nil {
			return err
		}
		if !keyShareFits(p, h, self, com) {
			// A member of this committee that missed the resharing to it
			// holds no share of it: it follows the chain until a later
			// change re-deals to it.
			logger.Error("this validator holds no key share of the current committee (it missed the resharing of epoch "+strconv.FormatUint(es.number(), 10)+"): following the chain as a full node",
				"home", dir, "index", self)
			return runFull(ctx, h, es, lc, ident, ck, peers, logger)
		}
	}
	name := gen.Validators[self].Name
	if name == "" {
		name = fmt.Sprintf("node-%d", self)
	}
	log := nodeLogger(logger, name)
	p, com, sh, err := chainParams(gen)
	if err != nil {
		return err
	}
	sealKey, err := ledger.SealKeyFromSeed(ck.Seed())
	if err != nil {
		return err
	}
	n, reg := newNode(ctx, name, self, h, gen, p, com, log, peers, &chain.Opener{Params: p, Sharing: sh, Self: self, Key: sealKey})
	n.epochs, n.ck = es, ck

	db, err := openStore(h, log)
	if err != nil {
		return err
	}
	defer db.Close()
	n.db = db

	others := slices.Delete(slices.Clone(gen.Validators), self, self+1)
	host, err := n.newHost(ctx, lc, ident, reg, append(dialAddrs(others), lc.Bootstrap...), lc.DHT, RoleValidator)
	if err != nil {
		return err
	}
	defer host.Close()
	n.host = host

	// The API answers (not ready) while the ceremony runs.
	stopAPI, err := n.serveAPI(lc.API, reg)
	if err != nil {
		return err
	}
	defer stopAPI()
	log.Info("node starting", "index", self, "peer", host.ID().String(), "p2p", host.Addrs(), "api", lc.API)

	if _, err := os.Stat(h.KeyShare()); errors.Is(err, os.ErrNotExist) && len(es.epochs) == 0 {
		log.Info("no key share yet: running the genesis key ceremony", "validators", com.N, "threshold", com.T)
		// Deals are signed with the consensus key, so a bad deal is evidence
		// against its dealer that anyone holding the genesis can check.
		signWith, err := withConsensusKeys(ck, gen)
		if err != nil {
			return err
		}
		cctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
		keys, ks, err := runCeremony(cctx, host, p, com, self, peers, []byte(gen.ChainID), log, signWith)
		cancel()
		if err != nil {
			return err
		}
		if err := saveKeys(h, keys, ks); err != nil {
			return err
		}
	}
	if n.keys, n.key, err = loadKeys(p, h); err != nil {
		return err
	}
	if n.key.Index != self || n.key.N != com.N || n.key.T != com.T {
		return fmt.Errorf("%s belongs to validator %d of a %d-of-%d committee", h.KeyShare(), n.key.Index, n.key.T, n.key.N)
	}
	if n.dec, err = ledger.NewDecryptor(p, com); err != nil {
		return err
	}
	eng, err := ledger.NewEngine(p, n.keys)
	if err != nil {
		return err
	}
	n.engines = make(chan *ledger.Engine, 2)
	n.engines <- eng.Clone()
	n.engines <- eng.Clone()
	gbook, err := genesisBook(gen, eng)
	if err != nil {
		return err
	}

	n.sys = actors.NewSystem(log)
	defer n.sys.Shutdown()
	n.upkeep = actors.NewStore(n.sys, db, actors.StoreConfig{WALWindow: 1, GCEvery: storeGCEvery}, log)
	n.mem = actors.NewMempool(n.sys, 4096)
	n.net = actors.NewNet(n.sys, host, log)
	shards := actors.NewShards(n.sys, eng, shardTimeout)

	n.snapTuning = tuningFor(dir)
	if _, err := n.restoreFromSnapshot(ctx); err != nil {
		log.Error("no state snapshot restored: catching up block by block", "err", err)
	}
	rs, err := chain.Restore(db, p, eng, gen.ChainID, gbook)
	if err != nil {
		return fmt.Errorf("restoring from %s: %w", h.Data(), err)
	}
	wal, err := restoreWAL(db)
	if err != nil {
		return fmt.Errorf("restoring the consensus WAL from %s: %w", h.Data(), err)
	}
	vset, err := genesisValidators(gen)
	if err != nil {
		return err
	}
	n.vset = vset
	n.faults = faultsFor(dir)
	prevVals, err := es.previous()
	if err != nil {
		return err
	}
	es.carryCredits(rs)
	app, err := chain.New(chain.Config{Params: p, Engine: eng.Clone(), Decryptor: n.dec, Key: n.key, Chain: gen.ChainID,
		PK: n.keys.PK, Opener: n.opener, Pieces: n.pieces,
		N: com.N, T: com.T, Validators: vset, Logger: log, Mempool: n.mem, Evaluator: timedEvaluator{shards, n.met},
		Store: db, Observer: (*publisher)(n), Faults: n.faults.chain(), Restored: rs, GenesisBook: gbook,
		SnapshotEvery: n.snapTuning.every, UploadRetention: n.snapTuning.retention,
		VerifyChange: es.verifyChange, ProposeChange: n.changes.get, EpochStart: es.start(), PrevValidators: prevVals,
		Timing: func(stage string, d time.Duration) { n.met.Stage.WithLabelValues(stage).Observe(d.Seconds()) }})
	if err != nil {
		return err
	}
	pr, pv, pc, delta, wait, err := gen.Timeouts.Durations()
	if err != nil {
		return err
	}
	machine, err := consensus.NewMachine(consensus.Config{
		ChainID: gen.ChainID, Validators: vset, Proposer: app.Selector(), Metrics: newConsensusMetrics(reg),
		Timeouts: consensus.Timeouts{Propose: pr, ProposeDelta: delta, Prevote: pv, PrevoteDelta: delta, Precommit: pc, PrecommitDelta: delta,
			Rebroadcast: 2 * time.Second, WaitForWork: wait},
	}, app, consensus.NewEd25519Signer(ck), wal)
	if err != nil {
		return err
	}
	n.cons = actors.NewConsensus(n.sys, machine, actors.ConsensusHooks{
		Persist:   n.persistWAL,
		Send:      n.sendConsensus,
		Committed: func(c *consensus.Commit) { n.upkeep.Finalized(c.Height()) },
		Serve:     n.serveCommit,
		Halted: func(err error) {
			select {
			case n.haltCh <- err:
			default:
			}
		},
	}, log)
	defer n.cons.Stop() // before the store closes: the consensus actor writes to it

	// From Start on, the consensus actor owns app: take its view first.
	v := app.View()
	n.view.Store(v)
	if err := setHandlers(host,
		protoHandler{protoConsensus, n.handleConsensus},
		protoHandler{protoTx, n.handleTx},
		protoHandler{protoOpen, n.handleOpen},
		protoHandler{protoConsent, n.handleConsent},
		protoHandler{protoSync, n.handleSync},
		protoHandler{protoPieces, n.handlePieces},
		protoHandler{protoBlocks, n.handleBlocks},
		protoHandler{protoSnapshot, n.handleSnapshot},
	); err != nil {
		return err
	}
	if err := n.followHeads(ctx); err != nil {
		return fmt.Errorf("heads gossip: %w", err)
	}
	n.cons.Start(v.Height+1, rs.Last)
	log.Info("node ready", "height", v.Height, "applied", v.Book.Height(), "epoch", es.number())
	if switchDue(v) {
		n.switchCh <- v.Pending // stopped at the end of its epoch: hand over now
	}

	t := time.NewTicker(fellBehindEvery)
	defer t.Stop()
	var behind fellBehind
	for {
		select {
		case <-ctx.Done():
			log.Info("node stopping")
			return nil
		case p := <-n.switchCh:
			n.cons.Stop()
			return n.switchEpoch(ctx, p, ck, n.key)
		case err := <-n.haltCh:
			select {
			case p := <-n.switchCh: // the epoch ended first: hand over
				n.cons.Stop()
				return n.switchEpoch(ctx, p, ck, n.key)
			default:
			}
			return fmt.Errorf("%w: %w", errConsensusHalted, err)
		case <-t.C:
			if size, err := n.mem.Size(); err == nil {
				n.met.Mempool.Set(float64(size))
			}
			if err := behind.check(n, n.view.Load().Height); err != nil {
				log.Error("stopping to restore a state snapshot", "err", err)
				return err
			}
		}
	}
}

// fellBehindEvery is how often the main loop looks at the node's progress.
const fellBehindEvery = 5 * time.Second

// The store's value-log file size and GC period (see openStore).
const (
	storeValueLogFile = 64 << 20
	storeGCEvery      = time.Minute
)

// shardTimeout bounds one batch evaluation on a shard actor (a crash is
// reported at once; this only catches an evaluation that hangs).
const shardTimeout = 2 * time.Minute

func mustSet(name string) ledger.ParamSet {
	s, err := ledger.ParamSetByName(name)
	if err != nil {
		return ledger.ParamSet{Name: name}
	}
	return s
}

// restoreWAL reads the consensus records a restarted machine replays.
func restoreWAL(db store.WAL) ([]consensus.WALRecord, error) {
	recs, err := db.Records()
	if err != nil {
		return nil, err
	}
	out := make([]consensus.WALRecord, 0, len(recs))
	for _, b := range recs {
		w, err := consensus.DecodeWALRecord(b)
		if err != nil {
			return nil, err
		}
		out = append(out, w)
	}
	return out, nil
}

type timedEvaluator struct {
	s   *actors.Shards
	met *Metrics
}

func (t timedEvaluator) Evaluate(book *ledger.Book, batches []*ledger.Batch, blockHash []byte) ([]*ledger.Evaluation, error) {
	start := time.Now()
	out, err := t.s.Evaluate(book, batches, blockHash)
	if len(batches) > 0 {
		t.met.Evaluation.Observe(time.Since(start).Seconds())
	}
	return out, err
}

// persistWAL runs on the consensus actor: nothing is sent before it returns.
func (n *Node) persistWAL(recs []consensus.WALRecord) error {
	for _, r := range recs {
		if err := n.db.Append(r.Height(), consensus.EncodeWALRecord(r)); err != nil {
			return err
		}
	}
	return nil
}

// publisher is the chain application's observer: it publishes each
// finalized height's view for API readers, then tells the tracker (which
// wakes waiters), so a client woken by a decision always sees the state it
// was told about.
type publisher Node

func (p *publisher) Finalized(v *chain.View) {
	n := (*Node)(p)
	n.publish(v)
	n.publishEvent(v)
	if n.orphans.len() > 0 {
		go n.readmitSettled(v)
	}
	n.noteFaulty(v)
	n.announce(v)
	if switchDue(v) {
		select {
		case n.switchCh <- v.Pending:
		default:
		}
	}
}

// publish makes v the view API readers see, then tells the tracker (which
// wakes waiters).
func (n *Node) publish(v *chain.View) {
	n.view.Store(v)
	n.tracker.Finalized(v)
}

// noteFaulty logs and counts the validators a finalized view found faulty.
func (n *Node) noteFaulty(v *chain.View) {
	for _, f := range v.Faulty {
		n.log.Warn("validator sent a wrong extension; outvoted and denied credit", "validator", f, "height", v.Decided)
		n.met.ValidatorFaults.WithLabelValues(strconv.Itoa(f)).Inc()
	}
}

// nodeLogger is the logger of the node called name. libp2p's own loggers
// are process-wide: the first node's routes them through its logger, once
// per process (tests run several nodes in one).
func nodeLogger(logger *slog.Logger, name string) *slog.Logger {
	log := logger.With("node", name)
	routeLibp2pLogs.Do(func() { p2p.RouteLibp2pLogs(log.With("component", "libp2p").Handler(), slog.LevelWarn) })
	return log
}

// chainParams returns the parameters, the committee and the piece sharing
// gen describes.
func chainParams(gen *genesis.Genesis) (*ledger.Params, *ledger.Committee, *ledger.Sharing, error) {
	p, err := ledger.NewParams(mustSet(gen.ParamSet))
	if err != nil {
		return nil, nil, nil, err
	}
	com, err := ledger.NewCommittee(len(gen.Validators), gen.Threshold)
	if err != nil {
		return nil, nil, nil, err
	}
	sh, err := ledger.NewSharing(com.N, com.F())
	if err != nil {
		return nil, nil, nil, err
	}
	return p, com, sh, nil
}

// newNode returns a node (self -1 for a full node) with its limiters,
// caches and metrics, and the registry the metrics are in; nothing is
// opened or started yet.
func newNode(ctx context.Context, name string, self int, h Home, gen *genesis.Genesis, p *ledger.Params, com *ledger.Committee, log *slog.Logger, peers []peer.ID, opener *chain.Opener) (*Node, *prometheus.Registry) {
	n := &Node{name: name, self: self, home: h, gen: gen, p: p, com: com, log: log, peers: peers, started: time.Now(),
		opensByIP: newLimiter(openRate, openBurst), opensByPeer: newLimiter(openRate, openBurst),
		consentsByIP: newLimiter(openRate, openBurst), consentsByPeer: newLimiter(openRate, openBurst),
		opener: opener, pieces: chain.NewPieceCache(), ctx: ctx,
		recoverFailed: newLimiter(recoverRetry, 2), piecesByPeer: newLimiter(pieceRequestRate, pieceRequestBurst),
		blocks: newBlockServer(), switchCh: make(chan *chain.PendingChange, 1), haltCh: make(chan error, 1)}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.met = newMetrics(reg)
	n.tracker = newTracker(n.met)
	n.orphans = newOrphans()
	return n, reg
}

// openStore opens the node's store in h.Data(). 64 MiB value-log files
// and a GC pass a minute (storeGCEvery): the value log holds shard states
// (768 KiB each, kept 16 heights) and WAL records, nearly all garbage soon
// after, and Badger maps its files, so what is not reclaimed stays in the
// node's resident memory. (Piece ciphertexts, large blocks and certificates
// are blob files: store.Blobs.)
func openStore(h Home, log *slog.Logger) (*badgerstore.Store, error) {
	return badgerstore.Open(h.Data(), badgerstore.Options{Logger: log, ValueLogFileSize: storeValueLogFile})
}

// newHost starts the node's libp2p host, announcing role; bootstrap are
// the peers kept connected, dht whether to join the DHT.
func (n *Node) newHost(ctx context.Context, lc *LocalConfig, ident crypto.PrivKey, reg prometheus.Registerer, bootstrap []string, dht bool, role string) (*p2p.Host, error) {
	g := newGate(n.peers, n.log)
	n.gate = g
	// The validators' genesis addresses get the resource manager's
	// allowlisted scope: strangers filling the general limits (streams,
	// memory) cannot starve the committee's own traffic.
	allow := dialAddrs(n.gen.Validators)
	return p2p.New(ctx, p2p.Config{
		ListenAddrs: lc.P2PAddrs, Identity: ident, ChainID: n.gen.ChainID, Bootstrap: bootstrap,
		EnableMDNS: lc.MDNS, DHT: dht,
		Logger: n.log.With("component", "p2p"), Registerer: reg,
		MaxMessageBytes: 8 << 20,
		// Who may use each protocol, its cap, timeout and rate: node/gating.go.
		Protocols: protocolLimits(), Allow: g.allow, Trusted: g.isValidator, Allowlist: allow,
		UserAgent: p2pAgent(role),
	})
}

// serveAPI serves the client API (and the metrics in reg) at the URL addr
// until the returned stop is called.
func (n *Node) serveAPI(addr string, reg *prometheus.Registry) (stop func(), err error) {
	srv := &http.Server{Handler: (&server{n: n, log: n.log, reg: reg}).routes(), ReadHeaderTimeout: 10 * time.Second}
	srv.RegisterOnShutdown(n.events.close)
	u, err := url.Parse(addr)
	if err != nil {
		return nil, fmt.Errorf("api address %q: %w", addr, err)
	}
	ln, err := net.Listen("tcp", u.Host)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error("api server", "err", err)
		}
	}()
	return func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(c)
	}, nil
}

// genesisBook is the book at genesis: gen's accounts and score parameters.
func genesisBook(gen *genesis.Genesis, eng *ledger.Engine) (*ledger.Book, error) {
	accts, err := gen.LedgerAccounts()
	if err != nil {
		return nil, err
	}
	gbook, err := ledger.NewBook(eng, gen.ChainID, accts)
	if err != nil {
		return nil, err
	}
	if err := gbook.SetScoreParams(gen.ScoreParams()); err != nil {
		return nil, err
	}
	return gbook, nil
}

// dialAddrs are the committee members' published addresses, each with its
// peer id (/.../p2p/<id>), as libp2p dials them.
func dialAddrs(vals []genesis.Validator) []string {
	var out []string
	for _, v := range vals {
		for _, a := range v.P2PAddrs {
			out = append(out, a+"/p2p/"+v.PeerID)
		}
	}
	return out
}

// genesisValidators is the consensus validator set of gen.
func genesisValidators(gen *genesis.Genesis) (*consensus.ValidatorSet, error) {
	vals := make([]consensus.Validator, len(gen.Validators))
	for i, v := range gen.Validators {
		pub, _ := v.PublicKey()
		vals[i] = consensus.Validator{PubKey: pub, Power: v.Power}
	}
	return consensus.NewValidatorSet(vals)
}

// protoHandler is a libp2p protocol and its handler.
type protoHandler struct {
	proto protocol.ID
	fn    p2p.Handler
}

// setHandlers registers every handler on host.
func setHandlers(host *p2p.Host, hs ...protoHandler) error {
	for _, hd := range hs {
		if err := host.SetHandler(hd.proto, hd.fn); err != nil {
			return err
		}
	}
	return nil
}

// notAValidatorsHome refuses to run a home as a full node when it is
// evidently a validator's: it holds a key share, or its libp2p identity is
// a genesis validator's.
func notAValidatorsHome(h Home, gen *genesis.Genesis, ident crypto.PrivKey) error {
	if _, err := os.Stat(h.KeyShare()); err == nil {
		return fmt.Errorf("%s holds a key share, but its consensus key %s is no validator's in %s: a validator's home whose consensus key was lost or replaced; restore the key (refusing to run it as a full node)", h.Dir, h.ConsensusKey(), h.Genesis())
	}
	id, err := peer.IDFromPrivateKey(ident)
	if err != nil {
		return err
	}
	for _, v := range gen.Validators {
		if v.PeerID == id.String() {
			return fmt.Errorf("%s has validator %d's libp2p identity (%s) but not its consensus key %s: restore the key, or give a full node its own home (refusing to run it as a full node)", h.Dir, v.Index, v.PeerID, h.ConsensusKey())
		}
	}
	return nil
}
