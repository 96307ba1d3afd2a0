//go:build js && wasm

// Command zkbank-wasm is the browser wallet: the project's wallet and client
// code compiled to WebAssembly. It exposes a global `zkbank` object to the
// page (node/web/wallet.js). Keys are generated, kept and used here; nodes
// receive exactly what the CLI wallet sends them.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"syscall/js"
	"time"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/client"
	"github.com/zkbank/zkbank/ledger"
	"github.com/zkbank/zkbank/wallet"
)

var (
	mu    sync.Mutex
	cur   *wallet.Wallet
	multi = map[string]*client.Multi{} // node URL -> client of its chain
)

func main() {
	z := js.Global().Get("Object").New()
	z.Set("createWallet", promise(createWallet))
	z.Set("importWallet", promise(importWallet))
	z.Set("exportWallet", promise(exportWallet))
	z.Set("info", promise(info))
	z.Set("openAccount", onNode(openAccount))
	z.Set("balance", onNode(func(ctx context.Context, w *wallet.Wallet, m *client.Multi, _ []js.Value) (any, error) {
		return balance(ctx, w, m, false)
	}))
	z.Set("available", onNode(func(ctx context.Context, w *wallet.Wallet, m *client.Multi, _ []js.Value) (any, error) {
		return balance(ctx, w, m, true)
	}))
	z.Set("send", onNode(func(ctx context.Context, w *wallet.Wallet, m *client.Multi, a []js.Value) (any, error) {
		return pay(ctx, w, m, a, false)
	}))
	z.Set("charge", onNode(func(ctx context.Context, w *wallet.Wallet, m *client.Multi, a []js.Value) (any, error) {
		return pay(ctx, w, m, a, true)
	}))
	z.Set("apply", onNode(apply))
	z.Set("history", onNode(history))
	z.Set("score", onNode(score))
	z.Set("lending", onNode(lending))
	js.Global().Set("zkbank", z)
	if f := js.Global().Get("zkbankReady"); f.Type() == js.TypeFunction {
		f.Invoke()
	}
	select {}
}

// promise runs f on its own goroutine (it may block on the network) and
// returns a JS Promise of its result; errors reject with an Error whose
// `code` names the case for the page.
func promise(f func([]js.Value) (any, error)) js.Func {
	return js.FuncOf(func(this js.Value, args []js.Value) any {
		var resolve, reject js.Value
		exec := js.FuncOf(func(_ js.Value, pa []js.Value) any {
			resolve, reject = pa[0], pa[1]
			return nil
		})
		p := js.Global().Get("Promise").New(exec)
		exec.Release()
		go func() {
			v, err := f(args)
			if err != nil {
				e := js.Global().Get("Error").New(err.Error())
				e.Set("code", errCode(err))
				reject.Invoke(e)
				return
			}
			resolve.Invoke(js.ValueOf(v))
		}()
		return p
	})
}

// errCode classifies an error for the page's error states.
func errCode(err error) string {
	var ie *client.InsufficientError
	var ae *client.APIError
	switch {
	case errors.As(err, &ie):
		return "insufficient_funds"
	case errors.Is(err, client.ErrNothingPending):
		return "nothing_pending"
	case errors.Is(err, client.ErrUnreachable):
		return "unreachable"
	case errors.Is(err, client.ErrNotReady):
		return "not_ready"
	case errors.Is(err, client.ErrUnknownAccount):
		return "unknown_account"
	case errors.Is(err, errNoWallet):
		return "no_wallet"
	case errors.As(err, &ae) && ae.Code != "":
		return ae.Code
	}
	return "error"
}

var errNoWallet = errors.New("no wallet: create or import one first")

func arg(a []js.Value, i int) string {
	if i >= len(a) || a[i].Type() != js.TypeString {
		return ""
	}
	return a[i].String()
}

func current() (*wallet.Wallet, error) {
	mu.Lock()
	defer mu.Unlock()
	if cur == nil {
		return nil, errNoWallet
	}
	return cur, nil
}

func public(w *wallet.Wallet) map[string]any {
	m := map[string]any{"name": w.Name, "account": w.Account, "kind": w.Kind, "chain": w.ChainID, "paramSet": w.ParamSet}
	if w.IsCard() {
		m["limit"] = wallet.FormatAmount(w.Limit)
		m["issuer"] = w.Issuer
	}
	return m
}

func exported(w *wallet.Wallet) (map[string]any, error) {
	b, err := w.Marshal()
	if err != nil {
		return nil, err
	}
	m := public(w)
	m["json"] = string(b)
	return m, nil
}

