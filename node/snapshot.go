package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/zkbank/zkbank/chain"
	"github.com/zkbank/zkbank/consensus"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/internal/wire"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/p2p"
)

// State snapshots over the network (docs/PROTOCOL.md, "State snapshots").
// /zkbank/snapshot/1 is request-response; the first byte says what:
//
//	list:   [1]                  -> finalized u64, n u32, n x (info bytes: chain.SnapshotInfo)
//	chunk:  [2] height u64 i u32 -> chunk i of the snapshot of height
//	commit: [3] height u64       -> the stored decision of height (consensus.Commit)
//
// A node that starts behind its peers by more than half the upload
// retention fetches the newest snapshot a decided block certifies, checks
// every chunk against the certified list, installs it and catches up block
// by block from there.
var protoSnapshot = p2p.ProtocolID("snapshot", 1)

const (
	snapReqList   = 1
	snapReqChunk  = 2
	snapReqCommit = 3

	snapshotPeerTimeout  = 5 * time.Second
	snapshotChunkTimeout = time.Minute
	maxSnapshotList      = 16
)

// snapshotTuning sets a node's snapshot interval and upload retention
// (every validator of a chain must use the same; 0 is the default) and
// counts what it refused and restored. Only tests set one (tuningDefault,
// copied for every node started meanwhile, by home directory): a shipped
// node uses chain.DefaultSnapshotEvery and chain.UploadRetention.
type snapshotTuning struct {
	every, retention uint64
	lieChunks        atomic.Bool   // serve every chunk with one byte flipped (a lying peer)
	refused          atomic.Int64  // chunks this node refused while restoring
	restored         atomic.Uint64 // the height of the snapshot it restored
}

var (
	tuningMu      sync.Mutex
	tuningDefault *snapshotTuning
	tuningByHome  = map[string]*snapshotTuning{}
)

func tuningFor(home string) *snapshotTuning {
	tuningMu.Lock()
	defer tuningMu.Unlock()
	if t := tuningByHome[home]; t != nil {
		return t
	}
	if tuningDefault == nil {
		return &snapshotTuning{}
	}
	t := &snapshotTuning{every: tuningDefault.every, retention: tuningDefault.retention}
	tuningByHome[home] = t
	return t
}

// handleSnapshot serves the snapshot protocol from the store.
func (n *Node) handleSnapshot(_ context.Context, _ peer.ID, b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, errors.New("empty snapshot request")
	}
	switch {
	case b[0] == snapReqList && len(b) == 1:
		var w wire.Writer
		fin := uint64(0)
		if v := n.view.Load(); v != nil {
			fin = v.Height
		}
		w.U64(fin)
		infos := chain.Snapshots(n.db)
		w.U32(uint32(len(infos)))
		for _, s := range infos {
			w.Bytes(s.Encode())
		}
		return w.B, nil
	case b[0] == snapReqChunk && len(b) == 13:
		h, i := binary.BigEndian.Uint64(b[1:]), binary.BigEndian.Uint32(b[9:])
		raw, err := chain.SnapshotChunk(n.db, h, int(i))
		if err != nil {
			return nil, fmt.Errorf("chunk %d of the snapshot of height %d: %w", i, h, err)
		}
		if n.snapTuning != nil && n.snapTuning.lieChunks.Load() {
			raw = append([]byte(nil), raw...)
			raw[len(raw)/2] ^= 1
		}
		return raw, nil
	case b[0] == snapReqCommit && len(b) == 9:
		h := binary.BigEndian.Uint64(b[1:])
		cm, err := chain.StoredCommit(n.db, h)
		if err != nil {
			return nil, fmt.Errorf("decision of height %d: %w", h, err)
		}
		return consensus.EncodeMessage(cm), nil
	}
	return nil, fmt.Errorf("bad snapshot request (%d bytes)", len(b))
}

// snapshotFetch is what restoring from peers needs: validators and full
// nodes both have it.
type snapshotFetch struct {
	request   func(ctx context.Context, to peer.ID, proto protocol.ID, req []byte) ([]byte, error)
	peers     []peer.ID
	chainID   string
	vals      *consensus.ValidatorSet
	p         *ledger.Params
	db        chain.SnapshotStore
	log       *slog.Logger
	retention uint64
	refused   *atomic.Int64 // may be nil
}

// restoreFromSnapshot installs the newest certified snapshot of the
// node's peers into its store if it is behind them by more than half the
// upload retention (it could not re-evaluate every block before they drop
// what it needs), and returns the restored height (0 if it did not need
// one). Call it before chain.Restore reads the store; the node then catches
// up block by block from the snapshot's height. Full nodes call it the
// same way.
func (n *Node) restoreFromSnapshot(ctx context.Context) (uint64, error) {
	vals, err := validatorSet(n.gen)
	if err != nil {
		return 0, err
	}
	t := n.snapTuning
	if t == nil {
		t = &snapshotTuning{}
	}
	retention := t.retention
	if retention == 0 {
		retention = chain.UploadRetention
	}
	var peers []peer.ID
	for _, id := range n.peers {
		if id != n.host.ID() {
			peers = append(peers, id)
		}
	}
	f := &snapshotFetch{request: n.host.Request, peers: peers, chainID: n.gen.ChainID, vals: vals, p: n.p, db: n.db,
		log: n.log.With("component", "snapshot"), retention: retention, refused: &t.refused}
	h, err := f.restore(ctx)
	if h > 0 {
		t.restored.Store(h)
	}
	return h, err
}

