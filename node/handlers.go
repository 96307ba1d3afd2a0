package node

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/zkbank/zkbank/actors"
	"github.com/zkbank/zkbank/chain"
	"github.com/zkbank/zkbank/consensus"
	"github.com/zkbank/zkbank/ledger"
)

// What a validator says to its peers, and what it answers. Every handler
// runs on the p2p layer's goroutines; none touches the chain application,
// which belongs to the consensus actor.

// fetchTimeout bounds fetching one missing upload from peers.
const fetchTimeout = 10 * time.Second

// handleConsensus delivers a consensus message to the machine. A proposal or
// a decision names uploads by hash; any this node lacks are fetched first, so
// that validating the block inside the consensus step never waits on the
// network (a fetch that fails leaves the upload missing, and the block is
// then refused as invalid).
func (n *Node) handleConsensus(ctx context.Context, from peer.ID, b []byte) ([]byte, error) {
	if n.faults.isPartitioned() {
		return nil, nil
	}
	// Decoded once, here: the machine steps the decoded message.
	msg, err := consensus.DecodeMessage(b)
	if err != nil {
		n.cons.Deliver(b) // the machine reports it
		return nil, nil
	}
	n.prefetch(ctx, from, msg)
	if _, ok := msg.(*consensus.Proposal); ok && n.faults != nil && n.faults.delayProposals > 0 {
		time.AfterFunc(n.faults.delayProposals, func() { n.cons.DeliverMessage(msg) })
		return nil, nil
	}
	n.cons.DeliverMessage(msg)
	return nil, nil
}

