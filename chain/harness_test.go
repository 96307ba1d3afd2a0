package chain

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/zkbank/zkbank/consensus"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/ledger/ledgertest"
	"github.com/zkbank/zkbank/store"
)

// The tests of this package drive N applications by hand, as the consensus
// machine would (build, validate, extend, verify, finalize), over store.Memory,
// a map mempool and the serial evaluator: no network, no actors, no disk.

const testChain = "zkbank-chain-test"

// committee is a key ceremony run once per test binary: it takes seconds.
type committee struct {
	signers []*consensus.Ed25519Signer
	vals    *consensus.ValidatorSet
	p       *ledger.Params
	com     *ledger.Committee
	keys    *ledger.PublicKeys
	shares  []*ledger.KeyShare
	eng     *ledger.Engine
	dec     *ledger.Decryptor
}

var (
	committeesMu sync.Mutex
	committees   = map[[2]int]*committee{}
)

// testCommittee is the default committee: N = 4 = 3f+1, t = f+1 = 2.
func testCommittee(t testing.TB) *committee { return committeeOf(t, 4, 2) }

// committeeOf runs the t-of-n ceremony once per test binary.
func committeeOf(t testing.TB, n, th int) *committee {
	t.Helper()
	committeesMu.Lock()
	defer committeesMu.Unlock()
	if c, ok := committees[[2]int{n, th}]; ok {
		return c
	}
	c, err := newCommittee(n, th)
	if err != nil {
		t.Fatal(err)
	}
	committees[[2]int{n, th}] = c
	return c
}

func newCommittee(n, th int) (*committee, error) {
	lc, err := ledgertest.New(n, th, []byte(testChain))
	if err != nil {
		return nil, err
	}
	c := &committee{p: lc.Params, com: lc.Com, keys: lc.Keys, shares: lc.Shares, eng: lc.Engine, dec: lc.Dec}
	var vs []consensus.Validator
	for i := 0; i < n; i++ {
		_, key, _ := ed25519.GenerateKey(rand.Reader)
		s := consensus.NewEd25519Signer(key)
		c.signers = append(c.signers, s)
		vs = append(vs, consensus.Validator{PubKey: s.PubKey(), Power: 1})
	}
	if c.vals, err = consensus.NewValidatorSet(vs); err != nil {
		return nil, err
	}
	return c, nil
}

// mapMempool is a Mempool over a map, with an injectable failure.
type mapMempool struct {
	uploads map[[32]byte]*Upload
	opens   map[string]Open
	fail    error
}

func newMapMempool() *mapMempool {
	return &mapMempool{uploads: map[[32]byte]*Upload{}, opens: map[string]Open{}}
}

func (m *mapMempool) Candidates(max int) ([]*Upload, error) {
	if m.fail != nil {
		return nil, m.fail
	}
	var out []*Upload
	for _, u := range m.uploads {
		out = append(out, u)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Received.Before(out[j].Received) })
	if len(out) > max {
		out = out[:max]
	}
	return out, nil
}

func (m *mapMempool) Opens(max int) ([]Open, error) {
	if m.fail != nil {
		return nil, m.fail
	}
	var out []Open
	for _, o := range m.opens {
		out = append(out, o)
	}
	return out, nil
}

func (m *mapMempool) Get(h [32]byte) (*Upload, error) {
	if m.fail != nil {
		return nil, m.fail
	}
	return m.uploads[h], nil
}

func (m *mapMempool) HasWork() (bool, error) {
	return len(m.uploads)+len(m.opens) > 0, m.fail
}

func (m *mapMempool) Committed(b *Block) {
	for _, s := range b.Subs {
		delete(m.uploads, s.CTHash)
	}
	for _, o := range b.Opens {
		delete(m.opens, string(o.SignPub))
	}
}

// countingEvaluator counts block evaluations (re-proposals must not redo them).
type countingEvaluator struct {
	SerialEvaluator
	calls int
}

func (c *countingEvaluator) Evaluate(book *ledger.Book, batches []*ledger.Batch, blockHash []byte) ([]*ledger.Evaluation, error) {
	if len(batches) > 0 {
		c.calls++
	}
	return c.SerialEvaluator.Evaluate(book, batches, blockHash)
}

// recorder is an Observer keeping every published view.
type recorder struct{ views []*View }

func (r *recorder) Finalized(v *View) { r.views = append(r.views, v) }

// failingStore fails every Commit after it is armed.
type failingStore struct {
	*store.Memory
	fail bool
}

var errDiskFull = errors.New("disk full")

func (f *failingStore) Commit(h uint64, b store.Batch) error {
	if f.fail {
		return errDiskFull
	}
	return f.Memory.Commit(h, b)
}

// user is a test account holder.
type user struct {
	key     ed25519.PrivateKey
	pub     ed25519.PublicKey
	id      ledger.AccountID
	balance uint64 // what the user's wallet believes
	nonce   uint64
}

// validator is one application with its collaborators.
type validator struct {
	app   *App
	mem   *mapMempool
	st    *failingStore
	ev    *countingEvaluator
	obs   *recorder
	cfg   Config
	gbook *ledger.Book
}

