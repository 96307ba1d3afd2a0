package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/chain"
	"github.com/zkbank/zkbank/consensus"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/p2p"
)

// Validator-set changes on the node's side (docs/PROTOCOL.md, "Validator-set
// changes"; the chain's rules are chain/epoch.go). The committee of each
// epoch is the genesis committee changed by the committed changes the node
// keeps in its home (genesis.EpochsFile). Every node runs one epoch at a
// time: when the last height of its epoch is finalized, it stops, the old
// and the new committee reshare the key (node/reshare.go) to the new
// members, the node records the change and starts again with the new
// committee (Run's loop). A node that is not in the new committee records
// the change and follows the chain as a full node; a member that leaves
// deletes its key share.

// errEpochSwitch: the node's epoch ended; Run starts it again.
var errEpochSwitch = errors.New("the validator set changed")

// epochState is the node's view of the committee history.
type epochState struct {
	gen0   *genesis.Genesis // as in the genesis file
	epochs []genesis.Epoch  // committed changes, in order
}

// epochsPath is where home keeps the committed changes.
func epochsPath(h Home) string { return filepath.Join(h.Dir, genesis.EpochsFile) }

// loadEpochs reads home's genesis and committed changes.
func loadEpochs(h Home) (*epochState, error) {
	g, err := genesis.Load(h.Genesis())
	if err != nil {
		return nil, err
	}
	e, err := genesis.LoadEpochs(g, epochsPath(h))
	if err != nil {
		return nil, err
	}
	return &epochState{gen0: g, epochs: e}, nil
}

// current is the genesis as the current committee sees it.
func (e *epochState) current() *genesis.Genesis { return e.gen0.At(e.epochs) }

// number is the current epoch (0: genesis).
func (e *epochState) number() uint64 {
	_, _, n := e.gen0.Committee(e.epochs)
	return n
}

// start is the first height of the current epoch (0 for genesis).
func (e *epochState) start() uint64 {
	if len(e.epochs) == 0 {
		return 0
	}
	return e.epochs[len(e.epochs)-1].Start
}

// previous is the validator set of the epoch before the current one (nil
// at genesis).
func (e *epochState) previous() (*consensus.ValidatorSet, error) {
	if len(e.epochs) == 0 {
		return nil, nil
	}
	return genesisValidators(e.gen0.At(e.epochs[:len(e.epochs)-1]))
}

// verifyChange is chain.Config.VerifyChange: the change must start the next
// epoch and be signed by a quorum of the current committee.
func (e *epochState) verifyChange(raw []byte) error {
	c, err := genesis.DecodeChange(raw)
	if err != nil {
		return err
	}
	if !bytes.Equal(raw, c.Encode()) {
		// One form per change: every node stores and serves the same bytes.
		return fmt.Errorf("%w: the validator-set change is not in its canonical encoding", genesis.ErrInvalid)
	}
	cur := e.current()
	return c.Verify(e.gen0, cur.Validators, e.number())
}

// carryCredits maps work credits of the committee before the current one
// onto the current committee by consensus key (a newcomer starts at 0);
// rs's credits are remapped only when rs is the last height of the
// previous epoch.
func (e *epochState) carryCredits(rs *chain.Restored) {
	if len(e.epochs) == 0 || rs.Finalized+1 != e.start() {
		return
	}
	prev := e.gen0.At(e.epochs[:len(e.epochs)-1]).Validators
	cur := e.current().Validators
	if len(rs.Credits) != len(prev) {
		return
	}
	out := make([]int64, len(cur))
	for k, v := range cur {
		for i, o := range prev {
			if o.ConsensusPub == v.ConsensusPub {
				out[k] = rs.Credits[i]
			}
		}
	}
	rs.Credits = out
}

// changeSlot holds the one validator-set change submitted to this node and
// waiting to be proposed (chain.Config.ProposeChange).
type changeSlot struct {
	mu  sync.Mutex
	raw []byte
}

func (s *changeSlot) set(raw []byte) {
	s.mu.Lock()
	s.raw = raw
	s.mu.Unlock()
}

func (s *changeSlot) get() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.raw
}

// switchDue reports whether v is the last height of the epoch.
func switchDue(v *chain.View) bool {
	return v != nil && v.Pending != nil && v.Height+1 >= v.Pending.Start
}

