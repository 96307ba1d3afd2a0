// Package api defines the client API every zkbank node serves over HTTP:
// paths, request and response bodies. Ciphertext-bearing bodies are binary
// (application/octet-stream, the ledger's encodings); everything else is
// JSON. The node implements it; package client consumes it. See docs/API.md.
package api

import "encoding/json"

// Paths (relative to a node's API base URL).
const (
	PathStatus     = "/v1/status"
	PathGenesis    = "/v1/genesis"        // GET: the genesis JSON
	PathPublicKey  = "/v1/collective-key" // GET: binary collective public key (after the ceremony)
	PathAccount    = "/v1/accounts/"      // GET /v1/accounts/{id}
	PathOpen       = "/v1/accounts"       // POST OpenRequest -> OpenResponse (after commit)
	PathTransfers  = "/v1/transfers"      // POST binary ledger.Submission -> SubmitResponse
	PathTransfer   = "/v1/transfers/"     // GET /v1/transfers/{id} -> TransferStatus
	PathBlock      = "/v1/blocks/"        // GET /v1/blocks/{height} -> Block
	PathBalance    = "/v1/balance"        // POST BalanceRequest -> binary BalanceShare
	PathHistory    = "/v1/history/"       // GET /v1/history/{account} -> History
	PathConsents   = "/v1/consents"       // POST ConsentRequest -> ConsentResponse
	PathValidators = "/v1/validators"     // GET -> Validators; POST a signed genesis.Change -> ChangeResponse
	PathLending    = "/lending"           // GET /v1/accounts/{id}/lending -> Lending (suffix of PathAccount+id)
	PathScore      = "/v1/score"          // POST ScoreRequest -> binary BalanceShare of the score
	PathMetrics    = "/metrics"           // Prometheus text format
	ContentBinary  = "application/octet-stream"
	ContentJSON    = "application/json"
	HeaderNodeName = "X-Zkbank-Node"
)

// Status is a node's view of the chain.
type Status struct {
	Chain              string  `json:"chain"`
	Node               string  `json:"node"`
	ValidatorIndex     int     `json:"validator_index"`
	Height             uint64  `json:"height"` // last committed height
	AppliedHeight      uint64  `json:"applied_height"`
	Round              uint32  `json:"round"`
	Peers              int     `json:"peers"`
	Validators         int     `json:"validators"`
	Threshold          int     `json:"threshold"`
	Ready              bool    `json:"ready"` // key ceremony done, consensus running
	CommittedTransfers uint64  `json:"committed_transfers"`
	RejectedTransfers  uint64  `json:"rejected_transfers"`
	Mempool            int     `json:"mempool"`
	TransfersPerSecond float64 `json:"transfers_per_second"` // over the last 10 s
	LastFinalityMillis float64 `json:"last_finality_ms"`
	WorkCredits        []int64 `json:"work_credits"` // per validator index
	// Role is "validator" or "full" (a full node: no key share, never
	// votes, verifies and re-evaluates every block it applies).
	Role string `json:"role"`
	// VerifiedHeight is the last height this node verified (certificate,
	// re-evaluation) and applied: Height on both roles.
	VerifiedHeight uint64 `json:"verified_height"`
	// ValidatorsHeight (full node) is the highest last height a validator
	// answered it; RefusedHeight the last height it refused (0: none).
	ValidatorsHeight uint64 `json:"validators_height,omitempty"`
	RefusedHeight    uint64 `json:"refused_height,omitempty"`
	// Version is the node's software version and Protocol its wire-protocol
	// number (`zkbank version`); nodes of different protocols refuse each
	// other.
	Version string `json:"version"`
	// Epoch is the committee's epoch (0: the genesis committee; each
	// validator-set change starts the next); EpochStart its first height.
	Epoch      uint64 `json:"epoch"`
	EpochStart uint64 `json:"epoch_start"`
	// SwitchHeight is the first height of the next committee when a
	// committed validator-set change is pending (0: none).
	SwitchHeight uint64 `json:"switch_height,omitempty"`
	Protocol     int    `json:"protocol"`
}

