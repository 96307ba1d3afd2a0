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
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
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
}

// Run starts the validator in home and blocks until ctx is cancelled.
func Run(ctx context.Context, dir string, logger *slog.Logger) error {
	h := Home{Dir: dir}
	gen, err := genesis.Load(h.Genesis())
	if err != nil {
		return err
	}
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
		return fmt.Errorf("this node's consensus key is not a validator in %s", h.Genesis())
	}
	name := gen.Validators[self].Name
	if name == "" {
		name = fmt.Sprintf("node-%d", self)
	}
	log := logger.With("node", name)
	// libp2p's own loggers are process-wide: route them through ours, once
	// per process (tests run several nodes in one).
	routeLibp2pLogs.Do(func() { p2p.RouteLibp2pLogs(log.With("component", "libp2p").Handler(), slog.LevelWarn) })
	p, err := ledger.NewParams(mustSet(gen.ParamSet))
	if err != nil {
		return err
	}
	com, err := ledger.NewCommittee(len(gen.Validators), gen.Threshold)
	if err != nil {
		return err
	}
	sh, err := ledger.NewSharing(com.N, com.F())
	if err != nil {
		return err
	}
	sealKey, err := ledger.SealKeyFromSeed(ck.Seed())
	if err != nil {
		return err
	}
	n := &Node{name: name, self: self, home: h, gen: gen, p: p, com: com, log: log, peers: peers, started: time.Now(),
		opensByIP: newLimiter(openRate, openBurst), opensByPeer: newLimiter(openRate, openBurst),
		consentsByIP: newLimiter(openRate, openBurst), consentsByPeer: newLimiter(openRate, openBurst),
		opener: &chain.Opener{Params: p, Sharing: sh, Self: self, Key: sealKey}, pieces: chain.NewPieceCache(), ctx: ctx,
		recoverFailed: newLimiter(recoverRetry, 2), piecesByPeer: newLimiter(pieceRequestRate, pieceRequestBurst)}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.met = newMetrics(reg)
	n.tracker = newTracker(n.met)
	n.orphans = newOrphans()

	// 64 MiB value-log files and a GC pass a minute: the value log holds
	// shard states (768 KiB each, kept 16 heights) and WAL records, nearly
	// all garbage soon after, and Badger maps its files, so what is not
	// reclaimed stays in the node's resident memory. (Piece ciphertexts,
	// large blocks and certificates are blob files: store.Blobs.)
	db, err := badgerstore.Open(h.Data(), badgerstore.Options{Logger: log, ValueLogFileSize: storeValueLogFile})
	if err != nil {
		return err
	}
	defer db.Close()
	n.db = db

	var boot []string
	for i, v := range gen.Validators {
		if i == self {
			continue
		}
		for _, a := range v.P2PAddrs {
			boot = append(boot, a+"/p2p/"+v.PeerID)
		}
	}
	host, err := p2p.New(ctx, p2p.Config{
		ListenAddrs: lc.P2PAddrs, Identity: ident, ChainID: gen.ChainID, Bootstrap: append(boot, lc.Bootstrap...),
		EnableMDNS: lc.MDNS, DHT: lc.DHT,
		Logger: log.With("component", "p2p"), Registerer: reg,
		MaxMessageBytes: 8 << 20,
		Protocols: map[protocol.ID]p2p.ProtocolLimits{
			protoCeremony:  {MaxFrameBytes: 96 << 20, Timeout: 5 * time.Minute},
			protoConsensus: {MaxFrameBytes: 96 << 20, Timeout: 2 * time.Minute},
			protoSync:      {MaxFrameBytes: maxUpload + 1<<16, Timeout: time.Minute}, // uploads by hash
			protoPieces:    {MaxFrameBytes: 1 << 20, Timeout: 10 * time.Second},      // a co-holder's pieces of one upload
			protoTx:        {MaxFrameBytes: maxUpload + 1<<16, Timeout: time.Minute},
		},
	})
	if err != nil {
		return err
	}
	defer host.Close()
	n.host = host

	// The API answers (not ready) while the ceremony runs.
	srv := &http.Server{Handler: (&server{n: n, log: log, reg: reg}).routes(), ReadHeaderTimeout: 10 * time.Second}
	u, err := url.Parse(lc.API)
	if err != nil {
		return fmt.Errorf("api address %q: %w", lc.API, err)
	}
	ln, err := net.Listen("tcp", u.Host)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("api server", "err", err)
		}
	}()
	defer func() {
		c, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(c)
	}()
	log.Info("node starting", "index", self, "peer", host.ID().String(), "p2p", host.Addrs(), "api", lc.API)

	if _, err := os.Stat(h.KeyShare()); errors.Is(err, os.ErrNotExist) {
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
	accts, err := gen.LedgerAccounts()
	if err != nil {
		return err
	}
	gbook, err := ledger.NewBook(eng, gen.ChainID, accts)
	if err != nil {
		return err
	}
	if err := gbook.SetScoreParams(gen.ScoreParams()); err != nil {
		return err
	}

	n.sys = actors.NewSystem(log)
	defer n.sys.Shutdown()
	n.upkeep = actors.NewStore(n.sys, db, actors.StoreConfig{WALWindow: 1, GCEvery: storeGCEvery}, log)
	n.mem = actors.NewMempool(n.sys, 4096)
	n.net = actors.NewNet(n.sys, host, log)
	shards := actors.NewShards(n.sys, eng, shardTimeout)

	rs, err := chain.Restore(db, p, eng, gen.ChainID, gbook)
	if err != nil {
		return fmt.Errorf("restoring from %s: %w", h.Data(), err)
	}
	wal, err := restoreWAL(db)
	if err != nil {
		return fmt.Errorf("restoring the consensus WAL from %s: %w", h.Data(), err)
	}
	vals := make([]consensus.Validator, len(gen.Validators))
	for i, v := range gen.Validators {
		pub, _ := v.PublicKey()
		vals[i] = consensus.Validator{PubKey: pub, Power: v.Power}
	}
	vset, err := consensus.NewValidatorSet(vals)
	if err != nil {
		return err
	}
	n.vset = vset
	n.faults = faultsFor(dir)
	app, err := chain.New(chain.Config{Params: p, Engine: eng.Clone(), Decryptor: n.dec, Key: n.key, Chain: gen.ChainID,
		PK: n.keys.PK, Opener: n.opener, Pieces: n.pieces,
		N: com.N, T: com.T, Validators: vset, Logger: log, Mempool: n.mem, Evaluator: timedEvaluator{shards, n.met},
		Store: db, Observer: (*publisher)(n), Faults: n.faults.chain(), Restored: rs, GenesisBook: gbook,
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
	}, log)
	defer n.cons.Stop() // before the store closes: the consensus actor writes to it

	// From Start on, the consensus actor owns app: take its view first.
	v := app.View()
	n.view.Store(v)
	for _, hd := range []struct {
		proto protocol.ID
		fn    p2p.Handler
	}{
		{protoConsensus, n.handleConsensus},
		{protoTx, n.handleTx},
		{protoOpen, n.handleOpen},
		{protoConsent, n.handleConsent},
		{protoSync, n.handleSync},
		{protoPieces, n.handlePieces},
	} {
		if err := host.SetHandler(hd.proto, hd.fn); err != nil {
			return err
		}
	}
	if err := n.followHeads(ctx); err != nil {
		return fmt.Errorf("heads gossip: %w", err)
	}
	n.cons.Start(v.Height+1, rs.Last)
	log.Info("node ready", "height", v.Height, "applied", v.Book.Height())

	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			log.Info("node stopping")
			return nil
		case <-t.C:
			if size, err := n.mem.Size(); err == nil {
				n.met.Mempool.Set(float64(size))
			}
		}
	}
}

// The store's value-log file size and GC period (see Open above).
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
	n.view.Store(v)
	n.tracker.Finalized(v)
	if n.orphans.len() > 0 {
		go n.readmitSettled(v)
	}
	for _, f := range v.Faulty {
		n.log.Warn("validator sent a wrong extension; outvoted and denied credit", "validator", f, "height", v.Decided)
		n.met.ValidatorFaults.WithLabelValues(strconv.Itoa(f)).Inc()
	}
	n.announce(v)
}