// switchEpoch hands the chain to the committee of p after the last height
// of this node's epoch: it reshares the key if this node is in the old or
// the new committee, records the change in home and returns errEpochSwitch
// (Run starts the node again with the new committee). ck is this node's
// consensus key; oldShare its key share (nil on a full node).
func (n *Node) switchEpoch(ctx context.Context, p *chain.PendingChange, ck ed25519.PrivateKey, oldShare *ledger.KeyShare) error {
	c, err := genesis.DecodeChange(p.Raw)
	if err != nil {
		return fmt.Errorf("the committed validator-set change: %w", err)
	}
	next := append(append([]genesis.Epoch(nil), n.epochs.epochs...), genesis.Epoch{Change: c, Start: p.Start})
	myPub := hex.EncodeToString(ck.Public().(ed25519.PublicKey))
	spec, self, err := n.reshareSpecFor(c, p, myPub)
	if err != nil {
		return err
	}
	log := n.log.With("epoch", c.Epoch, "switch_height", p.Start)
	if self < 0 {
		// A leaving validator that deals nothing takes no part; it drops its
		// key share like one that does.
		log.Info("validator-set change: this node takes no part in the resharing; following the new committee", "leaving", oldShare != nil)
		return n.recordEpochs(next, nil, oldShare != nil)
	}
	me := spec.Members[self]
	if me.Old >= 0 && oldShare == nil {
		// An old validator that missed an earlier resharing: nothing to deal.
		log.Error("validator-set change: this validator holds no key share of the current committee; it takes no part in the resharing")
		return n.recordEpochs(next, nil, false)
	}
	if me.New >= 0 && me.Old < 0 && n.keys == nil {
		return fmt.Errorf("validator-set change: joining the committee needs the public keys (%s)", n.home.PublicKeys())
	}
	// The participants may use the resharing protocol with each other, and
	// newcomers are dialed at the addresses the change publishes.
	peers := make([]peer.ID, len(spec.Members))
	for i, m := range spec.Members {
		peers[i] = m.Peer
	}
	n.gate.expect(peers)
	defer n.gate.expect(nil)
	for _, v := range c.Validators {
		n.dialValidator(ctx, v)
	}
	log.Info("validator-set change: resharing the key to the new committee", "old", fmt.Sprintf("%d-of-%d", spec.Old.T, spec.Old.N),
		"new", fmt.Sprintf("%d-of-%d", spec.New.T, spec.New.N), "old_index", me.Old, "new_index", me.New)
	start := time.Now()
	rctx, cancel := context.WithTimeout(ctx, reshareTimeout)
	ks, err := runReshare(rctx, n.host, spec, self, ck, oldShare, log)
	cancel()
	if err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if n.validatorsBest.Load() > p.Start {
			// The others moved on without this node: it follows as a full
			// node until a later change re-deals to it.
			log.Error("validator-set change: the resharing went on without this node; following the chain as a full node", "err", err)
			return n.recordEpochs(next, nil, me.New < 0)
		}
		log.Error("validator-set change: resharing failed; trying again", "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Second):
		}
		return fmt.Errorf("%w: resharing failed: %w", errEpochSwitch, err)
	}
	log.Info("validator-set change: key reshared", "took", time.Since(start).Round(time.Millisecond), "member", ks != nil)
	return n.recordEpochs(next, ks, ks == nil && me.Old >= 0)
}

// reshareTimeout bounds one resharing attempt.
const reshareTimeout = 10 * time.Minute

// recordEpochs keeps the outcome of a change: the new key share (if any),
// the removal of the old one for a leaving member, then the committed
// changes; it returns errEpochSwitch.
func (n *Node) recordEpochs(next []genesis.Epoch, ks *ledger.KeyShare, leaving bool) error {
	if n.self >= 0 && n.db != nil {
		// The consensus records are the old committee's (its indexes, its
		// votes up to the switch): the new machine starts from none.
		if err := n.db.TruncateBefore(math.MaxUint64); err != nil {
			return fmt.Errorf("clearing the consensus WAL at the validator-set change: %w", err)
		}
	}
	if ks != nil || leaving {
		if err := saveReshared(n.home, n.keys, ks); err != nil {
			return err
		}
	}
	if err := genesis.SaveEpochs(epochsPath(n.home), next); err != nil {
		return fmt.Errorf("recording the validator-set change: %w", err)
	}
	return errEpochSwitch
}