func validatorSet(gen *genesis.Genesis) (*consensus.ValidatorSet, error) {
	vals := make([]consensus.Validator, len(gen.Validators))
	for i, v := range gen.Validators {
		pub, err := v.PublicKey()
		if err != nil {
			return nil, fmt.Errorf("genesis validator %d: %w", i, err)
		}
		vals[i] = consensus.Validator{PubKey: pub, Power: v.Power}
	}
	return consensus.NewValidatorSet(vals)
}

// offer is one snapshot as peers list it.
type offer struct {
	info  *chain.SnapshotInfo
	peers []peer.ID
}

func (f *snapshotFetch) restore(ctx context.Context) (uint64, error) {
	mine, err := f.db.LastApplied()
	if err != nil {
		return 0, err
	}
	offers, head := f.list(ctx)
	if head <= mine+f.retention/2 {
		return 0, nil
	}
	var cands []*offer
	for _, o := range offers {
		if o.info.Height > mine {
			cands = append(cands, o)
		}
	}
	if len(cands) == 0 {
		f.log.Warn("behind the peers by more than half the upload retention, and no peer offers a newer snapshot: catching up block by block",
			"finalized", mine, "peers_at", head)
		return 0, nil
	}
	f.log.Info("behind the peers: restoring a state snapshot", "finalized", mine, "peers_at", head, "offers", len(cands))
	var last error
	for _, o := range cands {
		if err := f.fetchAndInstall(ctx, o); err != nil {
			f.log.Warn("snapshot not restored; trying an older one", "height", o.info.Height, "err", err)
			last = err
			if ctx.Err() != nil {
				break
			}
			continue
		}
		return o.info.Height, nil
	}
	return 0, fmt.Errorf("no snapshot of the peers could be restored: %w", last)
}

// list asks every peer for its snapshots and returns them newest first
// (one offer per height and root), with the highest finalized height a peer
// claimed. The claim only decides whether to restore: what is restored is
// checked against a certified block.
func (f *snapshotFetch) list(ctx context.Context) ([]*offer, uint64) {
	type answer struct {
		id    peer.ID
		head  uint64
		infos []*chain.SnapshotInfo
	}
	answers := make([]answer, len(f.peers))
	var wg sync.WaitGroup
	for i, id := range f.peers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, cancel := context.WithTimeout(ctx, snapshotPeerTimeout)
			defer cancel()
			raw, err := f.request(c, id, protoSnapshot, []byte{snapReqList})
			if err != nil {
				f.log.Debug("peer did not list its snapshots", "peer", id.ShortString(), "err", err)
				return
			}
			r := wire.NewReader(raw, chain.ErrSnapshot)
			a := answer{id: id, head: r.U64()}
			k := r.Count(maxSnapshotList)
			for j := 0; j < k && r.Err == nil; j++ {
				info, err := chain.DecodeSnapshotInfo(r.Bytes(1 << 26))
				if err != nil || info.Verify(f.chainID) != nil {
					continue
				}
				a.infos = append(a.infos, info)
			}
			if r.Done() == nil {
				answers[i] = a
			}
		}()
	}
	wg.Wait()
	// How far ahead the peers are: the (f+1)-th highest of their claims
	// (unsigned), so no f liars make a node that is only slightly behind
	// restore instead of catching up.
	heads := make([]uint64, 0, len(answers)+1)
	for _, a := range answers {
		heads = append(heads, a.head)
	}
	if len(heads) < f.vals.Size() {
		heads = append(heads, 0) // a validator does not ask itself
	}
	head := agreedHeight(heads, (len(heads)-1)/3)
	by := map[[32]byte]*offer{}
	var out []*offer
	for _, a := range answers {
		for _, info := range a.infos {
			o := by[info.Root]
			if o == nil {
				o = &offer{info: info}
				by[info.Root] = o
				out = append(out, o)
			}
			o.peers = append(o.peers, a.id)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].info.Height > out[j].info.Height })
	return out, head
}

