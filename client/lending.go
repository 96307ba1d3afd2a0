package client

import (
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/ledger"
)

// Lending (docs/LENDING.md): score consents, public lending facts, and
// credit scores read like balances, by their owner or by a lender the
// owner consented to.

// Score is a credit score as its reader decrypted it, and the height of the
// state it was computed from.
type Score struct {
	Value  uint64
	Height uint64
}

// ScoreSigner signs a score request with the account's ed25519 key. A
// Holder reading a score must implement it, or expose its key with
// SignKey() ed25519.PrivateKey (as *wallet.Wallet does).
type ScoreSigner interface {
	Sign(msg []byte) []byte
}

// keyHolder is a holder that exposes its account key (*wallet.Wallet).
type keyHolder interface {
	SignKey() ed25519.PrivateKey
}

// ErrCannotSign: the holder can sign neither way ScoreSigner describes.
var ErrCannotSign = errors.New("client: holder cannot sign score requests (implement ScoreSigner or SignKey)")

// signerOf returns the holder's way of signing a score request.
func signerOf(h Holder) (func([]byte) []byte, error) {
	switch s := h.(type) {
	case ScoreSigner:
		return s.Sign, nil
	case keyHolder:
		key := s.SignKey()
		if len(key) != ed25519.PrivateKeySize {
			return nil, ErrCannotSign
		}
		return func(msg []byte) []byte { return ed25519.Sign(key, msg) }, nil
	}
	return nil, ErrCannotSign
}

// SubmitConsent posts an owner's signed score consent or revocation. The
// node checks it against its book (a refusal is an *APIError with code
// "bad_consent", errors.Is(err, ledger.ErrConsent)) and relays it; a block
// records it later (see Lending).
func (c *Client) SubmitConsent(ctx context.Context, cs ledger.Consent) (*api.ConsentResponse, error) {
	raw, err := cs.MarshalBinary()
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(api.ConsentRequest{Consent: raw})
	b, err := c.do(ctx, http.MethodPost, api.PathConsents, api.ContentJSON, body, api.ContentJSON)
	if err != nil {
		return nil, err
	}
	var r api.ConsentResponse
	return &r, c.decode(api.PathConsents, b, &r)
}

// Lending returns an account's public lending facts as this node has them.
func (c *Client) Lending(ctx context.Context, id string) (*api.Lending, error) {
	var l api.Lending
	return &l, c.accountErr(id, c.getJSON(ctx, api.LendingPath(url.PathEscape(id)), &l))
}

// ScoreShare asks the node for its binary ledger.BalanceReply re-encrypting
// a score.
func (c *Client) ScoreShare(ctx context.Context, req api.ScoreRequest) ([]byte, error) {
	body, _ := json.Marshal(req)
	b, err := c.do(ctx, http.MethodPost, api.PathScore, api.ContentJSON, body, api.ContentBinary)
	return b, c.accountErr(req.Account, err)
}

// SubmitConsent posts a consent to one validator, moving on when one is
// unreachable (the validator relays it to the others), and returns its id
// (hex of Consent.ID(), also the loan application's id once recorded). One
// owner's consents go to the same validator first, so their nonces arrive
// in order.
func (m *Multi) SubmitConsent(ctx context.Context, c ledger.Consent) (string, error) {
	start := int(binary.BigEndian.Uint32(c.Owner[:4]) % uint32(len(m.nodes)))
	var r *api.ConsentResponse
	err := m.anyFrom(ctx, start, func(cl *Client) (err error) {
		r, err = cl.SubmitConsent(ctx, c)
		return err
	})
	if err != nil {
		return "", err
	}
	id := c.ID()
	if want := hex.EncodeToString(id[:]); r.ID != want {
		return "", fmt.Errorf("a validator acknowledged consent %s, sent %s", short(r.ID), short(want))
	}
	return r.ID, nil
}

// Lending returns an account's public lending facts from the first node
// that answers (its Height says how current they are).
func (m *Multi) Lending(ctx context.Context, id string) (*api.Lending, error) {
	var l *api.Lending
	err := m.any(ctx, func(c *Client) (err error) {
		l, err = c.Lending(ctx, id)
		return err
	})
	return l, err
}

// Score reads and decrypts the holder's own credit score at the latest
// height a threshold of validators agree on.
func (m *Multi) Score(ctx context.Context, h Holder) (Score, error) {
	return m.ScoreAt(ctx, h, 0)
}

