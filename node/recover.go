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

// recoverTimeout bounds one recovery (all co-holders asked in turn).
const recoverTimeout = 5 * time.Second

// errNotValidator refuses piece requests from peers outside the committee.
var errNotValidator = errors.New("pieces are served to validators only")

// handlePieces serves a validator the pieces of one upload (by transfer id)
// that both this validator and it hold: the ones the dealer meant it to
// have. Nobody else gets anything.
func (n *Node) handlePieces(_ context.Context, from peer.ID, b []byte) ([]byte, error) {
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
// its own box did not open, and hands them to the mempool. It reports
// whether it got every piece it holds.
func (n *Node) recoverPieces(ctx context.Context, u *chain.Upload) bool {
	if u == nil || u.Pieces != nil || u.Sealed == nil || len(u.Envs) != 1 {
		return false
	}
	id := u.ID()
	want := n.opener.Sharing.Held(n.self)
	got := map[int]*ledger.Piece{}
	ctx, cancel := context.WithTimeout(ctx, recoverTimeout)
	defer cancel()
	for v, pid := range n.peers {
		if v == n.self || len(got) == len(want) || ctx.Err() != nil {
			continue
		}
		c, cancelPeer := context.WithTimeout(ctx, perPeerTimeout)
		raw, err := n.net.Host.Request(c, pid, protoPieces, id[:])
		cancelPeer()
		if err != nil {
			continue
		}
		ps, err := n.p.UnmarshalPieces(raw)
		if err != nil {
			continue
		}
		for k, pc := range ps {
			if _, have := got[k]; have || !n.opener.Sharing.Holds(n.self, k) || !n.opener.Sharing.Holds(v, k) {
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
