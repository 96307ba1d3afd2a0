package node

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/tuneinsight/lattigo/v5/core/rlwe"
	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/chain"
	"github.com/zkbank/zkbank/genesis"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/version"
)

// maxUpload bounds a POST /v1/transfers body (one sealed upload is a few KB).
const maxUpload = 4 << 20

// server is the node's client API (docs/API.md).
type server struct {
	n   *Node
	log *slog.Logger
	reg *prometheus.Registry
}

func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.PathStatus, s.status)
	mux.HandleFunc("GET "+api.PathGenesis, s.genesis)
	mux.HandleFunc("GET "+api.PathPublicKey, s.collectiveKey)
	mux.HandleFunc("GET "+api.PathAccount+"{id}", s.account)
	mux.HandleFunc("POST "+api.PathOpen, s.open)
	mux.HandleFunc("POST "+api.PathTransfers, s.submit)
	mux.HandleFunc("GET "+api.PathTransfer+"{id}", s.transfer)
	mux.HandleFunc("GET "+api.PathBlock+"{height}", s.block)
	// A full node relays consents and refuses what needs a key share (fullnode.go).
	consent, balance, score := s.consent, s.balance, s.score
	if s.n.full != nil {
		consent, balance, score = s.fullConsent, s.notAValidator, s.notAValidator
	}
	mux.HandleFunc("POST "+api.PathBalance, balance)
	mux.HandleFunc("GET "+api.PathHistory+"{id}", s.history)
	mux.HandleFunc("POST "+api.PathConsents, consent)
	mux.HandleFunc("GET "+api.PathAccount+"{id}"+api.PathLending, s.lending)
	mux.HandleFunc("POST "+api.PathScore, score)
	mux.HandleFunc("GET "+api.PathValidators, s.validators)
	mux.HandleFunc("POST "+api.PathValidators, s.submitChange)
	mux.HandleFunc("GET "+api.PathEvents, s.events)
	mux.Handle("GET /{$}", dashboardHandler())
	mux.Handle("GET /dashboard", dashboardHandler())
	mux.Handle("GET /{file}", webAssets())
	mux.Handle("GET "+api.PathMetrics, promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	walletRoutes(mux) // the browser wallet (webwallet.go)
	return cors(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set(api.HeaderNodeName, s.n.name)
		mux.ServeHTTP(w, r)
	}))
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", api.ContentJSON)
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeErr(w http.ResponseWriter, code int, errCode, msg string) {
	writeJSON(w, code, api.Error{Error: msg, Code: errCode})
}

func (s *server) ready(w http.ResponseWriter) bool {
	if s.n.view.Load() == nil {
		writeErr(w, http.StatusServiceUnavailable, "not_ready", "node is not ready yet (key ceremony or startup in progress)")
		return false
	}
	return true
}

func (s *server) status(w http.ResponseWriter, r *http.Request) {
	if s.n.full != nil {
		writeJSON(w, http.StatusOK, withVersion(s.n.fullStatus()))
		return
	}
	st := withVersion(s.n.Status())
	st.Role, st.VerifiedHeight = RoleValidator, st.Height
	writeJSON(w, http.StatusOK, st)
}

// withVersion fills the status' software version and protocol number.
func withVersion(st api.Status) api.Status {
	st.Version, st.Protocol = version.Version(), version.Protocol
	return st
}

// genesis serves the genesis file as it is (the committees after it are
// GET /v1/validators).
func (s *server) genesis(w http.ResponseWriter, r *http.Request) {
	g := s.n.gen
	if s.n.epochs != nil {
		g = s.n.epochs.gen0
	}
	writeJSON(w, http.StatusOK, g)
}

