package client

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/wallet"
)

// *wallet.Wallet signs score requests as it is (its SignKey).
var _ keyHolder = (*wallet.Wallet)(nil)

// fakeConsent is an owner's recorded consent as a fake node has it; a
// non-empty code makes the node refuse queries under it with that code.
type fakeConsent struct {
	lender ledger.AccountID
	nonce  uint64
	status int
	code   string
}

func (f *fakeNode) lending(w http.ResponseWriter, id string) {
	owner, err := ledger.ParseAccountID(id)
	if err != nil {
		writeJSON(w, 400, api.Error{Error: "bad account", Code: "malformed"})
		return
	}
	if _, ok := f.lanes[owner]; !ok {
		writeJSON(w, 404, api.Error{Error: "unknown account", Code: "unknown_account"})
		return
	}
	l := api.Lending{Account: owner.String(), Height: f.height}
	if c, ok := f.consents[owner]; ok {
		l.Consents = append(l.Consents, api.ConsentInfo{Lender: c.lender.String(), Scope: "score", Nonce: c.nonce, Expiry: f.height + 100})
	}
	writeJSON(w, 200, l)
}

func (f *fakeNode) consent(w http.ResponseWriter, r *http.Request) {
	var req api.ConsentRequest
	var c ledger.Consent
	if json.NewDecoder(r.Body).Decode(&req) != nil || c.UnmarshalBinary(req.Consent) != nil {
		writeJSON(w, 400, api.Error{Error: "bad consent", Code: "malformed"})
		return
	}
	f.posted = append(f.posted, c)
	if f.refuseCons != "" {
		writeJSON(w, 400, api.Error{Error: f.refuseCons, Code: "bad_consent"})
		return
	}
	id := c.ID()
	writeJSON(w, 202, api.ConsentResponse{ID: hex.EncodeToString(id[:])})
}

// score answers like a validator: signature, then consent, then a genuine
// re-encryption share of the owner's score ciphertext.
func (f *fakeNode) score(w http.ResponseWriter, r *http.Request) {
	var req api.ScoreRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeJSON(w, 400, api.Error{Error: "bad json"})
		return
	}
	owner, err := ledger.ParseAccountID(req.Account)
	lane, known := f.lanes[owner]
	if err != nil || !known {
		writeJSON(w, 404, api.Error{Error: "unknown account", Code: "unknown_account"})
		return
	}
	var requester ledger.AccountID
	if req.Requester != "" {
		if requester, err = ledger.ParseAccountID(req.Requester); err != nil {
			writeJSON(w, 400, api.Error{Error: "bad requester"})
			return
		}
	}
	pub, _ := hex.DecodeString(req.SignPub)
	pkb, _ := base64.StdEncoding.DecodeString(req.OwnerPK)
	sig, _ := hex.DecodeString(req.Signature)
	q := ledger.BalanceQuery{Height: req.Height, Expiry: req.Expiry, Nonce: req.Nonce}
	if !ledger.VerifyScoreQuery(pub, f.chain, owner, requester, req.ConsentNonce, q, pkb, sig) {
		writeJSON(w, 403, api.Error{Error: "bad signature", Code: "bad_signature"})
		return
	}
	f.scoreQueries++
	if requester != (ledger.AccountID{}) {
		c, ok := f.consents[owner]
		switch {
		case !ok || c.nonce != req.ConsentNonce:
			writeJSON(w, 403, api.Error{Error: "no consent", Code: "no_consent"})
			return
		case c.lender != requester:
			writeJSON(w, 403, api.Error{Error: "another lender's consent", Code: "consent_foreign"})
			return
		case c.code != "":
			writeJSON(w, c.status, api.Error{Error: "refused: " + c.code, Code: c.code})
			return
		}
	}
	ownerPK, err := f.com.p.DecodeOwnerPK(pkb)
	if err != nil {
		writeJSON(w, 400, api.Error{Error: "bad owner pk"})
		return
	}
	ct := f.balanceCT(lane, f.scores[owner])
	sh, err := f.com.dec.ReencShare(f.com.shares[f.index], ct, ownerPK)
	if err != nil {
		f.t.Error(err)
		return
	}
	b, _ := (&ledger.BalanceReply{Validator: f.index, Height: f.height, Lane: lane, CT: ct, Share: sh}).MarshalBinary()
	w.Header().Set("Content-Type", api.ContentBinary)
	w.Write(b)
}

