package client

import (
	"errors"
	"fmt"
	"strings"

	"github.com/zkbank/zkbank/ledger"
)

// Sentinels.
var (
	// ErrUnreachable: no HTTP response from the node (refused, timeout, DNS).
	ErrUnreachable = errors.New("node unreachable")
	// ErrUnknownAccount: the node does not know the account (HTTP 404).
	ErrUnknownAccount = errors.New("unknown account")
	// ErrNotFound: any other 404 (unknown transfer id, block not yet committed).
	ErrNotFound = errors.New("not found")
	// ErrNotReady: the node answered 503 (key ceremony not finished, or
	// syncing).
	ErrNotReady = errors.New("node not ready")
)

// UnreachableError says which node could not be reached and why.
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("node %s unreachable: %s", e.URL, shortNetErr(e.Err))
}
func (e *UnreachableError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrUnreachable) true.
func (e *UnreachableError) Is(target error) bool { return target == ErrUnreachable }

// shortNetErr strips Go's "Post \"http://...\": dial tcp ...:" prefixes down to
// the part a user can act on.
func shortNetErr(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 && strings.Contains(s, "dial tcp") {
		return s[i+2:]
	}
	if errors.Is(err, errTimeout) || strings.Contains(s, "Client.Timeout") || strings.Contains(s, "deadline exceeded") {
		return "timed out"
	}
	return s
}

var errTimeout = errors.New("timeout")

// APIError is a non-2xx answer from a node.
type APIError struct {
	URL     string // the request URL
	Status  int
	Code    string // api.Error.Code, when the node sent one
	Message string // api.Error.Error, or the body's start
}

func (e *APIError) Error() string {
	msg := e.Message
	if msg == "" {
		msg = fmt.Sprintf("HTTP %d", e.Status)
	}
	if e.Code != "" && !strings.Contains(msg, e.Code) {
		msg += " (" + e.Code + ")"
	}
	return fmt.Sprintf("node %s: %s", hostOf(e.URL), msg)
}

// Is maps statuses onto the package's sentinels, and consent refusals
// (by code) onto the ledger's: errors.Is(err, ledger.ErrConsentRevoked)
// holds for a node's 409 "revoked", and errors.Is(err, ledger.ErrConsent)
// for every consent refusal.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrNotReady:
		return e.Status == 503
	case ErrNotFound:
		return e.Status == 404
	}
	if c, ok := consentCodes[e.Code]; ok {
		return target == c || target == ledger.ErrConsent
	}
	return false
}

// consentCodes are the codes a node refuses a consent, or a score request
// under one, with (api.ScoreRequest, api.ConsentRequest).
var consentCodes = map[string]error{
	"no_consent":      ledger.ErrNoConsent,
	"consent_foreign": ledger.ErrConsentForeign,
	"revoked":         ledger.ErrConsentRevoked,
	"consent_expired": ledger.ErrConsentExpired,
	"bad_consent":     ledger.ErrConsent,
}

// UnknownAccountError is a 404 for an account id.
type UnknownAccountError struct {
	Account string
	URL     string
}

func (e *UnknownAccountError) Error() string {
	return fmt.Sprintf("unknown account %s (node %s does not know it; open it with 'zkbank wallet open' or check the id)", short(e.Account), hostOf(e.URL))
}

// Is makes errors.Is(err, ErrUnknownAccount) true.
func (e *UnknownAccountError) Is(target error) bool { return target == ErrUnknownAccount }

func short(id string) string {
	if len(id) > 16 {
		return id[:16] + "…"
	}
	return id
}

func hostOf(u string) string {
	s := strings.TrimPrefix(strings.TrimPrefix(u, "http://"), "https://")
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}