// validators serves the committed validator-set changes (api.Validators).
func (s *server) validators(w http.ResponseWriter, r *http.Request) {
	out := api.Validators{Epochs: []json.RawMessage{}}
	if es := s.n.epochs; es != nil {
		out.Epoch = es.number()
		for _, e := range es.epochs {
			b, _ := json.Marshal(e)
			out.Epochs = append(out.Epochs, b)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// submitChange takes a signed validator-set change (genesis.Change) for
// this node to propose when its turn comes: it must verify against the
// current committee (a quorum of its signatures, the next epoch).
func (s *server) submitChange(w http.ResponseWriter, r *http.Request) {
	if !s.ready(w) {
		return
	}
	if s.n.full != nil {
		s.notAValidator(w, r)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, genesis.MaxChangeBytes+1))
	if err != nil || len(body) > genesis.MaxChangeBytes {
		writeErr(w, http.StatusRequestEntityTooLarge, "malformed", fmt.Sprintf("change larger than %d bytes", genesis.MaxChangeBytes))
		return
	}
	c, err := genesis.DecodeChange(body)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	raw := c.Encode()
	if v := s.n.view.Load(); v != nil && v.Pending != nil {
		writeErr(w, http.StatusConflict, "change_pending", fmt.Sprintf("a validator-set change is already committed; the next committee takes over at height %d", v.Pending.Start))
		return
	}
	if err := s.n.epochs.verifyChange(raw); err != nil {
		writeErr(w, http.StatusBadRequest, "bad_change", err.Error())
		return
	}
	s.n.changes.set(raw)
	s.log.Info("validator-set change queued for proposal", "epoch", c.Epoch, "validators", len(c.Validators), "reason", c.Reason)
	writeJSON(w, http.StatusAccepted, api.ChangeResponse{Queued: true, Epoch: c.Epoch})
}

func (s *server) collectiveKey(w http.ResponseWriter, r *http.Request) {
	if !s.ready(w) {
		return
	}
	b, err := s.n.keys.PK.MarshalBinary()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	w.Header().Set("Content-Type", api.ContentBinary)
	_, _ = w.Write(b)
}

func toAPI(a *ledger.Account, h uint64) api.Account {
	return api.Account{ID: a.ID.String(), Kind: a.Kind.String(), Shard: a.Shard, Lane: a.Lane, Nonce: a.Nonce, LastApply: a.LastApply, LastOp: hex.EncodeToString(a.LastOp[:]), Height: h}
}

func (s *server) account(w http.ResponseWriter, r *http.Request) {
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
	writeJSON(w, http.StatusOK, toAPI(a, book.Height()))
}

func (s *server) open(w http.ResponseWriter, r *http.Request) {
	if !s.ready(w) {
		return
	}
	var req api.OpenRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		writeErr(w, http.StatusBadRequest, "malformed", "body: "+err.Error())
		return
	}
	pub, err1 := hex.DecodeString(req.SignPub)
	sig, err2 := hex.DecodeString(req.Signature)
	kind := ledger.KindDeposit
	if req.Kind == "card" {
		kind = ledger.KindCard
	} else if req.Kind != "" && req.Kind != "deposit" {
		writeErr(w, http.StatusBadRequest, "malformed", "kind must be deposit or card")
		return
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil && !s.n.opensByIP.allow(host) {
		w.Header().Set("Retry-After", "2")
		writeErr(w, http.StatusTooManyRequests, "rate_limited", "too many account openings from this address; retry later")
		return
	}
	op := chain.Open{SignPub: pub, Kind: kind, Sig: sig}
	if err1 != nil || err2 != nil || !op.Valid(s.n.gen.ChainID) {
		writeErr(w, http.StatusBadRequest, "bad_signature", "signature does not verify")
		return
	}
	id := ledger.AccountIDOf(pub)
	if book := s.n.view.Load().Book; book != nil {
		if a, ok := book.Account(id); ok {
			writeJSON(w, http.StatusOK, api.OpenResponse{Account: toAPI(a, book.Height())})
			return
		}
	}
	ch := s.n.tracker.waitOpen(id)
	add := s.n.addOpen
	if s.n.full != nil {
		add = s.n.relayOpen // to the validators (fullnode.go)
	}
	if err := add(op, true); err != nil {
		writeErr(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	select {
	case a := <-ch:
		writeJSON(w, http.StatusOK, api.OpenResponse{Account: toAPI(a, s.n.view.Load().Book.Height())})
	case <-time.After(60 * time.Second):
		writeErr(w, http.StatusGatewayTimeout, "timeout", "account opening not committed within 60 s")
	case <-r.Context().Done():
	}
}

func (s *server) submit(w http.ResponseWriter, r *http.Request) {
	if !s.ready(w) {
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxUpload+1))
	if err != nil || len(body) > maxUpload {
		writeErr(w, http.StatusRequestEntityTooLarge, "malformed", fmt.Sprintf("upload larger than %d bytes", maxUpload))
		return
	}
	if v := s.n.view.Load(); v != nil && v.Pending != nil {
		// Uploads are sealed to a committee: one sealed to this one cannot
		// be ordered after the switch. Retry with the next committee.
		w.Header().Set("Retry-After", "5")
		writeErr(w, http.StatusServiceUnavailable, "set_changing", fmt.Sprintf("the validator set changes at height %d: submit again to the new committee after it", v.Pending.Start))
		return
	}
	admit := s.n.admit
	if s.n.full != nil {
		admit = s.n.relaySubmission // to the validators (fullnode.go)
	}
	ids, err := admit(body, true)
	if errors.Is(err, errThrottled) {
		w.Header().Set("Retry-After", "1")
		writeErr(w, http.StatusTooManyRequests, "throttled", err.Error())
		return
	}
	if errors.Is(err, errNoValidator) {
		// A full node could not hand it to enough validators (down, or
		// throttling this relay): nothing wrong with the upload; retry.
		w.Header().Set("Retry-After", "2")
		writeErr(w, http.StatusServiceUnavailable, "unavailable", err.Error())
		return
	}
	if err != nil {
		var re *ledger.RejectError
		code, status := "malformed", http.StatusBadRequest
		if errors.As(err, &re) {
			code = re.Reason.Code()
			if re.Reason == ledger.RejectUnknownAccount {
				status = http.StatusNotFound
			}
		}
		writeErr(w, status, code, err.Error())
		return
	}
	writeJSON(w, http.StatusAccepted, api.SubmitResponse{IDs: ids})
}

func (s *server) transfer(w http.ResponseWriter, r *http.Request) {
	id := strings.ToLower(r.PathValue("id"))
	if st, ok := s.n.tracker.get(id); ok {
		writeJSON(w, http.StatusOK, st)
		return
	}
	raw, err := hex.DecodeString(id)
	if err != nil || len(raw) != 32 {
		writeErr(w, http.StatusBadRequest, "malformed", "transfer id must be 64 hex digits")
		return
	}
	sr, err := chain.StoredStatus(s.n.db, [32]byte(raw))
	if err != nil {
		writeJSON(w, http.StatusOK, api.TransferStatus{ID: id, Status: api.StatusUnknown})
		return
	}
	st := api.TransferStatus{ID: sr.ID, Status: sr.Status, Code: sr.Code, Reason: sr.Reason, Height: sr.Height, From: sr.From, To: sr.To, Payees: sr.Payees}
	lendingFromRecord(&st, sr)
	writeJSON(w, http.StatusOK, st)
}

func (s *server) block(w http.ResponseWriter, r *http.Request) {
	h, err := strconv.ParseUint(r.PathValue("height"), 10, 64)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "malformed", "height must be a number")
		return
	}
	value, err := s.n.db.Block(h)
	if err != nil {
		writeErr(w, http.StatusNotFound, "not_found", fmt.Sprintf("no block at height %d", h))
		return
	}
	b, err := chain.DecodeBlock(value)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "corrupt", err.Error())
		return
	}
	hash := chain.Hash(value)
	out := api.Block{Height: h, Hash: hex.EncodeToString(hash[:]), Time: time.UnixMilli(int64(b.TimeMs)).UTC().Format(time.RFC3339Nano)}
	for _, sub := range b.Subs {
		for i := range sub.Envelopes {
			id := sub.Envelopes[i].ID()
			st, ok := s.n.tracker.get(hex.EncodeToString(id[:]))
			if !ok {
				st = api.TransferStatus{ID: hex.EncodeToString(id[:]), Status: api.StatusUnknown, Height: h}
			}
			// Rendered from the block's own envelope: a lender scanning
			// blocks finds the checks, loans and repayments addressed to it.
			st.From, st.To, st.Payees = sub.Envelopes[i].From.String(), sub.Envelopes[i].To.String(), chain.PayeeStrings(&sub.Envelopes[i])
			setLending(&st, &sub.Envelopes[i])
			out.Transfers = append(out.Transfers, st)
		}
	}
	for i := range b.Consents {
		out.Consents = append(out.Consents, consentInfo(&b.Consents[i]))
	}
	writeJSON(w, http.StatusOK, out)
}