func TestMulti_OwnerReadsItsOwnScore(t *testing.T) {
	c := newCluster(t)
	h := newHolder(c.com.p)
	c.fund(h, 5, 300)
	c.each(func(n *fakeNode) { n.height, n.scores[h.ID()] = 7, 200_830 })
	m, _ := NewMulti(c.gen, WithParams(c.com.p))
	s, err := m.Score(ctx(t), h)
	if err != nil || s.Value != 200_830 || s.Height != 7 {
		t.Fatalf("score %+v %v", s, err)
	}
	c.each(func(n *fakeNode) {
		if n.balanceQueries != 0 {
			t.Errorf("node %d answered a balance query for a score", n.index)
		}
	})
}

// A lender reads the owner's score under its consent, decrypted with the
// lender's own key; the owner's lane comes with the replies.
func TestMulti_LenderReadsAConsentingOwnersScore(t *testing.T) {
	c := newCluster(t)
	owner, lender := newHolder(c.com.p), newHolder(c.com.p)
	c.fund(owner, 9, 0)
	c.each(func(n *fakeNode) {
		n.height, n.scores[owner.ID()] = 4, 51_234
		n.consents[owner.ID()] = fakeConsent{lender: lender.ID(), nonce: 3}
	})
	m, _ := NewMulti(c.gen, WithParams(c.com.p))
	s, err := m.LenderScore(ctx(t), lender, owner.ID(), 3)
	if err != nil || s.Value != 51_234 || s.Height != 4 {
		t.Fatalf("lender's read %+v %v", s, err)
	}
}

// Consent refusals are final (asked once, not retried until the deadline)
// and typed as the ledger's errors.
func TestMulti_ConsentRefusalsAreFinalAndTyped(t *testing.T) {
	for _, tc := range []struct {
		name   string
		setup  func(lender, other ledger.AccountID) (fakeConsent, bool)
		nonce  uint64
		target error
	}{
		{"no consent", func(l, _ ledger.AccountID) (fakeConsent, bool) { return fakeConsent{}, false }, 1, ledger.ErrNoConsent},
		{"another lender's", func(_, o ledger.AccountID) (fakeConsent, bool) { return fakeConsent{lender: o, nonce: 1}, true }, 1, ledger.ErrConsentForeign},
		{"revoked", func(l, _ ledger.AccountID) (fakeConsent, bool) {
			return fakeConsent{lender: l, nonce: 1, status: 409, code: "revoked"}, true
		}, 1, ledger.ErrConsentRevoked},
		{"expired", func(l, _ ledger.AccountID) (fakeConsent, bool) {
			return fakeConsent{lender: l, nonce: 1, status: 410, code: "consent_expired"}, true
		}, 1, ledger.ErrConsentExpired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newCluster(t)
			owner, lender, other := newHolder(c.com.p), newHolder(c.com.p), newHolder(c.com.p)
			c.fund(owner, 1, 0)
			c.each(func(n *fakeNode) {
				n.height, n.scores[owner.ID()] = 2, 99
				if fc, ok := tc.setup(lender.ID(), other.ID()); ok {
					n.consents[owner.ID()] = fc
				}
			})
			m, _ := NewMulti(c.gen, WithParams(c.com.p))
			cx := ctx(t)
			_, err := m.LenderScore(cx, lender, owner.ID(), tc.nonce)
			if !errors.Is(err, tc.target) || !errors.Is(err, ledger.ErrConsent) {
				t.Fatalf("got %v, want %v", err, tc.target)
			}
			if cx.Err() != nil || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("a refusal was retried until the deadline: %v", err)
			}
			c.each(func(n *fakeNode) {
				if n.scoreQueries != 1 {
					t.Errorf("node %d asked %d times, want once", n.index, n.scoreQueries)
				}
			})
		})
	}
}

