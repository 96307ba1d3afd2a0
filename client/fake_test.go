package client

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/ledger/ledgertest"
)

// committee is a real threshold key set, built once per test binary: the
// fake nodes below answer balance queries with genuine re-encryption shares
// so the client's combine-and-decrypt path is exercised for real.
type committee struct {
	p      *ledger.Params
	keys   *ledger.PublicKeys
	shares []*ledger.KeyShare
	eng    *ledger.Engine
	dec    *ledger.Decryptor
}

var (
	comOnce sync.Once
	comVal  *committee
	comErr  error
)

const testN, testT = 4, 2

func testCommittee(t *testing.T) *committee {
	t.Helper()
	comOnce.Do(func() { comVal, comErr = newCommittee(testN, testT) })
	if comErr != nil {
		t.Fatal(comErr)
	}
	return comVal
}

func newCommittee(n, th int) (*committee, error) {
	lc, err := ledgertest.New(n, th, []byte("client-test"))
	if err != nil {
		return nil, err
	}
	return &committee{p: lc.Params, keys: lc.Keys, shares: lc.Shares, eng: lc.Engine, dec: lc.Dec}, nil
}

// holder is a test wallet: it implements Holder.
type holder struct {
	pub   ed25519.PublicKey
	key   ed25519.PrivateKey
	owner *ledger.OwnerKeys
}

func newHolder(p *ledger.Params) *holder {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	return &holder{pub: pub, key: key, owner: ledger.NewOwnerKeys(p)}
}

func (h *holder) ID() ledger.AccountID        { return ledger.AccountIDOf(h.pub) }
func (h *holder) SignPub() ed25519.PublicKey  { return h.pub }
func (h *holder) Owner() *ledger.OwnerKeys    { return h.owner }
func (h *holder) SignKey() ed25519.PrivateKey { return h.key }
func (h *holder) BalanceSignature(chain string, q ledger.BalanceQuery, pk []byte) []byte {
	return ed25519.Sign(h.key, ledger.BalanceQueryBytes(chain, h.ID(), q, pk))
}

// fakeNode serves api/ from in-memory state. It exists only in tests.
type fakeNode struct {
	t     *testing.T
	index int
	com   *committee
	srv   *httptest.Server

	mu             sync.Mutex
	chain          string
	gen            *genesis.Genesis
	height         uint64
	balances       map[ledger.AccountID]uint64            // plaintext truth the fake encrypts, at height
	past           map[uint64]map[ledger.AccountID]uint64 // balances at earlier heights
	lanes          map[ledger.AccountID]int
	nonces         map[ledger.AccountID]uint64
	notReady       bool
	fail500        bool
	bogusKey       []byte // served instead of the collective key (a byzantine validator)
	subs           []*ledger.Submission
	fates          map[string][]api.TransferStatus // id -> statuses served in turn (last repeats)
	submitted      int
	balanceQueries int

	// Lending (lending_test.go).
	scores       map[ledger.AccountID]uint64      // plaintext score per owner
	consents     map[ledger.AccountID]fakeConsent // owner -> its consent
	scoreQueries int
	posted       []ledger.Consent // consents received
	refuseCons   string           // if set, POST /v1/consents answers 400 with this
}

