package node

import (
	"encoding/hex"
	"sync"
	"time"

	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/chain"
	"github.com/zkbank/zkbank/ledger"
)

// tracker remembers transfer statuses and per-account history for the API,
// and feeds metrics. It is fed by the node's publisher, once per finalized height.
type tracker struct {
	mu         sync.Mutex
	met        *Metrics
	status     map[string]*api.TransferStatus
	order      []string // ids in the order first seen, for bounded memory
	submitted  map[string]time.Time
	history    map[string][]string // account -> ids, oldest first
	committed  uint64
	rejected   uint64
	lastFinal  time.Duration
	lastHeight time.Time
	window     []decision // recent decisions for transfers/s
	waiters    map[string]chan *ledger.Account
}

type decision struct {
	at time.Time
	n  int
}

func newTracker(m *Metrics) *tracker {
	return &tracker{met: m, status: map[string]*api.TransferStatus{}, submitted: map[string]time.Time{}, history: map[string][]string{}, waiters: map[string]chan *ledger.Account{}}
}

const maxHistory = 200

// maxStatuses bounds the statuses kept in memory; older ones are answered
// from the store (every decided status is persisted with its height).
const maxStatuses = 100_000

// track inserts a status, evicting the oldest beyond maxStatuses.
func (t *tracker) track(k string, st *api.TransferStatus) {
	t.status[k] = st
	t.order = append(t.order, k)
	for len(t.order) > maxStatuses {
		old := t.order[0]
		t.order = t.order[1:]
		delete(t.status, old)
		delete(t.submitted, old)
	}
}

func (t *tracker) submittedNow(envs []ledger.Envelope) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	for i := range envs {
		id := envs[i].ID()
		k := hex.EncodeToString(id[:])
		if _, ok := t.status[k]; ok {
			continue
		}
		st := statusOf(k, &envs[i])
		t.track(k, st)
		t.submitted[k] = now
		t.rememberAll(st, k)
	}
}

// statusOf is a pending status for an envelope.
func statusOf(k string, e *ledger.Envelope) *api.TransferStatus {
	st := &api.TransferStatus{ID: k, Status: api.StatusPending, From: e.From.String(), To: e.To.String(), Payees: chain.PayeeStrings(e)}
	setLending(st, e)
	return st
}

// rememberAll adds the transfer to the history of its payer and every payee,
// once per account (an apply's payer is its payee).
func (t *tracker) rememberAll(st *api.TransferStatus, id string) {
	seen := map[string]bool{}
	for _, acct := range append([]string{st.From, st.To}, st.Payees...) {
		if !seen[acct] {
			seen[acct] = true
			t.remember(acct, id)
		}
	}
}

func (t *tracker) remember(acct, id string) {
	h := append(t.history[acct], id)
	if len(h) > maxHistory {
		h = h[len(h)-maxHistory:]
	}
	t.history[acct] = h
}

// Finalized records what one finalized height changed: the block's
// transfers are ordered, the previous height's are decided, accounts opened.
func (t *tracker) Finalized(v *chain.View) {
	if v.Block != nil {
		t.included(v.Height, v.Block)
	}
	if v.Decided > 0 {
		t.decided(v.Decided, v.Outcomes)
	}
	if len(v.Opened) > 0 {
		t.opened(v.Opened)
	}
}

// included marks a block's transfers as ordered.
func (t *tracker) included(h uint64, b *chain.Block) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	if !t.lastHeight.IsZero() {
		t.met.BlockTime.Observe(now.Sub(t.lastHeight).Seconds())
	}
	t.lastHeight = now
	t.met.Height.Set(float64(h))
	for _, s := range b.Subs {
		for i := range s.Envelopes {
			id := s.Envelopes[i].ID()
			k := hex.EncodeToString(id[:])
			st, ok := t.status[k]
			if !ok {
				st = statusOf(k, &s.Envelopes[i])
				t.track(k, st)
				t.rememberAll(st, k)
			}
			st.Height = h
		}
	}
}

// decided records the outcomes of height h.
func (t *tracker) decided(h uint64, outs []ledger.Outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	for _, o := range outs {
		k := hex.EncodeToString(o.ID[:])
		st, ok := t.status[k]
		if !ok {
			st = &api.TransferStatus{ID: k, Height: h}
			if o.Env != nil {
				st.From, st.To, st.Payees = o.Env.From.String(), o.Env.To.String(), chain.PayeeStrings(o.Env)
				setLending(st, o.Env)
				t.rememberAll(st, k)
			}
			t.track(k, st)
		}
		if o.Reason == ledger.Accepted {
			st.Status = api.StatusCommitted
			t.committed++
			t.met.Committed.Inc()
		} else {
			st.Status, st.Code, st.Reason = api.StatusRejected, o.Reason.Code(), o.Reason.String()
			t.rejected++
			t.met.Rejected.WithLabelValues(o.Reason.Code()).Inc()
		}
		if at, ok := t.submitted[k]; ok {
			t.lastFinal = now.Sub(at)
			t.met.Finality.Observe(t.lastFinal.Seconds())
			delete(t.submitted, k)
		}
	}
	t.window = append(t.window, decision{at: now, n: len(outs)})
	cut := 0
	for cut < len(t.window) && now.Sub(t.window[cut].at) > 10*time.Second {
		cut++
	}
	t.window = t.window[cut:]
}

// opened wakes API callers waiting for an account opening.
func (t *tracker) opened(accts []*ledger.Account) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, a := range accts {
		k := a.ID.String()
		if ch, ok := t.waiters[k]; ok {
			ch <- a
			delete(t.waiters, k)
		}
	}
}

func (t *tracker) waitOpen(id ledger.AccountID) chan *ledger.Account {
	t.mu.Lock()
	defer t.mu.Unlock()
	ch := make(chan *ledger.Account, 1)
	t.waiters[id.String()] = ch
	return ch
}

func (t *tracker) get(id string) (api.TransferStatus, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, ok := t.status[id]
	if !ok {
		return api.TransferStatus{}, false
	}
	return *st, true
}

func (t *tracker) historyOf(acct string) []api.TransferStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	ids := t.history[acct]
	out := make([]api.TransferStatus, 0, len(ids))
	for i := len(ids) - 1; i >= 0; i-- {
		if st, ok := t.status[ids[i]]; ok {
			out = append(out, *st)
		}
	}
	return out
}

func (t *tracker) rates() (committed, rejected uint64, tps float64, finality time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, d := range t.window {
		n += d.n
	}
	return t.committed, t.rejected, float64(n) / 10, t.lastFinal
}