// createWallet(name, kind) generates keys here and returns the wallet's
// public fields and its JSON (the page stores it locally).
func createWallet(a []js.Value) (any, error) {
	kind := arg(a, 1)
	if kind == "" {
		kind = wallet.KindDeposit
	}
	w, err := wallet.New(arg(a, 0), kind, ledger.MustParams(ledger.ZKB128))
	if err != nil {
		return nil, err
	}
	mu.Lock()
	cur = w
	mu.Unlock()
	return exported(w)
}

// importWallet(json) validates a wallet file's contents and makes it current.
func importWallet(a []js.Value) (any, error) {
	w, err := wallet.Decode([]byte(arg(a, 0)))
	if err != nil {
		return nil, err
	}
	mu.Lock()
	cur = w
	mu.Unlock()
	return exported(w)
}

func exportWallet([]js.Value) (any, error) {
	w, err := current()
	if err != nil {
		return nil, err
	}
	return exported(w)
}

func info([]js.Value) (any, error) {
	w, err := current()
	if err != nil {
		return nil, err
	}
	return public(w), nil
}

// connect returns the current wallet and a client of nodeURL's chain,
// refusing a wallet bound to another chain.
func connect(ctx context.Context, nodeURL string) (*wallet.Wallet, *client.Multi, error) {
	w, err := current()
	if err != nil {
		return nil, nil, err
	}
	if nodeURL == "" {
		return nil, nil, errors.New("no node URL")
	}
	mu.Lock()
	m := multi[nodeURL]
	mu.Unlock()
	if m == nil {
		if m, err = client.Dial(ctx, nodeURL, client.WithParams(w.Params())); err != nil {
			return nil, nil, fmt.Errorf("connecting to %s: %w", nodeURL, err)
		}
		mu.Lock()
		multi[nodeURL] = m
		mu.Unlock()
	}
	if w.ChainID != "" && w.ChainID != m.Chain() {
		return nil, nil, fmt.Errorf("wallet %s belongs to chain %q, the node at %s serves %q", w.Name, w.ChainID, nodeURL, m.Chain())
	}
	return w, m, nil
}

// nodeCall is a binding whose first argument is a node URL.
type nodeCall func(ctx context.Context, w *wallet.Wallet, m *client.Multi, a []js.Value) (any, error)

// onNode is the Promise of a nodeCall: f runs with a deadline, the current
// wallet and a client of that node's chain (connect).
func onNode(f nodeCall) js.Func {
	return promise(func(a []js.Value) (any, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		w, m, err := connect(ctx, arg(a, 0))
		if err != nil {
			return nil, err
		}
		return f(ctx, w, m, a)
	})
}

// openAccount(nodeURL) opens the wallet's account (or finds it open) and
// binds the wallet to the chain; the page re-stores the returned JSON.
func openAccount(ctx context.Context, w *wallet.Wallet, m *client.Multi, _ []js.Value) (any, error) {
	already := true
	acct, err := m.Account(ctx, w.Account)
	if errors.Is(err, client.ErrUnknownAccount) {
		already = false
		req := api.OpenRequest{SignPub: fmt.Sprintf("%x", []byte(w.SignPub())), Kind: w.Kind, Signature: fmt.Sprintf("%x", w.OpenSignature(m.Chain()))}
		r, err := m.Open(ctx, req)
		if err != nil {
			return nil, fmt.Errorf("opening account: %w", err)
		}
		if err := m.WaitAccount(ctx, w.Account, m.Threshold()); err != nil {
			return nil, fmt.Errorf("account opened but not yet visible: %w", err)
		}
		acct = &r.Account
	} else if err != nil {
		return nil, err
	}
	if err := w.BindChain(m.Chain()); err != nil {
		return nil, err
	}
	out, err := exported(w)
	if err != nil {
		return nil, err
	}
	out["already"] = already
	out["lane"] = acct.Lane
	out["shard"] = acct.Shard
	return out, nil
}

// balance(nodeURL), or available(nodeURL) for a card: validators re-encrypt
// the balance to the wallet's key; it is decrypted here.
func balance(ctx context.Context, w *wallet.Wallet, m *client.Multi, card bool) (any, error) {
	if card && !w.IsCard() {
		return nil, fmt.Errorf("wallet %s is a deposit account; read its balance", w.Name)
	}
	b, err := m.Balance(ctx, w)
	if err != nil {
		return nil, err
	}
	return balanceJS(w, b), nil
}

