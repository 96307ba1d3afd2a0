package node

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/asynkron/protoactor-go/actor"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/zkbank/zkbank/actors"
	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/consensus"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/p2p"
	"github.com/zkbank/zkbank/store"
)

var (
	protoConsensus = p2p.ProtocolID("consensus", 1)
	protoTx        = p2p.ProtocolID("tx", 1)
	protoOpen      = p2p.ProtocolID("open", 1)
	protoSync      = p2p.ProtocolID("sync", 1)
)

var routeLibp2pLogs sync.Once

// Node is one validator process: a libp2p host, an actor system, a store
// and the client API.
type Node struct {
	name  string
	self  int
	home  Home
	gen   *genesis.Genesis
	p     *ledger.Params
	com   *ledger.Committee
	keys  *ledger.PublicKeys
	key   *ledger.KeyShare
	dec   *ledger.Decryptor
	log   *slog.Logger
	peers []peer.ID

	sys     *actor.ActorSystem
	st      *actors.Store
	mem     *actors.Mempool
	net     *actors.Net
	cons    *actors.Consensus
	tracker *tracker
	met     *Metrics

	app       atomic.Pointer[App]
	book      atomic.Pointer[ledger.Book]
	finalized atomic.Uint64
	engines   chan *ledger.Engine
	started   time.Time
	faults    *faults
	host      *p2p.Host               // set before the API serves
	credits   atomic.Pointer[[]int64] // work credits as of the last finalized height
	recMu     sync.Mutex
	recCache  map[recKey]recEntry
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
	n := &Node{name: name, self: self, home: h, gen: gen, p: p, com: com, log: log, peers: peers, started: time.Now()}

	reg := prometheus.NewRegistry()
	n.met = newMetrics(reg)
	n.tracker = newTracker(n.met)

	db, err := store.Open(h.Data(), store.Options{Logger: log})
	if err != nil {
		return err
	}
	defer db.Close()

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
			protoSync:      {MaxFrameBytes: 96 << 20, Timeout: 2 * time.Minute},
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
		cctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
		keys, ks, err := runCeremony(cctx, host, p, com, self, peers, []byte(gen.ChainID), log)
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

	n.sys = actors.NewSystem(log)
	defer n.sys.Shutdown()
	n.st = actors.NewStore(n.sys, db)
	n.mem = actors.NewMempool(n.sys, 4096)
	n.net = actors.NewNet(n.sys, host, log)
	shards := actors.NewShards(n.sys, eng, 5*time.Minute)

	rs, err := restore(n.st, p, eng, gen.ChainID, gbook)
	if err != nil {
		return fmt.Errorf("restoring from %s: %w", h.Data(), err)
	}
	app, err := NewApp(AppConfig{Params: p, Engine: eng.Clone(), Decryptor: n.dec, Key: n.key, Chain: gen.ChainID,
		N: com.N, T: com.T, Logger: log, Mempool: memAdapter{n.mem}, Evaluator: timedEvaluator{shards, n.met},
		Persister: &persister{st: n.st, p: p}, Fetcher: n, Observer: (*publishing)(n),
		Book: rs.book, Finalized: rs.finalized, LastBlock: rs.lastBlock, Credits: rs.credits})
	if err != nil {
		return err
	}
	n.faults = faultsFor(dir)
	app.faults = n.faults
	vals := make([]consensus.Validator, len(gen.Validators))
	for i, v := range gen.Validators {
		pub, _ := v.PublicKey()
		vals[i] = consensus.Validator{PubKey: pub, Power: v.Power}
	}
	vset, err := consensus.NewValidatorSet(vals)
	if err != nil {
		return err
	}
	pr, pv, pc, delta, _, err := gen.Timeouts.Durations()
	if err != nil {
		return err
	}
	machine, err := consensus.NewMachine(consensus.Config{
		ChainID: gen.ChainID, Validators: vset, Proposer: CreditSelector{credits: app.Credits},
		Timeouts: consensus.Timeouts{Propose: pr, ProposeDelta: delta, Prevote: pv, PrevoteDelta: delta, Precommit: pc, PrecommitDelta: delta, Rebroadcast: 2 * time.Second},
	}, app, consensus.NewEd25519Signer(ck), rs.wal)
	if err != nil {
		return err
	}
	n.cons = actors.NewConsensus(n.sys, machine, actors.ConsensusHooks{
		Persist:   n.persistWAL,
		Send:      n.sendConsensus,
		Committed: func(c *consensus.Commit) { n.committed(app, c) },
		Serve:     n.serveCommit,
	}, log)

	for _, hd := range []struct {
		proto protocol.ID
		fn    p2p.Handler
	}{
		{protoConsensus, func(_ context.Context, from peer.ID, b []byte) ([]byte, error) {
			if n.faults == nil || !n.faults.partitioned.Load() {
				n.cons.Deliver(b)
			}
			return nil, nil
		}},
		{protoTx, func(_ context.Context, from peer.ID, b []byte) ([]byte, error) {
			_, err := n.admit(b, false)
			return nil, err
		}},
		{protoOpen, n.handleOpen},
		{protoSync, n.handleSync},
	} {
		if err := host.SetHandler(hd.proto, hd.fn); err != nil {
			return err
		}
	}
	// From Start on, the consensus actor owns app: read what we need first.
	finalized, applied := app.Finalized(), app.Book().Height()
	n.book.Store(app.Book())
	n.finalized.Store(finalized)
	n.app.Store(app)
	n.cons.Start(finalized+1, rs.last)
	log.Info("node ready", "height", finalized, "applied", applied)

	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			log.Info("node stopping")
			return nil
		case <-t.C:
			n.met.Mempool.Set(float64(n.mem.Size()))
		}
	}
}

