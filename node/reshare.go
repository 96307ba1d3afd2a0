package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/p2p"
)

// Key resharing over the network: the verified resharing of ledger/reshare.go
// (docs/PROTOCOL.md, "Resharing") between the old and the new validators of a
// validator-set change. Public messages go to every participant; each signed
// deal goes only to its recipient, over the authenticated and encrypted
// libp2p stream to that recipient's peer id. A node accepts a message only
// from the peer the session assigns to the claimed sender (as an old member
// for deals and commitments, as a new member for acknowledgements and
// checks), and keeps the first message of each kind from each sender.
//
//	deal     dealer (old member in Q) -> each new member: a ledger.ReshareDeal,
//	         signed with the dealer's consensus key
//	ack      new member -> all, once it holds every dealer's deal
//	commit   old member -> all: a ledger.ReshareCommit (signed), carrying the
//	         transcript hash of the acknowledgements
//	check    new member -> all: a ledger.ReshareCheck
//	done     all -> all: SHA-256 of the commitments and checks it judged and
//	         its verdict; all must agree
//
// A bad re-deal fails the resharing with a *ledger.ReshareFault naming the
// dealer (or the lying new member); no new key share is returned then.

var protoReshare = p2p.ProtocolID("reshare", 1)

// reshareLimits are the stream limits of protoReshare: a dealer's commitment
// message is (1 + N') full-level QP polynomials (about 0.9 MiB each).
var reshareLimits = p2p.ProtocolLimits{MaxFrameBytes: 96 << 20, Timeout: 5 * time.Minute}

const (
	rsMsgDeal   byte = 1
	rsMsgAck    byte = 2
	rsMsgCommit byte = 3
	rsMsgCheck  byte = 4
	rsMsgDone   byte = 5
)

// reshareMember is one participant: its peer and its index in the old and
// in the new committee (-1 where it is not a member).
type reshareMember struct {
	Peer     peer.ID
	Old, New int
}

// reshareSpec is the agreed description of one resharing; every participant
// must hold the same one (the validator-set change that triggers it fixes
// it).
type reshareSpec struct {
	Params   *ledger.Params
	Old, New *ledger.Committee
	// Dealers is Q: Old.T old members that re-deal.
	Dealers []int
	// Committers are the old members that must commit to their shares
	// (Q among them); more than Q lets a wrong commitment be attributed.
	Committers []int
	Keys       *ledger.PublicKeys
	// Session is unique per resharing (chain id and height of the change).
	Session []byte
	Members []reshareMember
	// OldPubs are the old committee's consensus keys, by old index: deals
	// and commitments are signed with them.
	OldPubs []ed25519.PublicKey
}

// reshareFaults is fault injection for tests of a byzantine dealer, keyed by
// peer id. Nothing outside _test.go files registers any.
type reshareFaults struct {
	// corruptDeals may alter this dealer's signed deals before they are
	// sent (re-signing what it alters, as a malicious dealer would).
	corruptDeals func(r *ledger.Reshare, deals []*ledger.ReshareDeal, sign ledger.DealSigner)
}

var reshareFaultsByPeer peerFaults[reshareFaults]

type reshareInbox struct {
	inbox
	deals   map[int]*ledger.ReshareDeal // by dealer (old index)
	acks    map[int]*ledger.ReshareAck  // by new index
	commits map[int]*ledger.ReshareCommit
	checks  map[int]*ledger.ReshareCheck
	done    map[int][]byte       // by member position
	equiv   *ledger.ReshareFault // a dealer that signed two different deals for us
}

