package node

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/zkbank/zkbank/chain"
	"github.com/zkbank/zkbank/consensus"
	"github.com/zkbank/zkbank/p2p"
	"golang.org/x/time/rate"
)

// Block sync (/zkbank/blocks/1, docs/P2P.md): anyone may ask a validator or
// a full node for stored decisions, each a block with its commit
// certificate, exactly as a validator persisted them (consensus.Commit's
// encoding). Nothing in an answer is trusted: the asker verifies every
// certificate against the genesis validators and re-evaluates every block
// (chain/follow.go).
//
// Request, one byte of kind then its body:
//
//	1 (run)  from uint64      a run of decisions from height from
//	2 (keys)                  the collective public and evaluation keys
//
// A run's answer: version (1), the server's last finalized height (uint64),
// the number of decisions (uint16), then each as a uint32 length and
// consensus.EncodeMessage(&Commit{Cert, Value}). At most blockRun
// decisions, fewer once blockRunBytes is passed (never none if the server
// has the first). The keys' answer is public_keys.bin as the ceremony wrote
// it; the asker takes keys only once t validators served the same bytes.

var protoBlocks = p2p.ProtocolID("blocks", 1)

const (
	blocksReqRun  byte = 1
	blocksReqKeys byte = 2
	blocksVersion byte = 1
	// blockRun is how many decisions one answer carries (as serveCommit).
	blockRun = serveRun
	// blockRunBytes bounds an answer's size: certificates carry extensions
	// with decryption shares, megabytes each with many batches.
	blockRunBytes = 32 << 20
	// blocksFrame is the protocol's frame cap (the keys are the largest
	// answer) and blocksTimeout its exchange timeout.
	blocksFrame   = p2p.MaxFrameCeiling
	blocksTimeout = 2 * time.Minute
)

// Rates at which one peer may ask this node: runs of decisions (a run is
// up to blockRunBytes; a full node catching up asks about one a second, and
// one a second per peer once caught up), and the keys (tens of megabytes,
// asked once per full node's life).
var (
	blockRunRate, blockRunBurst = rate.Limit(4), 8
	keysRate, keysBurst         = rate.Every(10 * time.Second), 3
)

// blocksLimits are the p2p limits of the blocks protocol; both ends use them.
var blocksLimits = p2p.ProtocolLimits{MaxFrameBytes: blocksFrame, Timeout: blocksTimeout, MaxRequestBytes: smallRequest}

func encodeRunRequest(from uint64) []byte {
	return binary.BigEndian.AppendUint64([]byte{blocksReqRun}, from)
}

// blockServer holds what serving the blocks protocol needs: per-peer
// rates, a node-wide bound on answers being built (peer ids are free, so
// per-peer rates alone bound nothing), and the public keys read once.
// Answers being written count against the p2p resource manager's memory
// limits until the asker has read them (p2p.Host.serve).
type blockServer struct {
	runs, keys *limiter
	building   chan struct{} // one token per answer being built

	keysMu  sync.Mutex
	keysRaw []byte
}

// maxBuilding bounds the answers one node builds at once.
const maxBuilding = 4

func newBlockServer() *blockServer {
	return &blockServer{runs: newLimiter(blockRunRate, blockRunBurst), keys: newLimiter(keysRate, keysBurst),
		building: make(chan struct{}, maxBuilding)}
}

// enter takes a building token, or reports the node busy.
func (b *blockServer) enter() bool {
	select {
	case b.building <- struct{}{}:
		return true
	default:
		return false
	}
}

func (b *blockServer) leave() { <-b.building }

// publicKeys reads the keys once they exist (a full node fetches its own
// after it starts serving); every answer shares the same bytes.
func (b *blockServer) publicKeys(path string) ([]byte, error) {
	b.keysMu.Lock()
	defer b.keysMu.Unlock()
	if b.keysRaw == nil {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		b.keysRaw = raw
	}
	return b.keysRaw, nil
}

