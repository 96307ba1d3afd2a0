package node

import (
	"encoding/hex"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/zkbank/zkbank/api"
	"github.com/zkbank/zkbank/ledger"
)

// Metrics are the node's Prometheus collectors, registered on the node's own
// registry (never the global one: several nodes may share a process).
type Metrics struct {
	Height      prometheus.Gauge
	Committed   prometheus.Counter
	Rejected    *prometheus.CounterVec
	BlockTime   prometheus.Histogram
	Evaluation  prometheus.Histogram
	Finality    prometheus.Histogram
	Mempool     prometheus.Gauge
	Submissions *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Height:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "zkbank_height", Help: "Last finalized height."}),
		Committed:   prometheus.NewCounter(prometheus.CounterOpts{Name: "zkbank_transfers_committed_total", Help: "Transfers decided valid and applied."}),
		Rejected:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkbank_transfers_rejected_total", Help: "Transfers decided invalid, by reason."}, []string{"reason"}),
		BlockTime:   prometheus.NewHistogram(prometheus.HistogramOpts{Name: "zkbank_block_interval_seconds", Help: "Time between consecutive finalized heights (round durations).", Buckets: prometheus.ExponentialBuckets(0.05, 2, 10)}),
		Evaluation:  prometheus.NewHistogram(prometheus.HistogramOpts{Name: "zkbank_evaluation_seconds", Help: "Homomorphic evaluation of one block.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 10)}),
		Finality:    prometheus.NewHistogram(prometheus.HistogramOpts{Name: "zkbank_finality_seconds", Help: "Submission (to this node) to decided result.", Buckets: prometheus.ExponentialBuckets(0.1, 1.6, 12)}),
		Mempool:     prometheus.NewGauge(prometheus.GaugeOpts{Name: "zkbank_mempool_uploads", Help: "Uploads waiting to be ordered."}),
		Submissions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "zkbank_submissions_total", Help: "Uploads received, by outcome of admission."}, []string{"result"}),
	}
	reg.MustRegister(m.Height, m.Committed, m.Rejected, m.BlockTime, m.Evaluation, m.Finality, m.Mempool, m.Submissions)
	return m
}

// tracker remembers transfer statuses and per-account history for the API,
// and feeds metrics. It is the App's Observer.
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
	opened     map[string]chan *ledger.Account
}

type decision struct {
	at time.Time
	n  int
}

func newTracker(m *Metrics) *tracker {
	return &tracker{met: m, status: map[string]*api.TransferStatus{}, submitted: map[string]time.Time{}, history: map[string][]string{}, opened: map[string]chan *ledger.Account{}}
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
		t.track(k, &api.TransferStatus{ID: k, Status: api.StatusPending, From: envs[i].From.String(), To: envs[i].To.String()})
		t.submitted[k] = now
		t.remember(envs[i].From.String(), k)
		t.remember(envs[i].To.String(), k)
	}
}

func (t *tracker) remember(acct, id string) {
	h := append(t.history[acct], id)
	if len(h) > maxHistory {
		h = h[len(h)-maxHistory:]
	}
	t.history[acct] = h
}

// Included marks a block's transfers as ordered.
func (t *tracker) Included(h uint64, b *Block) {
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
				st = &api.TransferStatus{ID: k, Status: api.StatusPending, From: s.Envelopes[i].From.String(), To: s.Envelopes[i].To.String()}
				t.track(k, st)
				t.remember(st.From, k)
				t.remember(st.To, k)
			}
			st.Height = h
		}
	}
}

// Decided records the outcomes of height h.
func (t *tracker) Decided(h uint64, outs []ledger.Outcome) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	for _, o := range outs {
		k := hex.EncodeToString(o.ID[:])
		st, ok := t.status[k]
		if !ok {
			st = &api.TransferStatus{ID: k, Height: h}
			if o.Env != nil {
				st.From, st.To = o.Env.From.String(), o.Env.To.String()
				t.remember(st.From, k)
				t.remember(st.To, k)
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

// Opened wakes API callers waiting for an account opening.
func (t *tracker) Opened(h uint64, accts []*ledger.Account) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, a := range accts {
		k := a.ID.String()
		if ch, ok := t.opened[k]; ok {
			ch <- a
			delete(t.opened, k)
		}
	}
}

func (t *tracker) waitOpen(id ledger.AccountID) chan *ledger.Account {
	t.mu.Lock()
	defer t.mu.Unlock()
	ch := make(chan *ledger.Account, 1)
	t.opened[id.String()] = ch
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