// runReshare takes part in a resharing as spec.Members[self]: share is its
// old key share (nil if it is not an old member) and priv its consensus key.
// It returns the new key share, or nil for a member that leaves.
func runReshare(ctx context.Context, host *p2p.Host, spec *reshareSpec, self int, priv ed25519.PrivateKey, share *ledger.KeyShare, log *slog.Logger) (*ledger.KeyShare, error) {
	if self < 0 || self >= len(spec.Members) {
		return nil, fmt.Errorf("reshare: member %d of %d", self, len(spec.Members))
	}
	me := spec.Members[self]
	if me.Old >= 0 {
		if share == nil || share.Index != me.Old {
			return nil, fmt.Errorf("reshare: old member %d has no key share of its own", me.Old)
		}
		if me.Old >= len(spec.OldPubs) || !spec.OldPubs[me.Old].Equal(priv.Public()) {
			return nil, fmt.Errorf("reshare: this node's consensus key is not old validator %d's", me.Old)
		}
	}
	var bind []byte
	for _, pk := range spec.OldPubs {
		bind = append(bind, pk...)
	}
	for _, m := range spec.Members {
		bind = fmt.Appendf(bind, "%s/%d/%d;", m.Peer, m.Old, m.New)
	}
	r, err := ledger.NewReshare(spec.Params, spec.Old, spec.New, spec.Dealers, spec.Keys.PK, spec.Session, bind)
	if err != nil {
		return nil, err
	}
	committers := map[int]bool{}
	for _, j := range append(append([]int(nil), spec.Dealers...), spec.Committers...) {
		committers[j] = true
	}
	sign, verify := ledger.Ed25519DealAuth(priv, spec.OldPubs)
	byPeer := map[peer.ID]int{}
	oldPeer := map[int]peer.ID{}
	newPeer := map[int]peer.ID{}
	for i, m := range spec.Members {
		byPeer[m.Peer] = i
		if m.Old >= 0 {
			oldPeer[m.Old] = m.Peer
		}
		if m.New >= 0 {
			newPeer[m.New] = m.Peer
		}
	}
	if len(newPeer) != spec.New.N {
		return nil, fmt.Errorf("reshare: %d of %d new members have a peer", len(newPeer), spec.New.N)
	}
	for j := range committers {
		if _, ok := oldPeer[j]; !ok {
			return nil, fmt.Errorf("reshare: old validator %d must commit but has no peer", j)
		}
	}
	p := spec.Params
	in := &reshareInbox{
		deals: map[int]*ledger.ReshareDeal{}, acks: map[int]*ledger.ReshareAck{},
		commits: map[int]*ledger.ReshareCommit{}, checks: map[int]*ledger.ReshareCheck{},
		done: map[int][]byte{}, inbox: newInbox(),
	}
	err = host.SetHandler(protoReshare, func(_ context.Context, from peer.ID, payload []byte) ([]byte, error) {
		i, ok := byPeer[from]
		if !ok || len(payload) < 1 {
			return nil, errors.New("not a participant of this resharing")
		}
		m := spec.Members[i]
		kind, body := payload[0], payload[1:]
		switch kind {
		case rsMsgDeal:
			d, err := p.DecodeReshareDeal(body)
			if err != nil || m.Old < 0 || d.From != m.Old || d.To != me.New {
				return nil, errors.New("bad deal")
			}
			if err := r.VerifyDeal(d, verify); err != nil {
				return nil, errors.New("deal signature does not verify")
			}
			in.mu.Lock()
			defer in.mu.Unlock()
			if old, ok := in.deals[d.From]; !ok {
				in.deals[d.From] = d
			} else if !old.Share.Equal(&d.Share.Poly) && in.equiv == nil {
				in.equiv = &ledger.ReshareFault{Dealer: d.From, Recipient: -1, Reason: fmt.Sprintf("signed two different deals for new validator %d", me.New)}
			}
		case rsMsgAck:
			a, err := ledger.DecodeReshareAck(body)
			if err != nil || m.New < 0 || a.From != m.New {
				return nil, errors.New("bad acknowledgement")
			}
			keepFirst(&in.mu, in.acks, a.From, a)
		case rsMsgCommit:
			c, err := p.DecodeReshareCommit(body)
			if err != nil || m.Old < 0 || c.From != m.Old {
				return nil, errors.New("bad commitment")
			}
			keepFirst(&in.mu, in.commits, c.From, c)
		case rsMsgCheck:
			c, err := p.DecodeReshareCheck(body)
			if err != nil || m.New < 0 || c.From != m.New {
				return nil, errors.New("bad check message")
			}
			keepFirst(&in.mu, in.checks, c.From, c)
		case rsMsgDone:
			if len(body) < 33 || len(body) > 4096 {
				return nil, errors.New("bad done message")
			}
			keepFirst(&in.mu, in.done, i, append([]byte(nil), body...))
		default:
			return nil, errors.New("unknown resharing message")
		}
		in.poke()
		return []byte{1}, nil
	})
	if err != nil {
		return nil, err
	}
	defer host.RemoveHandler(protoReshare)

	send := func(to peer.ID, kind byte, body []byte) error {
		return requestRetryOn(ctx, host, protoReshare, to, append([]byte{kind}, body...))
	}
	peers := make([]peer.ID, len(spec.Members))
	for i, m := range spec.Members {
		peers[i] = m.Peer
	}
	sendAll := func(kind byte, body []byte) error {
		return broadcast(ctx, host, protoReshare, peers, self, kind, body)
	}
	wait := func(what string, limit time.Duration, have func() []int) error {
		return in.wait(ctx, "reshare: waiting for "+what+": missing", limit, have)
	}
	missingOf := func(want []int, have func(int) bool) []int {
		var out []int
		for _, x := range want {
			if !have(x) {
				out = append(out, x)
			}
		}
		return out
	}
	fail := func(err error) (*ledger.KeyShare, error) {
		var f *ledger.ReshareFault
		if errors.As(err, &f) {
			log.Error("key resharing FAILED: a validator is faulty; no new key share kept", "old_validator", f.Dealer, "new_validator", f.Recipient, "err", f.Error())
		}
		return nil, err
	}
	newAll := make([]int, spec.New.N)
	for k := range newAll {
		newAll[k] = k
	}
	var committerList []int
	for j := 0; j < spec.Old.N; j++ {
		if committers[j] {
			committerList = append(committerList, j)
		}
	}

	// Deal.
	var dealer *ledger.ReshareDealer
	if me.Old >= 0 {
		if dealer, err = r.NewDealer(share); err != nil {
			return nil, err
		}
	}
	isDealer := false
	for _, j := range spec.Dealers {
		isDealer = isDealer || j == me.Old
	}
	if isDealer {
		log.Info("key resharing: dealing", "old", fmt.Sprintf("%d-of-%d", spec.Old.T, spec.Old.N), "new", fmt.Sprintf("%d-of-%d", spec.New.T, spec.New.N))
		deals, err := dealer.Deals(sign)
		if err != nil {
			return nil, err
		}
		if fl := reshareFaultsByPeer.get(host.ID()); fl != nil && fl.corruptDeals != nil {
			fl.corruptDeals(r, deals, sign)
		}
		for _, d := range deals {
			if d.To == me.New {
				in.mu.Lock()
				in.deals[me.Old] = d
				in.mu.Unlock()
				continue
			}
			b, err := d.MarshalBinary()
			if err != nil {
				return nil, err
			}
			if err := send(newPeer[d.To], rsMsgDeal, b); err != nil {
				return nil, fmt.Errorf("reshare: deal to new validator %d: %w", d.To, err)
			}
		}
	}

	// Acknowledge.
	var recipient *ledger.ReshareRecipient
	if me.New >= 0 {
		if recipient, err = r.NewRecipient(me.New); err != nil {
			return nil, err
		}
		if err := wait("deals", 0, func() []int {
			return missingOf(spec.Dealers, func(j int) bool { return in.deals[j] != nil })
		}); err != nil {
			return nil, err
		}
		if f := collect(&in.mu, func() *ledger.ReshareFault { return in.equiv }); f != nil {
			return fail(f)
		}
		for _, j := range spec.Dealers {
			if err := recipient.Accept(collect(&in.mu, func() *ledger.ReshareDeal { return in.deals[j] }), verify); err != nil {
				return fail(err)
			}
		}
		ack, err := recipient.Ack()
		if err != nil {
			return nil, err
		}
		in.mu.Lock()
		in.acks[me.New] = ack
		in.mu.Unlock()
		b, _ := ack.MarshalBinary()
		if err := sendAll(rsMsgAck, b); err != nil {
			return nil, fmt.Errorf("reshare: acknowledgement: %w", err)
		}
	}
	if err := wait("acknowledgements", 0, func() []int {
		return missingOf(newAll, func(k int) bool { return in.acks[k] != nil })
	}); err != nil {
		return nil, err
	}
	v, err := ledger.NewReshareVerifier(r, collect(&in.mu, func() []*ledger.ReshareAck {
		out := make([]*ledger.ReshareAck, 0, len(in.acks))
		for _, a := range in.acks {
			out = append(out, a)
		}
		return out
	}), verify)
	if err != nil {
		return fail(err)
	}

	// Commit.
	if me.Old >= 0 && committers[me.Old] {
		c, err := dealer.Commit(v, sign)
		if err != nil {
			return nil, err
		}
		in.mu.Lock()
		in.commits[me.Old] = c
		in.mu.Unlock()
		b, err := c.MarshalBinary()
		if err != nil {
			return nil, err
		}
		if err := sendAll(rsMsgCommit, b); err != nil {
			return nil, fmt.Errorf("reshare: commitment: %w", err)
		}
	}
	if err := wait("commitments", 0, func() []int {
		return missingOf(committerList, func(j int) bool { return in.commits[j] != nil })
	}); err != nil {
		return nil, err
	}
	commits := collect(&in.mu, func() []*ledger.ReshareCommit {
		var out []*ledger.ReshareCommit
		for _, j := range committerList {
			out = append(out, in.commits[j])
		}
		return out
	})

	// Check.
	if recipient != nil {
		log.Info("key resharing: checking the deals")
		c, err := recipient.Check(v, commits)
		if err != nil {
			return nil, err
		}
		in.mu.Lock()
		in.checks[me.New] = c
		in.mu.Unlock()
		b, err := c.MarshalBinary()
		if err != nil {
			return nil, err
		}
		if err := sendAll(rsMsgCheck, b); err != nil {
			return nil, fmt.Errorf("reshare: check: %w", err)
		}
	}
	if err := wait("checks", 0, func() []int {
		return missingOf(newAll, func(k int) bool { return in.checks[k] != nil })
	}); err != nil {
		return nil, err
	}
	checks := collect(&in.mu, func() []*ledger.ReshareCheck {
		out := make([]*ledger.ReshareCheck, 0, len(in.checks))
		for k := 0; k < spec.New.N; k++ {
			out = append(out, in.checks[k])
		}
		return out
	})

	// Verdict and agreement.
	verdict := v.Verdict(commits, checks)
	digest := ledger.ReshareDigest(v, commits, checks)
	done := append(digest[:0:0], digest[:]...)
	if verdict == nil {
		done = append(done, 1)
	} else {
		done = append(done, 0)
		done = append(done, []byte(verdict.Error())...)
		if len(done) > 4096 {
			done = done[:4096]
		}
	}
	in.mu.Lock()
	in.done[self] = done
	in.mu.Unlock()
	if err := sendAll(rsMsgDone, done); err != nil && verdict == nil {
		return nil, fmt.Errorf("reshare: confirmation: %w", err)
	}
	all := make([]int, len(spec.Members))
	for i := range all {
		all[i] = i
	}
	var limit time.Duration
	if verdict != nil {
		limit = revealWait
	}
	werr := wait("confirmations", limit, func() []int {
		return missingOf(all, func(i int) bool { return in.done[i] != nil })
	})
	if verdict != nil {
		return fail(verdict)
	}
	if werr != nil {
		return nil, werr
	}
	for i, d := range collect(&in.mu, func() map[int][]byte { return in.done }) {
		if !bytes.Equal(d, done) {
			return nil, fmt.Errorf("reshare: participant %d judged different messages or reached another verdict (a participant sent different messages to different peers); aborting", i)
		}
	}
	if recipient == nil {
		log.Info("key resharing: done; this node is not in the new committee")
		return nil, nil
	}
	ks, err := recipient.KeyShare(v, commits, checks)
	if err != nil {
		return fail(err)
	}
	log.Info("key resharing: done, every deal verified", "new_index", me.New, "digest", fmt.Sprintf("%x", digest[:8]))
	return ks, nil
}

// saveReshared keeps the outcome of a resharing: the new key share with the
// unchanged public keys, or, for a member that left, the removal of its old
// key share (what an honest leaver does; resharing cannot enforce it).
func saveReshared(h Home, keys *ledger.PublicKeys, ks *ledger.KeyShare) error {
	if ks != nil {
		return saveKeys(h, keys, ks)
	}
	if err := os.Remove(h.KeyShare()); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("reshare: removing the old key share: %w", err)
	}
	return nil
}
