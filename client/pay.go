package client

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"time"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/ledger"
)

// Payer is the wallet an operation is made from: it signs and decrypts.
type Payer interface {
	Holder
	SignKey() ed25519.PrivateKey
}

// Payee is one recipient of a payment and its amount in cents.
type Payee struct {
	To     ledger.AccountID
	Amount uint64
}

// ErrNothingPending is an apply with no pending credit to move.
var ErrNothingPending = errors.New("nothing pending to apply; nothing was sent")

// InsufficientError is a payment the balance read does not cover, refused
// before anything was built or sent.
type InsufficientError struct {
	Available uint64 // cents available (a card: credit left)
	Amount    uint64 // cents asked
	Pending   uint64 // cents received but not applied
	Card      bool
	Payees    int
}

func (e *InsufficientError) Error() string {
	if e.Card {
		return fmt.Sprintf("declined: insufficient credit (available %s, charge %s); nothing was sent", cents(e.Available), cents(e.Amount))
	}
	hint := ""
	if e.Pending > 0 {
		hint = fmt.Sprintf(" (%s received is pending: apply it to make it spendable)", cents(e.Pending))
	}
	what := "amount"
	if e.Payees > 1 {
		what = "total"
	}
	return fmt.Sprintf("insufficient funds: available %s, %s %s%s; nothing was sent", cents(e.Available), what, cents(e.Amount), hint)
}

func cents(c uint64) string { return fmt.Sprintf("%d.%02d", c/100, c%100) }

// CheckFunds refuses a payment of amount cents (to payees recipients) that
// bal does not cover; card selects the card wording.
func CheckFunds(bal Balance, amount uint64, card bool, payees int) error {
	if amount > bal.Amount {
		return &InsufficientError{Available: bal.Amount, Amount: amount, Pending: bal.Pending, Card: card, Payees: payees}
	}
	return nil
}

// PayHooks observe an operation as it goes; every field is optional.
type PayHooks struct {
	// Read is the balance (decrypted locally) the attempt is built on.
	Read func(b Balance)
	// Built is called before the upload: the amount moved and the size of
	// the sealed upload.
	Built func(amount uint64, read Balance, sealed int)
	// Submitted is called once validators accepted the upload.
	Submitted func(id string, amount uint64)
	// Retry is called before rebuilding after a retryable rejection.
	Retry func(code string, attempt, max int)
}

// PayResult is the outcome of Pay or ApplyPending.
type PayResult struct {
	Status   *api.TransferStatus // committed or rejected (Code says why)
	Amount   uint64              // cents moved (an apply: the pending amount)
	Read     Balance             // the balance the operation was built on
	Attempts int
}

// retryable rejections: nothing moved, and an operation rebuilt from a fresh
// balance read can succeed.
var retryable = map[string]bool{"stale_height": true, "lane_busy": true, "future_height": true, "predecessor": true}

// MaxPayAttempts bounds the rebuilds of one operation.
const MaxPayAttempts = 3

// Pay sends one payment from w to pays and waits for its verdict: it reads
// the balance (decrypted locally), refuses an overdraft with nothing sent
// (*InsufficientError), builds and seals the transfer, submits it, and
// rebuilds from a fresh balance when the validators found it stale (up to
// MaxPayAttempts). A recipient must exist (briefly waited for: it may have
// been opened a moment ago). A rejected verdict is returned in the result,
// not as an error; hooks may be nil.
func (m *Multi) Pay(ctx context.Context, w Payer, card bool, pays []Payee, hooks *PayHooks) (*PayResult, error) {
	if len(pays) == 0 {
		return nil, errors.New("pay: no payee")
	}
	for _, p := range pays {
		if p.To == w.ID() {
			return nil, errors.New("cannot pay yourself: sender and recipient are the same account; nothing was sent")
		}
	}
	for _, p := range pays {
		if err := m.waitRecipient(ctx, p.To); err != nil {
			return nil, err
		}
	}
	return m.operate(ctx, w, card, pays, false, hooks)
}

// waitRecipient waits briefly for a recipient opened a moment ago, which may
// not be visible at every node yet, and refuses an unknown one.
func (m *Multi) waitRecipient(ctx context.Context, to ledger.AccountID) error {
	wctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err := m.WaitAccount(wctx, to.String(), 1)
	cancel()
	if err == nil || ctx.Err() != nil {
		return ctx.Err()
	}
	_, err = m.Account(ctx, to.String())
	if errors.Is(err, ErrUnknownAccount) {
		return &UnknownRecipientError{Account: to.String(), Chain: m.Chain()}
	}
	return err
}