func newFakeNode(t *testing.T, com *committee, index int) *fakeNode {
	f := &fakeNode{t: t, index: index, com: com, chain: "test-chain",
		balances: map[ledger.AccountID]uint64{}, past: map[uint64]map[ledger.AccountID]uint64{}, lanes: map[ledger.AccountID]int{}, nonces: map[ledger.AccountID]uint64{},
		fates: map[string][]api.TransferStatus{}, scores: map[ledger.AccountID]uint64{}, consents: map[ledger.AccountID]fakeConsent{}}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", api.ContentJSON)
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func (f *fakeNode) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	w.Header().Set(api.HeaderNodeName, fmt.Sprintf("fake-%d", f.index))
	if f.fail500 {
		writeJSON(w, 500, api.Error{Error: "disk on fire", Code: "internal"})
		return
	}
	path := r.URL.Path
	switch {
	case path == api.PathStatus:
		writeJSON(w, 200, api.Status{Chain: f.chain, ValidatorIndex: f.index, Height: f.height, AppliedHeight: f.height, Ready: !f.notReady})
	case path == api.PathGenesis:
		writeJSON(w, 200, f.gen)
	case f.notReady:
		writeJSON(w, 503, api.Error{Error: "key ceremony in progress", Code: "not_ready"})
	case path == api.PathPublicKey:
		b, _ := f.com.keys.PK.MarshalBinary()
		if f.bogusKey != nil {
			b = f.bogusKey
		}
		w.Header().Set("Content-Type", api.ContentBinary)
		w.Write(b)
	case strings.HasSuffix(path, api.PathLending) && r.Method == http.MethodGet:
		f.lending(w, strings.TrimSuffix(strings.TrimPrefix(path, api.PathAccount), api.PathLending))
	case path == api.PathConsents && r.Method == http.MethodPost:
		f.consent(w, r)
	case path == api.PathScore && r.Method == http.MethodPost:
		f.score(w, r)
	case strings.HasPrefix(path, api.PathAccount) && r.Method == http.MethodGet:
		id, err := ledger.ParseAccountID(strings.TrimPrefix(path, api.PathAccount))
		if err != nil {
			writeJSON(w, 400, api.Error{Error: "bad account id", Code: "malformed"})
			return
		}
		lane, ok := f.lanes[id]
		if !ok {
			writeJSON(w, 404, api.Error{Error: "unknown account", Code: "unknown_account"})
			return
		}
		writeJSON(w, 200, api.Account{ID: id.String(), Kind: "deposit", Lane: lane, Nonce: f.nonces[id], Height: f.height})
	case path == api.PathOpen && r.Method == http.MethodPost:
		var req api.OpenRequest
		json.NewDecoder(r.Body).Decode(&req)
		pub, _ := hex.DecodeString(req.SignPub)
		id := ledger.AccountIDOf(pub)
		f.lanes[id] = len(f.lanes)
		writeJSON(w, 200, api.OpenResponse{Account: api.Account{ID: id.String(), Kind: req.Kind, Lane: f.lanes[id]}})
	case path == api.PathTransfers && r.Method == http.MethodPost:
		b, _ := io.ReadAll(r.Body)
		var sub ledger.Submission
		if err := sub.UnmarshalBinary(b); err != nil {
			writeJSON(w, 400, api.Error{Error: err.Error(), Code: "malformed"})
			return
		}
		f.submitted++
		f.subs = append(f.subs, &sub)
		var resp api.SubmitResponse
		for i := range sub.Envelopes {
			id := sub.Envelopes[i].ID()
			resp.IDs = append(resp.IDs, hex.EncodeToString(id[:]))
		}
		writeJSON(w, 202, resp)
	case strings.HasPrefix(path, api.PathTransfer):
		id := strings.TrimPrefix(path, api.PathTransfer)
		seq, ok := f.fates[id]
		if !ok {
			writeJSON(w, 404, api.Error{Error: "unknown transfer", Code: "not_found"})
			return
		}
		s := seq[0]
		if len(seq) > 1 {
			f.fates[id] = seq[1:]
		}
		writeJSON(w, 200, s)
	case strings.HasPrefix(path, api.PathHistory):
		id := strings.TrimPrefix(path, api.PathHistory)
		a, _ := ledger.ParseAccountID(id)
		if _, ok := f.lanes[a]; !ok {
			writeJSON(w, 404, api.Error{Error: "unknown account", Code: "unknown_account"})
			return
		}
		writeJSON(w, 200, api.History{Account: id, Transfers: []api.TransferStatus{{ID: "ab", Status: "committed", From: id}}})
	case path == api.PathBalance && r.Method == http.MethodPost:
		f.balance(w, r)
	default:
		writeJSON(w, 404, api.Error{Error: "no route " + path})
	}
}