func balanceJS(w *wallet.Wallet, b client.Balance) map[string]any {
	out := map[string]any{"available": wallet.FormatAmount(b.Amount), "pending": wallet.FormatAmount(b.Pending),
		"availableCents": float64(b.Amount), "pendingCents": float64(b.Pending), "height": float64(b.Height), "card": w.IsCard()}
	if w.IsCard() && w.Limit > 0 && w.Limit >= b.Amount {
		out["limit"] = wallet.FormatAmount(w.Limit)
		out["spent"] = wallet.FormatAmount(w.Limit - b.Amount)
	}
	return out
}

// pay is send(nodeURL, to, amount) or charge(nodeURL, merchant, amount).
func pay(ctx context.Context, w *wallet.Wallet, m *client.Multi, a []js.Value, card bool) (any, error) {
	cents, err := wallet.ParseAmount(arg(a, 2))
	if err != nil {
		return nil, err
	}
	to, err := ledger.ParseAccountID(arg(a, 1))
	if err != nil {
		return nil, fmt.Errorf("recipient %q: want a 64-hex-digit account id", arg(a, 1))
	}
	if card && !w.IsCard() {
		return nil, fmt.Errorf("wallet %s is a deposit account: send, not charge", w.Name)
	}
	if !card && w.IsCard() {
		return nil, fmt.Errorf("wallet %s is a card: charge, not send", w.Name)
	}
	res, err := m.Pay(ctx, w, card, []client.Payee{{To: to, Amount: cents}}, nil)
	if err != nil {
		return nil, err
	}
	return result(ctx, m, w, res), nil
}

// apply(nodeURL) moves the pending balance into the available one.
func apply(ctx context.Context, w *wallet.Wallet, m *client.Multi, _ []js.Value) (any, error) {
	res, err := m.ApplyPending(ctx, w, nil)
	if err != nil {
		return nil, err
	}
	return result(ctx, m, w, res), nil
}

// result is a verdict for the page, with the balance after a commit.
func result(ctx context.Context, m *client.Multi, w *wallet.Wallet, res *client.PayResult) map[string]any {
	st := res.Status
	out := map[string]any{"id": st.ID, "status": st.Status, "code": st.Code, "reason": st.Reason, "height": float64(st.Height),
		"amount": wallet.FormatAmount(res.Amount), "amountCents": float64(res.Amount), "attempts": res.Attempts,
		"time": time.Now().UTC().Format(time.RFC3339)}
	if st.Status == api.StatusCommitted {
		nctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if b, err := m.BalanceAt(nctx, w, st.Height); err == nil {
			out["balance"] = balanceJS(w, b)
		}
	}
	return out
}

// history(nodeURL) lists the account's transfers; amounts are confidential
// (the page adds those it sent from its local journal).
func history(ctx context.Context, w *wallet.Wallet, m *client.Multi, _ []js.Value) (any, error) {
	h, err := m.History(ctx, w.Account)
	if err != nil {
		return nil, err
	}
	list := []any{}
	for _, t := range h.Transfers { // each once: the node lists an apply once
		dir, other := "sent", t.To
		if len(t.Payees) > 1 {
			other = fmt.Sprintf("%d payees", len(t.Payees))
		}
		if t.From == w.Account && t.To == w.Account {
			dir = "apply"
		} else if t.From != w.Account && t.Receives(w.Account) {
			dir, other = "received", t.From
		}
		list = append(list, map[string]any{"id": t.ID, "height": float64(t.Height), "status": t.Status, "code": t.Code,
			"direction": dir, "counterparty": other, "kind": t.Kind})
	}
	return list, nil
}

// score(nodeURL): the account's credit score, computed by validators on its
// encrypted balances, re-encrypted to the wallet's key and decrypted here.
func score(ctx context.Context, w *wallet.Wallet, m *client.Multi, _ []js.Value) (any, error) {
	sc, err := m.Score(ctx, w)
	if err != nil {
		return nil, err
	}
	return map[string]any{"score": float64(sc.Value), "height": float64(sc.Height)}, nil
}

// lending(nodeURL): the account's public lending record (consents granted,
// open loans and applications, missed installments), as the API serves it.
func lending(ctx context.Context, w *wallet.Wallet, m *client.Multi, _ []js.Value) (any, error) {
	l, err := m.Lending(ctx, w.Account)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(l)
	if err != nil {
		return nil, err
	}
	return js.Global().Get("JSON").Call("parse", string(b)), nil
}