// testChain is N validators at the same height.
type chainNet struct {
	t      *testing.T
	c      *committee
	vals   []*validator
	users  map[string]*user
	height uint64 // last finalized
	last   *consensus.CommitCertificate
	b      *ledger.Builder
}

func newChainNet(t *testing.T, faults ...Faults) *chainNet {
	t.Helper()
	return newChainNetOf(t, testCommittee(t), faults...)
}

// newChainNetOf is a chain of the committee c's validators.
func newChainNetOf(t *testing.T, c *committee, faults ...Faults) *chainNet {
	t.Helper()
	n := &chainNet{t: t, c: c, users: map[string]*user{}, b: ledger.NewBuilder(c.p, c.keys.PK, testChain)}
	var accts []ledger.GenesisAccount
	for _, name := range []string{"alice", "bob", "carol"} {
		pub, key, _ := ed25519.GenerateKey(rand.Reader)
		u := &user{key: key, pub: pub, id: ledger.AccountIDOf(pub), balance: map[string]uint64{"alice": 100, "bob": 0, "carol": 50}[name]}
		n.users[name] = u
		accts = append(accts, ledger.GenesisAccount{SignPub: pub, Balance: u.balance})
	}
	for i := 0; i < c.com.N; i++ {
		// Engines are not safe for concurrent use, and tests run in
		// parallel: every validator has its own, as in a node.
		eng := c.eng.Clone()
		gbook, err := ledger.NewBook(eng, testChain, accts)
		if err != nil {
			t.Fatal(err)
		}
		v := &validator{mem: newMapMempool(), st: &failingStore{Memory: store.NewMemory()}, obs: &recorder{}, gbook: gbook}
		v.ev = &countingEvaluator{SerialEvaluator: SerialEvaluator{Engine: c.eng.Clone()}}
		v.cfg = Config{Params: c.p, Engine: eng, Decryptor: c.dec, Key: c.shares[i], Chain: testChain,
			N: c.com.N, T: c.com.T, Validators: c.vals, Mempool: v.mem, Evaluator: v.ev, Store: v.st, Observer: v.obs,
			Now: func() time.Time { return time.Unix(1700000000, 0) }, GenesisBook: gbook}
		if i < len(faults) {
			v.cfg.Faults = faults[i]
		}
		app, err := New(v.cfg)
		if err != nil {
			t.Fatal(err)
		}
		v.app = app
		n.vals = append(n.vals, v)
	}
	return n
}

// restart replaces validator i's application by one restored from its
// store, as after a process restart, and returns it.
func (n *chainNet) restart(i int) *App {
	n.t.Helper()
	v := n.vals[i]
	r, err := Restore(v.st, n.c.p, v.cfg.Engine, testChain, v.gbook)
	if err != nil {
		n.t.Fatal(err)
	}
	cfg := v.cfg
	cfg.Restored = r
	cfg.Evaluator = &countingEvaluator{SerialEvaluator: SerialEvaluator{Engine: n.c.eng.Clone()}}
	app, err := New(cfg)
	if err != nil {
		n.t.Fatal(err)
	}
	if r.Finalized != n.height || app.finalized != n.height {
		n.t.Fatalf("validator %d restored at %d, chain at %d", i, r.Finalized, n.height)
	}
	v.app = app
	return app
}

// transfer builds an upload from one user to another, as its wallet would;
// claimed is the balance the wallet proves against (a lie makes an overdraft).
func (n *chainNet) transfer(from, to string, amount, claimed uint64) *Upload {
	n.t.Helper()
	f, d := n.users[from], n.users[to]
	acct, ok := n.vals[0].app.book.Account(f.id)
	if !ok {
		n.t.Fatalf("no account for %s", from)
	}
	f.nonce++
	sub, err := n.b.Build(ledger.TransferSpec{From: f.id, Lane: acct.Lane, Key: f.key, To: d.id, Amount: amount,
		Balance: claimed, Height: n.vals[0].app.book.Height(), Nonce: f.nonce})
	if err != nil {
		n.t.Fatal(err)
	}
	return NewUpload(n.c.p, sub.Ciphertext, sub.Envelopes, time.Now())
}

// submit puts an upload in the mempools of the given validators (all if none).
func (n *chainNet) submit(u *Upload, to ...int) {
	if len(to) == 0 {
		for i := range n.vals {
			to = append(to, i)
		}
	}
	for _, i := range to {
		n.vals[i].mem.uploads[u.Hash] = u
	}
}

// propose builds the next block at validator i.
func (n *chainNet) propose(i int) []byte {
	n.t.Helper()
	v, err := n.vals[i].app.BuildProposal(n.height+1, n.last)
	if err != nil {
		n.t.Fatalf("validator %d builds height %d: %v", i, n.height+1, err)
	}
	return v
}