// handleBlocks serves stored decisions and the public keys to any peer.
func (n *Node) handleBlocks(_ context.Context, from peer.ID, b []byte) ([]byte, error) {
	if len(b) == 0 {
		return nil, errors.New("empty blocks request")
	}
	switch b[0] {
	case blocksReqRun:
		if len(b) != 9 {
			return nil, errors.New("bad blocks request")
		}
		if !n.blocks.runs.allow(from.String()) || !n.blocks.enter() {
			return nil, errThrottled
		}
		defer n.blocks.leave()
		return n.serveRun(binary.BigEndian.Uint64(b[1:]))
	case blocksReqKeys:
		if len(b) != 1 {
			return nil, errors.New("bad keys request")
		}
		if !n.blocks.keys.allow(from.String()) {
			return nil, errThrottled
		}
		raw, err := n.blocks.publicKeys(n.home.PublicKeys())
		if err != nil {
			return nil, errors.New("no public keys here")
		}
		return raw, nil
	}
	return nil, fmt.Errorf("unknown blocks request kind %d", b[0])
}

// serveRun answers a run of stored decisions from height from.
func (n *Node) serveRun(from uint64) ([]byte, error) {
	var last uint64
	if v := n.view.Load(); v != nil {
		last = v.Height
	}
	var msgs [][]byte
	size := 0
	for h := max(from, 1); h <= last && len(msgs) < blockRun; h++ {
		cm, err := chain.StoredCommit(n.db, h)
		if err != nil {
			if len(msgs) == 0 {
				return nil, fmt.Errorf("height %d not served here: %w", h, err)
			}
			break
		}
		msg := consensus.EncodeMessage(cm)
		if len(msgs) > 0 && size+4+len(msg) > blockRunBytes {
			break
		}
		msgs = append(msgs, msg)
		size += 4 + len(msg)
	}
	return encodeRun(last, msgs), nil
}

// encodeRun is a run's answer: the server's last height and the encoded
// decisions.
func encodeRun(last uint64, msgs [][]byte) []byte {
	out := []byte{blocksVersion}
	out = binary.BigEndian.AppendUint64(out, last)
	out = binary.BigEndian.AppendUint16(out, uint16(len(msgs)))
	for _, m := range msgs {
		out = binary.BigEndian.AppendUint32(out, uint32(len(m)))
		out = append(out, m...)
	}
	return out
}

// decodeRun decodes a run's answer: the server's last height and its
// decisions (not verified: FollowCommit does).
func decodeRun(b []byte) (last uint64, commits []*consensus.Commit, err error) {
	if len(b) < 11 || b[0] != blocksVersion {
		return 0, nil, errors.New("blocks answer: bad header")
	}
	last = binary.BigEndian.Uint64(b[1:9])
	k := int(binary.BigEndian.Uint16(b[9:11]))
	if k > blockRun {
		return 0, nil, fmt.Errorf("blocks answer: %d decisions, at most %d", k, blockRun)
	}
	b = b[11:]
	for i := 0; i < k; i++ {
		if len(b) < 4 {
			return 0, nil, errors.New("blocks answer: truncated")
		}
		l := int(binary.BigEndian.Uint32(b))
		if l > len(b)-4 {
			return 0, nil, errors.New("blocks answer: truncated decision")
		}
		msg, err := consensus.DecodeMessage(b[4 : 4+l])
		if err != nil {
			return 0, nil, fmt.Errorf("blocks answer: decision %d: %w", i, err)
		}
		cm, ok := msg.(*consensus.Commit)
		if !ok || cm.Cert == nil {
			return 0, nil, fmt.Errorf("blocks answer: decision %d is not a commit", i)
		}
		commits = append(commits, cm)
		b = b[4+l:]
	}
	if len(b) != 0 {
		return 0, nil, errors.New("blocks answer: trailing bytes")
	}
	return last, commits, nil
}