// commit fetches and decodes the decision of height h from the first peer
// that has one.
func (f *snapshotFetch) commit(ctx context.Context, h uint64, peers []peer.ID) (*consensus.Commit, peer.ID, error) {
	req := binary.BigEndian.AppendUint64([]byte{snapReqCommit}, h)
	var last error = errors.New("no peer")
	for _, id := range peers {
		c, cancel := context.WithTimeout(ctx, snapshotChunkTimeout)
		raw, err := f.request(c, id, protoSnapshot, req)
		cancel()
		if err != nil {
			last = err
			continue
		}
		msg, err := consensus.DecodeMessage(raw)
		if err != nil {
			last = err
			continue
		}
		cm, ok := msg.(*consensus.Commit)
		if !ok || cm.Cert == nil || cm.Cert.Height != h {
			last = fmt.Errorf("peer %s answered something else than the decision of height %d", id.ShortString(), h)
			continue
		}
		return cm, id, nil
	}
	return nil, "", last
}

// fetchAndInstall checks an offer against the block that certifies it,
// fetches its chunks and installs it.
func (f *snapshotFetch) fetchAndInstall(ctx context.Context, o *offer) error {
	h := o.info.Height
	ask := append(append([]peer.ID(nil), o.peers...), f.peers...)
	seen := map[peer.ID]bool{}
	uniq := ask[:0]
	for _, id := range ask {
		if !seen[id] {
			seen[id] = true
			uniq = append(uniq, id)
		}
	}
	ask = uniq
	// The block of h+1 carries the root: only a quorum's decision counts.
	var certified bool
	for _, id := range ask {
		cm, _, err := f.commit(ctx, h+1, []peer.ID{id})
		if err != nil {
			continue
		}
		ch, root, err := chain.CertifiedSnapshotRoot(f.chainID, f.vals, cm)
		if err != nil || ch != h || root != o.info.Root {
			f.log.Warn("a peer's decision does not certify the offered snapshot", "peer", id.ShortString(), "height", h, "err", err)
			continue
		}
		certified = true
		break
	}
	if !certified {
		return fmt.Errorf("no certified block commits the snapshot root %x of height %d", o.info.Root[:8], h)
	}
	// The decision of h from the first peer whose answer is a decision a
	// quorum certified: a peer sending anything else is skipped, rather
	// than spoiling the whole offer after every chunk was fetched.
	var last *consensus.Commit
	for _, id := range ask {
		cm, _, err := f.commit(ctx, h, []peer.ID{id})
		if err == nil && consensus.HashValue(cm.Value) == cm.Cert.BlockID && consensus.VerifyCommit(f.chainID, f.vals, cm.Cert) == nil {
			last = cm
			break
		}
		f.log.Warn("a peer's decision of the snapshot's height does not verify; asking another", "peer", id.ShortString(), "height", h, "err", err)
	}
	if last == nil {
		return fmt.Errorf("no peer served a certified decision of height %d", h)
	}
	chunks, err := f.chunks(ctx, o.info, o.peers)
	if err != nil {
		return err
	}
	start := time.Now()
	if err := chain.RestoreSnapshot(f.db, f.p, f.chainID, f.vals, o.info, chunks, last); err != nil {
		return err
	}
	f.log.Info("state snapshot restored", "height", h, "mb", float64(o.info.Size)/(1<<20), "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// chunks fetches every chunk of info, each from the offering peers in
// turn until one sends bytes that hash to the certified chunk hash: a peer
// that sends anything else is not asked again.
func (f *snapshotFetch) chunks(ctx context.Context, info *chain.SnapshotInfo, peers []peer.ID) ([][]byte, error) {
	out := make([][]byte, len(info.Chunks))
	bad := map[peer.ID]bool{}
	var got uint64
	start := time.Now()
	next := 0
	for i := range info.Chunks {
		req := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64([]byte{snapReqChunk}, info.Height), uint32(i))
		var last error = errors.New("no peer offers it")
		for try := 0; try < len(peers) && out[i] == nil; try++ {
			id := peers[(next+try)%len(peers)]
			if bad[id] {
				continue
			}
			c, cancel := context.WithTimeout(ctx, snapshotChunkTimeout)
			raw, err := f.request(c, id, protoSnapshot, req)
			cancel()
			if err != nil {
				last = err
				continue
			}
			if err := info.CheckChunk(i, raw); err != nil {
				bad[id] = true
				if f.refused != nil {
					f.refused.Add(1)
				}
				f.log.Warn("refused a snapshot chunk that does not match its certified hash; asking another peer", "peer", id.ShortString(), "height", info.Height, "chunk", i)
				last = err
				continue
			}
			out[i] = raw
		}
		if out[i] == nil {
			return nil, fmt.Errorf("chunk %d of %d of the snapshot of height %d: %w", i, len(info.Chunks), info.Height, last)
		}
		next++ // spread the chunks over the peers
		got += uint64(len(out[i]))
		f.log.Info("snapshot chunk fetched", "height", info.Height, "chunk", i+1, "of", len(info.Chunks),
			"mb", fmt.Sprintf("%.1f/%.1f", float64(got)/(1<<20), float64(info.Size)/(1<<20)), "elapsed", time.Since(start).Round(time.Millisecond))
	}
	return out, nil
}