// A consent goes to one validator (failing over past an unreachable one)
// and comes back with its id; a refusal is final and typed.
func TestMulti_SubmitConsentFailsOverAndARefusalIsFinal(t *testing.T) {
	c := newCluster(t)
	owner, lender := newHolder(c.com.p), newHolder(c.com.p)
	cs := ledger.Consent{Chain: c.gen.ChainID, Owner: owner.ID(), Lender: lender.ID(), Scope: ledger.ScopeScore, Expiry: 100, Nonce: 1}
	cs.Sign(owner.key)
	m, _ := NewMulti(c.gen, WithParams(c.com.p))
	id0 := owner.ID()
	first := int(binary.BigEndian.Uint32(id0[:4]) % testN) // the owner's first choice
	c.nodes[first].srv.Close()
	id, err := m.SubmitConsent(ctx(t), cs)
	want := cs.ID()
	if err != nil || id != hex.EncodeToString(want[:]) {
		t.Fatalf("submit: %q %v", id, err)
	}
	next := c.nodes[(first+1)%testN]
	next.mu.Lock()
	got := len(next.posted)
	next.mu.Unlock()
	if got != 1 {
		t.Fatalf("the next validator got %d consents, want 1", got)
	}
	c.each(func(n *fakeNode) { n.refuseCons = "ledger: consent refused: replayed consent (nonce 1, last 1)" })
	if _, err := m.SubmitConsent(ctx(t), cs); !errors.Is(err, ledger.ErrConsent) {
		t.Fatalf("refused consent: %v", err)
	}
	posts := 0
	c.each(func(n *fakeNode) { posts += len(n.posted) })
	if posts != 2 {
		t.Fatalf("a refused consent was sent to %d validators, want 1 (then final)", posts-1)
	}
}

func TestMulti_LendingFactsAndUnknownAccount(t *testing.T) {
	c := newCluster(t)
	owner, lender := newHolder(c.com.p), newHolder(c.com.p)
	c.fund(owner, 0, 0)
	c.each(func(n *fakeNode) { n.height, n.consents[owner.ID()] = 12, fakeConsent{lender: lender.ID(), nonce: 2} })
	m, _ := NewMulti(c.gen, WithParams(c.com.p))
	l, err := m.Lending(ctx(t), owner.ID().String())
	if err != nil || l.Height != 12 || len(l.Consents) != 1 || l.Consents[0].Lender != lender.ID().String() {
		t.Fatalf("lending %+v %v", l, err)
	}
	if _, err := m.Lending(ctx(t), lender.ID().String()); !errors.Is(err, ErrUnknownAccount) {
		t.Fatalf("unknown account: %v", err)
	}
}

// bareHolder can read balances but has no way to sign score requests.
type bareHolder struct{ Holder }

func TestMulti_ScoreNeedsASigner(t *testing.T) {
	c := newCluster(t)
	h := newHolder(c.com.p)
	m, _ := NewMulti(c.gen, WithParams(c.com.p))
	if _, err := m.Score(ctx(t), bareHolder{h}); !errors.Is(err, ErrCannotSign) {
		t.Fatalf("got %v", err)
	}
}

// A lender's bot takes the chain's height from the nodes; one byzantine
// node reporting a huge height would make a fresh bot start scanning far
// beyond every real block. CommittedHeight is the (f+1)-th highest
// report: one liar moves it nowhere, and it needs f+1 answers.
func TestAttack_OneNodeCannotInflateTheCommittedHeight(t *testing.T) {
	c := newCluster(t)
	m, err := NewMulti(c.gen, WithParams(c.com.p))
	if err != nil {
		t.Fatal(err)
	}
	for i, h := range []uint64{40, 41, 42, 1 << 62} {
		c.nodes[i].mu.Lock()
		c.nodes[i].height = h
		c.nodes[i].mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if h, err := m.CommittedHeight(ctx); err != nil || h != 42 {
		t.Fatalf("committed height %d (%v), want 42", h, err)
	}
	c.each(func(n *fakeNode) { n.fail500 = n.index != 3 })
	if h, err := m.CommittedHeight(ctx); err == nil {
		t.Fatalf("the liar alone gave height %d", h)
	}
}
