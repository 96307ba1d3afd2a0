package chain

import (
	"bytes"
	"errors"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zkbank/zkbank/consensus"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/store"
)

// follower is a full node's application over its own store, mempool and
// piece cache: it never votes, and gets uploads and decided pieces from
// validator 0's store, as the node fetches them over /zkbank/sync/1.
type follower struct {
	n      *chainNet
	app    *App
	cfg    Config
	mem    *mapMempool
	st     *failingStore
	pieces *PieceCache
	gbook  *ledger.Book
}

func (n *chainNet) newFollower() *follower {
	n.t.Helper()
	f := &follower{n: n, mem: newMapMempool(), st: &failingStore{Memory: store.NewMemory()}, pieces: NewPieceCache(), gbook: n.vals[0].gbook.Clone()}
	f.cfg = Config{Params: n.c.p, Engine: n.c.eng.Clone(), Decryptor: n.c.dec, Chain: testChain, PK: n.c.keys.PK,
		Opener: &Opener{Params: n.c.p, Sharing: n.c.sh, Self: -1}, Pieces: f.pieces, N: n.c.com.N, T: n.c.com.T, Validators: n.c.vals,
		Mempool: f.mem, Evaluator: SerialEvaluator{Engine: n.c.eng.Clone()}, Store: f.st, Follow: true, GenesisBook: f.gbook}
	app, err := New(f.cfg)
	if err != nil {
		n.t.Fatal(err)
	}
	f.app = app
	return f
}

// restart restores the follower from its store, as after a process restart.
func (f *follower) restart() {
	f.n.t.Helper()
	r, err := Restore(f.st, f.n.c.p, f.cfg.Engine, testChain, f.gbook)
	if err != nil {
		f.n.t.Fatal(err)
	}
	cfg := f.cfg
	cfg.Restored, cfg.Pieces = r, NewPieceCache()
	if f.app, err = New(cfg); err != nil {
		f.n.t.Fatal(err)
	}
	f.pieces = cfg.Pieces
}

// decision is validator 0's stored decision of height h.
func (n *chainNet) decision(h uint64) *consensus.Commit {
	n.t.Helper()
	c, err := StoredCommit(n.vals[0].st, h)
	if err != nil {
		n.t.Fatal(err)
	}
	return c
}

// fetch gives the follower the uploads and decided pieces c's block needs.
func (f *follower) fetch(c *consensus.Commit) {
	f.n.t.Helper()
	b, err := DecodeBlock(c.Value)
	if err != nil {
		f.n.t.Fatal(err)
	}
	src := f.n.vals[0].st
	for _, s := range b.Subs {
		raw, err := StoredUpload(src, s.CTHash)
		if err != nil {
			f.n.t.Fatal(err)
		}
		u := f.cfg.Opener.NewUpload(raw, s.Envelopes, time.Time{})
		f.mem.uploads[u.ID()] = u
	}
	for _, pw := range WantedPieces(b, f.n.c.sh) {
		raw := f.n.pieces.Get(pw.Hash)
		if raw == nil {
			if raw, err = StoredPiece(src, pw.Hash); err != nil {
				f.n.t.Fatalf("piece %x of height %d: %v", pw.Hash[:8], b.Height, err)
			}
		}
		f.pieces.Put(pw.Hash, raw, b.Height-1)
	}
}

// follow fetches and follows c, failing the test if it is refused.
func (f *follower) follow(c *consensus.Commit) {
	f.n.t.Helper()
	f.fetch(c)
	if err := f.app.FollowCommit(c); err != nil {
		f.n.t.Fatalf("follower refuses height %d: %v", c.Height(), err)
	}
}

// resigned is c with each listed validator's extension altered by alter
// and its precommit re-signed with that validator's key: what validators
// attesting something else would sign.
func (n *chainNet) resigned(c *consensus.Commit, alter func(*Ext), who ...int) *consensus.Commit {
	n.t.Helper()
	cert := *c.Cert
	cert.Sigs = append([]consensus.CommitSig(nil), c.Cert.Sigs...)
	for i, s := range cert.Sigs {
		if !contains(who, s.Validator) {
			continue
		}
		x, err := DecodeExt(s.Extension)
		if err != nil {
			n.t.Fatal(err)
		}
		alter(x)
		v := cert.Vote(i)
		v.Extension = x.Encode()
		consensus.SignVote(testChain, n.c.signers[s.Validator], v)
		cert.Sigs[i] = consensus.CommitSig{Validator: s.Validator, Extension: v.Extension, Signature: v.Signature}
	}
	return &consensus.Commit{Cert: &cert, Value: c.Value}
}

// payingChain runs a chain through a payment and an overdraft until both
// are decided and applied, and returns the height of the block that orders
// them.
func payingChain(t *testing.T) (*chainNet, uint64) {
	n := newChainNet(t)
	n.step(0)
	n.submit(n.transfer("alice", "bob", 30, 100))
	n.submit(n.transfer("carol", "bob", 150, 200)) // an overdraft: carol has 50
	n.step(1)
	ordered := n.height + 1
	if b, _ := DecodeBlock(n.step(2)); len(b.Subs) != 2 {
		t.Fatalf("block %d orders %d uploads, want 2", ordered, len(b.Subs))
	}
	n.step(3)
	n.step(0)
	n.step(1)
	return n, ordered
}

