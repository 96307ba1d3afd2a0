package node

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/client"
	"github.com/zkbank/zkbank/ledger"
)

// holderOf is a cluster user as a wallet: client.Holder, and it signs score
// requests with its account key (as *wallet.Wallet does).
type holderOf struct{ u *user }

func (h holderOf) ID() ledger.AccountID        { return h.u.id }
func (h holderOf) SignPub() ed25519.PublicKey  { return h.u.key.Public().(ed25519.PublicKey) }
func (h holderOf) Owner() *ledger.OwnerKeys    { return h.u.own }
func (h holderOf) SignKey() ed25519.PrivateKey { return h.u.key }
func (h holderOf) BalanceSignature(chain string, q ledger.BalanceQuery, pk []byte) []byte {
	return ed25519.Sign(h.u.key, ledger.BalanceQueryBytes(chain, h.u.id, q, pk))
}

func (c *cluster) holder(name string) holderOf { return holderOf{c.users[name]} }

func (c *cluster) multi() *client.Multi {
	c.t.Helper()
	m, err := client.NewMulti(c.gen, client.WithParams(c.p))
	if err != nil {
		c.t.Fatal(err)
	}
	return m
}

// consent is owner's signed consent (or revocation) for lender.
func (c *cluster) consent(owner, lender string, scope ledger.ConsentScope, expiry, nonce uint64) ledger.Consent {
	cs := ledger.Consent{Chain: c.gen.ChainID, Owner: c.users[owner].id, Lender: c.users[lender].id, Scope: scope, Expiry: expiry, Nonce: nonce}
	cs.Sign(c.users[owner].key)
	return cs
}

// postConsent posts a consent to node i and returns the HTTP status and the
// decoded answer (the consent id, or the error).
func (c *cluster) postConsent(i int, cs ledger.Consent) (int, string) {
	c.t.Helper()
	raw, _ := cs.MarshalBinary()
	body, _ := json.Marshal(api.ConsentRequest{Consent: raw})
	resp, err := http.Post(c.apis[i]+api.PathConsents, api.ContentJSON, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e api.Error
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Code + ": " + e.Error
	}
	var r api.ConsentResponse
	_ = json.NewDecoder(resp.Body).Decode(&r)
	return resp.StatusCode, r.ID
}

func (c *cluster) lending(i int, name string) api.Lending {
	c.t.Helper()
	var l api.Lending
	if err := c.getJSON(i, api.LendingPath(c.users[name].id.String()), &l); err != nil {
		c.t.Fatal(err)
	}
	return l
}

// waitConsentNonce waits until every node has recorded owner's consent of
// this nonce.
func (c *cluster) waitConsentNonce(owner string, nonce uint64) {
	c.t.Helper()
	c.waitFor(fmt.Sprintf("%s's consent %d recorded everywhere", owner, nonce), 2*time.Minute, func() bool {
		for i := range c.apis {
			if c.lending(i, owner).ConsentNonce < nonce {
				return false
			}
		}
		return true
	})
}

// commonApplied is the lowest applied height among the nodes: a height
// every node answers at.
func (c *cluster) commonApplied() uint64 {
	at := uint64(0)
	for i := range c.apis {
		if h := c.status(i).AppliedHeight; at == 0 || h < at {
			at = h
		}
	}
	return at
}

// scoreRequest is reader's signed request for owner's score (reader ==
// owner: the owner's own), re-encrypted to the reader's key, at the common
// height, with a fresh nonce.
func (c *cluster) scoreRequest(owner, reader string, consentNonce uint64) api.ScoreRequest {
	return c.scoreRequestAt(owner, reader, consentNonce, c.commonApplied())
}

// scoreRequestAt is scoreRequest for the score at height at.
func (c *cluster) scoreRequestAt(owner, reader string, consentNonce, at uint64) api.ScoreRequest {
	o, r := c.users[owner], c.users[reader]
	pkb, _ := r.own.PK.MarshalBinary()
	q := ledger.BalanceQuery{Height: at, Expiry: at + 32, Nonce: uint64(time.Now().UnixNano())}
	req := api.ScoreRequest{Account: o.id.String(), Height: q.Height, Expiry: q.Expiry, Nonce: q.Nonce, ConsentNonce: consentNonce,
		SignPub: hex.EncodeToString(r.key.Public().(ed25519.PublicKey)), OwnerPK: base64.StdEncoding.EncodeToString(pkb)}
	var requester ledger.AccountID
	if reader != owner {
		requester, req.Requester = r.id, r.id.String()
	}
	req.Signature = hex.EncodeToString(ed25519.Sign(r.key, ledger.ScoreQueryBytes(c.gen.ChainID, o.id, requester, consentNonce, q, pkb)))
	return req
}

