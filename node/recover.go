package node

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/zkbank/zkbank/chain"
	"github.com/zkbank/zkbank/ledger"
)

// Piece recovery. A dealer may seal a box that does not open for some
// validator while the others open theirs. That validator then asks the
// co-holders of its pieces for them and keeps each only if it matches the
// dealer's public commitment (ledger.Params.VerifyPiece): a co-holder
// cannot hand it a shifted piece. With its pieces it can encrypt and attest
// the transfer's group like every other holder, so a dealer's bad boxes do
// not leave a group short of holders.

// recoverTimeout bounds one recovery: every co-holder is asked at once, and
// whatever answered by then counts. It is short because a recovery for a
// proposal runs before the proposal reaches consensus.
const recoverTimeout = 2 * time.Second

// errNotValidator refuses piece requests from peers outside the committee.
var errNotValidator = errors.New("pieces are served to validators only")

// handlePieces serves a validator the pieces of one upload (by transfer id)
// that both this validator and it hold: the ones the dealer meant it to
// have. Nobody else gets anything.
func (n *Node) handlePieces(_ context.Context, from peer.ID, b []byte) ([]byte, error) {
	if !n.piecesByPeer.allow(from.String()) {
		return nil, errThrottled
	}
	req := -1
	for i, id := range n.peers {
		if id == from && i != n.self {
			req = i
		}
	}
	if req < 0 {
		return nil, errNotValidator
	}
	if len(b) != 32 {
		return nil, errors.New("bad pieces request")
	}
	var id [32]byte
	copy(id[:], b)
	u, err := n.mem.Get(id)
	if err != nil || u == nil || u.Pieces == nil {
		return nil, fmt.Errorf("no pieces of %x here", id[:8])
	}
	out := map[int]*ledger.Piece{}
	for k, pc := range u.Pieces {
		if n.opener.Sharing.Holds(req, k) {
			out[k] = pc
		}
	}
	return ledger.MarshalPieces(out), nil
}

// recoverPieces gets this validator's pieces of u from its co-holders when
// its own box did not open, and hands them to the mempool. Every other
// validator is asked at once (so one that hangs costs nothing), one
// recovery per transfer runs at a time, and a transfer whose recovery failed
// recently is not retried. It reports whether it got every piece it holds.
func (n *Node) recoverPieces(ctx context.Context, u *chain.Upload) bool {
	if u == nil || u.Pieces != nil || u.Sealed == nil || len(u.Envs) != 1 {
		return false
	}
	id := u.ID()
	done, first := n.recovering.begin(id)
	if !first {
		select {
		case <-done:
		case <-ctx.Done():
		}
		return false
	}
	defer n.recovering.end(id)
	if !n.recoverFailed.allow(hex.EncodeToString(id[:])) {
		return false
	}
	want := n.opener.Sharing.Held(n.self)
	ctx, cancel := context.WithTimeout(ctx, recoverTimeout)
	defer cancel()
	type answer struct {
		v  int
		ps map[int]*ledger.Piece
	}
	answers := make(chan answer, len(n.peers))
	asked := 0
	for v, pid := range n.peers {
		if v == n.self {
			continue
		}
		asked++
		go func() {
			raw, err := n.net.Host.Request(ctx, pid, protoPieces, id[:])
			if err != nil {
				answers <- answer{v, nil}
				return
			}
			ps, err := n.p.UnmarshalPieces(raw)
			if err != nil {
				ps = nil
			}
			answers <- answer{v, ps}
		}()
	}
	got := map[int]*ledger.Piece{}
	for i := 0; i < asked && len(got) < len(want); i++ {
		var a answer
		select {
		case a = <-answers:
		case <-ctx.Done():
			i = asked
			continue
		}
		for k, pc := range a.ps {
			if _, have := got[k]; have || !n.opener.Sharing.Holds(n.self, k) || !n.opener.Sharing.Holds(a.v, k) {
				continue
			}
			if n.p.VerifyPiece(u.Sealed, k, pc) == nil {
				got[k] = pc
			}
		}
	}
	if len(got) != len(want) {
		n.log.Debug("could not recover the pieces of an upload whose box did not open", "transfer", hex.EncodeToString(id[:8]), "got", len(got), "want", len(want))
		n.met.Fetches.WithLabelValues("unrecovered").Inc()
		return false
	}
	if err := n.mem.SetPieces(id, got); err != nil {
		n.log.Warn("mempool refused recovered pieces", "err", err)
		return false
	}
	n.met.Fetches.WithLabelValues("recovered").Inc()
	return true
}