// A full node re-evaluates the checks of every block and refuses a decision
// whose agreeing signers are no quorum: a certificate where half or all
// signers attest another evaluation digest (validators that evaluated
// wrongly, or a full node whose evaluation differs) is refused, the height
// and the signers named, and the node does not advance. One byzantine
// signer beside an agreeing quorum is named and dropped, and the decision
// accepted; the node ends with the validators' book, also after a restart.
func TestAttack_FollowerRefusesADecisionWithAWrongDigest(t *testing.T) {
	t.Parallel()
	n, ordered := payingChain(t)
	f := n.newFollower()
	// The certificate of ordered+1 attests the digest of block ordered's
	// checks (the payment and the overdraft).
	target := ordered + 1
	for h := uint64(1); h < target; h++ {
		f.follow(n.decision(h))
	}
	honest := n.decision(target)
	f.fetch(honest)
	flip := func(x *Ext) { x.Digest[0] ^= 1 }
	for _, who := range [][]int{{0, 1}, {0, 1, 2, 3}} { // the agreeing signers are no quorum
		err := f.app.FollowCommit(n.resigned(honest, flip, who...))
		var dm *DigestMismatchError
		if !errors.As(err, &dm) {
			t.Fatalf("signers %v attesting another digest: got %v, want a digest mismatch", who, err)
		}
		if dm.Height != target || dm.Evaluated != ordered || !slices.Equal(dm.Validators, who) {
			t.Fatalf("refusal names height %d (evaluated %d) and validators %v, want %d (%d) and %v", dm.Height, dm.Evaluated, dm.Validators, target, ordered, who)
		}
		if got := f.app.Finalized(); got != target-1 {
			t.Fatalf("follower advanced to %d on a refused decision", got)
		}
		if last, _ := f.st.LastApplied(); last != target-1 {
			t.Fatalf("follower persisted height %d of a refused decision", last)
		}
	}
	// One byzantine signer attesting another digest beside a quorum that
	// agrees: named and dropped, the decision finalized (a byzantine
	// validator cannot make full nodes refuse what a quorum attested).
	if err := f.app.FollowCommit(n.resigned(honest, flip, 3)); err != nil {
		t.Fatalf("a quorum's decision with one byzantine signer beside it: %v", err)
	}
	if got := f.app.DroppedSigners(); !slices.Equal(got, []int{3}) {
		t.Fatalf("dropped signers %v, want [3]", got)
	}
	f.restart()
	for h := target + 1; h <= n.height; h++ {
		f.follow(n.decision(h))
	}
	if f.app.Finalized() != n.height {
		t.Fatalf("follower at %d, chain at %d", f.app.Finalized(), n.height)
	}
	if !bytes.Equal(bookBytes(t, f.app.book), bookBytes(t, n.vals[0].app.book)) {
		t.Fatal("the follower's book differs from the validators'")
	}
	if got := f.app.View().Credits; !slices.Equal(got, n.vals[0].app.Credits()) {
		t.Fatalf("follower credits %v, validators %v", got, n.vals[0].app.Credits())
	}
}

// A full node verifies every certificate against the genesis validators'
// keys: a forged signature, too few signers, another block under the
// certificate or a decision of another height are refused, naming the
// height, and the node does not advance.
func TestAttack_FollowerRefusesAForgedCertificate(t *testing.T) {
	t.Parallel()
	n, ordered := payingChain(t)
	f := n.newFollower()
	target := ordered + 1
	for h := uint64(1); h < target; h++ {
		f.follow(n.decision(h))
	}
	honest := n.decision(target)
	f.fetch(honest)
	forgedSig := *honest.Cert
	forgedSig.Sigs = append([]consensus.CommitSig(nil), honest.Cert.Sigs...)
	forgedSig.Sigs[1].Signature = append([]byte(nil), forgedSig.Sigs[1].Signature...)
	forgedSig.Sigs[1].Signature[0] ^= 1
	fewSigners := *honest.Cert
	fewSigners.Sigs = honest.Cert.Sigs[:2] // 2 of 4: no quorum
	other := n.decision(target - 1)
	otherHeight := *other.Cert
	for _, tc := range []struct {
		name string
		c    *consensus.Commit
		want error
	}{
		{"forged signature", &consensus.Commit{Cert: &forgedSig, Value: honest.Value}, ErrForgedCertificate},
		{"too few signers", &consensus.Commit{Cert: &fewSigners, Value: honest.Value}, ErrForgedCertificate},
		{"another block under the certificate", &consensus.Commit{Cert: honest.Cert, Value: other.Value}, ErrForgedCertificate},
		{"a decision of another height", &consensus.Commit{Cert: &otherHeight, Value: other.Value}, ErrNotNext},
	} {
		err := f.app.FollowCommit(tc.c)
		if !errors.Is(err, tc.want) {
			t.Fatalf("%s: got %v, want %v", tc.name, err, tc.want)
		}
		if want := "height " + strconv.FormatUint(tc.c.Cert.Height, 10); !strings.Contains(err.Error(), want) {
			t.Fatalf("%s: refusal %q does not name the height", tc.name, err)
		}
		if got := f.app.Finalized(); got != target-1 {
			t.Fatalf("%s: follower advanced to %d", tc.name, got)
		}
	}
	f.follow(honest)
}
