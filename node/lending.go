package node

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"

	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/zkbank/zkbank/actors"
	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/chain"
	"github.com/zkbank/zkbank/ledger"
)

// The lending API (docs/LENDING.md): score consents in, public lending
// facts out, and credit scores re-encrypted exactly as balances are, to the
// owner or to a lender holding the owner's recorded consent.

// maxConsentBytes bounds an encoded consent (a chain id of at most 64
// bytes, two account ids, a signature: about 220 bytes).
const maxConsentBytes = 1 << 10

// consent queues an owner's signed score consent or revocation. It is
// checked against this node's book first (bad signature, other chain,
// replayed nonce, unknown lender, expiry: 400 with the reason), so the
// mempool never holds one a proposer would have to drop, then relayed to
// the other validators, whichever of them proposes next.
func (s *server) consent(w http.ResponseWriter, r *http.Request) {
	if !s.ready(w) {
		return
	}
	var req api.ConsentRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "malformed", "body: "+err.Error())
		return
	}
	c, ok := s.consentOf(w, r, &req)
	if !ok {
		return
	}
	err := s.n.addConsent(c, true)
	switch {
	case errors.Is(err, ledger.ErrConsent):
		writeErr(w, http.StatusBadRequest, "bad_consent", err.Error())
		return
	case errors.Is(err, actors.ErrPoolFull):
		w.Header().Set("Retry-After", "1")
		writeErr(w, http.StatusTooManyRequests, "throttled", err.Error())
		return
	case err != nil:
		writeErr(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	id := c.ID()
	writeJSON(w, http.StatusAccepted, api.ConsentResponse{ID: hex.EncodeToString(id[:])})
}

// consentOf decodes the consent of a POST /v1/consents request and
// charges it to the client's address; when ok is false it has answered the
// request.
func (s *server) consentOf(w http.ResponseWriter, r *http.Request, req *api.ConsentRequest) (c ledger.Consent, ok bool) {
	if len(req.Consent) > maxConsentBytes {
		writeErr(w, http.StatusBadRequest, "malformed", "consent too large")
		return c, false
	}
	if err := c.UnmarshalBinary(req.Consent); err != nil {
		writeErr(w, http.StatusBadRequest, "malformed", "consent: "+err.Error())
		return c, false
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil && !s.n.consentsByIP.allow(host) {
		w.Header().Set("Retry-After", "2")
		writeErr(w, http.StatusTooManyRequests, "rate_limited", "too many consents from this address; retry later")
		return c, false
	}
	return c, true
}

// addConsent is the one path by which a consent enters the mempool, from a
// client or a peer: checked against the published book here, once.
// Consents from clients are relayed to every other validator, as account
// openings are.
func (n *Node) addConsent(c ledger.Consent, relay bool) error {
	v := n.view.Load()
	if v == nil {
		return errors.New("node is not ready")
	}
	if err := v.Book.CheckConsent(&c); err != nil {
		return err
	}
	if err := n.mem.AddConsent(c); err != nil {
		return fmt.Errorf("node: %w", err)
	}
	n.cons.WorkAvailable()
	if relay && n.faults.relays() {
		b, err := c.MarshalBinary()
		if err != nil {
			return fmt.Errorf("node: %w", err)
		}
		for i, id := range n.peers {
			if i != n.self {
				n.net.Send(id, protoConsent, b)
			}
		}
	}
	return nil
}

// handleConsent receives a consent a peer relayed, rate limited per peer.
func (n *Node) handleConsent(_ context.Context, from peer.ID, b []byte) ([]byte, error) {
	if len(b) > maxConsentBytes {
		return nil, errors.New("bad consent message")
	}
	if !n.consentsByPeer.allow(from.String()) {
		return nil, errThrottled
	}
	var c ledger.Consent
	if err := c.UnmarshalBinary(b); err != nil {
		return nil, err
	}
	return nil, n.addConsent(c, false)
}

// lending serves an account's public lending facts.
func (s *server) lending(w http.ResponseWriter, r *http.Request) {
	if !s.ready(w) {
		return
	}
	id, err := ledger.ParseAccountID(r.PathValue("id"))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	book := s.n.view.Load().Book
	a, ok := book.Account(id)
	if !ok {
		writeErr(w, http.StatusNotFound, "unknown_account", "unknown account "+id.Short())
		return
	}
	writeJSON(w, http.StatusOK, lendingOf(a, book))
}

func lendingOf(a *ledger.Account, book *ledger.Book) api.Lending {
	sp := book.ScoreParams()
	out := api.Lending{Account: a.ID.String(), Height: book.Height(), Defaults: a.Defaults, ConsentNonce: a.ConsentNonce,
		Loans: make([]api.LoanInfo, 0, len(a.Loans)), Consents: make([]api.ConsentInfo, 0, len(a.Consents)),
		Applications: make([]api.ApplicationInfo, 0, len(a.Applications)),
		Score:        api.ScoreParams{Base: sp.Base, Avail: sp.Avail, Repaid: sp.Repaid, Penalty: sp.Penalty, Grace: sp.Grace}}
	for _, l := range a.Loans {
		out.Loans = append(out.Loans, api.LoanInfo{ID: hex.EncodeToString(l.ID[:]), Lender: l.Lender.String(), Start: l.Start,
			Due: append([]uint64{}, l.Due...), Paid: l.Paid, Missed: l.Missed})
	}
	for i := range a.Consents {
		ci := consentInfo(&a.Consents[i])
		ci.Owner = ""
		out.Consents = append(out.Consents, ci)
	}
	for _, ap := range a.Applications {
		out.Applications = append(out.Applications, api.ApplicationInfo{ID: hex.EncodeToString(ap.ID[:]), Lender: ap.Lender.String(), Height: ap.Height})
	}
	return out
}

func consentInfo(c *ledger.Consent) api.ConsentInfo {
	id := c.ID()
	return api.ConsentInfo{ID: hex.EncodeToString(id[:]), Owner: c.Owner.String(), Lender: c.Lender.String(), Scope: c.Scope.String(),
		Expiry: c.Expiry, Nonce: c.Nonce, Revoked: c.Revoked}
}

// score re-encrypts an account's credit score to the requester's key: the
// owner's own request, or a lender's naming the owner's recorded consent.
// Every check (signature, consent, expiry, replay, height) passes before
// anything is computed or re-encrypted; the score is computed from this
// node's published book, as a balance is, and answered as a balance reply.
func (s *server) score(w http.ResponseWriter, r *http.Request) {
	if !s.ready(w) {
		return
	}
	var req api.ScoreRequest
	if !decodeBody(w, r, &req) {
		return
	}
	owner, requester, err := scoreParties(req)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	sq, ok := decodeSigned(w, req.SignPub, req.Signature, req.OwnerPK)
	if !ok {
		return
	}
	view := s.n.view.Load()
	acct, ok := view.Book.Account(owner)
	if !ok {
		writeErr(w, http.StatusNotFound, "unknown_account", "unknown account "+owner.Short())
		return
	}
	// Replays are counted per signer: the owner, or the lender.
	sq.kind, sq.requester = queryScore, owner
	if requester != (ledger.AccountID{}) {
		sq.requester = requester
	}
	sq.q = ledger.BalanceQuery{Height: req.Height, Expiry: req.Expiry, Nonce: req.Nonce}
	if !ledger.VerifyScoreQuery(sq.pub, s.n.gen.ChainID, owner, requester, req.ConsentNonce, sq.q, sq.pkb, sq.sig) {
		writeErr(w, http.StatusForbidden, "bad_signature", "score request not signed by the requester's account key (or altered)")
		return
	}
	ownerPK, at, ok := s.admitQuery(w, view, sq)
	if !ok {
		return
	}
	// The consent is checked after the height rules: a node behind the
	// height asked answers "not_yet" (the client retries) rather than
	// refusing a consent it has not recorded yet.
	if requester != (ledger.AccountID{}) {
		c, err := view.Book.ScoreConsent(owner, requester, req.ConsentNonce)
		if err == nil && at < c.Recorded {
			// A consent does not open the owner's past.
			err = fmt.Errorf("%w: the score at height %d is from before the consent (recorded for heights from %d)", ledger.ErrNoConsent, at, c.Recorded)
		}
		if err != nil {
			status, code := consentRefusal(err)
			writeErr(w, status, code, fmt.Sprintf("score of %s refused to %s under consent nonce %d: %v", owner.Short(), requester.Short(), req.ConsentNonce, err))
			return
		}
	}
	eng := s.n.queryEngine()
	defer s.n.releaseEngine(eng)
	ct, err := s.n.scoreCT(eng, view, acct, at)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	s.writeReenc(w, queryScore, ct, ownerPK, at, acct.Lane)
}

// scoreParties parses the owner and the requester of a score request; the
// requester is zero when the owner asks (an empty Requester, or the
// owner's own id).
func scoreParties(req api.ScoreRequest) (owner, requester ledger.AccountID, err error) {
	if owner, err = ledger.ParseAccountID(req.Account); err != nil {
		return owner, requester, err
	}
	if req.Requester == "" {
		return owner, requester, nil
	}
	if requester, err = ledger.ParseAccountID(req.Requester); err != nil {
		return owner, requester, fmt.Errorf("requester: %w", err)
	}
	if requester == owner {
		requester = ledger.AccountID{}
	}
	return owner, requester, nil
}

// consentRefusal maps a consent refusal to its HTTP status and code: a
// lender without a consent (or using another lender's) is forbidden; a
// revoked one conflicts with the owner's later word; an expired one is
// gone. Clients tell them apart by code.
func consentRefusal(err error) (int, string) {
	switch {
	case errors.Is(err, ledger.ErrConsentRevoked):
		return http.StatusConflict, "revoked"
	case errors.Is(err, ledger.ErrConsentExpired):
		return http.StatusGone, "consent_expired"
	case errors.Is(err, ledger.ErrConsentForeign):
		return http.StatusForbidden, "consent_foreign"
	}
	return http.StatusForbidden, "no_consent"
}

// scoreCT is an account's score at height at, masked to its anchor slot
// (the available balance's slot of a balance reply). Computed once per
// published view, height and lane, with only that lane's public part, so
// validators whose books differ in other accounts answer the same bytes.
func (n *Node) scoreCT(eng *ledger.Engine, view *chain.View, acct *ledger.Account, at uint64) (*rlwe.Ciphertext, error) {
	k := scoreKey{view: view.Height, shard: acct.Shard, at: at, lane: acct.Lane}
	sum, err := n.scores.get(k, func() (*rlwe.Ciphertext, error) {
		return view.Book.ScoreAt(eng, acct.Shard, at, []int{acct.Lane})
	})
	if err != nil {
		return nil, err
	}
	return eng.BalanceFromRecomposed(sum, acct.Lane)
}

// scoreCache holds recent shards' recomposed scores. Keyed by the view's
// finalized height, not only the height answered at: a score's public part
// uses the defaults as of the book that computed it.
type scoreCache struct {
	mu sync.Mutex
	m  map[scoreKey]*rlwe.Ciphertext
}

type scoreKey struct {
	view  uint64
	shard uint32
	at    uint64
	lane  int
}

// maxScores bounds the cache (each entry is one state-level ciphertext).
const maxScores = 32

func (c *scoreCache) get(k scoreKey, compute func() (*rlwe.Ciphertext, error)) (*rlwe.Ciphertext, error) {
	c.mu.Lock()
	if ct, ok := c.m[k]; ok {
		c.mu.Unlock()
		return ct, nil
	}
	c.mu.Unlock()
	ct, err := compute()
	if err != nil {
		return nil, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxScores {
		c.m = map[scoreKey]*rlwe.Ciphertext{}
	}
	c.m[k] = ct
	return ct, nil
}

// setLending fills a status's lending fields from its envelope, through
// the stored record's own mapping so the API and the store agree.
func setLending(st *api.TransferStatus, e *ledger.Envelope) {
	var r chain.StatusRecord
	r.SetLending(e)
	lendingFromRecord(st, r)
}

// lendingFromRecord copies a stored status's lending fields.
func lendingFromRecord(st *api.TransferStatus, r chain.StatusRecord) {
	st.Kind, st.Min, st.Policy, st.Due, st.Application, st.Loan = r.Kind, r.Min, r.Policy, r.Due, r.Application, r.Loan
}