// ScoreAt is Score at a height of at least minHeight. The read is a
// balance read's (BalanceAt): every validator re-encrypts the score to the
// holder's key, and t + f of them must agree in every t-subset.
func (m *Multi) ScoreAt(ctx context.Context, h Holder, minHeight uint64) (Score, error) {
	return m.score(ctx, h, h.ID(), 0, minHeight)
}

// LenderScore reads a consenting owner's credit score, re-encrypted to the
// lender's own HE key, under the consent of nonce consentNonce the owner
// gave the lender. Validators refuse without such a recorded consent, to
// exactly this lender, unrevoked and unexpired: the error then matches
// ledger.ErrConsent (and ledger.ErrNoConsent, ErrConsentForeign,
// ErrConsentRevoked or ErrConsentExpired) with errors.Is.
//
// It reads at a height at which a validator already shows the consent
// recorded, so validators that have not recorded it yet are waited for
// rather than taken for refusals. The owner's lane comes with the replies
// (grouped by lane, so t + f validators must agree on it).
func (m *Multi) LenderScore(ctx context.Context, lender Holder, owner ledger.AccountID, consentNonce uint64) (Score, error) {
	minHeight := m.consentHeight(ctx, owner, lender.ID(), consentNonce)
	return m.score(ctx, lender, owner, consentNonce, minHeight)
}

// score reads owner's score as reader (the owner itself, or a lender under
// consent consentNonce) at a height of at least minHeight.
func (m *Multi) score(ctx context.Context, reader Holder, owner ledger.AccountID, consentNonce, minHeight uint64) (Score, error) {
	sign, err := signerOf(reader)
	if err != nil {
		return Score{}, err
	}
	pk, err := reader.Owner().PK.MarshalBinary()
	if err != nil {
		return Score{}, err
	}
	b, height, err := m.read(ctx, "score", owner, reader.Owner(), minHeight, func(target uint64) (asker, error) {
		req := m.scoreRequest(reader, owner, consentNonce, target, pk, sign)
		return func(ctx context.Context, c *Client) ([]byte, error) { return c.ScoreShare(ctx, req) }, nil
	})
	// The score sits in the available balance's slot; the pending slot of a
	// score reply is zero.
	return Score{Value: b.Available, Height: height}, err
}

// scoreRequest is reader's signed request for owner's score at height
// target, valid for balanceExpiry heights, with a fresh nonce.
func (m *Multi) scoreRequest(reader Holder, owner ledger.AccountID, consentNonce, target uint64, pk []byte, sign func([]byte) []byte) api.ScoreRequest {
	q := ledger.BalanceQuery{Height: target, Expiry: target + balanceExpiry, Nonce: uint64(time.Now().UnixNano())}
	var requester ledger.AccountID // zero: the owner
	req := api.ScoreRequest{Account: owner.String()}
	if reader.ID() != owner {
		requester, req.Requester = reader.ID(), reader.ID().String()
	} else {
		consentNonce = 0
	}
	msg := ledger.ScoreQueryBytes(m.g.ChainID, owner, requester, consentNonce, q, pk)
	req.Height, req.Expiry, req.Nonce, req.ConsentNonce = q.Height, q.Expiry, q.Nonce, consentNonce
	req.SignPub, req.OwnerPK, req.Signature = hex.EncodeToString(reader.SignPub()), base64.StdEncoding.EncodeToString(pk), hex.EncodeToString(sign(msg))
	return req
}

// consentHeight is the lowest applied height at which a validator shows
// owner's consent consentNonce to lender recorded (0 if none does: the
// validators will then say why). Books at or above it hold the consent
// too, unless it was revoked or expired since, which they report.
func (m *Multi) consentHeight(ctx context.Context, owner, lender ledger.AccountID, consentNonce uint64) uint64 {
	sctx, cancel := context.WithTimeout(ctx, statusProbeTimeout)
	defer cancel()
	heights := make(chan uint64, len(m.nodes))
	for _, c := range m.nodes {
		go func() {
			l, err := c.Lending(sctx, owner.String())
			if err != nil {
				heights <- 0
				return
			}
			for _, ci := range l.Consents {
				if ci.Nonce == consentNonce && ci.Lender == lender.String() {
					heights <- l.Height
					return
				}
			}
			heights <- 0
		}()
	}
	best := uint64(0)
	for range m.nodes {
		if h := <-heights; h != 0 && (best == 0 || h < best) {
			best = h
		}
	}
	return best
}
