package lending

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/client"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/wallet"
)

// Actor is one wallet acting on a chain: it builds its operations on the
// account's last accepted one, submits them one at a time and waits for
// each verdict. The wallet CLI, the lending bot and the testnet's demo
// borrowers all send their checks, loans and repayments through one.
type Actor struct {
	M *client.Multi
	W *wallet.Wallet
	// Progress, if set, receives one line per step (submitted, waiting,
	// retrying).
	Progress func(string)

	lastNonce  uint64 // the last nonce this actor used
	lastHeight uint64 // the height of the last verdict it saw
}

// NewActor returns an actor for w on m's chain.
func NewActor(m *client.Multi, w *wallet.Wallet) *Actor { return &Actor{M: m, W: w} }

func (a *Actor) say(format string, args ...any) {
	if a.Progress != nil {
		a.Progress(fmt.Sprintf(format, args...))
	}
}

// Account reads the account's registry entry from a node that has applied
// every verdict this actor has seen, so its LastOp and Nonce are current.
func (a *Actor) Account(ctx context.Context) (*api.Account, error) {
	delay := 100 * time.Millisecond
	for {
		acct, err := a.M.Account(ctx, a.W.Account)
		if err != nil {
			return nil, err
		}
		if acct.Height >= a.lastHeight {
			return acct, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("account %s: no node has applied height %d yet: %w", a.W.ID().Short(), a.lastHeight, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*3/2, time.Second)
	}
}

// Base is what the next operation is built on: the account's last
// accepted operation, the next nonce and the account's applied height.
func (a *Actor) Base(acct *api.Account) (wallet.OpBase, error) {
	prev, err := client.ParseOpID(acct.LastOp)
	if err != nil {
		return wallet.OpBase{}, err
	}
	return wallet.OpBase{Prev: prev, Nonce: max(acct.Nonce, a.lastNonce) + 1, Height: acct.Height}, nil
}

// Builder builds one operation on the account as it is now (acct, base);
// it may read the balance or the score (at a height of at least
// acct.Height). An error means nothing was sent.
type Builder func(ctx context.Context, acct *api.Account, base wallet.OpBase) (ledger.TransferSpec, error)

// Retryable rejections: nothing moved, and the same operation rebuilt on
// the account's state now can succeed (another operation of the account
// got there first, or a height it named went out of the window).
var Retryable = map[string]bool{"stale_height": true, "lane_busy": true, "future_height": true, "predecessor": true}

// MaxAttempts bounds how often Do rebuilds a retryable operation.
const MaxAttempts = 3

// ErrAdmission is a node refusing an operation at admission (4xx):
// nothing was ordered. The error is an *AdmissionError.
var ErrAdmission = errors.New("refused at admission")

// AdmissionError is a node's refusal of an operation at admission.
type AdmissionError struct {
	What    string // "loan", "repayment", ...
	Code    string // the ledger reject code, when the node sent one
	Message string
}

func (e *AdmissionError) Error() string {
	return fmt.Sprintf("%s refused at admission: %s", e.What, e.Message)
}

// Is makes errors.Is(err, ErrAdmission) true.
func (e *AdmissionError) Is(target error) bool { return target == ErrAdmission }

// admissionRetries: a node that has not applied the block an operation
// depends on yet (an application, a loan, the predecessor) refuses it; it
// is submitted again after a pause, this many times.
const admissionRetries = 4

// lagCodes are the admission refusals a node that is a block behind gives.
var lagCodes = map[string]bool{"loan": true, "predecessor": true, "future_height": true, "unknown_account": true}

// Do builds, submits and awaits one operation, rebuilding it (up to
// MaxAttempts) after a retryable rejection. It returns the final verdict
// (committed or rejected) and the spec it was built from; an error means
// no verdict (nothing sent, a node refused it, or the wait ended).
func (a *Actor) Do(ctx context.Context, what string, build Builder) (*api.TransferStatus, ledger.TransferSpec, error) {
	for attempt := 1; ; attempt++ {
		st, spec, err := a.once(ctx, what, build)
		if err != nil {
			return nil, spec, err
		}
		if st.Status == api.StatusRejected && Retryable[st.Code] && attempt < MaxAttempts {
			a.say("%s rejected as %s (nothing moved); rebuilding (attempt %d of %d)", what, st.Code, attempt+1, MaxAttempts)
			continue
		}
		return st, spec, nil
	}
}

func (a *Actor) once(ctx context.Context, what string, build Builder) (*api.TransferStatus, ledger.TransferSpec, error) {
	acct, err := a.Account(ctx)
	if err != nil {
		return nil, ledger.TransferSpec{}, err
	}
	base, err := a.Base(acct)
	if err != nil {
		return nil, ledger.TransferSpec{}, err
	}
	spec, err := build(ctx, acct, base)
	if err != nil {
		return nil, spec, err
	}
	spec.Lane = acct.Lane
	d, err := a.M.Dealer()
	if err != nil {
		return nil, spec, err
	}
	sub, err := d.Build(spec)
	if err != nil {
		return nil, spec, err
	}
	// Every node should know what the operation was built on (the
	// account's last operation, an application, a loan) before one of
	// them admits it.
	WaitApplied(ctx, a.M, acct.Height, 10*time.Second)
	var ids []string
	for try := 0; ; try++ {
		ids, err = a.M.Submit(ctx, sub)
		var ae *client.APIError
		if err == nil || !errors.As(err, &ae) || ae.Status/100 != 4 {
			break
		}
		if try >= admissionRetries || !lagCodes[ae.Code] {
			return nil, spec, &AdmissionError{What: what, Code: ae.Code, Message: ae.Message}
		}
		a.say("%s refused at admission (%s); submitting again", what, ae.Message)
		select {
		case <-ctx.Done():
			return nil, spec, ctx.Err()
		case <-time.After(time.Second << try):
		}
	}
	if err != nil {
		return nil, spec, err
	}
	a.lastNonce = spec.Nonce
	if spec.Kind != ledger.OpCheck {
		if err := a.W.Record(wallet.Entry{ID: ids[0], To: spec.To.String(), Amount: spec.Total(), Time: time.Now().UTC()}); err != nil {
			a.say("warning: %v", err)
		}
	}
	a.say("submitted %s %s; waiting for its verdict", what, ids[0])
	st, err := a.M.WaitTransfer(ctx, ids[0])
	if err != nil {
		return nil, spec, fmt.Errorf("%w (operation %s)", err, ids[0])
	}
	a.lastHeight = max(a.lastHeight, st.Height)
	return st, spec, nil
}

// Balance reads the account's balances at a height including every
// verdict this actor has seen.
func (a *Actor) Balance(ctx context.Context) (client.Balance, error) {
	return a.M.BalanceAt(ctx, a.W, a.lastHeight)
}

// ApplyPending moves the account's pending balance into its available one
// (an apply) if anything is pending; it returns the amount moved.
func (a *Actor) ApplyPending(ctx context.Context) (uint64, error) {
	var moved uint64
	st, _, err := a.Do(ctx, "apply", func(ctx context.Context, acct *api.Account, base wallet.OpBase) (ledger.TransferSpec, error) {
		bal, err := a.M.BalanceAt(ctx, a.W, max(acct.Height, a.lastHeight))
		if err != nil {
			return ledger.TransferSpec{}, err
		}
		if bal.Pending == 0 {
			return ledger.TransferSpec{}, errNothingPending
		}
		moved = bal.Pending
		base.Height = bal.Height
		return a.W.ApplySpec(base, bal.Pending), nil
	})
	if errors.Is(err, errNothingPending) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	if st.Status != api.StatusCommitted {
		return 0, fmt.Errorf("apply rejected: %s (%s)", st.Reason, st.Code)
	}
	return moved, nil
}

var errNothingPending = errors.New("nothing pending")

// WaitApplied waits, at most max, until every validator that answers has
// applied height h (best effort: it returns regardless).
func WaitApplied(ctx context.Context, m *client.Multi, h uint64, max time.Duration) {
	wctx, cancel := context.WithTimeout(ctx, max)
	defer cancel()
	for {
		behind := false
		for _, c := range m.Nodes() {
			s, err := c.Status(wctx)
			if err == nil && s.AppliedHeight < h {
				behind = true
			}
		}
		if !behind {
			return
		}
		select {
		case <-wctx.Done():
			return
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Lending returns account id's public lending state from the first node
// that answers with a height of at least minHeight.
func Lending(ctx context.Context, m *client.Multi, id string, minHeight uint64) (*api.Lending, error) {
	delay := 100 * time.Millisecond
	for {
		l, err := m.Lending(ctx, id)
		if err != nil {
			return nil, err
		}
		if l.Height >= minHeight {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("lending state of %s at height %d: %w", short(id), minHeight, ctx.Err())
		case <-time.After(delay):
		}
		delay = min(delay*3/2, time.Second)
	}
}

func short(id string) string {
	if len(id) > 16 {
		return id[:16]
	}
	return id
}
