package node

import (
	"time"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/ledger"
)

// Queries the API answers from the published view, the store and the
// tracker; none goes through the consensus actor except the round number.

func (n *Node) queryEngine() *ledger.Engine    { return <-n.engines }
func (n *Node) releaseEngine(e *ledger.Engine) { n.engines <- e }

// Status reports the node's view for the API.
func (n *Node) Status() api.Status {
	st := api.Status{Chain: n.gen.ChainID, Node: n.name, ValidatorIndex: n.self, Validators: n.com.N, Threshold: n.com.T}
	st.Peers = len(n.host.Peers())
	v := n.view.Load()
	if v == nil {
		return st
	}
	st.Ready = true
	st.Height = v.Height
	n.epochStatus(&st, v)
	st.AppliedHeight = v.Book.Height()
	st.WorkCredits = append([]int64(nil), v.Credits...)
	if r, err := n.cons.Round(); err == nil {
		st.Round = uint32(r.Round)
	}
	c, rj, tps, fin := n.tracker.rates()
	st.CommittedTransfers, st.RejectedTransfers, st.TransfersPerSecond = c, rj, tps
	st.LastFinalityMillis = float64(fin) / float64(time.Millisecond)
	if size, err := n.mem.Size(); err == nil {
		st.Mempool = size
	}
	return st
}

// recomposed returns the recomposed state of a shard at a height, computed
// once and shared by every balance query of that height.
func (n *Node) recomposed(eng *ledger.Engine, shard uint32, h uint64, st *rlwe.Ciphertext) (*rlwe.Ciphertext, error) {
	key := recKey{shard, h}
	n.recMu.Lock()
	if e, ok := n.recs[key]; ok && e.state == st {
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
	if n.recs == nil || len(n.recs) >= 32 {
		n.recs = map[recKey]recEntry{}
	}
	n.recs[key] = recEntry{state: st, sum: sum}
	return sum, nil
}

type recKey struct {
	shard uint32
	h     uint64
}

type recEntry struct {
	state, sum *rlwe.Ciphertext
}