// prefetch fetches what a message makes this node need and it holds
// neither in memory nor in its store: the uploads a proposal or commit
// references, and the piece ciphertexts a precommit attests (the next
// proposer decides the block's pieces from those precommits, whoever it is,
// so every validator gets them as the votes arrive).
func (n *Node) prefetch(ctx context.Context, from peer.ID, msg consensus.Message) {
	var value []byte
	switch m := msg.(type) {
	case *consensus.Proposal:
		value = m.Value
	case *consensus.Commit:
		value = m.Value
	case *consensus.Vote:
		n.prefetchAttested(ctx, m)
		return
	default:
		return
	}
	blk, err := chain.DecodeBlock(value)
	if err != nil {
		return
	}
	// The carried precommits name the pieces to fetch: only those that are
	// their validators' signed precommits for our last block count (a
	// certified commit's were checked by the quorum that certified it).
	if _, isProposal := msg.(*consensus.Proposal); isProposal {
		v := n.view.Load()
		var ok []chain.Precommit
		for _, x := range blk.LastCommit {
			if v != nil && blk.Height == v.Height+1 && consensus.VerifyVote(n.gen.ChainID, n.vset, x.Vote(v.Height, consensus.BlockID(v.Hash))) {
				ok = append(ok, x)
			}
		}
		blk.LastCommit = ok
	}
	var pieces []chain.PieceWant
	for _, pw := range chain.WantedPieces(blk, n.opener.Sharing) {
		if n.opener.Sharing.Holds(n.self, pw.Piece) {
			continue // this node computes its own
		}
		if n.pieces.Get(pw.Hash) != nil {
			continue
		}
		if _, err := chain.StoredPiece(n.db, pw.Hash); err == nil {
			continue
		}
		pieces = append(pieces, pw)
	}
	var missing []chain.SubRef
	var unopened []*chain.Upload
	for _, s := range blk.Subs {
		if len(s.Envelopes) != 1 {
			continue
		}
		if u, err := n.mem.Get(s.Envelopes[0].ID()); err != nil || u != nil {
			if u != nil && u.Pieces == nil {
				unopened = append(unopened, u)
			}
			continue
		}
		if _, err := chain.StoredUpload(n.db, s.CTHash); err == nil {
			continue
		}
		missing = append(missing, s)
	}
	if len(missing) == 0 && len(pieces) == 0 && len(unopened) == 0 {
		return
	}
	// Only a validator's signed proposal, or a decision with a quorum of
	// signatures, makes this node fetch anything: a stranger cannot make it
	// download (or relay requests for) what it names.
	switch m := msg.(type) {
	case *consensus.Proposal:
		if !consensus.VerifyProposal(n.gen.ChainID, n.vset, m) {
			return
		}
	case *consensus.Commit:
		if m.Cert == nil || consensus.HashValue(m.Value) != m.Cert.BlockID || consensus.VerifyCommit(n.gen.ChainID, n.vset, m.Cert) != nil {
			return
		}
	}
	if len(pieces) > maxPiecesPerBlock {
		pieces = pieces[:maxPiecesPerBlock] // a block with more is not one this node can decide anyway
	}
	for _, pw := range pieces {
		// Any holder that attested the piece can serve it; the hash checks
		// the bytes and the shape check that they are a piece ciphertext.
		c, cancel := context.WithTimeout(ctx, fetchTimeout)
		raw, err := n.fetchFrom(c, n.peersOf(pw.From, from), pw.Hash)
		cancel()
		if err == nil {
			if _, derr := n.p.DecodeUpload(raw); derr != nil {
				err = fmt.Errorf("not a piece ciphertext: %w", derr)
			}
		}
		if err != nil {
			n.log.Warn("piece ciphertext decided by a block is unavailable", "piece", hex.EncodeToString(pw.Hash[:8]), "err", err)
			n.met.Fetches.WithLabelValues("failed").Inc()
			continue
		}
		n.met.Fetches.WithLabelValues("piece").Inc()
		height := blk.Height - 1
		if v := n.view.Load(); v != nil && height > v.Height+1 {
			height = v.Height + 1 // kept by this node's height, not the block's word
		}
		n.pieces.Put(pw.Hash, raw, height)
	}
	for _, s := range missing {
		c, cancel := context.WithTimeout(ctx, fetchTimeout)
		raw, err := n.fetch(c, from, s.CTHash)
		cancel()
		if err != nil {
			n.log.Warn("upload referenced by a block is unavailable", "upload", hex.EncodeToString(s.CTHash[:8]), "err", err)
			n.met.Fetches.WithLabelValues("failed").Inc()
			continue
		}
		u := n.opener.NewUpload(raw, s.Envelopes, time.Now())
		if u.Sealed == nil || !signs(s.Envelopes, u.Hash) {
			n.log.Warn("upload referenced by a block does not decode or is not the one its envelopes sign", "upload", hex.EncodeToString(s.CTHash[:8]))
			n.met.Fetches.WithLabelValues("invalid").Inc()
			continue
		}
		n.met.Fetches.WithLabelValues("fetched").Inc()
		if err := n.mem.AddReferenced(u); err != nil {
			n.log.Warn("mempool refused a fetched upload", "err", err)
		}
		if u.Pieces == nil {
			unopened = append(unopened, u)
		}
	}
	// Uploads a block orders whose box did not open here: get the pieces
	// from co-holders before the block reaches consensus, so this validator
	// can attest the group's pieces too. All at once, so the delay is one
	// recovery timeout at most, whatever the block holds.
	var wg sync.WaitGroup
	for _, u := range unopened {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.recoverPieces(ctx, u)
		}()
	}
	wg.Wait()
}

// prefetchAttested fetches the piece ciphertexts a validator's signed
// precommit attests that this node lacks, from that validator first. Only a
// precommit that verifies, for the block this node is deciding (the next
// height, or the last one for a late precommit), makes this node fetch
// anything, at most maxPiecesPerVote of them, each checked against its hash
// and its exact ciphertext shape before it is kept: a stranger cannot make it
// download anything, and a validator only a bounded amount per vote.
func (n *Node) prefetchAttested(ctx context.Context, v *consensus.Vote) {
	if (v.Type != consensus.Precommit && v.Type != consensus.Attestation) || len(v.Extension) == 0 || v.Validator < 0 || v.Validator >= len(n.peers) {
		return
	}
	view := n.view.Load()
	// The next height, or the one after while this node finalizes; or a
	// late precommit or an attestation for the last one.
	if view == nil || v.Height < view.Height || v.Height > view.Height+2 {
		return
	}
	ext, err := chain.DecodeExt(v.Extension)
	if err != nil || len(ext.Pieces) == 0 || len(ext.Pieces) > maxPiecesPerBlock || ext.Height != v.Height || !consensus.VerifyVote(n.gen.ChainID, n.vset, v) {
		return
	}
	// A few extensions per validator and height (a new round may precommit
	// another block): a validator signing many precommits (rounds, made-up
	// blocks) gets a bounded fetch budget.
	if !n.attested.allow(v.Validator, v.Height) {
		return
	}
	for _, pa := range ext.Pieces {
		k := int(pa.Piece)
		if k >= n.opener.Sharing.Pieces() || !n.opener.Sharing.Holds(v.Validator, k) || n.opener.Sharing.Holds(n.self, k) || n.pieces.Get(pa.Hash) != nil {
			continue // not its piece, or ours to compute, or held
		}
		done, first := n.fetching.begin(pa.Hash)
		if !first {
			// Another handler is fetching it: wait for that, not a second copy.
			select {
			case <-done:
			case <-ctx.Done():
			}
			continue
		}
		c, cancel := context.WithTimeout(ctx, pieceFetchTimeout)
		raw, err := n.fetchFrom(c, n.peersOf([]int{v.Validator}, n.peers[v.Validator]), pa.Hash)
		cancel()
		if err == nil {
			if _, derr := n.p.DecodeUpload(raw); derr != nil {
				err = fmt.Errorf("not a piece ciphertext: %w", derr)
			}
		}
		if err != nil {
			n.fetching.end(pa.Hash)
			n.log.Debug("attested piece unavailable", "piece", hex.EncodeToString(pa.Hash[:8]), "validator", v.Validator, "err", err)
			n.met.Fetches.WithLabelValues("failed").Inc()
			continue
		}
		n.met.Fetches.WithLabelValues("piece").Inc()
		n.pieces.Put(pa.Hash, raw, min(v.Height, view.Height+2)) // bounded by this node's height, not the attester's word
		n.fetching.end(pa.Hash)
	}
}