func (f *fakeNode) balance(w http.ResponseWriter, r *http.Request) {
	var req api.BalanceRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSON(w, 400, api.Error{Error: "bad json"})
		return
	}
	id, err := ledger.ParseAccountID(req.Account)
	if err != nil {
		writeJSON(w, 400, api.Error{Error: "bad account"})
		return
	}
	lane, ok := f.lanes[id]
	if !ok {
		writeJSON(w, 404, api.Error{Error: "unknown account", Code: "unknown_account"})
		return
	}
	pub, _ := hex.DecodeString(req.SignPub)
	pkb, _ := base64.StdEncoding.DecodeString(req.OwnerPK)
	sig, _ := hex.DecodeString(req.Signature)
	if !ledger.VerifyBalanceQuery(pub, f.chain, id, ledger.BalanceQuery{Height: req.Height, Expiry: req.Expiry, Nonce: req.Nonce}, pkb, sig) {
		writeJSON(w, 403, api.Error{Error: "bad signature", Code: "bad_signature"})
		return
	}
	ownerPK, err := f.com.p.DecodeOwnerPK(pkb)
	if err != nil {
		writeJSON(w, 400, api.Error{Error: "bad owner pk"})
		return
	}
	at, bal := f.height, f.balances[id]
	if req.Height > f.height {
		writeJSON(w, 409, api.Error{Error: "not there yet", Code: "not_yet"})
		return
	}
	if req.Height != 0 && req.Height < f.height {
		old, ok := f.past[req.Height]
		if !ok {
			writeJSON(w, 410, api.Error{Error: "pruned", Code: "pruned"})
			return
		}
		at, bal = req.Height, old[id]
	}
	f.balanceQueries++
	ct := f.balanceCT(lane, bal)
	sh, err := f.com.dec.ReencShare(f.com.shares[f.index], ct, ownerPK)
	if err != nil {
		f.t.Error(err)
		return
	}
	b, err := (&ledger.BalanceReply{Validator: f.index, Height: at, Lane: lane, CT: ct, Share: sh}).MarshalBinary()
	if err != nil {
		f.t.Error(err)
		return
	}
	w.Header().Set("Content-Type", api.ContentBinary)
	w.Write(b)
}

// balanceCT is what every honest validator computes for (lane, balance): the
// shard state's balance ciphertext. Encryption is randomized, so the fakes
// share one cache (sharedCT) to agree byte for byte, as real validators do.
func (f *fakeNode) balanceCT(lane int, bal uint64) *rlwe.Ciphertext {
	return sharedCT(f.t, f.com, lane, bal)
}

var (
	ctMu    sync.Mutex
	ctCache = map[[2]uint64]*rlwe.Ciphertext{}
)

func sharedCT(t *testing.T, c *committee, lane int, bal uint64) *rlwe.Ciphertext {
	ctMu.Lock()
	defer ctMu.Unlock()
	k := [2]uint64{uint64(lane), bal}
	if ct, ok := ctCache[k]; ok {
		return ct
	}
	st, err := c.eng.GenesisState(c.keys.PK, map[int]uint64{lane: bal})
	if err != nil {
		t.Fatal(err)
	}
	ct, err := c.eng.BalanceCiphertext(st, lane)
	if err != nil {
		t.Fatal(err)
	}
	ctCache[k] = ct
	return ct
}

// cluster is testN fake nodes and the genesis naming them.
type cluster struct {
	com   *committee
	nodes []*fakeNode
	gen   *genesis.Genesis
}

func newCluster(t *testing.T) *cluster {
	com := testCommittee(t)
	c := &cluster{com: com}
	g := &genesis.Genesis{ChainID: "test-chain", ParamSet: ledger.ZKB128.Name, Threshold: testT, Created: time.Now()}
	for i := 0; i < testN; i++ {
		n := newFakeNode(t, com, i)
		c.nodes = append(c.nodes, n)
		pub, _, _ := ed25519.GenerateKey(rand.Reader)
		g.Validators = append(g.Validators, genesis.Validator{Index: i, Name: fmt.Sprintf("v%d", i), PeerID: "peer", ConsensusPub: hex.EncodeToString(pub), API: n.srv.URL, Power: 1})
	}
	if err := g.Validate(); err != nil {
		t.Fatal(err)
	}
	c.gen = g
	for _, n := range c.nodes {
		n.gen = g
	}
	return c
}

// each applies f to every node under its lock.
func (c *cluster) each(f func(n *fakeNode)) {
	for _, n := range c.nodes {
		n.mu.Lock()
		f(n)
		n.mu.Unlock()
	}
}

// advance moves node n to height h with a new balance for holder, keeping the
// old one readable at the old height.
func (n *fakeNode) advance(h *holder, height, bal uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	old := map[ledger.AccountID]uint64{}
	for k, v := range n.balances {
		old[k] = v
	}
	n.past[n.height] = old
	n.height, n.balances[h.ID()] = height, bal
}

func (c *cluster) fund(h *holder, lane int, bal uint64) {
	c.each(func(n *fakeNode) { n.lanes[h.ID()] = lane; n.balances[h.ID()] = bal })
}