// postScore posts a score request to node i: the HTTP status, the error
// code and message (empty on success).
func (c *cluster) postScore(i int, req api.ScoreRequest) (int, string, string) {
	c.t.Helper()
	body, _ := json.Marshal(req)
	resp, err := http.Post(c.apis[i]+api.PathScore, api.ContentJSON, bytes.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var e api.Error
	if resp.StatusCode != http.StatusOK {
		_ = json.NewDecoder(resp.Body).Decode(&e)
	}
	return resp.StatusCode, e.Code, e.Error
}

// reencrypted counts the score re-encryption shares every node released.
func (c *cluster) reencrypted() float64 {
	sum := 0.0
	for i := range c.apis {
		sum += c.metric(i, `zkbank_reencryptions_total{query="score"}`)
	}
	return sum
}

// refusedEverywhere posts req to every node and checks each refuses it with
// status and code, and that no node re-encrypted anything.
func (c *cluster) refusedEverywhere(t *testing.T, req api.ScoreRequest, status int, code string) {
	t.Helper()
	before := c.reencrypted()
	for i := range c.apis {
		got, gotCode, msg := c.postScore(i, req)
		if got != status || gotCode != code {
			t.Fatalf("node %d answered %d %q (%s), want %d %q", i, got, gotCode, msg, status, code)
		}
		if i == 0 {
			t.Logf("refusal: %d %s: %s", got, gotCode, msg)
		}
	}
	if after := c.reencrypted(); after != before {
		t.Fatalf("a refused request released %v re-encryption shares", after-before)
	}
}

// A score consent is submitted, relayed and recorded in a block (and listed
// there, and as a loan application); the lender then reads the owner's
// score, re-encrypted to its own key, and it is exactly the formula for the
// owner's available balance; the owner reads the same score; and a check
// the owner sends to the lender is listed in blocks and statuses with its
// kind, minimum and policy.
func TestLending_ConsentedLenderAndOwnerReadTheScore(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-validator cluster in -short mode")
	}
	c := newCluster(t, 4, map[string]uint64{"alice": 10_000, "bob": 500, "carol": 0})
	c.waitReady(0, 1, 2, 3)
	m := c.multi()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	from := c.commonApplied()
	cs := c.consent("alice", "carol", ledger.ScopeScore, from+10_000, 1)
	id, err := m.SubmitConsent(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	c.waitConsentNonce("alice", 1)
	for i := range c.apis {
		l := c.lending(i, "alice")
		if len(l.Consents) != 1 || l.Consents[0].ID != id || l.Consents[0].Lender != c.users["carol"].id.String() || l.Consents[0].Scope != "score" || l.Consents[0].Revoked {
			t.Fatalf("node %d: consents %+v", i, l.Consents)
		}
		if len(l.Applications) != 1 || l.Applications[0].ID != id || l.Applications[0].Lender != c.users["carol"].id.String() {
			t.Fatalf("node %d: applications %+v", i, l.Applications)
		}
		if sp := ledger.DefaultScoreParams; l.Score != (api.ScoreParams{Base: sp.Base, Avail: sp.Avail, Repaid: sp.Repaid, Penalty: sp.Penalty, Grace: sp.Grace}) || l.Defaults != 0 {
			t.Fatalf("node %d: score parameters %+v, defaults %d", i, l.Score, l.Defaults)
		}
	}
	if h := c.blockWithConsent(from, id); h == 0 {
		t.Fatal("no block lists the consent")
	}

	bal, err := m.Balance(ctx, c.holder("alice"))
	if err != nil {
		t.Fatal(err)
	}
	want := ledger.DefaultScoreParams.Score(bal.Amount, 0, 0)
	s, err := m.LenderScore(ctx, c.holder("carol"), c.users["alice"].id, 1)
	if err != nil || s.Value != want {
		t.Fatalf("lender's read: %+v %v, want %d", s, err, want)
	}
	own, err := m.ScoreAt(ctx, c.holder("alice"), s.Height)
	if err != nil || own.Value != want {
		t.Fatalf("owner's read: %+v %v, want %d", own, err, want)
	}
	t.Logf("score %d (available %d) at height %d", s.Value, bal.Amount, s.Height)

	// A check to the lender, built on the score the owner just read.
	policy := sha256.Sum256([]byte("carol's policy"))
	a := c.account("alice")
	spec := ledger.TransferSpec{From: c.users["alice"].id, Key: c.users["alice"].key, Lane: a.Lane, To: c.users["carol"].id, Balance: own.Value, Height: own.Height,
		Nonce: a.Nonce + 1, Prev: c.lastOp(a), Kind: ledger.OpCheck, Min: own.Value - 100, Policy: policy}
	sub, err := c.dealer().Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	st := c.post(sub, 1)
	if st.Status != api.StatusCommitted || st.Kind != "check" || st.Min != own.Value-100 || st.Policy != hex.EncodeToString(policy[:]) {
		t.Fatalf("check status %+v", st)
	}
	var blk api.Block
	if err := c.getJSON(0, api.PathBlock+fmt.Sprint(st.Height), &blk); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, x := range blk.Transfers {
		if x.ID == st.ID {
			found = x.Kind == "check" && x.Min == st.Min && x.Policy == st.Policy && x.To == c.users["carol"].id.String()
		}
	}
	if !found {
		t.Fatalf("block %d does not list the check with its kind: %+v", st.Height, blk.Transfers)
	}
	c.waitFor("the check recorded as an application", time.Minute, func() bool {
		for _, ap := range c.lending(0, "alice").Applications {
			if ap.ID == st.ID {
				return true
			}
		}
		return false
	})
}

// A consent posted to one validator reaches the others: with that
// validator cut off from consensus (it never proposes), the others record
// it.
func TestLending_ConsentIsRelayedToTheOtherValidators(t *testing.T) {
	if testing.Short() {
		t.Skip("multi-validator cluster in -short mode")
	}
	var cut *faults
	c := newCluster(t, 4, map[string]uint64{"alice": 10_000, "bob": 500, "carol": 0}, func(i int) *faults {
		if i == 0 {
			cut = &faults{}
			return cut
		}
		return nil
	})
	c.waitReady(0, 1, 2, 3)
	cut.partitioned.Store(true)
	h := c.status(1).AppliedHeight
	if st, msg := c.postConsent(0, c.consent("alice", "carol", ledger.ScopeScore, h+10_000, 1)); st != http.StatusAccepted {
		t.Fatalf("consent refused: %d %s", st, msg)
	}
	c.waitFor("the others record the consent", 2*time.Minute, func() bool {
		for _, i := range []int{1, 2, 3} {
			if c.lending(i, "alice").ConsentNonce < 1 {
				return false
			}
		}
		return true
	})
	cut.partitioned.Store(false)
}

// blockWithConsent is the first height from `from` whose block lists the
// consent id (0 if none up to node 0's height).
func (c *cluster) blockWithConsent(from uint64, id string) uint64 {
	top := c.status(0).Height
	for h := max(from, 1); h <= top; h++ {
		var b api.Block
		if err := c.getJSON(0, api.PathBlock+fmt.Sprint(h), &b); err != nil {
			continue
		}
		for _, ci := range b.Consents {
			if ci.ID == id && ci.Owner != "" && ci.Scope == "score" {
				return h
			}
		}
	}
	return 0
}

// consentedCluster starts a cluster in which alice has consented to carol
// reading her score (consent nonce 1, for long), recorded everywhere. It
// returns the height the consent was made at.
func consentedCluster(t *testing.T) (*cluster, uint64) {
	if testing.Short() {
		t.Skip("multi-validator cluster in -short mode")
	}
	c := newCluster(t, 4, map[string]uint64{"alice": 10_000, "bob": 500, "carol": 0})
	c.waitReady(0, 1, 2, 3)
	h := c.commonApplied()
	if st, msg := c.postConsent(0, c.consent("alice", "carol", ledger.ScopeScore, h+10_000, 1)); st != http.StatusAccepted {
		t.Fatalf("consent refused: %d %s", st, msg)
	}
	c.waitConsentNonce("alice", 1)
	return c, h
}

// A consent does not open the owner's past: the consented lender asking
// for the score at a retained height from before the consent was recorded
// gets 403 no_consent and nothing; the same lender reads the score now.
func TestAttack_ScoreFromBeforeTheConsentIsRefused(t *testing.T) {
	c, h := consentedCluster(t)
	c.refusedEverywhere(t, c.scoreRequestAt("alice", "carol", 1, h), http.StatusForbidden, "no_consent")
	if st, code, msg := c.postScore(0, c.scoreRequest("alice", "carol", 1)); st != http.StatusOK {
		t.Fatalf("a score after the consent: %d %s %s", st, code, msg)
	}
}

// A consent under a nonce its owner already used (the recorded one again,
// or another one) is refused when submitted, as is a badly signed one.
func TestAttack_ReplayedConsentIsRefusedAtSubmission(t *testing.T) {
	c, h := consentedCluster(t)
	for _, cs := range []ledger.Consent{
		c.consent("alice", "carol", ledger.ScopeScore, h+10_000, 1), // the recorded one again
		c.consent("alice", "bob", ledger.ScopeScore, h+10_000, 1),   // another under a used nonce
	} {
		st, msg := c.postConsent(2, cs)
		if st != http.StatusBadRequest || !strings.HasPrefix(msg, "bad_consent: ") || !strings.Contains(msg, "replayed") {
			t.Fatalf("replayed consent: %d %s", st, msg)
		}
		t.Logf("refusal: %d %s", st, msg)
	}
	forged := c.consent("alice", "bob", ledger.ScopeScore, h+10_000, 9)
	forged.Sig[0] ^= 1
	if st, msg := c.postConsent(1, forged); st != http.StatusBadRequest || !strings.Contains(msg, "bad signature") {
		t.Fatalf("badly signed consent: %d %s", st, msg)
	}
	// Nothing of it reached a block: alice's consents are as they were.
	for i := range c.apis {
		if l := c.lending(i, "alice"); l.ConsentNonce != 1 || len(l.Consents) != 1 {
			t.Fatalf("node %d: consent nonce %d, consents %+v", i, l.ConsentNonce, l.Consents)
		}
	}
}

// A lender the owner never consented to (or under a nonce the owner never
// used) gets a refusal from every validator and nothing re-encrypted.
func TestAttack_LenderWithoutConsentGetsNothing(t *testing.T) {
	c, _ := consentedCluster(t)
	c.refusedEverywhere(t, c.scoreRequest("alice", "bob", 2), http.StatusForbidden, "no_consent")
	c.refusedEverywhere(t, c.scoreRequest("alice", "carol", 5), http.StatusForbidden, "no_consent")
	c.refusedEverywhere(t, c.scoreRequest("bob", "carol", 1), http.StatusForbidden, "no_consent")
}

// A lender naming the nonce of the owner's consent to another lender is
// refused.
func TestAttack_ForeignConsentIsRefused(t *testing.T) {
	c, _ := consentedCluster(t)
	c.refusedEverywhere(t, c.scoreRequest("alice", "bob", 1), http.StatusForbidden, "consent_foreign")
}

// A score request altered in any signed field, or signed by another key
// than the requester's, is refused.
func TestAttack_AlteredScoreRequestIsRefused(t *testing.T) {
	c, _ := consentedCluster(t)
	for name, alter := range map[string]func(*api.ScoreRequest){
		"consent nonce": func(r *api.ScoreRequest) { r.ConsentNonce = 2 },
		"height":        func(r *api.ScoreRequest) { r.Height-- },
		"expiry":        func(r *api.ScoreRequest) { r.Expiry++ },
		"nonce":         func(r *api.ScoreRequest) { r.Nonce++ },
		"target key": func(r *api.ScoreRequest) {
			pk, _ := c.users["bob"].own.PK.MarshalBinary()
			r.OwnerPK = base64.StdEncoding.EncodeToString(pk)
		},
		"requester": func(r *api.ScoreRequest) { r.Requester = c.users["bob"].id.String() },
		"owner":     func(r *api.ScoreRequest) { r.Account = c.users["bob"].id.String() },
	} {
		req := c.scoreRequest("alice", "carol", 1)
		alter(&req)
		t.Logf("altered %s", name)
		c.refusedEverywhere(t, req, http.StatusForbidden, "bad_signature")
	}
	// Signed by the owner's key, claiming to be the lender.
	req := c.scoreRequest("alice", "alice", 0)
	req.Requester, req.ConsentNonce = c.users["carol"].id.String(), 1
	c.refusedEverywhere(t, req, http.StatusForbidden, "bad_signature")
	// The lender's own request, replayed as the owner's (requester dropped).
	req = c.scoreRequest("alice", "carol", 1)
	req.Requester = ""
	c.refusedEverywhere(t, req, http.StatusForbidden, "bad_signature")
}

// A captured score request is answered once per validator: its replay gets
// 409 and nothing.
func TestAttack_ReplayedScoreRequestIsRefused(t *testing.T) {
	c, _ := consentedCluster(t)
	req := c.scoreRequest("alice", "carol", 1)
	for i := range c.apis {
		before := c.reencrypted()
		if st, code, msg := c.postScore(i, req); st != http.StatusOK {
			t.Fatalf("node %d, the lender's first request: %d %s %s", i, st, code, msg)
		}
		if got := c.reencrypted(); got != before+1 {
			t.Fatalf("node %d: %v shares released for one answered request", i, got-before)
		}
		if st, code, msg := c.postScore(i, req); st != http.StatusConflict || code != "replayed" {
			t.Fatalf("node %d, replayed request: %d %s %s", i, st, code, msg)
		}
		if got := c.reencrypted(); got != before+1 {
			t.Fatalf("node %d re-encrypted a replayed request", i)
		}
	}
}

// Once the book passes a consent's expiry height, the lender gets 410 and
// nothing; the consent worked until then.
func TestAttack_ExpiredConsentIsRefused(t *testing.T) {
	c, h := consentedCluster(t)
	expiry := max(h, c.commonApplied()) + 8
	if st, msg := c.postConsent(1, c.consent("bob", "carol", ledger.ScopeScore, expiry, 1)); st != http.StatusAccepted {
		t.Fatalf("consent refused: %d %s", st, msg)
	}
	c.waitConsentNonce("bob", 1)
	if at := c.commonApplied(); at <= expiry {
		// Still live: every validator answers.
		req := c.scoreRequest("bob", "carol", 1)
		for i := range c.apis {
			if st, code, msg := c.postScore(i, req); st != http.StatusOK && c.status(i).AppliedHeight <= expiry {
				t.Fatalf("node %d refused a live consent: %d %s %s", i, st, code, msg)
			}
		}
	}
	c.waitFor("bob's consent to expire everywhere", 3*time.Minute, func() bool { return c.commonApplied() > expiry })
	c.refusedEverywhere(t, c.scoreRequest("bob", "carol", 1), http.StatusGone, "consent_expired")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := c.multi().LenderScore(ctx, c.holder("carol"), c.users["bob"].id, 1); !errors.Is(err, ledger.ErrConsentExpired) || ctx.Err() != nil {
		t.Fatalf("client: %v", err)
	}
}

// After the owner's revocation is recorded, the lender gets 409 and
// nothing (the client reports ledger.ErrConsentRevoked at once); the owner
// still reads its own score.
func TestAttack_RevokedConsentIsRefused(t *testing.T) {
	c, _ := consentedCluster(t)
	if st, msg := c.postConsent(3, c.consent("alice", "carol", ledger.ScopeRevoke, 0, 2)); st != http.StatusAccepted {
		t.Fatalf("revocation refused: %d %s", st, msg)
	}
	c.waitConsentNonce("alice", 2)
	if l := c.lending(0, "alice"); len(l.Consents) != 1 || !l.Consents[0].Revoked {
		t.Fatalf("consents after the revocation: %+v", l.Consents)
	}
	c.refusedEverywhere(t, c.scoreRequest("alice", "carol", 1), http.StatusConflict, "revoked")
	m := c.multi()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := m.LenderScore(ctx, c.holder("carol"), c.users["alice"].id, 1); !errors.Is(err, ledger.ErrConsentRevoked) || ctx.Err() != nil {
		t.Fatalf("client: %v", err)
	}
	bal, err := m.Balance(ctx, c.holder("alice"))
	if err != nil {
		t.Fatal(err)
	}
	if s, err := m.Score(ctx, c.holder("alice")); err != nil || s.Value != ledger.DefaultScoreParams.Score(bal.Amount, 0, 0) {
		t.Fatalf("owner after revoking: %+v %v", s, err)
	}
}