// Account is the plaintext registry entry of an account.
type Account struct {
	ID        string `json:"id"`
	Kind      string `json:"kind"`
	Shard     uint32 `json:"shard"`
	Lane      int    `json:"lane"`
	Nonce     uint64 `json:"nonce"`      // last nonce consumed; the next transfer uses Nonce+1
	LastApply uint64 `json:"last_apply"` // height whose results last moved pending funds into the available balance
	LastOp    string `json:"last_op"`    // hex ID of the last accepted operation: the next one's Prev
	Height    uint64 `json:"height"`     // the node's applied height when answering
}

// OpenRequest opens an account with a zero balance. Signature is ed25519 by
// the new account's key over ledger.OpenAccountBytes(chain, kind).
type OpenRequest struct {
	SignPub   string `json:"sign_pub"`  // hex
	Kind      string `json:"kind"`      // "deposit" or "card"
	Signature string `json:"signature"` // hex
}

// OpenResponse reports the new account once its opening is committed.
type OpenResponse struct {
	Account Account `json:"account"`
}

// SubmitResponse acknowledges an upload. IDs are hex transfer ids, one per
// envelope, in order.
type SubmitResponse struct {
	IDs []string `json:"ids"`
}

// Transfer statuses.
const (
	StatusPending   = "pending"
	StatusCommitted = "committed"
	StatusRejected  = "rejected"
	StatusUnknown   = "unknown"
)

// TransferStatus is the fate of one transfer.
type TransferStatus struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"` // human text when rejected
	Code   string `json:"code,omitempty"`   // stable machine code when rejected (ledger.Reason.Code)
	Height uint64 `json:"height,omitempty"` // block that ordered it
	From   string `json:"from,omitempty"`
	To     string `json:"to,omitempty"`
	// Payees are every payee of a pay-many payment (To is the first);
	// empty for a single payment.
	Payees []string `json:"payees,omitempty"`
	// Kind is a lending operation's kind (ledger.OpKind): "check", "fund"
	// or "repay"; empty for a payment or an apply. The other fields are
	// that kind's public envelope fields: a check's minimum and policy hash
	// (hex), a loan's installment heights and the application it answers
	// (hex id), a repayment's loan (hex id of the funding operation).
	Kind        string   `json:"kind,omitempty"`
	Min         uint64   `json:"min,omitempty"`
	Policy      string   `json:"policy,omitempty"`
	Due         []uint64 `json:"due,omitempty"`
	Application string   `json:"application,omitempty"`
	Loan        string   `json:"loan,omitempty"`
}

// Receives reports whether account is a payee of the transfer.
func (t *TransferStatus) Receives(account string) bool {
	if t.To == account {
		return true
	}
	for _, p := range t.Payees {
		if p == account {
			return true
		}
	}
	return false
}

// Block summarizes a committed block.
type Block struct {
	Height    uint64           `json:"height"`
	Hash      string           `json:"hash"`
	Proposer  int              `json:"proposer"`
	Time      string           `json:"time"`
	Transfers []TransferStatus `json:"transfers"`
	// Consents are the score consents and revocations the block records
	// (with Owner and ID set): a recorded grant is also a loan application
	// to its lender, whose ID is the consent's.
	Consents []ConsentInfo `json:"consents,omitempty"`
}

// LendingPath is the path of an account's public lending facts.
func LendingPath(id string) string { return PathAccount + id + PathLending }

// ConsentRequest submits an owner's signed score consent or revocation:
// Consent is ledger.Consent's MarshalBinary (base64 in JSON). The node
// checks it against its book (signature, chain, fresh nonce, known lender,
// expiry; 400 "bad_consent" with the reason otherwise), queues it and
// relays it to the other validators; a block records it.
type ConsentRequest struct {
	Consent []byte `json:"consent"`
}

// ConsentResponse acknowledges a queued consent: ID is the hex of
// ledger.Consent.ID(), which is also the loan application's ID once a
// grant is recorded. Recording is seen in GET /v1/accounts/{id}/lending.
type ConsentResponse struct {
	ID string `json:"id"`
}

