package chain

import (
	"bytes"
	"crypto/ecdh"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
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
	seals   []*ecdh.PrivateKey // validator i's sealing key (from its consensus seed)
	sealPub []*ecdh.PublicKey
	sh      *ledger.Sharing
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
		pub, key, _ := ed25519.GenerateKey(rand.Reader)
		s := consensus.NewEd25519Signer(key)
		c.signers = append(c.signers, s)
		sk, err := ledger.SealKeyFromSeed(key.Seed())
		if err != nil {
			return nil, err
		}
		pk, err := ledger.SealPublicKey(pub)
		if err != nil {
			return nil, err
		}
		c.seals, c.sealPub = append(c.seals, sk), append(c.sealPub, pk)
		vs = append(vs, consensus.Validator{PubKey: s.PubKey(), Power: 1})
	}
	if c.vals, err = consensus.NewValidatorSet(vs); err != nil {
		return nil, err
	}
	if c.sh, err = ledger.NewSharing(n, lc.Com.F()); err != nil {
		return nil, err
	}
	return c, nil
}

// mapMempool is a Mempool over a map of uploads by transfer id, with an
// injectable failure.
type mapMempool struct {
	uploads  map[[32]byte]*Upload
	opens    map[string]Open
	consents []ledger.Consent
	fail     error
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

func (m *mapMempool) Consents(max int) ([]ledger.Consent, error) {
	if m.fail != nil {
		return nil, m.fail
	}
	return append([]ledger.Consent(nil), m.consents[:min(max, len(m.consents))]...), nil
}

func (m *mapMempool) Get(id [32]byte) (*Upload, error) {
	if m.fail != nil {
		return nil, m.fail
	}
	return m.uploads[id], nil
}

func (m *mapMempool) Acks(max int) ([][32]byte, error) {
	if m.fail != nil {
		return nil, m.fail
	}
	var out [][32]byte
	for id, u := range m.uploads {
		if u.Pieces != nil && len(out) < max {
			out = append(out, id)
		}
	}
	sort.Slice(out, func(i, j int) bool { return bytes.Compare(out[i][:], out[j][:]) < 0 })
	return out, nil
}

func (m *mapMempool) HasWork() (bool, error) {
	return len(m.uploads)+len(m.opens)+len(m.consents) > 0, m.fail
}

func (m *mapMempool) Committed(b *Block, _ *ledger.Book) {
	for _, s := range b.Subs {
		if len(s.Envelopes) == 1 {
			delete(m.uploads, s.Envelopes[0].ID())
		}
	}
	for _, o := range b.Opens {
		delete(m.opens, string(o.SignPub))
	}
	done := map[[32]byte]bool{}
	for i := range b.Consents {
		done[b.Consents[i].ID()] = true
	}
	keep := m.consents[:0]
	for _, c := range m.consents {
		if !done[c.ID()] {
			keep = append(keep, c)
		}
	}
	m.consents = keep
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
	last    *Upload // the user's last operation built
}

// prev is the Prev a user's next operation names, as its wallet tracks it:
// its last operation while that is undecided, else the book's last accepted.
func (n *chainNet) prev(u *user) [32]byte {
	if u.last != nil {
		if _, decided := n.verdict(0, u.last); !decided {
			return idOf(u.last)
		}
	}
	a, _ := n.vals[0].app.book.Account(u.id)
	return a.LastOp
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
	open  *Opener
	// pieces is this validator's piece cache: the chain's shared one, or
	// after a restart a fresh one (a restarted process has lost its memory),
	// synchronized with the shared one around every call (syncPieces) as
	// the node's piece fetching and serving would.
	pieces *PieceCache
}

// testChain is N validators at the same height.
type chainNet struct {
	t      *testing.T
	c      *committee
	vals   []*validator
	users  map[string]*user
	height uint64 // last finalized
	last   *consensus.CommitCertificate
	b      *ledger.Dealer
	pieces *PieceCache // shared: stands in for the node fetching pieces from peers
	// parallel runs the validators' calls of one stage concurrently, as
	// separate nodes would (each App is still driven by one goroutine).
	parallel bool
}

func newChainNet(t *testing.T, faults ...Faults) *chainNet {
	t.Helper()
	return newChainNetOf(t, testCommittee(t), faults...)
}

// genesisUser is an account of a test chain's genesis.
type genesisUser struct {
	name    string
	balance uint64
}

// defaultUsers are the accounts of every test chain but those that ask for
// more (newChainNetGenesis).
var defaultUsers = []genesisUser{{"alice", 100}, {"bob", 0}, {"carol", 50}}

// newChainNetOf is a chain of the committee c's validators.
func newChainNetOf(t *testing.T, c *committee, faults ...Faults) *chainNet {
	t.Helper()
	return newChainNetGenesis(t, c, defaultUsers, faults...)
}

// newChainNetGenesis is a chain of the committee c's validators whose
// genesis holds the given accounts, in that order (the book fills shard 0's
// lanes first, so the first Lanes accounts share shard 0).
func newChainNetGenesis(t *testing.T, c *committee, users []genesisUser, faults ...Faults) *chainNet {
	t.Helper()
	d, err := ledger.NewDealer(c.p, c.sh, c.sealPub, testChain)
	if err != nil {
		t.Fatal(err)
	}
	n := &chainNet{t: t, c: c, users: map[string]*user{}, b: d, pieces: NewPieceCache()}
	var accts []ledger.GenesisAccount
	for _, g := range users {
		pub, key, _ := ed25519.GenerateKey(rand.Reader)
		u := &user{key: key, pub: pub, id: ledger.AccountIDOf(pub), balance: g.balance}
		n.users[g.name] = u
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
		v := &validator{mem: newMapMempool(), st: &failingStore{Memory: store.NewMemory()}, obs: &recorder{}, gbook: gbook,
			open: &Opener{Params: c.p, Sharing: c.sh, Self: i, Key: c.seals[i]}, pieces: n.pieces}
		v.ev = &countingEvaluator{SerialEvaluator: SerialEvaluator{Engine: c.eng.Clone()}}
		v.cfg = Config{Params: c.p, Engine: eng, Decryptor: c.dec, Key: c.shares[i], Chain: testChain, PK: c.keys.PK, Opener: v.open, Pieces: n.pieces,
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
	// The process lost its piece cache: New re-decides the last block's
	// pieces from what its store kept, and later pieces come from peers.
	cfg.Pieces = NewPieceCache()
	app, err := New(cfg)
	if err != nil {
		n.t.Fatal(err)
	}
	if r.Finalized != n.height || app.finalized != n.height {
		n.t.Fatalf("validator %d restored at %d, chain at %d", i, r.Finalized, n.height)
	}
	v.app, v.pieces = app, cfg.Pieces
	return app
}

// syncPieces stands in for the node of validator i fetching the pieces a
// proposal needs from its peers and serving its own: a validator with a
// cache of its own (restarted) exchanges every piece with the shared one.
func (n *chainNet) syncPieces(i int) {
	c := n.vals[i].pieces
	if c == nil || c == n.pieces {
		return
	}
	copyPieces := func(dst, src *PieceCache) {
		src.mu.Lock()
		m := make(map[[32]byte]pieceEntry, len(src.m))
		for h, e := range src.m {
			m[h] = e
		}
		src.mu.Unlock()
		for h, e := range m {
			dst.Put(h, e.raw, e.height)
		}
	}
	copyPieces(c, n.pieces)
	copyPieces(n.pieces, c)
}

// transfer builds an upload from one user to another, as its wallet would;
// claimed is the balance the wallet proves against (a lie makes an overdraft).
func (n *chainNet) transfer(from, to string, amount, claimed uint64) *Upload {
	n.t.Helper()
	return n.operation(from, n.users[to].id, amount, claimed)
}

// operation builds a user's next operation as its wallet would: the next
// nonce, built on its last one (prev), at the book's height.
func (n *chainNet) operation(from string, to ledger.AccountID, amount, balance uint64) *Upload {
	n.t.Helper()
	f := n.users[from]
	if _, ok := n.vals[0].app.book.Account(f.id); !ok {
		n.t.Fatalf("no account for %s", from)
	}
	f.nonce++
	sub, err := n.b.Build(ledger.TransferSpec{From: f.id, Key: f.key, To: to, Amount: amount,
		Balance: balance, Height: n.vals[0].app.book.Height(), Prev: n.prev(f), Nonce: f.nonce})
	if err != nil {
		n.t.Fatal(err)
	}
	f.last = n.vals[0].open.NewUpload(sub.Sealed, sub.Envelopes, time.Now())
	return f.last
}

// submit puts an upload in the mempools of the given validators (all if
// none), each opening its own box in it.
func (n *chainNet) submit(u *Upload, to ...int) {
	if len(to) == 0 {
		for i := range n.vals {
			to = append(to, i)
		}
	}
	for _, i := range to {
		n.vals[i].mem.uploads[u.ID()] = n.vals[i].open.NewUpload(u.Raw, u.Envs, u.Received)
	}
}

// submitAll submits uploads to every validator, the validators opening
// their boxes concurrently (as separate nodes would).
func (n *chainNet) submitAll(ups []*Upload) {
	var wg sync.WaitGroup
	for _, v := range n.vals {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for _, u := range ups {
				v.mem.uploads[u.ID()] = v.open.NewUpload(u.Raw, u.Envs, u.Received)
			}
		}()
	}
	wg.Wait()
}

// settle steps (proposers in turn) until every upload submitted so far is
// decided and applied at every validator: acked, ordered, its pieces
// decided and evaluated, its verdicts applied (four heights from a submit).
// It returns the outcomes published meanwhile, by transfer id, at validator 0.
func (n *chainNet) settle() map[[32]byte]ledger.Reason {
	n.t.Helper()
	out := map[[32]byte]ledger.Reason{}
	for k := 0; k < 8; k++ {
		n.step(int(n.height+1) % len(n.vals))
		for _, o := range n.vals[0].obs.views[len(n.vals[0].obs.views)-1].Outcomes {
			out[o.ID] = o.Reason
		}
		busy := false
		for _, v := range n.vals {
			if len(v.mem.uploads) > 0 || v.app.HasWork(0) {
				busy = true
			}
		}
		if !busy {
			return out
		}
	}
	n.t.Fatalf("uploads still pending after 8 heights")
	return nil
}

// propose builds the next block at validator i.
func (n *chainNet) propose(i int) []byte {
	n.t.Helper()
	n.syncPieces(i)
	v, err := n.vals[i].app.BuildProposal(n.height+1, n.last)
	n.syncPieces(i)
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
	n.each(func(i int, v *validator) error {
		n.syncPieces(i)
		if err := v.app.ValidateProposal(h, value); err != nil {
			return fmt.Errorf("validator %d refuses height %d: %w", i, h, err)
		}
		x, err := v.app.ExtendVote(h, round, value)
		if err != nil {
			return fmt.Errorf("validator %d extends height %d: %w", i, h, err)
		}
		n.syncPieces(i)
		exts[i] = x
		return nil
	})
	n.each(func(i int, v *validator) error {
		for j, x := range exts {
			if i != j {
				if err := v.app.VerifyExtension(h, j, value, x); err != nil {
					return fmt.Errorf("validator %d refuses %d's extension: %w", i, j, err)
				}
			}
		}
		return nil
	})
	return exts
}

// each runs f for every validator, one after another or (n.parallel)
// concurrently, and fails the test with the first error.
func (n *chainNet) each(f func(i int, v *validator) error) {
	n.t.Helper()
	errs := make([]error, len(n.vals))
	if n.parallel {
		var wg sync.WaitGroup
		for i, v := range n.vals {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = f(i, v)
			}()
		}
		wg.Wait()
	} else {
		for i, v := range n.vals {
			if errs[i] = f(i, v); errs[i] != nil {
				break
			}
		}
	}
	for _, err := range errs {
		if err != nil {
			n.t.Fatal(err)
		}
	}
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
	n.each(func(i int, v *validator) error {
		n.syncPieces(i)
		if err := v.app.Finalize(n.height+1, value, cert); err != nil {
			return fmt.Errorf("validator %d finalizes height %d: %w", i, n.height+1, err)
		}
		n.syncPieces(i)
		return nil
	})
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

// verdict is the outcome of u in any view validator i published.
func (n *chainNet) verdict(i int, u *Upload) (ledger.Reason, bool) {
	for _, v := range n.vals[i].obs.views {
		for _, o := range v.Outcomes {
			if o.ID == idOf(u) {
				return o.Reason, true
			}
		}
	}
	return 0, false
}

func idOf(u *Upload) [32]byte { return u.Envs[0].ID() }

// acksOf is how many of the carried precommits of the next height ack u.
func (n *chainNet) acksOf(u *Upload) int { return bits.OnesCount64(ackSets(n.carried())[u.ID()]) }

// bookBytes is a canonical encoding of everything a book holds that matters
// for the next decisions: height, registry, and each shard's state at every
// retained height.
func bookBytes(t *testing.T, b *ledger.Book) []byte {
	t.Helper()
	from := uint64(0)
	if b.Height() >= ledger.StateWindow {
		from = b.Height() - ledger.StateWindow + 1
	}
	return bookBytesFrom(t, b, from)
}

// bookBytesFrom is bookBytes with shard states from book height from on.
func bookBytesFrom(t testing.TB, b *ledger.Book, from uint64) []byte {
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

// balance decrypts what validator i's book holds for a user at the book's
// height: available plus pending, everything the account owns.
func (n *chainNet) balance(i int, name string) uint64 {
	n.t.Helper()
	a, p := n.balances(i, name)
	return a + p
}

// balances decrypts a user's available and pending balances in validator
// i's book at its height: the ciphertext validators re-encrypt to owners
// (Engine.BalancesFromRecomposed) threshold-decrypted with the first t key
// shares, as the committee would (a test holds every share; no owner key is
// involved).
func (n *chainNet) balances(i int, name string) (avail, pending uint64) {
	n.t.Helper()
	v := n.vals[i]
	book := v.app.book
	acct, ok := book.Account(n.users[name].id)
	if !ok {
		n.t.Fatalf("no account for %s", name)
	}
	st, ok1 := book.State(acct.Shard, book.Height())
	pst, ok2 := book.PendingState(acct.Shard, book.Height())
	if !ok1 || !ok2 {
		n.t.Fatalf("no state for shard %d at %d", acct.Shard, book.Height())
	}
	eng := v.cfg.Engine
	sum, err := eng.Recompose(st)
	if err != nil {
		n.t.Fatal(err)
	}
	psum, err := eng.Recompose(pst)
	if err != nil {
		n.t.Fatal(err)
	}
	ct, err := eng.BalancesFromRecomposed(sum, psum, acct.Lane)
	if err != nil {
		n.t.Fatal(err)
	}
	var shares []*ledger.DecShare
	for k := 0; k < n.c.com.T; k++ {
		s, err := n.c.dec.Share(n.c.shares[k], ct)
		if err != nil {
			n.t.Fatal(err)
		}
		shares = append(shares, s)
	}
	vals, err := n.c.dec.Combine(ct, shares)
	if err != nil {
		n.t.Fatal(err)
	}
	return vals[n.c.p.Slot(0, 0, acct.Lane)], vals[n.c.p.Slot(0, 1, acct.Lane)]
}

// apply builds the upload moving amount of name's pending balance (which is
// pending at the book's height) into its available one, as its wallet would.
func (n *chainNet) apply(name string, amount, pending uint64) *Upload {
	n.t.Helper()
	return n.operation(name, n.users[name].id, amount, pending)
}

// assertBalances checks every validator's book holds exactly these balances.
func (n *chainNet) assertBalances(want map[string]uint64) {
	n.t.Helper()
	for i := range n.vals {
		for name, w := range want {
			if got := n.balance(i, name); got != w {
				n.t.Fatalf("validator %d: %s holds %d, want %d", i, name, got, w)
			}
		}
	}
}

// assertBooksIdentical checks every validator's book is byte-identical to
// validator 0's.
func (n *chainNet) assertBooksIdentical() {
	n.t.Helper()
	n.assertSameBytes(func(b *ledger.Book) []byte { return bookBytes(n.t, b) })
}

// assertSameBytes fails unless enc gives the same bytes for every
// validator's book.
func (n *chainNet) assertSameBytes(enc func(*ledger.Book) []byte) {
	n.t.Helper()
	ref := enc(n.vals[0].app.book)
	for i := 1; i < len(n.vals); i++ {
		if !bytes.Equal(enc(n.vals[i].app.book), ref) {
			n.t.Fatalf("validator %d's book differs from validator 0's at height %d", i, n.height)
		}
	}
}

// resign makes an upload of raw sealed bytes under a copy of env re-signed
// by user name (its account as sender if from is set): what a client that
// alters the sealed bytes, or an attacker copying them, sends.
func (n *chainNet) resign(raw []byte, env ledger.Envelope, name string, from bool) *Upload {
	n.t.Helper()
	u := n.users[name]
	env.CTHash = sha256.Sum256(raw)
	if from {
		env.From = u.id
	}
	env.Sig = ed25519.Sign(u.key, env.SigningBytes())
	return n.vals[0].open.NewUpload(raw, []ledger.Envelope{env}, time.Now())
}

// blocks decodes the finalized blocks from..to of validator 0's store.
func (n *chainNet) blocks(from, to uint64) []*Block {
	n.t.Helper()
	var out []*Block
	for h := from; h <= to; h++ {
		raw, err := n.vals[0].st.Block(h)
		if err != nil {
			n.t.Fatal(err)
		}
		b, err := DecodeBlock(raw)
		if err != nil {
			n.t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// assertStatesIdentical checks every validator's book is at the same height
// with byte-identical registries and newest shard states: bookBytes without
// the whole window of older states, cheap enough to run every few heights.
func (n *chainNet) assertStatesIdentical() {
	n.t.Helper()
	n.assertSameBytes(func(b *ledger.Book) []byte { return bookBytesFrom(n.t, b, b.Height()) })
}

// assertNobodyNamed fails if any validator's view ever named a validator
// faulty.
func (n *chainNet) assertNobodyNamed() {
	n.t.Helper()
	for i, v := range n.vals {
		for _, view := range v.obs.views {
			if len(view.Faulty) != 0 {
				n.t.Fatalf("validator %d named %v faulty at height %d", i, view.Faulty, view.Height)
			}
		}
	}
}

// tamperedProposal is validator i's next proposal, altered by tamper as a
// byzantine proposer would.
// orderingAll is validator i's proposal tampered to order every one of ups
// (an honest proposer would defer some).
func (n *chainNet) orderingAll(i int, ups []*Upload) []byte {
	n.t.Helper()
	return n.tamperedProposal(i, func(b *Block) {
		have := map[[32]byte]bool{}
		for _, s := range b.Subs {
			have[s.CTHash] = true
		}
		for _, u := range ups {
			if !have[u.Hash] {
				b.Subs = append(b.Subs, SubRef{CTHash: u.Hash, Envelopes: u.Envs})
			}
		}
	})
}

func (n *chainNet) tamperedProposal(i int, tamper func(*Block)) []byte {
	n.t.Helper()
	n.syncPieces(i)
	n.vals[i].app.faults.TamperProposal = tamper
	value, err := n.vals[i].app.BuildProposal(n.height+1, n.last)
	n.vals[i].app.faults.TamperProposal = nil
	if err != nil {
		n.t.Fatal(err)
	}
	return value
}

// assertRefused fails unless every validator refuses value at height as an
// invalid block (ErrBlock); what names the block in the failure.
func (n *chainNet) assertRefused(height uint64, value []byte, what string) {
	n.t.Helper()
	for i, v := range n.vals {
		if err := v.app.ValidateProposal(height, value); !errors.Is(err, ErrBlock) {
			n.t.Fatalf("%s: validator %d accepts the block: %v", what, i, err)
		}
	}
}