// balance re-encrypts an account's balance to the owner's key. The request
// must be signed by the account's key over the owner key's hash: a validator
// never re-encrypts to a key the owner did not choose, and it only ever
// re-encrypts a ciphertext it computed itself from committed state.
func (s *server) balance(w http.ResponseWriter, r *http.Request) {
	if !s.ready(w) {
		return
	}
	var req api.BalanceRequest
	if !decodeBody(w, r, &req) {
		return
	}
	id, err := ledger.ParseAccountID(req.Account)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	sq, ok := decodeSigned(w, req.SignPub, req.Signature, req.OwnerPK)
	if !ok {
		return
	}
	view := s.n.view.Load()
	acct, ok := view.Book.Account(id)
	if !ok {
		writeErr(w, http.StatusNotFound, "unknown_account", "unknown account "+id.Short())
		return
	}
	sq.kind, sq.requester = queryBalance, id
	sq.q = ledger.BalanceQuery{Height: req.Height, Expiry: req.Expiry, Nonce: req.Nonce}
	if !ledger.VerifyBalanceQuery(sq.pub, s.n.gen.ChainID, id, sq.q, sq.pkb, sq.sig) {
		writeErr(w, http.StatusForbidden, "bad_signature", "balance request not signed by the account's key")
		return
	}
	ownerPK, at, ok := s.admitQuery(w, view, sq)
	if !ok {
		return
	}
	eng := s.n.queryEngine()
	defer s.n.releaseEngine(eng)
	ct, err := s.n.balanceCT(eng, view.Book, acct, at)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	s.writeReenc(w, queryBalance, ct, ownerPK, at, acct.Lane)
}