// reshareSpecFor is the resharing of change c (committed as p) between
// this node's current committee and c's, and this node's position in it
// (-1 if it takes no part). Dealers are the first T old members that stay
// (then leaving ones, if fewer than T stay); every old member that stays
// commits too; a leaving member that is not a dealer takes no part, so a
// dead validator can be removed.
func (n *Node) reshareSpecFor(c *genesis.Change, p *chain.PendingChange, myPub string) (*reshareSpec, int, error) {
	cur := n.gen.Validators
	newCom, err := ledger.NewCommittee(len(c.Validators), c.Threshold)
	if err != nil {
		return nil, -1, err
	}
	newIndex := func(pub string) int {
		for k, v := range c.Validators {
			if v.ConsensusPub == pub {
				return k
			}
		}
		return -1
	}
	dealers := c.Dealers(cur, n.com.T)
	isDealer := map[int]bool{}
	for _, j := range dealers {
		isDealer[j] = true
	}
	spec := &reshareSpec{Params: n.p, Old: n.com, New: newCom, Dealers: dealers, Keys: n.keys,
		Session: fmt.Appendf(nil, "%s/epoch/%d/height/%d", n.gen.ChainID, c.Epoch, p.Start)}
	self := -1
	inOld := map[string]bool{}
	for i, v := range cur {
		pub, err := v.PublicKey()
		if err != nil {
			return nil, -1, err
		}
		spec.OldPubs = append(spec.OldPubs, pub)
		inOld[v.ConsensusPub] = true
		k := newIndex(v.ConsensusPub)
		if k < 0 && !isDealer[i] {
			continue
		}
		spec.Committers = append(spec.Committers, i)
		id, err := peer.Decode(v.PeerID)
		if err != nil {
			return nil, -1, err
		}
		if v.ConsensusPub == myPub {
			self = len(spec.Members)
		}
		spec.Members = append(spec.Members, reshareMember{Peer: id, Old: i, New: k})
	}
	for k, v := range c.Validators {
		if inOld[v.ConsensusPub] {
			continue
		}
		id, err := peer.Decode(v.PeerID)
		if err != nil {
			return nil, -1, err
		}
		if v.ConsensusPub == myPub {
			self = len(spec.Members)
		}
		spec.Members = append(spec.Members, reshareMember{Peer: id, Old: -1, New: k})
	}
	return spec, self, nil
}

// keyShareFits reports whether home's key share belongs to validator self
// of com (a validator that missed a resharing holds one of an earlier
// committee).
func keyShareFits(p *ledger.Params, h Home, self int, com *ledger.Committee) bool {
	sb, err := os.ReadFile(h.KeyShare())
	if err != nil {
		return false
	}
	// Only the share: the public keys (tens of MB) are loaded once, later.
	ks, err := p.DecodeKeyShare(sb)
	return err == nil && ks.Index == self && ks.N == com.N && ks.T == com.T
}

// epochStatus fills the status' epoch fields.
func (n *Node) epochStatus(st *api.Status, v *chain.View) {
	if n.epochs != nil {
		st.Epoch, st.EpochStart = n.epochs.number(), n.epochs.start()
	}
	if v != nil && v.Pending != nil {
		st.SwitchHeight = v.Pending.Start
	}
}

// ValidatorEntry is the committee entry of the node in home (index 0, power
// 1): its peer id, listen addresses, consensus key and API, as a
// validator-set change lists it.
func ValidatorEntry(home, name string) (genesis.Validator, error) {
	h := Home{Dir: home}
	id, err := p2p.LoadIdentity(h.NodeKey())
	if err != nil {
		return genesis.Validator{}, fmt.Errorf("%s: %w", h.NodeKey(), err)
	}
	pid, err := peer.IDFromPrivateKey(id)
	if err != nil {
		return genesis.Validator{}, err
	}
	ck, err := loadOrCreateConsensusKey(h.ConsensusKey())
	if err != nil {
		return genesis.Validator{}, err
	}
	lc, err := loadLocalConfig(h)
	if err != nil {
		return genesis.Validator{}, err
	}
	return genesis.Validator{Name: name, PeerID: pid.String(), P2PAddrs: lc.P2PAddrs, ConsensusPub: hex.EncodeToString(ck.Public().(ed25519.PublicKey)), API: lc.API, Power: 1}, nil
}

// SignChange signs c with the consensus key of the validator in home, as
// its index in committee cur.
func SignChange(home string, c *genesis.Change, cur []genesis.Validator) (int, error) {
	path := Home{Dir: home}.ConsensusKey()
	if _, err := os.Stat(path); err != nil {
		return -1, fmt.Errorf("no consensus key: %w", err)
	}
	ck, err := loadOrCreateConsensusKey(path)
	if err != nil {
		return -1, err
	}
	pub := hex.EncodeToString(ck.Public().(ed25519.PublicKey))
	for _, v := range cur {
		if v.ConsensusPub == pub {
			c.Sign(v.Index, ck)
			return v.Index, nil
		}
	}
	return -1, fmt.Errorf("%s: its consensus key is no validator's of the current committee", home)
}

// SignChangeInHome signs c with the consensus key of the validator in home,
// as its index in the committee home is in (its genesis and recorded
// changes).
func SignChangeInHome(home string, c *genesis.Change) (int, error) {
	es, err := loadEpochs(Home{Dir: home})
	if err != nil {
		return -1, err
	}
	if c.ChainID != es.gen0.ChainID {
		return -1, fmt.Errorf("the change is for chain %q, %s is on %q", c.ChainID, home, es.gen0.ChainID)
	}
	if c.Epoch != es.number()+1 {
		return -1, fmt.Errorf("the change starts epoch %d, %s is in epoch %d (the next is %d)", c.Epoch, home, es.number(), es.number()+1)
	}
	return SignChange(home, c, es.current().Validators)
}