func mustSet(name string) ledger.ParamSet {
	s, err := ledger.ParamSetByName(name)
	if err != nil {
		return ledger.ParamSet{Name: name}
	}
	return s
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

// memAdapter exposes the mempool actor as the App's Mempool.
type memAdapter struct{ m *actors.Mempool }

func (a memAdapter) Candidates(max int, minAge time.Duration) []*Upload {
	return a.m.Candidates(max, minAge)
}
func (a memAdapter) Get(h [32]byte) (*Upload, bool) { return a.m.Get(h) }
func (a memAdapter) Opens(max int) []OpenOp {
	var out []OpenOp
	for _, o := range a.m.Opens(max) {
		out = append(out, OpenOp{SignPub: o.SignPub, Kind: o.Kind, Sig: o.Sig})
	}
	return out
}
func (a memAdapter) Committed(b *Block) {
	var hs [][32]byte
	for _, s := range b.Subs {
		hs = append(hs, s.CTHash)
	}
	var ops [][]byte
	for _, o := range b.Opens {
		ops = append(ops, o.SignPub)
	}
	a.m.Committed(hs, ops)
}

func (n *Node) persistWAL(recs []consensus.WALRecord) error {
	return n.st.Do(func(db store.Backend) error {
		for _, r := range recs {
			if err := db.Append(r.Height(), consensus.EncodeWALRecord(r)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (n *Node) sendConsensus(to int, msg []byte) {
	if n.faults != nil && n.faults.partitioned.Load() {
		return
	}
	if to == consensus.Broadcast {
		for i, id := range n.peers {
			if i != n.self {
				n.net.Send(id, protoConsensus, msg)
			}
		}
		return
	}
	if to >= 0 && to < len(n.peers) && to != n.self {
		n.net.Send(n.peers[to], protoConsensus, msg)
	}
}

// publishing is the App's observer: it publishes the new book and height to
// API readers before telling waiters, so a client woken by a decision (an
// account opened, a transfer decided) always sees the state it was told about.
type publishing Node

func (p *publishing) publish(h uint64) {
	n := (*Node)(p)
	if app := n.app.Load(); app != nil {
		n.book.Store(app.Book())
		cr := app.Credits()
		n.credits.Store(&cr)
	}
	n.finalized.Store(h)
}

func (p *publishing) Included(h uint64, b *Block) { p.publish(h); p.tracker.Included(h, b) }
func (p *publishing) Decided(h uint64, outs []ledger.Outcome) {
	p.publish(h + 1)
	p.tracker.Decided(h, outs)
}
func (p *publishing) Opened(h uint64, accts []*ledger.Account) {
	p.publish(h)
	p.tracker.Opened(h, accts)
}

func (n *Node) committed(app *App, c *consensus.Commit) {
	n.book.Store(app.Book())
	n.finalized.Store(c.Height())
	if h := c.Height(); h > ledger.DefaultWindow+2 {
		_ = n.st.Do(func(db store.Backend) error { return db.TruncateBefore(h - 1) })
	}
}

// serveCommit answers a lagging validator with a run of consecutive
// decisions from the store: the machine flags a lagging peer at most once per
// rebroadcast period, so one decision per flag would never catch up with a
// live chain. The ordered stream delivers them in order.
func (n *Node) serveCommit(req consensus.CommitRequest) {
	last := n.finalized.Load()
	n.log.Debug("serving a lagging validator", "validator", req.Validator, "from", req.Height, "to", min(last, req.Height+serveRun-1))
	for h := req.Height; h <= last && h < req.Height+serveRun; h++ {
		var value, cert []byte
		err := n.st.Do(func(db store.Backend) error {
			var e error
			if value, e = db.Block(h); e != nil {
				return e
			}
			cert, e = db.Cert(h)
			return e
		})
		if err != nil {
			n.log.Debug("cannot serve lagging validator", "validator", req.Validator, "height", h, "err", err)
			return
		}
		msg, err := consensus.DecodeMessage(cert)
		if err != nil {
			n.log.Warn("stored certificate does not decode", "height", h, "err", err)
			return
		}
		cm, ok := msg.(*consensus.Commit)
		if !ok {
			return
		}
		cm.Value = value
		n.sendConsensus(req.Validator, consensus.EncodeMessage(cm))
	}
}

// serveRun is how many consecutive decisions one catch-up answer carries.
const serveRun = 32

// admit decodes and pre-checks an upload, adds it to the mempool and, for
// uploads from clients, relays it to the other validators.
func (n *Node) admit(body []byte, relay bool) ([]string, error) {
	var sub ledger.Submission
	if err := sub.UnmarshalBinary(body); err != nil {
		n.met.Submissions.WithLabelValues("malformed").Inc()
		return nil, &ledger.RejectError{Reason: ledger.RejectMalformed}
	}
	hash := sha256.Sum256(sub.Ciphertext)
	ids := make([]string, len(sub.Envelopes))
	book := n.book.Load()
	for i := range sub.Envelopes {
		e := &sub.Envelopes[i]
		if e.CTHash != hash {
			return nil, fmt.Errorf("%w: envelope %d does not sign this ciphertext", &ledger.RejectError{Reason: ledger.RejectMalformed}, i)
		}
		if book != nil {
			switch r := book.Check(e); r {
			case ledger.Accepted, ledger.RejectFutureHeight:
			default:
				n.met.Submissions.WithLabelValues(r.Code()).Inc()
				return nil, &ledger.RejectError{Reason: r}
			}
		}
		id := e.ID()
		ids[i] = hex.EncodeToString(id[:])
	}
	ct, err := n.p.DecodeUpload(sub.Ciphertext)
	if err != nil {
		n.met.Submissions.WithLabelValues("malformed").Inc()
		return nil, err
	}
	u := &Upload{Hash: hash, Raw: sub.Ciphertext, CT: ct, Envs: sub.Envelopes, Received: time.Now()}
	if n.mem.Add(u) {
		n.tracker.submittedNow(sub.Envelopes)
		n.met.Submissions.WithLabelValues("accepted").Inc()
		if relay {
			for i, id := range n.peers {
				if i != n.self {
					n.net.Send(id, protoTx, body)
				}
			}
		}
	}
	return ids, nil
}

func (n *Node) relayOpen(o actors.Open) {
	b := append([]byte{byte(o.Kind)}, o.SignPub...)
	b = append(b, o.Sig...)
	for i, id := range n.peers {
		if i != n.self {
			n.net.Send(id, protoOpen, b)
		}
	}
}

func (n *Node) handleOpen(_ context.Context, _ peer.ID, b []byte) ([]byte, error) {
	if len(b) != 1+32+64 {
		return nil, errors.New("bad open message")
	}
	n.mem.AddOpen(actors.Open{Kind: ledger.AccountKind(b[0]), SignPub: append([]byte(nil), b[1:33]...), Sig: append([]byte(nil), b[33:]...)})
	return nil, nil
}

// handleSync serves an upload's bytes by ciphertext hash.
func (n *Node) handleSync(_ context.Context, _ peer.ID, b []byte) ([]byte, error) {
	if len(b) != 32 {
		return nil, errors.New("bad sync request")
	}
	var h [32]byte
	copy(h[:], b)
	if u, ok := n.mem.Get(h); ok {
		return u.Raw, nil
	}
	var raw []byte
	err := n.st.Do(func(db store.Backend) error {
		var e error
		raw, e = db.GetMeta(uploadKey(h))
		return e
	})
	if err != nil {
		return nil, fmt.Errorf("upload %x not held here", h[:8])
	}
	return raw, nil
}

// Fetch implements Fetcher: the store first, then each peer.
func (n *Node) Fetch(ctx context.Context, h [32]byte) ([]byte, error) {
	var raw []byte
	if err := n.st.Do(func(db store.Backend) error {
		var e error
		raw, e = db.GetMeta(uploadKey(h))
		return e
	}); err == nil {
		return raw, nil
	}
	var last error
	for i, id := range n.peers {
		if i == n.self {
			continue
		}
		b, err := n.net.Host.Request(ctx, id, protoSync, h[:])
		if err == nil {
			return b, nil
		}
		last = err
	}
	return nil, fmt.Errorf("no peer has upload %x: %w", h[:8], last)
}

func (n *Node) queryEngine() *ledger.Engine    { return <-n.engines }
func (n *Node) releaseEngine(e *ledger.Engine) { n.engines <- e }

// Status reports the node's view for the API.
func (n *Node) Status() api.Status {
	st := api.Status{Chain: n.gen.ChainID, Node: n.name, ValidatorIndex: n.self, Validators: n.com.N, Threshold: n.com.T,
		Height: n.finalized.Load()}
	st.Peers = len(n.host.Peers())
	app := n.app.Load()
	if app == nil {
		return st
	}
	st.Ready = true
	if b := n.book.Load(); b != nil {
		st.AppliedHeight = b.Height()
	}
	if r, err := n.cons.Round(); err == nil {
		st.Round = uint32(r.Round)
	}
	c, rj, tps, fin := n.tracker.rates()
	st.CommittedTransfers, st.RejectedTransfers, st.TransfersPerSecond = c, rj, tps
	st.LastFinalityMillis = float64(fin) / float64(time.Millisecond)
	st.Mempool = n.mem.Size()
	if cr := n.credits.Load(); cr != nil {
		st.WorkCredits = append([]int64(nil), (*cr)...)
	}
	return st
}

// recomposed returns the recomposed state of a shard at a height, computed
// once and shared by every balance query of that height.
func (n *Node) recomposed(eng *ledger.Engine, shard uint32, h uint64, st *rlwe.Ciphertext) (*rlwe.Ciphertext, error) {
	key := recKey{shard, h}
	n.recMu.Lock()
	if e, ok := n.recCache[key]; ok && e.state == st {
		n.recMu.Unlock()
		return e.sum, nil
	}
	n.recMu.Unlock()
	sum, err := eng.Recompose(st)
	if err != nil {
		return nil, err
	}
	n.recMu.Lock()
	defer n.recMu.Unlock()
	if n.recCache == nil || len(n.recCache) >= 32 {
		n.recCache = map[recKey]recEntry{}
	}
	n.recCache[key] = recEntry{state: st, sum: sum}
	return sum, nil
}

type recKey struct {
	shard uint32
	h     uint64
}

type recEntry struct {
	state, sum *rlwe.Ciphertext
}