// precommit has every validator validate and extend value; it returns the
// extensions (index = validator).
func (n *chainNet) precommit(value []byte, round consensus.Round) [][]byte {
	n.t.Helper()
	h := n.height + 1
	exts := make([][]byte, len(n.vals))
	for i, v := range n.vals {
		if err := v.app.ValidateProposal(h, value); err != nil {
			n.t.Fatalf("validator %d refuses height %d: %v", i, h, err)
		}
		x, err := v.app.ExtendVote(h, round, value)
		if err != nil {
			n.t.Fatalf("validator %d extends height %d: %v", i, h, err)
		}
		exts[i] = x
	}
	for i, v := range n.vals {
		for j, x := range exts {
			if i != j {
				if err := v.app.VerifyExtension(h, j, value, x); err != nil {
					n.t.Fatalf("validator %d refuses %d's extension: %v", i, j, err)
				}
			}
		}
	}
	return exts
}

// certify makes the certificate consensus would, from the precommits
// (signed with their extensions) of the validators in who.
func (n *chainNet) certify(value []byte, round consensus.Round, exts [][]byte, who ...int) *consensus.CommitCertificate {
	cert := &consensus.CommitCertificate{Height: n.height + 1, Round: round, BlockID: consensus.HashValue(value)}
	for _, i := range who {
		v := n.precommitVote(value, round, i, exts[i])
		cert.Sigs = append(cert.Sigs, consensus.CommitSig{Validator: i, Extension: exts[i], Signature: v.Signature})
	}
	return cert
}

// precommitVote is validator i's signed precommit for value at the next height.
func (n *chainNet) precommitVote(value []byte, round consensus.Round, i int, ext []byte) *consensus.Vote {
	v := &consensus.Vote{Type: consensus.Precommit, Height: n.height + 1, Round: round, BlockID: consensus.HashValue(value), Validator: i, Extension: ext}
	consensus.SignVote(testChain, n.c.signers[i], v)
	return v
}

// carried is what a proposer of the next height carries from the last
// certificate, for the validators in who (all if none).
func (n *chainNet) carried(who ...int) []Precommit {
	var out []Precommit
	for _, s := range n.last.Sigs {
		if len(who) == 0 || contains(who, s.Validator) {
			out = append(out, Precommit{Validator: s.Validator, Round: n.last.Round, Ext: s.Extension, Signature: s.Signature})
		}
	}
	return out
}

func contains(xs []int, x int) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// finalize finalizes value at every validator.
func (n *chainNet) finalize(value []byte, cert *consensus.CommitCertificate) {
	n.t.Helper()
	for i, v := range n.vals {
		if err := v.app.Finalize(n.height+1, value, cert); err != nil {
			n.t.Fatalf("validator %d finalizes height %d: %v", i, n.height+1, err)
		}
	}
	n.height++
	n.last = cert
}

// step runs one whole height proposed by validator i, every validator's
// extension in the certificate.
func (n *chainNet) step(i int) []byte {
	n.t.Helper()
	value := n.propose(i)
	exts := n.precommit(value, 0)
	n.finalize(value, n.certify(value, 0, exts, 0, 1, 2, 3))
	return value
}

// outcomes returns the last published outcomes of validator i, by id.
func (n *chainNet) outcomes(i int) map[[32]byte]ledger.Reason {
	views := n.vals[i].obs.views
	out := map[[32]byte]ledger.Reason{}
	if len(views) == 0 {
		return out
	}
	for _, o := range views[len(views)-1].Outcomes {
		out[o.ID] = o.Reason
	}
	return out
}

func idOf(u *Upload) [32]byte { return u.Envs[0].ID() }

// bookBytes is a canonical encoding of everything a book holds that matters
// for the next decisions: height, registry, and each shard's state at every
// retained height.
func bookBytes(t *testing.T, b *ledger.Book) []byte {
	t.Helper()
	var out bytes.Buffer
	binary.Write(&out, binary.BigEndian, b.Height())
	accts := b.Accounts()
	sort.Slice(accts, func(i, j int) bool { return bytes.Compare(accts[i].ID[:], accts[j].ID[:]) < 0 })
	for _, a := range accts {
		ab, err := a.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		out.Write(ab)
	}
	from := uint64(0)
	if b.Height() >= ledger.DefaultWindow {
		from = b.Height() - ledger.DefaultWindow + 1
	}
	for _, s := range b.Shards() {
		for h := from; h <= b.Height(); h++ {
			ct, ok := b.State(s, h)
			if !ok {
				fmt.Fprintf(&out, "shard %d height %d: none;", s, h)
				continue
			}
			cb, err := ct.MarshalBinary()
			if err != nil {
				t.Fatal(err)
			}
			out.Write(cb)
		}
	}
	return out.Bytes()
}

// newOpen is an account opening; signed false forges its signature.
func newOpen(t *testing.T, n *chainNet, signed bool) Open {
	t.Helper()
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	o := Open{SignPub: pub, Kind: ledger.KindDeposit, Sig: ed25519.Sign(key, ledger.OpenAccountBytes(testChain, ledger.KindDeposit))}
	if !signed {
		o.Sig[0] ^= 1
	}
	return o
}