// maxPiecesPerBlock bounds the pieces one precommit or proposal can name: a
// block's groups times the pieces of a sharing.
const maxPiecesPerBlock = chain.MaxParts * ledger.MaxPieces

// seenAttest counts the extensions this node fetched for, per validator and
// height, over the last few heights.
type seenAttest struct {
	mu sync.Mutex
	m  map[[2]uint64]int
}

// attestsPerHeight is how many of one validator's extensions per height
// this node fetches pieces for.
const attestsPerHeight = 3

func (s *seenAttest) allow(validator int, height uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.m == nil || len(s.m) > 1024 {
		s.m = map[[2]uint64]int{}
	}
	k := [2]uint64{uint64(validator), height}
	if s.m[k] >= attestsPerHeight {
		return false
	}
	s.m[k]++
	return true
}

// pieceFetchTimeout bounds fetching one attested piece from all peers; each
// peer gets at most perPeerTimeout of it, so one that hangs does not use
// up the others' time.
const (
	pieceFetchTimeout = 6 * time.Second
	perPeerTimeout    = 2 * time.Second
)

// inflight dedupes concurrent fetches of the same bytes (precommits of
// several holders attest the same piece): the first caller fetches, the
// others wait for it.
type inflight struct {
	mu sync.Mutex
	m  map[[32]byte]chan struct{}
}

func (f *inflight) begin(h [32]byte) (done <-chan struct{}, first bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.m == nil {
		f.m = map[[32]byte]chan struct{}{}
	}
	if ch, ok := f.m[h]; ok {
		return ch, false
	}
	ch := make(chan struct{})
	f.m[h] = ch
	return ch, true
}

func (f *inflight) end(h [32]byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if ch, ok := f.m[h]; ok {
		close(ch)
		delete(f.m, h)
	}
}

// signs reports whether every envelope signs the upload of hash h.
func signs(envs []ledger.Envelope, h [32]byte) bool {
	for i := range envs {
		if envs[i].CTHash != h {
			return false
		}
	}
	return len(envs) > 0
}

// fetch gets an upload's bytes by hash: from the peer that sent the block
// first, then from every other validator.
func (n *Node) fetch(ctx context.Context, first peer.ID, h [32]byte) ([]byte, error) {
	return n.fetchFrom(ctx, n.peersOf(nil, first), h)
}

// peersOf orders peers to ask: the given validators first, then the peer
// that sent the block, then every other validator.
func (n *Node) peersOf(validators []int, first peer.ID) []peer.ID {
	var order []peer.ID
	seen := map[peer.ID]bool{n.host.ID(): true}
	add := func(id peer.ID) {
		if !seen[id] {
			seen[id] = true
			order = append(order, id)
		}
	}
	for _, v := range validators {
		if v >= 0 && v < len(n.peers) {
			add(n.peers[v])
		}
	}
	add(first)
	for _, id := range n.peers {
		add(id)
	}
	return order
}