// UnknownRecipientError is a payment to an account the chain does not know;
// nothing was sent. errors.Is(err, ErrUnknownAccount) holds.
type UnknownRecipientError struct{ Account, Chain string }

func (e *UnknownRecipientError) Error() string {
	return fmt.Sprintf("unknown recipient account %s on chain %s; nothing was sent", e.Account, e.Chain)
}

// Is makes the error an ErrUnknownAccount.
func (e *UnknownRecipientError) Is(target error) bool { return target == ErrUnknownAccount }

// ApplyPending moves w's pending balance into its available balance (an
// apply only the owner can sign) and waits for the verdict; with nothing
// pending it returns ErrNothingPending and sends nothing.
func (m *Multi) ApplyPending(ctx context.Context, w Payer, hooks *PayHooks) (*PayResult, error) {
	return m.operate(ctx, w, false, []Payee{{To: w.ID()}}, true, hooks)
}

func (m *Multi) operate(ctx context.Context, w Payer, card bool, pays []Payee, apply bool, hooks *PayHooks) (*PayResult, error) {
	if hooks == nil {
		hooks = &PayHooks{}
	}
	var lastNonce uint64
	for attempt := 1; ; attempt++ {
		res, nonce, err := m.operateOnce(ctx, w, card, pays, apply, lastNonce, hooks)
		if err != nil {
			return nil, err
		}
		res.Attempts = attempt
		lastNonce = nonce
		if res.Status.Status == api.StatusRejected && retryable[res.Status.Code] && attempt < MaxPayAttempts {
			if hooks.Retry != nil {
				hooks.Retry(res.Status.Code, attempt+1, MaxPayAttempts)
			}
			continue
		}
		return res, nil
	}
}

// operateOnce makes one attempt and returns the verdict and the nonce used.
// The nonce is above both the account's last consumed one and lastNonce (a
// node that has not applied the previous verdict yet may report an older one).
func (m *Multi) operateOnce(ctx context.Context, w Payer, card bool, pays []Payee, apply bool, lastNonce uint64, hooks *PayHooks) (*PayResult, uint64, error) {
	var total uint64
	for _, p := range pays {
		total += p.Amount
	}
	a, err := m.Account(ctx, w.ID().String())
	if err != nil {
		return nil, 0, err
	}
	// Read at or after the height the account's last operation was applied.
	bal, err := m.BalanceAt(ctx, w, a.Height)
	if err != nil {
		return nil, 0, err
	}
	if hooks.Read != nil {
		hooks.Read(bal)
	}
	if apply {
		if bal.Pending == 0 {
			return nil, 0, ErrNothingPending
		}
		total = bal.Pending
	} else if err := CheckFunds(bal, total, card, len(pays)); err != nil {
		return nil, 0, err
	}
	d, err := m.Dealer()
	if err != nil {
		return nil, 0, err
	}
	prev, err := ParseOpID(a.LastOp)
	if err != nil {
		return nil, 0, err
	}
	spec := ledger.TransferSpec{From: w.ID(), Lane: a.Lane, Key: w.SignKey(), To: pays[0].To, Amount: total, Balance: bal.Amount,
		Height: bal.Height, Prev: prev, Nonce: max(a.Nonce, lastNonce) + 1}
	if apply {
		spec.Balance = bal.Pending
	}
	if len(pays) > 1 {
		for _, p := range pays {
			spec.Payees = append(spec.Payees, ledger.Payee{To: p.To, Amount: p.Amount})
		}
	}
	sub, err := d.Build(spec)
	if err != nil {
		return nil, 0, fmt.Errorf("building the transfer: %w", err)
	}
	if hooks.Built != nil {
		hooks.Built(total, bal, len(sub.Sealed))
	}
	ids, err := m.Submit(ctx, sub)
	if err != nil {
		return nil, 0, err
	}
	if hooks.Submitted != nil {
		hooks.Submitted(ids[0], total)
	}
	st, err := m.WaitTransfer(ctx, ids[0])
	if err != nil {
		return nil, 0, fmt.Errorf("%w (transfer id %s)", err, ids[0])
	}
	return &PayResult{Status: st, Amount: total, Read: bal}, spec.Nonce, nil
}