// Lending is an account's public lending facts at the node's applied
// height: everything here is public on chain; the score's encrypted inputs
// (available balance, repaid plane) are not.
type Lending struct {
	Account      string            `json:"account"`
	Height       uint64            `json:"height"` // the node's applied height
	Defaults     uint32            `json:"defaults"`
	ConsentNonce uint64            `json:"consent_nonce"` // the next consent uses ConsentNonce+1
	Loans        []LoanInfo        `json:"loans"`
	Consents     []ConsentInfo     `json:"consents"`
	Applications []ApplicationInfo `json:"applications"`
	Score        ScoreParams       `json:"score"`
}

// LoanInfo is an open loan of the account (a borrower's).
type LoanInfo struct {
	ID     string   `json:"id"` // hex id of the funding operation
	Lender string   `json:"lender"`
	Start  uint64   `json:"start"`
	Due    []uint64 `json:"due"`
	Paid   int      `json:"paid"`
	Missed int      `json:"missed"`
}

// ConsentInfo is a recorded score consent (or, in a block, a revocation).
type ConsentInfo struct {
	ID      string `json:"id,omitempty"`    // hex of ledger.Consent.ID()
	Owner   string `json:"owner,omitempty"` // set in block listings
	Lender  string `json:"lender"`
	Scope   string `json:"scope"` // "score" or "revoke"
	Expiry  uint64 `json:"expiry"`
	Nonce   uint64 `json:"nonce"`
	Revoked bool   `json:"revoked"`
}

// ApplicationInfo is an open loan application of the account to a lender:
// ID is the accepted check's or the recorded consent's id, what a loan
// (OpFund) names as its application.
type ApplicationInfo struct {
	ID     string `json:"id"`
	Lender string `json:"lender"`
	Height uint64 `json:"height"`
}

// ScoreParams are the chain's public score weights (ledger.ScoreParams):
// S = Base + Avail*A + Repaid*R + Penalty*max(0, Grace - Defaults).
type ScoreParams struct {
	Base    uint64 `json:"base"`
	Avail   uint64 `json:"avail"`
	Repaid  uint64 `json:"repaid"`
	Penalty uint64 `json:"penalty"`
	Grace   uint32 `json:"grace"`
}

// ScoreRequest asks a validator for its re-encryption share of an account's
// credit score, re-encrypted to OwnerPK (the requester's HE public key,
// base64). The reply is a binary ledger.BalanceReply whose available slot
// holds the score, combined exactly as a balance.
//
// Requester is the reading account (hex id): empty for the owner itself,
// or a lender holding a recorded score consent of the owner, named by its
// ConsentNonce. SignPub is the requester's account key (hex), Signature
// (hex) its signature over ledger.ScoreQueryBytes(chain, owner, requester,
// consent nonce, {Height, Expiry, Nonce}, ownerPK bytes). Height, Expiry
// and Nonce follow BalanceRequest's rules: answered once per (requester,
// nonce) (409 "replayed"), not after Expiry (410 "expired"), 403
// "bad_signature" if anything signed was altered.
//
// A lender's consent is checked against the node's book before anything
// is computed: 403 "no_consent" (none with that nonce), 403
// "consent_foreign" (the consent names another lender), 409 "revoked",
// 410 "consent_expired".
type ScoreRequest struct {
	Account      string `json:"account"`
	Height       uint64 `json:"height,omitempty"`
	Expiry       uint64 `json:"expiry"`
	Nonce        uint64 `json:"nonce"`
	Requester    string `json:"requester,omitempty"`
	ConsentNonce uint64 `json:"consent_nonce,omitempty"`
	SignPub      string `json:"sign_pub"`
	OwnerPK      string `json:"owner_pk"`
	Signature    string `json:"signature"`
}