// fetchFrom asks peers in order for the bytes of hash h.
func (n *Node) fetchFrom(ctx context.Context, order []peer.ID, h [32]byte) ([]byte, error) {
	var last error
	for _, id := range order {
		c, cancel := context.WithTimeout(ctx, perPeerTimeout)
		raw, err := n.net.Host.Request(c, id, protoSync, h[:])
		cancel()
		if err == nil && sha256.Sum256(raw) == h {
			return raw, nil
		}
		if err == nil {
			err = fmt.Errorf("peer %s sent bytes of another hash", id.ShortString())
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("no peer has %x: %w", h[:8], last)
}

func (n *Node) sendConsensus(to int, msg []byte) {
	if n.faults.isPartitioned() {
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

// serveRun is how many consecutive decisions one catch-up answer carries.
const serveRun = 32

// serveCommit answers a lagging validator with a run of consecutive
// decisions from the store: the machine flags a lagging peer at most once per
// rebroadcast period, so one decision per flag would never catch up with a
// live chain. The ordered stream delivers them in order.
func (n *Node) serveCommit(req consensus.CommitRequest) {
	last := n.view.Load().Height
	n.log.Debug("serving a lagging validator", "validator", req.Validator, "from", req.Height, "to", min(last, req.Height+serveRun-1))
	for h := req.Height; h <= last && h < req.Height+serveRun; h++ {
		cm, err := chain.StoredCommit(n.db, h)
		if err != nil {
			n.log.Debug("cannot serve lagging validator", "validator", req.Validator, "height", h, "err", err)
			return
		}
		n.sendConsensus(req.Validator, consensus.EncodeMessage(cm))
	}
}

func (n *Node) handleTx(_ context.Context, _ peer.ID, b []byte) ([]byte, error) {
	_, err := n.admit(b, false)
	return nil, err
}

// admit decodes and pre-checks an upload, adds it to the mempool and, for
// uploads from clients, relays it to the other validators.
func (n *Node) admit(body []byte, relay bool) ([]string, error) {
	var sub ledger.Submission
	if err := sub.UnmarshalBinary(body); err != nil {
		n.met.Submissions.WithLabelValues("malformed").Inc()
		return nil, &ledger.RejectError{Reason: ledger.RejectMalformed}
	}
	hash := sha256.Sum256(sub.Sealed)
	if len(sub.Envelopes) != 1 || sub.Envelopes[0].CTHash != hash {
		n.met.Submissions.WithLabelValues("malformed").Inc()
		return nil, fmt.Errorf("%w: the envelope does not sign these sealed shares", &ledger.RejectError{Reason: ledger.RejectMalformed})
	}
	e := &sub.Envelopes[0]
	r := n.view.Load().Book.Check(e)
	if r == ledger.RejectPredecessor {
		// Built on an operation still in flight (waiting here or in a block
		// whose results are not applied yet) may still be ordered; on
		// anything else it never will, and would only hold a pool slot.
		if known, err := n.mem.Knows(e.Prev); err == nil && known {
			r = ledger.Accepted
		}
	}
	switch r {
	case ledger.Accepted, ledger.RejectFutureHeight:
	case ledger.RejectPredecessor:
		if !relay && n.orphans.hold(e, body) {
			// Relayed ahead of its predecessor: it waits (orphans.go).
			n.met.Submissions.WithLabelValues("orphan").Inc()
			return nil, nil
		}
		fallthrough
	default:
		n.met.Submissions.WithLabelValues(r.Code()).Inc()
		return nil, &ledger.RejectError{Reason: r}
	}
	id := e.ID()
	ids := []string{hex.EncodeToString(id[:])}
	ostart := time.Now()
	u := n.opener.NewUpload(sub.Sealed, sub.Envelopes, ostart)
	n.met.Stage.WithLabelValues("open").Observe(time.Since(ostart).Seconds())
	if u.Sealed == nil {
		n.met.Submissions.WithLabelValues("malformed").Inc()
		return nil, &ledger.RejectError{Reason: ledger.RejectMalformed}
	}
	if u.Pieces == nil {
		// Our box does not open: the dealer's fault (or a copy under
		// another envelope). Kept and relayed (the others may open theirs),
		// not acked; once the others have it, this validator asks them for
		// its pieces (recover.go).
		n.met.Submissions.WithLabelValues("bad_box").Inc()
	}
	added, err := n.mem.Add(u, maxPendingPerAccount)
	if errors.Is(err, actors.ErrSenderBusy) || errors.Is(err, actors.ErrPoolFull) {
		n.met.Submissions.WithLabelValues("throttled").Inc()
		return nil, fmt.Errorf("%w: %w", errThrottled, err)
	}
	if err != nil {
		return nil, fmt.Errorf("node: %w", err)
	}
	if added && u.Pieces == nil {
		// Once the others have it, ask them for this validator's pieces
		// (recover.go); only for an upload the pool took, once.
		go func() {
			time.Sleep(500 * time.Millisecond)
			if cur, err := n.mem.Get(u.ID()); err == nil && cur != nil {
				n.recoverPieces(n.ctx, cur)
			}
		}()
	}
	if added {
		defer n.readmit(n.orphans.children(id))
		n.tracker.submittedNow(sub.Envelopes)
		n.met.Submissions.WithLabelValues("accepted").Inc()
		n.cons.WorkAvailable()
		if relay && n.faults.relays() {
			send := func() {
				for i, id := range n.peers {
					if i != n.self {
						n.net.Send(id, protoTx, body)
					}
				}
			}
			if !n.faults.holding(send) {
				send()
			}
		}
	}
	return ids, nil
}

// errThrottled is a request refused by a rate limit or a per-account cap
// (limits.go): the client may retry later.
var errThrottled = errors.New("throttled: too many requests; retry later")

// errBadOpen is an account opening whose signature does not verify.
var errBadOpen = errors.New("account opening not signed by the account's key")

// addOpen is the one path by which an account opening enters the mempool,
// from a client or a peer: its signature is checked here, once, so the
// mempool never holds an opening a proposer would have to drop.
func (n *Node) addOpen(o chain.Open, relay bool) error {
	if !o.Valid(n.gen.ChainID) {
		return errBadOpen
	}
	if err := n.mem.AddOpen(o); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.cons.WorkAvailable()
	if relay {
		b := append([]byte{byte(o.Kind)}, o.SignPub...)
		b = append(b, o.Sig...)
		for i, id := range n.peers {
			if i != n.self {
				n.net.Send(id, protoOpen, b)
			}
		}
	}
	return nil
}

func (n *Node) handleOpen(_ context.Context, from peer.ID, b []byte) ([]byte, error) {
	if len(b) != 1+32+64 {
		return nil, errors.New("bad open message")
	}
	if !n.opensByPeer.allow(from.String()) {
		return nil, errThrottled
	}
	o := chain.Open{Kind: ledger.AccountKind(b[0]), SignPub: append([]byte(nil), b[1:33]...), Sig: append([]byte(nil), b[33:]...)}
	return nil, n.addOpen(o, false)
}

// handleSync serves an upload's or a piece ciphertext's bytes by hash.
func (n *Node) handleSync(_ context.Context, _ peer.ID, b []byte) ([]byte, error) {
	if len(b) != 32 {
		return nil, errors.New("bad sync request")
	}
	var h [32]byte
	copy(h[:], b)
	// Pieces first: every validator fetches some each height, and the cache
	// is a map lookup where the pool is an actor round trip and a scan.
	if raw := n.pieces.Get(h); raw != nil {
		return raw, nil
	}
	if raw, err := n.mem.Raw(h); err == nil && raw != nil {
		return raw, nil
	}
	if raw, err := chain.StoredUpload(n.db, h); err == nil {
		return raw, nil
	}
	if raw, err := chain.StoredPiece(n.db, h); err == nil {
		return raw, nil
	}
	return nil, fmt.Errorf("%x not held here", h[:8])
}

// readmit admits orphans whose predecessor arrived, as relayed uploads.
func (n *Node) readmit(bodies [][]byte) {
	for _, b := range bodies {
		if _, err := n.admit(b, false); err != nil {
			n.log.Debug("orphan upload refused on readmission", "err", err)
		}
	}
}

// readmitSettled admits the orphans whose predecessor a finalized height
// made their account's last accepted operation.
func (n *Node) readmitSettled(v *chain.View) {
	n.readmit(n.orphans.settled(func(a ledger.AccountID) ([32]byte, bool) {
		acct, ok := v.Book.Account(a)
		if !ok {
			return [32]byte{}, false
		}
		return acct.LastOp, true
	}))
}