// balanceCT is an account's two balances at height at, isolated into one
// ciphertext (Engine.BalancesFromRecomposed): one re-encryption share
// answers both.
func (n *Node) balanceCT(eng *ledger.Engine, book *ledger.Book, acct *ledger.Account, at uint64) (*rlwe.Ciphertext, error) {
	st, ok1 := book.State(acct.Shard, at)
	pst, ok2 := book.PendingState(acct.Shard, at)
	if !ok1 || !ok2 {
		return nil, errors.New("no state for the account's shard")
	}
	sum, err := n.recomposed(eng, acct.Shard, at, st)
	if err != nil {
		return nil, err
	}
	psum, err := n.recomposed(eng, ledger.PendingKey(acct.Shard), at, pst)
	if err != nil {
		return nil, err
	}
	return eng.BalancesFromRecomposed(sum, psum, acct.Lane)
}

// decodeBody decodes a JSON request body (at most 8 MiB: an owner key is
// about a MiB of base64), answering 400 if it does not decode.
func decodeBody(w http.ResponseWriter, r *http.Request, out any) bool {
	if err := json.NewDecoder(io.LimitReader(r.Body, 8<<20)).Decode(out); err != nil {
		writeErr(w, http.StatusBadRequest, "malformed", "body: "+err.Error())
		return false
	}
	return true
}

// signedQuery is a re-encryption request (balance or score) as the shared
// checks see it: who asks, what it signed, and the key to re-encrypt to.
type signedQuery struct {
	kind      queryKind
	requester ledger.AccountID // the account whose key signed: replays are counted per requester
	q         ledger.BalanceQuery
	pub       []byte
	sig       []byte
	pkb       []byte // the target HE public key, encoded
}