// BalanceRequest asks a validator for its re-encryption share of an
// account's balance, re-encrypted to OwnerPK (the wallet's HE public key,
// base64 of its MarshalBinary). SignPub is the account's ed25519 key (hex);
// Signature (hex) is by that key over ledger.BalanceQueryBytes(chain, account,
// {Height, Expiry, Nonce}, ownerPK bytes), so nobody but the owner can have a
// balance re-encrypted to a key of their choosing. Nonce: any fresh value
// (unix ns). Expiry: the last finalized height at which a node may answer
// (at most ledger.BalanceQueryWindow ahead of it); a node answers a given
// (account, nonce) once: a replayed request gets 409 "replayed", an expired
// one 410 "expired".
//
// Height selects the committed height to answer at (0: the node's latest
// applied height). Validators only agree on a ciphertext for the same height,
// so a wallet asks all of them at one height, e.g. the lowest applied height
// among them (GET /v1/status); a node not there yet answers 409.
type BalanceRequest struct {
	Account   string `json:"account"`
	Height    uint64 `json:"height,omitempty"`
	SignPub   string `json:"sign_pub"`
	OwnerPK   string `json:"owner_pk"`
	Nonce     uint64 `json:"nonce"`
	Expiry    uint64 `json:"expiry"`
	Signature string `json:"signature"`
}

// History lists an account's transfers known to the node, newest first.
type History struct {
	Account   string           `json:"account"`
	Transfers []TransferStatus `json:"transfers"`
}

// Error is the JSON body of every non-2xx response.
type Error struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

// Validators is GET /v1/validators: the committed validator-set changes
// since genesis, in order (each a genesis.Epoch: the signed change and its
// first height). A client checks them from its genesis
// (genesis.VerifyChain) and seals uploads to the last committee.
type Validators struct {
	Epoch  uint64            `json:"epoch"`
	Epochs []json.RawMessage `json:"epochs"`
}

// ChangeResponse answers POST /v1/validators: the change verified against
// the current committee and waits for this node's turn to propose it.
type ChangeResponse struct {
	Queued bool   `json:"queued"`
	Epoch  uint64 `json:"epoch"`
}

// Dashboard events: GET /v1/events is a text/event-stream (docs/API.md,
// "Dashboard and events") with a "height" event per finalized height
// (HeightEvent) and a "status" event (Status) every few seconds.
const PathEvents = "/v1/events"

// HeightEvent is the "height" event: what a finalized height changed.
type HeightEvent struct {
	Height        uint64  `json:"height"`
	Round         uint32  `json:"round"` // decided round of Height-1 (its commit certificate is in block Height)
	Epoch         uint64  `json:"epoch"`
	AppliedHeight uint64  `json:"applied_height"`
	Committed     uint64  `json:"committed"` // transfers committed since the node started
	Rejected      uint64  `json:"rejected"`
	TPS           float64 `json:"tps"` // committed per second over the last 10 s
	FinalityMs    float64 `json:"finality_ms"`
	Mempool       int     `json:"mempool"`
	Credits       []int64 `json:"credits"` // work credits per validator index as of Height
	// Proposer is the validator index that proposed height ProposerHeight
	// (Height-1) in round Round, -1 when unknown.
	Proposer       int            `json:"proposer"`
	ProposerHeight uint64         `json:"proposer_height"`
	Block          EventBlock     `json:"block"`
	Outcomes       []EventOutcome `json:"outcomes"` // the judgements decided at this height (of block Height-2)
	// OutcomesOmitted counts outcomes left out of a large height's event.
	OutcomesOmitted int `json:"outcomes_omitted,omitempty"`
}

// EventBlock is a finalized block's public envelopes: who paid whom, of
// which kind; there are no amounts to show.
type EventBlock struct {
	Height    uint64          `json:"height"`
	Transfers []EventEnvelope `json:"transfers"`
	// TransfersOmitted counts envelopes left out of a large block's event.
	TransfersOmitted int `json:"transfers_omitted,omitempty"`
	Opens            int `json:"opens"`
	Consents         int `json:"consents"`
}

// EventEnvelope is one envelope of a block: its id, sender, first payee,
// payee count and kind ("pay", "apply", "check", "fund" or "repay").
type EventEnvelope struct {
	ID     string `json:"id"`
	From   string `json:"from"`
	To     string `json:"to"`
	Payees int    `json:"payees"`
	Kind   string `json:"kind"`
}

// EventOutcome is a judged operation: "committed" or "rejected" with its
// reason code.
type EventOutcome struct {
	ID     string `json:"id"`
	Status string `json:"status"`
	Code   string `json:"code"`
}