// decodeSigned decodes the signing key, signature and target key every
// re-encryption request carries (400 if any does not decode).
func decodeSigned(w http.ResponseWriter, signPub, signature, ownerPK string) (signedQuery, bool) {
	pub, err1 := hex.DecodeString(signPub)
	sig, err2 := hex.DecodeString(signature)
	pkb, err3 := base64.StdEncoding.DecodeString(ownerPK)
	if err1 != nil || err2 != nil || err3 != nil {
		writeErr(w, http.StatusBadRequest, "malformed", "sign_pub, signature (hex) and owner_pk (base64) are required")
		return signedQuery{}, false
	}
	return signedQuery{pub: pub, sig: sig, pkb: pkb}, true
}

// admitQuery applies the rules every signed re-encryption request obeys
// once its signature has verified, so that a captured request is
// worthless: answerable only until its expiry (410 "expired"; 400 if the
// expiry lies further ahead than ledger.BalanceQueryWindow), and only once
// per (requester, nonce) (409 "replayed"). Then the target key must decode
// and the height asked must be one this node holds (409 "not_yet", 410
// "pruned"). It answers the refusal itself and reports false; the caller
// computes nothing unless it reports true, with the key and the height to
// answer at.
func (s *server) admitQuery(w http.ResponseWriter, view *chain.View, sq signedQuery) (*rlwe.PublicKey, uint64, bool) {
	what, q := sq.kind.String(), sq.q
	switch {
	case q.Expiry < view.Height:
		writeErr(w, http.StatusGone, "expired", fmt.Sprintf("%s request expired at height %d (this node is at %d)", what, q.Expiry, view.Height))
		return nil, 0, false
	case q.Expiry > view.Height+ledger.BalanceQueryWindow:
		writeErr(w, http.StatusBadRequest, "malformed", fmt.Sprintf("%s request expiry %d is more than %d heights ahead of %d", what, q.Expiry, ledger.BalanceQueryWindow, view.Height))
		return nil, 0, false
	}
	// Every cheap refusal comes before the request is remembered: only a
	// request this node may answer takes a slot (at most
	// maxQueriesPerAccount per requester).
	ownerPK, err := s.n.p.DecodeOwnerPK(sq.pkb)
	if err != nil {
		writeErr(w, http.StatusBadRequest, "malformed", err.Error())
		return nil, 0, false
	}
	at := view.Book.Height()
	if q.Height != 0 {
		if q.Height > at {
			writeErr(w, http.StatusConflict, "not_yet", fmt.Sprintf("this node has applied height %d, asked for %d; retry", at, q.Height))
			return nil, 0, false
		}
		if q.Height+ledger.StateWindow <= at {
			writeErr(w, http.StatusGone, "pruned", fmt.Sprintf("height %d is older than the %d retained heights", q.Height, ledger.StateWindow))
			return nil, 0, false
		}
		at = q.Height
	}
	if err := s.n.queries.use(sq.kind, sq.requester, q, view.Height); err != nil {
		code, status := "replayed", http.StatusConflict
		if errors.Is(err, errQueriesFull) {
			code, status = "busy", http.StatusServiceUnavailable
		}
		writeErr(w, status, code, err.Error())
		return nil, 0, false
	}
	return ownerPK, at, true
}

// writeReenc answers a re-encryption request: this validator's share
// re-encrypting ct (which it computed itself from committed state) to
// ownerPK, as a binary ledger.BalanceReply.
func (s *server) writeReenc(w http.ResponseWriter, kind queryKind, ct *rlwe.Ciphertext, ownerPK *rlwe.PublicKey, at uint64, lane int) {
	share, err := s.n.dec.ReencShare(s.n.key, ct, ownerPK)
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	s.n.met.Reencryptions.WithLabelValues(kind.String()).Inc()
	reply := &ledger.BalanceReply{Validator: s.n.self, Height: at, Lane: lane, CT: ct, Share: share}
	b, err := reply.MarshalBinary()
	if err != nil {
		writeErr(w, http.StatusInternalServerError, "internal", err.Error())
		return
	}
	w.Header().Set("Content-Type", api.ContentBinary)
	_, _ = w.Write(b)
}

func (s *server) history(w http.ResponseWriter, r *http.Request) {
	id, err := ledger.ParseAccountID(r.PathValue("id"))
	if err != nil {
		writeErr(w, http.StatusBadRequest, "malformed", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, api.History{Account: id.String(), Transfers: s.n.tracker.historyOf(id.String())})
}
